/*
 * test_io.c - fd waits and the socket helpers of green_io.h, on real pipes, socketpairs
 * and TCP / Unix sockets on the loopback.
 */
#include "green.h"
#include "green_io.h"
#include "testlib.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

static void run(green_fn fn) {
    ASSERT_EQ(green_run(NULL, NULL, fn, NULL, NULL), 0);
}

static void nb_pipe(int fds[2]) {
    ASSERT_EQ(pipe2(fds, O_NONBLOCK | O_CLOEXEC), 0);
}

static void nb_socketpair(int fds[2]) {
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
}

/* ---- green_fd_wait ------------------------------------------------------------------ */

static int pipe_fds[2];

static void *write_after_50ms(void *arg) {
    (void)arg;
    ASSERT_EQ(green_sleep(0.05), 0);
    ASSERT_EQ(write(pipe_fds[1], "x", 1), 1);
    return NULL;
}

static void *wait_readable_main(void *arg) {
    (void)arg;
    nb_pipe(pipe_fds);
    green_t writer;
    ASSERT_EQ(green_spawn(&writer, write_after_50ms, NULL), 0);
    double t0 = test_now();
    ASSERT_EQ(green_fd_wait(pipe_fds[0], GREEN_READ, TEST_NEVER), GREEN_READ);
    ASSERT_RANGE(test_now() - t0, 0.03, TEST_SOON);
    ASSERT_EQ(green_join(writer, NULL), 0);
    close(pipe_fds[0]);
    close(pipe_fds[1]);
    return NULL;
}

TEST(test_fd_wait_wakes_when_pipe_becomes_readable) {
    run(wait_readable_main);
}

static void *wait_writable_main(void *arg) {
    (void)arg;
    int sp[2];
    nb_socketpair(sp);
    double t0 = test_now();
    /* Writable at once, not readable: only the ready bit comes back. */
    ASSERT_EQ(green_fd_wait(sp[0], GREEN_READ | GREEN_WRITE, TEST_NEVER), GREEN_WRITE);
    ASSERT_RANGE(test_now() - t0, 0, TEST_SOON);
    close(sp[0]);
    close(sp[1]);
    return NULL;
}

TEST(test_fd_wait_returns_only_the_ready_events) {
    run(wait_writable_main);
}

static void *wait_timeout_main(void *arg) {
    (void)arg;
    int fds[2];
    nb_pipe(fds);
    double t0 = test_now();
    ASSERT_EQ(green_fd_wait(fds[0], GREEN_READ, 0.1), -ETIMEDOUT);
    ASSERT_RANGE(test_now() - t0, 0.08, TEST_SOON);
    /* A zero timeout only looks. */
    ASSERT_EQ(green_fd_wait(fds[0], GREEN_READ, 0), -ETIMEDOUT);
    close(fds[0]);
    close(fds[1]);
    return NULL;
}

TEST(test_fd_wait_times_out) {
    run(wait_timeout_main);
}

static void *wait_forever(void *arg) {
    (void)arg;
    return (void *)(intptr_t)green_fd_wait(pipe_fds[0], GREEN_READ, -1);
}

/* Uses its stack hard, so that a watcher still pointing into a dead waiter's frame (the
 * same recycled stack) would be overwritten and crash or trip ASan when it fired. */
static void *scribble(void *arg) {
    (void)arg;
    volatile char buf[16384];
    memset((char *)buf, 0xa5, sizeof buf);
    return NULL;
}

static void *wait_killed_main(void *arg) {
    (void)arg;
    nb_pipe(pipe_fds);
    green_t waiter;
    void *ret = NULL;
    ASSERT_EQ(green_spawn(&waiter, wait_forever, NULL), 0);
    ASSERT_EQ(green_sleep(0.02), 0);
    double t0 = test_now();
    ASSERT_EQ(green_kill(waiter), 0);
    ASSERT_EQ(green_join(waiter, &ret), 0);
    ASSERT_EQ((intptr_t)ret, -ECANCELED);
    ASSERT_RANGE(test_now() - t0, 0, TEST_SOON);
    /* The fd becoming ready after the waiter left must not reach its old frame. */
    green_t s;
    ASSERT_EQ(green_spawn(&s, scribble, NULL), 0);
    ASSERT_EQ(green_join(s, NULL), 0);
    ASSERT_EQ(write(pipe_fds[1], "x", 1), 1);
    ASSERT_EQ(green_sleep(0.05), 0);
    close(pipe_fds[0]);
    close(pipe_fds[1]);
    return NULL;
}

