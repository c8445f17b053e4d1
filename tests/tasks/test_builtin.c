/*
 * test_builtin.c - the built-in tasks echo, sleep and fail, run on a greenlet as the daemon
 * runs them: their exact results, their failures, their argument errors (TASK_EINVAL with
 * a message naming the task and the argument), and how sleep reports an enclosing time
 * limit and a kill.
 */
#include "task_run.h"

#include <errno.h>

/* ---- echo --------------------------------------------------------------------------- */

TEST(test_echo_returns_its_args) {
    task_outcome o = task_run("echo", "[\"a\", 1, 2.5, {\"b\": [null, true]}]", NULL);
    ASSERT_EQ(o.rc, 0);
    ASSERT_JSON(o.result, "[\"a\", 1, 2.5, {\"b\": [null, true]}]");
    task_outcome_free(&o);
}

TEST(test_echo_without_args_returns_empty_list) {
    task_outcome o = task_run("echo", NULL, NULL);
    ASSERT_EQ(o.rc, 0);
    ASSERT_JSON(o.result, "[]");
    task_outcome_free(&o);
}

static void *echo_copy_main(void *arg) {
    (void)arg;
    json_t *args = task_json("[\"x\"]");
    json_t *kwargs = json_object();
    task_call call = {.id = "1", .name = "echo", .args = args, .kwargs = kwargs};
    json_t *result = NULL;
    task_error err;
    ASSERT_EQ(task_registry_find("echo")(&call, &result, &err), 0);
    json_array_append_new(args, json_string("changed later"));
    ASSERT_JSON(result, "[\"x\"]");
    json_decref(result);
    json_decref(args);
    json_decref(kwargs);
    return NULL;
}

TEST(test_echo_result_does_not_share_the_message) {
    task_run_register();
    ASSERT_EQ(green_run(NULL, NULL, echo_copy_main, NULL, NULL), 0);
}

TEST(test_echo_rejects_keyword_arguments) {
    task_outcome o = task_run("echo", "[1]", "{\"x\": 1}");
    ASSERT_TASK_ERROR(o, TASK_EINVAL, "TypeError", "echo: unexpected keyword argument 'x'");
}

/* ---- sleep -------------------------------------------------------------------------- */

TEST(test_sleep_sleeps_about_the_time_and_returns_it) {
    task_outcome o = task_run("sleep", "[0.2]", NULL);
    ASSERT_EQ(o.rc, 0);
    ASSERT_JSON(o.result, "0.2");
    ASSERT_RANGE(o.seconds, 0.19, 0.2 + TEST_SOON);
    task_outcome_free(&o);
}

TEST(test_sleep_accepts_an_integer_by_keyword) {
    task_outcome o = task_run("sleep", NULL, "{\"seconds\": 0}");
    ASSERT_EQ(o.rc, 0);
    ASSERT_JSON(o.result, "0");
    ASSERT_RANGE(o.seconds, 0, TEST_SOON);
    task_outcome_free(&o);
}

TEST(test_sleep_rejects_a_string) {
    task_outcome o = task_run("sleep", "[\"abc\"]", NULL);
    ASSERT_TASK_ERROR(o, TASK_EINVAL, "TypeError",
                      "sleep: argument 1 (seconds) must be a number, got string");
}

TEST(test_sleep_rejects_a_boolean) {
    task_outcome o = task_run("sleep", "[true]", NULL);
    ASSERT_TASK_ERROR(o, TASK_EINVAL, "TypeError",
                      "sleep: argument 1 (seconds) must be a number, got boolean");
}

TEST(test_sleep_rejects_negative_seconds) {
    task_outcome o = task_run("sleep", "[-1]", NULL);
    ASSERT_TASK_ERROR(o, TASK_EINVAL, "ValueError",
                      "sleep: argument 1 (seconds) must be between 0 and 86400, got -1");
}

TEST(test_sleep_rejects_more_than_a_day) {
    task_outcome o = task_run("sleep", "[86401]", NULL);
    ASSERT_TASK_ERROR(o, TASK_EINVAL, "ValueError",
                      "sleep: argument 1 (seconds) must be between 0 and 86400, got 86401");
}

TEST(test_sleep_requires_seconds) {
    task_outcome o = task_run("sleep", NULL, NULL);
    ASSERT_TASK_ERROR(o, TASK_EINVAL, "TypeError", "sleep: missing required argument 1 (seconds)");
}

