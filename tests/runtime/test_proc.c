/*
 * test_proc.c - child processes of green_proc.h, with real /bin/sh programs: what they
 * read and write, how they end, what they inherit, and that nothing is left behind (no
 * descriptor, no zombie, no process of their group).
 *
 * Each TEST runs its body as the main greenlet of a hub on libev's default loop, with
 * SIGPIPE ignored as the daemon does (green_proc.h requires it).
 */
#include "green.h"
#include "green_proc.h"
#include "testlib.h"

#include <dirent.h>
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char *const env[] = {"PATH=/usr/bin:/bin", NULL};

static void run(green_fn fn) {
    signal(SIGPIPE, SIG_IGN);
    ASSERT_EQ(green_run(NULL, NULL, fn, NULL, NULL), 0);
}

/* Start `/bin/sh -c script`. */
static green_proc *sh(const char *script) {
    char *argv[] = {"/bin/sh", "-c", (char *)script, NULL};
    green_proc_spec spec = {.path = "/bin/sh", .argv = argv, .envp = env};
    green_proc *p;
    ASSERT_EQ(green_proc_spawn(&p, &spec), 0);
    return p;
}

static const char *out_of(green_proc *p) {
    size_t len;
    return green_proc_stdout(p, &len);
}

static int open_fds(void) {
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    ASSERT(d != NULL);
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        n += e->d_name[0] != '.';
    closedir(d);
    return n - 1; /* the directory's own */
}

/* No child of this process is left, not even a zombie: libev's handler reaped them all. */
static void assert_no_children(void) {
    siginfo_t si;
    ASSERT_EQ(waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT), -1);
    ASSERT_EQ(errno, ECHILD);
}

/* pid is gone, or dead and waiting for its (other) parent to reap it. */
static bool dead(pid_t pid) {
    char path[64], state = 0;
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return true;
    int n = fscanf(f, "%*d (%*[^)]) %c", &state);
    fclose(f);
    return n != 1 || state == 'Z' || state == 'X';
}

/* ---- what goes in and out ------------------------------------------------------------ */

static void *in_out_status_main(void *arg) {
    (void)arg;
    green_proc *p = sh("cat; echo oops >&2; exit 3");
    ASSERT_EQ(green_proc_communicate(p, "hello", 5, 1000), 0);
    ASSERT_STREQ(out_of(p), "hello");
    size_t len, total;
    ASSERT_STREQ(green_proc_stderr(p, &len, &total), "oops\n");
    ASSERT_EQ(total, 5);
    int st = green_proc_status(p);
    ASSERT(WIFEXITED(st));
    ASSERT_EQ(WEXITSTATUS(st), 3);
    green_proc_free(p);
    return NULL;
}

TEST(proc_communicate_feeds_stdin_and_collects_stdout_stderr_and_status) {
    run(in_out_status_main);
}

static void *write_first_main(void *arg) {
    (void)arg;
    /* The child writes 1 MiB before reading any of its 1 MiB of input: a parent that wrote
     * everything before reading would deadlock with it on two full pipes. */
    size_t n = 1 << 20;
    char *in = malloc(n);
    ASSERT(in != NULL);
    memset(in, 'i', n);
    green_proc *p = sh("head -c 1048576 /dev/zero; wc -c");
    ASSERT_EQ(green_proc_communicate(p, in, n, 2 << 20), 0);
    size_t len;
    const char *out = green_proc_stdout(p, &len);
    ASSERT_EQ(len, (1 << 20) + 8);
    ASSERT_STREQ(out + (1 << 20), "1048576\n");
    ASSERT(WIFEXITED(green_proc_status(p)) && WEXITSTATUS(green_proc_status(p)) == 0);
    green_proc_free(p);
    free(in);
    return NULL;
}

TEST(proc_a_child_that_writes_before_reading_its_large_input_does_not_deadlock) {
    run(write_first_main);
}

static void *no_read_main(void *arg) {
    (void)arg;
    size_t n = 1 << 20;
    char *in = calloc(1, n);
    ASSERT(in != NULL);
    green_proc *p = sh("exec 0<&-; echo done");
    ASSERT_EQ(green_proc_communicate(p, in, n, 100), 0);
    ASSERT_STREQ(out_of(p), "done\n");
    green_proc_free(p);
    free(in);
    return NULL;
}

TEST(proc_input_the_child_never_reads_is_dropped_without_error) {
    run(no_read_main);
}

