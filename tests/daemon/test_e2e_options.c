/*
 * test_e2e_options.c - the real workerd binary with the settings and message fields that
 * change where things go or how long they may take: --result-backend on another Redis,
 * --prefix, the config file and environment, and a message's time_limit, expires and
 * ignore_result.
 */
#include "e2e.h"
#include "testlib.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

TEST(result_backend_on_another_redis_gets_the_results) {
    e2e_env e;
    e2e_env_start(&e);
    test_redis results;
    test_redis_start(&results, NULL);
    redisContext *rc = e2e_redis(results.port);
    char url[64];
    snprintf(url, sizeof url, "%s", e2e_url(results.port));
    E2E_START_READY(&e.w, e.redis.port, "--result-backend", url);
    e2e_push_task(e.c, "default", "rb-1", "echo", "[1]");
    json_t *res = e2e_wait_result(rc, "rb-1", NULL, 10.0);
    ASSERT(res != NULL);
    ASSERT_STREQ(e2e_jstr(res, "status"), "SUCCESS");
    json_decref(res);
    ASSERT_EQ(e2e_count_keys(e.c, "workerd:result:*"), 0); /* not on the broker */
    ASSERT_RANGE(e2e_int(rc, "TTL workerd:result:rb-1"), 86000, 86400);
    /* Acked on the broker. */
    double deadline = test_now() + 5.0;
    while (e2e_count_keys(e.c, "workerd:inflight:*") > 0 && test_now() < deadline)
        usleep(10000);
    ASSERT_EQ(e2e_count_keys(e.c, "workerd:inflight:*"), 0);
    redisFree(rc);
    test_redis_stop(&results);
    e2e_env_end(&e);
}

TEST(prefix_names_every_key) {
    e2e_env e;
    e2e_env_start(&e);
    E2E_START_READY(&e.w, e.redis.port, "--prefix", "acme");
    const char *msg = "{\"id\":\"p-1\",\"task\":\"echo\",\"args\":[]}";
    redisReply *r = redisCommand(e.c, "LPUSH acme:queue:default %s", msg);
    freeReplyObject(r);
    double deadline = test_now() + 10.0;
    while (e2e_int(e.c, "EXISTS acme:result:p-1") == 0 && test_now() < deadline)
        usleep(10000);
    ASSERT_EQ(e2e_int(e.c, "EXISTS acme:result:p-1"), 1);
    ASSERT_EQ(e2e_count_keys(e.c, "workerd:*"), 0);
    ASSERT_EQ(e2e_int(e.c, "HLEN acme:workers"), 1);
    e2e_env_end(&e);
}

TEST(config_file_and_environment_set_the_queues) {
    e2e_env e;
    e2e_env_start(&e);
    char *dir = test_tmpdir("conf");
    char path[512];
    snprintf(path, sizeof path, "%s/workerd.conf", dir);
    FILE *f = fopen(path, "w");
    ASSERT(f != NULL);
    fprintf(f, "# queues from the file, concurrency from the environment\n"
               "WORKERD_QUEUES=fromfile\nWORKERD_CONCURRENCY=1\n");
    fclose(f);
    setenv("WORKERD_CONCURRENCY", "2", 1); /* the environment overrides the file */
    E2E_START_READY(&e.w, e.redis.port, "--config", path);
    unsetenv("WORKERD_CONCURRENCY");
    ASSERT_EQ(e2e_log_count(&e.w, "concurrency 2, queues fromfile"), 1);
    e2e_push_task(e.c, "fromfile", "cf-1", "echo", "[]");
    json_decref(e2e_must_result(&e, "cf-1"));
    e2e_env_end(&e);
    test_rmtree(dir);
    free(dir);
}

TEST(time_limit_stops_a_long_task_with_a_failure) {
    e2e_env e;
    e2e_env_start(&e);
    E2E_START_READY(&e.w, e.redis.port);
    double t0 = test_now();
    e2e_push(e.c, "default",
             "{\"id\":\"tl-1\",\"task\":\"sleep\",\"args\":[10],\"time_limit\":0.3}");
    json_t *res = e2e_must_result(&e, "tl-1");
    ASSERT_RANGE(test_now() - t0, 0.25, 0.3 + TEST_SOON); /* not the task's 10 s */
    ASSERT_STREQ(e2e_jstr(res, "status"), "FAILURE");
    ASSERT_STREQ(e2e_jstr(json_object_get(res, "error"), "type"), "TimeLimitExceeded");
    json_decref(res);
    ASSERT_EQ(e2e_count_keys(e.c, "workerd:inflight:*"), 0);
    e2e_env_end(&e);
}

TEST(expired_message_is_revoked_not_run) {
    e2e_env e;
    e2e_env_start(&e);
    E2E_START_READY(&e.w, e.redis.port);
    e2e_push(e.c, "default", "{\"id\":\"ex-1\",\"task\":\"sleep\",\"args\":[60],\"expires\":1000}");
    double t0 = test_now();
    json_t *res = e2e_must_result(&e, "ex-1");
    ASSERT_RANGE(test_now() - t0, 0, TEST_SOON); /* not slept */
    ASSERT_STREQ(e2e_jstr(res, "status"), "REVOKED");
    ASSERT_STREQ(e2e_jstr(json_object_get(res, "error"), "type"), "TaskExpired");
    json_decref(res);
    e2e_env_end(&e);
}

TEST(ignore_result_stores_nothing_but_acks) {
    e2e_env e;
    e2e_env_start(&e);
    E2E_START_READY(&e.w, e.redis.port, "-c", "1");
    e2e_push(e.c, "default",
             "{\"id\":\"ig-1\",\"task\":\"echo\",\"args\":[],\"ignore_result\":true}");
    e2e_push_task(e.c, "default", "ig-2", "echo", "[]"); /* after it, on one slot */
    json_decref(e2e_must_result(&e, "ig-2"));
    ASSERT(e2e_result(e.c, "ig-1") == NULL);
    ASSERT_EQ(e2e_int(e.c, "LLEN workerd:queue:default"), 0);
    ASSERT_EQ(e2e_count_keys(e.c, "workerd:inflight:*"), 0);
    e2e_env_end(&e);
}

TEST(retries_field_is_reported_in_the_result) {
    e2e_env e;
    e2e_env_start(&e);
    E2E_START_READY(&e.w, e.redis.port);
    e2e_push(e.c, "default", "{\"id\":\"rt-1\",\"task\":\"echo\",\"args\":[],\"retries\":2}");
    json_t *res = e2e_must_result(&e, "rt-1");
    ASSERT_EQ(e2e_jnum(res, "retries"), 2);
    json_decref(res);
    e2e_env_end(&e);
}
