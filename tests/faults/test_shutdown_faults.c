/*
 * test_shutdown_faults.c - a warm shutdown (SIGTERM) under load with a short deadline
 * (--shutdown-timeout 1), with exact accounting (tests/lib/books.h).
 *
 * Tasks sleep 0.5 to 3 s. At SIGTERM the worker stops fetching, lets its running tasks
 * finish for one second, and interrupts the rest. What finished is acked (a result, no
 * longer in flight); everything else — interrupted or never started — is back in the
 * queue, and nothing is left in flight. A second worker then finishes everything. The
 * only tasks that may run twice are those the deadline interrupted (the log says
 * "interrupted by shutdown" for each): each of them runs exactly twice, nothing else does.
 */
#include "books.h"
#include "e2e.h"
#include "testlib.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { N = 40, CONC = 10 };

static int final_results(redisContext *c) {
    int n = 0;
    for (int i = 1; i <= N; i++) {
        char id[32];
        snprintf(id, sizeof id, "d-%d", i);
        json_t *res = e2e_result(c, id);
        const char *st = e2e_jstr(res, "status");
        n += st && strcmp(st, "STARTED") != 0;
        json_decref(res);
    }
    return n;
}

TEST(warm_shutdown_deadline_acks_finished_and_puts_back_the_rest) {
    test_redis r;
    test_redis_start(&r, NULL);
    redisContext *c = e2e_redis(r.port);
    books *b = books_new();
    books_ids(b, "d-", 1, N, "SUCCESS");
    for (int i = 1; i <= N; i++) {
        char id[32], args[32];
        snprintf(id, sizeof id, "d-%d", i);
        /* 0.5, 1.0, ... 3.0 s in turn: some end within the deadline, some cannot. */
        snprintf(args, sizeof args, "[%.1f]", 0.5 * (1 + (i - 1) % 6));
        e2e_push_task(c, "default", id, "sleep", args);
    }

    e2e_worker a, z;
    E2E_START(&a, r.port, "-c", "10", "--shutdown-timeout", "1", "--heartbeat", "1", "-l", "debug");
    books_log(b, a.log);
    /* Let it get going: the first ten started and a few more after them. */
    ASSERT(e2e_log_wait_n(&a, "sleep started (tag", CONC + 3, 10.0));
    double t0 = test_now();
    e2e_worker_signal(&a, SIGTERM);
    books_fault(b, 1);
    int code = e2e_worker_wait(&a, 15.0);
    if (code != 0)
        e2e_log_dump(&a);
    ASSERT_EQ(code, 0);
    /* The deadline, not the longest task (3 s), bounded the stop. */
    ASSERT_RANGE(test_now() - t0, 0.5, 2.9);

    /* Finished: acked with a result. The rest: back in the queue, none left in flight. */
    int finished = final_results(c);
    int interrupted = e2e_log_count(&a, "interrupted by shutdown");
    printf("faults: at the shutdown deadline %d finished, %d interrupted\n", finished, interrupted);
    ASSERT(interrupted > 0);
    ASSERT(finished > 0);
    ASSERT_EQ(e2e_int(c, "LLEN workerd:queue:default"), N - finished);
    ASSERT_EQ(e2e_count_keys(c, "workerd:inflight:*"), 0);
    ASSERT_EQ(e2e_count_keys(c, "workerd:landing:*"), 0);
    ASSERT_EQ(e2e_int(c, "HLEN workerd:workers"), 0);
    char line[64];
    snprintf(line, sizeof line, "%d tasks did not finish in time", interrupted);
    ASSERT_EQ(e2e_log_count(&a, line), 1);

    E2E_START(&z, r.port, "-c", "20", "--heartbeat", "1", "-l", "debug");
    books_log(b, z.log);
    bool done = books_wait_done(b, c, 20.0);
    if (!done)
        e2e_log_dump(&z);
    ASSERT(done);
    e2e_worker_signal(&z, SIGTERM);
    ASSERT_EQ(e2e_worker_wait(&z, 15.0), 0);

    books_check(b, c);
    /* Exactly the interrupted ones ran twice; nothing finished ran again. */
    ASSERT_EQ(books_get_totals(b).duplicates, interrupted);
    books_free(b);
    e2e_worker_stop(&a);
    e2e_worker_stop(&z);
    redisFree(c);
    test_redis_stop(&r);
}
