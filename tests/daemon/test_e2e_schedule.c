/*
 * test_e2e_schedule.c - countdown, eta and expires through the real workerd binary and a
 * real redis-server, as a producer with redis-cli sees them: a message runs once its time
 * has come by the Redis server's clock and not before, waits in workerd:scheduled (never
 * in a worker's memory) meanwhile, survives every worker being SIGKILLed, is moved to its
 * queue once however many workers move at the same time, is revoked when taken after its
 * expiry, and every bad value of these fields is dead-lettered naming the field.
 *
 * "Not before" is checked exactly: the due time is counted from the server's TIME read
 * before the push, and a result's started_at is the worker's clock, the same host's.
 * "After" is checked with generous bounds only (TEST_SOON), never as a speed.
 */
#include "books.h"
#include "e2e.h"
#include "testlib.h"

#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Asserts res is a SUCCESS that started no earlier than due (and not absurdly later). */
static void expect_ran_from(const json_t *res, double due) {
    ASSERT_STREQ(e2e_jstr(res, "status"), "SUCCESS");
    double started = e2e_jnum(res, "started_at");
    if (started < due)
        test__fail(__FILE__, __LINE__, "started at %.6f, %.6f s before its due time %.6f", started,
                   due - started, due);
    ASSERT_RANGE(started - due, 0, TEST_SOON);
}

/* An RFC 3339 text of unix time t, in UTC or at +02:00, rounded up to the microsecond
 * (never earlier than t). */
static void rfc3339(double t, bool utc, char *out, size_t n) {
    time_t whole = (time_t)t;
    long usec = (long)ceil((t - (double)whole) * 1e6);
    if (usec >= 1000000) {
        whole++;
        usec -= 1000000;
    }
    time_t shown = utc ? whole : whole + 2 * 3600;
    struct tm tm;
    gmtime_r(&shown, &tm);
    char date[32];
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, n, "%s.%06ld%s", date, usec, utc ? "Z" : "+02:00");
}

TEST(countdown_runs_after_its_delay_and_not_before) {
    e2e_env e;
    e2e_env_start(&e);
    E2E_START_READY(&e.w, e.redis.port, "-l", "debug");
    double t0 = e2e_redis_time(e.c);
    e2e_pushf(e.c, "default", "{\"id\":\"cd\",\"task\":\"echo\",\"args\":[1],\"countdown\":1.5}");
    /* It waits in the scheduled set, with no result yet. */
    ASSERT_WITHIN(e2e_int(e.c, "ZCARD workerd:scheduled") == 1, TEST_SOON);
    ASSERT(e2e_result(e.c, "cd") == NULL);
    ASSERT_EQ(e2e_int(e.c, "LLEN workerd:queue:default"), 0);
    json_t *res = e2e_must_result_within(&e, "cd", 1.5 + TEST_NEVER);
    expect_ran_from(res, t0 + 1.5);
    ASSERT_EQ(e2e_int(e.c, "ZCARD workerd:scheduled"), 0);
    ASSERT_EQ(e2e_log_count(&e.w, "[task cd] echo started"), 1);
    json_decref(res);
    e2e_env_end(&e);
}

