/*
 * test_http_redact.c - credentials in a task URL ("http://user:pass@host/") are used for
 * the request but never reported: the result's url, a redirect's Location header and error
 * messages carry the userinfo redacted ("user:***@", or "***@" for a single word, which
 * may be a token). The redaction on its own (task_http_redact.h), then through curl with
 * the canned server (canned.h).
 */
#include "canned.h"
#include "task_http_redact.h"
#include "task_internal.h"
#include "task_run.h"

static void finish(void) {
    task_http_cleanup();
    task_registry_clear();
    green_http_global_cleanup();
}

static void expect_redacted(const char *in, bool whole, const char *want) {
    char out[512];
    size_t n = task__redact(in, strlen(in), whole, out, sizeof out);
    if (strcmp(out, want) != 0 || n != strlen(want))
        test__fail(__FILE__, __LINE__, "'%s': got '%s' (%zu), want '%s'", in, out, n, want);
    size_t len;
    char *dup = task__redact_dup(in, strlen(in), whole, &len);
    ASSERT(dup != NULL);
    ASSERT_STREQ(dup, want);
    ASSERT_EQ(len, strlen(want));
    free(dup);
}

/* ---- the redaction ------------------------------------------------------------------- */

TEST(test_userinfo_is_redacted_keeping_the_user_name) {
    expect_redacted("http://user:s3cret@host/x?a=b#c", true, "http://user:***@host/x?a=b#c");
    expect_redacted("https://user:@host:8443/", true, "https://user:***@host:8443/");
    expect_redacted("http://:pw@[::1]:80/", true, "http://:***@[::1]:80/");
    /* A password with '@' in it, unencoded: the userinfo runs to the last '@'. */
    expect_redacted("http://u:p@ss@host/", true, "http://u:***@host/");
    /* The second ':' belongs to the password. */
    expect_redacted("http://u:a:b@host/", true, "http://u:***@host/");
}

TEST(test_a_single_word_userinfo_is_redacted_whole) {
    expect_redacted("https://ghp_T0KEN@github.example/x", true, "https://***@github.example/x");
}

TEST(test_urls_without_userinfo_and_other_text_are_unchanged) {
    expect_redacted("http://host/x@y", true, "http://host/x@y");
    expect_redacted("http://host:80/?u=a@b", true, "http://host:80/?u=a@b");
    expect_redacted("mail me at a@b.example", false, "mail me at a@b.example");
    expect_redacted("", true, "");
    expect_redacted("http://", true, "http://");
    expect_redacted("http://@host/", true, "http://@host/");
}

TEST(test_every_url_in_a_text_is_redacted) {
    expect_redacted("from http://a:1@x/ to https://b:2@y/ and 'ftp://c@z' done", false,
                    "from http://a:***@x/ to https://b:***@y/ and 'ftp://***@z' done");
}

TEST(test_a_url_without_a_scheme_is_redacted_when_it_is_the_whole_text) {
    expect_redacted("user:pw@host:81/x", true, "user:***@host:81/x");
    expect_redacted("user:pw@host:81/x", false, "user:pw@host:81/x");
}

TEST(test_redaction_into_a_small_buffer_is_cut_and_terminated) {
    char out[12];
    const char *in = "http://u:secretsecret@h/";
    ASSERT_EQ(task__redact(in, strlen(in), true, out, sizeof out), strlen("http://u:***@h/"));
    ASSERT_STREQ(out, "http://u:**");
    char msg[32] = "see http://u:p@h/ now";
    task__redact_in_place(msg, sizeof msg);
    ASSERT_STREQ(msg, "see http://u:***@h/ now");
    char tight[18] = "at http://u:p@h/x";
    task__redact_in_place(tight, sizeof tight);
    ASSERT_STREQ(tight, "at http://u:***@h");
}

/* ---- through curl -------------------------------------------------------------------- */

static char *dump(const json_t *v) {
    char *s = json_dumps(v, JSON_COMPACT);
    ASSERT(s != NULL);
    return s;
}

