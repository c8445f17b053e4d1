/*
 * test_e2e_limits.c - time limits and the blocking watch, end to end, against a real
 * redis-server: the soft limit, which a task may handle, the hard limit, which kills the
 * task and aborts its transfers, their defaults from --soft-time-limit and --time-limit,
 * bad limits in messages and options, --blocking-warn naming a task that holds the loop,
 * and the supervisor replacing a process whose loop a task holds past --time-limit.
 *
 * Most tests run the real workerd binary. What the binary cannot be made to do from
 * outside, with only its built-in tasks, runs in an embedded worker: the test forks, and
 * the child does what wd_main.c does (options, the supervisor when asked for, the tasks,
 * green_run of the worker), with test tasks of this file registered next to the built-in
 * ones: a task that cleans up after its soft limit and returns its own result, one that
 * ignores its soft limit, one that computes for 300 ms without yielding, one that yields
 * all along, and one that spins until its process is killed. So no task made for tests
 * exists in the workerd binary, and the supervisor under test is the real one
 * (wd_supervisor_run), forking children that run the real worker.
 *
 * HTTP targets that never answer are this program's own listening socket: it accepts the
 * connection, reads the request, never writes, and can then see the connection being
 * closed by the worker.
 */
#include "e2e.h"
#include "embedded.h"
#include "testlib.h"

#include "green.h"
#include "green_http.h"
#include "task.h"
#include "wd_log.h"
#include "wd_options.h"
#include "wd_supervisor.h"
#include "wd_worker.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- the test tasks ----------------------------------------------------------------- */

static double mono(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Waits for ever; when its soft limit interrupts the wait, cleans up with a blocking call
 * of its own (which must work) and returns a result saying what it saw. */
static int task_cleanup(const task_call *call, json_t **result, task_error *err) {
    bool before = task_soft_limit_reached(call);
    int rc = green_sleep(TEST_NEVER);
    if (rc != -ETIMEDOUT)
        return task_error_set(err, "TaskError", "the wait ended with %d, not ETIMEDOUT", rc);
    bool after = task_soft_limit_reached(call);
    int cleanup = green_sleep(0.05);
    *result = json_pack("{s:b, s:b, s:i}", "reached_before", before, "reached_after", after,
                        "cleanup_rc", cleanup);
    return *result ? 0 : task_error_set(err, "MemoryError", "out of memory");
}

/* Ignores its soft limit and keeps blocking in new calls, until it is killed. */
static int task_ignore_soft(const task_call *call, json_t **result, task_error *err) {
    (void)call, (void)result, (void)err;
    for (;;) {
        int rc = green_sleep(0.05);
        if (rc == -ECANCELED)
            return rc;
    }
}

/* Computes for 300 ms without a blocking call. */
static int task_stall(const task_call *call, json_t **result, task_error *err) {
    (void)call, (void)err;
    double end = mono() + 0.3;
    while (mono() < end)
        ;
    *result = json_true();
    return 0;
}

/* Computes for 300 ms too, but yields every millisecond. */
static int task_yields(const task_call *call, json_t **result, task_error *err) {
    (void)call, (void)err;
    double end = mono() + 0.3;
    while (mono() < end) {
        double slice = mono() + 0.001;
        while (mono() < slice)
            ;
        int rc = green_yield();
        if (rc != 0)
            return rc;
    }
    *result = json_true();
    return 0;
}

/* Its first run (no file at args[0] yet) creates the file and then spins without ever
 * yielding, for at most a minute (its process is meant to be killed long before); a later
 * run, finding the file, succeeds at once. */
static int task_spin(const task_call *call, json_t **result, task_error *err) {
    const char *marker;
    int rc = task_arg_string(call, 0, "marker", &marker, err);
    if (rc != 0)
        return rc;
    int fd = open(marker, O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd < 0) {
        *result = json_string("second run");
        return 0;
    }
    close(fd);
    double end = mono() + 60;
    while (mono() < end)
        ;
    *result = json_string("spun a whole minute");
    return 0;
}

/* ---- the embedded worker ------------------------------------------------------------ */

static const struct wd_options *embedded_opts;

static void *worker_greenlet(void *arg) {
    int *code = arg;
    *code = wd_worker_run(embedded_opts, NULL, NULL);
    return NULL;
}

/* In the child: become workerd (its supervisor first when the options ask for one), with
 * the test tasks, then exit with the worker's code. */
struct child_args {
    int port;
    const char *const *args;
};

static void run_child(const char *log, void *arg) {
    const struct child_args *ca = arg;
    static struct wd_options opts;
    embedded_child_setup(log, ca->port, ca->args, &opts);
    if (wd_supervisor_wanted(&opts)) {
        int slot = 0, code = wd_supervisor_run(&opts, &slot);
        if (code >= 0)
            _exit(code);
    }
    task_http_limits http = {.deny = opts.http_deny, .allow = opts.http_allow};
    if (green_http_global_init() != 0 || task_register_builtins(&http) != 0 ||
        task_registry_add("test.cleanup", task_cleanup) != 0 ||
        task_registry_add("test.ignore_soft", task_ignore_soft) != 0 ||
        task_registry_add("test.stall", task_stall) != 0 ||
        task_registry_add("test.yields", task_yields) != 0 ||
        task_registry_add("test.spin", task_spin) != 0)
        _exit(125);
    embedded_opts = &opts;
    int code = 1;
    int rc = green_run(NULL, NULL, worker_greenlet, &code, NULL);
    fflush(NULL);
    _exit(rc != 0 ? 124 : code);
}

/* Start the embedded worker on Redis at port with the NULL-terminated extra args. */
static void start_embedded(e2e_worker *w, int port, const char *const *args) {
    struct child_args ca = {port, args};
    embedded_start(w, "limits", run_child, &ca);
}

/* ---- an HTTP server that never answers ---------------------------------------------- */

typedef struct silent {
    int listen_fd;
    int port;
    int conn; /* the worker's connection, once accepted */
} silent;

static void silent_start(silent *s) {
    s->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT(s->listen_fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ASSERT_EQ(bind(s->listen_fd, (struct sockaddr *)&a, sizeof a), 0);
    ASSERT_EQ(listen(s->listen_fd, 8), 0);
    socklen_t len = sizeof a;
    ASSERT_EQ(getsockname(s->listen_fd, (struct sockaddr *)&a, &len), 0);
    s->port = ntohs(a.sin_port);
    s->conn = -1;
}

/* Wait for fd to be readable, up to timeout seconds. */
static bool readable(int fd, double timeout) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, (int)(timeout * 1000)) == 1;
}

