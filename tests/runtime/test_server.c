/*
 * test_server.c - green_server (gevent's StreamServer) against real TCP clients on
 * 127.0.0.1: client greenlets, and a client in another process; and its shedding: at
 * the bound, or out of descriptors, a new client pushes out the oldest idle connection.
 */
#include "green.h"
#include "green_io.h"
#include "green_server.h"
#include "testlib.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static void run(green_fn fn) {
    ASSERT_EQ(green_run(NULL, NULL, fn, NULL, NULL), 0);
}

/* What the handlers saw: how many ran at once, at most, and how their waits ended. */
static int in_handler, peak, handled;
static double handler_delay;
static int handler_rc;

static void reset_counters(double delay) {
    in_handler = peak = handled = 0;
    handler_delay = delay;
    handler_rc = 1;
}

/* Echo every byte back until the client closes, after handler_delay seconds. */
static void echo_handler(green_server_conn *conn, int fd, void *arg) {
    (void)conn;
    (void)arg;
    if (++in_handler > peak)
        peak = in_handler;
    char buf[4096];
    if (handler_delay > 0)
        ASSERT_EQ(green_sleep(handler_delay), 0);
    for (;;) {
        ssize_t n = green_read(fd, buf, sizeof buf, 10);
        if (n <= 0)
            break;
        if (green_write_all(fd, buf, (size_t)n, 10) < 0)
            break;
    }
    in_handler--;
    handled++;
}

static int server_port;

/* One client: connect, send a line naming itself, expect it back, close. */
static void *echo_client(void *arg) {
    int id = (int)(intptr_t)arg;
    char msg[32], back[32] = {0};
    int len = snprintf(msg, sizeof msg, "client %d\n", id);
    int fd = green_tcp_connect("127.0.0.1", server_port, 10);
    ASSERT(fd >= 0);
    ASSERT_EQ(green_write_all(fd, msg, (size_t)len, 10), 0);
    ASSERT_EQ(green_read_full(fd, back, (size_t)len, 10), len);
    ASSERT_STREQ(back, msg);
    close(fd);
    return NULL;
}

static green_server *start_echo(int *lfd, size_t max_conns) {
    *lfd = green_tcp_listen("127.0.0.1", 0, 1024);
    ASSERT(*lfd >= 0);
    server_port = green_sock_port(*lfd);
    green_server *s = NULL;
    ASSERT_EQ(green_server_start(&s, *lfd, echo_handler, NULL, max_conns), 0);
    return s;
}

static void run_clients(int n) {
    green_t *clients = calloc((size_t)n, sizeof *clients);
    for (int i = 0; i < n; i++)
        ASSERT_EQ(green_spawn(&clients[i], echo_client, (void *)(intptr_t)i), 0);
    for (int i = 0; i < n; i++)
        ASSERT_EQ(green_join(clients[i], NULL), 0);
    free(clients);
}

static void *one_client_main(void *arg) {
    (void)arg;
    int lfd;
    reset_counters(0);
    green_server *s = start_echo(&lfd, 0);
    run_clients(1);
    ASSERT_EQ(green_server_stop(s, 1), 0);
    ASSERT_EQ(handled, 1);
    close(lfd);
    return NULL;
}

TEST(test_server_echoes_a_client) {
    run(one_client_main);
}

static void *many_clients_main(void *arg) {
    (void)arg;
    int lfd;
    reset_counters(0.1);
    green_server *s = start_echo(&lfd, 0);
    double t0 = test_now();
    run_clients(200);
    /* One at a time, 200 handlers of 100 ms each would take 20 s. */
    ASSERT_RANGE(test_now() - t0, 0.09, TEST_SOON);
    ASSERT(peak >= 50);
    green_server_stats st;
    green_server_get_stats(s, &st);
    ASSERT_EQ(st.accepted, 200);
    ASSERT_EQ(green_server_stop(s, 1), 0);
    ASSERT_EQ(handled, 200);
    close(lfd);
    return NULL;
}

TEST(test_server_serves_many_clients_concurrently) {
    run(many_clients_main);
}

static int forked_port, forked_lfd, forked_report[2];
static pid_t forked_child;

