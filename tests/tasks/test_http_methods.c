/*
 * test_http_methods.c - which methods http.request sends: the standard GET, HEAD, POST,
 * PUT, PATCH, DELETE and OPTIONS, others only when the administrator lists them
 * (task_http_limits.methods, which workerd's --http-methods fills), and the check of such
 * a list. A refused method fails the task before any connection: a real redis-server on
 * loopback shows that "SET /x HTTP/1.1" never reaches it.
 */
#include "canned.h"
#include "task_internal.h"
#include "task_run.h"

#include <errno.h>
#include <hiredis/hiredis.h>

static void finish(void) {
    task_http_cleanup();
    task_registry_clear();
    green_http_global_cleanup();
}

static void register_methods(const char *methods) {
    task_http_limits limits = {.methods = methods};
    ASSERT_EQ(task_register_builtins(&limits), 0);
}

/* http.request method to url; the outcome. */
static task_outcome request(const char *method, const char *url) {
    char args[512];
    snprintf(args, sizeof args, "[\"%s\", \"%s\"]", method, url);
    return task_run("http.request", args, "{\"timeout\": 10}");
}

static void expect_refused(const char *method, const char *url, const char *shown) {
    task_outcome o = request(method, url);
    char want[512];
    snprintf(want, sizeof want,
             "http.request: method '%s' is not allowed: http.request sends GET, HEAD, POST, "
             "PUT, PATCH, DELETE and OPTIONS, and other methods only when listed in "
             "--http-methods",
             shown);
    ASSERT_TASK_ERROR(o, TASK_EFAIL, "HTTPError", want);
}

/* The request line the canned server received, from its echo of the request head. */
static void expect_sent(const char *method, const char *url, const char *request_line) {
    task_outcome o = request(method, url);
    if (o.rc != 0)
        test__fail(__FILE__, __LINE__, "%s: %s: %s", method, o.err.type, o.err.message);
    ASSERT_EQ(json_integer_value(json_object_get(o.result, "status")), 200);
    const char *body = json_string_value(json_object_get(o.result, "body"));
    if (strcmp(method, "HEAD") != 0 && strcasecmp(method, "head") != 0 &&
        strncmp(body, request_line, strlen(request_line)) != 0)
        test__fail(__FILE__, __LINE__, "%s: the server saw \"%.40s\"", method, body);
    task_outcome_free(&o);
}

TEST(test_standard_methods_are_sent) {
    canned a;
    canned_start(&a);
    ASSERT_EQ(green_http_global_init(), 0);
    register_methods(NULL);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/m", a.port);
    const char *methods[] = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"};
    for (size_t i = 0; i < sizeof methods / sizeof *methods; i++) {
        char line[64];
        snprintf(line, sizeof line, "%s /m HTTP/1.1\r\n", methods[i]);
        expect_sent(methods[i], url, line);
    }
    expect_sent("patch", url, "PATCH /m HTTP/1.1\r\n"); /* sent upper-cased, as before */
    canned_stop(&a);
    finish();
}

TEST(test_other_methods_are_refused_before_any_connection) {
    ASSERT_EQ(green_http_global_init(), 0);
    register_methods(NULL);
    int port, lfd = listen_loopback(&port);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/x", port);
    expect_refused("SET", url, "SET");
    expect_refused("propfind", url, "PROPFIND");
    expect_refused("CONNECT", url, "CONNECT");
    expect_refused("TRACE", url, "TRACE");
    ASSERT(!connection_pending(lfd));
    close(lfd);
    finish();
}

/* The attack: a Redis on loopback reads "SET /x HTTP/1.1" as an inline command and would
 * store "HTTP/1.1" at the key "/x". */
TEST(test_a_redis_command_as_method_never_reaches_redis) {
    test_redis redis;
    test_redis_start(&redis, NULL);
    ASSERT_EQ(green_http_global_init(), 0);
    register_methods(NULL);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/x", redis.port);
    task_outcome o = request("SET", url);
    ASSERT_EQ(o.rc, TASK_EFAIL);
    ASSERT_STREQ(o.err.type, "HTTPError");
    redisContext *c = redisConnect("127.0.0.1", redis.port);
    ASSERT(c != NULL && c->err == 0);
    redisReply *r = redisCommand(c, "EXISTS /x");
    ASSERT(r != NULL && r->type == REDIS_REPLY_INTEGER);
    ASSERT_EQ(r->integer, 0);
    freeReplyObject(r);
    redisFree(c);
    test_redis_stop(&redis);
    finish();
}

TEST(test_listed_methods_are_sent_in_any_case_and_others_still_refused) {
    canned a;
    canned_start(&a);
    ASSERT_EQ(green_http_global_init(), 0);
    register_methods(" PROPFIND , report,M-SEARCH");
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/dav", a.port);
    expect_sent("PROPFIND", url, "PROPFIND /dav HTTP/1.1\r\n");
    expect_sent("Report", url, "REPORT /dav HTTP/1.1\r\n");
    expect_sent("M-SEARCH", url, "M-SEARCH /dav HTTP/1.1\r\n");
    expect_sent("GET", url, "GET /dav HTTP/1.1\r\n");
    expect_refused("MKCOL", url, "MKCOL");
    expect_refused("PROP", url, "PROP");
    canned_stop(&a);
    finish();
}

TEST(test_methods_list_check) {
    ASSERT(task_http_check_methods(NULL) == NULL);
    ASSERT(task_http_check_methods("") == NULL);
    ASSERT(task_http_check_methods("PROPFIND") == NULL);
    ASSERT(task_http_check_methods(" PROPFIND ,REPORT, m-search,X_1!") == NULL);
    ASSERT_STREQ(task_http_check_methods("A,,B"), "an entry of the list is empty");
    ASSERT_STREQ(task_http_check_methods("A,"), "an entry of the list is empty");
    ASSERT_STREQ(task_http_check_methods(",A"), "an entry of the list is empty");
    ASSERT_STREQ(task_http_check_methods(" "), "an entry of the list is empty");
    const char *not_token =
        "a method may hold only letters, digits and !#$%&'*+-.^_`|~ (an HTTP token)";
    ASSERT_STREQ(task_http_check_methods("GE T"), not_token);
    ASSERT_STREQ(task_http_check_methods("SET\r\nX"), not_token);
    ASSERT_STREQ(task_http_check_methods("A/B"), not_token);
    ASSERT_STREQ(task_http_check_methods("A:B"), not_token);
    char longest[40];
    memset(longest, 'X', 32);
    longest[32] = '\0';
    ASSERT(task_http_check_methods(longest) == NULL);
    strcat(longest, "X");
    ASSERT_STREQ(task_http_check_methods(longest), "a method is longer than 32 characters");
    char many[200] = "";
    for (int i = 0; i < 33; i++)
        strcat(many, i ? ",M" : "M");
    ASSERT_STREQ(task_http_check_methods(many), "the list names more than 32 methods");
    many[strlen(many) - 2] = '\0'; /* 32 */
    ASSERT(task_http_check_methods(many) == NULL);
}

TEST(test_bad_methods_list_is_einval_at_registration) {
    task_http_limits limits = {.methods = "GE T"};
    ASSERT_EQ(task_register_builtins(&limits), -EINVAL);
    ASSERT(task_registry_find("http.request") == NULL);
    ASSERT(task_registry_find("http.get") == NULL);
    task_registry_clear();
}
