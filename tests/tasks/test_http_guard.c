/*
 * test_http_guard.c - the http.* tasks may not be turned against the host that runs them:
 * a redirect may not leave http and https (file://), credentials a task sends do not
 * follow a redirect to another host or port, and the address policy (task_http_policy.h)
 * refuses denied addresses and host names before a connection is opened, on every
 * redirect and on a reused connection, with a message naming the rule.
 *
 * The policy is tested here through real curl with loopback targets configured as denied;
 * the built-in deny list (test_http_policy.c covers it without a socket) only for the IPv6
 * forms that carry the metadata address, and then in a network namespace of its own where
 * the system allows one: were the policy broken, a test must not send a packet to
 * 169.254.169.254. A forked "canned" server (canned.h) answers what the test nginx
 * cannot: a redirect to any URL, and the request head echoed back.
 */
#include "canned.h"
#include "task_internal.h"
#include "task_run.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static test_nginx nginx;
static char url_buf[256];

static void start(void) {
    ASSERT_EQ(green_http_global_init(), 0);
    test_nginx_start(&nginx);
}

static void stop(void) {
    kill(nginx.pid, SIGTERM);
    test_nginx_stop(&nginx);
    task_http_cleanup();
    task_registry_clear();
    green_http_global_cleanup();
}

/* The end of a test without nginx. */
static void finish(void) {
    task_http_cleanup();
    task_registry_clear();
    green_http_global_cleanup();
}

