/*
 * test_e2e_shutdown.c - the real workerd binary stopping: warm (SIGTERM, a first SIGINT)
 * lets a running task finish or, past --shutdown-timeout, puts it back; cold (a second
 * SIGINT, SIGQUIT) puts it back at once. Either way the process exits 0, nothing stays
 * in flight, and the worker unregisters.
 */
#include "e2e.h"
#include "testlib.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct env {
    test_redis redis;
    redisContext *c;
    e2e_worker w;
} env;

static void env_start(env *e) {
    memset(e, 0, sizeof *e);
    test_redis_start(&e->redis, NULL);
    e->c = e2e_redis(e->redis.port);
}

static void env_end(env *e) {
    e2e_worker_stop(&e->w);
    redisFree(e->c);
    test_redis_stop(&e->redis);
}

/* Push a task and wait until the worker reports it running. */
static void push_and_wait_started(env *e, const char *id, const char *task, const char *args) {
    e2e_push_task(e->c, "default", id, task, args);
    json_t *res = e2e_wait_result(e->c, id, "STARTED", 10.0);
    if (!res) {
        e2e_log_dump(&e->w);
        test__fail(__FILE__, __LINE__, "%s was not STARTED within 10 s", id);
    }
    json_decref(res);
}

/* The process exited 0 within timeout seconds. */
static void expect_clean_exit(env *e, double timeout) {
    int code = e2e_worker_wait(&e->w, timeout);
    if (code != 0)
        e2e_log_dump(&e->w);
    ASSERT_EQ(code, 0);
}

/* Nothing in flight, no landing list, no registration or heartbeat left. */
static void expect_nothing_left(env *e) {
    ASSERT_EQ(e2e_count_keys(e->c, "workerd:inflight:*"), 0);
    ASSERT_EQ(e2e_count_keys(e->c, "workerd:landing:*"), 0);
    ASSERT_EQ(e2e_count_keys(e->c, "workerd:worker:*"), 0);
    ASSERT_EQ(e2e_int(e->c, "HLEN workerd:workers"), 0);
}

/* The queue holds exactly the one message, byte for byte as it was pushed: a shutdown is
 * not the message's fault, so no redelivery is counted in it. */
static void expect_back_in_queue(env *e, const char *id, const char *task, const char *args) {
    ASSERT_EQ(e2e_int(e->c, "LLEN workerd:queue:default"), 1);
    char want[256];
    snprintf(want, sizeof want, "{\"id\":\"%s\",\"task\":\"%s\",\"args\":%s}", id, task, args);
    redisReply *r = redisCommand(e->c, "LINDEX workerd:queue:default 0");
    ASSERT(r && r->type == REDIS_REPLY_STRING);
    ASSERT_STREQ(r->str, want);
    freeReplyObject(r);
}

TEST(sigterm_when_idle_exits_0_and_unregisters) {
    env e;
    env_start(&e);
    E2E_START_READY(&e.w, e.redis.port);
    ASSERT_EQ(e2e_int(e.c, "HLEN workerd:workers"), 1);
    double t0 = test_now();
    e2e_worker_signal(&e.w, SIGTERM);
    expect_clean_exit(&e, 10.0);
    ASSERT_RANGE(test_now() - t0, 0, TEST_SOON); /* an idle BLMOVE does not hold it up */
    expect_nothing_left(&e);
    env_end(&e);
}

TEST(warm_shutdown_lets_a_running_task_finish) {
    env e;
    env_start(&e);
    E2E_START_READY(&e.w, e.redis.port);
    push_and_wait_started(&e, "warm-1", "sleep", "[1]");
    e2e_worker_signal(&e.w, SIGTERM);
    expect_clean_exit(&e, 10.0);
    json_t *res = e2e_result(e.c, "warm-1");
    ASSERT_STREQ(e2e_jstr(res, "status"), "SUCCESS");
    json_decref(res);
    ASSERT_EQ(e2e_int(e.c, "LLEN workerd:queue:default"), 0);
    expect_nothing_left(&e);
    env_end(&e);
}