TEST(test_fd_wait_returns_ecanceled_when_killed) {
    run(wait_killed_main);
}

static void *wait_bad_fd_main(void *arg) {
    (void)arg;
    ASSERT_EQ(green_fd_wait(-1, GREEN_READ, 1), -EBADF);
    ASSERT_EQ(green_fd_wait(0, 0, 1), -EINVAL);
    ASSERT_EQ(green_fd_wait(0, 0x100, 1), -EINVAL);
    /* A closed descriptor is refused before libev ever sees it. */
    int fds[2];
    nb_pipe(fds);
    close(fds[0]);
    close(fds[1]);
    double t0 = test_now();
    ASSERT_EQ(green_fd_wait(fds[0], GREEN_READ, TEST_NEVER), -EBADF);
    ASSERT_RANGE(test_now() - t0, 0, TEST_SOON);
    return NULL;
}

TEST(test_fd_wait_rejects_bad_descriptors) {
    run(wait_bad_fd_main);
}

/* ---- read / write ------------------------------------------------------------------- */

static void *read_timeout_main(void *arg) {
    (void)arg;
    int sp[2];
    char c;
    nb_socketpair(sp);
    double t0 = test_now();
    ASSERT_EQ(green_read(sp[0], &c, 1, 0.1), -ETIMEDOUT);
    ASSERT_RANGE(test_now() - t0, 0.08, TEST_SOON);
    close(sp[0]);
    close(sp[1]);
    return NULL;
}

TEST(test_read_times_out_when_no_data_comes) {
    run(read_timeout_main);
}

static void *read_eof_main(void *arg) {
    (void)arg;
    int sp[2];
    char buf[16];
    nb_socketpair(sp);
    ASSERT_EQ(write(sp[1], "abc", 3), 3);
    close(sp[1]);
    ASSERT_EQ(green_read(sp[0], buf, sizeof buf, 1), 3);
    ASSERT_EQ(green_read(sp[0], buf, sizeof buf, 1), 0);
    close(sp[0]);
    return NULL;
}

TEST(test_read_returns_zero_at_end_of_stream) {
    run(read_eof_main);
}

static void *read_full_short_main(void *arg) {
    (void)arg;
    int sp[2];
    char buf[10];
    nb_socketpair(sp);
    ASSERT_EQ(write(sp[1], "abc", 3), 3);
    close(sp[1]);
    ASSERT_EQ(green_read_full(sp[0], buf, sizeof buf, 1), 3);
    ASSERT(memcmp(buf, "abc", 3) == 0);
    close(sp[0]);
    return NULL;
}

TEST(test_read_full_returns_short_count_at_end_of_stream) {
    run(read_full_short_main);
}

static int trickle_fd;

static void *trickle_writer(void *arg) {
    (void)arg;
    for (const char *p = "hello"; *p; p++) {
        ASSERT_EQ(green_sleep(0.01), 0);
        ASSERT_EQ(write(trickle_fd, p, 1), 1);
    }
    return NULL;
}

static void *read_full_trickle_main(void *arg) {
    (void)arg;
    int sp[2];
    char buf[6] = {0};
    nb_socketpair(sp);
    trickle_fd = sp[1];
    green_t w;
    ASSERT_EQ(green_spawn(&w, trickle_writer, NULL), 0);
    ASSERT_EQ(green_read_full(sp[0], buf, 5, 5), 5);
    ASSERT_STREQ(buf, "hello");
    ASSERT_EQ(green_join(w, NULL), 0);
    close(sp[0]);
    close(sp[1]);
    return NULL;
}

TEST(test_read_full_collects_a_trickle) {
    run(read_full_trickle_main);
}

#define BIG (8u << 20)

