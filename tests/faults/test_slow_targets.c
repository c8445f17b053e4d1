/*
 * test_slow_targets.c - HTTP targets that hold a task forever, with exact accounting
 * (tests/lib/books.h): one that trickles a byte a second (/trickle) and one that never
 * answers (/never), each task with "time_limit": 1, on a worker of 4 slots.
 *
 * Every such task must end with FAILURE TimeLimitExceeded about a second after it
 * started, and its slot must come back: after 20 of them (five times the pool), echo
 * tasks still run, and four sleep tasks pushed at once all run together (a leaked slot
 * would hold one back until another finished). The worker keeps 4 requests per host in
 * flight (--http-host-concurrency 4): the time-limited tasks give their host's slots back
 * too, and none is left held at the end.
 */
#include "books.h"
#include "e2e.h"
#include "testlib.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { SLOW = 10, NEVER = 10, ECHO = 10, CONC = 4 };

static void push_http(redisContext *c, const char *id, int port, const char *path) {
    char msg[256];
    snprintf(msg, sizeof msg,
             "{\"id\":\"%s\",\"task\":\"http.get\",\"args\":[\"http://127.0.0.1:%d%s\"],"
             "\"time_limit\":1}",
             id, port, path);
    e2e_push(c, "default", msg);
}

/* The task ran about its time limit, not the target's pace and not forever. */
static void expect_time_limited(redisContext *c, const char *id) {
    json_t *res = e2e_result(c, id);
    ASSERT(res != NULL);
    ASSERT_STREQ(e2e_jstr(res, "status"), "FAILURE");
    ASSERT_STREQ(e2e_jstr(json_object_get(res, "error"), "type"), "TimeLimitExceeded");
    double ran = e2e_jnum(res, "finished_at") - e2e_jnum(res, "started_at");
    ASSERT_RANGE(ran, 0.9, 1 + TEST_SOON); /* /trickle's pace would be 61 s */
    json_decref(res);
}

TEST(time_limits_on_stuck_targets_never_leak_a_slot) {
    test_redis r;
    test_nginx n;
    test_redis_start(&r, NULL);
    test_nginx_start(&n);
    redisContext *c = e2e_redis(r.port);
    books *b = books_new();
    books_ids(b, "t-", 1, SLOW, "FAILURE");
    books_ids(b, "n-", 1, NEVER, "FAILURE");
    books_ids(b, "e-", 1, ECHO, "SUCCESS");
    books_ids(b, "s-", 1, CONC, "SUCCESS");

    e2e_worker w;
    /* As many slots per host as the pool: a task killed by its time limit must give its
     * host slot back at once, or the next ones would wait out its lease (32 s). */
    E2E_START_READY(&w, r.port, "-c", "4", "--heartbeat", "1", "-l", "debug",
                    "--http-host-concurrency", "4");
    books_log(b, w.log);
    for (int i = 1; i <= SLOW; i++) {
        char id[32];
        snprintf(id, sizeof id, "t-%d", i);
        push_http(c, id, n.port, "/trickle");
        snprintf(id, sizeof id, "n-%d", i);
        push_http(c, id, n.port, "/never");
    }
    books_fault(b, SLOW + NEVER);
    /* 20 tasks of a second each, 4 at a time: about 5 s. */
    double t0 = test_now();
    ASSERT(e2e_log_wait_n(&w, "TimeLimitExceeded", SLOW + NEVER, 20.0));
    printf("faults: %d time-limited tasks in %.2f s\n", SLOW + NEVER, test_now() - t0);
    for (int i = 1; i <= SLOW; i++) {
        char id[32];
        snprintf(id, sizeof id, "t-%d", i);
        expect_time_limited(c, id);
        snprintf(id, sizeof id, "n-%d", i);
        expect_time_limited(c, id);
    }

    /* Every slot is free again: each echo runs promptly, one after another... */
    for (int i = 1; i <= ECHO; i++) {
        char id[32];
        snprintf(id, sizeof id, "e-%d", i);
        e2e_push_task(c, "default", id, "echo", "[1]");
        json_t *res = e2e_wait_result(c, id, "SUCCESS", TEST_SOON);
        ASSERT(res != NULL);
        json_decref(res);
    }
    /* ...and the whole pool at once: four 5 s sleeps all start before any finishes. */
    for (int i = 1; i <= CONC; i++) {
        char id[32];
        snprintf(id, sizeof id, "s-%d", i);
        e2e_push_task(c, "default", id, "sleep", "[5]");
    }
    ASSERT(books_wait_done(b, c, 20.0));
    double first_end = INFINITY, last_start = -INFINITY;
    for (int i = 1; i <= CONC; i++) {
        char id[32];
        snprintf(id, sizeof id, "s-%d", i);
        json_t *res = e2e_result(c, id);
        last_start = fmax(last_start, e2e_jnum(res, "started_at"));
        first_end = fmin(first_end, e2e_jnum(res, "finished_at"));
        json_decref(res);
    }
    ASSERT(last_start < first_end);

    ASSERT_EQ(e2e_worker_wait(&w, 0), -1);
    e2e_worker_signal(&w, SIGTERM);
    int code = e2e_worker_wait(&w, 15.0);
    if (code != 0)
        e2e_log_dump(&w);
    ASSERT_EQ(code, 0);
    /* The stop tells the totals: nothing was still running to be put back. */
    ASSERT_EQ(
        e2e_log_count(&w, "received, 14 succeeded, 20 failed (0 invalid), 0 retried, 0 put back"),
        1);
    books_check(b, c);
    ASSERT_EQ(books_get_totals(b).duplicates, 0);
    ASSERT_EQ(e2e_int(c, "EXISTS workerd:slots:host:127.0.0.1"), 0);
    books_free(b);
    e2e_worker_stop(&w);
    redisFree(c);
    test_redis_stop(&r);
    test_nginx_stop(&n);
}