/* The child: plain blocking sockets, nothing of the runtime. Returns 0 on success. */
static int child_client(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sin, sizeof sin) < 0)
        return 1;
    char buf[5] = {0};
    if (write(fd, "ping", 4) != 4)
        return 2;
    for (size_t got = 0; got < 4;) {
        ssize_t n = read(fd, buf + got, 4 - got);
        if (n <= 0)
            return 3;
        got += (size_t)n;
    }
    close(fd);
    return strcmp(buf, "ping") == 0 ? 0 : 4;
}

/* The child's verdict comes through a pipe, not waitpid: libev's default loop reaps
 * every child itself (its SIGCHLD watcher), so waitpid would only see ECHILD. */
static void *forked_main(void *arg) {
    (void)arg;
    reset_counters(0);
    green_server *s = NULL;
    ASSERT_EQ(green_server_start(&s, forked_lfd, echo_handler, NULL, 0), 0);
    char verdict = 'x';
    ASSERT_EQ(green_fd_set_nonblock(forked_report[0]), 0);
    ASSERT_EQ(green_read_full(forked_report[0], &verdict, 1, 10), 1);
    ASSERT_EQ(verdict, '0');
    ASSERT_EQ(green_server_stop(s, 1), 0);
    ASSERT_EQ(handled, 1);
    return NULL;
}

TEST(test_server_answers_a_client_in_another_process) {
    /* Listen before forking, so the child's connect waits in the backlog at worst. */
    forked_lfd = green_tcp_listen("127.0.0.1", 0, 16);
    ASSERT(forked_lfd >= 0);
    forked_port = green_sock_port(forked_lfd);
    ASSERT_EQ(pipe(forked_report), 0);
    fflush(NULL);
    forked_child = fork();
    ASSERT(forked_child >= 0);
    if (forked_child == 0) {
        char verdict = (char)('0' + child_client(forked_port));
        _exit(write(forked_report[1], &verdict, 1) == 1 ? 0 : 1);
    }
    close(forked_report[1]);
    run(forked_main);
    close(forked_report[0]);
    close(forked_lfd);
    waitpid(forked_child, NULL, WNOHANG); /* in case libev has not reaped it */
}

/* A handler that waits for a request the client never sends, and reports how it ended. */
static void silent_handler(green_server_conn *conn, int fd, void *arg) {
    (void)conn;
    (void)arg;
    char c;
    in_handler++;
    handler_rc = (int)green_read(fd, &c, 1, handler_delay);
    in_handler--;
}

static void wait_for_handlers(int n) {
    for (int i = 0; i < 500 && in_handler < n; i++)
        ASSERT_EQ(green_sleep(0.01), 0);
    ASSERT_EQ(in_handler, n);
}

static void *stop_kills_main(void *arg) {
    (void)arg;
    reset_counters(-1);
    int lfd = green_tcp_listen("127.0.0.1", 0, 16);
    ASSERT(lfd >= 0);
    green_server *s = NULL;
    ASSERT_EQ(green_server_start(&s, lfd, silent_handler, NULL, 0), 0);
    int cfd = green_tcp_connect("127.0.0.1", green_sock_port(lfd), 2);
    ASSERT(cfd >= 0);
    wait_for_handlers(1);
    double t0 = test_now();
    ASSERT_EQ(green_server_stop(s, 0.1), 0);
    ASSERT_RANGE(test_now() - t0, 0.08, TEST_SOON);
    ASSERT_EQ(handler_rc, -ECANCELED);
    /* The server closed the connection, and no longer accepts. */
    char c;
    ASSERT_EQ(green_read(cfd, &c, 1, 2), 0);
    close(cfd);
    int late = green_tcp_connect("127.0.0.1", green_sock_port(lfd), 2);
    ASSERT(late >= 0);
    ASSERT_EQ(green_read(late, &c, 1, 0.2), -ETIMEDOUT);
    close(late);
    close(lfd);
    return NULL;
}

TEST(test_server_stop_kills_handlers_after_the_grace_period) {
    run(stop_kills_main);
}

