/*
 * task_env.h - what a running task may ask of the worker that runs it: a log line that
 * carries its task id, a Redis connection lent for the duration of the call, and sending
 * other tasks (fire and forget, or waiting for their result). Built-in tasks and plugins
 * use exactly this header; everything else a task does goes through the green runtime
 * (green.h, green_http.h, green_threadpool.h, ...), which a task may use whole.
 *
 * Every function takes the task's own `call` (task.h), which is how it finds the worker
 * behind the call. A greenlet the task spawns may use the same call, as long as the task
 * joins it before returning (task.h: a task leaves nothing behind). A call made outside a
 * worker (a unit test calling the task function with a task_call of its own) has no worker
 * behind it: task_log writes to stderr, and the Redis and send functions fail with
 * TASK_EFAIL, type "RuntimeError".
 *
 * Return values follow task.h's task function contract, so a task can hand them on:
 *
 *     int rc = task_redis_command(call, &reply, 5.0, err, "INCR %s", key);
 *     if (rc != 0)
 *         return rc;
 *
 * 0 is success; TASK_EFAIL means err is filled (type and message) and the task fails with
 * it; -ETIMEDOUT and -ECANCELED come from the task's time limit or a kill and must be
 * returned unchanged. A function's own timeout argument is the task's own deadline, so it
 * ends in TASK_EFAIL with type "Timeout", never in -ETIMEDOUT. Calls that MAY YIELD must
 * be made from a greenlet (the task's, or one it spawned), as every green_* call.
 *
 * THE LENT CONNECTION. task_redis lends the task a connection of its own to the broker's
 * Redis (the --broker URL, authenticated, on its database): the first call connects (or
 * takes an idle connection the worker kept from an earlier task), later calls in the same
 * task return the same connection, and when the task function returns the worker takes it
 * back: a healthy connection with no command pending is kept for a later task, any other
 * is closed. The task may send any command on it with green_redis.h's calls (pipelines,
 * blocking commands such as BLPOP: they hold up this connection only) but must not change
 * its state for the next borrower: no SELECT, no MULTI left open, no CLIENT REPLY OFF, no
 * AUTH as another user. It must not free it. A connection that broke (a call returned
 * -ECONNRESET, -EIO or -EPROTO) stays valid but failed until the task returns; call
 * task_redis again for a fresh one. Each running task that asks holds its own connection,
 * so a worker at -c N opens up to N of them (plus its own few).
 *
 * SENDING TASKS. task_send pushes a message for another task onto a queue, exactly as a
 * producer would (LPUSH PREFIX:queue:NAME), on the lent connection; any worker consuming
 * that queue runs it. task_wait polls for its result (GET PREFIX:result:ID on the result
 * backend, about every 50 ms, backing off to 500 ms): a task that waits keeps its slot in
 * the pool while it waits, so tasks that wait for tasks that run on the same workers can
 * fill every slot and then wait for ever - give the subtasks their own queue and workers,
 * or bound the wait with its timeout (Celery's "never block on a subtask" applies).
 *
 * Thread-safety: none; like the green runtime, call these from greenlets of the worker's
 * hub only (never from a green_threadpool job). task_log alone may be called from any
 * thread and any stack.
 */
#ifndef WORKERD_TASK_ENV_H
#define WORKERD_TASK_ENV_H

#include "green_redis.h"
#include "task.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>

/* ---- logging ----------------------------------------------------------------------- */

enum task_log_level {
    TASK_LOG_DEBUG = 0,
    TASK_LOG_INFO = 1,
    TASK_LOG_WARNING = 2,
    TASK_LOG_ERROR = 3,
};

/* Write one line to the worker's log (stderr, or the journal under systemd) with the
 * task's id, as the worker's own lines about the task have it:
 *
 *     2026-11-26T03:40:01.123Z INFO  [task job-1] counted 3 visits
 *
 * Lines below the worker's --loglevel are dropped. The message is one line: control
 * characters in it are escaped, and it is cut at 4 KiB. Never yields, never fails
 * visibly; callable from any stack and any thread (a thread-pool job too, with a call
 * that stays valid while it runs). */
void task_log(const task_call *call, enum task_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void task_vlog(const task_call *call, enum task_log_level level, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

/* ---- Redis --------------------------------------------------------------------------- */

/* The connection lent to this call (see above) in *out. MAY YIELD (the first call
 * connects, within 10 s). Returns 0; TASK_EFAIL with err filled, type "RedisError", when
 * Redis cannot be reached ("RuntimeError" outside a worker); -ETIMEDOUT or -ECANCELED. */
int task_redis(const task_call *call, green_redis **out, task_error *err);

/* One command on the lent connection, formatted as green_redis_command formats it
 * ("SET %s %b", ...), within timeout seconds (< 0: no limit of its own). MAY YIELD.
 * Returns 0 with *reply set (free it with freeReplyObject); or TASK_EFAIL with err filled
 * and *reply NULL: type "RedisError" when Redis answered with an error (its text is the
 * message) or the connection failed, "Timeout" when timeout passed; or -ETIMEDOUT /
 * -ECANCELED. */
int task_redis_command(const task_call *call, redisReply **reply, double timeout, task_error *err,
                       const char *fmt, ...);

/* ---- sending tasks ------------------------------------------------------------------- */

/* The longest task id, in bytes (a message's id is 1..255 bytes, no NUL). */
#define TASK_ID_MAX 255

/* Options of a sent message; a zeroed struct (or NULL) takes every default. */
typedef struct task_send_opts {
    const char *queue;      /* the queue; NULL: "default" */
    const char *id;         /* the message id; NULL: a new random UUID */
    double expires;         /* seconds from now after which it is revoked, not run; 0: never */
    double time_limit;      /* the message's time_limit in seconds; 0: none */
    double soft_time_limit; /* the same for soft_time_limit */
    bool ignore_result;     /* store no result (then there is nothing to task_wait for) */
} task_send_opts;

/* Send task `name` with args (a JSON array, or NULL for []) and kwargs (a JSON object, or
 * NULL for {}); neither is stolen. The message is {"id", "task", "args", "kwargs",
 * "parent_id": call->id} plus the options that are set. id_out (if not NULL) receives the
 * message id. The task need not be registered in this worker. MAY YIELD. Returns 0 once
 * Redis has the message; TASK_EFAIL with err filled ("ValueError" for a bad name, queue,
 * id or arguments; "RedisError"; "MemoryError"; "RuntimeError" outside a worker); or
 * -ETIMEDOUT / -ECANCELED (the message may then have been sent or not). */
int task_send(const task_call *call, const char *name, const json_t *args, const json_t *kwargs,
              const task_send_opts *opts, char id_out[TASK_ID_MAX + 1], task_error *err);

/* Wait up to timeout seconds (< 0: no limit of its own; see above) for the final result
 * of the message id (SUCCESS, FAILURE or REVOKED). MAY YIELD. Returns 0 on SUCCESS with
 * *result set to a new reference to its value; TASK_EFAIL with err filled: the failed or
 * revoked task's own error type and message (as in its result), or "Timeout" when
 * timeout passed first, or "RedisError"; or -ETIMEDOUT / -ECANCELED. */
int task_wait(const task_call *call, const char *id, double timeout, json_t **result,
              task_error *err);

/* task_send, then task_wait for the message just sent. The same returns. */
int task_send_wait(const task_call *call, const char *name, const json_t *args,
                   const json_t *kwargs, const task_send_opts *opts, double timeout,
                   json_t **result, task_error *err);

#endif
