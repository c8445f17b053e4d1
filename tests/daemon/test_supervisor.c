/*
 * test_supervisor.c - workerd --processes N as an operator meets it: N workers that each
 * take tasks, a SIGKILLed child replaced without losing a task, SIGTERM reaching every
 * child, children recycled by --max-tasks-per-child and --max-memory-per-child without
 * losing a task, one --http port per child, and READY=1 sent to systemd only once every
 * child is ready.
 *
 * The real binary on a real redis-server; child pids are read from the supervisor's log
 * lines "supervisor: started child K (pid P)".
 */
#include "e2e.h"
#include "httpc.h"
#include "testlib.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* The pids of the children started so far, in order, once at least `want` were logged;
 * returns how many. */
static int child_pids(e2e_worker *w, int want, int *pids, int max) {
    /* The parent logs "started child" after fork returns: a child may say it is ready
     * before its parent has said it started it. */
    e2e_log_wait_n(w, "started child ", want, 10.0);
    char *log = e2e_log_read(w);
    int n = 0;
    for (const char *p = strstr(log, "started child "); p && n < max;
         p = strstr(p + 1, "started child ")) {
        int slot, pid;
        if (sscanf(p, "started child %d (pid %d)", &slot, &pid) == 2)
            pids[n++] = pid;
    }
    free(log);
    return n;
}

static void push_sleeps(e2e_env *e, const char *prefix, int from, int to, const char *secs) {
    for (int i = from; i < to; i++) {
        char id[64], args[32];
        snprintf(id, sizeof id, "%s-%d", prefix, i);
        snprintf(args, sizeof args, "[%s]", secs);
        e2e_push_task(e->c, "default", id, "sleep", args);
    }
}

/* Every task prefix-0 .. prefix-(n-1) has a SUCCESS result within timeout; returns how
 * many distinct workers ran them. */
static int wait_all_success(e2e_env *e, const char *prefix, int n, double timeout) {
    char workers[64][160];
    int nworkers = 0;
    for (int i = 0; i < n; i++) {
        char id[64];
        snprintf(id, sizeof id, "%s-%d", prefix, i);
        json_t *res = e2e_wait_result(e->c, id, "SUCCESS", timeout);
        if (!res) {
            e2e_log_dump(&e->w);
            test__fail(__FILE__, __LINE__, "no SUCCESS result for %s", id);
        }
        const char *wid = e2e_jstr(res, "worker");
        ASSERT(wid != NULL);
        bool seen = false;
        for (int k = 0; k < nworkers; k++)
            seen = seen || strcmp(workers[k], wid) == 0;
        if (!seen && nworkers < 64)
            snprintf(workers[nworkers++], sizeof workers[0], "%s", wid);
        json_decref(res);
    }
    return nworkers;
}

static bool alive(pid_t pid) {
    return kill(pid, 0) == 0 || errno != ESRCH;
}

TEST(two_processes_each_consume) {
    e2e_env e;
    e2e_env_start(&e);
    E2E_START(&e.w, e.redis.port, "--processes", "2", "-c", "2");
    ASSERT(e2e_log_wait_n(&e.w, "ready: consuming", 2, 10.0));
    ASSERT(e2e_log_wait(&e.w, "supervisor: all 2 children ready", 5.0));
    /* Slow tasks, two slots each: both processes must take some. */
    push_sleeps(&e, "t", 0, 8, "0.3");
    ASSERT_EQ(wait_all_success(&e, "t", 8, 15.0), 2);
    ASSERT_EQ(e2e_int(e.c, "HLEN workerd:workers"), 2);
    e2e_env_end(&e);
}

TEST(killed_child_is_replaced_and_no_task_is_lost) {
    e2e_env e;
    e2e_env_start(&e);
    /* --heartbeat 1: the killed child's messages come back within 3 s. */
    E2E_START(&e.w, e.redis.port, "--processes", "2", "-c", "5", "--heartbeat", "1");
    ASSERT(e2e_log_wait_n(&e.w, "ready: consuming", 2, 10.0));
    int pids[16];
    ASSERT_EQ(child_pids(&e.w, 2, pids, 16), 2);
    /* The victim dies holding messages: it is killed once its in-flight hash has some,
     * and the first ten tasks are long enough to still be there. */
    push_sleeps(&e, "k", 0, 10, "2");
    push_sleeps(&e, "k", 10, 25, "0.05");
    char held[128];
    snprintf(held, sizeof held, "workerd:inflight:*:%d:*", pids[0]);
    ASSERT_WITHIN(e2e_count_keys(e.c, held) == 1, 10.0);
    kill(pids[0], SIGKILL);
    push_sleeps(&e, "k", 25, 50, "0.05");
    ASSERT(e2e_log_wait(&e.w, "was killed by signal 9", 5.0));
    ASSERT(e2e_log_wait_n(&e.w, "started child", 3, 5.0));
    int now[16];
    ASSERT_EQ(child_pids(&e.w, 3, now, 16), 3);
    ASSERT(now[2] != pids[0] && now[2] != pids[1]);
    ASSERT(alive(now[2]));
    wait_all_success(&e, "k", 50, 20.0);
    ASSERT(e2e_log_count(&e.w, "recovered the messages of dead workers") >= 1);
    /* The replacement registered as a worker of its own. */
    char key[128];
    snprintf(key, sizeof key, "workerd:worker:*:%d:*", now[2]);
    ASSERT_WITHIN(e2e_count_keys(e.c, key) == 1, 10.0);
    e2e_env_end(&e);
    ASSERT(!alive(pids[1]) && !alive(now[2]));
}