static void *overflow_main(void *arg) {
    (void)arg;
    green_proc *p = sh("while :; do echo 0123456789; done");
    ASSERT_EQ(green_proc_communicate(p, NULL, 0, 1000), -EFBIG);
    size_t len;
    green_proc_stdout(p, &len);
    ASSERT_EQ(len, 1000);
    ASSERT(WIFSIGNALED(green_proc_status(p)));
    ASSERT_EQ(WTERMSIG(green_proc_status(p)), SIGKILL);
    green_proc_free(p);
    return NULL;
}

TEST(proc_stdout_beyond_the_cap_kills_the_child_and_keeps_the_first_bytes) {
    run(overflow_main);
}

static void *stderr_tail_main(void *arg) {
    (void)arg;
    green_proc *p = sh("head -c 100000 /dev/zero | tr '\\000' a >&2; printf END >&2");
    ASSERT_EQ(green_proc_communicate(p, NULL, 0, 100), 0);
    size_t len, total;
    const char *err = green_proc_stderr(p, &len, &total);
    ASSERT_EQ(total, 100003);
    ASSERT_EQ(len, GREEN_PROC_ERR_TAIL);
    ASSERT_EQ(strlen(err), GREEN_PROC_ERR_TAIL);
    ASSERT_STREQ(err + len - 4, "aEND");
    green_proc_free(p);
    return NULL;
}

TEST(proc_keeps_the_last_4_kib_of_stderr) {
    run(stderr_tail_main);
}

/* ---- what the child inherits ------------------------------------------------------------ */

static void *inherit_main(void *arg) {
    (void)arg;
    /* A descriptor opened without O_CLOEXEC, SIGPIPE ignored, SIGUSR1 blocked: none of it
     * reaches the child. */
    int leak = open("/dev/null", O_RDONLY);
    ASSERT(leak > 2);
    sigset_t usr1, old;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    sigprocmask(SIG_BLOCK, &usr1, &old);
    char script[256];
    snprintf(script, sizeof script,
             "test -e /proc/self/fd/%d && echo leaked; grep -E '^Sig(Ign|Blk)' /proc/self/status;"
             " cut -d' ' -f5 /proc/self/stat; echo \"$PATH\"",
             leak);
    green_proc *p = sh(script);
    sigprocmask(SIG_SETMASK, &old, NULL);
    ASSERT_EQ(green_proc_communicate(p, NULL, 0, 1000), 0);
    /* glibc's posix_spawn leaves its two internal real-time signals (32, 33) ignored, so
     * only the 31 standard ones are compared. */
    unsigned long long blocked, ignored;
    int group;
    char path[64];
    ASSERT_EQ(sscanf(out_of(p), "SigBlk:\t%llx\nSigIgn:\t%llx\n%d\n%63s", &blocked, &ignored,
                     &group, path),
              4);
    ASSERT_EQ(blocked, 0);
    ASSERT_EQ(ignored & 0x7fffffff, 0);
    ASSERT_EQ(group, green_proc_pid(p));
    ASSERT_STREQ(path, "/usr/bin:/bin");
    green_proc_free(p);
    close(leak);
    return NULL;
}

TEST(proc_child_has_its_own_group_default_signals_its_env_and_no_other_fd) {
    run(inherit_main);
}

/* ---- processes left behind --------------------------------------------------------------- */

static void *grandchild_main(void *arg) {
    (void)arg;
    /* The grandchild holds stdout open and would keep a reader waiting for an end of file
     * for 1000 s: the child's exit ends it, and kills it. */
    green_proc *p = sh("sleep 1000 & echo $!");
    double t0 = test_now();
    ASSERT_EQ(green_proc_communicate(p, NULL, 0, 100), 0);
    ASSERT_RANGE(test_now() - t0, 0, TEST_SOON);
    pid_t grandchild = atoi(out_of(p));
    ASSERT(grandchild > 0);
    ASSERT(WIFEXITED(green_proc_status(p)));
    green_proc_free(p);
    double end = test_now() + TEST_SOON;
    while (!dead(grandchild) && test_now() < end)
        green_sleep(0.01);
    ASSERT(dead(grandchild));
    return NULL;
}

TEST(proc_a_grandchild_holding_stdout_neither_hangs_the_caller_nor_survives) {
    run(grandchild_main);
}

