/*
 * test_e2e_rate.c - rate limits through the real workerd and workerctl binaries and a real
 * redis-server: the rate holds over several workers together (measured from the results'
 * started_at, the workers' clocks on this one host), another task at the same time is not
 * slowed, workerctl rate-limit changes the rate of running workers, bad values are refused
 * naming the option, and messages waiting for their turn survive every worker being
 * SIGKILLed (the books balance).
 *
 * Only the rate is bounded from both sides (it is what the feature promises); elapsed
 * times are never asserted as speeds.
 */
#include "books.h"
#include "conc_http.h"
#include "ctlrun.h"
#include "e2e.h"
#include "testlib.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Push n messages of task with ids <prefix>1..<prefix>n (echo [1], sleep 10 ms). */
static void push_n(redisContext *c, const char *prefix, const char *task, int n) {
    for (int i = 1; i <= n; i++) {
        char id[32];
        snprintf(id, sizeof id, "%s%d", prefix, i);
        e2e_push_task(c, "default", id, task, strcmp(task, "sleep") == 0 ? "[0.01]" : "[1]");
    }
}

/* Wait for the final results of <prefix>1..n and put their started_at, sorted, in t[]
 * (and the latest finished_at in *last_finished). Asserts each SUCCESS with retries 0:
 * waiting for a turn is not a retry. */
static void results_of(redisContext *c, const char *prefix, int n, double *t,
                       double *last_finished) {
    *last_finished = 0;
    for (int i = 1; i <= n; i++) {
        char id[32];
        snprintf(id, sizeof id, "%s%d", prefix, i);
        json_t *res = e2e_wait_result(c, id, NULL, TEST_NEVER);
        if (!res)
            test__fail(__FILE__, __LINE__, "no result for %s", id);
        ASSERT_STREQ(e2e_jstr(res, "status"), "SUCCESS");
        ASSERT(e2e_jnum(res, "retries") == 0 || isnan(e2e_jnum(res, "retries")));
        t[i - 1] = e2e_jnum(res, "started_at");
        if (e2e_jnum(res, "finished_at") > *last_finished)
            *last_finished = e2e_jnum(res, "finished_at");
        json_decref(res);
    }
    qsort(t, (size_t)n, sizeof *t, cmp_double);
}

/* Starts per second over t[from..to] (sorted). */
static double rate_over(const double *t, int from, int to) {
    return (to - from) / (t[to] - t[from]);
}

enum { RATE_N = 200, OTHER_N = 100 };

TEST(rate_limit_holds_across_three_workers_and_other_tasks_run_at_full_speed) {
    test_redis r;
    test_redis_start(&r, NULL);
    redisContext *c = e2e_redis(r.port);
    e2e_worker w[3];
    for (int i = 0; i < 3; i++)
        E2E_START_READY(&w[i], r.port, "--rate-limit", "echo=20/s", "-c", "20");
    ASSERT_WITHIN(e2e_int(c, "HEXISTS workerd:rate_limits echo") == 1, TEST_SOON);
    push_n(c, "r-", "echo", RATE_N);
    push_n(c, "o-", "sleep", OTHER_N); /* behind them in the same queue; 10 ms each */
    double *t = calloc(RATE_N, sizeof *t), *o = calloc(OTHER_N, sizeof *o);
    double echo_done, other_done;
    results_of(c, "o-", OTHER_N, o, &other_done);
    results_of(c, "r-", RATE_N, t, &echo_done);
    double achieved = rate_over(t, 0, RATE_N - 1);
    fprintf(stderr,
            "echo at 20/s over 3 workers: %.2f/s; the other task's last finished %.2f s "
            "after the first echo started, the last echo started %.2f s after it\n",
            achieved, other_done - t[0], t[RATE_N - 1] - t[0]);
    for (int i = 0; i + 1 < RATE_N; i++)
        if (t[i + 1] - t[i] > 0.08)
            fprintf(stderr, "gap of %.3f s after start %d\n", t[i + 1] - t[i], i);
    ASSERT_RANGE(achieved, 18.0, 22.0);
    /* Never a burst: no second of the run saw more than 20 starts and the tolerance. */
    for (int i = 0; i + 22 < RATE_N; i++)
        ASSERT(t[i + 22] - t[i] >= 1.0);
    /* The other task was not held behind the throttled ones: it was all done before the
     * 100th echo could start (which the rate puts 4.95 s after the first). */
    ASSERT(other_done < t[99]);
    /* Nothing left behind. */
    ASSERT_EQ(e2e_int(c, "ZCARD workerd:scheduled"), 0);
    ASSERT_EQ(e2e_count_keys(c, "workerd:inflight:*"), 0);
    for (int i = 0; i < 3; i++) {
        e2e_worker_signal(&w[i], SIGTERM);
        ASSERT_EQ(e2e_worker_wait(&w[i], 30.0), 0);
        e2e_worker_stop(&w[i]);
    }
    free(t);
    free(o);
    redisFree(c);
    test_redis_stop(&r);
}

