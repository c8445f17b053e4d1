/*
 * test_http_probes.c - the --http endpoint as a liveness probe sees it while other
 * clients misbehave: /healthz keeps answering while thousands of connections send
 * nothing or a request one byte at a time, and heads that can never be served (a NUL
 * byte, a bare CR, a broken request line, a head too large, a method other than GET) are
 * refused at once with a 4xx and a closed connection, not when a deadline passes.
 *
 * Every test runs the real workerd binary on a real redis-server, with --http on a free
 * loopback port. The load comes from a child process (plain sockets and poll), so that
 * the probes measured here wait for nothing but the worker.
 */
#include "e2e.h"
#include "httpc.h"
#include "testlib.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct env {
    test_redis redis;
    e2e_worker w;
    int port;
} env;

static void env_start(env *e) {
    memset(e, 0, sizeof *e);
    test_redis_start(&e->redis, NULL);
    e->port = test_free_port();
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", e->port);
    E2E_START_READY(&e->w, e->redis.port, "--http", addr);
}

static void env_end(env *e) {
    e2e_worker_signal(&e->w, SIGTERM);
    int code = e2e_worker_wait(&e->w, 20.0);
    if (code != 0)
        e2e_log_dump(&e->w);
    ASSERT_EQ(code, 0);
    e2e_worker_stop(&e->w);
    test_redis_stop(&e->redis);
}

static int tcp_connect(int port, bool nonblock) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
    if (fd < 0)
        return -errno;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0 && errno != EINPROGRESS) {
        int err = -errno;
        close(fd);
        return err;
    }
    return fd;
}

/* ---- one exchange, byte-exact ------------------------------------------------------------ */

/* What a client saw: the status of the answer (0 when the server closed without one,
 * -ETIMEDOUT when it did not close within the timeout), and the answer's text. */
typedef struct seen {
    int status;
    char text[2048];
} seen;

/* Send raw[0..len) on a fresh connection; then, if drip is not NULL, send one byte of it
 * every 100 ms (over and over) while waiting; half-close first if half_close. Read until
 * the server closes, for at most timeout seconds. */
static void exchange(int port, const void *raw, size_t len, bool half_close, const char *drip,
                     double timeout, seen *out) {
    memset(out, 0, sizeof *out);
    double end = test_now() + timeout;
    /* A server that does not accept leaves a blocking connect hanging for minutes in
     * SYN retries: connect within the timeout. */
    int fd = tcp_connect(port, true);
    ASSERT(fd >= 0);
    struct pollfd w = {.fd = fd, .events = POLLOUT};
    int err = 0;
    socklen_t elen = sizeof err;
    if (poll(&w, 1, (int)(timeout * 1000)) != 1 ||
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0 || err != 0) {
        close(fd);
        out->status = -ETIMEDOUT;
        return;
    }
    ASSERT_EQ(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK), 0);
    ssize_t n = send(fd, raw, len, MSG_NOSIGNAL);
    ASSERT(n >= 0); /* a server may refuse early and not take it all: that is fine */
    if (half_close)
        shutdown(fd, SHUT_WR);
    size_t got = 0, dripped = 0;
    for (;;) {
        double left = end - test_now();
        if (left <= 0) {
            out->status = -ETIMEDOUT;
            break;
        }
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int ms = (int)(left * 1000) + 1;
        if (drip && ms > 100)
            ms = 100;
        int k = poll(&p, 1, ms);
        if (k == 0) {
            if (drip)
                (void)send(fd, drip + dripped++ % strlen(drip), 1, MSG_NOSIGNAL);
            continue;
        }
        ssize_t r = recv(fd, out->text + got, sizeof out->text - 1 - got, 0);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    out->text[got] = '\0';
    if (out->status == 0 && sscanf(out->text, "HTTP/1.1 %d ", &out->status) != 1)
        out->status = 0;
}

/* The answer to raw, sent whole and the connection then held open: a refusal must not
 * wait for the client to close, nor for the head's deadline. */
