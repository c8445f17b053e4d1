/*
 * test_e2e_basic.c - the real workerd binary, a real redis-server and nginx: the quick
 * start of the README (LPUSH a message, GET its result), the concurrency bound, strict
 * queue priority and the shape of the result document.
 */
#include "e2e.h"
#include "testlib.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

TEST(echo_task_result_is_its_args) {
    e2e_env e;
    e2e_env_start(&e);
    E2E_START_READY(&e.w, e.redis.port);
    e2e_push(e.c, "default",
             "{\"id\":\"job-1\",\"task\":\"echo\",\"args\":[\"a\",1,{\"b\":[true,null]}]}");
    json_t *res = e2e_must_result(&e, "job-1");
    ASSERT_STREQ(e2e_jstr(res, "status"), "SUCCESS");
    json_t *want = json_loads("[\"a\",1,{\"b\":[true,null]}]", 0, NULL);
    ASSERT(json_equal(json_object_get(res, "result"), want));
    json_decref(want);
    json_decref(res);
    /* Acked: nothing left in the queue or in flight. */
    ASSERT_EQ(e2e_int(e.c, "LLEN workerd:queue:default"), 0);
    ASSERT_EQ(e2e_count_keys(e.c, "workerd:inflight:*"), 0);
    e2e_env_end(&e);
}

TEST(message_without_id_is_run) {
    e2e_env e;
    e2e_env_start(&e);
    E2E_START_READY(&e.w, e.redis.port);
    e2e_push(e.c, "default", "{\"task\":\"echo\",\"args\":[7]}");
    /* The id is generated, so look for the one result key that appears. */
    double deadline = test_now() + 10.0;
    while (e2e_count_keys(e.c, "workerd:result:*") == 0 && test_now() < deadline)
        usleep(10000);
    ASSERT_EQ(e2e_count_keys(e.c, "workerd:result:*"), 1);
    e2e_env_end(&e);
}

TEST(http_get_of_nginx_fast_is_200_ok) {
    e2e_env e;
    e2e_env_start(&e);
    test_nginx n;
    test_nginx_start(&n);
    E2E_START_READY(&e.w, e.redis.port);
    char msg[256];
    snprintf(msg, sizeof msg,
             "{\"id\":\"get-1\",\"task\":\"http.get\",\"args\":[\"http://127.0.0.1:%d/fast\"]}",
             n.port);
    e2e_push(e.c, "default", msg);
    json_t *res = e2e_must_result(&e, "get-1");
    ASSERT_STREQ(e2e_jstr(res, "status"), "SUCCESS");
    json_t *body = json_object_get(res, "result");
    ASSERT_EQ(e2e_jnum(body, "status"), 200);
    ASSERT_STREQ(e2e_jstr(body, "body"), "ok\n");
    json_decref(res);
    test_nginx_stop(&n);
    e2e_env_end(&e);
}

TEST(fail_task_stores_failure_with_its_message) {
    e2e_env e;
    e2e_env_start(&e);
    E2E_START_READY(&e.w, e.redis.port);
    e2e_push_task(e.c, "default", "fail-1", "fail", "[\"the disk is full\"]");
    json_t *res = e2e_must_result(&e, "fail-1");
    ASSERT_STREQ(e2e_jstr(res, "status"), "FAILURE");
    ASSERT_STREQ(e2e_jstr(json_object_get(res, "error"), "type"), "TaskError");
    ASSERT_STREQ(e2e_jerror(res), "the disk is full");
    ASSERT(json_object_get(res, "result") == NULL);
    json_decref(res);
    /* A task failure is not a bad message: no dead letter. */
    ASSERT_EQ(e2e_int(e.c, "LLEN workerd:dead"), 0);
    e2e_env_end(&e);
}

TEST(sleep_task_sleeps_and_returns_seconds) {
    e2e_env e;
    e2e_env_start(&e);
    E2E_START_READY(&e.w, e.redis.port);
    e2e_push_task(e.c, "default", "sleep-1", "sleep", "[0.3]");
    json_t *started = e2e_wait_result(e.c, "sleep-1", "STARTED", 5.0);
    ASSERT(started != NULL); /* a 0.3 s task is seen running first */
    json_decref(started);
    json_t *res = e2e_must_result(&e, "sleep-1");
    ASSERT_STREQ(e2e_jstr(res, "status"), "SUCCESS");
    ASSERT(fabs(e2e_jnum(res, "result") - 0.3) < 1e-9);
    ASSERT_RANGE(e2e_jnum(res, "runtime"), 0.29, 0.3 + TEST_SOON);
    json_decref(res);
    e2e_env_end(&e);
}

