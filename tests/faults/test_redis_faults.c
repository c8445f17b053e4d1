/*
 * test_redis_faults.c - Redis itself failing under load, with exact accounting
 * (tests/lib/books.h): redis-server SIGKILLed and restarted from its append-only file
 * (appendfsync always, so every acknowledged write survives), and redis-server frozen
 * with SIGSTOP for longer than the workers' heartbeat TTL, then continued.
 *
 * The workers must survive both (same processes), reconnect, and leave the books
 * balanced. An outage or pause longer than the heartbeat TTL (3 s here) lets heartbeats
 * expire, so on its return a worker may recover another live worker's messages and run
 * them again: duplicates of tasks in flight during the outage are explained by it (the
 * books count a run started up to BOOKS_WINDOW_SLACK before the window as in flight).
 * Nothing else may run twice, and nothing may be lost. Retries and countdowns are in the
 * mix, waiting in the scheduled set across both faults.
 *
 * And retries scheduled while Redis restarts: thousands of tasks ask for a retry, Redis
 * is SIGKILLed while their acks move them into the scheduled set, and comes back within
 * the heartbeat TTL: each retry runs exactly once (not lost, not doubled).
 */
#include "books.h"
#include "e2e.h"
#include "testlib.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { N = 400, MIXED = 50, WORKERS = 2 };

static void push_all(redisContext *c) {
    for (int i = 1; i <= N; i++) {
        char id[32], args[32], msg[256];
        snprintf(id, sizeof id, "r-%d", i);
        /* 0.1 to 0.3 s, spread evenly: about 4 s of work for 2 workers of 10 slots. */
        snprintf(args, sizeof args, "[%.2f]", 0.1 + 0.2 * (double)(i % 11) / 10.0);
        e2e_push_task(c, "default", id, "sleep", args);
        if (i % (N / MIXED) == 0) {
            /* A task that passes on its second retry, 0.5 to 2 s apart ... */
            int k = i / (N / MIXED);
            snprintf(msg, sizeof msg,
                     "{\"id\":\"rr-%d\",\"task\":\"fail\",\"kwargs\":{\"retry\":true,"
                     "\"retry_in\":%.2f,\"succeed_after\":2}}",
                     k, 0.5 + 1.5 * (double)(k % 7) / 6.0);
            e2e_push(c, "default", msg);
            /* ... and an echo due 1 to 8 s after it is first taken. */
            snprintf(msg, sizeof msg, "{\"id\":\"rc-%d\",\"task\":\"echo\",\"countdown\":%.2f}", k,
                     1.0 + 7.0 * (double)(k % 13) / 12.0);
            e2e_push(c, "default", msg);
        }
    }
}

/* Wait (on a fresh connection each time, Redis may be away) until the queue is down to
 * at most `left` messages. */
static void wait_queue_below(int port, long long left, double timeout) {
    redisContext *c = e2e_redis(port);
    double deadline = test_now() + timeout;
    while (e2e_int(c, "LLEN workerd:queue:default") > left && test_now() < deadline)
        usleep(10000);
    ASSERT(test_now() < deadline);
    redisFree(c);
}

TEST(redis_killed_restarted_and_paused_loses_nothing) {
    static const char *const aof[] = {"--appendonly", "yes", "--appendfsync", "always", NULL};
    test_redis r;
    test_redis_start(&r, aof);
    redisContext *c = e2e_redis(r.port);
    books *b = books_new();
    books_ids(b, "r-", 1, N, "SUCCESS");
    books_ids(b, "rr-", 1, MIXED, "SUCCESS");
    books_ids(b, "rc-", 1, MIXED, "SUCCESS");
    push_all(c);
    redisFree(c);

    e2e_worker w[WORKERS];
    for (int i = 0; i < WORKERS; i++) {
        E2E_START(&w[i], r.port, "-c", "10", "--heartbeat", "1", "-l", "debug");
        books_log(b, w[i].log);
    }

    /* A quarter done: SIGKILL Redis, restart it 3.5 s later (past the heartbeat TTL). */
    wait_queue_below(r.port, (N + 2 * MIXED) * 3 / 4, 20.0);
    double t0 = books_now();
    test_redis_kill(&r, SIGKILL);
    for (int i = 0; i < WORKERS; i++)
        ASSERT(e2e_log_wait(&w[i], "broker: Redis unreachable", 5.0));
    usleep(3500000);
    test_redis_restart(&r);
    for (int i = 0; i < WORKERS; i++)
        ASSERT(e2e_log_wait_n(&w[i], "broker: connected to Redis", 2, 15.0));
    books_window(b, "Redis SIGKILL and restart", t0, books_now());
    printf("faults: Redis down for %.2f s\n", books_now() - t0);

    /* Further on: freeze Redis for 4 s, past the TTL, with tasks in flight. */
    wait_queue_below(r.port, N / 3, 20.0);
    double t1 = books_now();
    test_redis_kill(&r, SIGSTOP);
    usleep(4000000);
    test_redis_kill(&r, SIGCONT);
    books_window(b, "Redis SIGSTOP", t1, books_now());

    c = e2e_redis(r.port);
    bool done = books_wait_done(b, c, 40.0);
    if (!done)
        for (int i = 0; i < WORKERS; i++)
            e2e_log_dump(&w[i]);
    ASSERT(done);
    /* The same processes throughout; the outage was logged once per connection. */
    for (int i = 0; i < WORKERS; i++) {
        ASSERT_EQ(e2e_worker_wait(&w[i], 0), -1);
        ASSERT_EQ(e2e_log_count(&w[i], "broker: Redis unreachable"), 1);
    }
    for (int i = 0; i < WORKERS; i++)
        e2e_worker_signal(&w[i], SIGTERM);
    for (int i = 0; i < WORKERS; i++) {
        int code = e2e_worker_wait(&w[i], 15.0);
        if (code != 0)
            e2e_log_dump(&w[i]);
        ASSERT_EQ(code, 0);
    }
    books_check(b, c);
    books_free(b);
    for (int i = 0; i < WORKERS; i++)
        e2e_worker_stop(&w[i]);
    redisFree(c);
    test_redis_stop(&r);
}

