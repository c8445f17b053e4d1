/*
 * test_http_task.c - the http.get and http.request tasks against a real nginx on loopback
 * (testlib.h lists its endpoints): results as a user sees them, statuses, redirects, body
 * and header limits, timeouts (the request's own, an enclosing time limit, a kill),
 * refused connections and protocols, argument errors, and the easy handle free list.
 *
 * Each test starts its own nginx and runs the task on the main greenlet of a fresh hub
 * (task_run.h), then frees the cached easy handles and libcurl, so valgrind sees no leak.
 *
 * test_http_guard.c has the tests of what keeps these tasks from being turned against the
 * host: redirects off http(s), credentials across redirects, the address policy.
 */
#include "task_internal.h"
#include "task_run.h"

#include <errno.h>
#include <signal.h>

static test_nginx nginx;
static char url_buf[4][256];

static void start(void) {
    ASSERT_EQ(green_http_global_init(), 0);
    test_nginx_start(&nginx);
}

/* SIGTERM first: a graceful stop would wait for /never requests for an hour. */
static void stop(void) {
    kill(nginx.pid, SIGTERM);
    test_nginx_stop(&nginx);
    task_http_cleanup();
    task_registry_clear();
    green_http_global_cleanup();
}

/* JSON args ["http://127.0.0.1:port/path"] (slot lets a test hold several at once). */
static const char *args_for(int slot, const char *path) {
    snprintf(url_buf[slot], sizeof url_buf[slot], "[\"http://127.0.0.1:%d%s\"]", nginx.port, path);
    return url_buf[slot];
}

static const char *field_str(const json_t *obj, const char *key) {
    return json_string_value(json_object_get(obj, key));
}