/* JSON args ["http://127.0.0.1:port/path"] for the test nginx. */
static const char *nginx_args(const char *path) {
    snprintf(url_buf, sizeof url_buf, "[\"http://127.0.0.1:%d%s\"]", nginx.port, path);
    return url_buf;
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

/* ---- redirects may not leave http and https ----------------------------------------- */

TEST(test_redirect_to_file_url_is_refused) {
    canned a;
    canned_start(&a);
    ASSERT_EQ(green_http_global_init(), 0);
    char args[256];
    snprintf(args, sizeof args, "[\"http://127.0.0.1:%d/redirect?to=file:///etc/passwd\"]", a.port);
    task_outcome o = task_run("http.get", args, NULL);
    ASSERT_EQ(o.rc, TASK_EFAIL);
    ASSERT_STREQ(o.err.type, "HTTPError");
    ASSERT(strncmp(o.err.message, "Unsupported protocol", 20) == 0);
    ASSERT(strstr(o.err.message, "file") != NULL);
    canned_stop(&a);
    finish();
}

/* ---- credentials are not sent to another host or port after a redirect ------------- */

static json_t *get_echo(const char *url, task_outcome *o) {
    char args[512];
    snprintf(args, sizeof args, "[\"%s\"]", url);
    *o = task_run("http.get", args,
                  "{\"headers\": {\"Authorization\": \"Bearer s3cret\", \"Cookie\": \"sid=c00kie\","
                  " \"X-Trace\": \"t1\"}}");
    ASSERT_EQ(o->rc, 0);
    ASSERT_EQ(field_int(o->result, "status"), 200);
    return o->result;
}

TEST(test_credentials_follow_a_redirect_on_the_same_host_and_port) {
    canned a;
    canned_start(&a);
    ASSERT_EQ(green_http_global_init(), 0);
    char url[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/redirect?to=http://127.0.0.1:%d/echo", a.port,
             a.port);
    task_outcome o;
    const char *body = field_str(get_echo(url, &o), "body");
    ASSERT(strncmp(body, "GET /echo ", 10) == 0);
    ASSERT(strstr(body, "\r\nAuthorization: Bearer s3cret\r\n") != NULL);
    ASSERT(strstr(body, "\r\nCookie: sid=c00kie\r\n") != NULL);
    task_outcome_free(&o);
    canned_stop(&a);
    finish();
}

static void expect_no_credentials_after_redirect(const char *host_b) {
    canned a, b;
    canned_start(&a);
    canned_start(&b);
    ASSERT_EQ(green_http_global_init(), 0);
    char url[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/redirect?to=http://%s:%d/echo", a.port, host_b,
             b.port);
    task_outcome o;
    const char *body = field_str(get_echo(url, &o), "body");
    ASSERT(strncmp(body, "GET /echo ", 10) == 0);
    ASSERT(strstr(body, "Authorization") == NULL);
    ASSERT(strstr(body, "s3cret") == NULL);
    ASSERT(strstr(body, "Cookie") == NULL);
    ASSERT(strstr(body, "c00kie") == NULL);
    ASSERT(strstr(body, "\r\nX-Trace: t1\r\n") != NULL); /* other headers do follow */
    task_outcome_free(&o);
    canned_stop(&a);
    canned_stop(&b);
    finish();
}

TEST(test_credentials_are_not_sent_to_another_port_after_a_redirect) {
    expect_no_credentials_after_redirect("127.0.0.1");
}

TEST(test_credentials_are_not_sent_to_another_host_after_a_redirect) {
    expect_no_credentials_after_redirect("localhost");
}

/* ---- the address policy, through curl, on loopback only ----------------------------- */

static void register_policy(const char *deny, const char *allow) {
    task_http_limits limits = {.deny = deny, .allow = allow};
    ASSERT_EQ(task_register_builtins(&limits), 0);
}

TEST(test_denied_address_is_refused_before_any_connection) {
    ASSERT_EQ(green_http_global_init(), 0);
    register_policy("127.0.0.0/8", NULL);
    int port, lfd = listen_loopback(&port);
    char args[128];
    snprintf(args, sizeof args, "[\"http://127.0.0.1:%d/\"]", port);
    task_outcome o = task_run("http.get", args, NULL);
    ASSERT_TASK_ERROR(o, TASK_EFAIL, "HTTPError",
                      "connection to 127.0.0.1 refused by the HTTP address policy "
                      "(--http-deny 127.0.0.0/8)");
    ASSERT(!connection_pending(lfd));
    close(lfd);
    finish();
}

/* The same listener, allowed: proves that connection_pending can see a connection. */
TEST(test_allowed_address_connects) {
    ASSERT_EQ(green_http_global_init(), 0);
    register_policy(NULL, NULL);
    int port, lfd = listen_loopback(&port);
    char args[128];
    snprintf(args, sizeof args, "[\"http://127.0.0.1:%d/\"]", port);
    task_outcome o = task_run_limited("http.get", args, "{\"timeout\": 0.3}", 0);
    ASSERT_EQ(o.rc, TASK_EFAIL);
    ASSERT_STREQ(o.err.type, "Timeout"); /* connected; nobody answered */
    ASSERT(connection_pending(lfd));
    close(lfd);
    finish();
}

TEST(test_more_specific_allow_beats_deny) {
    start();
    register_policy("10.0.0.0/8,127.0.0.0/8", "127.0.0.1/32");
    task_outcome o = task_run("http.get", nginx_args("/fast"), NULL);
    ASSERT_EQ(o.rc, 0);
    ASSERT_EQ(field_int(o.result, "status"), 200);
    task_outcome_free(&o);
    stop();
}

TEST(test_denied_host_name_is_refused_and_named) {
    start();
    register_policy("LOCALHOST", NULL);
    char args[128];
    snprintf(args, sizeof args, "[\"http://localhost:%d/fast\"]", nginx.port);
    task_outcome o = task_run("http.get", args, NULL);
    ASSERT_EQ(o.rc, TASK_EFAIL);
    ASSERT_STREQ(o.err.type, "HTTPError");
    ASSERT(strncmp(o.err.message, "connection to localhost (", 25) == 0);
    ASSERT(
        ends_with(o.err.message, ") refused by the HTTP address policy (--http-deny LOCALHOST)"));
    /* The same server by address is fine: the rule is about the name. */
    o = task_run("http.get", nginx_args("/fast"), NULL);
    ASSERT_EQ(o.rc, 0);
    task_outcome_free(&o);
    stop();
}

/* Each redirect's connection is checked, with the redirect's own host name. */
TEST(test_redirect_to_a_denied_host_is_refused) {
    canned a, b;
    canned_start(&a);
    canned_start(&b);
    ASSERT_EQ(green_http_global_init(), 0);
    register_policy("localhost", NULL);
    char args[256];
    snprintf(args, sizeof args, "[\"http://127.0.0.1:%d/redirect?to=http://localhost:%d/echo\"]",
             a.port, b.port);
    task_outcome o = task_run("http.get", args, NULL);
    ASSERT_EQ(o.rc, TASK_EFAIL);
    ASSERT_STREQ(o.err.type, "HTTPError");
    ASSERT(strncmp(o.err.message, "connection to localhost (", 25) == 0);
    ASSERT(strstr(o.err.message, "(--http-deny localhost)") != NULL);
    canned_stop(&a);
    canned_stop(&b);
    finish();
}

TEST(test_redirect_to_a_denied_address_is_refused) {
    canned a;
    canned_start(&a);
    ASSERT_EQ(green_http_global_init(), 0);
    register_policy("127.0.0.0/8", "127.0.0.1/32");
    char args[256];
    snprintf(args, sizeof args, "[\"http://127.0.0.1:%d/redirect?to=http://127.0.0.2:%d/\"]",
             a.port, a.port);
    task_outcome o = task_run("http.get", args, NULL);
    ASSERT_TASK_ERROR(o, TASK_EFAIL, "HTTPError",
                      "connection to 127.0.0.2 refused by the HTTP address policy "
                      "(--http-deny 127.0.0.0/8)");
    canned_stop(&a);
    finish();
}

/* A connection from the shared cache skips the open-socket check; the pre-request check
 * still sees it. The policy changes between two requests of one hub only to get there. */
static void *reuse_main(void *arg) {
    const char *args = arg;
    task_outcome first = {0}, second = {0};
    task_run_spec spec = {
        .task = "http.get", .args = task_json(args), .kwargs = json_object(), .out = &first};
    task_run_main(&spec);
    ASSERT_EQ(first.rc, 0);
    task_outcome_free(&first);
    task_registry_clear();
    register_policy("127.0.0.1", NULL);
    spec.out = &second;
    task_run_main(&spec);
    ASSERT_TASK_ERROR(second, TASK_EFAIL, "HTTPError",
                      "connection to 127.0.0.1 refused by the HTTP address policy "
                      "(--http-deny 127.0.0.1)");
    json_decref(spec.args);
    json_decref(spec.kwargs);
    return NULL;
}

TEST(test_reused_connection_to_a_denied_address_is_refused) {
    start();
    register_policy(NULL, NULL);
    ASSERT_EQ(green_run(NULL, NULL, reuse_main, (void *)nginx_args("/fast"), NULL), 0);
    stop();
}

/* ---- IPv6 forms that carry a denied IPv4 address ------------------------------------ */

/* These use the built-in deny list, on its own subject: the metadata address inside each
 * IPv6 form. So that not even a broken policy could send a packet there, the task runs in
 * a child in a network namespace of its own (no interface up: any connect would fail with
 * "unreachable", which the test would report), when the system lets it make one; without
 * one it runs anyway, and a working policy sends nothing, as the message proves: it comes
 * from the open-socket callback, which refuses before a socket exists. */

static bool isolate_network(void) {
    return unshare(CLONE_NEWNET) == 0 || unshare(CLONE_NEWUSER | CLONE_NEWNET) == 0;
}

/* http.get url with the default policy; its error message must start with "connection to"
 * and end with want_end. */
static void expect_refused_in_a_child(const char *url, const char *want_end) {
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        if (!isolate_network())
            fprintf(stderr, "note: no network namespace (%s); running on the host's network\n",
                    strerror(errno));
        ASSERT_EQ(green_http_global_init(), 0);
        register_policy(NULL, NULL);
        char args[256];
        snprintf(args, sizeof args, "[\"%s\"]", url);
        task_outcome o = task_run("http.get", args, "{\"timeout\": 10}");
        fprintf(stderr, "%s: %s: %s\n", url, o.err.type, o.err.message);
        ASSERT_EQ(o.rc, TASK_EFAIL);
        ASSERT_STREQ(o.err.type, "HTTPError");
        ASSERT(strncmp(o.err.message, "connection to ", 14) == 0);
        ASSERT(ends_with(o.err.message, want_end));
        finish();
        _exit(0);
    }
    int status;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

TEST(test_ipv4_compatible_metadata_url_is_refused_before_connect) {
    expect_refused_in_a_child("http://[::169.254.169.254]/latest/meta-data/",
                              "refused by the HTTP address policy (the built-in deny list: "
                              "169.254.0.0/16, for 169.254.169.254 inside this IPv4-compatible "
                              "address)");
}

TEST(test_ipv4_mapped_metadata_url_is_refused_before_connect) {
    expect_refused_in_a_child("http://[::ffff:169.254.169.254]/latest/meta-data/",
                              "refused by the HTTP address policy (the built-in deny list: "
                              "169.254.0.0/16)");
}

TEST(test_nat64_metadata_url_is_refused_before_connect) {
    expect_refused_in_a_child("http://[64:ff9b::169.254.169.254]/latest/meta-data/",
                              "refused by the HTTP address policy (the built-in deny list: "
                              "169.254.0.0/16, for 169.254.169.254 inside this NAT64 address)");
    expect_refused_in_a_child("http://[64:ff9b:1:a9fe:a9:fe00::]/",
                              "refused by the HTTP address policy (the built-in deny list: "
                              "169.254.0.0/16, for 169.254.169.254 inside this NAT64 address)");
}

TEST(test_6to4_metadata_url_is_refused_before_connect) {
    expect_refused_in_a_child("http://[2002:a9fe:a9fe::1]/latest/meta-data/",
                              "refused by the HTTP address policy (the built-in deny list: "
                              "169.254.0.0/16, for 169.254.169.254 inside this 6to4 address)");
}

TEST(test_teredo_metadata_url_is_refused_before_connect) {
    expect_refused_in_a_child("http://[2001:0:4136:e378:8000:63bf:5601:5601]/latest/meta-data/",
                              "refused by the HTTP address policy (the built-in deny list: "
                              "169.254.0.0/16, for 169.254.169.254 inside this Teredo address)");
}

TEST(test_bad_policy_list_is_einval_at_registration) {
    task_http_limits limits = {.deny = "10.0.0.0/33"};
    ASSERT_EQ(task_register_builtins(&limits), -EINVAL);
    ASSERT(task_registry_find("http.get") == NULL);
    task_registry_clear();
}
