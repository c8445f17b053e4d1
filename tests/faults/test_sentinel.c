/*
 * test_sentinel.c - workerd and workerctl behind Redis Sentinel (redis+sentinel:// URLs),
 * with Debian's redis-server and redis-sentinel on loopback (tests/lib/sentinelfix.h):
 * one master, one replica, three sentinels.
 *
 * The master is SIGKILLed under load and the replica promoted: the workers must follow
 * it by themselves (same processes) and the books must balance (tests/lib/books.h):
 * every id its final result, duplicates only for runs in flight around the failover.
 * The producer pushes with WAIT 1 afterwards, which is what README.md asks of a producer
 * whose messages must survive a failover: a write the replica never got is lost with the
 * master, whoever made it.
 *
 * Also: sentinels unreachable at start (a clear error, then the worker gets there once
 * they are up), a sentinel that names a replica (skipped for the next one; alone, it is
 * refused with what it said), and a failover during a warm shutdown (the tasks in
 * flight still get their results, on the new master, and the worker exits 0).
 */
#include "books.h"
#include "ctlrun.h"
#include "e2e.h"
#include "sentinelfix.h"
#include "testlib.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { N = 2000, WORKERS = 2 };

/* WAIT until the replica has every write so far (the producer's side of the guarantee). */
static void wait_replicated(redisContext *c) {
    ASSERT(e2e_int(c, "WAIT 1 5000") >= 1);
}

TEST(master_killed_under_load_fails_over_and_loses_nothing) {
    sfix f;
    sfix_start(&f, true);
    int old = sfix_master_port(&f);
    ASSERT_EQ(old, f.node[0].port);
    redisContext *c = sfix_connect(old);
    books *b = books_new();
    books_ids(b, "f-", 1, N, "SUCCESS");
    for (int i = 1; i <= N; i++) {
        char id[32];
        snprintf(id, sizeof id, "f-%d", i);
        e2e_push_task(c, "default", id, "sleep", "[0.02]");
    }
    wait_replicated(c);
    redisFree(c);

    e2e_worker w[WORKERS];
    for (int i = 0; i < WORKERS; i++) {
        E2E_START_READY(&w[i], 0, "-b", f.url, "-c", "20", "--heartbeat", "1", "-l", "debug");
        books_log(b, w[i].log);
    }
    /* A quarter done: SIGKILL the master. */
    c = sfix_connect(old);
    ASSERT_WITHIN(e2e_int(c, "LLEN workerd:queue:default") < N * 3 / 4, 20.0);
    redisFree(c);
    double t0 = books_now();
    test_redis_kill(&f.node[0], SIGKILL);
    int now = sfix_wait_failover(&f, old, 30.0);
    ASSERT_EQ(now, f.node[1].port);
    for (int i = 0; i < WORKERS; i++)
        ASSERT(e2e_log_wait_n(&w[i], "broker: connected to Redis", 2, 20.0));
    books_window(b, "master SIGKILL and failover", t0, books_now());
    printf("faults: failover took %.2f s\n", books_now() - t0);

    c = sfix_connect(now);
    bool done = books_wait_done(b, c, 40.0);
    if (!done)
        for (int i = 0; i < WORKERS; i++)
            e2e_log_dump(&w[i]);
    ASSERT(done);
    for (int i = 0; i < WORKERS; i++) {
        ASSERT_EQ(e2e_worker_wait(&w[i], 0), -1); /* the same processes throughout */
        e2e_worker_signal(&w[i], SIGTERM);
    }
    for (int i = 0; i < WORKERS; i++)
        ASSERT_EQ(e2e_worker_wait(&w[i], 15.0), 0);
    books_check(b, c);
    books_free(b);
    for (int i = 0; i < WORKERS; i++)
        e2e_worker_stop(&w[i]);
    redisFree(c);
    sfix_stop(&f);
}

