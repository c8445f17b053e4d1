/*
 * test_revoke_faults.c - revocations while workers are SIGKILLed under load, with exact
 * accounting (tests/lib/books.h): every id ends with one result, nothing is left in
 * Redis, and every task that ran twice ran first on a worker that was killed; besides,
 *
 *   - ids revoked by hand (README.md's redis-cli form) before they were pushed, and ids
 *     revoked the same way while they wait at the end of the queue, end REVOKED and never
 *     run, whichever worker takes them, also after a recovery;
 *   - long sleeps terminated with workerctl while they run, some before the kills begin
 *     and some while they go on, end REVOKED (stopped where they ran, or skipped by the
 *     worker that took them over from a killed one) and never SUCCESS.
 *
 * A random worker of three is killed every second or so and a replacement started; the
 * dead workers' messages come back once their heartbeat (TTL 3 s) expires.
 *
 * FAULTS_SEED in the environment replays a run's random choices (the seed is printed).
 */
#include "books.h"
#include "ctlrun.h"
#include "e2e.h"
#include "testlib.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { N = 500, PRE = 50, TAIL = 40, LONG = 6, WORKERS = 3, KILLS = 5 };

static void seed_random(void) {
    const char *env = getenv("FAULTS_SEED");
    unsigned seed = env ? (unsigned)strtoul(env, NULL, 10) : (unsigned)time(NULL) ^ getpid();
    printf("faults: FAULTS_SEED=%u\n", seed);
    srand(seed);
}

static double uniform(double lo, double hi) {
    return lo + (hi - lo) * ((double)rand() / RAND_MAX);
}

/* Revoke id by hand for a day: the mark, the revoked set, the stream entry, in order. */
static void revoke_by_hand(redisContext *c, const char *id) {
    long until = (long)time(NULL) + 86400;
    redisAppendCommand(c, "SET workerd:revoked:%s 1 EX 86400", id);
    redisAppendCommand(c, "ZADD workerd:revoked GT %ld %s", until, id);
    redisAppendCommand(c, "XADD workerd:control MAXLEN ~ 10000 * revoke %s until %ld", id, until);
    for (int k = 0; k < 3; k++) {
        redisReply *r = NULL;
        ASSERT_EQ(redisGetReply(c, (void **)&r), REDIS_OK);
        ASSERT(r != NULL && r->type != REDIS_REPLY_ERROR);
        freeReplyObject(r);
    }
}

static void push_sleep(redisContext *c, const char *id, double seconds) {
    char args[32];
    snprintf(args, sizeof args, "[%.3f]", seconds);
    e2e_push_task(c, "default", id, "sleep", args);
}

/* workerctl revoke --terminate of long-<first>..long-<last>. */
static void terminate_longs(int port, int first, int last) {
    const char *argv[16] = {"-b", e2e_url(port), "revoke", "--terminate"};
    char ids[LONG][16];
    int n = 4;
    for (int i = first; i <= last; i++) {
        snprintf(ids[i - first], sizeof ids[0], "long-%d", i);
        argv[n++] = ids[i - first];
    }
    argv[n] = NULL;
    ctlrun r;
    CTL_RUN_ENV(&r, NULL, argv);
    ASSERT_EQ(r.code, 0);
    ctlrun_free(&r);
}