TEST(eta_as_unix_seconds_and_as_rfc3339_runs_then_and_not_before) {
    e2e_env e;
    e2e_env_start(&e);
    E2E_START_READY(&e.w, e.redis.port);
    double t0 = e2e_redis_time(e.c);
    char utc[64], plus2[64];
    rfc3339(t0 + 1.2, true, utc, sizeof utc);
    rfc3339(t0 + 1.4, false, plus2, sizeof plus2);
    e2e_pushf(e.c, "default", "{\"id\":\"num\",\"task\":\"echo\",\"eta\":%.6f}", t0 + 1.0);
    e2e_pushf(e.c, "default", "{\"id\":\"utc\",\"task\":\"echo\",\"eta\":\"%s\"}", utc);
    e2e_pushf(e.c, "default", "{\"id\":\"plus2\",\"task\":\"echo\",\"eta\":\"%s\"}", plus2);
    e2e_pushf(e.c, "default", "{\"id\":\"past\",\"task\":\"echo\",\"eta\":1000000000}");
    json_t *res = e2e_must_result_within(&e, "past", TEST_SOON); /* past: at once */
    ASSERT_STREQ(e2e_jstr(res, "status"), "SUCCESS");
    json_decref(res);
    res = e2e_must_result_within(&e, "num", TEST_NEVER);
    expect_ran_from(res, t0 + 1.0);
    json_decref(res);
    res = e2e_must_result_within(&e, "utc", TEST_NEVER);
    expect_ran_from(res, t0 + 1.2);
    json_decref(res);
    res = e2e_must_result_within(&e, "plus2", TEST_NEVER);
    expect_ran_from(res, t0 + 1.4);
    json_decref(res);
    e2e_env_end(&e);
}

/* A message without an id keeps the id it was given when first taken: one result. */
TEST(scheduled_message_without_id_reports_under_one_generated_id) {
    e2e_env e;
    e2e_env_start(&e);
    E2E_START_READY(&e.w, e.redis.port);
    e2e_pushf(e.c, "default", "{\"task\":\"echo\",\"args\":[\"anon\"],\"countdown\":0.3}");
    ASSERT_WITHIN(e2e_count_keys(e.c, "workerd:result:*") == 1 &&
                      e2e_int(e.c, "ZCARD workerd:scheduled") == 0,
                  TEST_NEVER);
    e2e_env_end(&e);
}

enum { RACE_N = 1000 };

/* Two workers divert 1,000 messages all due at the same instant, and both movers wake for
 * it: each message is moved once and run once. */
TEST(two_workers_move_the_same_thousand_due_messages_once_each) {
    test_redis r;
    test_redis_start(&r, NULL);
    redisContext *c = e2e_redis(r.port);
    books *b = books_new();
    books_ids(b, "due-", 1, RACE_N, "SUCCESS");
    e2e_worker w[2];
    for (int i = 0; i < 2; i++) {
        E2E_START_READY(&w[i], r.port, "-c", "200", "-l", "debug");
        books_log(b, w[i].log);
    }
    double due = e2e_redis_time(c) + 3.0;
    for (int i = 1; i <= RACE_N; i++) {
        char msg[128];
        snprintf(msg, sizeof msg, "{\"id\":\"due-%d\",\"task\":\"echo\",\"eta\":%.6f}", i, due);
        e2e_push(c, "default", msg);
    }
    bool done = books_wait_done(b, c, TEST_NEVER);
    if (!done)
        e2e_log_dump(&w[0]);
    ASSERT(done);
    books_check(b, c);
    ASSERT_EQ(books_get_totals(b).executions, RACE_N);
    /* Both took part in the diverting, and the moves add up to the thousand. */
    for (int i = 0; i < 2; i++)
        ASSERT(e2e_log_count(&w[i], "waits until") > 0);
    for (int i = 1; i <= RACE_N; i += 97) {
        char id[32];
        snprintf(id, sizeof id, "due-%d", i);
        json_t *res = e2e_result(c, id);
        expect_ran_from(res, due);
        json_decref(res);
    }
    for (int i = 0; i < 2; i++) {
        e2e_worker_signal(&w[i], SIGTERM);
        ASSERT_EQ(e2e_worker_wait(&w[i], 30.0), 0);
        e2e_worker_stop(&w[i]);
    }
    books_free(b);
    redisFree(c);
    test_redis_stop(&r);
}

enum { KILL_N = 50 };

/* Nothing about a scheduled message lives in a worker: SIGKILL them all while the
 * messages wait, start a new one, and every message still runs once, on time. */
