/*
 * test_registry.c - the task registry (names, duplicates, sorted listing, the built-ins),
 * the argument helpers' checks and messages, and the pure JSON helpers of the http.*
 * tasks (base64, header parsing). No hub needed: none of these yields.
 */
#include "task.h"
#include "task_internal.h"
#include "task_run.h"

#include <errno.h>

static int noop(const task_call *call, json_t **result, task_error *err) {
    (void)call;
    (void)err;
    *result = json_null();
    return 0;
}

static int other(const task_call *call, json_t **result, task_error *err) {
    return noop(call, result, err);
}

/* ---- registry ----------------------------------------------------------------------- */

TEST(test_registry_finds_what_was_added) {
    ASSERT_EQ(task_registry_add("app.add", noop), 0);
    ASSERT_EQ(task_registry_add("app.other", other), 0);
    ASSERT(task_registry_find("app.add") == noop);
    ASSERT(task_registry_find("app.other") == other);
    ASSERT(task_registry_find("app.missing") == NULL);
    ASSERT(task_registry_find("app") == NULL);
    task_registry_clear();
    ASSERT(task_registry_find("app.add") == NULL);
}

TEST(test_registry_refuses_duplicates) {
    ASSERT_EQ(task_registry_add("dup", noop), 0);
    ASSERT_EQ(task_registry_add("dup", other), -EEXIST);
    ASSERT(task_registry_find("dup") == noop);
    task_registry_clear();
}

TEST(test_registry_validates_names) {
    static const char *const bad[] = {"",          ".a",  "a.",   "a..b", "1abc",
                                      "has space", "a/b", "a.1b", "é",    NULL};
    for (size_t i = 0; bad[i] != NULL; i++) {
        if (task_registry_add(bad[i], noop) != -EINVAL)
            test__fail(__FILE__, __LINE__, "name \"%s\" was accepted", bad[i]);
    }
    char long_name[130];
    memset(long_name, 'a', sizeof long_name - 1);
    long_name[129] = '\0';
    ASSERT_EQ(task_registry_add(long_name, noop), -EINVAL);
    long_name[128] = '\0';
    ASSERT_EQ(task_registry_add(long_name, noop), 0);
    ASSERT_EQ(task_registry_add("my_app:scrape-page.v2", noop), 0);
    ASSERT_EQ(task_registry_add("_private", noop), 0);
    ASSERT_EQ(task_registry_add("ok", NULL), -EINVAL);
    ASSERT_EQ(task_registry_add(NULL, noop), -EINVAL);
    task_registry_clear();
}

TEST(test_registry_lists_names_sorted) {
    ASSERT_EQ(task_registry_add("zeta", noop), 0);
    ASSERT_EQ(task_registry_add("alpha", noop), 0);
    ASSERT_EQ(task_registry_add("mid.b", noop), 0);
    ASSERT_EQ(task_registry_add("mid.a", noop), 0);
    ASSERT_EQ(task_registry_names(NULL, 0), 4);
    const char *names[3];
    ASSERT_EQ(task_registry_names(names, 3), 4);
    ASSERT_STREQ(names[0], "alpha");
    ASSERT_STREQ(names[1], "mid.a");
    ASSERT_STREQ(names[2], "mid.b");
    task_registry_clear();
    ASSERT_EQ(task_registry_names(NULL, 0), 0);
}

TEST(test_register_builtins_registers_all_once) {
    ASSERT_EQ(task_register_builtins(NULL), 0);
    const char *names[8];
    ASSERT_EQ(task_registry_names(names, 8), 6);
    ASSERT_STREQ(names[0], "echo");
    ASSERT_STREQ(names[1], "fail");
    ASSERT_STREQ(names[2], "http.get");
    ASSERT_STREQ(names[3], "http.request");
    ASSERT_STREQ(names[4], "http.scrape");
    ASSERT_STREQ(names[5], "sleep");
    ASSERT_EQ(task_register_builtins(NULL), -EEXIST);
    task_registry_clear();
}

/* ---- argument helpers --------------------------------------------------------------- */

typedef struct call_json {
    json_t *args, *kwargs;
    task_call call;
} call_json;

static void call_make(call_json *c, const char *args, const char *kwargs) {
    c->args = task_json(args);
    c->kwargs = task_json(kwargs);
    c->call = (task_call){.id = "1", .name = "t", .args = c->args, .kwargs = c->kwargs};
}

static void call_free(call_json *c) {
    json_decref(c->args);
    json_decref(c->kwargs);
}

TEST(test_opt_helpers_use_defaults_when_absent_or_null) {
    call_json c;
    call_make(&c, "[]", "{\"n\": null}");
    task_error err;
    double d;
    long long n;
    bool b;
    const char *s;
    size_t len;
    const json_t *o;
    ASSERT_EQ(task_opt_number(&c.call, 0, "d", 1.5, 0, 10, &d, &err), 0);
    ASSERT(d == 1.5);
    ASSERT_EQ(task_opt_integer(&c.call, TASK_ARG_KWONLY, "n", 7, 0, 10, &n, &err), 0);
    ASSERT_EQ(n, 7);
    ASSERT_EQ(task_opt_bool(&c.call, 1, "b", true, &b, &err), 0);
    ASSERT(b);
    ASSERT_EQ(task_opt_string(&c.call, 0, "s", "def", &s, &len, &err), 0);
    ASSERT_STREQ(s, "def");
    ASSERT_EQ(len, 3);
    ASSERT_EQ(task_opt_object(&c.call, 0, "o", &o, &err), 0);
    ASSERT(o == NULL);
    call_free(&c);
}

