/*
 * task.h - the public task API: what a task function is, how it reports success, failure
 * and bad arguments, the registry that maps task names to functions, and helpers that
 * check arguments with consistent error messages. Plugins and the built-in tasks
 * (echo, sleep, fail, http.get, http.request) use exactly this header.
 *
 * A task function is called by the daemon on a greenlet of its pool, once per message:
 *
 *     static int add(const task_call *call, json_t **result, task_error *err) {
 *         double a, b;
 *         int rc = task_args_check(call, 2, NULL, err);
 *         if (rc == 0) rc = task_arg_number(call, 0, "a", -1e300, 1e300, &a, err);
 *         if (rc == 0) rc = task_arg_number(call, 1, "b", -1e300, 1e300, &b, err);
 *         if (rc != 0)
 *             return rc;
 *         *result = json_real(a + b);
 *         return *result ? 0 : task_error_set(err, "MemoryError", "out of memory");
 *     }
 *     ... task_registry_add("math.add", add);
 *
 * THE CONTRACT OF A TASK FUNCTION (task_fn):
 *
 *   - call and everything it points to are borrowed from the daemon and valid only during
 *     the call. call->args is a JSON array and call->kwargs a JSON object (never NULL;
 *     empty when the message had none). Do not modify them; copy (json_deep_copy) or
 *     incref what must outlive the call.
 *   - It runs on a greenlet and MAY YIELD: it may sleep, do HTTP or Redis through the
 *     green_* calls, spawn greenlets and join them. It must not block the OS thread
 *     (no plain sleep(), blocking sockets or long CPU loops without green_yield), since
 *     every other task of the process waits meanwhile.
 *   - Return values, exactly one of:
 *       0             success: *result is set to a new reference (json_null() is fine);
 *                     the daemon stores it as the SUCCESS result and releases it.
 *       TASK_EFAIL    the task failed: err->type (an exception-like class name such as
 *                     "HTTPError", "Timeout", "TaskError") and err->message are filled;
 *                     the daemon stores a FAILURE result (and may retry). *result unset.
 *       TASK_EINVAL   the arguments are wrong (type or value): err is filled with type
 *                     "TypeError" or "ValueError" and a message naming the task and the
 *                     argument. Retrying cannot help: the daemon dead-letters the message
 *                     and stores a FAILURE result.
 *       TASK_ERETRY   the task failed in a way that may pass (a 503, a refused
 *                     connection) and asks to run again later: err->type and
 *                     err->message say why, as for TASK_EFAIL, and err->retry_in may ask
 *                     for a delay (task_retry fills all three). While the message has
 *                     retries left (its "retries" < "max_retries", default 3), the daemon
 *                     stores a RETRY result and keeps the message (same id, "retries"
 *                     counted in it) in the scheduled set until the delay has passed:
 *                     no pool slot is held meanwhile. Without retries left, the FAILURE
 *                     result of TASK_EFAIL. *result unset.
 *       TASK_EDEFER   not now, and not a failure: run the same message again in
 *                     err->retry_in seconds (>= 0; err->type and err->message say why,
 *                     for the log only). The daemon keeps the message in the scheduled
 *                     set as for a retry, but its "retries" stays as it is and no result
 *                     is written (but the task was started: its STARTED result and
 *                     event stay; the worker defers the built-in http.* tasks the same
 *                     way before they start, while their destination host has no free
 *                     slot or turn under --http-host-concurrency or --http-host-rate).
 *                     *result unset.
 *       -ETIMEDOUT    a green_* call returned -ETIMEDOUT (the task's soft time limit,
 *       -ECANCELED    see "time limits" below) or -ECANCELED (the greenlet was killed: its
 *                     hard time limit, a cold shutdown): return it unchanged, after
 *                     cleaning up, and leave err as is. The daemon maps the first to a
 *                     time limit failure and the second to one or to putting the message
 *                     back on its queue. A task that opens its own green_timeout scope
 *                     reports its own deadline as TASK_EFAIL (type "Timeout") and
 *                     propagates the others.
 *     Any other return value is a bug in the task; the daemon stores a FAILURE result
 *     with type "InternalError" and, as the message, the errno's text for a negative
 *     errno (strerror(-rc): "No such file or directory") or "the task returned N, which
 *     is not a task result code" for a positive N. Out of memory is TASK_EFAIL with type
 *     "MemoryError".
 *   - Whatever it returns, it must leave nothing behind: no greenlets still running, no
 *     transfers, no references.
 *
 * Threads: the registry is filled at start-up, before any worker thread exists, and only
 * read afterwards; reads are then thread-safe. Adding or clearing is not thread-safe.
 */