static void *stop_waits_main(void *arg) {
    (void)arg;
    reset_counters(0.1);
    int lfd = green_tcp_listen("127.0.0.1", 0, 16);
    ASSERT(lfd >= 0);
    green_server *s = NULL;
    ASSERT_EQ(green_server_start(&s, lfd, silent_handler, NULL, 0), 0);
    int cfd = green_tcp_connect("127.0.0.1", green_sock_port(lfd), 2);
    ASSERT(cfd >= 0);
    wait_for_handlers(1);
    ASSERT_EQ(green_server_stop(s, -1), 0);
    /* The handler ended by itself: its own 100 ms read timeout, not a kill. */
    ASSERT_EQ(handler_rc, -ETIMEDOUT);
    close(cfd);
    close(lfd);
    return NULL;
}

TEST(test_server_stop_waits_for_running_handlers) {
    run(stop_waits_main);
}

static void *stop_before_start_main(void *arg) {
    (void)arg;
    reset_counters(-1);
    int lfd = green_tcp_listen("127.0.0.1", 0, 16);
    ASSERT(lfd >= 0);
    green_server *s = NULL;
    /* Stopped before its accept loop ever ran: nothing may leak. */
    ASSERT_EQ(green_server_start(&s, lfd, silent_handler, NULL, 0), 0);
    ASSERT_EQ(green_server_stop(s, 0), 0);
    close(lfd);
    return NULL;
}

TEST(test_server_stopped_before_it_ran_cleans_up) {
    run(stop_before_start_main);
}

static green_server *self_stop_server;

static void self_stopping_handler(green_server_conn *conn, int fd, void *arg) {
    (void)conn;
    (void)arg;
    ASSERT_EQ(green_server_stop(self_stop_server, -1), 0);
    ASSERT_EQ(green_write_all(fd, "bye", 3, 2), 0);
    handled++;
}

static void *self_stop_main(void *arg) {
    (void)arg;
    reset_counters(0);
    int lfd = green_tcp_listen("127.0.0.1", 0, 16);
    ASSERT(lfd >= 0);
    ASSERT_EQ(green_server_start(&self_stop_server, lfd, self_stopping_handler, NULL, 0), 0);
    int cfd = green_tcp_connect("127.0.0.1", green_sock_port(lfd), 2);
    ASSERT(cfd >= 0);
    char buf[4] = {0};
    ASSERT_EQ(green_read_full(cfd, buf, 3, 2), 3);
    ASSERT_STREQ(buf, "bye");
    ASSERT_EQ(green_read(cfd, buf, 1, 2), 0);
    ASSERT_EQ(handled, 1);
    close(cfd);
    close(lfd);
    return NULL;
}

TEST(test_server_handler_can_stop_its_own_server) {
    run(self_stop_main);
}

static void *emfile_main(void *arg) {
    (void)arg;
    reset_counters(0);
    int lfd = green_tcp_listen("127.0.0.1", 0, 16);
    ASSERT(lfd >= 0);
    server_port = green_sock_port(lfd);
    /* A client waits in the backlog; then no descriptor is left; then the server starts. */
    int cfd = green_tcp_connect("127.0.0.1", server_port, 2);
    ASSERT(cfd >= 0);
    struct rlimit saved, low;
    ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &saved), 0);
    int lowest = dup(0);
    ASSERT(lowest >= 0);
    close(lowest);
    low = saved;
    low.rlim_cur = (rlim_t)lowest;
    ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
    green_server *s = NULL;
    ASSERT_EQ(green_server_start(&s, lfd, echo_handler, NULL, 0), 0);
    ASSERT_EQ(green_sleep(0.1), 0);
    green_server_stats st;
    green_server_get_stats(s, &st);
    ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &saved), 0);
    ASSERT_EQ(st.last_error, -EMFILE);
    ASSERT_EQ(st.accepted, 0);
    /* With descriptors back, the server retries and serves clients again. (The kernel
     * kept the first client queued; valgrind closes it, as it checks its fd limit after
     * the real accept. So the proof is a second client.) */
    close(cfd);
    run_clients(1);
    ASSERT_EQ(green_server_stop(s, 1), 0);
    close(lfd);
    return NULL;
}

