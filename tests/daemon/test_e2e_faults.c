/*
 * test_e2e_faults.c - the real workerd binary when things break: a worker SIGKILLed
 * mid-task (another worker recovers its message), a message that kills every worker
 * running it (poison pill), Redis killed and restarted mid-run, Redis not there at start,
 * and bad options.
 */
#include "e2e.h"
#include "testlib.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void expect_exit(e2e_worker *w, int want, double timeout) {
    int code = e2e_worker_wait(w, timeout);
    if (code != want)
        e2e_log_dump(w);
    ASSERT_EQ(code, want);
}

static void wait_started(redisContext *c, e2e_worker *w, const char *id) {
    json_t *res = e2e_wait_result(c, id, "STARTED", 10.0);
    if (!res) {
        e2e_log_dump(w);
        test__fail(__FILE__, __LINE__, "%s was not STARTED within 10 s", id);
    }
    json_decref(res);
}

TEST(killed_worker_task_is_recovered_by_another) {
    test_redis r;
    test_redis_start(&r, NULL);
    redisContext *c = e2e_redis(r.port);
    e2e_worker a, b;
    E2E_START_READY(&a, r.port, "--heartbeat", "1", "-n", "first");
    e2e_push_task(c, "default", "k-1", "sleep", "[0.5]");
    wait_started(c, &a, "k-1");
    e2e_worker_signal(&a, SIGKILL);
    ASSERT_EQ(e2e_worker_wait(&a, 5.0), 128 + SIGKILL);
    ASSERT_EQ(e2e_int(c, "HLEN workerd:workers"), 1); /* the dead one, with k-1 in flight */

    double t0 = test_now();
    E2E_START(&b, r.port, "--heartbeat", "1", "-n", "second");
    json_t *res = e2e_wait_result(c, "k-1", "SUCCESS", 15.0);
    if (!res)
        e2e_log_dump(&b);
    ASSERT(res != NULL);
    /* Within the dead worker's heartbeat TTL (3 s) and a recovery round, not never. */
    ASSERT_RANGE(test_now() - t0, 0, 4 + TEST_SOON);
    ASSERT(strncmp(e2e_jstr(res, "worker"), "second:", 7) == 0);
    json_decref(res);
    ASSERT_EQ(e2e_log_count(&b, "1 back to their queues"), 1);
    ASSERT_EQ(e2e_log_count(&b, "[task k-1] sleep redelivered 1 time(s)"), 1);
    ASSERT_EQ(e2e_count_keys(c, "workerd:inflight:*"), 0);
    ASSERT_EQ(e2e_int(c, "HLEN workerd:workers"), 1); /* only the second one now */

    e2e_worker_signal(&b, SIGTERM);
    expect_exit(&b, 0, 10.0);
    e2e_worker_stop(&a);
    e2e_worker_stop(&b);
    redisFree(c);
    test_redis_stop(&r);
}

/* A fetch whose reply is lost leaves entries in the worker's in-flight hash that it never
 * saw: simulated by writing one there by hand. The worker must put it back and run it. */
TEST(in_flight_entry_no_job_owns_is_put_back_and_run) {
    test_redis r;
    test_redis_start(&r, NULL);
    redisContext *c = e2e_redis(r.port);
    e2e_worker w;
    E2E_START_READY(&w, r.port, "--heartbeat", "1");
    redisReply *wids = redisCommand(c, "HKEYS workerd:workers");
    ASSERT(wids && wids->type == REDIS_REPLY_ARRAY && wids->elements == 1);
    const char *entry = "default\n{\"id\":\"orphan-1\",\"task\":\"echo\",\"args\":[7]}";
    redisReply *set =
        redisCommand(c, "HSET workerd:inflight:%s 999999 %s", wids->element[0]->str, entry);
    ASSERT(set && set->type == REDIS_REPLY_INTEGER);
    freeReplyObject(set);
    freeReplyObject(wids);
    json_t *res = e2e_wait_result(c, "orphan-1", "SUCCESS", 10.0);
    if (!res)
        e2e_log_dump(&w);
    ASSERT(res != NULL);
    json_decref(res);
    ASSERT(e2e_log_wait_n(&w, "put back 1 messages that a failed fetch", 1, 1.0));
    ASSERT_EQ(e2e_count_keys(c, "workerd:inflight:*"), 0);
    e2e_worker_signal(&w, SIGTERM);
    expect_exit(&w, 0, 10.0);
    e2e_worker_stop(&w);
    redisFree(c);
    test_redis_stop(&r);
}

