/*
 * test_plugins.c - `workerd --load` as a user meets it: every reason a plugin is refused,
 * each one line naming the plugin and exit code 2; --list-tasks; the --load option and
 * WORKERD_LOAD; a plugin's tasks run by the real worker with what task_env.h gives them
 * (a lent Redis connection, log lines with the task id, sending tasks and waiting for
 * them); and a plugin task that crashes the worker: its message comes back, becomes a
 * poison pill when it keeps crashing, and the supervisor replaces the dead children.
 *
 * The plugins are the tests/tasks/plugins/ sources, built with the tests against the SDK's public
 * headers only (WORKERD_TEST_PLUGINS is their directory).
 */
#include "e2e.h"
#include "testlib.h"
#include "wd_options.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

/* A test plugin's path, in one of four static buffers (used in turn, so that one call of
 * snprintf may name up to four plugins). */
static const char *plugin(const char *name) {
    static char paths[4][1024];
    static int next;
    char *path = paths[next++ % 4];
    snprintf(path, sizeof paths[0], "%s/%s.so", WORKERD_TEST_PLUGINS, name);
    return path;
}

/* The whole file as a malloc'd string ("" when missing). */
static char *slurp(const char *path) {
    FILE *f = fopen(path, "r");
    size_t cap = 1 << 16, len = 0;
    char *buf = calloc(1, cap);
    ASSERT(buf != NULL);
    if (f != NULL) {
        len = fread(buf, 1, cap - 1, f);
        fclose(f);
    }
    buf[len] = '\0';
    return buf;
}

/* What a workerd run printed and how it ended. */
struct run {
    int code;
    char *out, *err;
};

static void run_free(struct run *r) {
    free(r->out);
    free(r->err);
}

/* Run `[env] workerd ARGS` to its end (args: one shell-quoted string), no Redis needed. */
static struct run run_workerd(const char *env, const char *args) {
    char *dir = test_tmpdir("plugin-run");
    struct run r;
    r.code = test_system("cd '%s' && %s '%s' %s >'%s/out' 2>'%s/err' </dev/null", dir, env,
                         WORKERD_BIN, args, dir, dir);
    char path[4200];
    snprintf(path, sizeof path, "%s/out", dir);
    r.out = slurp(path);
    snprintf(path, sizeof path, "%s/err", dir);
    r.err = slurp(path);
    test_rmtree(dir);
    free(dir);
    return r;
}

/* workerd with args fails to start: exit 2 and exactly this line on stderr. */
static void expect_refused(const char *args, const char *line) {
    struct run r = run_workerd("", args);
    char want[4400];
    snprintf(want, sizeof want, "%s\n", line);
    if (r.code != 2 || strcmp(r.err, want) != 0)
        test__fail(__FILE__, __LINE__, "workerd %s: exit %d, stderr:\n%s\nwant exit 2 and:\n%s",
                   args, r.code, r.err, want);
    ASSERT_STREQ(r.out, "");
    run_free(&r);
}

/* ---- what is refused ------------------------------------------------------------------ */

TEST(a_missing_file_is_refused) {
    expect_refused("--load /nonexistent/hello.so",
                   "workerd: plugin /nonexistent/hello.so: cannot load it: cannot open shared "
                   "object file: No such file or directory");
    /* A bare name is a file in the working directory, never a library on the search
     * path (libc.so.6 is one). */
    expect_refused("--load libc.so.6", "workerd: plugin libc.so.6: cannot load it: cannot open "
                                       "shared object file: No such file or directory");
}

TEST(a_text_file_is_refused) {
    char *dir = test_tmpdir("plugin-text");
    char path[1100], args[1200], line[1300];
    snprintf(path, sizeof path, "%s/notes.so", dir);
    FILE *f = fopen(path, "w");
    ASSERT(f != NULL);
    for (int i = 0; i < 20; i++)
        fputs("Notes, not a shared object: a path that names a text file is refused.\n", f);
    fclose(f);
    snprintf(args, sizeof args, "--load '%s'", path);
    snprintf(line, sizeof line, "workerd: plugin %s: cannot load it: invalid ELF header", path);
    expect_refused(args, line);
    test_rmtree(dir);
    free(dir);
}