TEST(sigterm_stops_every_child_and_exits_zero) {
    e2e_env e;
    e2e_env_start(&e);
    E2E_START(&e.w, e.redis.port, "--processes", "3");
    ASSERT(e2e_log_wait_n(&e.w, "ready: consuming", 3, 10.0));
    int pids[16];
    ASSERT_EQ(child_pids(&e.w, 3, pids, 16), 3);
    /* A running task is finished by the warm shutdown, not abandoned. */
    push_sleeps(&e, "s", 0, 1, "2");
    json_t *started = e2e_wait_result(e.c, "s-0", "STARTED", 10.0);
    ASSERT(started != NULL);
    json_decref(started);
    e2e_worker_signal(&e.w, SIGTERM);
    ASSERT_EQ(e2e_worker_wait(&e.w, 20.0), 0);
    for (int i = 0; i < 3; i++)
        ASSERT(!alive(pids[i]));
    ASSERT_EQ(e2e_log_count(&e.w, "stopped: "), 3);
    wait_all_success(&e, "s", 1, 1.0);
    ASSERT_EQ(e2e_int(e.c, "HLEN workerd:workers"), 0);
    e2e_worker_stop(&e.w);
    redisFree(e.c);
    test_redis_stop(&e.redis);
}

TEST(max_tasks_per_child_recycles_without_losing_tasks) {
    e2e_env e;
    e2e_env_start(&e);
    E2E_START(&e.w, e.redis.port, "--max-tasks-per-child", "5", "-c", "2");
    ASSERT(e2e_log_wait(&e.w, "ready: consuming", 10.0));
    push_sleeps(&e, "r", 0, 12, "0.02");
    /* 12 tasks, 5 per child: three children ran them, none more than 5. */
    ASSERT_EQ(wait_all_success(&e, "r", 12, 20.0), 3);
    ASSERT_EQ(e2e_log_count(&e.w, "(recycled); starting a new one"), 2);
    ASSERT_EQ(e2e_log_count(&e.w, "was killed"), 0);
    ASSERT_EQ(e2e_log_count(&e.w, "stopped: 5 received, 5 succeeded"), 2);
    e2e_env_end(&e);
}

TEST(max_memory_per_child_recycles_after_a_task) {
    e2e_env e;
    e2e_env_start(&e);
    /* 1 KiB: always exceeded, so every child runs one task and is replaced. */
    E2E_START(&e.w, e.redis.port, "--max-memory-per-child", "1", "-c", "1");
    ASSERT(e2e_log_wait(&e.w, "ready: consuming", 10.0));
    push_sleeps(&e, "m", 0, 3, "0.01");
    ASSERT_EQ(wait_all_success(&e, "m", 3, 20.0), 3);
    ASSERT(e2e_log_wait_n(&e.w, "exceeds --max-memory-per-child", 3, 5.0));
    e2e_env_end(&e);
}

/* Child k listens on PORT+k: find a port whose next one is free too (other tests take
 * free ports concurrently, so PORT+1 is not free just because PORT was). */
/* True when 127.0.0.1:port can be bound now, as the worker will bind it (SO_REUSEADDR, so a
 * connection of an earlier test in TIME_WAIT does not count as taken). */
