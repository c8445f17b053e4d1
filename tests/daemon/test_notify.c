/*
 * test_notify.c - wd_notify speaks systemd's notification protocol: each test plays the
 * manager with a real AF_UNIX datagram socket (a path or an abstract name), points
 * NOTIFY_SOCKET at it, and reads what arrives, with the sender's credentials as systemd
 * sees them. The watchdog tests set WATCHDOG_USEC and WATCHDOG_PID as systemd does.
 */
#include "testlib.h"
#include "wd_notify.h"

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

/* The manager's end: a bound datagram socket that receives credentials. */
struct manager {
    int fd;
    char *dir;         /* for a path socket; NULL for an abstract one */
    char address[128]; /* the NOTIFY_SOCKET value */
};

static void manager_open(struct manager *m, bool abstract) {
    m->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ASSERT(m->fd >= 0);
    int one = 1;
    ASSERT(setsockopt(m->fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof one) == 0);
    struct timeval tv = {.tv_sec = 5};
    ASSERT(setsockopt(m->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    socklen_t len;
    if (abstract) {
        m->dir = NULL;
        snprintf(m->address, sizeof m->address, "@workerd-test-notify-%d-%ld", (int)getpid(),
                 (long)(test_now() * 1e6));
        size_t n = strlen(m->address);
        memcpy(sa.sun_path + 1, m->address + 1, n - 1); /* sun_path[0] stays NUL */
        len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    } else {
        m->dir = test_tmpdir("notify");
        snprintf(m->address, sizeof m->address, "%s/notify", m->dir);
        ASSERT(strlen(m->address) < sizeof sa.sun_path);
        strcpy(sa.sun_path, m->address);
        len = sizeof sa;
    }
    ASSERT(bind(m->fd, (struct sockaddr *)&sa, len) == 0);
    ASSERT(setenv("NOTIFY_SOCKET", m->address, 1) == 0);
}

/* Receive one datagram into buf (NUL-terminated); *pid gets the sender's pid. */
static void manager_recv(struct manager *m, char *buf, size_t size, pid_t *pid) {
    union {
        struct cmsghdr align;
        char space[CMSG_SPACE(sizeof(struct ucred))];
    } control;
    struct iovec iov = {.iov_base = buf, .iov_len = size - 1};
    struct msghdr msg = {.msg_iov = &iov,
                         .msg_iovlen = 1,
                         .msg_control = &control,
                         .msg_controllen = sizeof control};
    ssize_t n = recvmsg(m->fd, &msg, 0);
    ASSERT(n >= 0);
    buf[n] = '\0';
    *pid = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS) {
            struct ucred cred;
            memcpy(&cred, CMSG_DATA(c), sizeof cred);
            *pid = cred.pid;
        }
    }
}

/* True when nothing more is waiting. */
static bool manager_empty(struct manager *m) {
    char c;
    return recv(m->fd, &c, 1, MSG_DONTWAIT) < 0 && errno == EAGAIN;
}

/* Throw away everything waiting. */
static void manager_drain(struct manager *m) {
    while (!manager_empty(m)) {
    }
}

static void manager_close(struct manager *m) {
    close(m->fd);
    if (m->dir != NULL) {
        test_rmtree(m->dir);
        free(m->dir);
    }
    unsetenv("NOTIFY_SOCKET");
}

TEST(notify_sends_state_to_a_path_socket) {
    struct manager m;
    manager_open(&m, false);
    ASSERT_EQ(wd_notify("READY=1\nSTATUS=consuming default"), 0);
    char buf[256];
    pid_t pid;
    manager_recv(&m, buf, sizeof buf, &pid);
    ASSERT_STREQ(buf, "READY=1\nSTATUS=consuming default");
    ASSERT(manager_empty(&m));
    manager_close(&m);
}

TEST(notify_sends_state_to_an_abstract_socket) {
    struct manager m;
    manager_open(&m, true);
    ASSERT_EQ(wd_notify("STOPPING=1"), 0);
    char buf[256];
    pid_t pid;
    manager_recv(&m, buf, sizeof buf, &pid);
    ASSERT_STREQ(buf, "STOPPING=1");
    manager_close(&m);
}

/* systemd accepts a notification only from the unit's main pid, read from the kernel's
 * credentials: they must name this process. */
TEST(notify_arrives_with_the_senders_pid) {
    struct manager m;
    manager_open(&m, false);
    ASSERT_EQ(wd_notify("WATCHDOG=1"), 0);
    char buf[64];
    pid_t pid;
    manager_recv(&m, buf, sizeof buf, &pid);
    ASSERT_EQ(pid, getpid());
    manager_close(&m);
}

TEST(notify_sends_each_call_as_its_own_datagram_in_order) {
    struct manager m;
    manager_open(&m, true);
    ASSERT_EQ(wd_notify("RELOADING=1"), 0);
    ASSERT_EQ(wd_notifyf("READY=1\nSTATUS=%d tasks running", 42), 0);
    char buf[256];
    pid_t pid;
    manager_recv(&m, buf, sizeof buf, &pid);
    ASSERT_STREQ(buf, "RELOADING=1");
    manager_recv(&m, buf, sizeof buf, &pid);
    ASSERT_STREQ(buf, "READY=1\nSTATUS=42 tasks running");
    ASSERT(manager_empty(&m));
    manager_close(&m);
}

