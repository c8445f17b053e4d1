/*
 * test_http_retry.c - when http.get and http.request ask for a retry (TASK_ERETRY) rather
 * than report: a status listed in retry_on (with the delay of its Retry-After, seconds or
 * an HTTP-date), a failure that may pass with retry_on_errors; what they never retry; and
 * the checks of both arguments. Against a real server that fails on purpose
 * (tests/lib/flaky_http.h); the Retry-After parser on its own too.
 */
#include "flaky_http.h"
#include "task_http_retry.h"
#include "task_run.h"
#include "testlib.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* http.get of target on the server with the kwargs (JSON text without braces). */
static task_outcome get(const flaky_http *s, const char *target, const char *kwargs) {
    char args[512], kw[512];
    snprintf(args, sizeof args, "[\"http://127.0.0.1:%d%s\"]", s->port, target);
    snprintf(kw, sizeof kw, "{%s}", kwargs);
    return task_run("http.get", args, kw);
}

TEST(listed_status_asks_for_a_retry_with_its_retry_after_seconds) {
    flaky_http s;
    flaky_http_start(&s);
    task_outcome o = get(&s, "/a?fail=1&after=7", "\"retry_on\": [429, 503]");
    ASSERT_TASK_ERROR(o, TASK_ERETRY, "HTTPError", "HTTP 503");
    ASSERT(o.err.retry_in == 7);
    /* The next request passes: a plain SUCCESS. */
    o = get(&s, "/a?fail=1&after=7", "\"retry_on\": [429, 503]");
    ASSERT_EQ(o.rc, 0);
    ASSERT_EQ(json_integer_value(json_object_get(o.result, "status")), 200);
    task_outcome_free(&o);
    flaky_http_stop(&s);
}

TEST(retry_after_as_an_http_date_counts_from_the_response_date) {
    flaky_http s;
    flaky_http_start(&s);
    task_outcome o = get(&s, "/d?fail=1&after=date:3", "\"retry_on\": [503]");
    ASSERT_TASK_ERROR(o, TASK_ERETRY, "HTTPError", "HTTP 503");
    ASSERT(o.err.retry_in == 3);
    flaky_http_stop(&s);
}

TEST(listed_status_without_retry_after_takes_the_backoff) {
    flaky_http s;
    flaky_http_start(&s);
    task_outcome o = get(&s, "/b?fail=1&status=429", "\"retry_on\": [429]");
    ASSERT_TASK_ERROR(o, TASK_ERETRY, "HTTPError", "HTTP 429");
    ASSERT(o.err.retry_in < 0);
    flaky_http_stop(&s);
}

TEST(status_not_listed_is_a_result_as_always) {
    flaky_http s;
    flaky_http_start(&s);
    task_outcome o = get(&s, "/c?fail=1&status=502&after=1", "\"retry_on\": [503]");
    ASSERT_EQ(o.rc, 0);
    ASSERT_EQ(json_integer_value(json_object_get(o.result, "status")), 502);
    task_outcome_free(&o);
    o = get(&s, "/c2?fail=1&status=503", "\"raise_for_status\": true");
    ASSERT_TASK_ERROR(o, TASK_EFAIL, "HTTPError", "HTTP 503");
    flaky_http_stop(&s);
}

/* A port nobody listens on: refused. */
static int closed_port(void) {
    return test_free_port();
}

TEST(refused_connection_is_retried_only_with_retry_on_errors) {
    char args[128];
    snprintf(args, sizeof args, "[\"http://127.0.0.1:%d/\"]", closed_port());
    task_outcome o = task_run("http.get", args, "{\"retry_on_errors\": true}");
    ASSERT_EQ(o.rc, TASK_ERETRY);
    ASSERT_STREQ(o.err.type, "HTTPError");
    ASSERT(strstr(o.err.message, "Couldn't connect") != NULL);
    ASSERT(o.err.retry_in < 0);
    o = task_run("http.get", args, NULL);
    ASSERT_EQ(o.rc, TASK_EFAIL);
    ASSERT_STREQ(o.err.type, "HTTPError");
}

