/*
 * test_e2e_exec.c - external-program tasks through the real workerd binary and a real
 * redis-server: the results a producer reads, 1,000 programs running at once at -c 1000
 * with no descriptor or zombie left afterwards, time limits, warm and cold shutdowns with
 * programs running, and the start-up errors of bad --exec-task entries.
 *
 * The programs are small shell and Python scripts written into a private directory, which
 * they know as $DIR (--exec-env). Programs that must stay running until the test lets them
 * go wait on a FIFO, "gate", that the test holds open: they first open it, note that they
 * did by appending a byte to "ready", then read it, which ends when the test closes its end.
 */
#include "e2e.h"
#include "task_exec.h"
#include "testlib.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PY "#!/usr/bin/python3\nimport json, sys\n"

static const struct {
    const char *name, *text;
} programs[] = {
    {"add.py", PY "msg = json.load(sys.stdin)\n"
                  "print(json.dumps({'sum': sum(msg['args']), 'id': msg['id']}))\n"},
    {"fail.sh", "#!/bin/sh\necho \"cannot frobnicate $(cat)\" >&2\nexit 4\n"},
    {"bad.sh", "#!/bin/sh\necho 'hello'\n"},
    {"retry.sh", "#!/bin/sh\nexit 75\n"},
    {"chatty.sh", "#!/bin/sh\nhead -c 10000 /dev/zero | tr '\\000' x >&2\necho END >&2\n"
                  "exit 1\n"},
    {"gated.sh", "#!/bin/sh\nexec 3< \"$DIR/gate\"\nprintf x >> \"$DIR/ready\"\n"
                 "echo $$ >> \"$DIR/pids\"\nread x <&3\necho '\"through\"'\n"},
    {"polite.sh", "#!/bin/sh\ntrap 'echo \\\"partial\\\"; exit 0' TERM\n"
                  "while :; do sleep 0.05; done\n"},
    {"stubborn.sh", "#!/bin/sh\ntrap '' TERM\necho $$ >> \"$DIR/pids\"\n"
                    "while :; do sleep 0.05; done\n"},
    {"forever.sh", "#!/bin/sh\necho $$ >> \"$DIR/pids\"\nprintf x >> \"$DIR/ready\"\n"
                   "exec sleep 1000\n"},
};
#define NPROGRAMS (sizeof programs / sizeof *programs)

typedef struct env {
    e2e_env e;
    char *dir;
    char tasks[NPROGRAMS][600]; /* --exec-task values */
    char dir_env[600];          /* --exec-env DIR=... */
    int gate;                   /* the test's end of DIR/gate */
} env;

static void path_of(const env *x, const char *name, char *out, size_t size) {
    snprintf(out, size, "%s/%s", x->dir, name);
}

static void env_start(env *x) {
    memset(x, 0, sizeof *x);
    e2e_env_start(&x->e);
    x->dir = test_tmpdir("e2e-exec");
    for (size_t i = 0; i < NPROGRAMS; i++) {
        char path[512];
        path_of(x, programs[i].name, path, sizeof path);
        FILE *f = fopen(path, "w");
        ASSERT(f != NULL);
        fputs(programs[i].text, f);
        fclose(f);
        ASSERT_EQ(chmod(path, 0755), 0);
        /* Task names are the file names with '_' for '.': add.py is add_py. */
        char name[64];
        snprintf(name, sizeof name, "%s", programs[i].name);
        name[strcspn(name, ".")] = '_';
        snprintf(x->tasks[i], sizeof x->tasks[i], "%s=%s", name, path);
    }
    char gate[512];
    path_of(x, "gate", gate, sizeof gate);
    ASSERT_EQ(mkfifo(gate, 0600), 0);
    /* Read and write: opening does not wait for a reader, and the programs' reads wait
     * until this end is closed. */
    x->gate = open(gate, O_RDWR | O_CLOEXEC);
    ASSERT(x->gate >= 0);
    snprintf(x->dir_env, sizeof x->dir_env, "DIR=%s", x->dir);
}

/* Start the worker with every program registered, and the extra NULL-terminated args. */
static void start(env *x, ...) {
    const char *args[40];
    int n = 0;
    for (size_t i = 0; i < NPROGRAMS; i++) {
        args[n++] = "--exec-task";
        args[n++] = x->tasks[i];
    }
    args[n++] = "--exec-env";
    args[n++] = x->dir_env;
    va_list ap;
    va_start(ap, x);
    for (const char *s = va_arg(ap, const char *); s != NULL; s = va_arg(ap, const char *))
        args[n++] = s;
    va_end(ap);
    args[n] = NULL;
    e2e_worker_start(&x->e.w, x->e.redis.port, args);
    e2e_wait_ready(&x->e.w);
}