/* Accept the worker's connection and read its whole request (and never answer). */
static void silent_take_request(silent *s) {
    ASSERT(readable(s->listen_fd, TEST_SOON));
    s->conn = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC);
    ASSERT(s->conn >= 0);
    char req[8192];
    size_t got = 0;
    while (got < 4 || memcmp(req + got - 4, "\r\n\r\n", 4) != 0) {
        ASSERT(got < sizeof req && readable(s->conn, TEST_SOON));
        ssize_t n = read(s->conn, req + got, sizeof req - got);
        ASSERT(n > 0);
        got += (size_t)n;
    }
    ASSERT(strncmp(req, "GET / HTTP/1.1\r\n", 16) == 0);
}

/* The worker closed the connection: this end reads end-of-stream. */
static void silent_expect_closed(silent *s) {
    char c;
    ASSERT(readable(s->conn, TEST_SOON));
    ASSERT_EQ(read(s->conn, &c, 1), 0);
}

static void silent_stop(silent *s) {
    if (s->conn >= 0)
        close(s->conn);
    close(s->listen_fd);
}

/* ---- helpers ------------------------------------------------------------------------- */

static void push_fmt(redisContext *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void push_fmt(redisContext *c, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    e2e_push(c, "default", msg);
}

/* The result of id: its status, error type (NULL for none) and the start of its error
 * message (NULL: not checked). Returns it (decref it). */
static json_t *expect_result(e2e_env *e, const char *id, const char *status, const char *etype,
                             const char *emsg) {
    json_t *res = e2e_must_result(e, id);
    const char *got_type = e2e_jstr(json_object_get(res, "error"), "type");
    const char *got_msg = e2e_jerror(res);
    if (strcmp(e2e_jstr(res, "status"), status) != 0 ||
        (etype ? !got_type || strcmp(got_type, etype) != 0 : got_type != NULL) ||
        (emsg && (!got_msg || strncmp(got_msg, emsg, strlen(emsg)) != 0))) {
        char *text = json_dumps(res, 0);
        e2e_log_dump(&e->w);
        test__fail(__FILE__, __LINE__, "%s: want %s %s \"%s...\", got %s", id, status,
                   etype ? etype : "-", emsg ? emsg : "", text);
    }
    return res;
}

static double runtime_of(const json_t *res) {
    return e2e_jnum(res, "finished_at") - e2e_jnum(res, "started_at");
}

/* ---- the soft limit ----------------------------------------------------------------- */

/* http.get does not handle its soft limit: the transfer is given up, its connection
 * closed, and the -ETIMEDOUT it returns is a FAILURE SoftTimeLimitExceeded. */
TEST(soft_limit_ends_a_transfer_that_never_answers) {
    e2e_env e;
    e2e_env_start(&e);
    silent s;
    silent_start(&s);
    E2E_START_READY(&e.w, e.redis.port);
    push_fmt(e.c,
             "{\"id\":\"soft-1\",\"task\":\"http.get\",\"args\":[\"http://127.0.0.1:%d/\"],"
             "\"soft_time_limit\":0.3}",
             s.port);
    silent_take_request(&s);
    json_t *res = expect_result(&e, "soft-1", "FAILURE", "SoftTimeLimitExceeded",
                                "the task ran past its soft_time_limit of 0.3 s");
    ASSERT_RANGE(runtime_of(res), 0.25, 0.3 + TEST_SOON); /* not the task's 30 s timeout */
    json_decref(res);
    silent_expect_closed(&s);
    ASSERT_EQ(e2e_log_count(&e.w, "reached its soft time limit of 0.3 s"), 1);
    silent_stop(&s);
    e2e_env_end(&e);
}

/* A task that handles its soft limit: the wait it was in returns ETIMEDOUT, the flag says
 * why, its clean-up call works, and its own result is the SUCCESS result. */
TEST(soft_limit_lets_a_task_clean_up_and_return_its_own_result) {
    e2e_env e;
    e2e_env_start(&e);
    start_embedded(&e.w, e.redis.port, NULL);
    e2e_wait_ready(&e.w);
    e2e_push(e.c, "default",
             "{\"id\":\"clean-1\",\"task\":\"test.cleanup\",\"soft_time_limit\":0.2}");
    json_t *res = expect_result(&e, "clean-1", "SUCCESS", NULL, NULL);
    json_t *r = json_object_get(res, "result");
    ASSERT(json_is_false(json_object_get(r, "reached_before")));
    ASSERT(json_is_true(json_object_get(r, "reached_after")));
    ASSERT_EQ(json_integer_value(json_object_get(r, "cleanup_rc")), 0);
    ASSERT_RANGE(runtime_of(res), 0.2, 0.25 + TEST_SOON);
    json_decref(res);
    e2e_env_end(&e);
}

/* ---- the hard limit ----------------------------------------------------------------- */

/* The hard limit kills the task at the blocking call it is in: the transfer is aborted and
 * its connection closed, FAILURE TimeLimitExceeded. */
TEST(hard_limit_aborts_a_transfer_that_never_answers_and_closes_it) {
    e2e_env e;
    e2e_env_start(&e);
    silent s;
    silent_start(&s);
    E2E_START_READY(&e.w, e.redis.port);
    push_fmt(e.c,
             "{\"id\":\"hard-1\",\"task\":\"http.get\",\"args\":[\"http://127.0.0.1:%d/\"],"
             "\"time_limit\":0.4}",
             s.port);
    silent_take_request(&s);
    json_t *res = expect_result(&e, "hard-1", "FAILURE", "TimeLimitExceeded",
                                "the task ran past its time_limit of 0.4 s");
    ASSERT_RANGE(runtime_of(res), 0.35, 0.4 + TEST_SOON);
    json_decref(res);
    silent_expect_closed(&s);
    ASSERT_EQ(e2e_log_count(&e.w, "reached its time limit of 0.4 s: killing it"), 1);
    ASSERT_EQ(e2e_count_keys(e.c, "workerd:inflight:*"), 0);
    silent_stop(&s);
    e2e_env_end(&e);
}

/* A task that ignores its soft limit and keeps making new blocking calls is still killed
 * at its hard limit. */
TEST(hard_limit_kills_a_task_that_ignores_its_soft_limit) {
    e2e_env e;
    e2e_env_start(&e);
    start_embedded(&e.w, e.redis.port, NULL);
    e2e_wait_ready(&e.w);
    e2e_push(e.c, "default",
             "{\"id\":\"ign-1\",\"task\":\"test.ignore_soft\",\"soft_time_limit\":0.2,"
             "\"time_limit\":0.6}");
    json_t *res = expect_result(&e, "ign-1", "FAILURE", "TimeLimitExceeded",
                                "the task ran past its time_limit of 0.6 s");
    ASSERT_RANGE(runtime_of(res), 0.55, 0.6 + TEST_SOON);
    json_decref(res);
    ASSERT_EQ(e2e_log_count(&e.w, "reached its soft time limit of 0.2 s"), 1);
    e2e_env_end(&e);
}

/* ---- defaults from the options ------------------------------------------------------- */

/* --soft-time-limit and --time-limit apply to messages that set no limit of their own; a
 * message's own limit replaces the option's; and a task that ends in time is not touched. */
TEST(limits_default_to_the_options_and_messages_override_them) {
    e2e_env e;
    e2e_env_start(&e);
    E2E_START_READY(&e.w, e.redis.port, "--soft-time-limit", "0.3", "--time-limit", "0.8");
    e2e_push(e.c, "default", "{\"id\":\"d-soft\",\"task\":\"sleep\",\"args\":[30]}");
    e2e_push(e.c, "default",
             "{\"id\":\"d-hard\",\"task\":\"sleep\",\"args\":[30],\"soft_time_limit\":5}");
    e2e_push(e.c, "default",
             "{\"id\":\"d-own\",\"task\":\"sleep\",\"args\":[30],\"time_limit\":0.2}");
    e2e_push(e.c, "default", "{\"id\":\"d-fast\",\"task\":\"sleep\",\"args\":[0.05]}");
    json_t *res = expect_result(&e, "d-soft", "FAILURE", "SoftTimeLimitExceeded",
                                "the task ran past its soft_time_limit of 0.3 s "
                                "(--soft-time-limit)");
    ASSERT_RANGE(runtime_of(res), 0.25, 0.3 + TEST_SOON);
    json_decref(res);
    res = expect_result(&e, "d-hard", "FAILURE", "TimeLimitExceeded",
                        "the task ran past its time_limit of 0.8 s (--time-limit)");
    ASSERT_RANGE(runtime_of(res), 0.75, 0.8 + TEST_SOON);
    json_decref(res);
    res = expect_result(&e, "d-own", "FAILURE", "TimeLimitExceeded",
                        "the task ran past its time_limit of 0.2 s");
    ASSERT(strstr(e2e_jerror(res), "--time-limit") == NULL);
    json_decref(res);
    res = expect_result(&e, "d-fast", "SUCCESS", NULL, NULL);
    json_decref(res);
    e2e_env_end(&e);
}

/* ---- bad input ----------------------------------------------------------------------- */

/* A limit that is not a number of seconds from 0 to a day is refused like any bad field:
 * dead-lettered with a reason naming the field, a FAILURE result, and the worker goes on. */
TEST(bad_time_limits_are_dead_lettered_naming_the_field) {
    static const struct {
        const char *fields;
        const char *reason;
    } bad[] = {
        {"\"time_limit\":\"5\"", "field \"time_limit\" must be a non-negative number"},
        {"\"time_limit\":-1", "field \"time_limit\" must be a non-negative number"},
        {"\"time_limit\":86401", "field \"time_limit\" must be at most 86400 seconds, got 86401"},
        {"\"time_limit\":1e12", "field \"time_limit\" must be at most 86400 seconds"},
        {"\"soft_time_limit\":true", "field \"soft_time_limit\" must be a non-negative number"},
        {"\"soft_time_limit\":[1]", "field \"soft_time_limit\" must be a non-negative number"},
        {"\"soft_time_limit\":90000", "field \"soft_time_limit\" must be at most 86400 seconds"},
        /* JSON has no NaN or infinity: such text does not parse, and is refused too. */
        {"\"time_limit\":NaN", "invalid JSON"},
        {"\"soft_time_limit\":1e999", "invalid JSON"},
    };
    size_t n = sizeof bad / sizeof *bad;
    e2e_env e;
    e2e_env_start(&e);
    E2E_START_READY(&e.w, e.redis.port);
    for (size_t i = 0; i < n; i++)
        push_fmt(e.c, "{\"id\":\"bad-%zu\",\"task\":\"sleep\",\"args\":[0],%s}", i, bad[i].fields);
    e2e_push_task(e.c, "default", "good-after", "echo", "[1]");
    json_decref(expect_result(&e, "good-after", "SUCCESS", NULL, NULL));
    ASSERT(e2e_wait_dead(e.c, (long long)n, TEST_SOON));
    json_t *dead = e2e_dead_letters(e.c);
    ASSERT_EQ(json_array_size(dead), n);
    for (size_t i = 0; i < n; i++) {
        char id[32];
        snprintf(id, sizeof id, "bad-%zu", i);
        json_t *res = expect_result(&e, id, "FAILURE", "InvalidMessage", NULL);
        const char *msg = e2e_jerror(res);
        if (!msg || !strstr(msg, bad[i].reason))
            test__fail(__FILE__, __LINE__, "%s (%s): error \"%s\" lacks \"%s\"", id, bad[i].fields,
                       msg ? msg : "(none)", bad[i].reason);
        json_decref(res);
        bool found = false;
        for (size_t k = 0; k < n; k++) {
            json_t *d = json_array_get(dead, k);
            const char *did = e2e_jstr(d, "id");
            found = found || (did && strcmp(did, id) == 0 &&
                              strstr(e2e_jstr(d, "reason"), bad[i].reason) != NULL);
        }
        if (!found)
            test__fail(__FILE__, __LINE__, "no dead letter for %s with \"%s\"", id, bad[i].reason);
    }
    json_decref(dead);
    ASSERT_EQ(e2e_count_keys(e.c, "workerd:inflight:*"), 0);
    e2e_env_end(&e);
}

/* A bad option stops the start with one line naming it. */
TEST(bad_limit_options_stop_the_start_naming_the_option) {
    static const struct {
        const char *opt, *value, *line;
    } bad[] = {
        {"--time-limit", "-1",
         "workerd: --time-limit: '-1' is out of range, expected 0..86400 seconds (from the "
         "command line)"},
        {"--soft-time-limit", "nan",
         "workerd: --soft-time-limit: 'nan' is not a number of seconds (from the command "
         "line)"},
        {"--blocking-warn", "100ms",
         "workerd: --blocking-warn: '100ms' is not a number of seconds (from the command "
         "line)"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        e2e_worker w;
        E2E_START(&w, 0, bad[i].opt, bad[i].value);
        ASSERT_EQ(e2e_worker_wait(&w, TEST_NEVER), 2);
        char *log = e2e_log_read(&w);
        char want[512];
        snprintf(want, sizeof want, "%s\n", bad[i].line);
        if (strcmp(log, want) != 0)
            test__fail(__FILE__, __LINE__, "log \"%s\", want \"%s\"", log, want);
        free(log);
        e2e_worker_stop(&w);
    }
}

/* ---- the blocking watch -------------------------------------------------------------- */

/* A task that computes for 300 ms without yielding is named, once, with how long it held
 * the loop; one that computes as long but yields all along is not. */
TEST(blocking_warn_names_a_task_that_does_not_yield_and_not_one_that_does) {
    e2e_env e;
    e2e_env_start(&e);
    const char *args[] = {"--blocking-warn", "0.1", NULL};
    start_embedded(&e.w, e.redis.port, args);
    e2e_wait_ready(&e.w);
    e2e_push_task(e.c, "default", "yields-1", "test.yields", "[]");
    json_decref(expect_result(&e, "yields-1", "SUCCESS", NULL, NULL));
    e2e_push_task(e.c, "default", "stall-1", "test.stall", "[]");
    json_decref(expect_result(&e, "stall-1", "SUCCESS", NULL, NULL));
    ASSERT(e2e_log_wait(&e.w, "did not yield for about", TEST_SOON));
    char *log = e2e_log_read(&e.w);
    const char *line = strstr(log, "[task stall-1] test.stall did not yield for about ");
    if (!line) {
        e2e_log_dump(&e.w);
        test__fail(__FILE__, __LINE__, "no warning naming test.stall and its id");
    }
    double took = strtod(line + strlen("[task stall-1] test.stall did not yield for about "), NULL);
    ASSERT_RANGE(took, 0.1, 0.3 + TEST_SOON); /* at least --blocking-warn, by construction */
    ASSERT(strncmp(line - 6, "WARN ", 5) == 0);
    free(log);
    ASSERT_EQ(e2e_log_count(&e.w, "yield for"), 1);
    ASSERT_EQ(e2e_log_count(&e.w, "yields-1"), 0);
    e2e_env_end(&e);
}

/* --blocking-warn 0 turns the watch off. */
TEST(blocking_warn_0_logs_nothing) {
    e2e_env e;
    e2e_env_start(&e);
    const char *args[] = {"--blocking-warn", "0", NULL};
    start_embedded(&e.w, e.redis.port, args);
    e2e_wait_ready(&e.w);
    e2e_push_task(e.c, "default", "stall-0", "test.stall", "[]");
    json_decref(expect_result(&e, "stall-0", "SUCCESS", NULL, NULL));
    e2e_worker_signal(&e.w, SIGTERM);
    ASSERT_EQ(e2e_worker_wait(&e.w, TEST_NEVER), 0);
    ASSERT_EQ(e2e_log_count(&e.w, "yield"), 0); /* the whole log: the worker has exited */
    e2e_env_end(&e);
}

/* ---- the supervisor: the hard limit for tasks that compute ----------------------------- */

/* A task that spins holds its process: no time limit inside it can act. Under
 * --processes, the supervisor kills the child once its loop has been stuck past
 * --time-limit and starts a new one; the message comes back through the ordinary recovery
 * (the dead child's heartbeat expires) and runs again, here to success. */
TEST(a_child_stuck_past_time_limit_is_replaced_and_its_message_redelivered) {
    e2e_env e;
    e2e_env_start(&e);
    const char *args[] = {"--processes", "2", "--time-limit", "2", "--heartbeat", "2", NULL};
    start_embedded(&e.w, e.redis.port, args);
    ASSERT(e2e_log_wait(&e.w, "supervisor: all 2 children ready", TEST_NEVER));
    char marker[512];
    snprintf(marker, sizeof marker, "%s/spun", e.w.dir);
    push_fmt(e.c, "{\"id\":\"spin-1\",\"task\":\"test.spin\",\"args\":[\"%s\"]}", marker);
    ASSERT(e2e_log_wait(&e.w, "has been stuck for more than --time-limit (2 s", TEST_NEVER));
    json_t *res = e2e_wait_result(e.c, "spin-1", NULL, TEST_NEVER);
    if (!res)
        e2e_log_dump(&e.w);
    ASSERT(res != NULL);
    ASSERT_STREQ(e2e_jstr(res, "status"), "SUCCESS");
    ASSERT_STREQ(json_string_value(json_object_get(res, "result")), "second run");
    json_decref(res);
    ASSERT_EQ(e2e_log_count(&e.w, "has been stuck for more than --time-limit"), 1);
    ASSERT_EQ(e2e_log_count(&e.w, "test.spin redelivered 1 time(s)"), 1);
    /* The watch named the task while it held the loop, before the kill. */
    ASSERT_EQ(e2e_log_count(&e.w, "[task spin-1] test.spin has not yielded for"), 1);
    /* Two children, and the one that replaced the killed one. */
    ASSERT(e2e_log_wait_n(&e.w, "supervisor: started child", 3, TEST_SOON));
    e2e_env_end(&e);
}