static bool port_bindable(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    bool ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

/* Two consecutive free ports, PORT and PORT+1. Taken below Linux's ephemeral range
 * (32768..60999 by default), where the kernel hands out the local ports of outgoing
 * connections: there, with many tests connecting in parallel, an even PORT+1 next to the
 * odd port a bind(0) returns is often a live connection's. */
static int two_free_ports(void) {
    for (int tries = 0; tries < 1000; tries++) {
        int port = 20000 + (int)(((unsigned)rand() ^ (unsigned)getpid() * 2654435761u) % 12000u);
        if (port_bindable(port) && port_bindable(port + 1))
            return port;
    }
    test__fail(__FILE__, __LINE__, "no two consecutive free ports");
}

TEST(each_child_serves_http_on_its_own_port) {
    e2e_env e;
    e2e_env_start(&e);
    int port = two_free_ports();
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    E2E_START(&e.w, e.redis.port, "--processes", "2", "--http", addr);
    ASSERT(e2e_log_wait_n(&e.w, "ready: consuming", 2, 10.0));
    int pids[16];
    ASSERT_EQ(child_pids(&e.w, 2, pids, 16), 2);
    for (int k = 0; k < 2; k++) {
        httpc_response r;
        ASSERT_EQ(httpc_get(port + k, "/workers", &r), 200);
        json_t *all = json_loads(r.body, 0, NULL);
        double pid = e2e_jnum(json_array_get(all, 0), "pid");
        ASSERT(pid == pids[0] || pid == pids[1]);
        json_decref(all);
        httpc_free(&r);
    }
    e2e_env_end(&e);
}

/* Under systemd: READY=1 only once both children are ready, with a STATUS counting them;
 * the children's own READY=1 never reaches systemd. */
TEST(supervisor_tells_systemd_ready_once_all_children_are) {
    char *dir = test_tmpdir("supnotify");
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof a.sun_path, "%s/notify", dir);
    ASSERT_EQ(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    setenv("NOTIFY_SOCKET", a.sun_path, 1);
    e2e_env e;
    e2e_env_start(&e);
    E2E_START(&e.w, e.redis.port, "--processes", "2");
    unsetenv("NOTIFY_SOCKET");
    int readies = 0;
    bool counted = false;
    double deadline = test_now() + 10;
    while (test_now() < deadline && !counted) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 100) != 1)
            continue;
        char buf[1024];
        ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
        buf[n > 0 ? n : 0] = '\0';
        if (strstr(buf, "READY=1")) {
            readies++;
            counted = strstr(buf, "STATUS=2/2 children running") != NULL;
        }
    }
    ASSERT(counted);
    ASSERT_EQ(readies, 1);
    ASSERT_EQ(e2e_log_count(&e.w, "ready: consuming"), 2);
    e2e_env_end(&e);
    close(fd);
    test_rmtree(dir);
    free(dir);
}

/* The value of the sample `series` (name and labels, exactly) in a /metrics text; -1 when
 * it is not there. */
static double sample(const char *text, const char *series) {
    size_t n = strlen(series);
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (strncmp(p, series, n) == 0 && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    return -1;
}

/* One view of the machine: /metrics/total on either child sums both children's metrics
 * (each child alone reports only its own tasks on PORT+k). */
TEST(metrics_total_on_any_child_sums_every_child) {
    enum { N = 8 };
    e2e_env e;
    e2e_env_start(&e);
    int port = two_free_ports();
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    E2E_START(&e.w, e.redis.port, "--processes", "2", "-c", "2", "--http", addr);
    ASSERT(e2e_log_wait_n(&e.w, "ready: consuming", 2, 10.0));
    for (int i = 1; i <= N; i++) {
        char id[32];
        snprintf(id, sizeof id, "t-%d", i);
        e2e_push_task(e.c, "default", id, "sleep", "[0.3]");
    }
    for (int i = 1; i <= N; i++) {
        char id[32];
        snprintf(id, sizeof id, "t-%d", i);
        json_decref(e2e_must_result(&e, id));
    }
    const char *series = "workerd_tasks_succeeded_total{task=\"sleep\"}";
    double alone[2];
    for (int k = 0; k < 2; k++) {
        httpc_response r;
        ASSERT_EQ(httpc_get(port + k, "/metrics", &r), 200);
        alone[k] = sample(r.body, series);
        httpc_free(&r);
    }
    /* Four slots for eight slow tasks: both children ran some. */
    ASSERT(alone[0] > 0 && alone[1] > 0);
    ASSERT_EQ(alone[0] + alone[1], N);
    for (int k = 0; k < 2; k++) {
        httpc_response r;
        ASSERT_EQ(httpc_get(port + k, "/metrics/total", &r), 200);
        ASSERT_EQ(sample(r.body, series), N);
        ASSERT_EQ(sample(r.body, "workerd_fleet_processes_answering"), 2);
        ASSERT_EQ(sample(r.body, "workerd_broker_up"), 2);
        ASSERT_EQ(sample(r.body, "workerd_queue_depth{queue=\"default\"}"), 0);
        httpc_free(&r);
    }
    e2e_env_end(&e);
}