static void open_gate(env *x) {
    if (x->gate >= 0)
        close(x->gate);
    x->gate = -1;
}

static void env_end(env *x) {
    open_gate(x);
    e2e_env_end(&x->e);
    test_rmtree(x->dir);
    free(x->dir);
}

/* Bytes in DIR/name (0 when it does not exist yet). */
static long file_size(const env *x, const char *name) {
    char path[512];
    struct stat st;
    path_of(x, name, path, sizeof path);
    return stat(path, &st) == 0 ? (long)st.st_size : 0;
}

/* The pids the programs wrote into DIR/pids. */
static int read_pids(const env *x, pid_t *pids, int cap) {
    char path[512];
    path_of(x, "pids", path, sizeof path);
    FILE *f = fopen(path, "r");
    int n = 0, pid;
    while (f != NULL && n < cap && fscanf(f, "%d", &pid) == 1)
        pids[n++] = pid;
    if (f != NULL)
        fclose(f);
    return n;
}

/* The children of pid, and how many of them are zombies (<defunct>). */
static int children_of(pid_t pid, int *zombies) {
    DIR *d = opendir("/proc");
    ASSERT(d != NULL);
    int n = 0;
    *zombies = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        char path[300], state = 0;
        int ppid = 0;
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        FILE *f = fopen(path, "r");
        if (f == NULL)
            continue;
        if (fscanf(f, "%*d (%*[^)]) %c %d", &state, &ppid) == 2 && ppid == pid) {
            n++;
            *zombies += state == 'Z';
        }
        fclose(f);
    }
    closedir(d);
    return n;
}

/* pid's open fds that are not sockets: a program's pipes and files. Sockets are left out:
 * the worker opens Redis connections when it needs them, which is not what a program
 * leaves behind. */
static int open_fds_of(pid_t pid) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    ASSERT(d != NULL);
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (e->d_name[0] == '.')
            continue;
        char link[384], target[64];
        snprintf(link, sizeof link, "%s/%s", path, e->d_name);
        ssize_t len = readlink(link, target, sizeof target - 1);
        target[len > 0 ? len : 0] = '\0';
        n += strncmp(target, "socket:", 7) != 0;
    }
    closedir(d);
    return n;
}

/* What pid's fds point at, one "fd -> target" per line, into buf (for a failure message). */
static void fds_listing(pid_t pid, char *buf, size_t cap) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    size_t used = 0;
    buf[0] = '\0';
    for (struct dirent *e; d && (e = readdir(d)) != NULL;) {
        if (e->d_name[0] == '.')
            continue;
        char link[384], target[256];
        snprintf(link, sizeof link, "%s/%s", path, e->d_name);
        ssize_t n = readlink(link, target, sizeof target - 1);
        target[n > 0 ? n : 0] = '\0';
        int w = snprintf(buf + used, cap - used, "  %s -> %s\n", e->d_name, target);
        if (w < 0 || (size_t)w >= cap - used)
            break;
        used += (size_t)w;
    }
    if (d)
        closedir(d);
}

static json_t *must_result(env *x, const char *id, double timeout) {
    json_t *res = e2e_wait_result(x->e.c, id, NULL, timeout);
    if (res == NULL) {
        e2e_log_dump(&x->e.w);
        test__fail(__FILE__, __LINE__, "no final result for %s within %g s", id, timeout);
    }
    return res;
}

/* ---- results ------------------------------------------------------------------------------ */

