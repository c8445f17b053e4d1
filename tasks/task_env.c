/*
 * task_env.c - the host that serves a worker's tasks (task_host.h), task_log, and the
 * lending of Redis connections (task_env.h); sending tasks is task_send.c.
 *
 * Lending. A call borrows at most one connection per Redis (the broker, and the result
 * backend when it is another server), on first use: an idle one the host kept, else a new
 * one (green_redis_connect_url: AUTH and SELECT as the URL says). It stays the call's
 * until task_ctx_end, which gives it back to the host's idle list when it is healthy,
 * nothing is pending on it (a command whose caller timed out would answer the next
 * borrower) and the list has room; otherwise it is closed. A lent connection that breaks
 * is never freed under the task's feet: it moves to the call's broken list, where its
 * calls keep failing at once, and is freed when the call ends; the next task_redis
 * connects afresh. An idle connection that broke while idle (Redis restarted) is noticed
 * at the next lend, since the hub's loop has seen its socket close, and dropped.
 *
 * Deadlines. Every call with its own timeout opens a green_timeout scope for it and makes
 * the blocking call without one, so that green_timeout_end tells its own deadline (a
 * TASK_EFAIL "Timeout") from the task's time limit (-ETIMEDOUT, handed on).
 *
 * Runs on greenlets of the worker's hub; task_log on any stack and thread.
 */
#include "task_env_internal.h"
#include "task_internal.h"

#include "green.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define IDLE_MAX_DEFAULT 16
#define CONNECT_TIMEOUT 10.0

/* ---- the host ---------------------------------------------------------------------- */

int task_host_new(task_host **out, const task_host_cfg *cfg) {
    *out = NULL;
    if (cfg->broker_url == NULL)
        return -EINVAL;
    task_host *h = calloc(1, sizeof *h);
    if (h == NULL)
        return -ENOMEM;
    if (broker_keys_init(&h->keys, cfg->prefix) != 0) {
        free(h);
        return -EINVAL;
    }
    h->log = cfg->log;
    h->idle_max = cfg->idle_max ? cfg->idle_max : IDLE_MAX_DEFAULT;
    h->turn = cfg->turn;
    h->release = cfg->release;
    h->turn_arg = cfg->turn_arg;
    h->broker_url = strdup(cfg->broker_url);
    bool separate = cfg->results_url != NULL && strcmp(cfg->results_url, cfg->broker_url) != 0;
    if (separate)
        h->results_url = strdup(cfg->results_url);
    h->idle.conns = calloc(h->idle_max, sizeof *h->idle.conns);
    h->idle_results.conns = calloc(h->idle_max, sizeof *h->idle_results.conns);
    if (h->broker_url == NULL || (separate && h->results_url == NULL) || h->idle.conns == NULL ||
        h->idle_results.conns == NULL) {
        task_host_free(h);
        return -ENOMEM;
    }
    *out = h;
    return 0;
}

int task_ctx_gate(task_ctx *ctx, const task_call *call, task_error *err) {
    task_host *h = ctx->host;
    if (h == NULL || h->turn == NULL) /* no per-host limits: nothing to ask, nothing to zero */
        return 0;
    char host[TASK__HTTP_HOST_MAX];
    task_host_ticket t = {.lease = 0};
    if (!task__http_destination(call, host, sizeof host, &t.lease))
        return 0;
    int rc = h->turn(h->turn_arg, host, &t);
    if (rc == -ECANCELED)
        return rc;
    if (rc == 1) {
        snprintf(err->type, sizeof err->type, "%s", "HostLimited");
        snprintf(err->message, sizeof err->message, "%s: %.300s is over %s: asking again in %.3f s",
                 call->name, host, t.limit ? t.limit : "its limit", t.wait);
        err->retry_in = t.wait > 0 ? t.wait : 0;
        return TASK_EDEFER;
    }
    if (t.holder[0] != '\0') {
        ctx->turn_host = strdup(host);
        snprintf(ctx->turn_holder, sizeof ctx->turn_holder, "%s", t.holder);
        if (ctx->turn_host == NULL && h->release) /* out of memory: give it back at once */
            h->release(h->turn_arg, host, t.holder);
    }
    return 0;
}

