/*
 * task_builtin.c - the small built-in tasks, and task_register_builtins, which registers
 * them together with the http.* tasks of task_http.c and http.scrape (task_scrape.c).
 *
 *   echo(*args)          returns args as a list (a copy), e.g. ["a", 1] -> ["a", 1].
 *                        Takes no keyword arguments. For smoke tests and benchmarks.
 *   sleep(seconds)       green_sleep for seconds (a number, fractions allowed, 0 to one
 *                        day) and return seconds as given (1 -> 1, 0.5 -> 0.5). Parks only
 *                        its own greenlet. For tests of time limits, shutdown and scale.
 *   fail(message=...)    fail with type "TaskError" and message (a string; default
 *                        "failed on purpose"). For tests of failure results and retries:
 *                        with retry=true it asks for a retry (TASK_ERETRY) instead, after
 *                        retry_in seconds (a number, 0 to a day; default the message's
 *                        backoff); with succeed_after=N it returns N instead (SUCCESS)
 *                        once the message has been retried N times.
 *
 * They run on a task's greenlet; sleep yields, the others do not.
 */
#include "task.h"
#include "task_internal.h"

#include "green.h"

#include <errno.h>

/* A day: longer is surely a mistake in the message, and would hold a slot for ever. */
#define SLEEP_MAX_SECONDS 86400.0

static int out_of_memory(task_error *err) {
    return task_error_set(err, "MemoryError", "out of memory");
}

static int task_echo(const task_call *call, json_t **result, task_error *err) {
    int rc = task_args_check(call, (size_t)-1, NULL, err);
    if (rc != 0)
        return rc;
    /* A deep copy, not a reference: args is borrowed and const, and the result may be
     * kept (and changed) by the daemon after the message is gone. */
    json_t *copy = json_deep_copy(call->args);
    if (copy == NULL)
        return out_of_memory(err);
    *result = copy;
    return 0;
}

static int task_sleep(const task_call *call, json_t **result, task_error *err) {
    static const char *const kwargs[] = {"seconds", NULL};
    double seconds;
    int rc = task_args_check(call, 1, kwargs, err);
    if (rc == 0)
        rc = task_arg_number(call, 0, "seconds", 0, SLEEP_MAX_SECONDS, &seconds, err);
    if (rc != 0)
        return rc;
    const json_t *given;
    task_arg_value(call, 0, "seconds", true, &given, err); /* cannot fail: checked above */

    rc = green_sleep(seconds);
    if (rc == -ETIMEDOUT || rc == -ECANCELED)
        return rc;
    if (rc != 0)
        return task_error_set(err, "InternalError", "sleep: green_sleep failed (%d)", rc);
    json_t *copy = json_deep_copy(given);
    if (copy == NULL)
        return out_of_memory(err);
    *result = copy;
    return 0;
}

static int task_fail(const task_call *call, json_t **result, task_error *err) {
    static const char *const kwargs[] = {"message", "retry", "retry_in", "succeed_after", NULL};
    const char *message;
    bool retry;
    double retry_in;
    long long succeed_after;
    int rc = task_args_check(call, 1, kwargs, err);
    if (rc == 0)
        rc = task_opt_string(call, 0, "message", "failed on purpose", &message, NULL, err);
    if (rc == 0)
        rc = task_opt_bool(call, TASK_ARG_KWONLY, "retry", false, &retry, err);
    if (rc == 0)
        rc = task_opt_number(call, TASK_ARG_KWONLY, "retry_in", -1, 0, SLEEP_MAX_SECONDS, &retry_in,
                             err);
    if (rc == 0)
        rc = task_opt_integer(call, TASK_ARG_KWONLY, "succeed_after", -1, 0, 1000000,
                              &succeed_after, err);
    if (rc != 0)
        return rc;
    if (succeed_after >= 0 && call->retries >= succeed_after) {
        *result = json_integer(call->retries);
        return *result ? 0 : out_of_memory(err);
    }
    if (retry)
        return task_retry(err, retry_in, "TaskError", "%s", message);
    return task_error_set(err, "TaskError", "%s", message);
}

int task_register_builtins(const task_http_limits *limits) {
    int rc = task_registry_add("echo", task_echo);
    if (rc == 0)
        rc = task_registry_add("sleep", task_sleep);
    if (rc == 0)
        rc = task_registry_add("fail", task_fail);
    if (rc == 0)
        rc = task__http_register(limits);
    if (rc == 0)
        rc = task__scrape_register();
    return rc;
}
