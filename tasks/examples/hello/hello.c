/*
 * hello.c - an example workerd plugin: five tasks that show what a task can use.
 *
 *   hello.greet(name, greeting="Hello")  -> "Hello, Ada!"             arguments, results
 *   hello.visits(page)                    -> 3                         Redis, logging
 *   hello.fetch(url, timeout=10)          -> {"status": 200, "bytes": 3}   HTTP
 *   hello.primes(below)                   -> 25                        the thread pool
 *   hello.greet_all(names)                -> ["Hello, Ada!", ...]      sending tasks
 *
 * Build it against the installed SDK (see CMakeLists.txt), then
 *
 *     workerd --load ./build/hello.so
 *     workerctl call hello.greet Ada --wait
 *
 * Every task runs on a greenlet of the worker: it may wait (for Redis, HTTP, a sleep, a
 * thread-pool job) as long as it likes, but it must not block the thread (no sleep(), no
 * blocking socket, no long computation outside the thread pool), since every other task of
 * the worker waits meanwhile. The contract of a task function is in <workerd/task.h>,
 * what a task can ask of its worker in <workerd/task_env.h>.
 */
#include <workerd/green.h>
#include <workerd/green_http.h>
#include <workerd/green_threadpool.h>
#include <workerd/task_plugin.h>

#include <stdlib.h>
#include <string.h>

WORKERD_PLUGIN_DECLARE();

static int out_of_memory(task_error *err) {
    return task_error_set(err, "MemoryError", "out of memory");
}

/* hello.greet(name, greeting="Hello"): the argument helpers check types and word the
 * errors ("hello.greet: argument 1 (name) must be a string, got integer"). */
static int greet(const task_call *call, json_t **result, task_error *err) {
    static const char *const kwargs[] = {"name", "greeting", NULL};
    const char *name, *greeting;
    int rc = task_args_check(call, 2, kwargs, err);
    if (rc == 0)
        rc = task_arg_string(call, 0, "name", &name, err);
    if (rc == 0)
        rc = task_opt_string(call, 1, "greeting", "Hello", &greeting, NULL, err);
    if (rc != 0)
        return rc;
    *result = json_sprintf("%s, %s!", greeting, name);
    return *result ? 0 : out_of_memory(err);
}

/* hello.visits(page): count a visit in Redis, on the connection the worker lends the task,
 * and say so in the worker's log (the line carries the task id). */
static int visits(const task_call *call, json_t **result, task_error *err) {
    const char *page;
    int rc = task_args_check(call, 1, NULL, err);
    if (rc == 0)
        rc = task_arg_string(call, 0, "page", &page, err);
    if (rc != 0)
        return rc;
    redisReply *reply;
    rc = task_redis_command(call, &reply, 5.0, err, "INCR hello:visits:%s", page);
    if (rc != 0)
        return rc; /* a failure with its reason, or the time limit: handed on as it is */
    long long n = reply->integer;
    freeReplyObject(reply);
    task_log(call, TASK_LOG_INFO, "page %s has %lld visits", page, n);
    *result = json_integer(n);
    return *result ? 0 : out_of_memory(err);
}

/* hello.fetch(url, timeout=10): an HTTP GET on the worker's loop. The transfer parks this
 * task only; thousands can be in flight at once. */
static int fetch(const task_call *call, json_t **result, task_error *err) {
    static const char *const kwargs[] = {"url", "timeout", NULL};
    const char *url;
    double timeout;
    int rc = task_args_check(call, 2, kwargs, err);
    if (rc == 0)
        rc = task_arg_string(call, 0, "url", &url, err);
    if (rc == 0)
        rc = task_opt_number(call, 1, "timeout", 10, 0.001, 300, &timeout, err);
    if (rc != 0)
        return rc;
    long status = 0;
    green_http_buf body = {.max = 10 << 20};
    green_timeout own;
    green_timeout_start(&own, timeout);
    rc = green_http_get(url, -1, &status, &body);
    bool mine = green_timeout_end(&own);
    size_t bytes = body.len;
    green_http_buf_free(&body);
    if (rc == -ETIMEDOUT && mine)
        return task_error_set(err, "Timeout", "%s: no answer within %g s", url, timeout);
    if (rc == -ETIMEDOUT || rc == -ECANCELED)
        return rc; /* the task's time limit, or a shutdown: not ours to report */
    if (rc != 0)
        return task_error_set(err, "HTTPError", "%s: %s", url, strerror(-rc));
    *result = json_pack("{s:i, s:I}", "status", (int)status, "bytes", (json_int_t)bytes);
    return *result ? 0 : out_of_memory(err);
}