TEST(poison_pill_is_dead_lettered_after_max_redeliveries) {
    test_redis r;
    test_redis_start(&r, NULL);
    redisContext *c = e2e_redis(r.port);
    e2e_worker a, b;
    E2E_START_READY(&a, r.port, "--heartbeat", "1");
    e2e_push_task(c, "default", "pill-1", "sleep", "[30]");
    wait_started(c, &a, "pill-1");
    e2e_worker_signal(&a, SIGKILL);
    ASSERT_EQ(e2e_worker_wait(&a, 5.0), 128 + SIGKILL);

    /* With --max-redeliveries 0 the first death is one too many. */
    E2E_START(&b, r.port, "--heartbeat", "1", "--max-redeliveries", "0");
    ASSERT(e2e_wait_dead(c, 1, 15.0));
    json_t *dead = e2e_dead_letters(c);
    json_t *d = json_array_get(dead, 0);
    ASSERT_STREQ(e2e_jstr(d, "reason"), "poison pill: redelivered 1 times");
    ASSERT_STREQ(e2e_jstr(d, "id"), "pill-1");
    ASSERT_STREQ(e2e_jstr(d, "queue"), "default");
    json_decref(dead);
    ASSERT_EQ(e2e_int(c, "LLEN workerd:queue:default"), 0);
    ASSERT(e2e_log_wait(&b, "1 dead-lettered as poison pills", 5.0));

    e2e_worker_signal(&b, SIGTERM);
    expect_exit(&b, 0, 10.0);
    e2e_worker_stop(&a);
    e2e_worker_stop(&b);
    redisFree(c);
    test_redis_stop(&r);
}

/* How many of the ids r-0..r-(n-1) have a final (SUCCESS) result. */
static int count_success(redisContext *c, int n) {
    int done = 0;
    for (int i = 0; i < n; i++) {
        char id[32];
        snprintf(id, sizeof id, "r-%d", i);
        json_t *res = e2e_result(c, id);
        const char *st = e2e_jstr(res, "status");
        done += st && strcmp(st, "SUCCESS") == 0;
        json_decref(res);
    }
    return done;
}

TEST(redis_killed_and_restarted_mid_run_loses_nothing) {
    static const char *const aof[] = {"--appendonly", "yes", "--appendfsync", "always", NULL};
    test_redis r;
    test_redis_start(&r, aof);
    redisContext *c = e2e_redis(r.port);
    e2e_worker w;
    enum { N = 200 };
    for (int i = 0; i < N; i++) {
        char id[32];
        snprintf(id, sizeof id, "r-%d", i);
        e2e_push_task(c, "default", id, "sleep", "[0.05]");
    }
    E2E_START(&w, r.port, "-c", "20", "--heartbeat", "1");
    /* About half done: kill Redis (no clean shutdown), bring it back a second later. */
    double deadline = test_now() + 15.0;
    while (e2e_int(c, "LLEN workerd:queue:default") > N / 2 && test_now() < deadline)
        usleep(5000);
    ASSERT(test_now() < deadline);
    redisFree(c);
    test_redis_kill(&r, SIGKILL);
    ASSERT(e2e_log_wait(&w, "broker: Redis unreachable", 5.0));
    usleep(1000000);
    test_redis_restart(&r);
    c = e2e_redis(r.port);

    deadline = test_now() + 20.0;
    int done = 0;
    while ((done = count_success(c, N)) < N && test_now() < deadline)
        usleep(50000);
    if (done < N)
        e2e_log_dump(&w);
    ASSERT_EQ(done, N);
    ASSERT_EQ(e2e_count_keys(c, "workerd:result:*"), N);
    /* The acker may still be finishing its last batch: give the in-flight hash a moment. */
    deadline = test_now() + 5.0;
    while (e2e_count_keys(c, "workerd:inflight:*") > 0 && test_now() < deadline)
        usleep(10000);
    ASSERT_EQ(e2e_count_keys(c, "workerd:inflight:*"), 0);
    ASSERT_EQ(e2e_int(c, "LLEN workerd:queue:default"), 0);
    /* Still the same process; the outage was logged once, the return once. */
    ASSERT(w.pid > 0 && e2e_worker_wait(&w, 0) == -1);
    ASSERT_EQ(e2e_log_count(&w, "broker: Redis unreachable"), 1);
    ASSERT_EQ(e2e_log_count(&w, "broker: connected to Redis"), 2);

    e2e_worker_signal(&w, SIGTERM);
    expect_exit(&w, 0, 10.0);
    ASSERT_EQ(e2e_count_keys(c, "workerd:landing:*"), 0);
    e2e_worker_stop(&w);
    redisFree(c);
    test_redis_stop(&r);
}

TEST(unreachable_broker_at_start_is_retried_until_it_comes) {
    test_redis r = {0};
    r.port = test_free_port();
    r.dir = test_tmpdir("redis");
    e2e_worker w;
    E2E_START(&w, r.port, "--heartbeat", "1");
    ASSERT(e2e_log_wait(&w, "broker: Redis unreachable", 5.0));
    ASSERT(e2e_log_wait(&w, "reconnecting", 1.0));
    usleep(500000);
    ASSERT_EQ(e2e_worker_wait(&w, 0), -1);                        /* still running */
    ASSERT_EQ(e2e_log_count(&w, "broker: Redis unreachable"), 1); /* said once, not per try */

    test_redis_restart(&r); /* a first start, on the port the worker is trying */
    redisContext *c = e2e_redis(r.port);
    e2e_push_task(c, "default", "late-redis", "echo", "[1]");
    json_t *res = e2e_wait_result(c, "late-redis", "SUCCESS", 15.0);
    if (!res)
        e2e_log_dump(&w);
    ASSERT(res != NULL);
    json_decref(res);

    e2e_worker_signal(&w, SIGTERM);
    expect_exit(&w, 0, 10.0);
    e2e_worker_stop(&w);
    redisFree(c);
    test_redis_stop(&r);
}