enum { CHANGE_N = 200 };

TEST(workerctl_rate_limit_changes_the_rate_of_running_workers) {
    ctlrun_env e;
    ctlrun_env_start(&e);
    e2e_worker w2;
    E2E_START_READY(&e.w, e.redis.port, "--rate-limit", "echo=5/s");
    E2E_START_READY(&w2, e.redis.port, "--rate-limit", "echo=5/s");
    ASSERT_WITHIN(e2e_int(e.c, "HEXISTS workerd:rate_limits echo") == 1, TEST_SOON);
    push_n(e.c, "c-", "echo", CHANGE_N);
    /* Twenty at 5/s (in no particular order: a message looked at again may pass one
     * whose turn is later), then 50/s for every worker. */
    ASSERT_WITHIN(e2e_count_keys(e.c, "workerd:result:c-*") >= 20, TEST_NEVER);
    ctlrun cr;
    CTL_RUN(&cr, "-b", e.url, "rate-limit", "echo", "50/s");
    ASSERT_EQ(cr.code, 0);
    ASSERT(strstr(cr.out, "echo: 50/s") != NULL);
    ctlrun_free(&cr);
    double changed = e2e_redis_time(e.c);
    CTL_RUN(&cr, "-b", e.url, "rate-limit", "--json");
    ASSERT_EQ(cr.code, 0);
    json_t *all = ctlrun_json(&cr);
    ASSERT_STREQ(e2e_jstr(all, "echo"), "50/s");
    json_decref(all);
    ctlrun_free(&cr);

    double *t = calloc(CHANGE_N, sizeof *t), last;
    results_of(e.c, "c-", CHANGE_N, t, &last);
    /* Before the change: 5/s (measured from the third start on: a start's started_at is
     * read a moment after its turn, and the first ones, while the workers warm up, by
     * more). After it (turns handed out before it come back within the one-second
     * horizon, the others within the next): the starts keep to 50/s, at most, and are
     * many times faster than before, however slow the machine (the upper bound is the
     * promise; reaching 50/s depends on the workers keeping up). */
    int first_after = 0;
    while (first_after < CHANGE_N && t[first_after] < changed + 2.2)
        first_after++;
    fprintf(stderr, "changed at +%.2f s; last start +%.2f s; %d after +2.2 s\n", changed - t[0],
            t[CHANGE_N - 1] - t[0], CHANGE_N - first_after);
    ASSERT(CHANGE_N - first_after >= 40);
    fprintf(stderr, "before the change %.2f/s; after it %.2f/s over %d starts\n",
            rate_over(t, 2, 18), rate_over(t, first_after, CHANGE_N - 1), CHANGE_N - first_after);
    ASSERT_RANGE(rate_over(t, 2, 18), 4.5, 5.5);
    ASSERT_RANGE(rate_over(t, first_after, CHANGE_N - 1), 25.0, 55.0);

    /* off: the limit is gone from the hash and for the workers. */
    CTL_RUN(&cr, "-b", e.url, "rate-limit", "echo", "off");
    ASSERT_EQ(cr.code, 0);
    ctlrun_free(&cr);
    ASSERT_EQ(e2e_int(e.c, "HEXISTS workerd:rate_limits echo"), 0);
    e2e_worker_signal(&w2, SIGTERM);
    ASSERT_EQ(e2e_worker_wait(&w2, 30.0), 0);
    e2e_worker_stop(&w2);
    free(t);
    ctlrun_env_end(&e);
}