TEST(exec_results_of_success_failure_bad_output_and_retry_reach_redis) {
    env x;
    env_start(&x);
    start(&x, NULL);
    e2e_push(x.e.c, "default", "{\"id\":\"a-1\",\"task\":\"add_py\",\"args\":[1,2,39]}");
    e2e_push(x.e.c, "default", "{\"id\":\"f-1\",\"task\":\"fail_sh\",\"args\":[\"x\"]}");
    e2e_push(x.e.c, "default", "{\"id\":\"b-1\",\"task\":\"bad_sh\"}");
    e2e_push(x.e.c, "default",
             "{\"id\":\"r-1\",\"task\":\"retry_sh\",\"max_retries\":2,\"retry_backoff\":0.01}");
    e2e_push(x.e.c, "default", "{\"id\":\"c-1\",\"task\":\"chatty_sh\"}");

    json_t *res = must_result(&x, "a-1", TEST_NEVER);
    ASSERT_STREQ(e2e_jstr(res, "status"), "SUCCESS");
    json_t *want = json_loads("{\"sum\": 42, \"id\": \"a-1\"}", 0, NULL);
    ASSERT(json_equal(json_object_get(res, "result"), want));
    json_decref(want);
    json_decref(res);

    res = must_result(&x, "f-1", TEST_NEVER);
    ASSERT_STREQ(e2e_jstr(res, "status"), "FAILURE");
    ASSERT_STREQ(e2e_jstr(json_object_get(res, "error"), "type"), "ExecError");
    ASSERT_STREQ(e2e_jerror(res),
                 "exited with status 4; stderr: cannot frobnicate {\"id\":\"f-1\",\"task\":"
                 "\"fail_sh\",\"args\":[\"x\"],\"kwargs\":{},\"retries\":0}");
    json_decref(res);

    res = must_result(&x, "b-1", TEST_NEVER);
    ASSERT_STREQ(e2e_jstr(json_object_get(res, "error"), "type"), "BadOutput");
    json_decref(res);
    /* Exit 75 is a retry request: the message runs again after its backoff, twice, and
     * then fails with the program's reason. */
    res = e2e_wait_result(x.e.c, "r-1", "FAILURE", TEST_NEVER);
    ASSERT(res != NULL);
    ASSERT_STREQ(e2e_jstr(json_object_get(res, "error"), "type"), "RetryRequested");
    ASSERT_STREQ(e2e_jerror(res), "asked for a retry (exit status 75); nothing on stderr");
    ASSERT_EQ(e2e_jnum(res, "retries"), 2);
    json_decref(res);
    /* The whole stderr tail, 4 KiB, not the 1 KiB a task_error's message holds. */
    res = must_result(&x, "c-1", TEST_NEVER);
    const char *why = e2e_jerror(res);
    const char *head = "exited with status 1; stderr (the last 4096 of 10004 bytes): ";
    ASSERT(why != NULL && strncmp(why, head, strlen(head)) == 0);
    ASSERT_EQ(strlen(why + strlen(head)), 4095);
    ASSERT_STREQ(why + strlen(why) - 4, "xEND");
    json_decref(res);
    env_end(&x);
}

/* ---- scale ------------------------------------------------------------------------------- */

#define THOUSAND 1000

TEST(exec_1000_programs_run_at_once_at_c_1000_and_leave_no_fd_or_zombie) {
    env x;
    env_start(&x);
    start(&x, "-c", "1000", NULL);
    pid_t worker = x.e.w.pid;
    /* Count from when what the worker opens once is open: the control stream's connection
     * (made just after "ready") and what running a first program sets up for good (the
     * child watcher's descriptor): the test is about what each program leaves behind. */
    ASSERT(e2e_log_wait(&x.e.w, "control: connected", 30.0));
    e2e_push_task(x.e.c, "default", "warm-up", "fail_sh", "[]");
    json_decref(must_result(&x, "warm-up", TEST_NEVER));
    int fds = open_fds_of(worker);
    static char before[8192], after[8192];
    fds_listing(worker, before, sizeof before);
    for (int i = 0; i < THOUSAND; i++) {
        char id[32];
        snprintf(id, sizeof id, "g-%d", i);
        e2e_push_task(x.e.c, "default", id, "gated_sh", "[]");
    }
    /* All 1000 are running at the same time: each has opened the gate and waits on it. */
    double end = test_now() + 100.0;
    while (file_size(&x, "ready") < THOUSAND && test_now() < end)
        test_pause();
    ASSERT_EQ(file_size(&x, "ready"), THOUSAND);
    int zombies;
    ASSERT_EQ(children_of(worker, &zombies), THOUSAND);
    open_gate(&x);
    for (int i = 0; i < THOUSAND; i++) {
        char id[32];
        snprintf(id, sizeof id, "g-%d", i);
        json_t *res = must_result(&x, id, TEST_NEVER);
        if (strcmp(e2e_jstr(res, "status"), "SUCCESS") != 0)
            test__fail(__FILE__, __LINE__, "%s: %s", id, e2e_jerror(res));
        ASSERT_STREQ(e2e_jstr(res, "result"), "through");
        json_decref(res);
    }
    /* Every program was reaped before its result was stored, and its pipes closed. */
    ASSERT_EQ(children_of(worker, &zombies), 0);
    ASSERT_EQ(zombies, 0);
    /* Back to the count before the programs once anything closing has closed: a leaked
     * pipe never does. */
    double settle = test_now() + TEST_NEVER;
    while (open_fds_of(worker) != fds && test_now() < settle)
        test_pause();
    if (open_fds_of(worker) != fds) {
        fds_listing(worker, after, sizeof after);
        test__fail(__FILE__, __LINE__,
                   "the worker had %d fds (not sockets), now %d:\nbefore:\n%safter:\n%s", fds,
                   open_fds_of(worker), before, after);
    }
    env_end(&x);
}

