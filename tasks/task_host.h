/*
 * task_host.h - the worker's side of task_env.h: the object that serves a worker's tasks
 * (their log lines, their lent Redis connections, the keys of the messages they send),
 * and the per-call context the worker hands each task through task_call.ctx.
 *
 * The worker makes one task_host when it starts, and around every task function call:
 *
 *     task_ctx ctx;
 *     task_ctx_begin(&ctx, host);
 *     task_call call = {..., .ctx = &ctx};
 *     if (task_ctx_gate(&ctx, &call, &err) == 0)   // per-host limits, before STARTED
 *         rc = fn(&call, &result, &err);
 *     task_ctx_end(&ctx);            // takes back what the call borrowed
 *
 * Not installed: plugins see only task_env.h. Everything here runs on greenlets of the
 * worker's hub (task_host_free and task_ctx_end may also run on the hub outside
 * callbacks); nothing is thread-safe.
 */
#ifndef WORKERD_TASK_HOST_H
#define WORKERD_TASK_HOST_H

#include "green_redis.h"
#include "task_env.h"

#include <stdarg.h>
#include <stddef.h>

/* Where task_log's lines go: the worker's log, with the task id. Called from any stack
 * and thread (task_log's contract), so it must be thread-safe and never yield. */
typedef void (*task_host_log_fn)(enum task_log_level level, const char *task_id, const char *fmt,
                                 va_list ap);

/* The per-host limits of the http.* tasks (--http-host-concurrency, --http-host-rate), on
 * the worker's side. A turn is asked for before the task is marked started (task_ctx_gate),
 * so a task that must wait is never STARTED: it is deferred (TASK_EDEFER) instead. */
typedef struct task_host_ticket {
    double lease;      /* in: the most seconds the request may take (its timeout): a slot
                          taken is held at most about that long without a release */
    double wait;       /* out, 1: seconds until it is worth asking again */
    const char *limit; /* out, 1: the option that said no ("--http-host-rate"), static */
    char holder[160];  /* out, 0: the slot taken, to give back with the release hook; ""
                          none */
} task_host_ticket;

/* Whether an HTTP request to host (lower-case) may start now: 0 yes (its turn is taken,
 * and its slot, in t->holder), 1 not yet (t->wait, t->limit), -ECANCELED the greenlet was
 * killed meanwhile (nothing is held). Runs on the task's greenlet and MAY YIELD; an error
 * is the hook's to log, and it answers 0 then (a broken check never stops the requests). */
typedef int (*task_host_turn_fn)(void *arg, const char *host, task_host_ticket *t);

/* Give back the slot holder of host that a turn took. MAY YIELD; errors are the hook's to
 * log (the slot's lease ends it anyway). */
typedef void (*task_host_release_fn)(void *arg, const char *host, const char *holder);

typedef struct task_host_cfg {
    const char *broker_url;       /* the Redis of the queues (lent connections, task_send) */
    const char *results_url;      /* the result backend (task_wait); NULL: the broker's */
    const char *prefix;           /* the key prefix; NULL: the default */
    task_host_log_fn log;         /* NULL: lines go to stderr */
    size_t idle_max;              /* idle connections kept for later tasks; 0: 16 */
    task_host_turn_fn turn;       /* NULL: no per-host limit, every request starts at once */
    task_host_release_fn release; /* gives a turn's slot back; NULL: turns take none */
    void *turn_arg;               /* turn's and release's first argument */
} task_host_cfg;

typedef struct task_host task_host;

/* A new host (the strings are copied). Does not yield, connects nothing. Returns 0 with
 * *out set, -EINVAL (a prefix broker_check_prefix refuses, or no broker_url), -ENOMEM. */
int task_host_new(task_host **out, const task_host_cfg *cfg);

/* Close the idle connections and free h. No call of h's may be running (the worker's
 * pool is empty). NULL is a no-op. Does not yield. */
void task_host_free(task_host *h);

/* Idle connections kept now, to the broker and to the result backend (tests). */
size_t task_host_idle(const task_host *h);

struct broker_msg;

/* The state of one call. Its fields are private, but for msg and queue, which the worker
 * sets after task_ctx_begin when it has them (http.scrape's crawl passes the message's
 * options on to the pages it finds, and sends them to the queue the page came from). */
typedef struct task_ctx { /* a new field is reset in task_env.c's ctx_reset too */
    task_host *host;
    green_redis *redis;   /* lent to the call: the broker's */
    green_redis *results; /* lent for task_wait when the result backend is another Redis */
    green_redis **broken; /* lent and failed, kept valid until the call ends */
    size_t nbroken;
    char *turn_host; /* the host whose slot the call holds (task_ctx_gate), or NULL */
    char turn_holder[160];
    const struct broker_msg *msg; /* the message being run (borrowed), or NULL */
    const char *queue;            /* the queue it was taken from (borrowed), or NULL */
} task_ctx;

/* Start a call's context (host may be NULL: then the call behaves as outside a worker).
 * Never fails, does not yield. */
void task_ctx_begin(task_ctx *ctx, task_host *host);

/* Before the task function runs, and before the call counts as started: ask the worker for
 * what the call needs of its shared limits. Today that is the http.* tasks' per-host turn
 * and slot (task_host_turn_fn) for their URL's host; other tasks, and calls whose
 * arguments the task will refuse anyway, pass at once. Returns 0 run it (a slot taken is
 * the context's until task_ctx_end), TASK_EDEFER not now (err->retry_in, err->type and
 * err->message say how long and why; nothing held), or -ECANCELED (the greenlet was
 * killed; nothing held). MAY YIELD. */
int task_ctx_gate(task_ctx *ctx, const task_call *call, task_error *err);

/* End it: the lent connections go back to the host (kept idle if healthy and quiet, else
 * closed), and a slot task_ctx_gate took is given back (one round trip: MAY YIELD then;
 * otherwise it does not yield). Call after the task function returned. */
void task_ctx_end(task_ctx *ctx);

#endif