/* workerd with args must exit 2 and its log hold `says`. */
static void workerd_refuses(const char *says, const char *const *args) {
    e2e_worker w;
    e2e_worker_start(&w, 0, args);
    int code = e2e_worker_wait(&w, 10.0);
    char *log = e2e_log_read(&w);
    if (code != 2 || strstr(log, says) == NULL) {
        e2e_log_dump(&w);
        test__fail(__FILE__, __LINE__, "expected exit 2 saying \"%s\", got %d", says, code);
    }
    free(log);
    e2e_worker_stop(&w);
}

TEST(bad_rate_limits_are_refused_by_workerd_and_workerctl) {
    const char *const unit[] = {"--rate-limit", "echo=20/d", NULL};
    workerd_refuses("workerd: --rate-limit: task 'echo': '20/d' is not a rate: the unit must "
                    "be s, m or h (from the command line)",
                    unit);
    const char *const no_eq[] = {"--rate-limit", "echo", NULL};
    workerd_refuses("--rate-limit: 'echo' is not TASK=RATE", no_eq);
    const char *const zero[] = {"--rate-limit", "a=1/s", "--rate-limit", "echo=0/s", NULL};
    workerd_refuses("task 'echo': '0/s' is not a rate: it must be more than 0", zero);
    const char *const twice[] = {"--rate-limit", "echo=1/s", "--rate-limit", "echo=2/s", NULL};
    workerd_refuses("task 'echo' is given two rates", twice);

    ctlrun_env e;
    ctlrun_env_start(&e);
    ctlrun cr;
    CTL_RUN(&cr, "-b", e.url, "rate-limit", "echo", "lots");
    ASSERT_EQ(cr.code, 2);
    ASSERT(strstr(cr.err, "workerctl: 'lots' is not a rate") != NULL);
    ctlrun_free(&cr);
    CTL_RUN(&cr, "-b", e.url, "rate-limit", "echo", "-5/s");
    ASSERT_EQ(cr.code, 2);
    ctlrun_free(&cr);
    CTL_RUN(&cr, "-b", e.url, "rate-limit", "echo");
    ASSERT_EQ(cr.code, 2);
    ASSERT(strstr(cr.err, "TASK RATE") != NULL);
    ctlrun_free(&cr);
    ASSERT_EQ(e2e_int(e.c, "EXISTS workerd:rate_limits"), 0); /* nothing written */
    ctlrun_env_end(&e);
}

enum { KILL_N = 60 };

/* Messages waiting for their turn live in Redis only: SIGKILL every worker while they
 * wait, start new ones, and each runs exactly once (the books balance). */
