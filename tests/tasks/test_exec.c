/*
 * test_exec.c - external-program tasks (task_exec.h), with small Python and shell programs
 * that each test writes into a private directory: what a program reads and what its exit
 * and output become, its environment, the stdout cap and the stderr tail, time limits
 * (SIGTERM, then SIGKILL after the grace), processes it leaves behind, and the checks of
 * --exec-task and --exec-env entries.
 *
 * Each TEST runs in a process of its own (ctest), so each registers the programs once.
 */
#include "task_exec.h"
#include "task_run.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#define PY "#!/usr/bin/python3\nimport json, os, sys\n"

static const struct {
    const char *name, *text;
} programs[] = {
    {"py.echo", PY "msg = json.load(sys.stdin)\n"
                   "print(json.dumps({'message': msg, 'env': dict(os.environ)}))\n"},
    {"py.add", PY "msg = json.load(sys.stdin)\nprint(sum(msg['args']))\n"},
    {"sh.silent", "#!/bin/sh\nexit 0\n"},
    {"sh.fail", "#!/bin/sh\necho 'first line' >&2\necho 'it broke' >&2\nexit 3\n"},
    {"sh.quiet_fail", "#!/bin/sh\nexit 1\n"},
    {"sh.chatty", "#!/bin/sh\nhead -c 10000 /dev/zero | tr '\\000' x >&2\necho END >&2\n"
                  "exit 1\n"},
    {"sh.segv", "#!/bin/sh\nkill -SEGV $$\n"},
    {"sh.bad", "#!/bin/sh\necho 'not json'\n"},
    {"sh.retry", "#!/bin/sh\necho 'try later' >&2\nexit 75\n"},
    {"py.flood", PY "sys.stdout.write('x' * (3 << 20))\n"},
    /* Writes 1 MiB before it reads its (larger) message: the worker must read while it
     * writes. */
    {"py.write_first", PY "sys.stdout.write('[\"' + 'y' * (1 << 20) + '\", ')\n"
                          "sys.stdout.flush()\n"
                          "msg = json.load(sys.stdin)\n"
                          "print(len(msg['args']), ']')\n"},
    {"sh.sleeper", "#!/bin/sh\necho $$ > \"$DIR/sleeper.pid\"\nexec sleep 1000\n"},
    {"sh.polite", "#!/bin/sh\ntrap 'echo \\\"partial\\\"; exit 0' TERM\n"
                  "echo $$ > \"$DIR/polite.pid\"\nwhile :; do sleep 0.05; done\n"},
    {"sh.stubborn", "#!/bin/sh\ntrap '' TERM\necho $$ > \"$DIR/stubborn.pid\"\n"
                    "while :; do sleep 0.1; done\n"},
    {"sh.forker", "#!/bin/sh\nsleep 1000 &\necho $! > \"$DIR/grandchild.pid\"\n"
                  "echo '\"parent done\"'\n"},
    {"sh.vanished", "#!/bin/sh\nexit 0\n"},
};
#define NPROGRAMS (sizeof programs / sizeof *programs)

static char *dir;

static void write_program(const char *name, const char *text) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    ASSERT(f != NULL);
    fputs(text, f);
    fclose(f);
    ASSERT_EQ(chmod(path, 0755), 0);
}

/* Write every program and register it under its name; --exec-env gives them DIR and
 * GREETING (a value with a comma). A secret in workerd's own environment must not reach
 * them. */
static void setup(void) {
    signal(SIGPIPE, SIG_IGN); /* as the daemon does (green_proc.h) */
    setenv("WORKERD_BROKER", "redis://:secret@127.0.0.1:6379/0", 1);
    dir = test_tmpdir("exec");
    char *tasks[NPROGRAMS];
    for (size_t i = 0; i < NPROGRAMS; i++) {
        write_program(programs[i].name, programs[i].text);
        tasks[i] = malloc(strlen(dir) + 2 * strlen(programs[i].name) + 3);
        sprintf(tasks[i], "%s=%s/%s", programs[i].name, dir, programs[i].name);
    }
    char dir_env[512];
    snprintf(dir_env, sizeof dir_env, "DIR=%s", dir);
    char *env[] = {dir_env, "GREETING=hello, world"};
    task_exec_config cfg = {
        .tasks = tasks, .ntasks = NPROGRAMS, .env = env, .nenv = 2, .max_output = 2 << 20};
    task_run_register();
    char why[512];
    if (task_exec_register(&cfg, why, sizeof why) != 0)
        test__fail(__FILE__, __LINE__, "task_exec_register: %s", why);
    for (size_t i = 0; i < NPROGRAMS; i++)
        free(tasks[i]);
}