TEST(notify_outside_systemd_is_a_quiet_success) {
    unsetenv("NOTIFY_SOCKET");
    ASSERT_EQ(wd_notify("READY=1"), 0);
    ASSERT(setenv("NOTIFY_SOCKET", "", 1) == 0);
    ASSERT_EQ(wd_notify("READY=1"), 0);
    unsetenv("NOTIFY_SOCKET");
}

TEST(notify_rejects_a_relative_or_overlong_socket_address) {
    ASSERT(setenv("NOTIFY_SOCKET", "run/notify", 1) == 0);
    ASSERT_EQ(wd_notify("READY=1"), -EINVAL);
    ASSERT(setenv("NOTIFY_SOCKET", "@", 1) == 0);
    ASSERT_EQ(wd_notify("READY=1"), -EINVAL);
    char longpath[200];
    memset(longpath, 'x', sizeof longpath - 1);
    longpath[0] = '/';
    longpath[sizeof longpath - 1] = '\0';
    ASSERT(setenv("NOTIFY_SOCKET", longpath, 1) == 0);
    ASSERT_EQ(wd_notify("READY=1"), -EINVAL);
    unsetenv("NOTIFY_SOCKET");
}

TEST(notify_reports_a_manager_that_is_not_listening) {
    char *dir = test_tmpdir("notify");
    char path[512];
    snprintf(path, sizeof path, "%s/nobody", dir);
    ASSERT(setenv("NOTIFY_SOCKET", path, 1) == 0);
    ASSERT_EQ(wd_notify("READY=1"), -ENOENT);

    /* A socket that was bound and closed: its file remains, nobody receives. */
    int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    strcpy(sa.sun_path, path);
    ASSERT(bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    close(fd);
    ASSERT_EQ(wd_notify("READY=1"), -ECONNREFUSED);
    unsetenv("NOTIFY_SOCKET");
    test_rmtree(dir);
    free(dir);
}

/* A manager that stops reading must not hang the daemon's event loop: once its queue is
 * full, each further notification gives up after about 100 ms. */
TEST(notify_gives_up_quickly_when_the_manager_queue_is_full) {
    struct manager m;
    manager_open(&m, false);
    int rc = 0, sent = 0;
    double worst = 0;
    while (rc == 0 && sent < 100000) {
        double t0 = test_now();
        rc = wd_notify("WATCHDOG=1");
        double took = test_now() - t0;
        if (took > worst)
            worst = took;
        if (rc == 0)
            sent++;
    }
    ASSERT_EQ(rc, -EAGAIN);
    ASSERT(sent > 0);
    ASSERT_RANGE(worst, 0.0, TEST_SOON); /* a blocking send would wait for ever */
    /* Once the manager reads again, notifications get through. */
    char buf[64];
    pid_t pid;
    manager_drain(&m);
    ASSERT_EQ(wd_notify("READY=1"), 0);
    manager_recv(&m, buf, sizeof buf, &pid);
    ASSERT_STREQ(buf, "READY=1");
    manager_close(&m);
}

TEST(watchdog_is_off_without_watchdog_usec) {
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
    ASSERT_EQ(wd_notify_watchdog_usec(), 0);
    ASSERT(setenv("WATCHDOG_USEC", "", 1) == 0);
    ASSERT_EQ(wd_notify_watchdog_usec(), 0);
    unsetenv("WATCHDOG_USEC");
}

TEST(watchdog_interval_is_read_for_this_process) {
    char pid[32];
    snprintf(pid, sizeof pid, "%d", (int)getpid());
    ASSERT(setenv("WATCHDOG_USEC", "30000000", 1) == 0);
    ASSERT(setenv("WATCHDOG_PID", pid, 1) == 0);
    ASSERT_EQ(wd_notify_watchdog_usec(), 30000000);
    unsetenv("WATCHDOG_PID"); /* no pid: the interval is ours */
    ASSERT_EQ(wd_notify_watchdog_usec(), 30000000);
    unsetenv("WATCHDOG_USEC");
}

TEST(watchdog_of_another_process_is_off) {
    char pid[32];
    snprintf(pid, sizeof pid, "%d", (int)getppid());
    ASSERT(setenv("WATCHDOG_USEC", "30000000", 1) == 0);
    ASSERT(setenv("WATCHDOG_PID", pid, 1) == 0);
    ASSERT_EQ(wd_notify_watchdog_usec(), 0);
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
}

TEST(watchdog_rejects_malformed_values) {
    unsetenv("WATCHDOG_PID");
    const char *bad[] = {"0", "-5", " 5", "5s", "abc", "99999999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ASSERT(setenv("WATCHDOG_USEC", bad[i], 1) == 0);
        ASSERT_EQ(wd_notify_watchdog_usec(), -EINVAL);
    }
    ASSERT(setenv("WATCHDOG_USEC", "1000", 1) == 0);
    ASSERT(setenv("WATCHDOG_PID", "x1", 1) == 0);
    ASSERT_EQ(wd_notify_watchdog_usec(), -EINVAL);
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
}