TEST(throttled_messages_survive_every_worker_being_sigkilled) {
    test_redis r;
    test_redis_start(&r, NULL);
    redisContext *c = e2e_redis(r.port);
    books *b = books_new();
    books_ids(b, "k-", 1, KILL_N, "SUCCESS");
    e2e_worker w[5];
    for (int i = 0; i < 3; i++) {
        E2E_START_READY(&w[i], r.port, "--rate-limit", "echo=10/s", "--heartbeat", "1", "-l",
                        "debug");
        books_log(b, w[i].log);
    }
    for (int i = 1; i <= KILL_N; i++) {
        char id[32];
        snprintf(id, sizeof id, "k-%d", i);
        e2e_push_task(c, "default", id, "echo", "[1]");
    }
    ASSERT_WITHIN(e2e_int(c, "ZCARD workerd:scheduled") >= 20, TEST_SOON);
    double killed = books_now();
    for (int i = 0; i < 3; i++) {
        e2e_worker_signal(&w[i], SIGKILL);
        ASSERT_EQ(e2e_worker_wait(&w[i], 5.0), 128 + SIGKILL);
        books_log_fault(b, i, "SIGKILL", killed);
    }
    ASSERT(e2e_int(c, "ZCARD workerd:scheduled") > 0);
    for (int i = 3; i < 5; i++) {
        E2E_START_READY(&w[i], r.port, "--heartbeat", "1", "-l", "debug");
        books_log(b, w[i].log);
    }
    bool done = books_wait_done(b, c, TEST_NEVER);
    if (!done)
        e2e_log_dump(&w[3]);
    ASSERT(done);
    books_check(b, c);
    for (int i = 3; i < 5; i++) {
        e2e_worker_signal(&w[i], SIGTERM);
        ASSERT_EQ(e2e_worker_wait(&w[i], 30.0), 0);
    }
    for (int i = 0; i < 5; i++)
        e2e_worker_stop(&w[i]);
    books_free(b);
    redisFree(c);
    test_redis_stop(&r);
}

enum { HOST_N = 20 };

/* --http-host-rate: http.get to one host keeps to the rate over two workers (from the
 * results' started_at), waiting for a turn is no retry, and another host name (localhost,
 * the same nginx) has its own turns: it is not held behind the first host's. */
TEST(http_host_rate_holds_per_host_across_two_workers) {
    test_redis r;
    test_redis_start(&r, NULL);
    test_nginx n;
    test_nginx_start(&n);
    redisContext *c = e2e_redis(r.port);
    e2e_worker w[2];
    for (int i = 0; i < 2; i++)
        E2E_START_READY(&w[i], r.port, "--http-host-rate", "5/s", "-c", "20");
    char args[128];
    snprintf(args, sizeof args, "[\"http://127.0.0.1:%d/fast\"]", n.port);
    for (int i = 1; i <= HOST_N; i++) {
        char id[32];
        snprintf(id, sizeof id, "h-%d", i);
        e2e_push_task(c, "default", id, "http.get", args);
    }
    snprintf(args, sizeof args, "[\"http://LocalHost:%d/fast\"]", n.port);
    e2e_push_task(c, "default", "l-1", "http.get", args);
    e2e_push_task(c, "default", "l-2", "http.get", args);
    double *t = calloc(HOST_N, sizeof *t), l[2], last, llast;
    results_of(c, "h-", HOST_N, t, &last);
    results_of(c, "l-", 2, l, &llast);
    double achieved = rate_over(t, 0, HOST_N - 1);
    fprintf(stderr,
            "http.get to one host at 5/s over 2 workers: %.2f/s (%d starts over %.2f s); the "
            "other host's 2 started at +%.2f s and +%.2f s\n",
            achieved, HOST_N, t[HOST_N - 1] - t[0], l[0] - t[0], l[1] - t[0]);
    ASSERT_RANGE(achieved, 4.5, 5.5);
    /* Never a burst: 5 starts and the tolerance per second at most. */
    for (int i = 0; i + 6 < HOST_N; i++)
        ASSERT(t[i + 6] - t[i] >= 1.0);
    /* The other host was not held behind the first one's 20 turns (3.8 s of them). */
    ASSERT(l[1] < t[HOST_N - 1]);
    ASSERT_EQ(e2e_int(c, "ZCARD workerd:scheduled"), 0);
    ASSERT_EQ(e2e_int(c, "EXISTS workerd:rate:host:127.0.0.1"), 1);
    ASSERT_EQ(e2e_int(c, "EXISTS workerd:rate:host:localhost"), 1);
    for (int i = 0; i < 2; i++) {
        e2e_worker_signal(&w[i], SIGTERM);
        ASSERT_EQ(e2e_worker_wait(&w[i], 30.0), 0);
        e2e_worker_stop(&w[i]);
    }
    free(t);
    redisFree(c);
    test_nginx_stop(&n);
    test_redis_stop(&r);
}