static long long field_int(const json_t *obj, const char *key) {
    const json_t *v = json_object_get(obj, key);
    ASSERT(json_is_integer(v));
    return json_integer_value(v);
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* ---- responses ---------------------------------------------------------------------- */

TEST(test_get_fast_returns_status_body_url_and_headers) {
    start();
    task_outcome o = task_run("http.get", args_for(0, "/fast"), NULL);
    ASSERT_EQ(o.rc, 0);
    ASSERT_EQ(field_int(o.result, "status"), 200);
    ASSERT_STREQ(field_str(o.result, "body"), "ok\n");
    ASSERT(json_object_get(o.result, "body_base64") == NULL);
    ASSERT(ends_with(field_str(o.result, "url"), "/fast"));
    const json_t *headers = json_object_get(o.result, "headers");
    ASSERT_STREQ(field_str(headers, "content-length"), "3");
    ASSERT(strncmp(field_str(headers, "server"), "nginx", 5) == 0);
    ASSERT(json_object_get(headers, "Server") == NULL);
    ASSERT(json_is_real(json_object_get(o.result, "elapsed_ms")));
    ASSERT_RANGE(json_real_value(json_object_get(o.result, "elapsed_ms")), 0, 5000);
    ASSERT_EQ(json_object_size(o.result), 5);
    task_outcome_free(&o);
    stop();
}

TEST(test_get_404_is_success_with_that_status) {
    start();
    task_outcome o = task_run("http.get", args_for(0, "/missing"), NULL);
    ASSERT_EQ(o.rc, 0);
    ASSERT_EQ(field_int(o.result, "status"), 404);
    task_outcome_free(&o);
    stop();
}

TEST(test_get_500_is_success_with_that_status_and_body) {
    start();
    task_outcome o = task_run("http.get", args_for(0, "/error"), NULL);
    ASSERT_EQ(o.rc, 0);
    ASSERT_EQ(field_int(o.result, "status"), 500);
    ASSERT_STREQ(field_str(o.result, "body"), "boom\n");
    task_outcome_free(&o);
    stop();
}

TEST(test_raise_for_status_fails_on_500) {
    start();
    task_outcome o = task_run("http.get", args_for(0, "/error"), "{\"raise_for_status\": true}");
    ASSERT_TASK_ERROR(o, TASK_EFAIL, "HTTPError", "HTTP 500");
    stop();
}

TEST(test_raise_for_status_passes_200) {
    start();
    task_outcome o = task_run("http.get", args_for(0, "/fast"), "{\"raise_for_status\": true}");
    ASSERT_EQ(o.rc, 0);
    ASSERT_EQ(field_int(o.result, "status"), 200);
    task_outcome_free(&o);
    stop();
}

static int b64_value(char c) {
    const char *alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const char *p = strchr(alphabet, c);
    ASSERT(c != '\0' && p != NULL);
    return (int)(p - alphabet);
}

/* Decode padded base64 (the test's own decoder, independent of the task's encoder). */
static size_t b64_decode(const char *in, unsigned char *out) {
    size_t n = 0, len = strlen(in);
    ASSERT_EQ(len % 4, 0);
    for (size_t i = 0; i < len; i += 4) {
        int v = b64_value(in[i]) << 18 | b64_value(in[i + 1]) << 12;
        out[n++] = (unsigned char)(v >> 16);
        if (in[i + 2] == '=')
            break;
        v |= b64_value(in[i + 2]) << 6;
        out[n++] = (unsigned char)(v >> 8);
        if (in[i + 3] == '=')
            break;
        v |= b64_value(in[i + 3]);
        out[n++] = (unsigned char)v;
    }
    return n;
}

TEST(test_binary_body_comes_back_as_base64) {
    start();
    task_outcome o = task_run("http.get", args_for(0, "/bin"), NULL);
    ASSERT_EQ(o.rc, 0);
    ASSERT(json_object_get(o.result, "body") == NULL);
    const char *b64 = field_str(o.result, "body_base64");
    ASSERT(b64 != NULL);
    static unsigned char bytes[8192];
    ASSERT_EQ(b64_decode(b64, bytes), 4096);
    for (size_t i = 0; i < 4096; i++)
        ASSERT_EQ(bytes[i], i & 255);
    task_outcome_free(&o);
    stop();
}

TEST(test_big_body_arrives_whole_by_default) {
    start();
    task_outcome o = task_run("http.get", args_for(0, "/big"), NULL);
    ASSERT_EQ(o.rc, 0);
    ASSERT_EQ(json_string_length(json_object_get(o.result, "body")), 2 << 20);
    task_outcome_free(&o);
    stop();
}

TEST(test_body_over_max_size_is_http_error) {
    start();
    task_outcome o = task_run("http.get", args_for(0, "/big"), "{\"max_size\": 1000}");
    ASSERT_TASK_ERROR(o, TASK_EFAIL, "HTTPError",
                      "Maximum file size exceeded: response body larger than max_size "
                      "(1000 bytes)");
    stop();
}

/* /trickle sends no Content-Length, so only the write callback can catch it. */
TEST(test_streamed_body_over_max_size_is_stopped) {
    start();
    task_outcome o = task_run("http.get", args_for(0, "/trickle"), "{\"max_size\": 1}");
    ASSERT_EQ(o.rc, TASK_EFAIL);
    ASSERT_STREQ(o.err.type, "HTTPError");
    ASSERT(strstr(o.err.message, "response body larger than max_size (1 bytes)") != NULL);
    ASSERT_RANGE(o.seconds, 0.5, 1 + TEST_SOON); /* at "b", 1 s in, not at "c" (31 s) */
    stop();
}

/* ---- redirects ---------------------------------------------------------------------- */

TEST(test_redirect_is_followed_to_the_final_url) {
    start();
    task_outcome o = task_run("http.get", args_for(0, "/redirect"), NULL);
    ASSERT_EQ(o.rc, 0);
    ASSERT_EQ(field_int(o.result, "status"), 200);
    ASSERT_STREQ(field_str(o.result, "body"), "ok\n");
    ASSERT(ends_with(field_str(o.result, "url"), "/fast"));
    /* The headers are the final response's only. */
    ASSERT(json_object_get(json_object_get(o.result, "headers"), "location") == NULL);
    task_outcome_free(&o);
    stop();
}

TEST(test_redirect_is_returned_when_not_followed) {
    start();
    task_outcome o =
        task_run("http.get", args_for(0, "/redirect"), "{\"follow_redirects\": false}");
    ASSERT_EQ(o.rc, 0);
    ASSERT_EQ(field_int(o.result, "status"), 302);
    ASSERT(ends_with(field_str(json_object_get(o.result, "headers"), "location"), "/fast"));
    ASSERT(ends_with(field_str(o.result, "url"), "/redirect"));
    task_outcome_free(&o);
    stop();
}

TEST(test_redirect_loop_is_too_many_redirects) {
    start();
    task_outcome o = task_run("http.get", args_for(0, "/loop"), NULL);
    ASSERT_TASK_ERROR(o, TASK_EFAIL, "HTTPError",
                      "Number of redirects hit maximum amount: Maximum (5) redirects followed");
    stop();
}

TEST(test_max_redirects_zero_refuses_a_redirect) {
    start();
    task_outcome o = task_run("http.get", args_for(0, "/redirect"), "{\"max_redirects\": 0}");
    ASSERT_EQ(o.rc, TASK_EFAIL);
    ASSERT_STREQ(o.err.type, "HTTPError");
    ASSERT(strstr(o.err.message, "Maximum (0) redirects followed") != NULL);
    stop();
}

/* ---- headers and methods ------------------------------------------------------------ */

TEST(test_request_header_is_sent) {
    start();
    task_outcome o = task_run("http.get", args_for(0, "/headers"),
                              "{\"headers\": {\"X-Test\": \"hello there\"}}");
    ASSERT_EQ(o.rc, 0);
    ASSERT_STREQ(field_str(o.result, "body"), "hello there\n");
    task_outcome_free(&o);
    stop();
}

TEST(test_post_body_is_echoed) {
    start();
    char args[1400];
    snprintf(args, sizeof args, "[\"POST\", %s", args_for(0, "/body") + 1);
    task_outcome o = task_run("http.request", args, "{\"body\": \"name=caf\\u00e9&x=1\"}");
    ASSERT_EQ(o.rc, 0);
    ASSERT_EQ(field_int(o.result, "status"), 200);
    ASSERT_STREQ(field_str(o.result, "body"), "name=caf\xc3\xa9&x=1");
    task_outcome_free(&o);
    stop();
}

TEST(test_request_takes_method_and_url_by_keyword_and_lowercase_method) {
    start();
    char kwargs[300];
    snprintf(kwargs, sizeof kwargs, "{\"method\": \"put\", \"url\": %.*s, \"body\": \"p\"}",
             (int)strlen(args_for(0, "/body")) - 2, url_buf[0] + 1);
    task_outcome o = task_run("http.request", NULL, kwargs);
    ASSERT_EQ(o.rc, 0);
    ASSERT_STREQ(field_str(o.result, "body"), "p");
    task_outcome_free(&o);
    stop();
}

TEST(test_head_request_has_status_and_empty_body) {
    start();
    char args[1400];
    snprintf(args, sizeof args, "[\"HEAD\", %s", args_for(0, "/fast") + 1);
    task_outcome o = task_run("http.request", args, NULL);
    ASSERT_EQ(o.rc, 0);
    ASSERT_EQ(field_int(o.result, "status"), 200);
    ASSERT_STREQ(field_str(o.result, "body"), "");
    task_outcome_free(&o);
    stop();
}

/* ---- time: the request's timeout, an enclosing time limit, a kill -------------------- */

TEST(test_timeout_on_never_is_a_timeout_failure) {
    start();
    task_outcome o = task_run("http.get", args_for(0, "/never"), "{\"timeout\": 0.2}");
    ASSERT_EQ(o.rc, TASK_EFAIL);
    ASSERT_STREQ(o.err.type, "Timeout");
    ASSERT(strncmp(o.err.message, "Timeout was reached: Operation timed out after", 46) == 0);
    ASSERT_RANGE(o.seconds, 0.19, TEST_SOON);
    stop();
}

TEST(test_enclosing_time_limit_is_propagated_as_etimedout) {
    start();
    task_outcome o = task_run_limited("http.get", args_for(0, "/never"), NULL, 0.2);
    ASSERT_EQ(o.rc, -ETIMEDOUT);
    ASSERT(o.result == NULL);
    ASSERT_RANGE(o.seconds, 0.19, TEST_SOON);
    stop();
}

static task_outcome killed;

static void *kill_main(void *arg) {
    green_t g;
    ASSERT_EQ(green_spawn(&g, task_run_main, arg), 0);
    ASSERT_EQ(green_sleep(0.1), 0);
    ASSERT_EQ(green_kill(g), 0);
    ASSERT_EQ(green_join(g, NULL), 0);
    return NULL;
}

TEST(test_kill_is_propagated_as_ecanceled) {
    start();
    task_run_register();
    task_run_spec spec = {.task = "http.get",
                          .args = task_json(args_for(0, "/never")),
                          .kwargs = json_object(),
                          .out = &killed};
    ASSERT_EQ(green_run(NULL, NULL, kill_main, &spec, NULL), 0);
    ASSERT_EQ(killed.rc, -ECANCELED);
    ASSERT(killed.result == NULL);
    json_decref(spec.args);
    json_decref(spec.kwargs);
    stop();
}

/* ---- refused connections and protocols ---------------------------------------------- */

TEST(test_connection_refused_is_http_error_with_curls_reason) {
    start();
    char args[128];
    snprintf(args, sizeof args, "[\"http://127.0.0.1:%d/\"]", test_free_port());
    task_outcome o = task_run("http.get", args, NULL);
    ASSERT_EQ(o.rc, TASK_EFAIL);
    ASSERT_STREQ(o.err.type, "HTTPError");
    ASSERT(strncmp(o.err.message, "Couldn't connect to server: Failed to connect to 127.0.0.1",
                   58) == 0);
    stop();
}

TEST(test_file_url_is_refused) {
    start();
    task_outcome o = task_run("http.get", "[\"file:///etc/passwd\"]", NULL);
    ASSERT_EQ(o.rc, TASK_EFAIL);
    ASSERT_STREQ(o.err.type, "HTTPError");
    ASSERT(strncmp(o.err.message, "Unsupported protocol", 20) == 0);
    stop();
}

TEST(test_gopher_url_is_refused) {
    start();
    char args[128];
    snprintf(args, sizeof args, "[\"gopher://127.0.0.1:%d/\"]", nginx.port);
    task_outcome o = task_run("http.get", args, NULL);
    ASSERT_EQ(o.rc, TASK_EFAIL);
    ASSERT_STREQ(o.err.type, "HTTPError");
    ASSERT(strncmp(o.err.message, "Unsupported protocol", 20) == 0);
    stop();
}

/* ---- argument errors ---------------------------------------------------------------- */

static void expect_invalid(const char *task, const char *args, const char *kwargs, const char *type,
                           const char *message) {
    task_outcome o = task_run(task, args, kwargs);
    if (o.rc != TASK_EINVAL || strcmp(o.err.type, type) != 0 || strcmp(o.err.message, message))
        test__fail(__FILE__, __LINE__, "%s %s %s: got %d %s \"%s\", want %s \"%s\"", task,
                   args ? args : "[]", kwargs ? kwargs : "{}", o.rc, o.err.type, o.err.message,
                   type, message);
    ASSERT(o.result == NULL);
}

TEST(test_wrong_arguments_are_einval_with_clear_messages) {
    expect_invalid("http.get", "[42]", NULL, "TypeError",
                   "http.get: argument 1 (url) must be a string, got integer");
    expect_invalid("http.get", NULL, NULL, "TypeError",
                   "http.get: missing required argument 1 (url)");
    expect_invalid("http.get", "[\"http://x/\"]", "{\"timeout\": \"abc\"}", "TypeError",
                   "http.get: timeout must be a number, got string");
    expect_invalid("http.get", "[\"http://x/\"]", "{\"timeout\": 1000}", "ValueError",
                   "http.get: timeout must be between 0.001 and 300, got 1000");
    expect_invalid("http.get", "[\"http://x/\"]", "{\"timeout\": 0}", "ValueError",
                   "http.get: timeout must be between 0.001 and 300, got 0");
    expect_invalid("http.get", "[\"http://x/\"]", "{\"max_size\": 1e9}", "TypeError",
                   "http.get: max_size must be an integer, got real");
    expect_invalid("http.get", "[\"http://x/\"]", "{\"max_redirects\": 21}", "ValueError",
                   "http.get: max_redirects must be between 0 and 20, got 21");
    expect_invalid("http.get", "[\"http://x/\"]", "{\"follow_redirects\": 1}", "TypeError",
                   "http.get: follow_redirects must be a boolean, got integer");
    expect_invalid("http.get", "[\"http://x/\"]", "{\"headers\": \"X: y\"}", "TypeError",
                   "http.get: headers must be an object, got string");
    expect_invalid("http.get", "[\"http://x/\"]", "{\"headers\": {\"X\": 1}}", "TypeError",
                   "http.get: headers['X'] must be a string, got integer");
    expect_invalid("http.get", "[\"http://x/\"]", "{\"headers\": {\"X\": \"a\\r\\nB: c\"}}",
                   "ValueError", "http.get: header 'X' has a line break or NUL in its value");
    expect_invalid("http.get", "[\"http://x/\"]", "{\"headers\": {\"X Y\": \"a\"}}", "ValueError",
                   "http.get: invalid header name 'X Y'");
    expect_invalid("http.get", "[\"http://x/\"]", "{\"timout\": 1}", "TypeError",
                   "http.get: unexpected keyword argument 'timout'");
    expect_invalid("http.get", "[\"http://x/\"]", "{\"body\": \"b\"}", "TypeError",
                   "http.get: unexpected keyword argument 'body'");
    expect_invalid("http.request", "[\"http://x/\"]", NULL, "TypeError",
                   "http.request: missing required argument 2 (url)");
    expect_invalid("http.request", "[\"GE T\", \"http://x/\"]", NULL, "ValueError",
                   "http.request: argument 1 (method) is not a valid HTTP method: 'GE T'");
    expect_invalid("http.request", "[\"POST\", \"http://x/\"]", "{\"body\": {}}", "TypeError",
                   "http.request: body must be a string, got object");
    task_registry_clear();
}

TEST(test_limits_cap_what_a_message_may_ask) {
    task_http_limits limits = {
        .max_timeout = 5, .max_size = 100, .max_redirects = 2, .max_headers = 1};
    ASSERT_EQ(task_register_builtins(&limits), 0);
    expect_invalid("http.get", "[\"http://x/\"]", "{\"timeout\": 10}", "ValueError",
                   "http.get: timeout must be between 0.001 and 5, got 10");
    expect_invalid("http.get", "[\"http://x/\"]", "{\"max_size\": 101}", "ValueError",
                   "http.get: max_size must be between 0 and 100, got 101");
    expect_invalid("http.get", "[\"http://x/\"]", "{\"max_redirects\": 3}", "ValueError",
                   "http.get: max_redirects must be between 0 and 2, got 3");
    expect_invalid("http.get", "[\"http://x/\"]", "{\"headers\": {\"A\": \"1\", \"B\": \"2\"}}",
                   "ValueError", "http.get: headers exceed the limit of 1 headers / 65536 bytes");
    task_registry_clear();
}

TEST(test_response_with_too_many_headers_is_http_error) {
    start();
    task_http_limits limits = {.max_headers = 2};
    ASSERT_EQ(task_register_builtins(&limits), 0);
    task_outcome o = task_run("http.get", args_for(0, "/fast"), NULL);
    ASSERT_TASK_ERROR(o, TASK_EFAIL, "HTTPError",
                      "Failed writing received data to disk/application: response headers "
                      "exceed 2 lines / 65536 bytes");
    stop();
}

/* ---- the easy handle free list ------------------------------------------------------ */

static void *sequential_main(void *arg) {
    const char *args = arg;
    for (int i = 0; i < 100; i++) {
        task_outcome o = {0};
        task_run_spec spec = {
            .task = "http.get", .args = task_json(args), .kwargs = json_object(), .out = &o};
        task_run_main(&spec);
        ASSERT_EQ(o.rc, 0);
        ASSERT_EQ(field_int(o.result, "status"), 200);
        task_outcome_free(&o);
        json_decref(spec.args);
        json_decref(spec.kwargs);
    }
    return NULL;
}

TEST(test_sequential_gets_reuse_one_handle) {
    start();
    task_run_register();
    size_t live0, cached0, live, cached;
    task__http_stats(&live0, &cached0);
    ASSERT_EQ(green_run(NULL, NULL, sequential_main, (void *)args_for(0, "/fast"), NULL), 0);
    task__http_stats(&live, &cached);
    ASSERT_EQ(live - live0, 1);
    ASSERT_EQ(cached, 1);
    stop();
    task__http_stats(&live, &cached);
    ASSERT_EQ(cached, 0);
}

static void *concurrent_main(void *arg) {
    task_outcome outs[40] = {{0}};
    task_run_spec specs[40];
    green_t gs[40];
    for (int i = 0; i < 40; i++) {
        specs[i] = (task_run_spec){
            .task = "http.get", .args = task_json(arg), .kwargs = json_object(), .out = &outs[i]};
        ASSERT_EQ(green_spawn(&gs[i], task_run_main, &specs[i]), 0);
    }
    for (int i = 0; i < 40; i++) {
        ASSERT_EQ(green_join(gs[i], NULL), 0);
        ASSERT_EQ(outs[i].rc, 0);
        ASSERT_STREQ(field_str(outs[i].result, "body"), "ok\n");
        task_outcome_free(&outs[i]);
        json_decref(specs[i].args);
        json_decref(specs[i].kwargs);
    }
    return NULL;
}

/* 40 at once need 40 handles; the free list keeps them all, and the next 40 reuse them. */
TEST(test_concurrent_gets_each_get_a_handle_and_the_next_round_reuses_them) {
    start();
    task_run_register();
    size_t live0, cached0, live, cached;
    task__http_stats(&live0, &cached0);
    ASSERT_EQ(green_run(NULL, NULL, concurrent_main, (void *)args_for(0, "/slow"), NULL), 0);
    task__http_stats(&live, &cached);
    ASSERT_EQ(live - live0, 40);
    ASSERT_EQ(cached, live);
    ASSERT_EQ(green_run(NULL, NULL, concurrent_main, (void *)args_for(0, "/slow"), NULL), 0);
    task__http_stats(&live, &cached);
    ASSERT_EQ(live - live0, 40);
    ASSERT_EQ(cached, live);
    stop();
    task__http_stats(&live, &cached);
    ASSERT_EQ(live, 0);
    ASSERT_EQ(cached, 0);
}

/* ---- more caps ---------------------------------------------------------------------- */

TEST(test_response_headers_over_max_header_bytes_is_http_error) {
    start();
    task_http_limits limits = {.max_header_bytes = 60};
    ASSERT_EQ(task_register_builtins(&limits), 0);
    task_outcome o = task_run("http.get", args_for(0, "/fast"), NULL);
    ASSERT_TASK_ERROR(o, TASK_EFAIL, "HTTPError",
                      "Failed writing received data to disk/application: response headers "
                      "exceed 100 lines / 60 bytes");
    stop();
}

TEST(test_request_headers_over_max_header_bytes_are_refused) {
    task_http_limits limits = {.max_header_bytes = 40};
    ASSERT_EQ(task_register_builtins(&limits), 0);
    expect_invalid("http.get", "[\"http://x/\"]",
                   "{\"headers\": {\"X-Long\": \"0123456789012345678901234567890123456789\"}}",
                   "ValueError", "http.get: headers exceed the limit of 100 headers / 40 bytes");
    task_registry_clear();
}
