/*
 * test_e2e_retry.c - retries through the real workerd binary and a real redis-server: a
 * task that asks for a retry (the built-in fail task with retry=true) gets a RETRY result
 * with the attempt's number and its due time while it waits in the scheduled set, runs
 * again under the same id with "retries" counted, and ends with FAILURE (retries = the
 * retries made) or SUCCESS. The backoff is exact without jitter, within its bounds with
 * it, capped, and a task's own delay wins over it. http.get retries the statuses of its
 * retry_on after their Retry-After (seconds or an HTTP-date; against a server that fails
 * on purpose, tests/lib/flaky_http.h) and, with retry_on_errors, a refused connection,
 * but never a refusal of the address policy. Every result is read from the result's
 * channel, so no RETRY in between is missed.
 */
#include "e2e.h"
#include "flaky_http.h"
#include "testlib.h"

#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The next result published for the subscription, which must have `status`. */
static json_t *next_result(e2e_env *e, redisContext *sub, const char *status) {
    json_t *res = e2e_next_published(sub, TEST_NEVER);
    if (!res) {
        e2e_log_dump(&e->w);
        test__fail(__FILE__, __LINE__, "no %s result published", status);
    }
    /* STARTED is written only for a task still running when its batch goes out. */
    while (strcmp(e2e_jstr(res, "status"), "STARTED") == 0) {
        json_decref(res);
        res = e2e_next_published(sub, TEST_NEVER);
        ASSERT(res != NULL);
    }
    if (strcmp(e2e_jstr(res, "status"), status) != 0)
        test__fail(__FILE__, __LINE__, "status %s, expected %s", e2e_jstr(res, "status"), status);
    return res;
}

TEST(retry_result_is_visible_while_it_waits_then_failure_counts_the_retries) {
    e2e_env e;
    e2e_env_start(&e);
    E2E_START_READY(&e.w, e.redis.port, "-l", "debug");
    redisContext *sub = e2e_subscribe(e.redis.port, "workerd:result:r1");
    e2e_pushf(e.c, "default",
              "{\"id\":\"r1\",\"task\":\"fail\",\"args\":[\"503 upstream\"],"
              "\"kwargs\":{\"retry\":true,\"retry_in\":1.5},\"max_retries\":1}");
    json_t *retry = next_result(&e, sub, "RETRY");
    ASSERT_EQ(e2e_jnum(retry, "retries"), 1);
    ASSERT_STREQ(e2e_jstr(json_object_get(retry, "error"), "type"), "TaskError");
    ASSERT_STREQ(e2e_jerror(retry), "503 upstream");
    double eta = e2e_jnum(retry, "eta"), finished = e2e_jnum(retry, "finished_at");
    ASSERT_RANGE(eta - finished, 1.5, 1.5 + TEST_SOON);
    /* While it waits: the stored result is that RETRY, the message is in the set. */
    json_t *stored = e2e_result(e.c, "r1");
    ASSERT(json_equal(stored, retry));
    json_decref(stored);
    ASSERT_EQ(e2e_int(e.c, "ZCARD workerd:scheduled"), 1);
    ASSERT_EQ(e2e_int(e.c, "LLEN workerd:queue:default"), 0);
    json_t *fail = next_result(&e, sub, "FAILURE");
    ASSERT_EQ(e2e_jnum(fail, "retries"), 1);
    ASSERT_STREQ(e2e_jerror(fail), "503 upstream");
    ASSERT(json_object_get(fail, "eta") == NULL);
    ASSERT(e2e_jnum(fail, "started_at") >= eta);
    ASSERT_EQ(e2e_log_count(&e.w, "[task r1] fail started (tag"), 2);
    ASSERT_EQ(e2e_log_count(&e.w, ", retry 1)"), 1); /* the second run is the first retry */
    json_decref(retry);
    json_decref(fail);
    redisFree(sub);
    e2e_env_end(&e);
}

/* max_retries 3: the task runs four times, each a RETRY but the last, a FAILURE with
 * retries 3. */