TEST(warm_shutdown_takes_no_new_task) {
    env e;
    env_start(&e);
    E2E_START_READY(&e.w, e.redis.port, "-c", "1");
    push_and_wait_started(&e, "warm-2", "sleep", "[1]");
    e2e_worker_signal(&e.w, SIGTERM);
    ASSERT(e2e_log_wait(&e.w, "warm shutdown", 5.0));
    e2e_push_task(e.c, "default", "late-1", "echo", "[]");
    expect_clean_exit(&e, 10.0);
    json_t *res = e2e_result(e.c, "warm-2");
    ASSERT_STREQ(e2e_jstr(res, "status"), "SUCCESS");
    json_decref(res);
    ASSERT(e2e_result(e.c, "late-1") == NULL);
    expect_back_in_queue(&e, "late-1", "echo", "[]");
    expect_nothing_left(&e);
    env_end(&e);
}

TEST(warm_shutdown_timeout_puts_the_task_back) {
    env e;
    env_start(&e);
    E2E_START_READY(&e.w, e.redis.port, "--shutdown-timeout", "1");
    push_and_wait_started(&e, "long-1", "sleep", "[30]");
    double t0 = test_now();
    e2e_worker_signal(&e.w, SIGTERM);
    expect_clean_exit(&e, 10.0);
    ASSERT_RANGE(test_now() - t0, 0.9, 1 + TEST_SOON); /* not the task's 30 s */
    expect_back_in_queue(&e, "long-1", "sleep", "[30]");
    expect_nothing_left(&e);
    ASSERT(e2e_log_count(&e.w, "interrupted by shutdown") == 1);
    env_end(&e);
}

TEST(second_sigint_is_a_cold_shutdown) {
    env e;
    env_start(&e);
    E2E_START_READY(&e.w, e.redis.port); /* default --shutdown-timeout: 30 s */
    push_and_wait_started(&e, "long-2", "sleep", "[30]");
    double t0 = test_now();
    e2e_worker_signal(&e.w, SIGINT);
    ASSERT(e2e_log_wait(&e.w, "warm shutdown", 5.0));
    e2e_worker_signal(&e.w, SIGINT);
    expect_clean_exit(&e, 10.0);
    ASSERT_RANGE(test_now() - t0, 0, TEST_SOON); /* not the tasks' 30 s */
    ASSERT_EQ(e2e_log_count(&e.w, "cold shutdown"), 1);
    expect_back_in_queue(&e, "long-2", "sleep", "[30]");
    expect_nothing_left(&e);
    env_end(&e);
}

TEST(sigquit_is_a_cold_shutdown) {
    env e;
    env_start(&e);
    E2E_START_READY(&e.w, e.redis.port, "-c", "4");
    /* Four running: every one goes back, in the original order. */
    for (int i = 0; i < 4; i++) {
        char id[32];
        snprintf(id, sizeof id, "q-%d", i);
        push_and_wait_started(&e, id, "sleep", "[30]");
    }
    double t0 = test_now();
    e2e_worker_signal(&e.w, SIGQUIT);
    expect_clean_exit(&e, 10.0);
    ASSERT_RANGE(test_now() - t0, 0, TEST_SOON); /* not the tasks' 30 s */
    ASSERT_EQ(e2e_int(e.c, "LLEN workerd:queue:default"), 4);
    /* RPOP order (what the next worker takes first) is the push order. */
    for (int i = 0; i < 4; i++) {
        char id[32];
        snprintf(id, sizeof id, "q-%d", i);
        redisReply *r = redisCommand(e.c, "RPOP workerd:queue:default");
        ASSERT(r && r->type == REDIS_REPLY_STRING);
        ASSERT(strstr(r->str, id) != NULL);
        freeReplyObject(r);
    }
    expect_nothing_left(&e);
    env_end(&e);
}

TEST(put_back_task_runs_on_the_next_worker) {
    env e;
    env_start(&e);
    E2E_START_READY(&e.w, e.redis.port);
    push_and_wait_started(&e, "again-1", "sleep", "[0.5]");
    e2e_worker_signal(&e.w, SIGQUIT);
    expect_clean_exit(&e, 10.0);
    e2e_worker_stop(&e.w);
    E2E_START(&e.w, e.redis.port);
    json_t *res = e2e_wait_result(e.c, "again-1", "SUCCESS", 10.0);
    ASSERT(res != NULL);
    json_decref(res);
    e2e_worker_signal(&e.w, SIGTERM);
    expect_clean_exit(&e, 10.0);
    expect_nothing_left(&e);
    env_end(&e);
}