static void *read_and_check_big(void *arg) {
    int fd = (int)(intptr_t)arg;
    static char buf[65536];
    size_t got = 0;
    for (;;) {
        ssize_t n = green_read(fd, buf, sizeof buf, 10);
        ASSERT(n >= 0);
        if (n == 0)
            break;
        for (ssize_t i = 0; i < n; i++)
            ASSERT_EQ((unsigned char)buf[i], (unsigned char)((got + (size_t)i) * 7));
        got += (size_t)n;
    }
    return (void *)(uintptr_t)got;
}

static void *write_big_main(void *arg) {
    (void)arg;
    int sp[2];
    nb_socketpair(sp);
    unsigned char *data = malloc(BIG);
    for (size_t i = 0; i < BIG; i++)
        data[i] = (unsigned char)(i * 7);
    green_t reader;
    void *got = NULL;
    ASSERT_EQ(green_spawn(&reader, read_and_check_big, (void *)(intptr_t)sp[1]), 0);
    ASSERT_EQ(green_write_all(sp[0], data, BIG, 20), 0);
    close(sp[0]);
    ASSERT_EQ(green_join(reader, &got), 0);
    ASSERT_EQ((uintptr_t)got, BIG);
    close(sp[1]);
    free(data);
    return NULL;
}

TEST(test_write_all_writes_more_than_the_socket_buffer) {
    run(write_big_main);
}

static void *write_timeout_main(void *arg) {
    (void)arg;
    int sp[2];
    nb_socketpair(sp);
    char *data = calloc(1, BIG);
    double t0 = test_now();
    ASSERT_EQ(green_write_all(sp[0], data, BIG, 0.1), -ETIMEDOUT);
    ASSERT_RANGE(test_now() - t0, 0.08, TEST_SOON);
    free(data);
    close(sp[0]);
    close(sp[1]);
    return NULL;
}

TEST(test_write_all_times_out_when_peer_never_reads) {
    run(write_timeout_main);
}

static void *write_epipe_main(void *arg) {
    (void)arg;
    int sp[2];
    nb_socketpair(sp);
    close(sp[1]);
    ASSERT_EQ(green_write_all(sp[0], "x", 1, 1), -EPIPE);
    close(sp[0]);
    /* A pipe takes the write() path. */
    int fds[2];
    nb_pipe(fds);
    ASSERT_EQ(green_write_all(fds[1], "yz", 2, 1), 0);
    close(fds[0]);
    ASSERT_EQ(green_write_all(fds[1], "x", 1, 1), -EPIPE);
    close(fds[1]);
    return NULL;
}

TEST(test_write_to_closed_peer_returns_epipe) {
    run(write_epipe_main);
}

static void *pending_kill_main(void *arg) {
    (void)arg;
    int sp[2];
    char c;
    nb_socketpair(sp);
    ASSERT_EQ(write(sp[1], "x", 1), 1);
    /* Even with data ready, a pending kill wins, and is consumed by that one call. */
    ASSERT_EQ(green_kill(green_self()), 0);
    ASSERT_EQ(green_read(sp[0], &c, 1, 1), -ECANCELED);
    ASSERT_EQ(green_read(sp[0], &c, 1, 1), 1);
    close(sp[0]);
    close(sp[1]);
    return NULL;
}

TEST(test_read_with_pending_kill_returns_ecanceled) {
    run(pending_kill_main);
}

/* ---- connect / accept / listen ----------------------------------------------------- */

static void *refused_main(void *arg) {
    (void)arg;
    int port = test_free_port();
    ASSERT_EQ(green_tcp_connect("127.0.0.1", port, 2), -ECONNREFUSED);
    return NULL;
}

TEST(test_connect_to_closed_port_is_refused) {
    run(refused_main);
}

/* A listener that never accepts: once its backlog is full, Linux drops further SYNs, so
 * a connect can only end by its timeout. */