TEST(a_shared_object_that_is_no_plugin_is_refused) {
    char args[2400], line[2600];
    snprintf(args, sizeof args, "--load '%s'", plugin("bad_nodeclare"));
    snprintf(line, sizeof line,
             "workerd: plugin %s: not a workerd plugin (its source has no "
             "WORKERD_PLUGIN_DECLARE();)",
             plugin("bad_nodeclare"));
    expect_refused(args, line);
}

TEST(a_plugin_of_another_abi_is_refused) {
    char args[2400], line[2600];
    snprintf(args, sizeof args, "--load '%s'", plugin("bad_abi"));
    snprintf(line, sizeof line,
             "workerd: plugin %s: built for plugin ABI 2, but this workerd loads ABI 1: "
             "rebuild it against this workerd's SDK",
             plugin("bad_abi"));
    expect_refused(args, line);
    /* One built for a newer SDK also needs functions this workerd lacks: the ABI is still
     * what the line says, not the missing function. */
    snprintf(args, sizeof args, "--load '%s'", plugin("bad_newer"));
    snprintf(line, sizeof line,
             "workerd: plugin %s: built for plugin ABI 2, but this workerd loads ABI 1: "
             "rebuild it against this workerd's SDK",
             plugin("bad_newer"));
    expect_refused(args, line);
}

TEST(a_plugin_without_init_is_refused) {
    char args[2400], line[2600];
    snprintf(args, sizeof args, "--load '%s'", plugin("bad_noinit"));
    snprintf(line, sizeof line, "workerd: plugin %s: defines no function workerd_plugin_init",
             plugin("bad_noinit"));
    expect_refused(args, line);
}

TEST(an_init_that_fails_stops_the_start) {
    char args[2400], line[2600];
    snprintf(args, sizeof args, "--load '%s'", plugin("bad_initfail"));
    snprintf(line, sizeof line,
             "workerd: plugin %s: workerd_plugin_init returned -5 (Input/output error)",
             plugin("bad_initfail"));
    expect_refused(args, line);
}

/* Even when the init ignores the refusal and returns 0. */
TEST(a_name_registered_twice_is_refused) {
    char args[2400], line[2600];
    snprintf(args, sizeof args, "--load '%s'", plugin("bad_dupecho"));
    snprintf(line, sizeof line,
             "workerd: plugin %s: task \"echo\" is already registered by the built-in tasks",
             plugin("bad_dupecho"));
    expect_refused(args, line);

    /* The same plugin under a second name registers its names again: the message names the
     * plugin that has them. */
    char *dir = test_tmpdir("plugin-twice");
    char again[1100], good[1024];
    snprintf(good, sizeof good, "%s", plugin("good"));
    snprintf(again, sizeof again, "%s/again.so", dir);
    ASSERT_EQ(symlink(good, again), 0);
    char both[2400];
    snprintf(both, sizeof both, "--load '%s' --load '%s'", good, again);
    snprintf(line, sizeof line,
             "workerd: plugin %s: task \"t.call\" is already registered by plugin %s", again, good);
    expect_refused(both, line);
    test_rmtree(dir);
    free(dir);
}

TEST(a_malformed_task_name_is_refused) {
    char args[2400], line[2600];
    snprintf(args, sizeof args, "--load '%s'", plugin("bad_badname"));
    snprintf(line, sizeof line,
             "workerd: plugin %s: cannot register task \"a..b\": not a valid task name (1 to "
             "128 letters, digits and _-.: starting with a letter or _, no empty part between "
             "dots), or no function",
             plugin("bad_badname"));
    expect_refused(args, line);
}

/* workerd exports the SDK's functions, not its private ones: a plugin calling one fails at
 * start-up, not when the task first runs. */
TEST(a_plugin_calling_a_private_function_is_refused_at_start) {
    char args[2400], line[2600];
    snprintf(args, sizeof args, "--load '%s'", plugin("bad_private"));
    snprintf(line, sizeof line,
             "workerd: plugin %s: cannot load it: undefined symbol: green__check",
             plugin("bad_private"));
    expect_refused(args, line);
}

/* The first plugin that fails stops the start: later ones are not loaded. */
TEST(plugins_load_in_order_and_the_first_failure_stops) {
    char args[2400], line[2600];
    snprintf(args, sizeof args, "--load '%s' --load /nonexistent/x.so --load '%s' --list-tasks",
             plugin("other"), plugin("bad_initfail"));
    snprintf(line, sizeof line,
             "workerd: plugin /nonexistent/x.so: cannot load it: cannot open shared object "
             "file: No such file or directory");
    expect_refused(args, line);
}