TEST(scheduled_messages_survive_every_worker_being_sigkilled) {
    test_redis r;
    test_redis_start(&r, NULL);
    redisContext *c = e2e_redis(r.port);
    books *b = books_new();
    books_ids(b, "k-", 1, KILL_N, "SUCCESS");
    e2e_worker w[3];
    for (int i = 0; i < 2; i++) {
        E2E_START_READY(&w[i], r.port, "--heartbeat", "1", "-l", "debug");
        books_log(b, w[i].log);
    }
    double t0 = e2e_redis_time(c);
    for (int i = 1; i <= KILL_N; i++) {
        char msg[128];
        snprintf(msg, sizeof msg, "{\"id\":\"k-%d\",\"task\":\"echo\",\"countdown\":2}", i);
        e2e_push(c, "default", msg);
    }
    ASSERT_WITHIN(e2e_int(c, "ZCARD workerd:scheduled") == KILL_N, TEST_SOON);
    for (int i = 0; i < 2; i++) {
        e2e_worker_signal(&w[i], SIGKILL);
        ASSERT_EQ(e2e_worker_wait(&w[i], 5.0), 128 + SIGKILL);
    }
    ASSERT_EQ(e2e_int(c, "ZCARD workerd:scheduled"), KILL_N);
    E2E_START_READY(&w[2], r.port, "--heartbeat", "1", "-l", "debug");
    books_log(b, w[2].log);
    bool done = books_wait_done(b, c, TEST_NEVER);
    if (!done)
        e2e_log_dump(&w[2]);
    ASSERT(done);
    /* The killed workers held nothing: their books show no run, the new one ran all. */
    books_check(b, c);
    ASSERT_EQ(books_get_totals(b).executions, KILL_N);
    for (int i = 1; i <= KILL_N; i++) {
        char id[32];
        snprintf(id, sizeof id, "k-%d", i);
        json_t *res = e2e_result(c, id);
        expect_ran_from(res, t0 + 2);
        json_decref(res);
    }
    e2e_worker_signal(&w[2], SIGTERM);
    ASSERT_EQ(e2e_worker_wait(&w[2], 30.0), 0);
    for (int i = 0; i < 3; i++)
        e2e_worker_stop(&w[i]);
    books_free(b);
    redisFree(c);
    test_redis_stop(&r);
}

TEST(message_taken_after_it_expired_is_revoked_not_run) {
    e2e_env e;
    e2e_env_start(&e);
    E2E_START_READY(&e.w, e.redis.port, "-l", "debug");
    double now = e2e_redis_time(e.c);
    char future[64];
    rfc3339(now + 3600, false, future, sizeof future);
    /* Relative: 0.5 s from when a worker first takes it, but due only after 1 s. */
    e2e_pushf(e.c, "default", "{\"id\":\"rel\",\"task\":\"echo\",\"countdown\":1,\"expires\":0.5}");
    /* Absolute and past: revoked at once. */
    e2e_pushf(e.c, "default", "{\"id\":\"abs\",\"task\":\"echo\",\"expires\":%.3f}", now - 10);
    /* Absolute and future, as RFC 3339: it runs. */
    e2e_pushf(e.c, "default",
              "{\"id\":\"ok\",\"task\":\"echo\",\"countdown\":0.2,\"expires\":\"%s\"}", future);
    json_t *res = e2e_must_result_within(&e, "abs", TEST_SOON);
    ASSERT_STREQ(e2e_jstr(res, "status"), "REVOKED");
    ASSERT_STREQ(e2e_jstr(json_object_get(res, "error"), "type"), "TaskExpired");
    ASSERT(strstr(e2e_jerror(res), "expired") != NULL);
    json_decref(res);
    res = e2e_must_result_within(&e, "rel", TEST_NEVER);
    ASSERT_STREQ(e2e_jstr(res, "status"), "REVOKED");
    ASSERT_STREQ(e2e_jstr(json_object_get(res, "error"), "type"), "TaskExpired");
    json_decref(res);
    res = e2e_must_result_within(&e, "ok", TEST_NEVER);
    ASSERT_STREQ(e2e_jstr(res, "status"), "SUCCESS");
    json_decref(res);
    ASSERT_EQ(e2e_log_count(&e.w, "[task rel] echo started"), 0);
    ASSERT_EQ(e2e_log_count(&e.w, "[task abs] echo started"), 0);
    e2e_env_end(&e);
}