static void teardown(void) {
    task_registry_clear();
    task_exec_clear();
    test_rmtree(dir);
    free(dir);
}

/* The pid a program wrote into DIR/name. */
static pid_t pid_in(const char *name) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "r");
    ASSERT(f != NULL);
    int pid = 0;
    ASSERT_EQ(fscanf(f, "%d", &pid), 1);
    fclose(f);
    return pid;
}

/* ---- results ---------------------------------------------------------------------------- */

TEST(exec_program_reads_the_message_and_its_stdout_is_the_result) {
    setup();
    task_outcome o = task_run("py.echo", "[1, \"two\"]", "{\"k\": true}");
    ASSERT_EQ(o.rc, 0);
    ASSERT_JSON(json_object_get(o.result, "message"),
                "{\"id\": \"test-1\", \"task\": \"py.echo\", \"args\": [1, \"two\"], "
                "\"kwargs\": {\"k\": true}, \"retries\": 0}");
    task_outcome_free(&o);
    o = task_run("py.add", "[1, 2, 3.5]", NULL);
    ASSERT_EQ(o.rc, 0);
    ASSERT_JSON(o.result, "6.5");
    task_outcome_free(&o);
    teardown();
}

TEST(exec_program_gets_a_minimal_environment_plus_exec_env) {
    setup();
    task_outcome o = task_run("py.echo", NULL, NULL);
    ASSERT_EQ(o.rc, 0);
    json_t *want = json_pack("{s:s, s:s, s:s, s:s}", "PATH", "/usr/local/bin:/usr/bin:/bin", "LANG",
                             "C.UTF-8", "DIR", dir, "GREETING", "hello, world");
    const char *home = getenv("HOME");
    if (home != NULL && *home != '\0')
        json_object_set_new(want, "HOME", json_string(home));
    json_t *got = json_object_get(o.result, "env");
    if (!json_equal(got, want))
        test__fail(__FILE__, __LINE__, "environment: %s", json_dumps(got, JSON_SORT_KEYS));
    json_decref(want);
    task_outcome_free(&o);
    teardown();
}

TEST(exec_program_with_nothing_on_stdout_returns_null) {
    setup();
    task_outcome o = task_run("sh.silent", NULL, NULL);
    ASSERT_EQ(o.rc, 0);
    ASSERT_JSON(o.result, "null");
    task_outcome_free(&o);
    teardown();
}

TEST(exec_nonzero_exit_is_an_exec_error_with_stderr) {
    setup();
    task_outcome o = task_run("sh.fail", NULL, NULL);
    ASSERT_TASK_ERROR(o, TASK_EFAIL, "ExecError",
                      "exited with status 3; stderr: first line\nit broke");
    o = task_run("sh.quiet_fail", NULL, NULL);
    ASSERT_TASK_ERROR(o, TASK_EFAIL, "ExecError", "exited with status 1; nothing on stderr");
    o = task_run("sh.segv", NULL, NULL);
    ASSERT_TASK_ERROR(o, TASK_EFAIL, "ExecError",
                      "killed by signal 11 (SIGSEGV); nothing on stderr");
    teardown();
}

TEST(exec_error_keeps_the_last_4_kib_of_stderr) {
    setup();
    task_outcome o = task_run("sh.chatty", NULL, NULL);
    ASSERT_EQ(o.rc, TASK_EFAIL);
    ASSERT_STREQ(o.err.type, "ExecError");
    const char *head = "exited with status 1; stderr (the last 4096 of 10004 bytes): ";
    const char *text = task_error_text(&o.err);
    ASSERT(strncmp(text, head, strlen(head)) == 0);
    const char *tail = text + strlen(head);
    ASSERT_EQ(strlen(tail), 4095); /* the final newline is dropped */
    ASSERT_STREQ(tail + 4092, "END");
    ASSERT_EQ(strspn(tail, "x"), 4092);
    /* message holds the start, for callers that read only it. */
    ASSERT_EQ(strlen(o.err.message), sizeof o.err.message - 1);
    ASSERT(strncmp(o.err.message, text, sizeof o.err.message - 1) == 0);
    task_outcome_free(&o);
    teardown();
}