TEST(revokes_and_terminates_under_random_sigkills_balance_the_books) {
    seed_random();
    test_redis rd;
    test_redis_start(&rd, NULL);
    redisContext *c = e2e_redis(rd.port);
    books *b = books_new();
    books_ids(b, "f-", 1, N, "SUCCESS");
    books_ids(b, "pre-", 1, PRE, "REVOKED");
    books_ids(b, "tail-", 1, TAIL, "REVOKED");
    books_ids(b, "long-", 1, LONG, "REVOKED");

    /* The long sleeps first, so they start at once; the pre-revoked ids among the rest;
     * the tail ids last, still waiting when they are revoked. */
    char id[32];
    for (int i = 1; i <= LONG; i++) {
        snprintf(id, sizeof id, "long-%d", i);
        push_sleep(c, id, 30);
    }
    for (int i = 1, pre = 1; i <= N; i++) {
        snprintf(id, sizeof id, "f-%d", i);
        push_sleep(c, id, uniform(0.15, 0.45));
        if (i % (N / PRE) == 0) {
            snprintf(id, sizeof id, "pre-%d", pre++);
            revoke_by_hand(c, id);
            push_sleep(c, id, 0.1);
        }
    }
    for (int i = 1; i <= TAIL; i++) {
        snprintf(id, sizeof id, "tail-%d", i);
        push_sleep(c, id, 0.1);
    }

    e2e_worker w[WORKERS + KILLS];
    int logs[WORKERS + KILLS], live[WORKERS], started = 0;
    for (int i = 0; i < WORKERS; i++) {
        E2E_START(&w[started], rd.port, "-c", "6", "--heartbeat", "1", "-l", "debug");
        logs[started] = books_log(b, w[started].log);
        live[i] = started++;
    }
    for (int i = 1; i <= LONG; i++) {
        snprintf(id, sizeof id, "long-%d", i);
        json_t *res = e2e_wait_result(c, id, "STARTED", 10.0);
        ASSERT(res != NULL);
        json_decref(res);
    }
    for (int i = 1; i <= TAIL; i++) {
        snprintf(id, sizeof id, "tail-%d", i);
        revoke_by_hand(c, id);
    }
    terminate_longs(rd.port, 1, LONG / 2);

    double t0 = test_now();
    for (int k = 0; k < KILLS; k++) {
        usleep((useconds_t)(uniform(0.7, 1.3) * 1e6));
        ASSERT(e2e_int(c, "LLEN workerd:queue:default") > 0); /* under load */
        int slot = rand() % WORKERS, victim = live[slot];
        e2e_worker_signal(&w[victim], SIGKILL);
        ASSERT_EQ(e2e_worker_wait(&w[victim], 5.0), 128 + SIGKILL);
        books_log_fault(b, logs[victim], "SIGKILL", books_now());
        printf("faults: %.2f s: SIGKILLed worker %d\n", test_now() - t0, victim);
        E2E_START(&w[started], rd.port, "-c", "6", "--heartbeat", "1", "-l", "debug");
        logs[started] = books_log(b, w[started].log);
        live[slot] = started++;
        if (k == 1)
            terminate_longs(rd.port, LONG / 2 + 1, LONG);
    }
    bool done = books_wait_done(b, c, 60.0);
    printf("faults: all results in %.2f s\n", test_now() - t0);
    if (!done)
        e2e_log_dump(&w[live[0]]);
    ASSERT(done);
    for (int i = 0; i < WORKERS; i++)
        e2e_worker_signal(&w[live[i]], SIGTERM);
    for (int i = 0; i < WORKERS; i++)
        ASSERT_EQ(e2e_worker_wait(&w[live[i]], 15.0), 0);

    books_check(b, c);
    int skipped = 0, stopped = 0;
    for (int i = 1; i <= PRE; i++) {
        snprintf(id, sizeof id, "pre-%d", i);
        ASSERT_EQ(books_runs(b, id), 0);
    }
    for (int i = 1; i <= TAIL; i++) {
        snprintf(id, sizeof id, "tail-%d", i);
        ASSERT_EQ(books_runs(b, id), 0);
    }
    for (int i = 1; i <= LONG; i++) {
        snprintf(id, sizeof id, "long-%d", i);
        ASSERT(books_runs(b, id) >= 1);
        json_t *res = e2e_result(c, id);
        const char *why = e2e_jerror(res);
        ASSERT(why != NULL);
        stopped += strcmp(why, "terminated") == 0;
        skipped += strcmp(why, "revoked") == 0;
        json_decref(res);
    }
    printf("faults: long sleeps: %d stopped where they ran, %d skipped after a recovery\n", stopped,
           skipped);
    ASSERT_EQ(stopped + skipped, LONG);
    books_free(b);
    for (int i = 0; i < started; i++)
        e2e_worker_stop(&w[i]);
    redisFree(c);
    test_redis_stop(&rd);
}
