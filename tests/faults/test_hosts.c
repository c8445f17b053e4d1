/*
 * test_hosts.c - workers on two "hosts" against one Redis: each worker in a network
 * namespace of its own (ip netns), joined to this machine by a veth pair with link-local
 * addresses, with its own host name (-n). Redis listens on the host ends of the pairs.
 * Everything is created by the test and removed by a janitor process that outlives a
 * failed test; a machine where namespaces cannot be created (not root, no ip) skips the
 * tests with the reason (ctest: Not Run), never passes them.
 *
 * A host that dies (its worker SIGKILLed) has its messages recovered by the other; a
 * host cut off longer than its heartbeat TTL (its link down) has its messages recovered
 * by the other, and when it comes back its late results are refused: every id ends with
 * one result, that of its last run (tests/lib/books.h).
 */
#include "books.h"
#include "e2e.h"
#include "testlib.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

enum { HOSTS = 2 };

typedef struct hosts {
    char ns[HOSTS][32];   /* namespace names */
    char veth[HOSTS][16]; /* the host ends of the veth pairs */
    char addr[HOSTS][32]; /* the host end's address: the Redis each worker talks to */
    pid_t janitor;
    test_redis redis;
} hosts;

static void remove_all(const hosts *h) {
    for (int k = 0; k < HOSTS; k++) {
        /* Deleting the namespace deletes the pair's end inside it, and so the pair. */
        test_system("ip netns del %s 2>/dev/null", h->ns[k]);
        test_system("ip link del %s 2>/dev/null", h->veth[k]);
    }
}

/* A child that removes everything once the test process is gone, however it ended. */
static pid_t start_janitor(const hosts *h) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        sigprocmask(SIG_BLOCK, &set, NULL);
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        int sig;
        if (getppid() != 1)
            sigwait(&set, &sig);
        remove_all(h);
        _exit(0);
    }
    return pid;
}

/* Create the namespaces and links, then Redis on the host ends; skips when the machine
 * cannot. */
static void hosts_start(hosts *h) {
    memset(h, 0, sizeof *h);
    int pid = (int)getpid();
    int net = 20 + pid % 200;
    if (geteuid() != 0)
        test_skip("network namespaces need root (ip netns add)");
    for (int k = 0; k < HOSTS; k++) {
        snprintf(h->ns[k], sizeof h->ns[k], "wdh%d%c", pid, 'a' + k);
        snprintf(h->veth[k], sizeof h->veth[k], "wv%d%c", pid % 10000000, 'a' + k);
        snprintf(h->addr[k], sizeof h->addr[k], "169.254.%d.%d", net, 4 * k + 1);
    }
    if (test_system("ip netns add %s 2>/dev/null", h->ns[0]) != 0)
        test_skip("cannot create a network namespace here (ip netns add failed)");
    h->janitor = start_janitor(h);
    for (int k = 0; k < HOSTS; k++) {
        if (k > 0)
            ASSERT_EQ(test_system("ip netns add %s", h->ns[k]), 0);
        ASSERT_EQ(test_system("ip link add %s type veth peer name %sn", h->veth[k], h->veth[k]), 0);
        ASSERT_EQ(test_system("ip link set %sn netns %s", h->veth[k], h->ns[k]), 0);
        ASSERT_EQ(test_system("ip addr add %s/30 dev %s && ip link set %s up", h->addr[k],
                              h->veth[k], h->veth[k]),
                  0);
        ASSERT_EQ(test_system("ip -n %s addr add 169.254.%d.%d/30 dev %sn && "
                              "ip -n %s link set %sn up && ip -n %s link set lo up",
                              h->ns[k], net, 4 * k + 2, h->veth[k], h->ns[k], h->veth[k], h->ns[k]),
                  0);
    }
    static const char *args[8];
    args[0] = "--bind";
    args[1] = "127.0.0.1";
    args[2] = h->addr[0];
    args[3] = h->addr[1];
    args[4] = "--protected-mode"; /* no password, and clients that are not on loopback */
    args[5] = "no";
    args[6] = NULL;
    test_redis_start(&h->redis, args);
}

static void hosts_stop(hosts *h) {
    test_redis_stop(&h->redis);
    kill(h->janitor, SIGTERM);
    waitpid(h->janitor, NULL, 0);
}