TEST(a_bad_http_host_rate_is_refused) {
    const char *const unit[] = {"--http-host-rate", "5/d", NULL};
    workerd_refuses("workerd: --http-host-rate: '5/d' is not a rate: the unit must be s, m or h "
                    "(from the command line)",
                    unit);
    const char *const zero[] = {"--http-host-rate", "0/s", NULL};
    workerd_refuses("--http-host-rate: '0/s' is not a rate: it must be more than 0", zero);
    const char *const word[] = {"--http-host-rate", "polite", NULL};
    workerd_refuses("--http-host-rate: 'polite' is not a rate", word);
}

/* ---- --http-host-concurrency ------------------------------------------------------------ */

/* workerd:events entries of the given type whose id starts with prefix. */
static int events_of(redisContext *c, const char *type, const char *prefix) {
    redisReply *r = redisCommand(c, "XRANGE workerd:events - +");
    ASSERT(r != NULL && r->type == REDIS_REPLY_ARRAY);
    int n = 0;
    for (size_t i = 0; i < r->elements; i++) {
        redisReply *fields = r->element[i]->element[1];
        bool typed = false, ours = false;
        for (size_t k = 0; k + 1 < fields->elements; k += 2) {
            const char *name = fields->element[k]->str, *value = fields->element[k + 1]->str;
            if (strcmp(name, "type") == 0 && strcmp(value, type) == 0)
                typed = true;
            if (strcmp(name, "id") == 0 && strncmp(value, prefix, strlen(prefix)) == 0)
                ours = true;
        }
        n += typed && ours;
    }
    freeReplyObject(r);
    return n;
}

enum { CONC_N = 10 };

/* --http-host-concurrency 2 over two workers of 10 slots each: the server never holds more
 * than 2 requests of one host at once (it does hold 2: the limit is not a queue of one),
 * another host name has its own slots, every task ends SUCCESS without a retry counted,
 * and the slots are all given back. A task that waits for a slot is never started: one
 * "started" event per task (and more "received" ones, the deferrals), never more. */
TEST(http_host_concurrency_holds_per_host_across_two_workers) {
    test_redis r;
    test_redis_start(&r, NULL);
    conc_http srv;
    conc_http_start(&srv);
    redisContext *c = e2e_redis(r.port);
    e2e_worker w[2];
    for (int i = 0; i < 2; i++)
        E2E_START_READY(&w[i], r.port, "--http-host-concurrency", "2", "-c", "10", "-E");
    char args[128];
    snprintf(args, sizeof args, "[\"http://127.0.0.1:%d/slow?ms=300\"]", srv.port);
    for (int i = 1; i <= CONC_N; i++) {
        char id[32];
        snprintf(id, sizeof id, "h-%d", i);
        e2e_push_task(c, "default", id, "http.get", args);
    }
    snprintf(args, sizeof args, "[\"http://LocalHost:%d/slow?ms=300\"]", srv.port);
    e2e_push_task(c, "default", "l-1", "http.get", args);
    e2e_push_task(c, "default", "l-2", "http.get", args);
    double t[CONC_N], l[2], last;
    results_of(c, "h-", CONC_N, t, &last);
    results_of(c, "l-", 2, l, &last);
    int now, max, served;
    conc_http_seen(&srv, "127.0.0.1", &now, &max, &served);
    fprintf(stderr, "127.0.0.1: at most %d at once, %d answered\n", max, served);
    ASSERT_EQ(max, 2);
    ASSERT_EQ(served, CONC_N);
    conc_http_seen(&srv, "LocalHost", &now, &max, &served);
    ASSERT(max >= 1 && max <= 2);
    ASSERT_EQ(served, 2);
    ASSERT_EQ(e2e_int(c, "EXISTS workerd:slots:host:127.0.0.1"), 0); /* all given back */
    ASSERT_EQ(e2e_int(c, "ZCARD workerd:scheduled"), 0);
    /* Events go out in batches of their own: wait for the last ones. */
    ASSERT_WITHIN(events_of(c, "succeeded", "h-") == CONC_N, TEST_SOON);
    int received = events_of(c, "received", "h-");
    fprintf(stderr, "%d received events for %d tasks (the rest: deferrals)\n", received, CONC_N);
    ASSERT(received > CONC_N); /* some did wait for a slot */
    ASSERT_EQ(events_of(c, "started", "h-"), CONC_N);
    for (int i = 0; i < 2; i++) {
        e2e_worker_signal(&w[i], SIGTERM);
        ASSERT_EQ(e2e_worker_wait(&w[i], 30.0), 0);
        e2e_worker_stop(&w[i]);
    }
    redisFree(c);
    conc_http_stop(&srv);
    test_redis_stop(&r);
}