TEST(exec_stdout_that_is_not_json_is_bad_output) {
    setup();
    task_outcome o = task_run("sh.bad", NULL, NULL);
    ASSERT_EQ(o.rc, TASK_EFAIL);
    ASSERT_STREQ(o.err.type, "BadOutput");
    ASSERT(strstr(o.err.message, "exited with status 0 but its stdout is not JSON") != NULL);
    ASSERT(strstr(o.err.message, "it begins: not json\n") != NULL);
    teardown();
}

TEST(exec_stdout_over_the_cap_kills_the_program_and_is_bad_output) {
    setup();
    task_outcome o = task_run("py.flood", NULL, NULL);
    ASSERT_TASK_ERROR(o, TASK_EFAIL, "BadOutput",
                      "the program wrote more than 2097152 bytes on stdout (--exec-max-output) "
                      "and was killed");
    teardown();
}

TEST(exec_exit_75_asks_for_a_retry) {
    setup();
    task_outcome o = task_run("sh.retry", NULL, NULL);
    ASSERT_TASK_ERROR(o, TASK_ERETRY, "RetryRequested",
                      "asked for a retry (exit status 75); stderr: try later");
    ASSERT(o.err.retry_in < 0); /* the message's own backoff */
    teardown();
}

TEST(exec_large_message_to_a_program_that_writes_first_does_not_deadlock) {
    setup();
    /* 200,000 arguments: over a megabyte of JSON, far more than a pipe holds. */
    size_t n = 200000;
    char *args = malloc(n * 2 + 2);
    char *p = args;
    *p++ = '[';
    for (size_t i = 0; i < n; i++) {
        *p++ = '7';
        *p++ = i + 1 < n ? ',' : ']';
    }
    *p = '\0';
    task_outcome o = task_run("py.write_first", args, NULL);
    ASSERT_EQ(o.rc, 0);
    ASSERT_EQ(json_array_size(o.result), 2);
    ASSERT_EQ(json_string_length(json_array_get(o.result, 0)), 1 << 20);
    ASSERT_JSON(json_array_get(o.result, 1), "200000");
    task_outcome_free(&o);
    free(args);
    teardown();
}

/* ---- time limits and leftovers -------------------------------------------------------------- */

/* A deadline that stays passed (a scope around the call) stops the program too. */
TEST(exec_an_expired_scope_stops_the_program_with_sigterm) {
    setup();
    task_outcome o = task_run_limited("sh.sleeper", NULL, NULL, 0.5);
    ASSERT_EQ(o.rc, -ETIMEDOUT);
    ASSERT_RANGE(o.seconds, 0.45, TEST_SOON);
    ASSERT(test_pid_dead(pid_in("sleeper.pid")));
    teardown();
}

/* The daemon's limits, as wd_limits delivers them: once the program has written its pid
 * file, the soft limit throws -ETIMEDOUT at the task's greenlet once; the hard limit kills
 * it, again every LIMIT_AGAIN seconds while it runs. */
#define LIMIT_AGAIN 0.2

typedef struct limited {
    const char *task, *pid_file;
    bool hard;
    task_outcome out;
    double since_limit; /* seconds from the (first) limit to the task's return */
    bool done;
} limited;

static void *limited_task(void *arg) {
    limited *l = arg;
    task_fn fn = task_registry_find(l->task);
    json_t *args = json_array(), *kwargs = json_object();
    task_call call = {.id = "test-1", .name = l->task, .args = args, .kwargs = kwargs};
    l->out.rc = fn(&call, &l->out.result, &l->out.err);
    l->done = true;
    json_decref(args);
    json_decref(kwargs);
    return NULL;
}