TEST(test_integer_helper_rejects_a_real) {
    call_json c;
    call_make(&c, "[]", "{\"max_size\": 1.5}");
    task_error err;
    long long n;
    ASSERT_EQ(task_opt_integer(&c.call, TASK_ARG_KWONLY, "max_size", 0, 0, 10, &n, &err),
              TASK_EINVAL);
    ASSERT_STREQ(err.type, "TypeError");
    ASSERT_STREQ(err.message, "t: max_size must be an integer, got real");
    call_free(&c);
}

TEST(test_integer_helper_checks_its_range) {
    call_json c;
    call_make(&c, "[11]", "{}");
    task_error err;
    long long n;
    ASSERT_EQ(task_opt_integer(&c.call, 0, "count", 0, 0, 10, &n, &err), TASK_EINVAL);
    ASSERT_STREQ(err.type, "ValueError");
    ASSERT_STREQ(err.message, "t: argument 1 (count) must be between 0 and 10, got 11");
    call_free(&c);
}

TEST(test_string_helper_reports_length_with_nul_bytes) {
    call_json c;
    call_make(&c, "[\"a\\u0000b\"]", "{}");
    task_error err;
    const char *s;
    size_t len;
    ASSERT_EQ(task_opt_string(&c.call, 0, "s", NULL, &s, &len, &err), 0);
    ASSERT_EQ(len, 3);
    ASSERT_EQ(memcmp(s, "a\0b", 3), 0);
    call_free(&c);
}

TEST(test_string_helper_without_length_refuses_nul_bytes) {
    call_json c;
    call_make(&c, "[\"http://good/\\u0000evil\"]", "{}");
    task_error err;
    const char *s;
    ASSERT_EQ(task_arg_string(&c.call, 0, "url", &s, &err), TASK_EINVAL);
    ASSERT_STREQ(err.type, "ValueError");
    ASSERT_STREQ(err.message, "t: argument 1 (url) must not contain NUL characters");
    call_free(&c);
}

TEST(test_object_and_bool_helpers_name_the_wrong_type) {
    call_json c;
    call_make(&c, "[]", "{\"headers\": [1], \"flag\": \"yes\"}");
    task_error err;
    const json_t *o;
    bool b;
    ASSERT_EQ(task_opt_object(&c.call, TASK_ARG_KWONLY, "headers", &o, &err), TASK_EINVAL);
    ASSERT_STREQ(err.message, "t: headers must be an object, got array");
    ASSERT_EQ(task_opt_bool(&c.call, TASK_ARG_KWONLY, "flag", false, &b, &err), TASK_EINVAL);
    ASSERT_STREQ(err.message, "t: flag must be a boolean, got string");
    call_free(&c);
}

TEST(test_args_check_accepts_listed_kwargs) {
    static const char *const kwargs[] = {"a", "b", NULL};
    call_json c;
    call_make(&c, "[1, 2]", "{\"a\": 1, \"b\": 2}");
    task_error err;
    ASSERT_EQ(task_args_check(&c.call, 2, kwargs, &err), 0);
    ASSERT_EQ(task_args_check(&c.call, 0, kwargs, &err), TASK_EINVAL);
    ASSERT_STREQ(err.message, "t: takes at most 0 positional arguments (2 given)");
    call_free(&c);
}

TEST(test_error_set_returns_efail_and_truncates_type) {
    task_error err;
    ASSERT_EQ(task_error_set(&err, "MyError", "n=%d", 3), TASK_EFAIL);
    ASSERT_STREQ(err.type, "MyError");
    ASSERT_STREQ(err.message, "n=3");
    char type[200];
    memset(type, 'T', sizeof type - 1);
    type[sizeof type - 1] = '\0';
    ASSERT_EQ(task_error_invalid(&err, type, "x"), TASK_EINVAL);
    ASSERT_EQ(strlen(err.type), sizeof err.type - 1);
}

/* ---- JSON helpers of the http.* tasks ----------------------------------------------- */

TEST(test_base64_matches_rfc4648_vectors) {
    static const char *const vectors[][2] = {{"", ""},
                                             {"f", "Zg=="},
                                             {"fo", "Zm8="},
                                             {"foo", "Zm9v"},
                                             {"foob", "Zm9vYg=="},
                                             {"fooba", "Zm9vYmE="},
                                             {"foobar", "Zm9vYmFy"}};
    for (size_t i = 0; i < sizeof vectors / sizeof vectors[0]; i++) {
        json_t *s = task__base64(vectors[i][0], strlen(vectors[i][0]));
        ASSERT_STREQ(json_string_value(s), vectors[i][1]);
        json_decref(s);
    }
    json_t *s = task__base64("\xff\xfe\x00", 3);
    ASSERT_STREQ(json_string_value(s), "//4A");
    json_decref(s);
}

TEST(test_headers_are_lowercased_and_repeats_joined) {
    const char raw[] = "Content-Type: text/plain\r\n"
                       "Set-Cookie: a=1\r\n"
                       "X-Empty:\r\n"
                       "set-cookie:  b=2 \r\n"
                       "X-Folded: one\r\n"
                       "\ttwo\r\n"
                       "garbage line\r\n";
    json_t *h = task__headers_object(raw, sizeof raw - 1);
    ASSERT_JSON(h, "{\"content-type\": \"text/plain\", \"set-cookie\": \"a=1, b=2\","
                   " \"x-empty\": \"\", \"x-folded\": \"one two\"}");
    json_decref(h);
}

TEST(test_header_values_that_are_not_utf8_become_question_marks) {
    const char raw[] = "X-Latin: caf\xe9\r\n";
    json_t *h = task__headers_object(raw, sizeof raw - 1);
    ASSERT_JSON(h, "{\"x-latin\": \"caf?\"}");
    json_decref(h);
}
