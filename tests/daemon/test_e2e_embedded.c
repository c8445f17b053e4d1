/*
 * test_e2e_embedded.c - the worker run inside the test program, for what the workerd
 * binary cannot be made to do from outside: run a task of the test's own (a plugin's task
 * breaking its contract), or start on a green runtime whose greenlet limit makes each
 * start-up step fail in turn.
 *
 * The test forks; the child does what wd_main.c does (read the options from an argument
 * vector, register tasks, green_run the worker) with its stdout and stderr in a log file,
 * and exits with wd_worker_run's code. The parent drives it like the binary, through the
 * e2e.h helpers: the log, signals, the exit code, and the keys in a real redis-server.
 */
#include "e2e.h"
#include "embedded.h"
#include "testlib.h"

#include "green.h"
#include "task.h"
#include "wd_log.h"
#include "wd_options.h"
#include "wd_worker.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

/* ---- the embedded worker -------------------------------------------------------------- */

/* Tasks that break task.h's contract by returning what is not a task result code. */
static int task_returns_errno(const task_call *call, json_t **result, task_error *err) {
    (void)call, (void)result, (void)err;
    return -ENOENT;
}

static int task_returns_seven(const task_call *call, json_t **result, task_error *err) {
    (void)call, (void)result, (void)err;
    return 7;
}

struct child {
    const struct wd_options *opts;
    int code;
};

static void *worker_greenlet(void *arg) {
    struct child *c = arg;
    c->code = wd_worker_run(c->opts, NULL, NULL);
    return NULL;
}

struct child_args {
    int port;
    size_t max_greenlets;
    const char *const *args;
};

/* In the child: become the worker, then exit with its code. */
static void run_child(const char *log, void *arg) {
    const struct child_args *ca = arg;
    struct wd_options opts;
    embedded_child_setup(log, ca->port, ca->args, &opts);
    if (task_registry_add("test.returns_errno", task_returns_errno) != 0 ||
        task_registry_add("test.returns_seven", task_returns_seven) != 0)
        _exit(125);
    struct child c = {&opts, 1};
    green_config cfg = {.max_greenlets = ca->max_greenlets};
    int rc = green_run(NULL, &cfg, worker_greenlet, &c, NULL);
    fflush(NULL);
    _exit(rc != 0 ? 124 : c.code);
}

/* Start the embedded worker on Redis at port, with at most max_greenlets greenlets alive
 * (0: the runtime's default) and the NULL-terminated extra args (may be NULL). */
static void start_embedded(e2e_worker *w, int port, size_t max_greenlets, const char *const *args) {
    struct child_args ca = {port, max_greenlets, args};
    embedded_start(w, "embedded", run_child, &ca);
}

/* ---- a task breaking the contract ----------------------------------------------------- */

/* task.h: any return value besides 0, TASK_EFAIL, TASK_EINVAL, -ETIMEDOUT from a time
 * limit and -ECANCELED from a shutdown is a bug in the task, stored as a FAILURE of type
 * InternalError: with the errno's text for a negative errno, and without pretending a
 * positive number is one. */
TEST(task_returning_an_errno_fails_with_internal_error_and_its_text) {
    e2e_env e;
    e2e_env_start(&e);
    start_embedded(&e.w, e.redis.port, 0, NULL);
    e2e_wait_ready(&e.w);
    e2e_push_task(e.c, "default", "bad-1", "test.returns_errno", "[]");
    json_t *res = e2e_must_result(&e, "bad-1");
    ASSERT_STREQ(e2e_jstr(res, "status"), "FAILURE");
    json_t *error = json_object_get(res, "error");
    ASSERT_STREQ(e2e_jstr(error, "type"), "InternalError");
    ASSERT_STREQ(e2e_jstr(error, "message"), strerror(ENOENT));
    json_decref(res);
    e2e_env_end(&e);
}