/* ---- --list-tasks and the option ---------------------------------------------------------- */

#define BUILTINS "chord\necho\nfail\ngroup\nhttp.get\nhttp.request\nhttp.scrape\nsleep\n"

TEST(list_tasks_prints_every_name_and_exits_zero) {
    struct run r = run_workerd("", "--list-tasks");
    ASSERT_EQ(r.code, 0);
    ASSERT_STREQ(r.out, BUILTINS);
    run_free(&r);

    char args[2400];
    snprintf(args, sizeof args, "--load '%s' --load '%s' --list-tasks", plugin("other"),
             plugin("good"));
    r = run_workerd("", args);
    ASSERT_EQ(r.code, 0);
    ASSERT_STREQ(r.out, "chord\necho\nfail\ngroup\nhttp.get\nhttp.request\nhttp.scrape\nsleep\nt."
                        "call\nt.client_id\n"
                        "t.count\nt.crash\nt.crash_once\nt.log\nt.send\nt.spawned\nt.wait\n"
                        "u.one\nu.two\n");
    ASSERT_STREQ(r.err, "");
    run_free(&r);
}

TEST(workerd_load_takes_a_comma_list_and_the_command_line_wins) {
    char env[2400];
    snprintf(env, sizeof env, "WORKERD_LOAD='%s, %s'", plugin("other"), plugin("bad_initfail"));
    struct run r = run_workerd(env, "--list-tasks");
    ASSERT_EQ(r.code, 2); /* the variable's second plugin fails */
    run_free(&r);

    char args[1200];
    snprintf(args, sizeof args, "--load '%s' --list-tasks", plugin("other"));
    r = run_workerd(env, args); /* the command line replaces the variable's list */
    ASSERT_EQ(r.code, 0);
    ASSERT_STREQ(r.out, BUILTINS "u.one\nu.two\n");
    run_free(&r);
}

TEST(load_option_values_join_and_are_checked) {
    struct wd_options o;
    char err[512];
    char *argv[] = {"workerd", "--load", "a.so", "--load=b.so, c.so", "--list-tasks", NULL};
    ASSERT_EQ(wd_options_load(&o, 5, argv, NULL, err, sizeof err), 0);
    ASSERT_EQ(o.nload, 3);
    ASSERT_STREQ(o.load[0], "a.so");
    ASSERT_STREQ(o.load[1], "b.so");
    ASSERT_STREQ(o.load[2], "c.so");
    ASSERT(o.list_tasks);
    wd_options_free(&o);

    char *none[] = {"workerd", NULL};
    ASSERT_EQ(wd_options_load(&o, 1, none, NULL, err, sizeof err), 0);
    ASSERT_EQ(o.nload, 0);
    ASSERT(!o.list_tasks);
    wd_options_free(&o);

    char *twice[] = {"workerd", "--load", "a.so", "--load", "a.so", NULL};
    ASSERT_EQ(wd_options_load(&o, 5, twice, NULL, err, sizeof err), -1);
    ASSERT_STREQ(err, "workerd: --load: path 'a.so' is listed twice (from the command line)");
    char *empty[] = {"workerd", "--load", "a.so,,b.so", NULL};
    ASSERT_EQ(wd_options_load(&o, 3, empty, NULL, err, sizeof err), -1);
    ASSERT_STREQ(err, "workerd: --load: empty path in 'a.so,,b.so' (from the command line)");
}

/* ---- a plugin's tasks in the worker --------------------------------------------------------- */