static void *free_running_main(void *arg) {
    (void)arg;
    int fds = open_fds();
    green_proc *p = sh("sleep 1000");
    pid_t pid = green_proc_pid(p);
    green_proc_free(p);
    ASSERT_EQ(open_fds(), fds);
    /* Killed and reaped: a zombie would still take signals. */
    double end = test_now() + TEST_SOON;
    while (kill(pid, 0) == 0 && test_now() < end)
        green_sleep(0.01);
    ASSERT_EQ(kill(pid, 0), -1);
    ASSERT_EQ(errno, ESRCH);
    assert_no_children();
    return NULL;
}

TEST(proc_free_kills_a_running_child_and_leaves_no_zombie) {
    run(free_running_main);
}

/* ---- stopping ------------------------------------------------------------------------------ */

static void *stop_term_main(void *arg) {
    (void)arg;
    green_proc *p = sh("exec sleep 1000");
    green_timeout t;
    green_timeout_start(&t, 0.05);
    ASSERT_EQ(green_proc_communicate(p, NULL, 0, 100), -ETIMEDOUT);
    /* The scope has expired; the clean-up waits all the same. */
    double t0 = test_now();
    ASSERT_EQ(green_proc_stop(p, TEST_NEVER), 0);
    ASSERT_RANGE(test_now() - t0, 0, TEST_SOON);
    ASSERT(green_timeout_end(&t));
    ASSERT(WIFSIGNALED(green_proc_status(p)));
    ASSERT_EQ(WTERMSIG(green_proc_status(p)), SIGTERM);
    ASSERT_EQ(green_proc_signal(p, SIGTERM), -ESRCH);
    green_proc_free(p);
    return NULL;
}

TEST(proc_stop_ends_a_child_with_sigterm_even_after_a_time_limit_fired) {
    run(stop_term_main);
}

static char *flag_dir;

/* A shell that ignores SIGTERM, once it does (it says so with a file). */
static green_proc *sh_ignoring_term(void) {
    char script[512], flag[300];
    snprintf(flag, sizeof flag, "%s/ready", flag_dir);
    unlink(flag);
    snprintf(script, sizeof script, "trap '' TERM; touch %s; while :; do sleep 0.05; done", flag);
    green_proc *p = sh(script);
    struct stat st;
    double end = test_now() + TEST_NEVER;
    while (stat(flag, &st) != 0 && test_now() < end)
        green_sleep(0.01);
    return p;
}

static void *stop_kill_main(void *arg) {
    (void)arg;
    green_proc *p = sh_ignoring_term();
    double t0 = test_now();
    ASSERT_EQ(green_proc_stop(p, 0.3), 0);
    ASSERT_RANGE(test_now() - t0, 0.25, TEST_SOON);
    ASSERT(WIFSIGNALED(green_proc_status(p)));
    ASSERT_EQ(WTERMSIG(green_proc_status(p)), SIGKILL);
    green_proc_free(p);
    return NULL;
}

static void with_flag_dir(green_fn fn) {
    flag_dir = test_tmpdir("proc");
    run(fn);
    test_rmtree(flag_dir);
    free(flag_dir);
}

TEST(proc_stop_kills_a_child_that_ignores_sigterm_after_the_grace) {
    with_flag_dir(stop_kill_main);
}

static green_t stopper;

static void *stop_then_killed(void *arg) {
    green_proc *p = arg;
    return (void *)(intptr_t)green_proc_stop(p, 0.5);
}

static void *stop_killed_main(void *arg) {
    (void)arg;
    green_proc *p = sh_ignoring_term();
    double t0 = test_now();
    ASSERT_EQ(green_spawn(&stopper, stop_then_killed, p), 0);
    /* Killed twice while it waits out the grace, as the hard limit's repeated kill does. */
    for (int i = 0; i < 2; i++) {
        green_sleep(0.05);
        ASSERT_EQ(green_kill(stopper), 0);
    }
    void *ret;
    ASSERT_EQ(green_join(stopper, &ret), 0);
    ASSERT_EQ((intptr_t)ret, 0);
    ASSERT_RANGE(test_now() - t0, 0.45, TEST_SOON);
    ASSERT_EQ(WTERMSIG(green_proc_status(p)), SIGKILL);
    green_proc_free(p);
    return NULL;
}

TEST(proc_stop_waits_out_its_grace_even_when_killed) {
    with_flag_dir(stop_killed_main);
}

static green_t talker;

static void *talk(void *arg) {
    green_proc *p = arg;
    int rc = green_proc_communicate(p, "hi\n", 3, 100);
    if (rc == -ETIMEDOUT) /* the throw below: carry on */
        rc = green_proc_communicate(p, "hi\n", 3, 100);
    return (void *)(intptr_t)rc;
}

