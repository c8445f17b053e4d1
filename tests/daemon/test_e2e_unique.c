/*
 * test_e2e_unique.c - unique tasks (unique_for, unique_key) through the real workerd
 * binary and a real redis-server, as a producer with redis-cli sees them: of two messages
 * with the same key, one runs and the other gets a REVOKED Duplicate result naming the
 * original, whether the original is pending, running or waiting for its countdown; once
 * the original finished, the same message runs again; a unique_key groups different
 * arguments; a SIGKILLed owner's recovered message passes its own lock (an id-less one
 * too) and the books balance; bad values are dead-lettered naming the field.
 */
#include "books.h"
#include "e2e.h"
#include "testlib.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Asserts res is a Duplicate of `original`. */
static void expect_duplicate_of(const json_t *res, const char *original) {
    ASSERT_STREQ(e2e_jstr(res, "status"), "REVOKED");
    json_t *err = json_object_get(res, "error");
    ASSERT_STREQ(e2e_jstr(err, "type"), "Duplicate");
    ASSERT(strstr(e2e_jerror(res), original) != NULL);
    ASSERT_STREQ(e2e_jstr(res, "original"), original);
}

TEST(two_identical_messages_pushed_together_run_once) {
    e2e_env e;
    e2e_env_start(&e);
    E2E_START_READY(&e.w, e.redis.port, "-c", "4", "-l", "debug");
    const char *msg = "\"task\":\"sleep\",\"args\":[1],\"unique_for\":60";
    char both[512];
    snprintf(both, sizeof both, "{\"id\":\"a\",%s}", msg);
    const char *argv[] = {"LPUSH", "workerd:queue:default", both, NULL};
    char second[256];
    snprintf(second, sizeof second, "{\"id\":\"b\",%s}", msg);
    argv[3] = second;
    redisReply *r = redisCommandArgv(e.c, 4, argv, NULL);
    ASSERT(r && r->type == REDIS_REPLY_INTEGER && r->integer == 2);
    freeReplyObject(r);
    json_t *ra = e2e_must_result_within(&e, "a", TEST_NEVER),
           *rb = e2e_must_result_within(&e, "b", TEST_NEVER);
    bool a_ran = strcmp(e2e_jstr(ra, "status"), "SUCCESS") == 0;
    json_t *ran = a_ran ? ra : rb, *dup = a_ran ? rb : ra;
    ASSERT_STREQ(e2e_jstr(ran, "status"), "SUCCESS");
    expect_duplicate_of(dup, a_ran ? "a" : "b");
    ASSERT_EQ(e2e_log_count(&e.w, "sleep started"), 1);
    /* The owner's ack released the lock in the same step as its result was stored. */
    ASSERT_EQ(e2e_count_keys(e.c, "workerd:unique:*"), 0);
    json_decref(ra);
    json_decref(rb);
    e2e_env_end(&e);
}

/* Without ids (redis-cli producers): two results under two generated ids, one of each. */
TEST(two_identical_messages_without_ids_run_once) {
    e2e_env e;
    e2e_env_start(&e);
    E2E_START_READY(&e.w, e.redis.port, "-c", "4");
    const char *msg = "{\"task\":\"sleep\",\"args\":[1],\"unique_for\":60}";
    e2e_push(e.c, "default", msg);
    e2e_push(e.c, "default", msg);
    ASSERT_WITHIN(e2e_count_keys(e.c, "workerd:result:*") == 2 &&
                      e2e_count_keys(e.c, "workerd:unique:*") == 0,
                  TEST_NEVER);
    redisReply *keys = redisCommand(e.c, "KEYS workerd:result:*");
    ASSERT(keys && keys->type == REDIS_REPLY_ARRAY && keys->elements == 2);
    int success = 0, duplicate = 0;
    for (size_t i = 0; i < 2; i++) {
        json_t *res = e2e_wait_result(e.c, keys->element[i]->str + strlen("workerd:result:"), NULL,
                                      TEST_NEVER);
        ASSERT(res != NULL);
        success += strcmp(e2e_jstr(res, "status"), "SUCCESS") == 0;
        duplicate += e2e_jstr(res, "original") != NULL;
        json_decref(res);
    }
    freeReplyObject(keys);
    ASSERT_EQ(success, 1);
    ASSERT_EQ(duplicate, 1);
    e2e_env_end(&e);
}