TEST(plugin_tasks_use_the_lent_connection_and_log_with_their_id) {
    e2e_env e;
    e2e_env_start(&e);
    E2E_START_READY(&e.w, e.redis.port, "--load", plugin("good"), "-c", "1");
    e2e_push_task(e.c, "default", "c-1", "t.count", "[\"visits\"]");
    e2e_push_task(e.c, "default", "c-2", "t.count", "[\"visits\"]");
    json_t *res = e2e_must_result(&e, "c-2");
    ASSERT_STREQ(e2e_jstr(res, "status"), "SUCCESS");
    ASSERT_EQ(e2e_jnum(res, "result"), 2);
    json_decref(res);
    ASSERT(e2e_log_wait(&e.w, "[task c-1] count visits is 1", TEST_SOON));
    ASSERT(e2e_log_wait(&e.w, "[task c-2] count visits is 2", TEST_SOON));

    /* One task at a time (-c 1): the second borrows the connection the first gave back. */
    e2e_push_task(e.c, "default", "id-1", "t.client_id", "[]");
    e2e_push_task(e.c, "default", "id-2", "t.client_id", "[]");
    json_t *a = e2e_must_result(&e, "id-1"), *b = e2e_must_result(&e, "id-2");
    ASSERT_STREQ(e2e_jstr(a, "status"), "SUCCESS");
    ASSERT_EQ(e2e_jnum(a, "result"), e2e_jnum(b, "result"));
    json_decref(a);
    json_decref(b);

    /* Greenlets the task spawns share its connection. */
    e2e_push_task(e.c, "default", "sp-1", "t.spawned", "[\"spawned\", 50]");
    res = e2e_must_result(&e, "sp-1");
    ASSERT_STREQ(e2e_jstr(res, "status"), "SUCCESS");
    char *spawned = e2e_get(e.c, "spawned");
    ASSERT_STREQ(spawned, "50");
    free(spawned);
    json_decref(res);

    /* Lines below --loglevel are dropped; a line is one line, whatever the text holds. */
    e2e_push_task(e.c, "default", "log-1", "t.log", "[0, \"not shown at info\"]");
    e2e_push_task(e.c, "default", "log-2", "t.log", "[2, \"two\\nlines\"]");
    json_decref(e2e_must_result(&e, "log-2"));
    ASSERT(e2e_log_wait(&e.w, "WARN  [task log-2] two\\nlines", TEST_SOON));
    ASSERT_EQ(e2e_log_count(&e.w, "not shown at info"), 0);
    e2e_env_end(&e);
}

TEST(plugin_tasks_send_tasks_and_wait_for_them) {
    e2e_env e;
    e2e_env_start(&e);
    E2E_START_READY(&e.w, e.redis.port, "--load", plugin("good"), "-c", "4");

    e2e_push_task(e.c, "default", "call-1", "t.call", "[\"echo\", [1, \"two\"]]");
    json_t *res = e2e_must_result(&e, "call-1");
    ASSERT_STREQ(e2e_jstr(res, "status"), "SUCCESS");
    char *text = json_dumps(json_object_get(res, "result"), JSON_COMPACT);
    ASSERT_STREQ(text, "[1,\"two\"]");
    free(text);
    json_decref(res);

    /* The subtask's failure is the task's, type and message. */
    e2e_push_task(e.c, "default", "call-2", "t.call", "[\"fail\", [\"boom\"]]");
    res = e2e_must_result(&e, "call-2");
    ASSERT_STREQ(e2e_jstr(res, "status"), "FAILURE");
    ASSERT_STREQ(e2e_jstr(json_object_get(res, "error"), "type"), "TaskError");
    ASSERT_STREQ(e2e_jerror(res), "boom");
    json_decref(res);

    /* No worker serves queue "elsewhere": the message waits there, as a producer's would,
     * with the sender's id as its parent; and a wait for it ends at its own timeout. */
    e2e_push_task(e.c, "default", "send-1", "t.send", "[\"echo\", [5], \"elsewhere\"]");
    res = e2e_must_result(&e, "send-1");
    ASSERT_STREQ(e2e_jstr(res, "status"), "SUCCESS");
    char sent[300];
    ASSERT(json_is_string(json_object_get(res, "result")));
    snprintf(sent, sizeof sent, "%s", json_string_value(json_object_get(res, "result")));
    json_decref(res);
    redisReply *r = redisCommand(e.c, "LRANGE workerd:queue:elsewhere 0 -1");
    ASSERT(r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 1);
    json_t *msg = json_loads(r->element[0]->str, 0, NULL);
    freeReplyObject(r);
    ASSERT_STREQ(e2e_jstr(msg, "id"), sent);
    ASSERT_STREQ(e2e_jstr(msg, "task"), "echo");
    ASSERT_STREQ(e2e_jstr(msg, "queue"), "elsewhere");
    ASSERT_STREQ(e2e_jstr(msg, "parent_id"), "send-1");
    ASSERT_EQ(e2e_jnum(msg, "time_limit"), 30);
    json_decref(msg);

    char args[512];
    snprintf(args, sizeof args, "[\"%s\", 0.3]", sent);
    e2e_push_task(e.c, "default", "wait-1", "t.wait", args);
    res = e2e_must_result(&e, "wait-1");
    ASSERT_STREQ(e2e_jstr(res, "status"), "FAILURE");
    ASSERT_STREQ(e2e_jstr(json_object_get(res, "error"), "type"), "Timeout");
    char want[600];
    snprintf(want, sizeof want, "no result for %s within 0.3 s", sent);
    ASSERT_STREQ(e2e_jerror(res), want);
    json_decref(res);

    /* The message's time limit applies to a wait as to any blocking call. */
    e2e_push(e.c, "default",
             "{\"id\":\"wait-2\",\"task\":\"t.wait\",\"args\":[\"never\",30],\"time_limit\":0.3}");
    res = e2e_must_result(&e, "wait-2");
    ASSERT_STREQ(e2e_jstr(json_object_get(res, "error"), "type"), "TimeLimitExceeded");
    json_decref(res);
    e2e_env_end(&e);
}