static int answer_to(env *e, const void *raw, size_t len) {
    seen s;
    exchange(e->port, raw, len, false, NULL, TEST_SOON, &s);
    if (s.status <= 0)
        fprintf(stderr, "no answer (%d) to %zu bytes starting '%.20s'\n", s.status, len,
                (const char *)raw);
    return s.status;
}

#define ANSWER_TO(e, lit) answer_to((e), (lit), sizeof(lit) - 1)

/* ---- malformed heads --------------------------------------------------------------------- */

TEST(nul_byte_in_a_request_gets_400_at_once) {
    env e;
    env_start(&e);
    /* 400 and not 408: refused when the byte arrived, not when the head's deadline passed. */
    ASSERT_EQ(ANSWER_TO(&e, "GET /healthz HTTP/1.1\r\nHost: a\0b\r\n\r\n"), 400);
    ASSERT_EQ(ANSWER_TO(&e, "GET /healthz\0 HTTP/1.1\r\n\r\n"), 400);
    ASSERT_EQ(ANSWER_TO(&e, "\0"), 400);
    static const char partial[] = "GET /healthz HTTP/1.1\r\nX: \0";
    seen s;
    exchange(e.port, partial, sizeof partial - 1, false, NULL, TEST_SOON, &s);
    ASSERT_EQ(s.status, 400);
    ASSERT(strstr(s.text, "Connection: close") != NULL);
    ASSERT(strstr(s.text, "control character") != NULL);
    /* The worker goes on answering. */
    httpc_response r;
    ASSERT_EQ(httpc_get(e.port, "/healthz", &r), 200);
    httpc_free(&r);
    env_end(&e);
}

TEST(other_control_bytes_and_a_bare_cr_get_400_at_once) {
    env e;
    env_start(&e);
    ASSERT_EQ(ANSWER_TO(&e, "GET /healthz HTTP/1.1\r\nX: \x1b]0;owned\x07\r\n\r\n"), 400);
    ASSERT_EQ(ANSWER_TO(&e, "GET /healthz HTTP/1.1\rHost: x\r\n\r\n"), 400);
    ASSERT_EQ(ANSWER_TO(&e, "GET /healthz HTTP/1.1\r\nX: a\x7f\r\n\r\n"), 400);
    /* A TLS ClientHello on the plain port: its first byte is already wrong. */
    ASSERT_EQ(ANSWER_TO(&e, "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"), 400);
    env_end(&e);
}

TEST(malformed_request_lines_get_400_before_the_headers_end) {
    env e;
    env_start(&e);
    /* Each is refused at its line end, the headers never finished. */
    ASSERT_EQ(ANSWER_TO(&e, "GET /healthz\r\nHost: x\r\n"), 400);            /* no version */
    ASSERT_EQ(ANSWER_TO(&e, "GET  /healthz HTTP/1.1\r\nHost: x\r\n"), 400);  /* two spaces */
    ASSERT_EQ(ANSWER_TO(&e, "GET /healthz HTTP/1.1 x\r\nHost: x\r\n"), 400); /* extra word */
    ASSERT_EQ(ANSWER_TO(&e, "G(T /healthz HTTP/1.1\r\nHost: x\r\n"), 400);   /* not a token */
    ASSERT_EQ(ANSWER_TO(&e, "GET /healthz HTTP/2.0\r\nHost: x\r\n"), 400);
    ASSERT_EQ(ANSWER_TO(&e, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), 400); /* HTTP/2's preface */
    ASSERT_EQ(ANSWER_TO(&e, "GET /heal\tthz HTTP/1.1\r\nHost: x\r\n"), 400);
    env_end(&e);
}