TEST(test_sleep_null_counts_as_missing) {
    task_outcome o = task_run("sleep", "[null]", NULL);
    ASSERT_TASK_ERROR(o, TASK_EINVAL, "TypeError", "sleep: missing required argument 1 (seconds)");
}

TEST(test_sleep_rejects_two_positional_arguments) {
    task_outcome o = task_run("sleep", "[1, 2]", NULL);
    ASSERT_TASK_ERROR(o, TASK_EINVAL, "TypeError",
                      "sleep: takes at most 1 positional argument (2 given)");
}

TEST(test_sleep_rejects_seconds_given_twice) {
    task_outcome o = task_run("sleep", "[1]", "{\"seconds\": 1}");
    ASSERT_TASK_ERROR(o, TASK_EINVAL, "TypeError",
                      "sleep: got multiple values for argument seconds");
}

TEST(test_sleep_returns_etimedout_under_a_time_limit) {
    task_outcome o = task_run_limited("sleep", "[60]", NULL, 0.1);
    ASSERT_EQ(o.rc, -ETIMEDOUT);
    ASSERT(o.result == NULL);
    ASSERT_RANGE(o.seconds, 0.09, TEST_SOON);
}

static task_outcome killed_outcome;

static void *sleeper(void *arg) {
    return task_run_main(arg);
}

static void *kill_main(void *arg) {
    task_run_spec *spec = arg;
    green_t g;
    ASSERT_EQ(green_spawn(&g, sleeper, spec), 0);
    ASSERT_EQ(green_sleep(0.05), 0);
    ASSERT_EQ(green_kill(g), 0);
    ASSERT_EQ(green_join(g, NULL), 0);
    return NULL;
}

TEST(test_sleep_returns_ecanceled_when_killed) {
    task_run_register();
    task_run_spec spec = {.task = "sleep",
                          .args = task_json("[60]"),
                          .kwargs = json_object(),
                          .out = &killed_outcome};
    double start = test_now();
    ASSERT_EQ(green_run(NULL, NULL, kill_main, &spec, NULL), 0);
    ASSERT_EQ(killed_outcome.rc, -ECANCELED);
    ASSERT(killed_outcome.result == NULL);
    ASSERT_RANGE(test_now() - start, 0.04, TEST_SOON);
    json_decref(spec.args);
    json_decref(spec.kwargs);
}

/* ---- fail --------------------------------------------------------------------------- */

TEST(test_fail_fails_with_its_message) {
    task_outcome o = task_run("fail", "[\"boom: the disk is full\"]", NULL);
    ASSERT_TASK_ERROR(o, TASK_EFAIL, "TaskError", "boom: the disk is full");
}

TEST(test_fail_accepts_the_message_by_keyword) {
    task_outcome o = task_run("fail", NULL, "{\"message\": \"kw\"}");
    ASSERT_TASK_ERROR(o, TASK_EFAIL, "TaskError", "kw");
}

TEST(test_fail_without_message_says_so) {
    task_outcome o = task_run("fail", NULL, NULL);
    ASSERT_TASK_ERROR(o, TASK_EFAIL, "TaskError", "failed on purpose");
}

TEST(test_fail_truncates_a_huge_message) {
    char args[4096];
    memset(args, 'm', sizeof args);
    args[0] = '[';
    args[1] = '"';
    memcpy(args + sizeof args - 3, "\"]", 3);
    task_outcome o = task_run("fail", args, NULL);
    ASSERT_EQ(o.rc, TASK_EFAIL);
    ASSERT_EQ(strlen(o.err.message), sizeof o.err.message - 1);
}

TEST(test_fail_rejects_a_non_string_message) {
    task_outcome o = task_run("fail", "[42]", NULL);
    ASSERT_TASK_ERROR(o, TASK_EINVAL, "TypeError",
                      "fail: argument 1 (message) must be a string, got integer");
}

TEST(test_fail_rejects_unknown_keyword) {
    task_outcome o = task_run("fail", NULL, "{\"mesage\": \"typo\"}");
    ASSERT_TASK_ERROR(o, TASK_EINVAL, "TypeError", "fail: unexpected keyword argument 'mesage'");
}
