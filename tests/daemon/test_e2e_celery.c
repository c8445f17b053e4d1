/*
 * test_e2e_celery.c - the real workerd binary consuming what Celery's own producer sends
 * (--protocol celery), with Debian's python3-celery (/usr/bin/python3) as that producer
 * and its AsyncResult as the reader of the results: tasks run, fail, are refused, wait,
 * expire and chain as a Celery user sees them (celery_client.py next to this file runs
 * the Python side, one interpreter for many cases since it starts slowly), a workerd
 * SIGKILLed in the middle of a Celery task still answers it after a restart, and a Python
 * Celery worker beside a workerd on one queue never takes the tasks workerd runs, and one
 * --rate-limit holds over Celery's messages and workerd's own together.
 */
#include "e2e.h"
#include "testlib.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PYTHON "/usr/bin/python3"

/* The Python side, next to this source file. */
static const char *client_path(void) {
    static char path[1024];
    const char *slash = strrchr(__FILE__, '/');
    snprintf(path, sizeof path, "%.*s/celery_client.py", slash ? (int)(slash - __FILE__) : 1,
             slash ? __FILE__ : ".");
    return path;
}

/* Celery must be importable by Debian's Python (tests/install-deps.sh installs it). */
static void need_celery(void) {
    if (test_system(PYTHON " -c 'import celery' 2>/dev/null") != 0)
        test__fail(__FILE__, __LINE__,
                   "%s cannot import celery: install python3-celery (tests/install-deps.sh)",
                   PYTHON);
}

TEST(celery_producer_gets_results_failures_refusals_and_chains) {
    need_celery();
    test_redis r;
    test_redis_start(&r, NULL);
    test_nginx n;
    test_nginx_start(&n);
    e2e_worker w;
    char port[16];
    snprintf(port, sizeof port, "%d", r.port);
    E2E_START_READY(&w, r.port, "--protocol", "celery", "-Q", "celery", "--celery-task",
                    "proj.fetch=http.get", "--http-allow", "127.0.0.1");
    int rc = test_system(PYTHON " %s cases %d %d", client_path(), r.port, n.port);
    if (rc != 0)
        e2e_log_dump(&w);
    ASSERT_EQ(rc, 0);
    /* Nothing left behind: every message was acked. */
    redisContext *c = e2e_redis(r.port);
    ASSERT_EQ(e2e_count_keys(c, "workerd:inflight:*"), 0);
    ASSERT_EQ(e2e_int(c, "LLEN celery"), 0);
    ASSERT_EQ(e2e_int(c, "ZCARD workerd:scheduled"), 0);
    redisFree(c);
    e2e_worker_signal(&w, SIGTERM);
    ASSERT_EQ(e2e_worker_wait(&w, 10.0), 0);
    e2e_worker_stop(&w);
    test_nginx_stop(&n);
    test_redis_stop(&r);
}

TEST(celery_task_survives_sigkill_of_workerd) {
    need_celery();
    test_redis r;
    test_redis_start(&r, NULL);
    e2e_worker a, b;
    E2E_START_READY(&a, r.port, "--protocol", "celery", "-Q", "celery", "--heartbeat", "1", "-n",
                    "first", "-l", "debug");
    char cmd[1200];
    snprintf(cmd, sizeof cmd, PYTHON " %s kill %d", client_path(), r.port);
    FILE *py = popen(cmd, "r");
    ASSERT(py != NULL);
    char line[512] = "";
    ASSERT(fgets(line, sizeof line, py) != NULL);
    ASSERT(strncmp(line, "sent ", 5) == 0);
    ASSERT(e2e_log_wait(&a, "sleep started", 10.0));
    e2e_worker_signal(&a, SIGKILL);
    ASSERT_EQ(e2e_worker_wait(&a, 5.0), 128 + SIGKILL);
    E2E_START(&b, r.port, "--protocol", "celery", "-Q", "celery", "--heartbeat", "1", "-n",
              "second");
    /* Celery's AsyncResult.get() returns what the second worker ran. */
    ASSERT(fgets(line, sizeof line, py) != NULL);
    if (strcmp(line, "result 1.0\n") != 0) {
        e2e_log_dump(&b);
        test__fail(__FILE__, __LINE__, "the producer read: %s", line);
    }
    ASSERT(fgets(line, sizeof line, py) != NULL);
    ASSERT(strcmp(line, "done\n") == 0);
    ASSERT_EQ(pclose(py), 0);
    ASSERT(e2e_log_count(&b, "sleep redelivered 1 time(s)") == 1);
    e2e_worker_signal(&b, SIGTERM);
    ASSERT_EQ(e2e_worker_wait(&b, 10.0), 0);
    e2e_worker_stop(&a);
    e2e_worker_stop(&b);
    test_redis_stop(&r);
}

TEST(celery_python_worker_beside_workerd_runs_each_task_once) {
    need_celery();
    test_redis r;
    test_redis_start(&r, NULL);
    e2e_worker w;
    E2E_START_READY(&w, r.port, "--protocol", "celery", "-Q", "celery", "-c", "10", "-l", "debug");
    char cmd[1200];
    snprintf(cmd, sizeof cmd, PYTHON " %s fleet %d", client_path(), r.port);
    FILE *py = popen(cmd, "r");
    ASSERT(py != NULL);
    char line[512] = "";
    int python_ran = -1;
    while (fgets(line, sizeof line, py) != NULL)
        sscanf(line, "python_ran %d", &python_ran);
    int rc = pclose(py);
    if (rc != 0 || python_ran < 0)
        e2e_log_dump(&w);
    ASSERT_EQ(rc, 0);
    /* 30 tasks, each run once: the 10 long ones (past the Python worker's visibility
     * timeout) by workerd, the rest by whoever took them. */
    ASSERT_RANGE(python_ran, 0, 20);
    ASSERT_EQ(e2e_log_count(&w, "sleep started"), 30 - python_ran);
    ASSERT_EQ(e2e_log_count(&w, "redelivered"), 0);
    e2e_worker_signal(&w, SIGTERM);
    ASSERT_EQ(e2e_worker_wait(&w, 10.0), 0);
    e2e_worker_stop(&w);
    test_redis_stop(&r);
}

/* --rate-limit names the workerd task, and a Celery message's mapped name is one: Celery's
 * workerd.echo and workerd's echo share the rate (the Python side asserts that no window
 * of the run saw a burst, and that every message ran once: Celery's back from the
 * scheduled set to their Celery list). */
TEST(celery_messages_share_the_rate_limit_of_their_task) {
    need_celery();
    test_redis r;
    test_redis_start(&r, NULL);
    e2e_worker w;
    E2E_START_READY(&w, r.port, "-Q", "default", "--celery-queues", "celery", "--rate-limit",
                    "echo=5/s", "-l", "debug");
    int rc = test_system(PYTHON " %s rate %d 6 5", client_path(), r.port);
    if (rc != 0)
        e2e_log_dump(&w);
    ASSERT_EQ(rc, 0);
    /* Celery's messages waited for their turn too (not only workerd's). */
    ASSERT(e2e_log_count(&w, "is over its rate limit") >= 6);
    e2e_worker_signal(&w, SIGTERM);
    ASSERT_EQ(e2e_worker_wait(&w, 10.0), 0);
    e2e_worker_stop(&w);
    test_redis_stop(&r);
}