/* ---- a task that crashes ----------------------------------------------------------------- */

/* The workers these tests crash inherit this: no core file left behind. */
static void no_core_files(void) {
    struct rlimit none = {0, 0};
    ASSERT_EQ(setrlimit(RLIMIT_CORE, &none), 0);
}

/* The worker dies with the task (any C code would take it down); another worker recovers
 * the message once the dead one's heartbeat has expired, and runs it again. */
TEST(a_crashing_task_kills_its_worker_and_its_message_comes_back) {
    no_core_files();
    e2e_env e;
    e2e_env_start(&e);
    E2E_START_READY(&e.w, e.redis.port, "--load", plugin("good"), "--heartbeat", "1");
    e2e_push_task(e.c, "default", "crash-1", "t.crash_once", "[\"crashes\"]");
    int code = e2e_worker_wait(&e.w, 20.0);
    ASSERT(code != 0 && code != -1); /* SIGSEGV (or the sanitizer's exit) */
    char *crashes = e2e_get(e.c, "crashes");
    ASSERT_STREQ(crashes, "1");
    free(crashes);
    e2e_worker_stop(&e.w);

    E2E_START(&e.w, e.redis.port, "--load", plugin("good"), "--heartbeat", "1");
    json_t *res = e2e_wait_result(e.c, "crash-1", "SUCCESS", 30.0);
    if (res == NULL)
        e2e_log_dump(&e.w);
    ASSERT(res != NULL);
    ASSERT_EQ(e2e_jnum(res, "result"), 2);
    json_decref(res);
    ASSERT(e2e_log_wait(&e.w, "[task crash-1] t.crash_once redelivered 1 time(s)", TEST_SOON));
    e2e_env_end(&e);
}

/* Under the supervisor, each crash costs a child, which is restarted; the message that
 * keeps crashing them becomes a dead letter after --max-redeliveries, and the restarted
 * children go on running other tasks. */
TEST(a_task_that_always_crashes_becomes_a_poison_pill_under_the_supervisor) {
    no_core_files();
    e2e_env e;
    e2e_env_start(&e);
    E2E_START(&e.w, e.redis.port, "--load", plugin("good"), "--processes", "2", "--heartbeat", "1",
              "--max-redeliveries", "1");
    ASSERT(e2e_log_wait(&e.w, "supervisor: all 2 children ready", 20.0));
    e2e_push_task(e.c, "default", "pill-1", "t.crash", "[]");
    ASSERT(e2e_wait_dead(e.c, 1, 60.0));
    json_t *dead = e2e_dead_letters(e.c);
    json_t *d = json_array_get(dead, 0);
    ASSERT_STREQ(e2e_jstr(d, "id"), "pill-1");
    ASSERT_STREQ(e2e_jstr(d, "reason"), "poison pill: redelivered 2 times");
    json_decref(dead);
    /* Two runs, two dead children, each restarted. */
    ASSERT(e2e_log_wait_n(&e.w, "; restarting it in", 2, 30.0));
    e2e_push_task(e.c, "default", "after-1", "echo", "[\"still here\"]");
    json_t *res = e2e_wait_result(e.c, "after-1", "SUCCESS", 30.0);
    if (res == NULL)
        e2e_log_dump(&e.w);
    ASSERT(res != NULL);
    json_decref(res);
    e2e_env_end(&e);
}