TEST(failure_after_max_retries_says_how_many_retries_were_made) {
    e2e_env e;
    e2e_env_start(&e);
    E2E_START_READY(&e.w, e.redis.port, "-l", "debug");
    redisContext *sub = e2e_subscribe(e.redis.port, "workerd:result:r3");
    e2e_pushf(e.c, "default",
              "{\"id\":\"r3\",\"task\":\"fail\",\"kwargs\":{\"retry\":true},"
              "\"retry_backoff\":0.05}");
    for (int k = 1; k <= 3; k++) {
        json_t *retry = next_result(&e, sub, "RETRY");
        ASSERT_EQ(e2e_jnum(retry, "retries"), k);
        json_decref(retry);
    }
    json_t *fail = next_result(&e, sub, "FAILURE");
    ASSERT_EQ(e2e_jnum(fail, "retries"), 3);
    ASSERT_STREQ(e2e_jerror(fail), "failed on purpose");
    json_decref(fail);
    ASSERT_EQ(e2e_log_count(&e.w, "[task r3] fail started (tag"), 4);
    ASSERT(e2e_log_count(&e.w, "asked for a retry, but it has had all 3") == 1);
    ASSERT_EQ(e2e_int(e.c, "ZCARD workerd:scheduled"), 0);
    redisFree(sub);
    e2e_env_end(&e);
}

/* A retry is not a failure: the stop line counted each RETRY as "failed", so a task that
 * retried once and then failed showed two failures. Now: 1 failed, 1 retried. */
TEST(the_stop_line_counts_retries_apart_from_failures) {
    e2e_env e;
    e2e_env_start(&e);
    E2E_START_READY(&e.w, e.redis.port);
    e2e_pushf(e.c, "default",
              "{\"id\":\"once\",\"task\":\"fail\",\"kwargs\":{\"retry\":true},"
              "\"max_retries\":1,\"retry_backoff\":0.05}");
    e2e_push_task(e.c, "default", "fine", "echo", "[1]");
    json_decref(e2e_wait_result(e.c, "once", "FAILURE", TEST_NEVER));
    json_decref(e2e_wait_result(e.c, "fine", "SUCCESS", TEST_NEVER));
    e2e_worker_signal(&e.w, SIGTERM);
    ASSERT_EQ(e2e_worker_wait(&e.w, 30.0), 0);
    if (e2e_log_count(&e.w, "stopped: 3 received, 1 succeeded, 1 failed (0 invalid), 1 retried, "
                            "0 put back") != 1) {
        e2e_log_dump(&e.w);
        test__fail(__FILE__, __LINE__, "the stop line does not count the retry apart");
    }
    e2e_env_end(&e);
}

/* Without jitter, the k-th retry waits exactly retry_backoff * 2^(k-1) after the attempt
 * before it finished, never less; a task that succeeds on its second retry ends SUCCESS
 * with retries 2. */
TEST(backoff_without_jitter_is_exact_and_never_early) {
    e2e_env e;
    e2e_env_start(&e);
    E2E_START_READY(&e.w, e.redis.port);
    redisContext *sub = e2e_subscribe(e.redis.port, "workerd:result:exact");
    e2e_pushf(e.c, "default",
              "{\"id\":\"exact\",\"task\":\"fail\",\"kwargs\":{\"retry\":true,"
              "\"succeed_after\":2},\"retry_backoff\":0.4,\"retry_jitter\":false}");
    double prev_eta = 0;
    for (int k = 1; k <= 2; k++) {
        json_t *retry = next_result(&e, sub, "RETRY");
        double backoff = 0.4 * (k == 1 ? 1 : 2);
        double eta = e2e_jnum(retry, "eta"), finished = e2e_jnum(retry, "finished_at");
        double started = e2e_jnum(retry, "started_at");
        /* The result's times are rounded to the microsecond. */
        ASSERT(eta - finished >= backoff - 2e-6);
        /* Above it only by the uncertainty of the server's clock (a round trip; generous
         * for a busy machine, yet less than a doubling). */
        ASSERT(eta - finished < backoff + 0.25);
        if (k > 1)
            ASSERT(started >= prev_eta);
        prev_eta = eta;
        json_decref(retry);
    }
    json_t *ok = next_result(&e, sub, "SUCCESS");
    ASSERT_EQ(e2e_jnum(ok, "retries"), 2);
    ASSERT_EQ(json_integer_value(json_object_get(ok, "result")), 2);
    ASSERT(e2e_jnum(ok, "started_at") >= prev_eta);
    json_decref(ok);
    redisFree(sub);
    e2e_env_end(&e);
}

