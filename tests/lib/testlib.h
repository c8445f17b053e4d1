/*
 * testlib.h - the in-tree test harness: TEST() registration, ASSERT macros, and real
 * servers (redis-server, nginx) started on free loopback ports by the test itself.
 *
 * A test file is a set of TEST(name) functions; tests/CMakeLists.txt registers each one
 * with ctest as <file>.<name>, run as `<binary> <name>` (no argument runs them all;
 * --list prints the names). Write TEST(name) at the start of its line, the name in
 * [a-z0-9_]+: tests/lib/test_names.cmake reads the names from the source, and refuses any
 * other spelling at configure time, so that no test is compiled and never run; the runner
 * refuses such a name too.
 * A failed ASSERT prints file:line and the expression, then aborts the process.
 */
#ifndef WORKERD_TESTLIB_H
#define WORKERD_TESTLIB_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

typedef void (*test_fn)(void);
void test__register(const char *name, test_fn fn);

#define TEST(name)                                                                                 \
    static void name(void);                                                                        \
    __attribute__((constructor)) static void name##__register(void) {                              \
        test__register(#name, name);                                                               \
    }                                                                                              \
    static void name(void)

void test__fail(const char *file, int line, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 3, 4)));

/* End the test as skipped (exit code TEST_SKIP_CODE, which ctest reports as "Not Run",
 * never as a pass), printing why: only for a machine that cannot run it at all. */
#define TEST_SKIP_CODE 77
void test_skip(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

#define ASSERT(cond)                                                                               \
    do {                                                                                           \
        if (!(cond))                                                                               \
            test__fail(__FILE__, __LINE__, "assertion failed: %s", #cond);                         \
    } while (0)

#define ASSERT_EQ(a, b)                                                                            \
    do {                                                                                           \
        long long a__ = (long long)(a), b__ = (long long)(b);                                      \
        if (a__ != b__)                                                                            \
            test__fail(__FILE__, __LINE__, "%s == %s: %lld != %lld", #a, #b, a__, b__);            \
    } while (0)

#define ASSERT_STREQ(a, b)                                                                         \
    do {                                                                                           \
        const char *a__ = (a), *b__ = (b);                                                         \
        if (a__ == NULL || b__ == NULL || strcmp(a__, b__) != 0)                                   \
            test__fail(__FILE__, __LINE__, "%s == %s: \"%s\" != \"%s\"", #a, #b,                   \
                       a__ ? a__ : "(null)", b__ ? b__ : "(null)");                                \
    } while (0)

/* Between lo and hi inclusive. For an elapsed time, hi is TEST_SOON (or more): see below. */
#define ASSERT_RANGE(v, lo, hi)                                                                    \
    do {                                                                                           \
        double v__ = (double)(v);                                                                  \
        if (v__ < (lo) || v__ > (hi))                                                              \
            test__fail(__FILE__, __LINE__, "%s = %g not in [%g, %g]", #v, v__, (double)(lo),       \
                       (double)(hi));                                                              \
    } while (0)

/* Monotonic seconds. */
double test_now(void);

/* What only a fresh process shows (a message printed once per process, an abort):
 * test_child runs this program's TEST `name` again in a new process (the program
 * re-executed, with WORKERD_TEST_CHILD=1 in its environment, which test_in_child sees) and
 * waits for it. Returns its wait status (WIFEXITED, WTERMSIG, ...); *err, if err is not
 * NULL, receives everything it wrote to stderr (malloc'd). */
int test_child(const char *name, char **err);
bool test_in_child(void);

/* Time in tests. A test must never fail because the machine is busy (valgrind, sanitizers,
 * other test programs on the same cores). So a test waits for the event it needs, polling
 * for it with a generous deadline (ASSERT_WITHIN, e2e_log_wait, ...), never a sleep of a
 * guessed length; and an upper bound on an elapsed time only rules out waiting for
 * something else (a timeout that should not have been reached, a peer that never
 * answers), never measures speed, which is bench/'s job. TEST_SOON is that bound: what
 * should happen at once, or when a short timeout fires, happens within TEST_SOON seconds,
 * and the alternative a test rules out must take longer (TEST_NEVER is a timeout long
 * enough for that). */
#define TEST_SOON 5.0
#define TEST_NEVER 60.0

/* Poll cond every 10 ms until it holds; fails the test if it does not within timeout
 * seconds. For conditions another process, thread or server makes true. Not for a
 * greenlet (it blocks the hub): there, loop on green_sleep. */
#define ASSERT_WITHIN(cond, timeout)                                                               \
    do {                                                                                           \
        double end__ = test_now() + (timeout);                                                     \
        while (!(cond)) {                                                                          \
            if (test_now() > end__)                                                                \
                test__fail(__FILE__, __LINE__, "not within %g s: %s", (double)(timeout), #cond);   \
            test_pause();                                                                          \
        }                                                                                          \
    } while (0)

/* Sleep 10 ms: the polling period of the waits above. */
void test_pause(void);

/* A free TCP port on 127.0.0.1 (bound and released; good enough for tests). */
int test_free_port(void);

/* Read an HTTP request head from fd into buf (NUL-terminated; at most cap - 1 bytes): up
 * to the blank line that ends it, or EOF or an error. Returns the bytes read. */
size_t test_read_head(int fd, char *buf, size_t cap);

/* pid is gone, or dead and waiting for its parent to reap it (from /proc). */
bool test_pid_dead(pid_t pid);

/* A fresh private directory under $TMPDIR (or /tmp), removed by test_rmtree. */
char *test_tmpdir(const char *tag);
void test_rmtree(const char *dir);

/* A redis-server child on 127.0.0.1:port, without persistence unless extra_args say so.
 * extra_args: NULL-terminated list of further redis-server arguments, or NULL. */
typedef struct test_redis {
    pid_t pid;
    int port;
    char *dir;
    const char *const *extra_args;
} test_redis;

void test_redis_start(test_redis *r, const char *const *extra_args);
void test_redis_kill(test_redis *r, int sig); /* signal it and reap it if it dies */
void test_redis_restart(test_redis *r);       /* start again on the same port and dir */
void test_redis_stop(test_redis *r);          /* SIGTERM, reap, remove its directory */

/* nginx (with the echo module) on 127.0.0.1:port, serving:
 *   /fast        200 "ok\n"                      /slow       200 "ok\n" after 100 ms
 *   /never       sleeps an hour before answering /trickle    "a" now, "b" 1 s later,
 *                                                            then "c", "d" 30 s apart
 *   /missing     404                             /error      500 "boom\n"
 *   /redirect    302 -> /fast                    /loop       302 -> /loop
 *   /bin         4 KiB of binary bytes 0..255    /big        2 MiB of 'x'
 *   /headers     echoes the X-Test request header
 *   /body        echoes the request body (POST/PUT)                                  */
typedef struct test_nginx {
    pid_t pid;
    int port;
    char *dir;
} test_nginx;

void test_nginx_start(test_nginx *n);
void test_nginx_stop(test_nginx *n);

/* Run a shell command; returns its exit status (or -1). */
int test_system(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