static void *resume_main(void *arg) {
    (void)arg;
    char script[512], flag[300];
    snprintf(flag, sizeof flag, "%s/go", flag_dir);
    snprintf(script, sizeof script,
             "read x; echo \"early $x\"; while [ ! -e %s ]; do sleep 0.01; done; echo late", flag);
    green_proc *p = sh(script);
    ASSERT_EQ(green_spawn(&talker, talk, p), 0);
    green_sleep(0.05);
    ASSERT_EQ(green_throw(talker, -ETIMEDOUT), 0);
    green_sleep(0.05);
    ASSERT_EQ(test_system("touch %s", flag), 0);
    void *ret;
    ASSERT_EQ(green_join(talker, &ret), 0);
    ASSERT_EQ((intptr_t)ret, 0);
    ASSERT_STREQ(out_of(p), "early hi\nlate\n");
    green_proc_free(p);
    return NULL;
}

TEST(proc_communicate_carries_on_after_an_interruption) {
    with_flag_dir(resume_main);
}

/* ---- errors and scale ---------------------------------------------------------------------- */

/* Spawning path fails with err; under valgrind, which runs posix_spawn's CLONE_VFORK as a
 * fork, exec errors cannot come back from the spawn: the child exits 127 instead. */
static void assert_exec_fails(const char *path, int err) {
    char *argv[] = {"x", NULL};
    green_proc_spec spec = {.path = path, .argv = argv, .envp = env};
    green_proc *p = (green_proc *)1;
    int rc = green_proc_spawn(&p, &spec);
    if (rc == 0) {
        ASSERT_EQ(green_proc_communicate(p, NULL, 0, 100), 0);
        ASSERT(WIFEXITED(green_proc_status(p)) && WEXITSTATUS(green_proc_status(p)) == 127);
        green_proc_free(p);
    } else {
        ASSERT_EQ(rc, err);
        ASSERT(p == NULL);
    }
}

static void *spawn_errors_main(void *arg) {
    (void)arg;
    int fds = open_fds();
    assert_exec_fails("/nonexistent/program", -ENOENT);
    char *dir = test_tmpdir("proc"), path[300];
    snprintf(path, sizeof path, "%s/data", dir);
    ASSERT_EQ(test_system("printf 'no program' > %s && chmod 644 %s", path, path), 0);
    assert_exec_fails(path, -EACCES);
    ASSERT_EQ(test_system("chmod 755 %s", path), 0);
    assert_exec_fails(path, -ENOEXEC);
    test_rmtree(dir);
    free(dir);
    ASSERT_EQ(open_fds(), fds);
    assert_no_children();
    return NULL;
}

TEST(proc_spawn_reports_exec_errors_and_leaves_nothing_open) {
    run(spawn_errors_main);
}

static void *other_loop_main(void *arg) {
    (void)arg;
    char *argv[] = {"/bin/true", NULL};
    green_proc_spec spec = {.path = "/bin/true", .argv = argv, .envp = env};
    green_proc *p;
    ASSERT_EQ(green_proc_spawn(&p, &spec), -EOPNOTSUPP);
    return NULL;
}

TEST(proc_spawn_needs_the_default_loop) {
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    ASSERT_EQ(green_run(loop, NULL, other_loop_main, NULL, NULL), 0);
    ev_loop_destroy(loop);
}

#define MANY 200

static int many_done;

static void *one_of_many(void *arg) {
    intptr_t i = (intptr_t)arg;
    char script[64], want[32];
    snprintf(script, sizeof script, "read x; echo $x %d", (int)i);
    snprintf(want, sizeof want, "in %d\n", (int)i);
    green_proc *p = sh(script);
    ASSERT_EQ(green_proc_communicate(p, "in\n", 3, 100), 0);
    ASSERT_STREQ(out_of(p), want);
    green_proc_free(p);
    many_done++;
    return NULL;
}

static void *many_main(void *arg) {
    (void)arg;
    int fds = open_fds();
    green_t g[MANY];
    for (intptr_t i = 0; i < MANY; i++)
        ASSERT_EQ(green_spawn(&g[i], one_of_many, (void *)i), 0);
    for (int i = 0; i < MANY; i++)
        ASSERT_EQ(green_join(g[i], NULL), 0);
    ASSERT_EQ(many_done, MANY);
    ASSERT_EQ(open_fds(), fds);
    assert_no_children();
    return NULL;
}

TEST(proc_200_children_at_once_all_answer_and_leave_nothing_behind) {
    run(many_main);
}