TEST(sigterm_before_the_broker_is_reachable_exits_0) {
    e2e_worker w;
    E2E_START(&w, test_free_port());
    ASSERT(e2e_log_wait(&w, "Redis unreachable", 5.0));
    double t0 = test_now();
    e2e_worker_signal(&w, SIGTERM);
    expect_exit(&w, 0, 10.0);
    ASSERT_RANGE(test_now() - t0, 0, TEST_SOON);
    e2e_worker_stop(&w);
}

TEST(unknown_pool_exits_2_with_one_line) {
    e2e_worker w;
    E2E_START(&w, 0, "-P", "prefork");
    expect_exit(&w, 2, 10.0);
    char *log = e2e_log_read(&w);
    ASSERT(strstr(log, "prefork") != NULL);
    ASSERT(strchr(log, '\n') == log + strlen(log) - 1); /* exactly one line */
    free(log);
    e2e_worker_stop(&w);
}

TEST(bad_concurrency_exits_2_with_one_line) {
    e2e_worker w;
    E2E_START(&w, 0, "-c", "0");
    expect_exit(&w, 2, 10.0);
    char *log = e2e_log_read(&w);
    ASSERT(strstr(log, "--concurrency") != NULL || strstr(log, "-c") != NULL);
    ASSERT(strchr(log, '\n') == log + strlen(log) - 1);
    free(log);
    e2e_worker_stop(&w);
}

TEST(bad_broker_url_exits_2) {
    e2e_worker w;
    E2E_START(&w, 0, "-b", "http://127.0.0.1:1/");
    expect_exit(&w, 2, 10.0);
    ASSERT_EQ(e2e_log_count(&w, "\n"), 1);
    e2e_worker_stop(&w);
}

TEST(cold_shutdown_during_an_outage_ends_and_leaves_the_task_for_recovery) {
    static const char *const aof[] = {"--appendonly", "yes", "--appendfsync", "always", NULL};
    test_redis r;
    test_redis_start(&r, aof);
    redisContext *c = e2e_redis(r.port);
    e2e_worker a, b;
    E2E_START_READY(&a, r.port, "--heartbeat", "1");
    e2e_push_task(c, "default", "out-1", "sleep", "[1]");
    wait_started(c, &a, "out-1");
    redisFree(c);
    test_redis_kill(&r, SIGKILL);
    ASSERT(e2e_log_wait(&a, "broker: Redis unreachable", 5.0));
    double t0 = test_now();
    e2e_worker_signal(&a, SIGQUIT);
    /* Nowhere to put the message back: it says so and exits 1, in bounded time. */
    expect_exit(&a, 1, 15.0);
    ASSERT_RANGE(test_now() - t0, 0, 5 + TEST_SOON); /* 5 s for Redis after a cold stop */
    ASSERT_EQ(e2e_log_count(&a, "could not put unfinished messages back"), 1);

    test_redis_restart(&r);
    c = e2e_redis(r.port);
    ASSERT_EQ(e2e_count_keys(c, "workerd:inflight:*"), 1); /* left for recovery */
    E2E_START(&b, r.port, "--heartbeat", "1");
    json_t *res = e2e_wait_result(c, "out-1", "SUCCESS", 15.0);
    if (!res)
        e2e_log_dump(&b);
    ASSERT(res != NULL);
    json_decref(res);
    e2e_worker_signal(&b, SIGTERM);
    expect_exit(&b, 0, 10.0);
    e2e_worker_stop(&a);
    e2e_worker_stop(&b);
    redisFree(c);
    test_redis_stop(&r);
}

TEST(warm_shutdown_during_an_outage_ends_in_bounded_time) {
    test_redis r;
    test_redis_start(&r, NULL);
    redisContext *c = e2e_redis(r.port);
    e2e_worker w;
    E2E_START_READY(&w, r.port);
    e2e_push_task(c, "default", "out-2", "sleep", "[0.5]");
    wait_started(c, &w, "out-2");
    redisFree(c);
    test_redis_kill(&r, SIGKILL);
    ASSERT(e2e_log_wait(&w, "broker: Redis unreachable", 5.0));
    double t0 = test_now();
    e2e_worker_signal(&w, SIGTERM);
    /* The task finishes; its result cannot be stored; the worker gives up after its
     * flush period (15 s) instead of retrying for minutes. */
    expect_exit(&w, 1, 30.0);
    ASSERT_RANGE(test_now() - t0, 0, 20.0);
    ASSERT_EQ(e2e_log_count(&w, "giving up storing 1 results"), 1);
    e2e_worker_stop(&w);
    test_redis_stop(&r);
}