TEST(test_server_survives_running_out_of_descriptors) {
    run(emfile_main);
}

/* ---- shedding ---------------------------------------------------------------------------- */

/* Echo byte by byte; 'B' marks the connection busy, 'I' idle again (both echoed too).
 * Counts the handlers running and their peak. */
static void mode_handler(green_server_conn *conn, int fd, void *arg) {
    (void)arg;
    if (++in_handler > peak)
        peak = in_handler;
    char c;
    while (green_read(fd, &c, 1, -1) == 1) {
        if (c == 'B' || c == 'I')
            green_server_conn_set_busy(conn, c == 'B');
        if (green_write_all(fd, &c, 1, 10) < 0)
            break;
    }
    in_handler--;
    handled++;
}

/* Send c on fd and read it back: true when the server's handler still serves fd. */
static bool echoes(int fd, char c) {
    char back = 0;
    return green_write_all(fd, &c, 1, 10) == 0 && green_read(fd, &back, 1, 10) == 1 && back == c;
}

/* A client whose handler has seen `mode` ('B' or 'I'), so it is busy or idle by now. */
static int open_client(char mode) {
    int fd = green_tcp_connect("127.0.0.1", server_port, 10);
    ASSERT(fd >= 0);
    ASSERT(echoes(fd, mode));
    return fd;
}

/* The server closed fd (end of stream, or a reset behind it). */
static bool closed_by_server(int fd) {
    char c;
    ssize_t n = green_read(fd, &c, 1, 10);
    return n == 0 || n == -ECONNRESET;
}

static green_server *start_mode(int *lfd, size_t max_conns) {
    *lfd = green_tcp_listen("127.0.0.1", 0, 1024);
    ASSERT(*lfd >= 0);
    server_port = green_sock_port(*lfd);
    green_server *s = NULL;
    ASSERT_EQ(green_server_start(&s, *lfd, mode_handler, NULL, max_conns), 0);
    return s;
}

static void *oldest_idle_main(void *arg) {
    (void)arg;
    reset_counters(0);
    int lfd;
    green_server *s = start_mode(&lfd, 3);
    int a = open_client('B'), b = open_client('I'), c = open_client('I');
    /* The bound is reached: d pushes out b, the oldest idle one, not a, the oldest. */
    int d = open_client('I');
    ASSERT(closed_by_server(b));
    ASSERT(echoes(a, 'x') && echoes(c, 'x') && echoes(d, 'x'));
    /* Every connection busy: the oldest busy one goes. */
    ASSERT(echoes(c, 'B') && echoes(d, 'B'));
    int e = open_client('I');
    ASSERT(closed_by_server(a));
    ASSERT(echoes(c, 'x') && echoes(d, 'x') && echoes(e, 'x'));
    green_server_stats st;
    green_server_get_stats(s, &st);
    ASSERT_EQ(st.accepted, 5);
    ASSERT_EQ(st.shed, 2);
    ASSERT_EQ(st.active, 3);
    close(a), close(b), close(c), close(d), close(e);
    ASSERT_EQ(green_server_stop(s, 1), 0);
    ASSERT_EQ(handled, 5);
    close(lfd);
    return NULL;
}

TEST(test_server_at_the_bound_sheds_the_oldest_idle_connection_first) {
    run(oldest_idle_main);
}

static void *fresh_client_main(void *arg) {
    (void)arg;
    reset_counters(0);
    int lfd;
    green_server *s = start_mode(&lfd, 8);
    /* 100 clients that connect and say nothing, 12 times the bound... */
    enum { IDLE = 100 };
    int idle[IDLE];
    for (int i = 0; i < IDLE; i++) {
        idle[i] = green_tcp_connect("127.0.0.1", server_port, 10);
        ASSERT(idle[i] >= 0);
    }
    /* ...cannot keep a client out: it is served at once, however long they wait. */
    int fresh = open_client('x');
    ASSERT(echoes(fresh, 'y'));
    green_server_stats st;
    green_server_get_stats(s, &st);
    ASSERT_EQ(st.accepted, IDLE + 1);
    ASSERT_EQ(st.shed, IDLE + 1 - 8);
    /* Shed connections unwind at once; the peak stays within the documented bound. */
    ASSERT(peak <= 16);
    for (int i = 0; i < IDLE - 7; i++)
        ASSERT(closed_by_server(idle[i]));
    for (int i = 0; i < IDLE; i++)
        close(idle[i]);
    close(fresh);
    ASSERT_EQ(green_server_stop(s, 1), 0);
    close(lfd);
    return NULL;
}