static void *never_accepts_main(void *arg) {
    (void)arg;
    int lfd = green_tcp_listen("127.0.0.1", 0, 1);
    ASSERT(lfd >= 0);
    int port = green_sock_port(lfd);
    int fds[16], n = 0, rc = 0;
    double took = 0;
    while (n < 16) {
        double t0 = test_now();
        rc = green_tcp_connect("127.0.0.1", port, 0.2);
        took = test_now() - t0;
        if (rc < 0)
            break;
        fds[n++] = rc;
    }
    ASSERT_EQ(rc, -ETIMEDOUT);
    ASSERT_RANGE(took, 0.15, TEST_SOON);
    ASSERT(n >= 1);
    for (int i = 0; i < n; i++)
        close(fds[i]);
    close(lfd);
    return NULL;
}

TEST(test_connect_times_out_when_listener_never_accepts) {
    run(never_accepts_main);
}

static void *accept_connect_main(void *arg) {
    (void)arg;
    int lfd = green_tcp_listen("127.0.0.1", 0, 16);
    ASSERT(lfd >= 0);
    int port = green_sock_port(lfd);
    ASSERT(port > 0);
    double t0 = test_now();
    ASSERT_EQ(green_accept(lfd, 0.1), -ETIMEDOUT);
    ASSERT_RANGE(test_now() - t0, 0.08, TEST_SOON);

    /* A name goes through the thread pool's resolver; "localhost" is in /etc/hosts. */
    int cfd = green_tcp_connect("localhost", port, 5);
    ASSERT(cfd >= 0);
    int sfd = green_accept(lfd, 5);
    ASSERT(sfd >= 0);
    ASSERT(fcntl(sfd, F_GETFL) & O_NONBLOCK);
    ASSERT(fcntl(sfd, F_GETFD) & FD_CLOEXEC);
    char buf[4] = {0};
    ASSERT_EQ(green_write_all(cfd, "ping", 4, 2), 0);
    ASSERT_EQ(green_read_full(sfd, buf, 4, 2), 4);
    ASSERT(memcmp(buf, "ping", 4) == 0);
    close(cfd);
    close(sfd);
    close(lfd);
    return NULL;
}

TEST(test_accept_and_connect_by_name_exchange_data) {
    run(accept_connect_main);
}

static void *emfile_main(void *arg) {
    (void)arg;
    int lfd = green_tcp_listen("127.0.0.1", 0, 16);
    ASSERT(lfd >= 0);
    int cfd = green_tcp_connect("127.0.0.1", green_sock_port(lfd), 2);
    ASSERT(cfd >= 0);
    struct rlimit saved, low;
    ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &saved), 0);
    /* The limit becomes the lowest free descriptor, so the next new one is over it. */
    int lowest = dup(0);
    ASSERT(lowest >= 0);
    close(lowest);
    low = saved;
    low.rlim_cur = (rlim_t)lowest;
    ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
    int rc = green_accept(lfd, 1);
    ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &saved), 0);
    ASSERT_EQ(rc, -EMFILE);
    /* With descriptors back, accepting works again. (The kernel kept the first
     * connection queued; valgrind, which checks its fd limit after the real accept,
     * closes it instead. A second client makes the test hold under both.) */
    int cfd2 = green_tcp_connect("127.0.0.1", green_sock_port(lfd), 2);
    ASSERT(cfd2 >= 0);
    int sfd = green_accept(lfd, 1);
    ASSERT(sfd >= 0);
    close(cfd2);
    close(sfd);
    close(cfd);
    close(lfd);
    return NULL;
}

TEST(test_accept_reports_emfile_when_out_of_descriptors) {
    run(emfile_main);
}

static void *listen_errors_main(void *arg) {
    (void)arg;
    ASSERT_EQ(green_tcp_listen("localhost", 0, 1), -EINVAL);
    ASSERT_EQ(green_tcp_listen("127.0.0.1", 70000, 1), -EINVAL);
    int lfd = green_tcp_listen("127.0.0.1", 0, 1);
    ASSERT(lfd >= 0);
    /* SO_REUSEADDR does not allow two listeners on one port. */
    ASSERT_EQ(green_tcp_listen("127.0.0.1", green_sock_port(lfd), 1), -EADDRINUSE);
    close(lfd);
    ASSERT_EQ(green_tcp_connect("127.0.0.1", 0, 1), -EINVAL);
    return NULL;
}