TEST(duplicate_arriving_while_the_first_waits_for_its_countdown_is_revoked) {
    e2e_env e;
    e2e_env_start(&e);
    E2E_START_READY(&e.w, e.redis.port, "-l", "debug");
    e2e_pushf(e.c, "default",
              "{\"id\":\"s1\",\"task\":\"echo\",\"args\":[7],\"unique_for\":60,"
              "\"countdown\":1.5}");
    ASSERT_WITHIN(e2e_int(e.c, "ZCARD workerd:scheduled") == 1, TEST_SOON);
    ASSERT_EQ(e2e_count_keys(e.c, "workerd:unique:*"), 1);
    e2e_pushf(e.c, "default", "{\"id\":\"s2\",\"task\":\"echo\",\"args\":[7],\"unique_for\":60}");
    json_t *res = e2e_must_result_within(&e, "s2", TEST_SOON);
    expect_duplicate_of(res, "s1");
    json_decref(res);
    /* The scheduled original still runs when due: its own lock lets it pass. */
    res = e2e_must_result_within(&e, "s1", TEST_NEVER);
    ASSERT_STREQ(e2e_jstr(res, "status"), "SUCCESS");
    json_decref(res);
    ASSERT_EQ(e2e_log_count(&e.w, "[task s2] echo started"), 0);
    ASSERT_EQ(e2e_count_keys(e.c, "workerd:unique:*"), 0);
    e2e_env_end(&e);
}

TEST(once_the_first_finished_the_same_message_runs_again) {
    e2e_env e;
    e2e_env_start(&e);
    E2E_START_READY(&e.w, e.redis.port);
    e2e_pushf(e.c, "default", "{\"id\":\"f1\",\"task\":\"echo\",\"args\":[1],\"unique_for\":600}");
    json_t *res = e2e_must_result_within(&e, "f1", TEST_SOON);
    ASSERT_STREQ(e2e_jstr(res, "status"), "SUCCESS");
    json_decref(res);
    e2e_pushf(e.c, "default", "{\"id\":\"f2\",\"task\":\"echo\",\"args\":[1],\"unique_for\":600}");
    res = e2e_must_result_within(&e, "f2", TEST_SOON);
    ASSERT_STREQ(e2e_jstr(res, "status"), "SUCCESS");
    json_decref(res);
    /* A FAILURE is final too: it releases the lock. */
    e2e_pushf(e.c, "default", "{\"id\":\"x1\",\"task\":\"fail\",\"unique_for\":600}");
    res = e2e_must_result_within(&e, "x1", TEST_SOON);
    ASSERT_STREQ(e2e_jstr(res, "status"), "FAILURE");
    json_decref(res);
    ASSERT_EQ(e2e_count_keys(e.c, "workerd:unique:*"), 0);
    e2e_env_end(&e);
}

TEST(unique_key_groups_different_arguments) {
    e2e_env e;
    e2e_env_start(&e);
    E2E_START_READY(&e.w, e.redis.port, "-c", "4", "-l", "debug");
    e2e_pushf(e.c, "default",
              "{\"id\":\"g1\",\"task\":\"sleep\",\"args\":[1],\"unique_for\":60,"
              "\"unique_key\":\"user:42\"}");
    ASSERT(e2e_log_wait(&e.w, "[task g1] sleep started", TEST_SOON));
    e2e_pushf(e.c, "default",
              "{\"id\":\"g2\",\"task\":\"sleep\",\"args\":[0.1],\"unique_for\":60,"
              "\"unique_key\":\"user:42\"}");
    e2e_pushf(e.c, "default",
              "{\"id\":\"g3\",\"task\":\"sleep\",\"args\":[0.1],\"unique_for\":60,"
              "\"unique_key\":\"user:43\"}");
    json_t *res = e2e_must_result_within(&e, "g2", TEST_SOON);
    expect_duplicate_of(res, "g1");
    json_decref(res);
    res = e2e_must_result_within(&e, "g3", TEST_SOON);
    ASSERT_STREQ(e2e_jstr(res, "status"), "SUCCESS");
    json_decref(res);
    res = e2e_must_result_within(&e, "g1", TEST_NEVER);
    ASSERT_STREQ(e2e_jstr(res, "status"), "SUCCESS");
    json_decref(res);
    e2e_env_end(&e);
}

/* The owner's worker is SIGKILLed while the task runs: its lock names the message's id,
 * not the worker, so the recovered copy runs (not a Duplicate of itself), a message
 * without an id too (it comes back under the id it was given), and the books balance. */