/* ---- time limits and shutdowns -------------------------------------------------------------- */

TEST(exec_time_limit_kills_the_program_and_fails_the_task) {
    env x;
    env_start(&x);
    start(&x, NULL);
    e2e_push(x.e.c, "default", "{\"id\":\"t-1\",\"task\":\"forever_sh\",\"time_limit\":0.5}");
    json_t *res = must_result(&x, "t-1", TEST_NEVER);
    ASSERT_STREQ(e2e_jstr(json_object_get(res, "error"), "type"), "TimeLimitExceeded");
    json_decref(res);
    pid_t pid;
    ASSERT_EQ(read_pids(&x, &pid, 1), 1);
    ASSERT(test_pid_dead(pid));
    env_end(&x);
}

/* The hard limit's kill comes again every second; the program still gets its whole grace
 * between SIGTERM and SIGKILL, and the result waits until it is gone. */
TEST(exec_time_limit_kills_a_program_that_ignores_sigterm_after_the_grace) {
    env x;
    env_start(&x);
    start(&x, NULL);
    double t0 = test_now();
    e2e_push(x.e.c, "default", "{\"id\":\"t-2\",\"task\":\"stubborn_sh\",\"time_limit\":0.5}");
    json_t *res = must_result(&x, "t-2", TEST_NEVER);
    ASSERT_STREQ(e2e_jstr(json_object_get(res, "error"), "type"), "TimeLimitExceeded");
    ASSERT_RANGE(test_now() - t0, 0.5 + TASK_EXEC_GRACE - 0.1, TEST_NEVER);
    json_decref(res);
    pid_t pid;
    ASSERT_EQ(read_pids(&x, &pid, 1), 1);
    ASSERT(test_pid_dead(pid));
    env_end(&x);
}

TEST(exec_soft_time_limit_lets_the_program_answer_sigterm_with_a_partial_result) {
    env x;
    env_start(&x);
    start(&x, NULL);
    e2e_push(x.e.c, "default", "{\"id\":\"s-1\",\"task\":\"polite_sh\",\"soft_time_limit\":1}");
    json_t *res = must_result(&x, "s-1", TEST_NEVER);
    ASSERT_STREQ(e2e_jstr(res, "status"), "SUCCESS");
    ASSERT_STREQ(e2e_jstr(res, "result"), "partial");
    json_decref(res);
    env_end(&x);
}

TEST(exec_warm_shutdown_waits_for_a_running_program) {
    env x;
    env_start(&x);
    start(&x, NULL);
    e2e_push(x.e.c, "default", "{\"id\":\"w-1\",\"task\":\"gated_sh\"}");
    double end = test_now() + TEST_NEVER;
    while (file_size(&x, "ready") < 1 && test_now() < end)
        test_pause();
    e2e_worker_signal(&x.e.w, SIGTERM);
    ASSERT(e2e_log_wait(&x.e.w, "warm shutdown", TEST_NEVER));
    ASSERT_EQ(e2e_worker_wait(&x.e.w, 0.2), -1); /* still waiting for the program */
    open_gate(&x);
    ASSERT_EQ(e2e_worker_wait(&x.e.w, TEST_NEVER), 0);
    json_t *res = must_result(&x, "w-1", TEST_SOON);
    ASSERT_STREQ(e2e_jstr(res, "status"), "SUCCESS");
    json_decref(res);
    env_end(&x);
}

/* A stop that does not wait for the program (cold, or warm past --shutdown-timeout) kills
 * it, puts the message back as it was pushed, and exits 0. */