#ifndef WORKERD_TASK_H
#define WORKERD_TASK_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* Return codes of a task function besides 0 and the negative errno values above. They are
 * positive so that they can never be mistaken for an errno. */
#define TASK_EFAIL 1
#define TASK_EINVAL 2
#define TASK_ERETRY 3
#define TASK_EDEFER 4

struct task_ctx;

/* One invocation; borrowed, valid only during the call (see above). */
typedef struct task_call {
    const char *id;       /* the message id, for logs; never NULL */
    const char *name;     /* the task name as registered, e.g. "http.get" */
    const json_t *args;   /* JSON array, never NULL */
    const json_t *kwargs; /* JSON object, never NULL */
    int retries;          /* how many times this message was retried before (0 first) */
    const bool *soft_lim; /* private to the daemon: read it with task_soft_limit_reached */
    struct task_ctx *ctx; /* private: the worker behind the call, for task_env.h's calls;
                             NULL when no worker made the call (a test) */
} task_call;

/* A failure description, filled by the task. Both strings are NUL-terminated and
 * truncated to fit. A longer reason (an external program's stderr, task_exec.h) is set
 * with task_error_set_long, which also keeps the whole text in long_message. Whoever calls
 * a task function sets long_message to NULL first (a zeroed struct will do) and afterwards
 * takes the reason from task_error_text and frees it with task_error_clear. message stays
 * at 1 KiB because the struct lives on the stack of every running task: a larger one
 * would commit another page of each parked greenlet. */
typedef struct task_error {
    char type[64];      /* class name: "HTTPError", "TypeError", ... */
    char message[1024]; /* human-readable reason */
    double retry_in;    /* TASK_ERETRY, TASK_EDEFER: seconds until the next attempt (0: at once),
                           e.g. from a Retry-After header; capped by the message's
                           "retry_backoff_max". < 0: the message's backoff, exponential
                           from "retry_backoff" seconds with full jitter (Celery's
                           autoretry). The daemon sets it to -1 before every call. */
    char *long_message; /* NULL, or the whole reason when message holds only its start
                           (malloc'd, task_error_set_long; freed by task_error_clear) */
} task_error;

typedef int (*task_fn)(const task_call *call, json_t **result, task_error *err);

/* ---- errors ------------------------------------------------------------------------- */

/* Fill err with type and a printf-style message; return TASK_EFAIL (task_error_set) or
 * TASK_EINVAL (task_error_invalid, for "TypeError" / "ValueError"), so that a task can
 * write `return task_error_set(err, "TaskError", "no such user %s", name);`.
 * Does not yield; callable anywhere. */