static void idle_drain(struct task__idle *idle) {
    while (idle->n > 0)
        green_redis_free(idle->conns[--idle->n]);
}

void task_host_free(task_host *h) {
    if (h == NULL)
        return;
    if (h->idle.conns)
        idle_drain(&h->idle);
    if (h->idle_results.conns)
        idle_drain(&h->idle_results);
    free(h->idle.conns);
    free(h->idle_results.conns);
    free(h->broker_url);
    free(h->results_url);
    free(h);
}

size_t task_host_idle(const task_host *h) {
    return h->idle.n + h->idle_results.n;
}

/* ---- a call's context ---------------------------------------------------------------- */

/* Every field as (task_ctx){.host = host} would set it, but the holder's text only by its
 * first byte (it is read only while turn_host is set): this runs twice per task, on a
 * fresh stack, and zeroing the whole 160 bytes was a visible part of an echo task's CPU. */
static void ctx_reset(task_ctx *ctx, task_host *host) {
    ctx->host = host;
    ctx->redis = NULL;
    ctx->results = NULL;
    ctx->broken = NULL;
    ctx->nbroken = 0;
    ctx->turn_host = NULL;
    ctx->turn_holder[0] = '\0';
    ctx->msg = NULL;
    ctx->queue = NULL;
}

void task_ctx_begin(task_ctx *ctx, task_host *host) {
    ctx_reset(ctx, host);
}

/* Take back a lent connection: idle if it can serve the next borrower as it is. */
static void give_back(task_host *h, struct task__idle *idle, green_redis *c) {
    if (c == NULL)
        return;
    if (green_redis_is_connected(c) && green_redis_inflight(c) == 0 && idle->n < h->idle_max)
        idle->conns[idle->n++] = c;
    else
        green_redis_free(c);
}

void task_ctx_end(task_ctx *ctx) {
    task_host *h = ctx->host;
    if (h != NULL && ctx->turn_host != NULL && h->release)
        h->release(h->turn_arg, ctx->turn_host, ctx->turn_holder);
    free(ctx->turn_host);
    if (h != NULL) {
        give_back(h, &h->idle, ctx->redis);
        give_back(h, &h->idle_results, ctx->results);
    }
    for (size_t i = 0; i < ctx->nbroken; i++)
        green_redis_free(ctx->broken[i]);
    free(ctx->broken);
    ctx_reset(ctx, h);
}

/* ---- logging ------------------------------------------------------------------------- */

static const char *level_word(enum task_log_level level) {
    switch (level) {
    case TASK_LOG_DEBUG:
        return "DEBUG";
    case TASK_LOG_INFO:
        return "INFO ";
    case TASK_LOG_WARNING:
        return "WARN ";
    case TASK_LOG_ERROR:
        break;
    }
    return "ERROR";
}

void task_vlog(const task_call *call, enum task_log_level level, const char *fmt, va_list ap) {
    const char *id = call != NULL && call->id != NULL ? call->id : "-";
    task_host *h = call != NULL && call->ctx != NULL ? call->ctx->host : NULL;
    if (h != NULL && h->log != NULL) {
        h->log(level, id, fmt, ap);
        return;
    }
    /* No worker: one line on stderr, in one write so that lines never interleave. */
    char line[4096];
    int n = snprintf(line, sizeof line, "%s [task %s] ", level_word(level), id);
    if (n < 0 || (size_t)n >= sizeof line - 1)
        return;
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    if (m < 0)
        return;
    size_t len =
        (size_t)n +
        ((size_t)m < sizeof line - (size_t)n - 1 ? (size_t)m : sizeof line - (size_t)n - 2);
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}

void task_log(const task_call *call, enum task_log_level level, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    task_vlog(call, level, fmt, ap);
    va_end(ap);
}

/* ---- errors -------------------------------------------------------------------------- */