/* Intervals [start, end) from the results: the most that overlap at any instant. */
static int max_overlap(const double *start, const double *end, int n) {
    int best = 0;
    for (int i = 0; i < n; i++) {
        int k = 0; /* running at the instant task i started */
        for (int j = 0; j < n; j++)
            if (start[j] <= start[i] && end[j] > start[i])
                k++;
        if (k > best)
            best = k;
    }
    return best;
}

TEST(concurrency_3_never_runs_a_fourth_task) {
    e2e_env e;
    e2e_env_start(&e);
    E2E_START_READY(&e.w, e.redis.port, "-c", "3");
    for (int i = 0; i < 10; i++) {
        char id[32];
        snprintf(id, sizeof id, "c-%d", i);
        e2e_push_task(e.c, "default", id, "sleep", "[0.3]");
    }
    double start[10], end[10], first = 1e300, last = 0;
    for (int i = 0; i < 10; i++) {
        char id[32];
        snprintf(id, sizeof id, "c-%d", i);
        json_t *res = e2e_must_result(&e, id);
        ASSERT_STREQ(e2e_jstr(res, "status"), "SUCCESS");
        start[i] = e2e_jnum(res, "started_at");
        end[i] = e2e_jnum(res, "finished_at");
        first = fmin(first, start[i]);
        last = fmax(last, end[i]);
        json_decref(res);
    }
    ASSERT_EQ(max_overlap(start, end, 10), 3);
    /* Four rounds of 0.3 s: at least 1.2 s, not 0.3 (unbounded); never more than three
     * at once, and three at once (not serial), the overlap says. */
    ASSERT_RANGE(last - first, 1.15, 1.2 + TEST_SOON);
    e2e_env_end(&e);
}

TEST(solo_pool_runs_one_task_at_a_time) {
    e2e_env e;
    e2e_env_start(&e);
    E2E_START_READY(&e.w, e.redis.port, "-P", "solo", "-c", "50");
    e2e_push_task(e.c, "default", "s-1", "sleep", "[0.3]");
    e2e_push_task(e.c, "default", "s-2", "sleep", "[0.3]");
    json_t *a = e2e_must_result(&e, "s-1"), *b = e2e_must_result(&e, "s-2");
    ASSERT(e2e_jnum(b, "started_at") >= e2e_jnum(a, "finished_at"));
    json_decref(a);
    json_decref(b);
    e2e_env_end(&e);
}

TEST(high_queue_is_served_before_default) {
    e2e_env e;
    e2e_env_start(&e);
    /* Loaded before the worker starts, so both queues are full from its first fetch. */
    for (int i = 0; i < 5; i++) {
        char id[32];
        snprintf(id, sizeof id, "d-%d", i);
        e2e_push_task(e.c, "default", id, "echo", "[]");
        snprintf(id, sizeof id, "h-%d", i);
        e2e_push_task(e.c, "high", id, "echo", "[]");
    }
    E2E_START(&e.w, e.redis.port, "-Q", "high,default", "-c", "1");
    double high_done = 0, default_first = 1e300;
    for (int i = 0; i < 5; i++) {
        char id[32];
        snprintf(id, sizeof id, "h-%d", i);
        json_t *res = e2e_must_result(&e, id);
        high_done = fmax(high_done, e2e_jnum(res, "finished_at"));
        json_decref(res);
    }
    for (int i = 0; i < 5; i++) {
        char id[32];
        snprintf(id, sizeof id, "d-%d", i);
        json_t *res = e2e_must_result(&e, id);
        default_first = fmin(default_first, e2e_jnum(res, "started_at"));
        json_decref(res);
    }
    ASSERT(high_done <= default_first);
    e2e_env_end(&e);
}

TEST(fifo_order_within_one_queue) {
    e2e_env e;
    e2e_env_start(&e);
    for (int i = 0; i < 5; i++) {
        char id[32];
        snprintf(id, sizeof id, "f-%d", i);
        e2e_push_task(e.c, "default", id, "echo", "[]");
    }
    E2E_START(&e.w, e.redis.port, "-c", "1");
    double prev = 0;
    for (int i = 0; i < 5; i++) {
        char id[32];
        snprintf(id, sizeof id, "f-%d", i);
        json_t *res = e2e_must_result(&e, id);
        ASSERT(e2e_jnum(res, "started_at") >= prev);
        prev = e2e_jnum(res, "finished_at");
        json_decref(res);
    }
    e2e_env_end(&e);
}