TEST(other_methods_get_405_or_404_as_soon_as_the_request_line_ends) {
    env e;
    env_start(&e);
    const char *methods[] = {"POST", "PUT", "DELETE", "PATCH", "OPTIONS", "get", "TRACE"};
    for (size_t i = 0; i < sizeof methods / sizeof *methods; i++) {
        /* The head never ends (a body would follow): the answer does not wait for it. */
        char req[128];
        int n =
            snprintf(req, sizeof req, "%s /metrics HTTP/1.1\r\nContent-Length: 10\r\n", methods[i]);
        seen s;
        exchange(e.port, req, (size_t)n, false, NULL, TEST_SOON, &s);
        ASSERT_EQ(s.status, 405);
        ASSERT(strstr(s.text, "\r\nAllow: GET, HEAD\r\n") != NULL);
    }
    ASSERT_EQ(ANSWER_TO(&e, "POST /elsewhere HTTP/1.1\r\nContent-Length: 10\r\n"), 404);
    /* A whole POST with its body, as before: 405. */
    ASSERT_EQ(ANSWER_TO(&e, "POST /healthz HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"), 405);
    env_end(&e);
}

TEST(absolute_form_and_asterisk_targets_get_a_prompt_404) {
    env e;
    env_start(&e);
    char req[256];
    int n = snprintf(req, sizeof req, "GET http://127.0.0.1:%d/healthz HTTP/1.1\r\nHost: x\r\n\r\n",
                     e.port);
    ASSERT_EQ(answer_to(&e, req, (size_t)n), 404);
    ASSERT_EQ(ANSWER_TO(&e, "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n"), 404);
    ASSERT_EQ(ANSWER_TO(&e, "GET //healthz HTTP/1.1\r\nHost: x\r\n\r\n"), 404);
    env_end(&e);
}

TEST(a_head_larger_than_the_buffer_gets_400_without_its_end) {
    env e;
    env_start(&e);
    /* A request line that never ends, then headers that never do: refused when the
     * buffer is full, while the client still holds the connection open. */
    size_t big = 20000;
    char *line = malloc(big);
    ASSERT(line != NULL);
    memcpy(line, "GET /", 5);
    memset(line + 5, 'a', big - 5);
    ASSERT_EQ(answer_to(&e, line, big), 400);
    const char *start = "GET /healthz HTTP/1.1\r\n";
    memcpy(line, start, strlen(start));
    for (size_t i = strlen(start) + 50; i + 2 < big; i += 100)
        memcpy(line + i, "\r\n", 2);
    memcpy(line + big - 2, "X:", 2);
    ASSERT_EQ(answer_to(&e, line, big), 400);
    free(line);
    env_end(&e);
}

TEST(a_head_cut_off_by_its_client_gets_400_at_once) {
    env e;
    env_start(&e);
    seen s;
    /* No line end at all, then the client's half-close: nothing more can come. */
    exchange(e.port, "GET /healthz HTTP/1.1", 21, true, NULL, TEST_SOON, &s);
    ASSERT_EQ(s.status, 400);
    ASSERT(strstr(s.text, "incomplete request head") != NULL);
    exchange(e.port, "GET /healthz HTTP/1.1\r\nHost: x\r\n", 32, true, NULL, TEST_SOON, &s);
    ASSERT_EQ(s.status, 400);
    /* A connection closed before any byte gets nothing, and the worker carries on. */
    int fd = tcp_connect(e.port, false);
    ASSERT(fd >= 0);
    close(fd);
    httpc_response r;
    ASSERT_EQ(httpc_get(e.port, "/healthz", &r), 200);
    httpc_free(&r);
    env_end(&e);
}