static void *limits_main(void *arg) {
    limited *l = arg;
    green_t g;
    ASSERT_EQ(green_spawn(&g, limited_task, l), 0);
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, l->pid_file);
    struct stat st;
    double end = test_now() + TEST_NEVER;
    while (stat(path, &st) != 0 || st.st_size == 0) {
        ASSERT(test_now() < end);
        green_sleep(0.01);
    }
    double t0 = test_now();
    if (!l->hard)
        green_throw(g, -ETIMEDOUT);
    while (l->hard && !l->done) {
        green_kill(g);
        green_sleep(LIMIT_AGAIN);
    }
    ASSERT_EQ(green_join(g, NULL), 0);
    l->since_limit = test_now() - t0;
    return NULL;
}

static limited run_limited(const char *task, const char *pid_file, bool hard) {
    limited l = {.task = task, .pid_file = pid_file, .hard = hard};
    ASSERT_EQ(green_run(NULL, NULL, limits_main, &l, NULL), 0);
    return l;
}

TEST(exec_soft_limit_sends_sigterm_and_the_program_may_still_answer) {
    setup();
    limited l = run_limited("sh.polite", "polite.pid", false);
    ASSERT_EQ(l.out.rc, 0);
    ASSERT_JSON(l.out.result, "\"partial\"");
    ASSERT(test_pid_dead(pid_in("polite.pid")));
    task_outcome_free(&l.out);
    teardown();
}

TEST(exec_soft_limit_ends_a_program_that_does_not_handle_sigterm) {
    setup();
    limited l = run_limited("sh.sleeper", "sleeper.pid", false);
    ASSERT_EQ(l.out.rc, -ETIMEDOUT);
    ASSERT_RANGE(l.since_limit, 0, TEST_SOON);
    ASSERT(test_pid_dead(pid_in("sleeper.pid")));
    teardown();
}

TEST(exec_hard_limit_kills_a_program_that_ignores_sigterm_after_the_grace) {
    setup();
    limited l = run_limited("sh.stubborn", "stubborn.pid", true);
    ASSERT_EQ(l.out.rc, -ECANCELED);
    /* The task returns only once the program is gone: after the grace, which the repeated
     * kills do not cut short. */
    ASSERT_RANGE(l.since_limit, TASK_EXEC_GRACE - 0.1, TASK_EXEC_GRACE + TEST_SOON);
    ASSERT(test_pid_dead(pid_in("stubborn.pid")));
    teardown();
}

TEST(exec_hard_limit_stops_a_program_with_sigterm_at_once) {
    setup();
    limited l = run_limited("sh.sleeper", "sleeper.pid", true);
    ASSERT_EQ(l.out.rc, -ECANCELED);
    ASSERT_RANGE(l.since_limit, 0, TEST_SOON);
    ASSERT(test_pid_dead(pid_in("sleeper.pid")));
    teardown();
}

TEST(exec_a_grandchild_left_running_neither_hangs_the_task_nor_survives_it) {
    setup();
    task_outcome o = task_run("sh.forker", NULL, NULL);
    ASSERT_EQ(o.rc, 0);
    ASSERT_JSON(o.result, "\"parent done\"");
    ASSERT_RANGE(o.seconds, 0, TEST_SOON);
    pid_t grandchild = pid_in("grandchild.pid");
    double end = test_now() + TEST_SOON;
    while (!test_pid_dead(grandchild) && test_now() < end)
        test_pause();
    ASSERT(test_pid_dead(grandchild));
    task_outcome_free(&o);
    teardown();
}

TEST(exec_a_program_removed_after_start_up_is_an_exec_error) {
    setup();
    char path[512];
    snprintf(path, sizeof path, "%s/sh.vanished", dir);
    ASSERT_EQ(unlink(path), 0);
    task_outcome o = task_run("sh.vanished", NULL, NULL);
    char want[600];
    snprintf(want, sizeof want, "cannot run %s: No such file or directory", path);
    ASSERT_TASK_ERROR(o, TASK_EFAIL, "ExecError", want);
    teardown();
}

/* ---- the checks of the options ------------------------------------------------------------- */