TEST(result_has_every_field_and_the_ttl) {
    e2e_env e;
    e2e_env_start(&e);
    E2E_START_READY(&e.w, e.redis.port, "--result-expires", "120", "-n", "node7");
    e2e_push_task(e.c, "default", "r-1", "sleep", "[0.1]");
    json_t *res = e2e_must_result(&e, "r-1");
    ASSERT_STREQ(e2e_jstr(res, "id"), "r-1");
    ASSERT_STREQ(e2e_jstr(res, "task"), "sleep");
    ASSERT_STREQ(e2e_jstr(res, "status"), "SUCCESS");
    ASSERT(json_object_get(res, "result") != NULL);
    ASSERT_EQ(e2e_jnum(res, "retries"), 0);
    ASSERT(e2e_jstr(res, "worker") && strncmp(e2e_jstr(res, "worker"), "node7:", 6) == 0);
    double started = e2e_jnum(res, "started_at"), finished = e2e_jnum(res, "finished_at");
    double runtime = e2e_jnum(res, "runtime");
    ASSERT(started > 1e9 && finished >= started);
    ASSERT(fabs(runtime - (finished - started)) < 1e-3);
    ASSERT_RANGE(runtime, 0.09, 0.1 + TEST_SOON);
    json_decref(res);
    ASSERT_RANGE(e2e_int(e.c, "TTL workerd:result:r-1"), 100, 120);
    e2e_env_end(&e);
}

TEST(result_expires_0_keeps_results_forever) {
    e2e_env e;
    e2e_env_start(&e);
    E2E_START_READY(&e.w, e.redis.port, "--result-expires", "0");
    e2e_push_task(e.c, "default", "r-2", "echo", "[]");
    json_decref(e2e_must_result(&e, "r-2"));
    ASSERT_EQ(e2e_int(e.c, "TTL workerd:result:r-2"), -1);
    e2e_env_end(&e);
}

TEST(worker_registers_and_heartbeats_while_running) {
    e2e_env e;
    e2e_env_start(&e);
    E2E_START_READY(&e.w, e.redis.port, "--heartbeat", "1");
    ASSERT_EQ(e2e_count_keys(e.c, "workerd:worker:*"), 1);
    long long ttl = -2;
    redisReply *r = redisCommand(e.c, "KEYS workerd:worker:*");
    ASSERT(r && r->type == REDIS_REPLY_ARRAY && r->elements == 1);
    char key[512];
    snprintf(key, sizeof key, "%s", r->element[0]->str);
    freeReplyObject(r);
    ttl = e2e_int(e.c, "TTL %s", key);
    ASSERT_RANGE(ttl, 1, 3); /* three heartbeats */
    /* Still there after more than one TTL: the heartbeat refreshes it. */
    usleep(3500000);
    ASSERT_EQ(e2e_int(e.c, "EXISTS %s", key), 1);
    e2e_env_end(&e);
}

TEST(idle_worker_picks_up_each_new_message_at_once) {
    e2e_env e;
    e2e_env_start(&e);
    E2E_START_READY(&e.w, e.redis.port);
    /* Two pushes in a row, to an idle worker, twenty times: the second one lands while
     * the worker is fetching the first, the window where a wake-up can get lost (and the
     * worker would sit out its idle refetch period). */
    double worst = 0;
    for (int i = 0; i < 20; i++) {
        char a[32], b[32];
        snprintf(a, sizeof a, "idle-%da", i);
        snprintf(b, sizeof b, "idle-%db", i);
        double t0 = test_now();
        e2e_push_task(e.c, "default", a, "echo", "[]");
        e2e_push_task(e.c, "default", b, "echo", "[]");
        json_decref(e2e_must_result(&e, a));
        json_decref(e2e_must_result(&e, b));
        worst = fmax(worst, test_now() - t0);
        usleep(20000); /* idle again: the worker is back in its blocking wait */
    }
    ASSERT_RANGE(worst, 0, 0.5);
    e2e_env_end(&e);
}

/* The queue list is shown whole, however long: in the start-up and ready lines, and in the
 * heartbeat that `workerctl workers` reads (it used to be cut at 1023 bytes). */
TEST(a_long_queue_list_is_shown_whole) {
    e2e_env e;
    e2e_env_start(&e);
    char queues[12 * 128] = "";
    for (int i = 0; i < 10; i++) {
        char name[128];
        snprintf(name, sizeof name, "%s%0120d", i ? "," : "", i);
        strcat(queues, name);
    }
    ASSERT(strlen(queues) > 1200);
    E2E_START_READY(&e.w, e.redis.port, "-Q", queues);
    char line[sizeof queues + 32];
    snprintf(line, sizeof line, "ready: consuming %s\n", queues);
    ASSERT_EQ(e2e_log_count(&e.w, line), 1);
    redisReply *r = redisCommand(e.c, "KEYS workerd:worker:*");
    ASSERT(r && r->type == REDIS_REPLY_ARRAY && r->elements == 1);
    char key[512];
    snprintf(key, sizeof key, "%s", r->element[0]->str);
    freeReplyObject(r);
    char *got = NULL;
    r = redisCommand(e.c, "HGET %s queues", key);
    ASSERT(r && r->type == REDIS_REPLY_STRING);
    got = strdup(r->str);
    freeReplyObject(r);
    ASSERT_STREQ(got, queues);
    free(got);
    e2e_env_end(&e);
}