TEST(sentinels_unreachable_at_start_are_retried_with_a_clear_error) {
    sfix f;
    sfix_ports(&f);
    /* Sentinels that want a password of their own (never shown in the log). */
    f.spass = "s3nt@pw";
    strcat(f.url, "?sentinel_password=s3nt%40pw");
    e2e_worker w;
    E2E_START(&w, 0, "-b", f.url, "-c", "2");
    ASSERT(e2e_log_wait(&w, "no sentinel led to a master 'mymaster'", 10.0));
    char needle[64];
    snprintf(needle, sizeof needle, "sentinel 127.0.0.1:%d unreachable", f.sport[2]);
    ASSERT(e2e_log_wait(&w, needle, 1.0));
    ASSERT_EQ(e2e_worker_wait(&w, 0), -1); /* still running, retrying */

    sfix_start_nodes(&f);
    sfix_start_sentinels(&f, false);
    e2e_wait_ready(&w);
    redisContext *c = sfix_connect(f.node[0].port);
    e2e_push_task(c, "default", "late-1", "echo", "[1]");
    json_t *r = e2e_wait_result(c, "late-1", "SUCCESS", 10.0);
    ASSERT(r != NULL);
    json_decref(r);
    ASSERT_EQ(e2e_log_count(&w, "s3nt"), 0);
    ASSERT(e2e_log_count(&w, "sentinel_password=***") >= 1);
    e2e_worker_signal(&w, SIGTERM);
    ASSERT_EQ(e2e_worker_wait(&w, 15.0), 0);
    e2e_worker_stop(&w);
    redisFree(c);
    sfix_stop(&f);
}

TEST(a_sentinel_naming_a_replica_is_skipped_or_refused) {
    sfix f;
    sfix_start(&f, false);
    int liar = sfix_start_liar(&f, 0, "127.0.0.1", f.node[1].port);
    char url[600];
    /* The liar first: the worker must end up on the real master through the next one. */
    snprintf(url, sizeof url, "redis+sentinel://127.0.0.1:%d,127.0.0.1:%d/" SFIX_MASTER, liar,
             f.sport[0]);
    e2e_worker w;
    E2E_START_READY(&w, 0, "-b", url, "-c", "2");
    redisContext *c = sfix_connect(f.node[0].port);
    e2e_push_task(c, "default", "liar-1", "echo", "[1]");
    json_t *r = e2e_wait_result(c, "liar-1", "SUCCESS", 10.0);
    ASSERT(r != NULL);
    json_decref(r);
    ASSERT_EQ(e2e_log_count(&w, "unreachable"), 0);

    /* workerctl alone with the liar: refused (exit 3), saying what the sentinel named. */
    snprintf(url, sizeof url, "redis+sentinel://127.0.0.1:%d/" SFIX_MASTER, liar);
    ctlrun run;
    CTL_RUN(&run, "-b", url, "stats");
    ASSERT_EQ(run.code, 3);
    char needle[64];
    snprintf(needle, sizeof needle, "names 127.0.0.1:%d, which is not a master", f.node[1].port);
    ASSERT(strstr(run.err, needle) != NULL);
    ctlrun_free(&run);
    /* And through the real sentinels it works. */
    CTL_RUN(&run, "-b", f.url, "stats");
    ASSERT_EQ(run.code, 0);
    ctlrun_free(&run);

    e2e_worker_signal(&w, SIGTERM);
    ASSERT_EQ(e2e_worker_wait(&w, 15.0), 0);
    e2e_worker_stop(&w);
    redisFree(c);
    sfix_stop(&f);
}

TEST(failover_during_a_warm_shutdown_still_stores_the_results) {
    enum { M = 8 };
    sfix f;
    sfix_start(&f, true);
    int old = sfix_master_port(&f);
    redisContext *c = sfix_connect(old);
    books *b = books_new();
    books_ids(b, "ws-", 1, M, "SUCCESS");
    e2e_worker w;
    E2E_START_READY(&w, 0, "-b", f.url, "-c", "8", "-l", "debug");
    books_log(b, w.log);
    for (int i = 1; i <= M; i++) {
        char id[32];
        snprintf(id, sizeof id, "ws-%d", i);
        e2e_push_task(c, "default", id, "sleep", "[1.5]");
    }
    wait_replicated(c);
    ASSERT(e2e_log_wait_n(&w, "started (tag", M, 10.0));
    wait_replicated(c); /* the fetch's moves into the in-flight hash, too */
    redisFree(c);
    e2e_worker_signal(&w, SIGTERM);
    ASSERT(e2e_log_wait(&w, "warm shutdown", 5.0));
    double t0 = books_now();
    test_redis_kill(&f.node[0], SIGKILL);
    int now = sfix_wait_failover(&f, old, 30.0);
    int code = e2e_worker_wait(&w, 40.0);
    if (code != 0)
        e2e_log_dump(&w);
    ASSERT_EQ(code, 0);
    books_window(b, "master SIGKILL during warm shutdown", t0, books_now());
    c = sfix_connect(now);
    ASSERT(books_wait_done(b, c, 10.0));
    books_check(b, c);
    books_totals t = books_get_totals(b);
    ASSERT_EQ(t.executions, M); /* every task finished in the shutdown, none ran again */
    books_free(b);
    e2e_worker_stop(&w);
    redisFree(c);
    sfix_stop(&f);
}

