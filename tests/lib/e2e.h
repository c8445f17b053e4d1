/*
 * e2e.h - helpers for the end-to-end tests of the workerd daemon: run the real binary as a
 * child against a real redis-server, read its log, signal it, wait for its exit, and talk
 * to Redis the way a producer does (LPUSH a message, poll for its result).
 *
 * The worker runs with its stdout and stderr appended to a log file in a private
 * directory; the path is printed when it starts, and the directory is kept when a test
 * fails (an ASSERT aborts before the cleanup), so the log can be read afterwards. The
 * child has PR_SET_PDEATHSIG(SIGKILL): a failed test never leaves a worker running.
 *
 * Redis helpers use a synchronous hiredis context and the default key prefix "workerd".
 * They ASSERT on a broken connection or an unexpected reply type, since a test cannot go
 * on without its Redis. Everything here is for single-threaded test programs; nothing
 * yields (there is no green runtime in these tests).
 */
#ifndef WORKERD_TESTS_E2E_H
#define WORKERD_TESTS_E2E_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#include <sys/types.h>

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "testlib.h"

/* A workerd child process. */
typedef struct e2e_worker {
    pid_t pid;  /* 0 once reaped */
    int status; /* e2e_worker_wait's result once reaped */
    char *dir;  /* private directory holding the log */
    char *log;  /* the log file: the worker's stdout and stderr */
} e2e_worker;

/* Start WORKERD_BIN with "-b redis://127.0.0.1:<port>/0" (omitted when port is 0), then
 * the NULL-terminated args (may be NULL). Does not wait for anything; see e2e_log_wait.
 * The macros pass WORKERD_BIN, which is defined only for the test programs. */
void e2e__worker_start(const char *bin, e2e_worker *w, int port, const char *const *args);
#define e2e_worker_start(w, port, args) e2e__worker_start(WORKERD_BIN, (w), (port), (args))
/* Variadic form, the argument list ending at the port's NULL-terminated tail:
 * E2E_START(&w, port) or E2E_START(&w, port, "-c", "3"). */
void e2e__worker_startl(const char *bin, e2e_worker *w, int port, ...);
#define E2E_START(w, ...) e2e__worker_startl(WORKERD_BIN, (w), __VA_ARGS__, (const char *)NULL)

/* The same, then wait until it logs "ready: consuming" (ASSERTs within 10 s). */
#define E2E_START_READY(w, ...)                                                                    \
    do {                                                                                           \
        E2E_START(w, __VA_ARGS__);                                                                 \
        e2e_wait_ready(w);                                                                         \
    } while (0)
void e2e_wait_ready(e2e_worker *w);

/* The whole log so far, as a malloc'd NUL-terminated string (free it); "" when empty. */
char *e2e_log_read(const e2e_worker *w);

/* Occurrences of needle in the log so far. */
int e2e_log_count(const e2e_worker *w, const char *needle);

/* Poll the log every 10 ms until it contains needle at least `times` times; true when it
 * did within timeout seconds. Also returns (false) early if the worker exited. */
bool e2e_log_wait_n(e2e_worker *w, const char *needle, int times, double timeout);
#define e2e_log_wait(w, needle, timeout) e2e_log_wait_n((w), (needle), 1, (timeout))

/* Print the log to stderr (for a failure's context). */
void e2e_log_dump(const e2e_worker *w);

/* Send a signal (nothing if already reaped). */
void e2e_worker_signal(e2e_worker *w, int sig);

/* Wait up to timeout seconds for the worker to exit. Returns its exit code (0..255), 128 +
 * the signal number when a signal killed it, or -1 when it is still running. Once reaped,
 * returns the same value again. */
int e2e_worker_wait(e2e_worker *w, double timeout);

/* End the test's worker: SIGKILL it if still running, reap it, remove its directory. */
void e2e_worker_stop(e2e_worker *w);

/* "redis://127.0.0.1:<port>/0" in a static buffer (one at a time). */
const char *e2e_url(int port);