int task__redis_failed(int rc, bool own_fired, double seconds, green_redis *c, const char *what,
                       task_error *err) {
    if (rc == -ECANCELED || (rc == -ETIMEDOUT && !own_fired))
        return rc;
    if (rc == -ETIMEDOUT)
        return task_error_set(err, "Timeout", "%s: no answer from Redis within %g s", what,
                              seconds);
    if (rc == -EPERM)
        return task_error_set(err, "RuntimeError", "%s: not called from a greenlet", what);
    if (rc == -ENOMEM)
        return task_error_set(err, "MemoryError", "%s: out of memory", what);
    const char *why =
        c != NULL && green_redis_error(c) != 0 ? green_redis_last_error(c) : strerror(-rc);
    return task_error_set(err, "RedisError", "%s: %s", what, why);
}

int task__no_worker(const task_call *call, const char *function, task_error *err) {
    return task_error_set(err, "RuntimeError", "%s: %s is available only in a task run by a worker",
                          call != NULL && call->name ? call->name : "task", function);
}

/* ---- lending ------------------------------------------------------------------------- */

/* Keep a broken lent connection valid until the call ends. */
static int keep_broken(task_ctx *ctx, green_redis *c) {
    green_redis **grown = realloc(ctx->broken, (ctx->nbroken + 1) * sizeof *grown);
    if (grown == NULL)
        return -ENOMEM;
    ctx->broken = grown;
    ctx->broken[ctx->nbroken++] = c;
    return 0;
}

int task__lend(const task_call *call, bool results, green_redis **out, task_error *err) {
    *out = NULL;
    task_ctx *ctx = call != NULL ? call->ctx : NULL;
    if (ctx == NULL || ctx->host == NULL)
        return task__no_worker(call, "a Redis connection", err);
    task_host *h = ctx->host;
    bool separate = results && h->results_url != NULL;
    green_redis **slot = separate ? &ctx->results : &ctx->redis;
    struct task__idle *idle = separate ? &h->idle_results : &h->idle;
    const char *url = separate ? h->results_url : h->broker_url;

    if (*slot != NULL && green_redis_is_connected(*slot)) {
        *out = *slot;
        return 0;
    }
    if (*slot != NULL) {
        if (keep_broken(ctx, *slot) != 0)
            return task_error_set(err, "MemoryError", "out of memory");
        *slot = NULL;
    }
    while (idle->n > 0) {
        green_redis *c = idle->conns[--idle->n];
        if (green_redis_is_connected(c)) {
            *out = *slot = c;
            return 0;
        }
        green_redis_free(c);
    }
    green_timeout own;
    int rc = 0;
    green_timeout_start(&own, CONNECT_TIMEOUT);
    green_redis *c = green_redis_connect_url(url, -1, &rc);
    bool fired = green_timeout_end(&own);
    if (c == NULL) {
        char safe[1024], what[1200];
        green_redis_url_redact(url, safe, sizeof safe);
        if (rc == -ECANCELED || (rc == -ETIMEDOUT && !fired))
            return rc;
        if (rc == -ETIMEDOUT)
            return task_error_set(err, "RedisError", "cannot connect to %s within %g s", safe,
                                  CONNECT_TIMEOUT);
        const char *why = green_redis_connect_error();
        snprintf(what, sizeof what, "cannot connect to %s", safe);
        return task_error_set(err, "RedisError", "%s: %s", what,
                              why[0] != '\0' ? why : strerror(-rc));
    }
    *out = *slot = c;
    return 0;
}

/* ---- Redis for tasks ------------------------------------------------------------------ */

int task_redis(const task_call *call, green_redis **out, task_error *err) {
    return task__lend(call, false, out, err);
}

int task_redis_command(const task_call *call, redisReply **reply, double timeout, task_error *err,
                       const char *fmt, ...) {
    *reply = NULL;
    green_redis *c;
    int rc = task__lend(call, false, &c, err);
    if (rc != 0)
        return rc;
    green_timeout own;
    va_list ap;
    va_start(ap, fmt);
    green_timeout_start(&own, timeout);
    rc = green_redis_vcommand(c, reply, -1, fmt, ap);
    bool fired = green_timeout_end(&own);
    va_end(ap);
    if (rc != 0)
        return task__redis_failed(rc, fired, timeout, c, "Redis command", err);
    if ((*reply)->type == REDIS_REPLY_ERROR) {
        rc = task_error_set(err, "RedisError", "%.*s", (int)(*reply)->len, (*reply)->str);
        freeReplyObject(*reply);
        *reply = NULL;
    }
    return rc;
}