int task_error_set(task_error *err, const char *type, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int task_error_invalid(task_error *err, const char *type, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Fill err with type and a ready-made text of any length: message gets as much of it as
 * fits and, when that is not all, long_message a copy of the whole (left NULL when out of
 * memory: the reason is then cut short, never lost). Returns TASK_EFAIL. Does not yield. */
int task_error_set_long(task_error *err, const char *type, const char *text);

/* The whole reason: long_message when set, else message. */
const char *task_error_text(const task_error *err);

/* Free long_message and set it to NULL. */
void task_error_clear(task_error *err);

/* Ask for a retry (TASK_ERETRY): fill err with type, the message and retry_in = seconds
 * (< 0: the message's backoff); return TASK_ERETRY, so that a task can write
 * `return task_retry(err, -1, "HTTPError", "503 from %s", url);`. Does not yield. */
int task_retry(task_error *err, double seconds, const char *type, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* ---- time limits -------------------------------------------------------------------- */

/*
 * A message's soft_time_limit (default: workerd's --soft-time-limit) asks the task to
 * stop. When it runs out, the task's pending blocking call, or its next one if it is
 * computing, returns -ETIMEDOUT, once: the calls after it work normally, so the task can
 * clean up (close what it opened, save partial work, even make a last request) and then
 * return whatever it decides:
 *   - 0 with its own *result: SUCCESS, a partial result is allowed;
 *   - TASK_EFAIL: FAILURE with its own error;
 *   - the -ETIMEDOUT itself (what a task that ignores limits does): FAILURE, type
 *     SoftTimeLimitExceeded.
 * task_soft_limit_reached(call) tells that -ETIMEDOUT from the task's own deadlines (a
 * green_timeout scope it opened, a timeout argument it passed): true from the moment the
 * soft limit ran out. Call it where a blocking call returned -ETIMEDOUT, or any time to
 * poll. Does not yield; callable on the task's greenlet during the call only.
 *
 * The hard time_limit (--time-limit) applies all along, also after the soft one: when it
 * runs out, the task is killed (its blocking calls return -ECANCELED, again about every
 * second for as long as it keeps making them; a transfer in flight is aborted and its
 * connection closed) and the result is FAILURE, type TimeLimitExceeded, whatever the task
 * returns. A task that computes without blocking cannot be stopped inside its process;
 * under --processes its supervisor replaces the whole process (README.md "Time limits").
 */
bool task_soft_limit_reached(const task_call *call);

/* ---- the registry ------------------------------------------------------------------- */

/* Register fn under name. A name is 1..128 bytes of letters, digits and "_-.:", starting
 * with a letter or "_", with no empty dotted component ("a..b", "a.", ".a" are refused).
 * Returns 0, -EEXIST (name already registered), -EINVAL (bad name or fn NULL), -ENOMEM.
 * The name is copied. Not thread-safe (start-up only). Does not yield. */
int task_registry_add(const char *name, task_fn fn);

/* The function registered under name, or NULL. Does not yield; thread-safe once the
 * registry is no longer modified. */
task_fn task_registry_find(const char *name);

/* The registered names in sorted order: fills out[0..min(count, cap)) with pointers owned
 * by the registry (valid until task_registry_clear) and returns count, the number of
 * registered tasks (call with cap 0 to size the array). For --help and start-up logs. */
size_t task_registry_names(const char **out, size_t cap);

/* Forget every registration and free the registry (tests; program exit). Not
 * thread-safe. */
void task_registry_clear(void);

/* Limits that bound what an http.* task message may ask for: each kwarg above its ceiling
 * is a ValueError. A zero field takes its default.
 *
 * deny and allow are the address policy (task_http_policy.h): comma-separated addresses,
 * CIDR networks and host names ("10.0.0.0/8,127.0.0.0/8", "127.0.0.1,*.internal.example")
 * that an http.* task may not / may connect to, on top of the built-in deny list
 * (link-local with the cloud metadata services, unspecified, multicast). NULL or "" for
 * none.
 *
 * methods: the HTTP methods http.request may send beyond the standard GET, HEAD, POST,
 * PUT, PATCH, DELETE and OPTIONS, comma-separated ("PROPFIND,REPORT"; blanks around an
 * entry are ignored). Each is an HTTP token (RFC 7230: letters, digits and
 * !#$%&'*+-.^_`|~) of at most TASK_HTTP_METHOD_MAX bytes, at most TASK_HTTP_METHODS_MAX of
 * them; upper-case is recommended, and the comparison ignores case, since http.request
 * sends the method upper-cased. Any other method is a FAILURE (HTTPError) before a
 * connection is made: without this, a task could send "SET /x HTTP/1.1" to a Redis on
 * loopback. NULL or "" for none.
 *
 * The strings are parsed at registration and not kept. */
typedef struct task_http_limits {
    double max_timeout;      /* seconds per request; default 300 */
    size_t max_size;         /* response body bytes; default 100 MiB */
    long max_redirects;      /* default 20 */
    size_t max_headers;      /* request headers, and response header lines; default 100 */
    size_t max_header_bytes; /* request headers, and response headers; default 64 KiB */
    const char *deny;        /* --http-deny */
    const char *allow;       /* --http-allow */
    const char *methods;     /* --http-methods */
    size_t max_result;       /* bytes of JSON a result may take (--max-result-size): a body
                                that could not fit is not read past it, and fails with
                                "ResultTooLarge"; 0: no limit */
} task_http_limits;

#define TASK_HTTP_METHOD_MAX 32
#define TASK_HTTP_METHODS_MAX 32

/* Check a methods list (above) without keeping it: NULL when it is valid (NULL and "" are),
 * else a static sentence saying what is wrong, for the settings code's message. Pure;
 * callable anywhere. */
const char *task_http_check_methods(const char *list);

#define TASK_HTTP_DEFAULT_MAX_TIMEOUT 300.0
#define TASK_HTTP_DEFAULT_MAX_SIZE ((size_t)100 << 20)
#define TASK_HTTP_DEFAULT_MAX_REDIRECTS 20L
#define TASK_HTTP_DEFAULT_MAX_HEADERS ((size_t)100)
#define TASK_HTTP_DEFAULT_MAX_HEADER_BYTES ((size_t)64 << 10)

/* Register the built-in tasks: echo, sleep, fail, http.get, http.request, http.scrape (see
 * task_builtin.c, task_http.c and task_scrape.c for their arguments and results). limits (NULL: the
 * defaults) is copied and applies to every http.* call of the process. Returns 0,
 * -EINVAL when limits->deny, ->allow or ->methods is not a valid list (check them first
 * with task_http_policy_validate and task_http_check_methods for a message; the http.*
 * tasks are then not registered),
 * -ENOMEM, or the first error of task_registry_add (-EEXIST if called twice).
 * Start-up only. */
int task_register_builtins(const task_http_limits *limits);

/* Free the calling thread's cached curl easy handles (http.* tasks keep a few for reuse).
 * Call it after the thread's hub has ended, before curl_global_cleanup. Not thread-safe
 * with respect to the same thread's running tasks (there are none by then). */
void task_http_cleanup(void);

/* ---- argument helpers --------------------------------------------------------------- */

/*
 * Each argument of a task has a position and a name: helpers look it up as
 * call->args[index] or as call->kwargs[name] (a JSON null counts as absent). Pass
 * TASK_ARG_KWONLY as index for keyword-only arguments. Error messages name the task and
 * the argument the same way everywhere, e.g.
 *
 *     http.get: argument 1 (url) must be a string, got integer
 *     http.get: timeout must be between 0.001 and 300, got 1000
 *     sleep: missing required argument 1 (seconds)
 *
 * On a wrong or missing argument they fill err (TypeError or ValueError) and return
 * TASK_EINVAL; on success 0. Returned pointers borrow from call. None yields.
 */
#define TASK_ARG_KWONLY ((size_t)-1)

/* Refuse more than max_args positional arguments and any kwarg not listed in kwargs (a
 * NULL-terminated list, or NULL for none). Like Python's TypeError for f(1, 2, 3) or
 * f(timout=1): a typo must not be silently ignored. */
int task_args_check(const task_call *call, size_t max_args, const char *const *kwargs,
                    task_error *err);

/* The argument as a JSON value: *out is NULL when it is absent and not required. Given
 * both positionally and by name is a TypeError. */
int task_arg_value(const task_call *call, size_t index, const char *name, bool required,
                   const json_t **out, task_error *err);

/* Required arguments of one type. Numbers accept integers and reals (not booleans) and
 * must lie in [min, max]; integers must be JSON integers in [min, max]. */
int task_arg_string(const task_call *call, size_t index, const char *name, const char **out,
                    task_error *err);
int task_arg_number(const task_call *call, size_t index, const char *name, double min, double max,
                    double *out, task_error *err);

/* Optional arguments: *out receives def when the argument is absent. For strings the
 * length is stored in *len when len is not NULL, and then the string may contain NUL
 * bytes; without len (and in task_arg_string) a string with a NUL is a ValueError, so
 * that it is never used truncated. For objects *out is NULL when absent. */
int task_opt_string(const task_call *call, size_t index, const char *name, const char *def,
                    const char **out, size_t *len, task_error *err);
int task_opt_number(const task_call *call, size_t index, const char *name, double def, double min,
                    double max, double *out, task_error *err);
int task_opt_integer(const task_call *call, size_t index, const char *name, long long def,
                     long long min, long long max, long long *out, task_error *err);
int task_opt_bool(const task_call *call, size_t index, const char *name, bool def, bool *out,
                  task_error *err);
int task_opt_object(const task_call *call, size_t index, const char *name, const json_t **out,
                    task_error *err);

/* The JSON type of v as a word for messages: "object", "array", "string", "integer",
 * "real", "boolean", "null". */
const char *task_json_type_name(const json_t *v);

#endif