/* ---- Redis, as a producer sees it ------------------------------------------------------ */

/* A connected synchronous context to 127.0.0.1:port (ASSERTs); free with redisFree. */
redisContext *e2e_redis(int port);

/* LPUSH the message onto workerd:queue:<queue>; len bytes (use strlen for text). */
void e2e_push_len(redisContext *c, const char *queue, const char *msg, size_t len);
#define e2e_push(c, queue, msg) e2e_push_len((c), (queue), (msg), strlen(msg))

/* e2e_push of the printf-formatted message (up to 2047 bytes). */
void e2e_pushf(redisContext *c, const char *queue, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* LPUSH {"id": id, "task": task, "args": <args_json>} onto the queue. */
void e2e_push_task(redisContext *c, const char *queue, const char *id, const char *task,
                   const char *args_json);

/* Run a command whose reply is an integer (or nil, read as -1); ASSERTs otherwise. */
long long e2e_int(redisContext *c, const char *fmt, ...);

/* GET key as a malloc'd string (free it), or NULL when the key does not exist. */
char *e2e_get(redisContext *c, const char *key);

/* The result document of task id (workerd:result:<id>) parsed, or NULL when absent. */
json_t *e2e_result(redisContext *c, const char *id);

/* Poll the result every 10 ms until it exists with a final status (anything but STARTED
 * and RETRY; or exactly `status` when not NULL), for up to timeout seconds. Returns it
 * (decref it), or NULL on timeout. */
json_t *e2e_wait_result(redisContext *c, const char *id, const char *status, double timeout);

/* The entries of workerd:dead, parsed, newest first: a JSON array (decref it). */
json_t *e2e_dead_letters(redisContext *c);

/* Poll until workerd:dead holds at least n entries; true if it did within timeout. */
bool e2e_wait_dead(redisContext *c, long long n, double timeout);

/* Keys matching a pattern (KEYS; fine on a test Redis). */
long long e2e_count_keys(redisContext *c, const char *pattern);

/* How many times the server has run a command (lower case, e.g. "get") since it started,
 * from INFO commandstats: lets a test wait until another process has made a call. */
long long e2e_command_calls(redisContext *c, const char *command);

/* The Redis server's clock (TIME), unix seconds. */
double e2e_redis_time(redisContext *c);

/* A new connection to 127.0.0.1:port subscribed to channel (a result's channel is its
 * key, workerd:result:<id>): every result the worker stores for that id comes in order,
 * RETRY ones too. Free with redisFree. */
redisContext *e2e_subscribe(int port, const char *channel);

/* The next message published to sub's channel, parsed (decref it), or NULL when none came
 * within timeout seconds. */
json_t *e2e_next_published(redisContext *sub, double timeout);

/* ---- JSON field access ----------------------------------------------------------------- */

/* obj[key] as a string / a number (integer or real) / NULL or NaN when absent or of
 * another type. obj may be NULL. */
const char *e2e_jstr(const json_t *obj, const char *key);
double e2e_jnum(const json_t *obj, const char *key);

/* The result's error message (error.message) or NULL. */
const char *e2e_jerror(const json_t *result);

/* One worker on its own Redis, with a client for the test: the set-up most end-to-end
 * tests share. */
typedef struct e2e_env {
    test_redis redis;
    redisContext *c;
    e2e_worker w; /* started by the test (E2E_START(&e.w, e.redis.port, ...)) */
} e2e_env;

/* Start a private redis-server and connect a client; no worker yet. */
void e2e_env_start(e2e_env *e);

/* Stop the worker if one was started (SIGTERM, and ASSERT it exits 0 within 30 s, its log
 * printed otherwise), then the client and Redis. */
void e2e_env_end(e2e_env *e);

/* The final result of id within timeout seconds, or the test fails with the worker's log. */
json_t *e2e_must_result_within(e2e_env *e, const char *id, double timeout);

/* e2e_must_result_within 10 s. */
json_t *e2e_must_result(e2e_env *e, const char *id);

#endif