/* With jitter (the default), each delay lies in [0, retry_backoff * 2^k] (plus the
 * clock's uncertainty), and they are not all that bound; retry_backoff_max caps every
 * delay, a task's own retry_in too. */
TEST(jittered_backoff_stays_within_its_bounds_and_the_cap) {
    e2e_env e;
    e2e_env_start(&e);
    E2E_START_READY(&e.w, e.redis.port);
    redisContext *sub = e2e_subscribe(e.redis.port, "workerd:result:jit");
    e2e_pushf(e.c, "default",
              "{\"id\":\"jit\",\"task\":\"fail\",\"kwargs\":{\"retry\":true},"
              "\"max_retries\":5,\"retry_backoff\":0.1}");
    int below = 0;
    for (int k = 1; k <= 5; k++) {
        json_t *retry = next_result(&e, sub, "RETRY");
        double bound = 0.1 * pow(2, k - 1);
        double delay = e2e_jnum(retry, "eta") - e2e_jnum(retry, "finished_at");
        ASSERT_RANGE(delay, -2e-6, bound + 0.25);
        below += delay < 0.9 * bound; /* all five above 90 %: one chance in 100,000 */
        json_decref(retry);
    }
    ASSERT(below > 0);
    json_decref(next_result(&e, sub, "FAILURE"));
    redisFree(sub);

    sub = e2e_subscribe(e.redis.port, "workerd:result:cap");
    e2e_pushf(e.c, "default",
              "{\"id\":\"cap\",\"task\":\"fail\",\"kwargs\":{\"retry\":true,\"retry_in\":3600},"
              "\"max_retries\":1,\"retry_backoff_max\":0.5}");
    json_t *retry = next_result(&e, sub, "RETRY");
    ASSERT_RANGE(e2e_jnum(retry, "eta") - e2e_jnum(retry, "finished_at"), 0.5 - 2e-6, 0.75);
    json_decref(retry);
    json_decref(next_result(&e, sub, "FAILURE"));
    redisFree(sub);
    e2e_env_end(&e);
}

/* max_retries 0: a task that asks for a retry fails at once; ignore_result: retries
 * happen, nothing is stored. */
TEST(no_retries_left_fails_at_once_and_ignore_result_stores_nothing) {
    e2e_env e;
    e2e_env_start(&e);
    E2E_START_READY(&e.w, e.redis.port, "-l", "debug");
    e2e_pushf(e.c, "default",
              "{\"id\":\"r0\",\"task\":\"fail\",\"kwargs\":{\"retry\":true},"
              "\"max_retries\":0}");
    e2e_pushf(e.c, "default",
              "{\"id\":\"quiet\",\"task\":\"fail\",\"kwargs\":{\"retry\":true},"
              "\"max_retries\":2,\"retry_backoff\":0.01,\"ignore_result\":true}");
    json_t *res = e2e_wait_result(e.c, "r0", NULL, TEST_SOON);
    ASSERT(res != NULL);
    ASSERT_STREQ(e2e_jstr(res, "status"), "FAILURE");
    ASSERT_EQ(e2e_jnum(res, "retries"), 0);
    json_decref(res);
    ASSERT(e2e_log_wait(&e.w, "[task quiet] fail asked for a retry, but it has had all 2",
                        TEST_NEVER));
    ASSERT_EQ(e2e_log_count(&e.w, "[task quiet] fail started"), 3);
    ASSERT(e2e_result(e.c, "quiet") == NULL);
    e2e_env_end(&e);
}

/* The retry waits in Redis, not in the worker: SIGKILL the worker while it waits, start
 * another, and the retry runs once. */