TEST(exec_entries_are_checked) {
    char why[512];
    ASSERT_EQ(task_exec_check_task("a=/bin/sh", why, sizeof why), 0);
    ASSERT_EQ(task_exec_check_task("nothing", why, sizeof why), -1);
    ASSERT_STREQ(why, "'nothing' is not NAME=PATH");
    ASSERT_EQ(task_exec_check_task("a..b=/bin/sh", why, sizeof why), -1);
    ASSERT_STREQ(why, "'a..b' is not a task name (letters, digits and _-.:, starting with a "
                      "letter or _, at most 128 bytes)");
    ASSERT_EQ(task_exec_check_task("a=bin/sh", why, sizeof why), -1);
    ASSERT_STREQ(why, "a: the path 'bin/sh' is not absolute");
    ASSERT_EQ(task_exec_check_task("a=/nonexistent/x", why, sizeof why), -1);
    ASSERT_STREQ(why, "a: /nonexistent/x: No such file or directory");
    ASSERT_EQ(task_exec_check_task("a=/tmp", why, sizeof why), -1);
    ASSERT_STREQ(why, "a: /tmp is not a regular file");
    ASSERT_EQ(task_exec_check_env("A_1=x=y", why, sizeof why), 0);
    ASSERT_EQ(task_exec_check_env("A", why, sizeof why), -1);
    ASSERT_STREQ(why, "'A' is not KEY=VALUE");
    ASSERT_EQ(task_exec_check_env("1A=x", why, sizeof why), -1);
    ASSERT_STREQ(why, "'1A' is not a variable name (letters, digits and _, not starting with a "
                      "digit)");
}

TEST(exec_file_without_execute_permission_is_refused) {
    setup();
    char path[512], entry[600], why[512];
    snprintf(path, sizeof path, "%s/data", dir);
    write_program("data", "#!/bin/sh\n");
    ASSERT_EQ(chmod(path, 0644), 0);
    snprintf(entry, sizeof entry, "x=%s", path);
    ASSERT_EQ(task_exec_check_task(entry, why, sizeof why), -1);
    char want[600];
    snprintf(want, sizeof want, "x: %s is not executable", path);
    ASSERT_STREQ(why, want);
    teardown();
}

TEST(exec_names_taken_or_given_twice_are_refused) {
    setup(); /* echo and friends are registered, and the programs above */
    char *taken[] = {"echo=/bin/sh"};
    task_exec_config cfg = {.tasks = taken, .ntasks = 1};
    char why[512];
    ASSERT_EQ(task_exec_check(&cfg, why, sizeof why), -1);
    ASSERT_STREQ(why, "--exec-task: task 'echo' already exists (a built-in or a plugin's task); "
                      "choose another name");
    /* A program's own name is not taken: a reload may keep it. */
    char *again[] = {"sh.silent=/bin/true"};
    cfg = (task_exec_config){.tasks = again, .ntasks = 1};
    ASSERT_EQ(task_exec_check(&cfg, why, sizeof why), 0);
    char *twice[] = {"x=/bin/true", "x=/bin/false"};
    cfg = (task_exec_config){.tasks = twice, .ntasks = 2};
    ASSERT_EQ(task_exec_check(&cfg, why, sizeof why), -1);
    ASSERT_STREQ(why, "--exec-task: task 'x' is given twice");
    char *env[] = {"A=1", "A=2"};
    cfg = (task_exec_config){.env = env, .nenv = 2};
    ASSERT_EQ(task_exec_check(&cfg, why, sizeof why), -1);
    ASSERT_STREQ(why, "--exec-env: variable A is given twice");
    teardown();
}

TEST(exec_long_error_text_is_kept_whole_beside_the_message) {
    task_error err = {.retry_in = -1, .long_message = NULL};
    ASSERT_EQ(task_error_set_long(&err, "ExecError", "short"), TASK_EFAIL);
    ASSERT_STREQ(err.type, "ExecError");
    ASSERT_STREQ(err.message, "short");
    ASSERT(err.long_message == NULL);
    ASSERT_STREQ(task_error_text(&err), "short");
    char text[3000];
    memset(text, 'z', sizeof text - 1);
    text[sizeof text - 1] = '\0';
    ASSERT_EQ(task_error_set_long(&err, "ExecError", text), TASK_EFAIL);
    ASSERT_EQ(strlen(err.message), sizeof err.message - 1);
    ASSERT_STREQ(task_error_text(&err), text);
    task_error_clear(&err);
    ASSERT(err.long_message == NULL);
    ASSERT_EQ(strlen(task_error_text(&err)), sizeof err.message - 1);
}