/* A relative expires is made absolute when the message is first kept, so that it does not
 * start over when the message comes back: the kept copy carries Unix times. */
TEST(relative_times_are_absolute_in_the_scheduled_copy) {
    e2e_env e;
    e2e_env_start(&e);
    E2E_START_READY(&e.w, e.redis.port);
    double t0 = e2e_redis_time(e.c);
    e2e_pushf(e.c, "default",
              "{\"id\":\"rel2\",\"task\":\"echo\",\"countdown\":30,\"expires\":60}");
    ASSERT_WITHIN(e2e_int(e.c, "ZCARD workerd:scheduled") == 1, TEST_SOON);
    redisReply *r = redisCommand(e.c, "ZRANGE workerd:scheduled 0 0 WITHSCORES");
    ASSERT(r && r->type == REDIS_REPLY_ARRAY && r->elements == 2);
    const char *text = strchr(strchr(r->element[0]->str, '\n') + 1, '\n') + 1;
    json_t *copy = json_loads(text, 0, NULL);
    ASSERT(copy != NULL);
    double eta = e2e_jnum(copy, "eta"), expires = e2e_jnum(copy, "expires");
    ASSERT(json_object_get(copy, "countdown") == NULL);
    ASSERT_RANGE(eta - t0, 30, 30 + TEST_SOON);
    ASSERT_RANGE(expires - t0, 60, 60 + TEST_SOON);
    ASSERT(atof(r->element[1]->str) == eta); /* the score is the eta */
    json_decref(copy);
    freeReplyObject(r);
    e2e_env_end(&e);
}

/* Every bad value of the new fields: a dead letter naming the field, a FAILURE result
 * under the id, and the worker carries on with the next message. */
