/*
 * test_sdnotify.c - workerd talks to systemd: booted with a fake NOTIFY_SOCKET (a real
 * AF_UNIX datagram socket playing systemd), it says READY=1 once consuming, feeds the
 * watchdog from its loop, says RELOADING=1 then READY=1 on SIGHUP, and STOPPING=1 on
 * SIGTERM before it exits 0.
 */
#include "e2e.h"
#include "testlib.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

struct fake_systemd {
    int fd;
    char path[108];
};

static void fake_start(struct fake_systemd *s, const char *dir) {
    s->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ASSERT(s->fd >= 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(s->path, sizeof s->path, "%s/notify", dir);
    snprintf(a.sun_path, sizeof a.sun_path, "%s", s->path);
    ASSERT_EQ(bind(s->fd, (struct sockaddr *)&a, sizeof a), 0);
}

/* The next datagram, within seconds; "" on time-out. */
static const char *fake_next(struct fake_systemd *s, double seconds, char *buf, size_t len) {
    struct pollfd p = {.fd = s->fd, .events = POLLIN};
    buf[0] = '\0';
    if (poll(&p, 1, (int)(seconds * 1000)) == 1) {
        ssize_t n = recv(s->fd, buf, len - 1, 0);
        buf[n > 0 ? n : 0] = '\0';
    }
    return buf;
}

/* Wait for a datagram containing what, skipping watchdog pings unless asked for them. */
static bool fake_expect(struct fake_systemd *s, const char *what, double seconds) {
    double end = test_now() + seconds;
    char buf[1024];
    while (test_now() < end) {
        fake_next(s, end - test_now(), buf, sizeof buf);
        if (strstr(buf, what))
            return true;
        if (buf[0] && !strstr(buf, "WATCHDOG=1"))
            fprintf(stderr, "notify: %s\n", buf);
    }
    return false;
}

static pid_t start_workerd(int redis_port, const char *notify_path, const char *log) {
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 2);
        char url[64];
        snprintf(url, sizeof url, "redis://127.0.0.1:%d/0", redis_port);
        setenv("NOTIFY_SOCKET", notify_path, 1);
        setenv("WATCHDOG_USEC", "200000", 1);
        execl(WORKERD_BIN, "workerd", "-P", "green", "-b", url, (char *)NULL);
        _exit(127);
    }
    return pid;
}

TEST(test_workerd_notifies_ready_watchdog_reloading_and_stopping_in_order) {
    test_redis redis;
    test_redis_start(&redis, NULL);
    char *dir = test_tmpdir("notify");
    struct fake_systemd sd;
    fake_start(&sd, dir);
    char log[512];
    snprintf(log, sizeof log, "%s/workerd.log", dir);
    pid_t pid = start_workerd(redis.port, sd.path, log);

    ASSERT(fake_expect(&sd, "READY=1", 10));
    ASSERT(fake_expect(&sd, "WATCHDOG=1", 1)); /* every 100 ms: half of WATCHDOG_USEC */
    ASSERT(fake_expect(&sd, "WATCHDOG=1", 1));
    kill(pid, SIGHUP);
    ASSERT(fake_expect(&sd, "RELOADING=1", 5));
    ASSERT(fake_expect(&sd, "READY=1", 5));
    kill(pid, SIGTERM);
    ASSERT(fake_expect(&sd, "STOPPING=1", 5));
    int st;
    ASSERT_EQ(waitpid(pid, &st, 0), pid);
    ASSERT(WIFEXITED(st));
    ASSERT_EQ(WEXITSTATUS(st), 0);

    close(sd.fd);
    test_rmtree(dir);
    free(dir);
    test_redis_stop(&redis);
}

TEST(test_sighup_with_a_broken_config_keeps_running) {
    test_redis redis;
    test_redis_start(&redis, NULL);
    char *dir = test_tmpdir("hup");
    char conf[512], log[512], url[64];
    snprintf(conf, sizeof conf, "%s/workerd.conf", dir);
    snprintf(log, sizeof log, "%s/workerd.log", dir);
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/0", redis.port);
    FILE *f = fopen(conf, "w");
    fprintf(f, "WORKERD_LOGLEVEL=info\n");
    fclose(f);
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 2);
        execl(WORKERD_BIN, "workerd", "--config", conf, "-b", url, (char *)NULL);
        _exit(127);
    }
    double end = test_now() + 10;
    while (test_now() < end && test_system("grep -q 'ready: consuming' '%s'", log) != 0)
        usleep(20000);
    f = fopen(conf, "w");
    fprintf(f, "WORKERD_CONCURRENCY=lots\n");
    fclose(f);
    kill(pid, SIGHUP);
    end = test_now() + 5;
    while (test_now() < end && test_system("grep -q 'reload refused' '%s'", log) != 0)
        usleep(20000);
    ASSERT_EQ(test_system("grep -q \"reload refused.*WORKERD_CONCURRENCY: 'lots' is not a "
                          "number\" '%s'",
                          log),
              0);
    ASSERT_EQ(kill(pid, 0), 0); /* still running */
    kill(pid, SIGTERM);
    int st;
    ASSERT_EQ(waitpid(pid, &st, 0), pid);
    ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    test_rmtree(dir);
    free(dir);
    test_redis_stop(&redis);
}

/* A reload that changes what the worker is built on (here its queues) restarts it
 * gracefully in place: the running task finishes, the process (and so systemd's MAINPID)
 * stays, and it consumes the new queue afterwards. */
TEST(test_sighup_with_new_queues_restarts_in_place_without_losing_a_task) {
    test_redis redis;
    test_redis_start(&redis, NULL);
    char *dir = test_tmpdir("hupq");
    char conf[512];
    snprintf(conf, sizeof conf, "%s/workerd.conf", dir);
    FILE *f = fopen(conf, "w");
    fprintf(f, "WORKERD_QUEUES=first\n");
    fclose(f);
    e2e_worker w;
    E2E_START_READY(&w, redis.port, "--config", conf);
    pid_t pid = w.pid;
    redisContext *c = e2e_redis(redis.port);
    e2e_push_task(c, "first", "during-reload", "sleep", "[0.5]");
    json_t *started = e2e_wait_result(c, "during-reload", "STARTED", 10.0);
    ASSERT(started != NULL);
    json_decref(started);

    f = fopen(conf, "w");
    fprintf(f, "WORKERD_QUEUES=second\n");
    fclose(f);
    kill(pid, SIGHUP);
    ASSERT(e2e_log_wait_n(&w, "ready: consuming second", 1, 10.0));
    ASSERT_EQ(kill(pid, 0), 0); /* the same process */
    json_t *done = e2e_result(c, "during-reload");
    ASSERT(done != NULL);
    ASSERT_STREQ(e2e_jstr(done, "status"), "SUCCESS");
    json_decref(done);
    e2e_push_task(c, "second", "after-reload", "echo", "[1]");
    json_t *res = e2e_wait_result(c, "after-reload", "SUCCESS", 10.0);
    ASSERT(res != NULL);
    json_decref(res);

    e2e_worker_signal(&w, SIGTERM);
    ASSERT_EQ(e2e_worker_wait(&w, 10.0), 0);
    e2e_worker_stop(&w);
    redisFree(c);
    test_rmtree(dir);
    free(dir);
    test_redis_stop(&redis);
}