TEST(failures_that_cannot_pass_are_never_retried) {
    flaky_http s;
    flaky_http_start(&s);
    /* A body over max_size fails the same way every time. */
    task_outcome o = get(&s, "/big", "\"retry_on_errors\": true, \"max_size\": 1");
    ASSERT_EQ(o.rc, TASK_EFAIL);
    ASSERT(strstr(o.err.message, "max_size") != NULL);
    /* Nor is a URL that is not http. */
    o = task_run("http.get", "[\"ftp://127.0.0.1/\"]", "{\"retry_on_errors\": true}");
    ASSERT(o.rc != TASK_ERETRY);
    flaky_http_stop(&s);
}

TEST(retry_arguments_are_checked_naming_them) {
    task_outcome o = task_run("http.get", "[\"http://127.0.0.1:1/\"]", "{\"retry_on\": 503}");
    ASSERT_TASK_ERROR(o, TASK_EINVAL, "TypeError",
                      "http.get: retry_on must be a list of HTTP status codes, got integer");
    o = task_run("http.get", "[\"http://127.0.0.1:1/\"]", "{\"retry_on\": [503, \"502\"]}");
    ASSERT_TASK_ERROR(o, TASK_EINVAL, "TypeError",
                      "http.get: retry_on[1] must be an HTTP status code, got string");
    o = task_run("http.get", "[\"http://127.0.0.1:1/\"]", "{\"retry_on\": [99]}");
    ASSERT_TASK_ERROR(o, TASK_EINVAL, "ValueError",
                      "http.get: retry_on[0] must be between 100 and 599, got 99");
    o = task_run("http.get", "[\"http://127.0.0.1:1/\"]", "{\"retry_on\": [503.5]}");
    ASSERT_TASK_ERROR(o, TASK_EINVAL, "TypeError",
                      "http.get: retry_on[0] must be an HTTP status code, got real");
    char many[1024] = "{\"retry_on\": [";
    for (int i = 0; i < 65; i++)
        strcat(many, i ? ",500" : "500");
    strcat(many, "]}");
    o = task_run("http.get", "[\"http://127.0.0.1:1/\"]", many);
    ASSERT_TASK_ERROR(o, TASK_EINVAL, "ValueError",
                      "http.get: retry_on lists 65 status codes, more than 64");
    o = task_run("http.request", "[\"GET\", \"http://127.0.0.1:1/\"]",
                 "{\"retry_on_errors\": \"yes\"}");
    ASSERT_EQ(o.rc, TASK_EINVAL);
    ASSERT(strstr(o.err.message, "retry_on_errors") != NULL);
}

TEST(retry_after_parser_reads_seconds_dates_and_nothing_else) {
    const char *h = "content-type: text/plain\r\nRetry-After: 120\r\n";
    ASSERT(task__http_retry_after(h, strlen(h), 0) == 120);
    h = "retry-after:  5 \r\n";
    ASSERT(task__http_retry_after(h, strlen(h), 0) == 5);
    /* The date against the response's Date, whatever our clock says. */
    h = "Date: Wed, 25 Nov 2026 10:00:00 GMT\r\nRetry-After: Wed, 25 Nov 2026 10:01:30 GMT\r\n";
    ASSERT(task__http_retry_after(h, strlen(h), 1.0) == 90);
    /* Without Date, against our clock; a past date means at once. */
    h = "Retry-After: Wed, 25 Nov 2026 10:01:30 GMT\r\n";
    ASSERT(task__http_retry_after(h, strlen(h), 1795600860.0) == 30);
    ASSERT(task__http_retry_after(h, strlen(h), 1795700000.0) == 0);
    /* The obsolete forms a recipient must accept. */
    h = "Date: Wednesday, 25-Nov-26 10:00:00 GMT\r\nRetry-After: Wed Nov 25 10:00:10 2026\r\n";
    ASSERT(task__http_retry_after(h, strlen(h), 1.0) == 10);
    const char *bad[] = {"Retry-After: soon\r\n", "Retry-After: -5\r\n",  "Retry-After: 1.5\r\n",
                         "Retry-After:\r\n",      "X-Retry-After: 5\r\n", ""};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        if (task__http_retry_after(bad[i], strlen(bad[i]), 0) != -1)
            test__fail(__FILE__, __LINE__, "\"%s\" was read as a delay", bad[i]);
    ASSERT(task__http_retry_after(NULL, 0, 0) == -1);
}