TEST(task_returning_an_unknown_positive_code_fails_with_internal_error) {
    e2e_env e;
    e2e_env_start(&e);
    start_embedded(&e.w, e.redis.port, 0, NULL);
    e2e_wait_ready(&e.w);
    e2e_push_task(e.c, "default", "bad-2", "test.returns_seven", "[]");
    json_t *res = e2e_must_result(&e, "bad-2");
    ASSERT_STREQ(e2e_jstr(res, "status"), "FAILURE");
    json_t *error = json_object_get(res, "error");
    ASSERT_STREQ(e2e_jstr(error, "type"), "InternalError");
    /* Not strerror(7), "Argument list too long", which has nothing to do with it. */
    ASSERT_STREQ(e2e_jstr(error, "message"),
                 "the task returned 7, which is not a task result code");
    json_decref(res);
    e2e_env_end(&e);
}

/* ---- start-up failures --------------------------------------------------------------- */

/* Every step of the start-up that cannot be done is fatal and logged: with a greenlet limit
 * of k, the k-th greenlet the start-up needs cannot be spawned (a blocking connection, the
 * acker, the heartbeat, the fetcher, a waker, the HTTP server, the event publisher). For
 * every k below what a full start needs, the worker logs one line "start-up failed: <what>:
 * <why>", never says it is ready, and exits 1; it neither exits 0 nor waits for ever. */
TEST(every_start_up_failure_is_fatal_and_logged) {
    e2e_env e;
    e2e_env_start(&e);
    const char *args[] = {"-Q", "high,low", "-E", "--http", "127.0.0.1:0", NULL};
    int failed = 0;
    bool ready = false;
    char what[64][160];
    for (size_t k = 1; !ready && k < 64; k++) {
        start_embedded(&e.w, e.redis.port, k, args);
        bool said = e2e_log_wait(&e.w, "ready: consuming", 10.0);
        if (said) {
            ready = true;
            e2e_worker_signal(&e.w, SIGTERM);
            ASSERT_EQ(e2e_worker_wait(&e.w, 30.0), 0);
        } else {
            int code = e2e_worker_wait(&e.w, 30.0);
            char *log = e2e_log_read(&e.w);
            const char *line = strstr(log, "start-up failed: ");
            if (code != 1 || line == NULL || strstr(line + 1, "start-up failed: ") != NULL) {
                e2e_log_dump(&e.w);
                test__fail(__FILE__, __LINE__,
                           "greenlet limit %zu: exit code %d, want 1 and one line \"start-up "
                           "failed: ...\"",
                           k, code);
            }
            snprintf(what[failed], sizeof what[failed], "%.*s", (int)strcspn(line, "\n"), line);
            printf("limit %zu: %s\n", k, what[failed]);
            failed++;
            free(log);
        }
        e2e_worker_stop(&e.w);
    }
    ASSERT(ready);
    /* The steps the greenlet limit reaches, each named in its line. */
    const char *steps[] = {"the connection to the broker",
                           "blocking connection for queue high",
                           "blocking connection for queue low",
                           "--http",
                           "the task event publisher",
                           "the acker",
                           "the heartbeat",
                           "the fetcher",
                           "the waker"};
    for (size_t i = 0; i < sizeof steps / sizeof *steps; i++) {
        bool seen = false;
        for (int j = 0; j < failed; j++)
            seen = seen || strstr(what[j], steps[i]) != NULL;
        if (!seen)
            test__fail(__FILE__, __LINE__, "no start-up failure named \"%s\"", steps[i]);
    }
    /* Nothing was left behind by the failed starts: no registration, nothing in flight. */
    ASSERT_EQ(e2e_count_keys(e.c, "workerd:worker:*"), 0);
    ASSERT_EQ(e2e_int(e.c, "HLEN workerd:workers"), 0);
    ASSERT_EQ(e2e_count_keys(e.c, "workerd:inflight:*"), 0);
    e2e_env_end(&e);
}