/* hello.primes(below): CPU work goes to the worker's thread pool, so that the loop keeps
 * serving the other tasks. The job's memory is the job's own: if the task is killed or
 * its time limit passes, the call returns at once while the job runs on to its end, and
 * the release hook frees what it used then. */
struct primes_job {
    long below;
    long count;
};

static void *count_primes(void *arg) { /* on a pool thread: no green_* calls here */
    struct primes_job *job = arg;
    for (long n = 2; n < job->below; n++) {
        bool prime = true;
        for (long d = 2; d * d <= n && prime; d++)
            prime = n % d != 0;
        job->count += prime;
    }
    return job;
}

static void free_job(void *arg, void *ret) {
    (void)ret;
    free(arg);
}

static int primes(const task_call *call, json_t **result, task_error *err) {
    double below;
    int rc = task_args_check(call, 1, NULL, err);
    if (rc == 0)
        rc = task_arg_number(call, 0, "below", 2, 1e8, &below, err);
    if (rc != 0)
        return rc;
    struct primes_job *job = calloc(1, sizeof *job);
    if (job == NULL)
        return out_of_memory(err);
    job->below = (long)below;
    rc = green_threadpool_call_ex(count_primes, job, NULL, -1, free_job);
    if (rc != 0) /* the job is free_job's now */
        return rc == -ETIMEDOUT || rc == -ECANCELED
                   ? rc
                   : task_error_set(err, "RuntimeError", "thread pool: %s", strerror(-rc));
    *result = json_integer(job->count);
    free(job);
    return *result ? 0 : out_of_memory(err);
}

/* hello.greet_all(names): send one hello.greet per name (any worker may run them), then
 * wait for every result. A task that waits keeps its slot meanwhile: run the subtasks on
 * workers that have free slots (here: -c above 1), or on a queue of their own. */
static int greet_all(const task_call *call, json_t **result, task_error *err) {
    const json_t *names;
    int rc = task_args_check(call, 1, NULL, err);
    if (rc == 0)
        rc = task_arg_value(call, 0, "names", true, &names, err);
    if (rc == 0 && !json_is_array(names))
        rc = task_error_invalid(err, "TypeError", "hello.greet_all: names must be a list");
    if (rc != 0)
        return rc;
    size_t n = json_array_size(names);
    char(*ids)[TASK_ID_MAX + 1] = calloc(n ? n : 1, sizeof *ids);
    json_t *greetings = json_array();
    if (ids == NULL || greetings == NULL) {
        free(ids);
        json_decref(greetings);
        return out_of_memory(err);
    }
    for (size_t i = 0; i < n && rc == 0; i++) {
        json_t *args = json_pack("[O]", json_array_get(names, i));
        rc = args ? task_send(call, "hello.greet", args, NULL, NULL, ids[i], err)
                  : out_of_memory(err);
        json_decref(args);
    }
    for (size_t i = 0; i < n && rc == 0; i++) {
        json_t *greeting;
        rc = task_wait(call, ids[i], 30, &greeting, err);
        if (rc == 0)
            json_array_append_new(greetings, greeting);
    }
    free(ids);
    if (rc != 0) {
        json_decref(greetings);
        return rc;
    }
    *result = greetings;
    return 0;
}

/* Called once when workerd loads the plugin, before any task runs: register the tasks
 * (nothing else: no threads, no connections). A non-zero return stops workerd. */
int workerd_plugin_init(void) {
    int rc = task_registry_add("hello.greet", greet);
    if (rc == 0)
        rc = task_registry_add("hello.visits", visits);
    if (rc == 0)
        rc = task_registry_add("hello.fetch", fetch);
    if (rc == 0)
        rc = task_registry_add("hello.primes", primes);
    if (rc == 0)
        rc = task_registry_add("hello.greet_all", greet_all);
    return rc;
}