TEST(test_listen_and_connect_reject_bad_arguments) {
    run(listen_errors_main);
}

static char *unix_dir;

static void *unix_main(void *arg) {
    (void)arg;
    char path[512];
    snprintf(path, sizeof path, "%s/sock", unix_dir);
    ASSERT_EQ(green_unix_connect(path, 1), -ENOENT);
    int lfd = green_unix_listen(path, 4);
    ASSERT(lfd >= 0);
    int cfd = green_unix_connect(path, 2);
    ASSERT(cfd >= 0);
    int sfd = green_accept(lfd, 2);
    ASSERT(sfd >= 0);
    char buf[3] = {0};
    ASSERT_EQ(green_write_all(sfd, "hi", 2, 2), 0);
    ASSERT_EQ(green_read_full(cfd, buf, 2, 2), 2);
    ASSERT_STREQ(buf, "hi");
    close(cfd);
    close(sfd);
    close(lfd);
    /* The socket file is left behind, with nobody listening. */
    ASSERT_EQ(green_unix_connect(path, 1), -ECONNREFUSED);
    return NULL;
}

TEST(test_unix_socket_connects_and_reports_missing_path) {
    unix_dir = test_tmpdir("io");
    run(unix_main);
    test_rmtree(unix_dir);
    free(unix_dir);
}

/* A Unix listener with backlog 0 takes one pending connection; the next connect finds
 * the backlog full (EAGAIN) and retries until its deadline. */
static int fill_unix_backlog(const char *path, int fds[8], int *n) {
    int rc = 0;
    *n = 0;
    while (*n < 8) {
        rc = green_unix_connect(path, 0.1);
        if (rc < 0)
            break;
        fds[(*n)++] = rc;
    }
    return rc;
}

static void *unix_full_main(void *arg) {
    (void)arg;
    char path[512];
    snprintf(path, sizeof path, "%s/full", unix_dir);
    int lfd = green_unix_listen(path, 0);
    ASSERT(lfd >= 0);
    int fds[8], n;
    double t0 = test_now();
    ASSERT_EQ(fill_unix_backlog(path, fds, &n), -ETIMEDOUT);
    ASSERT(n >= 1);
    ASSERT_RANGE(test_now() - t0, 0.08, TEST_SOON);
    for (int i = 0; i < n; i++)
        close(fds[i]);
    close(lfd);
    return NULL;
}

TEST(test_unix_connect_times_out_when_backlog_stays_full) {
    unix_dir = test_tmpdir("io");
    run(unix_full_main);
    test_rmtree(unix_dir);
    free(unix_dir);
}

static int unix_lfd;

static void *accept_after_50ms(void *arg) {
    (void)arg;
    ASSERT_EQ(green_sleep(0.05), 0);
    return (void *)(intptr_t)green_accept(unix_lfd, TEST_NEVER);
}

static void *unix_room_main(void *arg) {
    (void)arg;
    char path[512];
    snprintf(path, sizeof path, "%s/room", unix_dir);
    unix_lfd = green_unix_listen(path, 0);
    ASSERT(unix_lfd >= 0);
    int fds[8], n;
    ASSERT_EQ(fill_unix_backlog(path, fds, &n), -ETIMEDOUT);
    /* Once the server accepts one, the waiting connect gets in. */
    green_t acceptor;
    void *sfd = NULL;
    ASSERT_EQ(green_spawn(&acceptor, accept_after_50ms, NULL), 0);
    int cfd = green_unix_connect(path, TEST_NEVER);
    ASSERT(cfd >= 0);
    ASSERT_EQ(green_join(acceptor, &sfd), 0);
    ASSERT((intptr_t)sfd >= 0);
    close((int)(intptr_t)sfd);
    close(cfd);
    for (int i = 0; i < n; i++)
        close(fds[i]);
    close(unix_lfd);
    return NULL;
}

TEST(test_unix_connect_gets_in_when_backlog_frees_up) {
    unix_dir = test_tmpdir("io");
    run(unix_room_main);
    test_rmtree(unix_dir);
    free(unix_dir);
}
