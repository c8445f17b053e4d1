/*
 * task_env_internal.h - what task_env.c (the host, logging, lent connections) and
 * task_send.c (sending tasks, waiting for results) share, and task_crawl.c (http.scrape's
 * crawl step) uses: the host's fields and the lending of a connection. Not installed.
 */
#ifndef WORKERD_TASK_ENV_INTERNAL_H
#define WORKERD_TASK_ENV_INTERNAL_H

#include "broker_keys.h"
#include "task_host.h"

#include <stdbool.h>
#include <stddef.h>

/* Idle connections to one Redis, most recently returned last. */
struct task__idle {
    green_redis **conns;
    size_t n;
};

struct task_host {
    char *broker_url;
    char *results_url; /* NULL: the broker's */
    broker_keys keys;
    task_host_log_fn log;
    size_t idle_max;
    task_host_turn_fn turn;       /* NULL: none */
    task_host_release_fn release; /* NULL: none */
    void *turn_arg;
    struct task__idle idle;         /* to the broker */
    struct task__idle idle_results; /* to the result backend, when it is another */
};

/* The connection lent to call for the broker (results false) or the result backend
 * (results true; the broker's when it is the same Redis) in *out, connecting it if needed
 * (see task_env.h). MAY YIELD. Returns 0, TASK_EFAIL with err filled, -ETIMEDOUT,
 * -ECANCELED. */
int task__lend(const task_call *call, bool results, green_redis **out, task_error *err);

/* A failed green_* call's code rc (what, e.g. "GET x", says what it was), made into
 * task_env.h's returns: -ECANCELED as it is; -ETIMEDOUT as it is, unless own_fired (the
 * call's own deadline, of `seconds`): then TASK_EFAIL "Timeout"; anything else TASK_EFAIL
 * "RedisError" with the connection's message (c may be NULL) or the errno's text. */
int task__redis_failed(int rc, bool own_fired, double seconds, green_redis *c, const char *what,
                       task_error *err);

/* TASK_EFAIL "RuntimeError" for a call with no worker behind it. */
int task__no_worker(const task_call *call, const char *function, task_error *err);

#endif