TEST(test_server_idle_clients_cannot_keep_a_fresh_client_out) {
    run(fresh_client_main);
}

/* A client socket made now, connected later (connect needs no new descriptor). */
static int socket_for_later(void) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    ASSERT(fd >= 0);
    return fd;
}

static void connect_now(int fd) {
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)server_port)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int rc = connect(fd, (struct sockaddr *)&sin, sizeof sin);
    ASSERT(rc == 0 || errno == EINPROGRESS);
    ASSERT(green_fd_wait(fd, GREEN_WRITE, 10) > 0);
}

static void *out_of_fds_main(void *arg) {
    (void)arg;
    reset_counters(0);
    int lfd;
    green_server *s = start_mode(&lfd, 0);
    int idle = open_client('I');
    int b = socket_for_later(), c = socket_for_later();
    /* No descriptor left for the server to accept with. */
    struct rlimit saved, low;
    ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &saved), 0);
    int lowest = dup(0);
    ASSERT(lowest >= 0);
    close(lowest);
    low = saved;
    low.rlim_cur = (rlim_t)lowest;
    ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
    /* b's accept fails with EMFILE: the server sheds the idle connection, whose
     * descriptor then takes b. (Under valgrind, which checks its fd limit after the real
     * accept, b is closed instead; c, the proof, is served either way.) */
    connect_now(b);
    ASSERT(closed_by_server(idle));
    green_server_stats st;
    green_server_get_stats(s, &st);
    ASSERT_EQ(st.last_error, -EMFILE);
    ASSERT(st.shed >= 1);
    /* Still no spare descriptor: c comes in the same way, pushing out b if b got in. */
    connect_now(c);
    ASSERT(echoes(c, 'z'));
    ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &saved), 0);
    close(idle), close(b), close(c);
    ASSERT_EQ(green_server_stop(s, 1), 0);
    close(lfd);
    return NULL;
}

TEST(test_server_out_of_descriptors_sheds_an_idle_connection) {
    run(out_of_fds_main);
}

/* A handler that ignores being shed (sleeps on after its kill) holds no one up: the
 * next clients are served while it unwinds. */
static void stubborn_handler(green_server_conn *conn, int fd, void *arg) {
    (void)conn;
    (void)arg;
    char c;
    if (green_read(fd, &c, 1, -1) != 1 || green_write_all(fd, &c, 1, 10) < 0)
        return;
    int rc = (int)green_read(fd, &c, 1, -1);
    if (c == 'S' && rc == -ECANCELED) {
        in_handler++;
        green_sleep(0.5); /* the kill was delivered once: this one sleeps */
        in_handler--;
    }
}

static void *stubborn_main(void *arg) {
    (void)arg;
    reset_counters(0);
    int lfd = green_tcp_listen("127.0.0.1", 0, 16);
    ASSERT(lfd >= 0);
    server_port = green_sock_port(lfd);
    green_server *s = NULL;
    ASSERT_EQ(green_server_start(&s, lfd, stubborn_handler, NULL, 2), 0);
    int slow = open_client('S');
    int other = open_client('x');
    int fresh = open_client('y');
    /* fresh pushed slow out, and was served while slow's handler still sleeps. */
    ASSERT_EQ(in_handler, 1);
    ASSERT(closed_by_server(slow));
    close(slow), close(other), close(fresh);
    ASSERT_EQ(green_server_stop(s, -1), 0);
    ASSERT_EQ(in_handler, 0);
    close(lfd);
    return NULL;
}

TEST(test_server_a_shed_handler_slow_to_unwind_holds_no_one_up) {
    run(stubborn_main);
}