TEST(lenient_line_ends_and_any_cut_of_a_good_head_are_still_served) {
    env e;
    env_start(&e);
    ASSERT_EQ(ANSWER_TO(&e, "GET /healthz HTTP/1.1\nHost: x\n\n"), 200);
    ASSERT_EQ(ANSWER_TO(&e, "GET /healthz HTTP/1.0\r\n\r\n"), 200);
    ASSERT_EQ(ANSWER_TO(&e, "GET /healthz HTTP/1.1\r\nX: caf\xc3\xa9\r\n\r\n"), 200);
    /* Sent one byte at a time, quickly: one head, however it is cut. */
    const char *req = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    int fd = tcp_connect(e.port, false);
    ASSERT(fd >= 0);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    for (size_t i = 0; i < strlen(req); i++)
        ASSERT_EQ(send(fd, req + i, 1, MSG_NOSIGNAL), 1);
    char buf[512] = {0};
    size_t got = 0;
    ssize_t n;
    while ((n = recv(fd, buf + got, sizeof buf - 1 - got, 0)) > 0)
        got += (size_t)n;
    close(fd);
    ASSERT(strncmp(buf, "HTTP/1.1 200 ", 13) == 0);
    env_end(&e);
}

/* ---- slow and idle clients --------------------------------------------------------------- */

TEST(an_idle_connection_gets_408_within_the_head_deadline) {
    env e;
    env_start(&e);
    seen s;
    exchange(e.port, "", 0, false, NULL, TEST_NEVER, &s);
    ASSERT_EQ(s.status, 408);
    ASSERT(strstr(s.text, "Connection: close") != NULL);
    env_end(&e);
}

TEST(a_head_sent_one_byte_at_a_time_is_cut_off_at_its_deadline) {
    env e;
    env_start(&e);
    /* A byte every 100 ms for ever: the deadline covers the whole head, not each byte. */
    seen s;
    double t0 = test_now();
    exchange(e.port, "GET /healthz HTTP/1.1\r\n", 23, false, "X-Slow: aaaaaaaa\r\n", TEST_NEVER,
             &s);
    ASSERT_EQ(s.status, 408);
    ASSERT_RANGE(test_now() - t0, 0, TEST_SOON);
    env_end(&e);
}

/* The attacker, in a child process: n_idle connections that send nothing and n_slow that
 * send a request head one byte every 100 ms (never its end); every connection the server
 * closes is opened again at once. Writes 'r' to ready once every connection is open, and
 * on SIGTERM "<opened> <closed by the server>" to ready, then exits. */
static volatile sig_atomic_t attack_over;

static void on_sigterm(int sig) {
    (void)sig;
    attack_over = 1;
}

__attribute__((noreturn)) static void attack(int port, int n_idle, int n_slow, int ready) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    signal(SIGTERM, on_sigterm);
    static const char head[] = "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    int n = n_idle + n_slow;
    struct pollfd *p = calloc((size_t)n, sizeof *p);
    size_t *sent = calloc((size_t)n, sizeof *sent);
    long opened = 0, closed = 0;
    if (!p || !sent)
        _exit(2);
    for (int i = 0; i < n; i++) {
        p[i].fd = tcp_connect(port, true);
        p[i].events = POLLIN;
        if (p[i].fd < 0)
            _exit(3);
        opened++;
    }
    if (write(ready, "r", 1) != 1)
        _exit(4);
    double drip = test_now();
    while (!attack_over) {
        int ms = (int)((drip - test_now()) * 1000);
        int k = poll(p, (nfds_t)n, ms > 0 ? ms : 0);
        for (int i = 0; k > 0 && i < n; i++) {
            if (!p[i].revents)
                continue;
            char buf[512];
            ssize_t r = recv(p[i].fd, buf, sizeof buf, 0);
            if (r > 0 || (r < 0 && errno == EAGAIN))
                continue;
            close(p[i].fd);
            closed++;
            p[i].fd = tcp_connect(port, true);
            if (p[i].fd < 0)
                _exit(5);
            opened++;
            sent[i] = 0;
        }
        if (test_now() >= drip) {
            for (int i = n_idle; i < n; i++) {
                char c = sent[i] < sizeof head - 1 ? head[sent[i]] : 'a';
                if (send(p[i].fd, &c, 1, MSG_NOSIGNAL) == 1)
                    sent[i]++;
            }
            drip = test_now() + 0.1;
        }
    }
    dprintf(ready, "%ld %ld\n", opened, closed);
    _exit(0);
}