enum { RETRY_N = 2000 };

TEST(retries_scheduled_while_redis_restarts_are_neither_lost_nor_doubled) {
    static const char *const aof[] = {"--appendonly", "yes", "--appendfsync", "always", NULL};
    test_redis r;
    test_redis_start(&r, aof);
    redisContext *c = e2e_redis(r.port);
    books *b = books_new();
    books_ids(b, "rt-", 1, RETRY_N, "SUCCESS");
    e2e_worker w[WORKERS];
    for (int i = 0; i < WORKERS; i++) {
        E2E_START_READY(&w[i], r.port, "-c", "50", "--heartbeat", "2", "-l", "debug");
        books_log(b, w[i].log);
    }
    /* Pushed in a stream, 50 every 10 ms; halfway, with the workers busy moving the
     * first half's retries into the scheduled set, Redis is SIGKILLed and restarted at
     * once (well within the 6 s heartbeat TTL: nobody is presumed dead). */
    double t0 = 0, t1 = 0;
    for (int i = 1; i <= RETRY_N; i++) {
        char msg[256];
        snprintf(msg, sizeof msg,
                 "{\"id\":\"rt-%d\",\"task\":\"fail\",\"kwargs\":{\"retry\":true,"
                 "\"retry_in\":1.5,\"succeed_after\":1}}",
                 i);
        e2e_push(c, "default", msg);
        if (i % 50 == 0)
            usleep(10000);
        if (i == RETRY_N / 2) {
            long long before = e2e_int(c, "ZCARD workerd:scheduled");
            redisFree(c);
            t0 = books_now();
            test_redis_kill(&r, SIGKILL);
            test_redis_restart(&r);
            c = e2e_redis(r.port);
            t1 = books_now();
            printf("faults: Redis SIGKILLed with %lld retries scheduled, back with %lld\n", before,
                   e2e_int(c, "ZCARD workerd:scheduled"));
        }
    }
    for (int i = 0; i < WORKERS; i++)
        ASSERT(e2e_log_wait_n(&w[i], "broker: connected to Redis", 2, 15.0));
    books_window(b, "Redis SIGKILL and restart", t0, t1);

    bool done = books_wait_done(b, c, TEST_NEVER);
    if (!done)
        for (int i = 0; i < WORKERS; i++)
            e2e_log_dump(&w[i]);
    ASSERT(done);
    for (int i = 0; i < WORKERS; i++) {
        e2e_worker_signal(&w[i], SIGTERM);
        ASSERT_EQ(e2e_worker_wait(&w[i], 15.0), 0);
    }
    books_check(b, c);
    /* Nobody was presumed dead, so nothing may run twice: each id ran its first attempt
     * once and its retry once. */
    books_totals t = books_get_totals(b);
    ASSERT_EQ(t.duplicates, 0);
    ASSERT_EQ(t.executions, 2 * RETRY_N);
    for (int i = 1; i <= RETRY_N; i += 37) {
        char id[32];
        snprintf(id, sizeof id, "rt-%d", i);
        json_t *res = e2e_result(c, id);
        ASSERT_EQ(e2e_jnum(res, "retries"), 1);
        json_decref(res);
    }
    books_free(b);
    for (int i = 0; i < WORKERS; i++)
        e2e_worker_stop(&w[i]);
    redisFree(c);
    test_redis_stop(&r);
}