/* A master demoted by hand keeps its clients' connections and answers their writes with
 * -READONLY: the worker must take that as "ask the sentinels again", not wait it out. The
 * sentinel here is the fake one, told the new master only after the switch. */
TEST(a_demoted_master_answering_readonly_sends_the_worker_to_the_new_one) {
    sfix f;
    sfix_ports(&f);
    sfix_start_nodes(&f);
    int a = f.node[0].port, b = f.node[1].port;
    int liar = sfix_start_liar(&f, 0, "127.0.0.1", a);
    char url[600];
    snprintf(url, sizeof url, "redis+sentinel://127.0.0.1:%d/" SFIX_MASTER, liar);
    e2e_worker w;
    E2E_START_READY(&w, 0, "-b", url, "-c", "2", "--heartbeat", "1");
    redisContext *ca = sfix_connect(a), *cb = sfix_connect(b);
    e2e_push_task(ca, "default", "before", "echo", "[1]");
    json_t *r = e2e_wait_result(ca, "before", "SUCCESS", 10.0);
    ASSERT(r != NULL);
    json_decref(r);

    /* Swap the roles: b becomes the master, a its replica; the worker's connections to a
     * stay open. */
    wait_replicated(ca);
    redisReply *rep = redisCommand(cb, "REPLICAOF NO ONE");
    freeReplyObject(rep);
    char port[16];
    snprintf(port, sizeof port, "%d", b);
    rep = redisCommand(ca, "REPLICAOF 127.0.0.1 %s", port);
    freeReplyObject(rep);
    sfix_start_liar(&f, liar, "127.0.0.1", b);
    e2e_push_task(cb, "default", "after", "echo", "[2]");
    r = e2e_wait_result(cb, "after", "SUCCESS", 20.0);
    if (r == NULL)
        e2e_log_dump(&w);
    ASSERT(r != NULL);
    json_decref(r);
    ASSERT(e2e_log_wait(&w, "READONLY", 1.0));

    e2e_worker_signal(&w, SIGTERM);
    ASSERT_EQ(e2e_worker_wait(&w, 15.0), 0);
    e2e_worker_stop(&w);
    redisFree(ca);
    redisFree(cb);
    sfix_stop(&f);
}

/* A master frozen (SIGSTOP: a partition, as its clients see it) keeps their connections
 * open and answers nothing, so nothing fails that would make the worker reconnect. The
 * sentinels' +switch-master announcement must move it to the promoted replica while the
 * old master is still frozen. */
TEST(a_frozen_master_is_left_when_the_sentinels_announce_the_switch) {
    sfix f;
    sfix_start(&f, true);
    int old = sfix_master_port(&f);
    e2e_worker w;
    E2E_START_READY(&w, 0, "-b", f.url, "-c", "2");
    redisContext *c = sfix_connect(old);
    e2e_push_task(c, "default", "before", "echo", "[1]");
    json_t *r = e2e_wait_result(c, "before", "SUCCESS", 10.0);
    ASSERT(r != NULL);
    json_decref(r);
    wait_replicated(c);
    redisFree(c);

    test_redis_kill(&f.node[0], SIGSTOP);
    int now = sfix_wait_failover(&f, old, 30.0);
    c = sfix_connect(now);
    e2e_push_task(c, "default", "after", "echo", "[2]");
    r = e2e_wait_result(c, "after", "SUCCESS", 20.0);
    if (r == NULL)
        e2e_log_dump(&w);
    ASSERT(r != NULL);
    json_decref(r);
    ASSERT(e2e_log_count(&w, "+switch-master") >= 1);

    test_redis_kill(&f.node[0], SIGCONT);
    e2e_worker_signal(&w, SIGTERM);
    ASSERT_EQ(e2e_worker_wait(&w, 30.0), 0);
    e2e_worker_stop(&w);
    redisFree(c);
    sfix_stop(&f);
}
