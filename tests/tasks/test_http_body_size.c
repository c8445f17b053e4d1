/*
 * test_http_body_size.c - how an http.* task's body goes into its result, and how the
 * result's own limit (max_result, the worker's --max-result-size) bounds what is read:
 *
 *   - text that escapes cheaply stays "body"; a body of control bytes or of quotes, which
 *     JSON escapes to six or two bytes each, is "body_base64" (four per three), as is any
 *     body that is not UTF-8;
 *   - a body longer than a result may be is not read past that, and fails with
 *     ResultTooLarge; a shorter body whose JSON would still be over it fails the same way
 *     without its JSON being built.
 *
 * Against a private nginx serving files written into its root; each task on the main
 * greenlet of a fresh hub (task_run.h).
 */
#include "task_internal.h"
#include "task_run.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MIB ((size_t)1 << 20)

static test_nginx nginx;

static void start(size_t max_result) {
    ASSERT_EQ(green_http_global_init(), 0);
    test_nginx_start(&nginx);
    task_http_limits limits = {.max_result = max_result};
    ASSERT_EQ(task_register_builtins(&limits), 0);
}

static void stop(void) {
    kill(nginx.pid, SIGTERM);
    test_nginx_stop(&nginx);
    task_http_cleanup();
    task_registry_clear();
    green_http_global_cleanup();
}

/* Serve data (n bytes) as /name. */
static void serve(const char *name, const void *data, size_t n) {
    char path[600];
    snprintf(path, sizeof path, "%s/%s", nginx.dir, name);
    FILE *f = fopen(path, "wb");
    ASSERT(f != NULL);
    ASSERT(n == 0 || fwrite(data, 1, n, f) == n);
    ASSERT(fclose(f) == 0);
}

static void serve_fill(const char *name, size_t n, char c) {
    char *data = malloc(n ? n : 1);
    ASSERT(data != NULL);
    memset(data, c, n);
    serve(name, data, n);
    free(data);
}

static task_outcome get(const char *name) {
    char args[256];
    snprintf(args, sizeof args, "[\"http://127.0.0.1:%d/%s\"]", nginx.port, name);
    return task_run("http.get", args, "{\"max_size\": 104857600}");
}

static const char *field_str(const json_t *obj, const char *key) {
    return json_string_value(json_object_get(obj, key));
}

/* ---- text or base64 --------------------------------------------------------------------- */

TEST(escaped_length_is_what_the_result_encoder_writes) {
    ASSERT_EQ(task__json_escaped_len("", 0), 0);
    ASSERT_EQ(task__json_escaped_len("abc", 3), 3);
    ASSERT_EQ(task__json_escaped_len("a\"b\\c", 5), 7);
    ASSERT_EQ(task__json_escaped_len("\b\f\n\r\t", 5), 10);
    ASSERT_EQ(task__json_escaped_len("\x01\x1f", 2), 12);
    ASSERT_EQ(task__json_escaped_len("\x7f\xc3\xa9", 3), 3);
}

TEST(text_with_quotes_and_newlines_stays_text) {
    start(0);
    const char *html = "<p class=\"x\">caf\xc3\xa9</p>\n<p class=\"y\">two</p>\n";
    serve("page.html", html, strlen(html));
    task_outcome o = get("page.html");
    ASSERT_EQ(o.rc, 0);
    ASSERT_STREQ(field_str(o.result, "body"), html);
    ASSERT(json_object_get(o.result, "body_base64") == NULL);
    task_outcome_free(&o);
    stop();
}

/* A short body stays text even with a few escapes: the slack is for it. */
TEST(a_short_body_with_a_control_byte_stays_text) {
    start(0);
    serve("bell", "ding\x07", 5);
    task_outcome o = get("bell");
    ASSERT_EQ(o.rc, 0);
    ASSERT_STREQ(field_str(o.result, "body"), "ding\x07");
    task_outcome_free(&o);
    stop();
}

TEST(a_body_of_control_bytes_is_base64) {
    start(0);
    serve_fill("ones", 3000, '\x01');
    task_outcome o = get("ones");
    ASSERT_EQ(o.rc, 0);
    ASSERT(json_object_get(o.result, "body") == NULL);
    const char *b64 = field_str(o.result, "body_base64");
    ASSERT(b64 != NULL);
    ASSERT_EQ(strlen(b64), 4000);
    ASSERT(strncmp(b64, "AQEB", 4) == 0); /* 01 01 01 */
    task_outcome_free(&o);
    stop();
}

TEST(a_body_of_quotes_is_base64) {
    start(0);
    serve_fill("quotes", 3000, '"');
    task_outcome o = get("quotes");
    ASSERT_EQ(o.rc, 0);
    ASSERT(json_object_get(o.result, "body") == NULL);
    ASSERT(strncmp(field_str(o.result, "body_base64"), "IiIi", 4) == 0); /* """ */
    task_outcome_free(&o);
    stop();
}

/* ---- the result's limit ------------------------------------------------------------------ */

TEST(a_body_longer_than_a_result_may_be_is_not_read_past_it) {
    start(MIB);
    serve_fill("big", 100 * MIB, 'x');
    task_outcome o = get("big");
    ASSERT_TASK_ERROR(o, TASK_EFAIL, "ResultTooLarge",
                      "http.get: the response body is over 1048576 bytes (104857600 bytes by "
                      "its Content-Length), so its result would be over --max-result-size "
                      "(1048576 bytes); it was not read further");
    stop();
}

/* 900 KiB of control bytes: under the limit as bytes, 1.2 MiB as base64. */
TEST(a_body_whose_json_would_be_over_the_limit_fails_unbuilt) {
    start(MIB);
    serve_fill("ones", 900 * 1024, '\x01');
    task_outcome o = get("ones");
    ASSERT_TASK_ERROR(o, TASK_EFAIL, "ResultTooLarge",
                      "http.get: the response body of 921600 bytes is 1228800 bytes of JSON, "
                      "over --max-result-size (1048576 bytes)");
    stop();
}

TEST(a_body_whose_json_fits_is_returned) {
    start(MIB);
    serve_fill("ones", 700 * 1024, '\x01');
    task_outcome o = get("ones");
    ASSERT_EQ(o.rc, 0);
    ASSERT_EQ(strlen(field_str(o.result, "body_base64")), (700 * 1024 + 2) / 3 * 4);
    task_outcome_free(&o);
    stop();
}

/* max_size still says first when it is the smaller limit: HTTPError as before. */
TEST(max_size_under_the_result_limit_is_still_an_http_error) {
    start(MIB);
    serve_fill("mid", 600 * 1024, 'x');
    char args[256];
    snprintf(args, sizeof args, "[\"http://127.0.0.1:%d/mid\"]", nginx.port);
    task_outcome o = task_run("http.get", args, "{\"max_size\": 1000}");
    ASSERT_EQ(o.rc, TASK_EFAIL);
    ASSERT_STREQ(o.err.type, "HTTPError");
    ASSERT(strstr(o.err.message, "larger than max_size (1000 bytes)") != NULL);
    stop();
}