/* Start a worker on host k, named host<k>. */
static void start_on(hosts *h, int k, e2e_worker *w) {
    static char url[HOSTS][96], name[HOSTS][16];
    snprintf(url[k], sizeof url[k], "redis://%s:%d/0", h->addr[k], h->redis.port);
    snprintf(name[k], sizeof name[k], "host%c", 'a' + k);
    e2e__worker_startl("/usr/sbin/ip", w, 0, "netns", "exec", h->ns[k], WORKERD_BIN, "-b", url[k],
                       "-n", name[k], "-c", "4", "--heartbeat", "1", "-l", "debug",
                       (const char *)NULL);
    e2e_wait_ready(w);
}

enum { N = 40 };

static void push_all(redisContext *c, const char *prefix, const char *secs) {
    for (int i = 1; i <= N; i++) {
        char id[32];
        snprintf(id, sizeof id, "%s%d", prefix, i);
        e2e_push_task(c, "default", id, "sleep", secs);
    }
}

TEST(a_dead_hosts_messages_are_recovered_by_the_other_host) {
    hosts h;
    hosts_start(&h);
    redisContext *c = e2e_redis(h.redis.port);
    books *b = books_new();
    books_ids(b, "dh-", 1, N, "SUCCESS");
    e2e_worker w[HOSTS];
    int log[HOSTS];
    for (int k = 0; k < HOSTS; k++) {
        start_on(&h, k, &w[k]);
        log[k] = books_log(b, w[k].log);
    }
    push_all(c, "dh-", "[0.3]");
    ASSERT(e2e_log_wait_n(&w[0], "started (tag", 2, 10.0));
    e2e_worker_signal(&w[0], SIGKILL);
    ASSERT_EQ(e2e_worker_wait(&w[0], 5.0), 128 + SIGKILL);
    books_log_fault(b, log[0], "SIGKILL", books_now());
    ASSERT(books_wait_done(b, c, 30.0));
    ASSERT(e2e_log_wait(&w[1], "recovered the messages of dead workers", 1.0));
    e2e_worker_signal(&w[1], SIGTERM);
    ASSERT_EQ(e2e_worker_wait(&w[1], 15.0), 0);
    books_check(b, c);
    books_free(b);
    for (int k = 0; k < HOSTS; k++)
        e2e_worker_stop(&w[k]);
    redisFree(c);
    hosts_stop(&h);
}

TEST(a_host_cut_off_past_its_ttl_cannot_store_late_results) {
    hosts h;
    hosts_start(&h);
    redisContext *c = e2e_redis(h.redis.port);
    books *b = books_new();
    books_ids(b, "ph-", 1, N, "SUCCESS");
    e2e_worker w[HOSTS];
    int log[HOSTS];
    for (int k = 0; k < HOSTS; k++) {
        start_on(&h, k, &w[k]);
        log[k] = books_log(b, w[k].log);
    }
    push_all(c, "ph-", "[1.0]");
    ASSERT(e2e_log_wait_n(&w[0], "started (tag", 2, 10.0));
    /* Cut host a off until host b has recovered its messages (its heartbeat expired). */
    ASSERT_EQ(test_system("ip link set %s down", h.veth[0]), 0);
    ASSERT(e2e_log_wait(&w[1], "recovered the messages of dead workers", 20.0));
    ASSERT_EQ(test_system("ip link set %s up", h.veth[0]), 0);
    books_log_fault(b, log[0], "partition", books_now());
    ASSERT(books_wait_done(b, c, 40.0));
    ASSERT_EQ(e2e_worker_wait(&w[0], 0), -1); /* host a lives on */
    for (int k = 0; k < HOSTS; k++) {
        e2e_worker_signal(&w[k], SIGTERM);
        ASSERT_EQ(e2e_worker_wait(&w[k], 30.0), 0);
    }
    books_check(b, c);
    /* Every task that ran twice was host a's before the cut: its result there came back
     * late and was refused, not stored over the one the second run stored (whichever host
     * ran it again: host a may take the redelivered message itself once it is back). */
    char *alog = e2e_log_read(&w[0]);
    int twice = 0;
    for (int i = 1; i <= N; i++) {
        char id[32], refusal[96];
        snprintf(id, sizeof id, "ph-%d", i);
        if (books_runs(b, id) < 2)
            continue;
        twice++;
        snprintf(refusal, sizeof refusal, "[task %s] this worker was presumed dead", id);
        if (strstr(alog, refusal) == NULL)
            test__fail(__FILE__, __LINE__, "%s ran twice, but host a never had its result refused",
                       id);
    }
    free(alog);
    printf("hosts: %d tasks ran twice, host a's late result refused for each\n", twice);
    ASSERT(twice > 0);
    books_free(b);
    for (int k = 0; k < HOSTS; k++)
        e2e_worker_stop(&w[k]);
    redisFree(c);
    hosts_stop(&h);
}