TEST(bad_scheduling_and_retry_fields_are_dead_lettered_naming_the_field) {
    static const struct {
        const char *fields, *reason;
    } bad[] = {
        {"\"countdown\":-1", "field \"countdown\" must be a non-negative number"},
        {"\"countdown\":\"5\"", "field \"countdown\" must be a non-negative number"},
        {"\"countdown\":1e12", "field \"countdown\" is 1e+12 seconds, more than 10 years"},
        {"\"eta\":-1", "field \"eta\" must be a non-negative number"},
        {"\"eta\":true", "field \"eta\" must be a non-negative number"},
        {"\"eta\":\"next tuesday\"", "field \"eta\" is not an RFC 3339 time"},
        {"\"eta\":\"2026-11-26T10:00:00\"", "field \"eta\" is not an RFC 3339 time"},
        {"\"eta\":99999999999", "field \"eta\" is more than 10 years in the future"},
        {"\"eta\":\"2999-01-01T00:00:00Z\"", "field \"eta\" is more than 10 years in the future"},
        {"\"expires\":-5", "field \"expires\" must be a non-negative number"},
        {"\"expires\":[1]", "field \"expires\" must be a non-negative number"},
        {"\"expires\":500000000", "field \"expires\" is 5e+08: neither seconds from now"},
        {"\"expires\":99999999999", "field \"expires\" is more than 10 years in the future"},
        {"\"expires\":\"soon\"", "field \"expires\" is not an RFC 3339 time"},
        {"\"max_retries\":-1", "field \"max_retries\" must be a non-negative integer"},
        {"\"max_retries\":2.5", "field \"max_retries\" must be a non-negative integer"},
        {"\"max_retries\":\"3\"", "field \"max_retries\" must be a non-negative integer"},
        {"\"retries\":-2", "field \"retries\" must be a non-negative integer"},
        {"\"retry_backoff\":-1", "field \"retry_backoff\" must be a non-negative number"},
        {"\"retry_backoff\":\"fast\"", "field \"retry_backoff\" must be a non-negative number"},
        {"\"retry_backoff\":1e15", "field \"retry_backoff\" is 1e+15 seconds, more than 10"},
        {"\"retry_backoff_max\":-60", "field \"retry_backoff_max\" must be a non-negative"},
        {"\"retry_backoff_max\":1e300", "field \"retry_backoff_max\" is 1e+300 seconds"},
        {"\"retry_jitter\":\"no\"", "field \"retry_jitter\" must be a boolean"},
        {"\"retry_jitter\":0", "field \"retry_jitter\" must be a boolean"},
        /* Infinity cannot be written in JSON: the number overflows the parser. */
        {"\"countdown\":1e999", "invalid JSON"},
        {"\"eta\":NaN", "invalid JSON"},
    };
    size_t n = sizeof bad / sizeof *bad;
    e2e_env e;
    e2e_env_start(&e);
    E2E_START_READY(&e.w, e.redis.port);
    for (size_t i = 0; i < n; i++)
        e2e_pushf(e.c, "default", "{\"id\":\"bad-%zu\",\"task\":\"echo\",%s}", i, bad[i].fields);
    e2e_pushf(e.c, "default", "{\"id\":\"good\",\"task\":\"echo\",\"countdown\":0.1}");
    json_t *res = e2e_must_result_within(&e, "good", TEST_NEVER);
    ASSERT_STREQ(e2e_jstr(res, "status"), "SUCCESS");
    json_decref(res);
    ASSERT(e2e_wait_dead(e.c, (long long)n, TEST_SOON));
    ASSERT_EQ(e2e_int(e.c, "LLEN workerd:dead"), (long long)n);
    for (size_t i = 0; i < n; i++) {
        char id[32];
        snprintf(id, sizeof id, "bad-%zu", i);
        res = e2e_must_result_within(&e, id, TEST_SOON);
        ASSERT_STREQ(e2e_jstr(res, "status"), "FAILURE");
        ASSERT_STREQ(e2e_jstr(json_object_get(res, "error"), "type"), "InvalidMessage");
        const char *why = e2e_jerror(res);
        if (!why || !strstr(why, bad[i].reason))
            test__fail(__FILE__, __LINE__, "%s: \"%s\" lacks \"%s\"", bad[i].fields,
                       why ? why : "(none)", bad[i].reason);
        json_decref(res);
    }
    ASSERT_EQ(e2e_int(e.c, "ZCARD workerd:scheduled"), 0);
    ASSERT_EQ(e2e_count_keys(e.c, "workerd:inflight:*"), 0);
    e2e_env_end(&e);
}

/* An idle worker looks at the scheduled set every couple of seconds, not in a loop: over
 * a few seconds of idling, its calls to Redis stay a handful per second. */
TEST(idle_worker_makes_a_few_redis_calls_a_second_at_most) {
    e2e_env e;
    e2e_env_start(&e);
    E2E_START_READY(&e.w, e.redis.port);
    /* Something due far ahead, so that the mover has a due time to wait for. */
    e2e_pushf(e.c, "default", "{\"id\":\"far\",\"task\":\"echo\",\"countdown\":3600}");
    ASSERT_WITHIN(e2e_int(e.c, "ZCARD workerd:scheduled") == 1, TEST_SOON);
    long long before = e2e_command_calls(e.c, "evalsha");
    double t0 = test_now();
    ASSERT_EQ(e2e_worker_wait(&e.w, 4.0), -1); /* let it idle */
    double idled = test_now() - t0;
    long long calls = e2e_command_calls(e.c, "evalsha") - before;
    printf("idle: %lld script calls in %.2f s\n", calls, idled);
    /* A move every ~2 s and an idle refetch every second: a busy loop makes thousands. */
    ASSERT(calls <= 3 * idled + 4);
    e2e_env_end(&e);
}