/* The soft descriptor limit of process pid, from /proc. */
static long nofile_of(pid_t pid) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/limits", (int)pid);
    FILE *f = fopen(path, "r");
    ASSERT(f != NULL);
    long soft = -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "Max open files", 14) == 0)
            sscanf(line + 14, "%ld", &soft);
    fclose(f);
    return soft;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

TEST(healthz_answers_under_2000_idle_and_200_slow_connections) {
    enum { IDLE = 2000, SLOW = 200 };
    /* This process holds the attack's sockets: raise its descriptor limit. */
    struct rlimit rl;
    ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < IDLE + SLOW + 100) {
        printf("SKIP: RLIMIT_NOFILE hard limit %llu is below the %d descriptors needed\n",
               (unsigned long long)rl.rlim_max, IDLE + SLOW + 100);
        return;
    }
    rl.rlim_cur = rl.rlim_max;
    ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &rl), 0);
    env e;
    env_start(&e);
    /* The worker raises its own limit to the hard one; the endpoint keeps a quarter of it
     * at most, and sheds beyond. Either way it must answer. */
    long worker_nofile = nofile_of(e.w.pid);
    printf("worker's descriptor limit: %ld\n", worker_nofile);
    ASSERT(worker_nofile >= (long)(IDLE + SLOW + 100));

    int ready[2];
    ASSERT_EQ(pipe(ready), 0);
    fflush(NULL);
    pid_t attacker = fork();
    ASSERT(attacker >= 0);
    if (attacker == 0) {
        close(ready[0]);
        attack(e.port, IDLE, SLOW, ready[1]);
    }
    close(ready[1]);
    char r;
    ASSERT_EQ(read(ready[0], &r, 1), 1);

    /* Probe for a while: longer than the head deadline, so that the slow heads are cut
     * off and opened again meanwhile. Each answer must come, and be 200. */
    enum { MAX_PROBES = 1000 };
    double *lat = malloc(MAX_PROBES * sizeof *lat);
    ASSERT(lat != NULL);
    int probes = 0;
    double end = test_now() + 3.0;
    while (probes < MAX_PROBES && (probes < 20 || test_now() < end)) {
        const char *req = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
        seen s;
        double t0 = test_now();
        exchange(e.port, req, strlen(req), false, NULL, TEST_SOON, &s);
        lat[probes] = test_now() - t0;
        if (s.status != 200) {
            fprintf(stderr, "probe %d: status %d after %.3f s\n", probes, s.status, lat[probes]);
            e2e_log_dump(&e.w);
        }
        ASSERT_EQ(s.status, 200);
        ASSERT(strstr(s.text, "\r\n\r\nok\n") != NULL);
        probes++;
        struct pollfd none = {.fd = -1};
        poll(&none, 1, 50); /* pacing between probes, not a wait for anything */
    }
    kill(attacker, SIGTERM);
    char stats[64] = {0};
    ASSERT(read(ready[0], stats, sizeof stats - 1) > 0);
    int status;
    ASSERT_EQ(waitpid(attacker, &status, 0), attacker);
    ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    close(ready[0]);
    long opened = 0, closed = 0;
    ASSERT_EQ(sscanf(stats, "%ld %ld", &opened, &closed), 2);
    qsort(lat, (size_t)probes, sizeof *lat, cmp_double);
    printf("%d probes under %d idle + %d slow connections (%ld opened, %ld closed by the "
           "worker): p50 %.1f ms, max %.1f ms\n",
           probes, IDLE, SLOW, opened, closed, lat[probes / 2] * 1000, lat[probes - 1] * 1000);
    free(lat);
    /* The load was real: every connection was opened, and the worker cut the slow ones. */
    ASSERT(opened >= IDLE + SLOW);
    ASSERT(closed >= SLOW);
    httpc_response hr;
    ASSERT_EQ(httpc_get(e.port, "/healthz", &hr), 200);
    httpc_free(&hr);
    env_end(&e);
}
