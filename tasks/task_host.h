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
 *     rc = fn(&call, &result, &err);
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

/* Whether an HTTP request to host (lower-case) may start now under the worker's per-host
 * rate (--http-host-rate): 0 yes (its turn is taken), 1 not yet (*wait: seconds until its
 * turn). Runs on the task's greenlet and MAY YIELD; an error is the hook's to log, and it
 * answers 0 then (a broken check never stops the requests). */
typedef int (*task_host_turn_fn)(void *arg, const char *host, double *wait);

typedef struct task_host_cfg {
    const char *broker_url;  /* the Redis of the queues (lent connections, task_send) */
    const char *results_url; /* the result backend (task_wait); NULL: the broker's */
    const char *prefix;      /* the key prefix; NULL: the default */
    task_host_log_fn log;    /* NULL: lines go to stderr */
    size_t idle_max;         /* idle connections kept for later tasks; 0: 16 */
    task_host_turn_fn turn;  /* NULL: no per-host rate, every request starts at once */
    void *turn_arg;          /* turn's first argument */
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

/* Ask the worker behind call whether a request to host may start now (task_host_turn_fn):
 * 0 go on, 1 not yet with *wait seconds. Always 0 outside a worker or without a hook.
 * MAY YIELD. For the built-in http.* tasks. */
int task_host_turn(const task_call *call, const char *host, double *wait);

/* The state of one call. Its fields are private. */
typedef struct task_ctx {
    task_host *host;
    green_redis *redis;   /* lent to the call: the broker's */
    green_redis *results; /* lent for task_wait when the result backend is another Redis */
    green_redis **broken; /* lent and failed, kept valid until the call ends */
    size_t nbroken;
} task_ctx;

/* Start a call's context (host may be NULL: then the call behaves as outside a worker).
 * Never fails, does not yield. */
void task_ctx_begin(task_ctx *ctx, task_host *host);

/* End it: the lent connections go back to the host (kept idle if healthy and quiet, else
 * closed). Call after the task function returned; does not yield. */
void task_ctx_end(task_ctx *ctx);

#endif