static void stop_kills_the_program(int sig, const char *timeout) {
    env x;
    env_start(&x);
    start(&x, "--shutdown-timeout", timeout, NULL);
    const char *msg = "{\"id\":\"k-1\",\"task\":\"forever_sh\"}";
    e2e_push(x.e.c, "default", msg);
    double end = test_now() + TEST_NEVER;
    while (file_size(&x, "ready") < 1 && test_now() < end)
        test_pause();
    e2e_worker_signal(&x.e.w, sig);
    int code = e2e_worker_wait(&x.e.w, TEST_NEVER);
    if (code != 0)
        e2e_log_dump(&x.e.w);
    ASSERT_EQ(code, 0);
    /* Sent SIGKILL before workerd exited; dead as soon as the kernel has run it. */
    pid_t pid;
    ASSERT_EQ(read_pids(&x, &pid, 1), 1);
    ASSERT_WITHIN(test_pid_dead(pid), TEST_SOON);
    ASSERT_EQ(e2e_int(x.e.c, "LLEN workerd:queue:default"), 1);
    char *back = NULL;
    redisReply *r = redisCommand(x.e.c, "LINDEX workerd:queue:default 0");
    ASSERT(r != NULL && r->type == REDIS_REPLY_STRING);
    back = r->str;
    ASSERT_STREQ(back, msg);
    freeReplyObject(r);
    env_end(&x);
}

TEST(exec_cold_shutdown_kills_a_running_program_and_puts_its_message_back) {
    stop_kills_the_program(SIGQUIT, "30");
}

TEST(exec_warm_shutdown_past_its_timeout_kills_the_program_and_puts_its_message_back) {
    stop_kills_the_program(SIGTERM, "1");
}

TEST(exec_revoke_terminate_stops_a_running_program) {
    env x;
    env_start(&x);
    start(&x, NULL);
    e2e_push(x.e.c, "default", "{\"id\":\"v-1\",\"task\":\"forever_sh\"}");
    double end = test_now() + TEST_NEVER;
    while (file_size(&x, "ready") < 1 && test_now() < end)
        test_pause();
    ASSERT_EQ(test_system("'%s' -b redis://127.0.0.1:%d/0 revoke --terminate v-1 >/dev/null",
                          WORKERCTL_BIN, x.e.redis.port),
              0);
    json_t *res = must_result(&x, "v-1", TEST_NEVER);
    ASSERT_STREQ(e2e_jstr(res, "status"), "REVOKED");
    ASSERT_STREQ(e2e_jerror(res), "terminated");
    json_decref(res);
    pid_t pid;
    ASSERT_EQ(read_pids(&x, &pid, 1), 1);
    ASSERT(test_pid_dead(pid)); /* stopped before the result was stored */
    env_end(&x);
}

/* ---- bad options ---------------------------------------------------------------------------- */

/* workerd with these NULL-terminated args exits 2 at once and says why in one line. */
static void refused(const char *want, ...) {
    const char *args[16];
    int n = 0;
    va_list ap;
    va_start(ap, want);
    for (const char *s = va_arg(ap, const char *); s != NULL; s = va_arg(ap, const char *))
        args[n++] = s;
    va_end(ap);
    args[n] = NULL;
    e2e_worker w;
    e2e_worker_start(&w, 0, args);
    ASSERT_EQ(e2e_worker_wait(&w, TEST_NEVER), 2);
    char *log = e2e_log_read(&w);
    char line[700];
    snprintf(line, sizeof line, "%s\n", want);
    if (strcmp(log, line) != 0)
        test__fail(__FILE__, __LINE__, "got \"%s\", want \"%s\"", log, line);
    free(log);
    e2e_worker_stop(&w);
}

TEST(exec_bad_entries_stop_workerd_at_start_with_one_line) {
    char *dir = test_tmpdir("e2e-exec"), data[512], entry[600], want[700];
    snprintf(data, sizeof data, "%s/data", dir);
    ASSERT_EQ(test_system("printf 'x' > '%s' && chmod 644 '%s'", data, data), 0);
    refused("workerd: --exec-task: 'resize' is not NAME=PATH (from the command line)",
            "--exec-task", "resize", NULL);
    refused("workerd: --exec-task: task 'echo' already exists (a built-in or a plugin's task); "
            "choose another name",
            "--exec-task", "echo=/bin/true", NULL);
    refused("workerd: --exec-task: resize: /opt/none/resize.py: No such file or directory "
            "(from the command line)",
            "--exec-task", "resize=/opt/none/resize.py", NULL);
    snprintf(entry, sizeof entry, "resize=%s", data);
    snprintf(want, sizeof want,
             "workerd: --exec-task: resize: %s is not executable (from the command line)", data);
    refused(want, "--exec-task", entry, NULL);
    test_rmtree(dir);
    free(dir);
}