TEST(retry_waiting_when_its_worker_is_killed_runs_once_elsewhere) {
    e2e_env e;
    e2e_env_start(&e);
    E2E_START_READY(&e.w, e.redis.port, "-l", "debug");
    e2e_pushf(e.c, "default",
              "{\"id\":\"rk\",\"task\":\"fail\",\"kwargs\":{\"retry\":true,\"retry_in\":1,"
              "\"succeed_after\":1}}");
    json_t *res = e2e_wait_result(e.c, "rk", "RETRY", TEST_SOON);
    ASSERT(res != NULL);
    json_decref(res);
    ASSERT_EQ(e2e_int(e.c, "ZCARD workerd:scheduled"), 1);
    e2e_worker_signal(&e.w, SIGKILL);
    ASSERT_EQ(e2e_worker_wait(&e.w, 5.0), 128 + SIGKILL);
    e2e_worker_stop(&e.w);
    E2E_START_READY(&e.w, e.redis.port, "-l", "debug");
    res = e2e_wait_result(e.c, "rk", NULL, TEST_NEVER);
    ASSERT(res != NULL);
    ASSERT_STREQ(e2e_jstr(res, "status"), "SUCCESS");
    ASSERT_EQ(e2e_jnum(res, "retries"), 1);
    json_decref(res);
    ASSERT_EQ(e2e_log_count(&e.w, "[task rk] fail started"), 1);
    e2e_env_end(&e);
}

/* http.get with retry_on: a 503 with "Retry-After: 1" waits at least that second, then
 * the request passes: SUCCESS with retries 1 and the 200. */
TEST(http_get_retries_a_listed_status_after_its_retry_after_seconds) {
    flaky_http srv;
    flaky_http_start(&srv);
    e2e_env e;
    e2e_env_start(&e);
    E2E_START_READY(&e.w, e.redis.port);
    redisContext *sub = e2e_subscribe(e.redis.port, "workerd:result:h1");
    e2e_pushf(
        e.c, "default",
        "{\"id\":\"h1\",\"task\":\"http.get\",\"args\":[\"http://127.0.0.1:%d/a?fail=1&after=1\"],"
        "\"kwargs\":{\"retry_on\":[429,502,503,504]}}",
        srv.port);
    json_t *retry = next_result(&e, sub, "RETRY");
    ASSERT_STREQ(e2e_jstr(json_object_get(retry, "error"), "type"), "HTTPError");
    ASSERT_STREQ(e2e_jerror(retry), "HTTP 503");
    double eta = e2e_jnum(retry, "eta");
    ASSERT_RANGE(eta - e2e_jnum(retry, "finished_at"), 1 - 2e-6, 1 + TEST_SOON);
    json_t *ok = next_result(&e, sub, "SUCCESS");
    ASSERT_EQ(e2e_jnum(ok, "retries"), 1);
    ASSERT_EQ(json_integer_value(json_object_get(json_object_get(ok, "result"), "status")), 200);
    ASSERT(e2e_jnum(ok, "started_at") >= eta);
    ASSERT_EQ(flaky_http_count(&srv, "/a?fail=1&after=1"), 2);
    json_decref(retry);
    json_decref(ok);
    redisFree(sub);
    e2e_env_end(&e);
    flaky_http_stop(&srv);
}

/* An HTTP-date Retry-After, counted from the response's Date: 2 s; and a Retry-After of an
 * hour capped by the message's retry_backoff_max. */
TEST(http_get_retry_after_date_sets_the_delay_and_the_cap_bounds_it) {
    flaky_http srv;
    flaky_http_start(&srv);
    e2e_env e;
    e2e_env_start(&e);
    E2E_START_READY(&e.w, e.redis.port);
    redisContext *sub = e2e_subscribe(e.redis.port, "workerd:result:h2");
    e2e_pushf(e.c, "default",
              "{\"id\":\"h2\",\"task\":\"http.get\",\"args\":[\"http://127.0.0.1:%d/"
              "d?fail=1&after=date:2\"],"
              "\"kwargs\":{\"retry_on\":[503]}}",
              srv.port);
    json_t *retry = next_result(&e, sub, "RETRY");
    ASSERT_RANGE(e2e_jnum(retry, "eta") - e2e_jnum(retry, "finished_at"), 2 - 2e-6, 2 + TEST_SOON);
    json_decref(retry);
    json_decref(next_result(&e, sub, "SUCCESS"));
    redisFree(sub);

    sub = e2e_subscribe(e.redis.port, "workerd:result:h3");
    e2e_pushf(e.c, "default",
              "{\"id\":\"h3\",\"task\":\"http.get\",\"args\":[\"http://127.0.0.1:%d/"
              "c?fail=1&after=3600\"],"
              "\"kwargs\":{\"retry_on\":[503]},\"retry_backoff_max\":0.5}",
              srv.port);
    retry = next_result(&e, sub, "RETRY");
    ASSERT_RANGE(e2e_jnum(retry, "eta") - e2e_jnum(retry, "finished_at"), 0.5 - 2e-6, 0.75);
    json_decref(retry);
    json_decref(next_result(&e, sub, "SUCCESS"));
    redisFree(sub);
    e2e_env_end(&e);
    flaky_http_stop(&srv);
}