TEST(test_result_url_carries_the_credentials_redacted_and_they_are_still_sent) {
    canned a;
    canned_start(&a);
    ASSERT_EQ(green_http_global_init(), 0);
    char args[256], want[128];
    snprintf(args, sizeof args, "[\"http://alice:s3cret@127.0.0.1:%d/echo\"]", a.port);
    task_outcome o = task_run("http.get", args, NULL);
    ASSERT_EQ(o.rc, 0);
    snprintf(want, sizeof want, "http://alice:***@127.0.0.1:%d/echo", a.port);
    ASSERT_STREQ(json_string_value(json_object_get(o.result, "url")), want);
    /* Basic auth of alice:s3cret went out. */
    const char *body = json_string_value(json_object_get(o.result, "body"));
    ASSERT(strstr(body, "\r\nAuthorization: Basic YWxpY2U6czNjcmV0\r\n") != NULL);
    char *all = dump(o.result);
    ASSERT(strstr(all, "s3cret") == NULL);
    free(all);
    task_outcome_free(&o);
    canned_stop(&a);
    finish();
}

TEST(test_a_token_as_user_name_is_redacted) {
    canned a;
    canned_start(&a);
    ASSERT_EQ(green_http_global_init(), 0);
    char args[256], want[128];
    snprintf(args, sizeof args, "[\"http://T0KEN@127.0.0.1:%d/echo\"]", a.port);
    task_outcome o = task_run("http.get", args, NULL);
    ASSERT_EQ(o.rc, 0);
    snprintf(want, sizeof want, "http://***@127.0.0.1:%d/echo", a.port);
    ASSERT_STREQ(json_string_value(json_object_get(o.result, "url")), want);
    task_outcome_free(&o);
    canned_stop(&a);
    finish();
}

TEST(test_a_url_without_a_scheme_is_redacted) {
    canned a;
    canned_start(&a);
    ASSERT_EQ(green_http_global_init(), 0);
    char args[256];
    snprintf(args, sizeof args, "[\"alice:s3cret@127.0.0.1:%d/echo\"]", a.port);
    task_outcome o = task_run("http.get", args, NULL);
    ASSERT_EQ(o.rc, 0);
    const char *url = json_string_value(json_object_get(o.result, "url"));
    ASSERT(strstr(url, "alice:***@127.0.0.1:") != NULL);
    ASSERT(strstr(url, "s3cret") == NULL);
    task_outcome_free(&o);
    canned_stop(&a);
    finish();
}

/* A redirect to a URL with credentials: followed, the final url is redacted; not
 * followed, the Location header is. */
TEST(test_redirect_targets_with_credentials_are_redacted) {
    canned a;
    canned_start(&a);
    ASSERT_EQ(green_http_global_init(), 0);
    char args[256], want[128];
    snprintf(args, sizeof args,
             "[\"http://alice:s3cret@127.0.0.1:%d/redirect?to=http://bob:hunter2@127.0.0.1:%d/"
             "echo\"]",
             a.port, a.port);
    task_outcome o = task_run("http.get", args, NULL);
    ASSERT_EQ(o.rc, 0);
    snprintf(want, sizeof want, "http://bob:***@127.0.0.1:%d/echo", a.port);
    ASSERT_STREQ(json_string_value(json_object_get(o.result, "url")), want);
    char *all = dump(o.result);
    ASSERT(strstr(all, "hunter2") == NULL && strstr(all, "s3cret") == NULL);
    free(all);
    task_outcome_free(&o);

    o = task_run("http.get", args, "{\"follow_redirects\": false}");
    ASSERT_EQ(o.rc, 0);
    ASSERT_EQ(json_integer_value(json_object_get(o.result, "status")), 302);
    ASSERT_STREQ(
        json_string_value(json_object_get(json_object_get(o.result, "headers"), "location")), want);
    all = dump(o.result);
    ASSERT(strstr(all, "hunter2") == NULL && strstr(all, "s3cret") == NULL);
    free(all);
    task_outcome_free(&o);
    canned_stop(&a);
    finish();
}

/* A failure's message names no password either (here the address policy's refusal, which
 * names the host; the redaction of curl's reasons is tested above). */
TEST(test_a_failure_with_credentials_in_the_url_does_not_show_them) {
    ASSERT_EQ(green_http_global_init(), 0);
    task_http_limits limits = {.deny = "127.0.0.0/8"};
    ASSERT_EQ(task_register_builtins(&limits), 0);
    int port, lfd = listen_loopback(&port);
    char args[256];
    snprintf(args, sizeof args, "[\"http://alice:s3cret@127.0.0.1:%d/\"]", port);
    task_outcome o = task_run("http.get", args, NULL);
    ASSERT_EQ(o.rc, TASK_EFAIL);
    ASSERT(strstr(o.err.message, "s3cret") == NULL);
    ASSERT(!connection_pending(lfd));
    close(lfd);
    finish();
}