/* A worker SIGKILLed in the middle of a request never gives its slot back: the slot's
 * lease (the request's timeout, 1 s, plus a margin) ends it, and another worker's request
 * to that host then runs. Without the lease the host would stay full for good. */
TEST(a_slot_of_a_worker_sigkilled_mid_request_is_freed_when_its_lease_runs_out) {
    test_redis r;
    test_redis_start(&r, NULL);
    conc_http srv;
    conc_http_start(&srv);
    redisContext *c = e2e_redis(r.port);
    e2e_worker a, b;
    E2E_START_READY(&a, r.port, "--http-host-concurrency", "1");
    e2e_pushf(c, "default",
              "{\"id\":\"k-1\",\"task\":\"http.get\",\"args\":[\"http://127.0.0.1:%d/"
              "hang?ms=600000\"],\"kwargs\":{\"timeout\":1}}",
              srv.port);
    ASSERT_WITHIN(conc_http_now(&srv, "127.0.0.1") == 1, TEST_SOON);
    ASSERT_EQ(e2e_int(c, "ZCARD workerd:slots:host:127.0.0.1"), 1);
    e2e_worker_signal(&a, SIGKILL);
    e2e_worker_wait(&a, 10.0);
    e2e_worker_stop(&a);
    /* Its slot is still held: the kill gave nothing back. */
    ASSERT_EQ(e2e_int(c, "ZCARD workerd:slots:host:127.0.0.1"), 1);
    E2E_START_READY(&b, r.port, "--http-host-concurrency", "1");
    e2e_pushf(c, "default",
              "{\"id\":\"k-2\",\"task\":\"http.get\",\"args\":[\"http://127.0.0.1:%d/ok\"]}",
              srv.port);
    json_t *res = e2e_wait_result(c, "k-2", "SUCCESS", TEST_NEVER);
    if (res == NULL)
        e2e_log_dump(&b);
    ASSERT(res != NULL);
    ASSERT_EQ(e2e_jnum(res, "retries"), 0);
    json_decref(res);
    e2e_worker_signal(&b, SIGTERM);
    ASSERT_EQ(e2e_worker_wait(&b, 30.0), 0);
    e2e_worker_stop(&b);
    redisFree(c);
    conc_http_stop(&srv);
    test_redis_stop(&r);
}

TEST(a_bad_http_host_concurrency_is_refused) {
    const char *const word[] = {"--http-host-concurrency", "many", NULL};
    workerd_refuses("workerd: --http-host-concurrency: 'many' is not a number (from the command "
                    "line)",
                    word);
    const char *const neg[] = {"--http-host-concurrency", "-1", NULL};
    workerd_refuses("--http-host-concurrency: '-1' is out of range, expected 0..100000", neg);
    const char *const big[] = {"--http-host-concurrency", "100001", NULL};
    workerd_refuses("--http-host-concurrency: '100001' is out of range, expected 0..100000", big);
}