TEST(owner_sigkilled_mid_run_its_recovered_message_runs) {
    test_redis r;
    test_redis_start(&r, NULL);
    redisContext *c = e2e_redis(r.port);
    books *b = books_new();
    books_ids(b, "own-", 1, 1, "SUCCESS");
    books_ids(b, "dup-", 1, 1, "REVOKED");
    e2e_worker w1, w2;
    E2E_START_READY(&w1, r.port, "--heartbeat", "1", "-c", "4", "-l", "debug");
    int l1 = books_log(b, w1.log);
    e2e_push(c, "default", "{\"id\":\"own-1\",\"task\":\"sleep\",\"args\":[2],\"unique_for\":60}");
    e2e_push(c, "default", "{\"task\":\"sleep\",\"args\":[2.5],\"unique_for\":60}");
    ASSERT(e2e_log_wait_n(&w1, "sleep started", 2, TEST_SOON));
    e2e_push(c, "default", "{\"id\":\"dup-1\",\"task\":\"sleep\",\"args\":[2],\"unique_for\":60}");
    json_t *res = e2e_wait_result(c, "dup-1", NULL, TEST_SOON);
    ASSERT(res != NULL);
    expect_duplicate_of(res, "own-1");
    json_decref(res);
    e2e_worker_signal(&w1, SIGKILL);
    ASSERT_EQ(e2e_worker_wait(&w1, 5.0), 128 + SIGKILL);
    books_log_fault(b, l1, "SIGKILL", books_now());
    E2E_START_READY(&w2, r.port, "--heartbeat", "1", "-c", "4", "-l", "debug");
    books_log(b, w2.log);
    bool done = books_wait_done(b, c, TEST_NEVER);
    if (!done)
        e2e_log_dump(&w2);
    ASSERT(done);
    books_check(b, c);
    ASSERT_EQ(books_runs(b, "own-1"), 2);
    ASSERT_EQ(books_runs(b, "dup-1"), 0);
    /* The id-less message ran again under the id it was first given: one result of its
     * own, a SUCCESS, beside own-1's and dup-1's. */
    ASSERT_WITHIN(e2e_count_keys(c, "workerd:unique:*") == 0, TEST_NEVER);
    redisReply *keys = redisCommand(c, "KEYS workerd:result:*");
    ASSERT(keys && keys->type == REDIS_REPLY_ARRAY);
    ASSERT_EQ(keys->elements, 3);
    for (size_t i = 0; i < keys->elements; i++) {
        const char *id = keys->element[i]->str + strlen("workerd:result:");
        if (strcmp(id, "own-1") == 0 || strcmp(id, "dup-1") == 0)
            continue;
        res = e2e_wait_result(c, id, NULL, TEST_NEVER);
        ASSERT(res != NULL);
        ASSERT_STREQ(e2e_jstr(res, "status"), "SUCCESS");
        json_decref(res);
    }
    freeReplyObject(keys);
    books_free(b);
    e2e_worker_stop(&w1);
    e2e_worker_stop(&w2);
    redisFree(c);
    test_redis_stop(&r);
}

TEST(bad_unique_values_are_dead_lettered_naming_the_field) {
    e2e_env e;
    e2e_env_start(&e);
    E2E_START_READY(&e.w, e.redis.port);
    const char *bad[] = {
        "\"unique_for\":\"60\"",
        "\"unique_for\":0",
        "\"unique_for\":-5",
        "\"unique_for\":1e12",
        "\"unique_for\":true",
        "\"unique_for\":60,\"unique_key\":[1]",
        "\"unique_for\":60,\"unique_key\":\"\"",
        "\"unique_key\":\"k\"",
    };
    size_t n = sizeof bad / sizeof *bad;
    for (size_t i = 0; i < n; i++)
        e2e_pushf(e.c, "default", "{\"id\":\"bad-%zu\",\"task\":\"echo\",%s}", i, bad[i]);
    ASSERT(e2e_wait_dead(e.c, (long long)n, TEST_SOON));
    for (size_t i = 0; i < n; i++) {
        char id[32];
        snprintf(id, sizeof id, "bad-%zu", i);
        json_t *res = e2e_must_result_within(&e, id, TEST_SOON);
        ASSERT_STREQ(e2e_jstr(res, "status"), "FAILURE");
        const char *why = e2e_jerror(res);
        bool names = strstr(why, i < 5 ? "\"unique_for\"" : "\"unique_key\"") != NULL;
        if (!names)
            test__fail(__FILE__, __LINE__, "%s: %s", bad[i], why);
        json_decref(res);
    }
    /* The worker carries on. */
    e2e_pushf(e.c, "default", "{\"id\":\"ok\",\"task\":\"echo\",\"unique_for\":1}");
    json_t *res = e2e_must_result_within(&e, "ok", TEST_SOON);
    ASSERT_STREQ(e2e_jstr(res, "status"), "SUCCESS");
    json_decref(res);
    e2e_env_end(&e);
}