/* retry_on_errors: a refused connection is retried with the backoff until the retries are
 * spent, then FAILURE with the transport error and the retries made. A status that stays
 * bad ends the same way. */
TEST(http_get_retries_a_refused_connection_until_its_retries_are_spent) {
    flaky_http srv;
    flaky_http_start(&srv);
    e2e_env e;
    e2e_env_start(&e);
    E2E_START_READY(&e.w, e.redis.port, "-l", "debug");
    e2e_pushf(e.c, "default",
              "{\"id\":\"h4\",\"task\":\"http.get\",\"args\":[\"http://127.0.0.1:%d/\"],"
              "\"kwargs\":{\"retry_on_errors\":true},\"max_retries\":2,\"retry_backoff\":0.05}",
              test_free_port());
    e2e_pushf(e.c, "default",
              "{\"id\":\"h5\",\"task\":\"http.get\",\"args\":[\"http://127.0.0.1:%d/s?fail=9\"],"
              "\"kwargs\":{\"retry_on\":[503]},\"max_retries\":2,\"retry_backoff\":0.05}",
              srv.port);
    json_t *res = e2e_wait_result(e.c, "h4", NULL, TEST_NEVER);
    ASSERT(res != NULL);
    ASSERT_STREQ(e2e_jstr(res, "status"), "FAILURE");
    ASSERT_STREQ(e2e_jstr(json_object_get(res, "error"), "type"), "HTTPError");
    ASSERT(strstr(e2e_jerror(res), "Couldn't connect") != NULL);
    ASSERT_EQ(e2e_jnum(res, "retries"), 2);
    json_decref(res);
    ASSERT_EQ(e2e_log_count(&e.w, "[task h4] http.get started"), 3);
    res = e2e_wait_result(e.c, "h5", NULL, TEST_NEVER);
    ASSERT(res != NULL);
    ASSERT_STREQ(e2e_jstr(res, "status"), "FAILURE");
    ASSERT_STREQ(e2e_jerror(res), "HTTP 503");
    ASSERT_EQ(e2e_jnum(res, "retries"), 2);
    json_decref(res);
    ASSERT_EQ(flaky_http_count(&srv, "/s?fail=9"), 3);
    e2e_env_end(&e);
    flaky_http_stop(&srv);
}

/* A connection the address policy refuses fails at once: it would be refused again. */
TEST(http_get_refused_by_the_address_policy_is_not_retried) {
    flaky_http srv;
    flaky_http_start(&srv);
    e2e_env e;
    e2e_env_start(&e);
    E2E_START_READY(&e.w, e.redis.port, "--http-deny", "127.0.0.0/8");
    e2e_pushf(e.c, "default",
              "{\"id\":\"h6\",\"task\":\"http.get\",\"args\":[\"http://127.0.0.1:%d/\"],"
              "\"kwargs\":{\"retry_on_errors\":true}}",
              srv.port);
    json_t *res = e2e_wait_result(e.c, "h6", NULL, TEST_NEVER);
    ASSERT(res != NULL);
    ASSERT_STREQ(e2e_jstr(res, "status"), "FAILURE");
    ASSERT(strstr(e2e_jerror(res), "address policy") != NULL);
    ASSERT_EQ(e2e_jnum(res, "retries"), 0);
    json_decref(res);
    e2e_env_end(&e);
    flaky_http_stop(&srv);
}
