/*
 * test_redis.c - green_redis against a real redis-server on loopback: replies of every
 * type, pipelines, many greenlets on one connection, connect failures and timeouts,
 * command timeouts and kills (the abandoned reply is discarded, nothing leaks: run under
 * valgrind too), the server dying mid-call and coming back, AUTH / ACL users / SELECT
 * through URLs, and URL parsing and redaction.
 *
 * Each TEST starts its own redis-server (outside the hub), runs a main greenlet under
 * green_run, and stops the server. Timing bounds are generous: the machine is shared.
 */
#include "green_redis.h"
#include "testlib.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct ctx {
    test_redis redis;
    char sock[512]; /* the server's Unix socket, when it has one */
} ctx;

static void run_main(green_fn fn, void *arg) {
    ASSERT_EQ(green_run(NULL, NULL, fn, arg, NULL), 0);
}

/* Start a server with extra args, run fn(ctx) on the hub, stop the server. */
static void with_redis(green_fn fn, const char *const *extra_args) {
    ctx x = {0};
    test_redis_start(&x.redis, extra_args);
    run_main(fn, &x);
    test_redis_stop(&x.redis);
}

/* The same with a Unix socket as well, in a directory of its own. */
static void with_redis_unix(green_fn fn) {
    ctx x = {0};
    char *dir = test_tmpdir("redis-sock");
    snprintf(x.sock, sizeof x.sock, "%s/redis.sock", dir);
    const char *args[] = {"--unixsocket", x.sock, "--unixsocketperm", "700", NULL};
    test_redis_start(&x.redis, args);
    /* test_redis_start waits for the TCP port; redis makes its Unix socket just after. */
    for (int i = 0; i < 200 && access(x.sock, F_OK) != 0; i++)
        usleep(10000);
    ASSERT_EQ(access(x.sock, F_OK), 0);
    run_main(fn, &x);
    test_redis_stop(&x.redis);
    test_rmtree(dir);
    free(dir);
}

static green_redis *connect_ok(int port) {
    int err = 1;
    green_redis *c = green_redis_connect_tcp("127.0.0.1", port, 5, &err);
    if (c == NULL)
        fprintf(stderr, "connect: %s\n", green_redis_connect_error());
    ASSERT(c != NULL);
    ASSERT_EQ(err, 0);
    ASSERT(green_redis_is_connected(c));
    return c;
}

/* Run a command that must succeed; returns the reply. */
static redisReply *cmd(green_redis *c, const char *fmt, ...) {
    redisReply *r = NULL;
    va_list ap;
    va_start(ap, fmt);
    int rc = green_redis_vcommand(c, &r, 5, fmt, ap);
    va_end(ap);
    ASSERT_EQ(rc, 0);
    ASSERT(r != NULL);
    return r;
}

static void expect_status(green_redis *c, const char *status, const char *command) {
    redisReply *r = cmd(c, command);
    ASSERT_EQ(r->type, REDIS_REPLY_STATUS);
    ASSERT_STREQ(r->str, status);
    freeReplyObject(r);
}

static void expect_int(green_redis *c, long long v, const char *command) {
    redisReply *r = cmd(c, command);
    ASSERT_EQ(r->type, REDIS_REPLY_INTEGER);
    ASSERT_EQ(r->integer, v);
    freeReplyObject(r);
}

/* ---- replies ------------------------------------------------------------------------- */

static void *replies_of_every_type_main(void *arg) {
    ctx *x = arg;
    green_redis *c = connect_ok(x->redis.port);
    expect_status(c, "OK", "SET greeting hello");
    redisReply *r = cmd(c, "GET greeting");
    ASSERT_EQ(r->type, REDIS_REPLY_STRING);
    ASSERT_EQ(r->len, 5);
    ASSERT_STREQ(r->str, "hello");
    freeReplyObject(r);
    r = cmd(c, "GET %s", "no-such-key");
    ASSERT_EQ(r->type, REDIS_REPLY_NIL);
    freeReplyObject(r);
    expect_int(c, 1, "INCR counter");
    expect_int(c, 2, "INCR counter");
    expect_int(c, 3, "RPUSH list a b c");
    r = cmd(c, "LRANGE list 0 -1");
    ASSERT_EQ(r->type, REDIS_REPLY_ARRAY);
    ASSERT_EQ(r->elements, 3);
    ASSERT_STREQ(r->element[0]->str, "a");
    ASSERT_STREQ(r->element[2]->str, "c");
    freeReplyObject(r);
    r = cmd(c, "LRANGE missing 0 -1");
    ASSERT_EQ(r->type, REDIS_REPLY_ARRAY);
    ASSERT_EQ(r->elements, 0);
    freeReplyObject(r);
    /* Nested arrays: XRANGE returns [[id, [field, value]]]. */
    freeReplyObject(cmd(c, "XADD stream 1-1 field value"));
    r = cmd(c, "XRANGE stream - +");
    ASSERT_EQ(r->type, REDIS_REPLY_ARRAY);
    ASSERT_EQ(r->elements, 1);
    ASSERT_EQ(r->element[0]->elements, 2);
    ASSERT_STREQ(r->element[0]->element[0]->str, "1-1");
    ASSERT_STREQ(r->element[0]->element[1]->element[1]->str, "value");
    freeReplyObject(r);
    green_redis_free(c);
    return NULL;
}

TEST(replies_of_every_type) {
    with_redis(replies_of_every_type_main, NULL);
}

static void *error_reply_is_a_successful_call_main(void *arg) {
    ctx *x = arg;
    green_redis *c = connect_ok(x->redis.port);
    expect_status(c, "OK", "SET text abc");
    redisReply *r = NULL;
    ASSERT_EQ(green_redis_command(c, &r, 5, "INCR text"), 0);
    ASSERT_EQ(r->type, REDIS_REPLY_ERROR);
    ASSERT(strncmp(r->str, "ERR", 3) == 0);
    freeReplyObject(r);
    ASSERT(green_redis_is_connected(c));
    ASSERT_EQ(green_redis_error(c), 0);
    expect_status(c, "PONG", "PING");
    green_redis_free(c);
    return NULL;
}

TEST(error_reply_is_a_successful_call) {
    with_redis(error_reply_is_a_successful_call_main, NULL);
}

static void *commandargv_is_binary_safe_main(void *arg) {
    ctx *x = arg;
    green_redis *c = connect_ok(x->redis.port);
    const char *argv[] = {"SET", "bin", "a\0b\r\nc"};
    const size_t lens[] = {3, 3, 6};
    redisReply *r = NULL;
    ASSERT_EQ(green_redis_commandargv(c, &r, 5, 3, argv, lens), 0);
    ASSERT_EQ(r->type, REDIS_REPLY_STATUS);
    freeReplyObject(r);
    r = cmd(c, "GET bin");
    ASSERT_EQ(r->len, 6);
    ASSERT(memcmp(r->str, "a\0b\r\nc", 6) == 0);
    freeReplyObject(r);
    green_redis_free(c);
    return NULL;
}

TEST(commandargv_is_binary_safe) {
    with_redis(commandargv_is_binary_safe_main, NULL);
}

static void *subscribe_is_refused(void *arg) {
    ctx *x = arg;
    green_redis *c = connect_ok(x->redis.port);
    redisReply *r = (redisReply *)1;
    ASSERT_EQ(green_redis_command(c, &r, 5, "SUBSCRIBE news"), -ENOTSUP);
    ASSERT(r == NULL);
    ASSERT_EQ(green_redis_command(c, &r, 5, "monitor"), -ENOTSUP);
    ASSERT_EQ(green_redis_command(c, &r, 5, "SET k %q"), -EINVAL);
    expect_status(c, "PONG", "PING");
    ASSERT_EQ(green_redis_inflight(c), 0);
    green_redis_free(c);
    return NULL;
}

TEST(subscribe_and_bad_format_are_refused) {
    with_redis(subscribe_is_refused, NULL);
}

/* ---- pipelines and concurrency --------------------------------------------------------- */

#define PIPE_N 1000

static void *pipeline_of_1000_in_order(void *arg) {
    ctx *x = arg;
    green_redis *c = connect_ok(x->redis.port);
    static int argcs[PIPE_N];
    static const char **argvs[PIPE_N];
    static const char *incr[] = {"INCR", "pipe-counter"};
    static const char *get[] = {"GET", "pipe-counter"};
    static redisReply *replies[PIPE_N];
    for (int i = 0; i < PIPE_N; i++) {
        argcs[i] = 2;
        argvs[i] = i % 10 == 9 ? get : incr;
    }
    double t0 = test_now();
    ASSERT_EQ(green_redis_pipeline(c, PIPE_N, argcs, argvs, NULL, replies, 10), 0);
    ASSERT_RANGE(test_now() - t0, 0, TEST_SOON);
    long long expect = 0;
    for (int i = 0; i < PIPE_N; i++) {
        ASSERT(replies[i] != NULL);
        if (i % 10 == 9) {
            char want[32];
            snprintf(want, sizeof want, "%lld", expect);
            ASSERT_EQ(replies[i]->type, REDIS_REPLY_STRING);
            ASSERT_STREQ(replies[i]->str, want);
        } else {
            ASSERT_EQ(replies[i]->type, REDIS_REPLY_INTEGER);
            ASSERT_EQ(replies[i]->integer, ++expect);
        }
        freeReplyObject(replies[i]);
    }
    ASSERT_EQ(green_redis_inflight(c), 0);
    ASSERT_EQ(green_redis_pipeline(c, 0, argcs, argvs, NULL, replies, 10), 0);
    green_redis_free(c);
    return NULL;
}

TEST(pipeline_of_1000_commands_replies_in_order) {
    with_redis(pipeline_of_1000_in_order, NULL);
}

/* A pipeline whose middle command blocks: SET, BLPOP jobs <secs>, GET. */
static const char *pipe_set[] = {"SET", "a", "1"};
static const char *pipe_blpop[] = {"BLPOP", "jobs", "5"};
static const char *pipe_get[] = {"GET", "a"};
static const int pipe_argcs[] = {3, 3, 2};
static const char **const pipe_argvs[] = {pipe_set, pipe_blpop, pipe_get};

static void *pipeline_timeout_main(void *arg) {
    ctx *x = arg;
    green_redis *c = connect_ok(x->redis.port);
    green_redis *other = connect_ok(x->redis.port);
    redisReply *replies[3] = {(redisReply *)1, (redisReply *)1, (redisReply *)1};
    ASSERT_EQ(green_redis_pipeline(c, 3, pipe_argcs, pipe_argvs, NULL, replies, 0.2), -ETIMEDOUT);
    for (int i = 0; i < 3; i++)
        ASSERT(replies[i] == NULL);
    /* SET's reply had already been copied; it is freed with the rest (valgrind). */
    ASSERT_EQ(green_redis_inflight(c), 2);
    expect_int(other, 1, "RPUSH jobs j1");
    expect_status(c, "PONG", "PING");
    ASSERT_EQ(green_redis_inflight(c), 0);
    green_redis_free(other);
    green_redis_free(c);
    return NULL;
}

TEST(pipeline_timeout_returns_no_replies) {
    with_redis(pipeline_timeout_main, NULL);
}

typedef struct piper {
    green_redis *c;
    int rc;
    redisReply *replies[3];
} piper;

static void *piper_main(void *arg) {
    piper *p = arg;
    p->rc = green_redis_pipeline(p->c, 3, pipe_argcs, pipe_argvs, NULL, p->replies, 10);
    return NULL;
}

static void *pipeline_connection_lost_main(void *arg) {
    ctx *x = arg;
    piper p = {.c = connect_ok(x->redis.port)};
    green_t g;
    ASSERT_EQ(green_spawn(&g, piper_main, &p), 0);
    green_sleep(0.1);
    test_redis_kill(&x->redis, SIGKILL);
    ASSERT_EQ(green_join(g, NULL), 0);
    ASSERT(p.rc == -ECONNRESET || p.rc == -EIO);
    for (int i = 0; i < 3; i++)
        ASSERT(p.replies[i] == NULL);
    green_redis_free(p.c);
    return NULL;
}

TEST(pipeline_fails_whole_when_connection_lost) {
    with_redis(pipeline_connection_lost_main, NULL);
}

typedef struct worker {
    green_redis *c;
    int id;
    int rc;
} worker;

static void *incr_worker(void *arg) {
    worker *w = arg;
    for (int i = 0; i < 20 && w->rc == 0; i++) {
        redisReply *r = NULL;
        w->rc = green_redis_command(w->c, &r, 10, "INCR worker:%d", w->id);
        if (w->rc == 0 && (r->type != REDIS_REPLY_INTEGER || r->integer != i + 1))
            w->rc = -1000;
        freeReplyObject(r);
    }
    return NULL;
}

static void *many_greenlets_share_one_connection_main(void *arg) {
    ctx *x = arg;
    green_redis *c = connect_ok(x->redis.port);
    enum { N = 100 };
    worker w[N];
    green_t g[N];
    for (int i = 0; i < N; i++) {
        w[i] = (worker){.c = c, .id = i};
        ASSERT_EQ(green_spawn(&g[i], incr_worker, &w[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        ASSERT_EQ(green_join(g[i], NULL), 0);
        ASSERT_EQ(w[i].rc, 0);
    }
    redisReply *r = cmd(c, "GET worker:%d", N - 1);
    ASSERT_STREQ(r->str, "20");
    freeReplyObject(r);
    green_redis_free(c);
    return NULL;
}

TEST(many_greenlets_share_one_connection) {
    with_redis(many_greenlets_share_one_connection_main, NULL);
}

/* ---- connecting ------------------------------------------------------------------------ */

static void *connect_refused(void *arg) {
    (void)arg;
    int err = 0;
    int port = test_free_port();
    ASSERT(green_redis_connect_tcp("127.0.0.1", port, 5, &err) == NULL);
    ASSERT_EQ(err, -ECONNREFUSED);
    ASSERT(strstr(green_redis_connect_error(), "refused") != NULL);
    return NULL;
}

TEST(connect_refused_returns_econnrefused) {
    run_main(connect_refused, NULL);
}

/* A listener with backlog 0 whose accept queue is full: Linux drops further SYNs, so a
 * connect to it stays in SYN_SENT, a real connect timeout on loopback. */
static void *connect_times_out(void *arg) {
    (void)arg;
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    ASSERT_EQ(bind(l, (struct sockaddr *)&a, sizeof a), 0);
    ASSERT_EQ(listen(l, 0), 0);
    ASSERT_EQ(getsockname(l, (struct sockaddr *)&a, &alen), 0);
    int fill[3];
    for (int i = 0; i < 3; i++) {
        fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        connect(fill[i], (struct sockaddr *)&a, sizeof a);
    }
    green_sleep(0.05);
    int err = 0;
    double t0 = test_now();
    green_redis *c = green_redis_connect_tcp("127.0.0.1", ntohs(a.sin_port), 0.3, &err);
    double took = test_now() - t0;
    ASSERT(c == NULL);
    ASSERT_EQ(err, -ETIMEDOUT);
    ASSERT_RANGE(took, 0.25, TEST_SOON);
    ASSERT(strstr(green_redis_connect_error(), "timed out") != NULL);
    for (int i = 0; i < 3; i++)
        close(fill[i]);
    close(l);
    return NULL;
}

TEST(connect_timeout_returns_etimedout) {
    run_main(connect_times_out, NULL);
}

static void *connect_unix_socket_main(void *arg) {
    ctx *x = arg;
    int err = 1;
    green_redis *c = green_redis_connect_unix(x->sock, 5, &err);
    ASSERT(c != NULL);
    ASSERT_EQ(err, 0);
    expect_status(c, "PONG", "PING");
    green_redis_free(c);

    char path[600];
    snprintf(path, sizeof path, "%s.missing", x->sock);
    ASSERT(green_redis_connect_unix(path, 5, &err) == NULL);
    ASSERT_EQ(err, -ENOENT);
    ASSERT(strstr(green_redis_connect_error(), "redis.sock.missing") != NULL);
    return NULL;
}

TEST(connect_unix_socket) {
    with_redis_unix(connect_unix_socket_main);
}

/* ---- timeouts, kills, frees ------------------------------------------------------------ */

static void *command_timeout_keeps_connection(void *arg) {
    ctx *x = arg;
    green_redis *c = connect_ok(x->redis.port);
    green_redis *other = connect_ok(x->redis.port);
    redisReply *r = (redisReply *)1;
    double t0 = test_now();
    ASSERT_EQ(green_redis_command(c, &r, 0.2, "BLPOP jobs 5"), -ETIMEDOUT);
    ASSERT_RANGE(test_now() - t0, 0.15, TEST_SOON);
    ASSERT(r == NULL);
    ASSERT(green_redis_is_connected(c));
    ASSERT_EQ(green_redis_inflight(c), 1);
    /* Feed the abandoned BLPOP: it completes on the server, and its reply is discarded;
     * the next command on the same connection then gets its own reply. */
    expect_int(other, 1, "RPUSH jobs j1");
    t0 = test_now();
    expect_status(c, "PONG", "PING");
    ASSERT_RANGE(test_now() - t0, 0, TEST_SOON);
    ASSERT_EQ(green_redis_inflight(c), 0);
    expect_int(c, 0, "LLEN jobs");
    green_redis_free(other);
    green_redis_free(c);
    return NULL;
}

TEST(command_timeout_then_connection_still_works) {
    with_redis(command_timeout_keeps_connection, NULL);
}

static void *timeout_scope_applies(void *arg) {
    ctx *x = arg;
    green_redis *c = connect_ok(x->redis.port);
    green_timeout t;
    green_timeout_start(&t, 0.2);
    redisReply *r = NULL;
    ASSERT_EQ(green_redis_command(c, &r, -1, "BLPOP jobs 1"), -ETIMEDOUT);
    ASSERT(green_timeout_end(&t));
    /* The abandoned BLPOP ends on the server after 1 s; the PING waits behind it. */
    double t0 = test_now();
    expect_status(c, "PONG", "PING");
    ASSERT_RANGE(test_now() - t0, 0.5, 1 + TEST_SOON);
    green_redis_free(c);
    return NULL;
}

TEST(green_timeout_scope_ends_a_call) {
    with_redis(timeout_scope_applies, NULL);
}

static void *blocking_command_with_own_timeout(void *arg) {
    ctx *x = arg;
    green_redis *c = connect_ok(x->redis.port);
    double t0 = test_now();
    redisReply *r = cmd(c, "BLPOP empty 0.3");
    ASSERT_RANGE(test_now() - t0, 0.25, TEST_SOON);
    ASSERT_EQ(r->type, REDIS_REPLY_NIL);
    freeReplyObject(r);
    green_redis_free(c);
    return NULL;
}

TEST(blocking_command_returns_nil_at_its_own_timeout) {
    with_redis(blocking_command_with_own_timeout, NULL);
}

typedef struct parked {
    green_redis *c;
    const char *command;
    double timeout;
    int rc;
    bool done;
    redisReply *reply;
} parked;

static void *parked_main(void *arg) {
    parked *p = arg;
    p->reply = (redisReply *)1;
    p->rc = green_redis_command(p->c, &p->reply, p->timeout, p->command);
    p->done = true;
    return NULL;
}

static void *kill_while_parked(void *arg) {
    ctx *x = arg;
    green_redis *c = connect_ok(x->redis.port);
    green_redis *other = connect_ok(x->redis.port);
    parked p = {.c = c, .command = "BLPOP jobs 60", .timeout = 2 * TEST_NEVER};
    green_t g;
    ASSERT_EQ(green_spawn(&g, parked_main, &p), 0);
    green_sleep(0.05);
    ASSERT(!p.done);
    double t0 = test_now();
    ASSERT_EQ(green_kill(g), 0);
    ASSERT_EQ(green_join(g, NULL), 0);
    ASSERT_RANGE(test_now() - t0, 0, TEST_SOON);
    ASSERT_EQ(p.rc, -ECANCELED);
    ASSERT(p.reply == NULL);
    /* The killed call's reply arrives later and is freed unseen (valgrind checks). */
    expect_int(other, 1, "RPUSH jobs j1");
    expect_status(c, "PONG", "PING");
    expect_int(c, 0, "LLEN jobs");
    green_redis_free(other);
    green_redis_free(c);
    return NULL;
}

TEST(kill_while_parked_returns_ecanceled) {
    with_redis(kill_while_parked, NULL);
}

static void *free_with_calls_in_flight(void *arg) {
    ctx *x = arg;
    green_redis *c = connect_ok(x->redis.port);
    /* One call abandoned by its timeout, one still waiting. */
    redisReply *r = NULL;
    ASSERT_EQ(green_redis_command(c, &r, 0.05, "BLPOP jobs 5"), -ETIMEDOUT);
    parked p = {.c = c, .command = "BLPOP other 60", .timeout = 2 * TEST_NEVER};
    green_t g;
    ASSERT_EQ(green_spawn(&g, parked_main, &p), 0);
    green_sleep(0.05);
    ASSERT(!p.done);
    ASSERT_EQ(green_redis_inflight(c), 2);
    green_redis_free(c);
    ASSERT_EQ(green_join(g, NULL), 0);
    ASSERT_EQ(p.rc, -ECONNABORTED);
    ASSERT(p.reply == NULL);
    return NULL;
}

TEST(free_with_calls_in_flight_aborts_waiters) {
    with_redis(free_with_calls_in_flight, NULL);
}

/* ---- the server going away ------------------------------------------------------------- */

static void *server_killed_mid_call(void *arg) {
    ctx *x = arg;
    green_redis *c = connect_ok(x->redis.port);
    parked p[3];
    green_t g[3];
    for (int i = 0; i < 3; i++) {
        p[i] = (parked){.c = c, .command = "BLPOP jobs 10", .timeout = 20};
        ASSERT_EQ(green_spawn(&g[i], parked_main, &p[i]), 0);
    }
    green_sleep(0.1);
    double t0 = test_now();
    test_redis_kill(&x->redis, SIGKILL);
    for (int i = 0; i < 3; i++) {
        ASSERT_EQ(green_join(g[i], NULL), 0);
        ASSERT(p[i].rc == -ECONNRESET || p[i].rc == -EIO);
        ASSERT(p[i].reply == NULL);
    }
    ASSERT_RANGE(test_now() - t0, 0, TEST_SOON);
    ASSERT(!green_redis_is_connected(c));
    ASSERT(strncmp(green_redis_last_error(c), "redis: connection lost: ", 24) == 0);
    /* Sticky: later calls fail at once with the same error. */
    redisReply *r = NULL;
    t0 = test_now();
    ASSERT_EQ(green_redis_command(c, &r, 5, "PING"), p[0].rc);
    ASSERT(test_now() - t0 < 0.5);
    ASSERT_EQ(green_redis_error(c), p[0].rc);
    green_redis_free(c);

    /* Back on the same port: a new connection works. */
    test_redis_restart(&x->redis);
    c = connect_ok(x->redis.port);
    expect_status(c, "PONG", "PING");
    green_redis_free(c);
    return NULL;
}

TEST(server_killed_mid_call_fails_waiters_then_reconnect_works) {
    with_redis(server_killed_mid_call, NULL);
}

static void *idle_connection_loss(void *arg) {
    ctx *x = arg;
    green_redis *c = connect_ok(x->redis.port);
    test_redis_kill(&x->redis, SIGKILL);
    for (int i = 0; i < 100 && green_redis_is_connected(c); i++)
        green_sleep(0.02);
    ASSERT(!green_redis_is_connected(c));
    ASSERT(strstr(green_redis_last_error(c), "connection lost") != NULL);
    redisReply *r = NULL;
    int rc = green_redis_command(c, &r, 5, "PING");
    ASSERT(rc == -ECONNRESET || rc == -EIO);
    green_redis_free(c);
    return NULL;
}

TEST(idle_connection_loss_is_noticed) {
    with_redis(idle_connection_loss, NULL);
}

/* ---- URLs: AUTH, ACL users, SELECT ----------------------------------------------------- */

static green_redis *connect_url_ok(const char *fmt, int port) {
    char url[256];
    snprintf(url, sizeof url, fmt, port);
    int err = 1;
    green_redis *c = green_redis_connect_url(url, 5, &err);
    if (c == NULL)
        fprintf(stderr, "connect_url: %s\n", green_redis_connect_error());
    ASSERT(c != NULL);
    ASSERT_EQ(err, 0);
    return c;
}

static int connect_url_fails(const char *fmt, int port) {
    char url[256];
    snprintf(url, sizeof url, fmt, port);
    int err = 0;
    ASSERT(green_redis_connect_url(url, 5, &err) == NULL);
    ASSERT(err < 0);
    return err;
}

static void *auth_with_requirepass(void *arg) {
    ctx *x = arg;
    int port = x->redis.port;
    /* Without a password, commands are refused (an error reply, not a failed call). */
    green_redis *c = connect_ok(port);
    redisReply *r = cmd(c, "GET k");
    ASSERT_EQ(r->type, REDIS_REPLY_ERROR);
    ASSERT(strstr(r->str, "NOAUTH") != NULL);
    freeReplyObject(r);
    green_redis_free(c);

    c = connect_url_ok("redis://:s3cret@127.0.0.1:%d/3", port);
    expect_status(c, "OK", "SET in-db-3 yes");
    r = cmd(c, "CLIENT INFO");
    ASSERT(strstr(r->str, " db=3 ") != NULL);
    freeReplyObject(r);
    green_redis_free(c);

    ASSERT_EQ(connect_url_fails("redis://:wrong-pw@127.0.0.1:%d", port), -EACCES);
    ASSERT(strstr(green_redis_connect_error(), "AUTH") != NULL);
    ASSERT(strstr(green_redis_connect_error(), "wrong-pw") == NULL);

    ASSERT_EQ(connect_url_fails("redis://:s3cret@127.0.0.1:%d/99", port), -EINVAL);
    ASSERT(strstr(green_redis_connect_error(), "SELECT 99") != NULL);
    return NULL;
}

TEST(auth_with_requirepass_and_select) {
    const char *args[] = {"--requirepass", "s3cret", NULL};
    with_redis(auth_with_requirepass, args);
}

static void *auth_as_acl_user_main(void *arg) {
    ctx *x = arg;
    int port = x->redis.port;
    green_redis *admin = connect_url_ok("redis://:s3cret@127.0.0.1:%d", port);
    redisReply *r = cmd(admin, "ACL SETUSER alice on %s ~* &* +@all", ">alice%40pw");
    ASSERT_STREQ(r->str, "OK");
    freeReplyObject(r);
    green_redis_free(admin);

    /* The password is "alice%40pw" on the server; in the URL its '%' is encoded. */
    green_redis *c = connect_url_ok("redis://alice:alice%%2540pw@127.0.0.1:%d/1", port);
    r = cmd(c, "ACL WHOAMI");
    ASSERT_STREQ(r->str, "alice");
    freeReplyObject(r);
    green_redis_free(c);

    ASSERT_EQ(connect_url_fails("redis://alice:nope-pw@127.0.0.1:%d", port), -EACCES);
    ASSERT(strstr(green_redis_connect_error(), "alice") != NULL);
    ASSERT(strstr(green_redis_connect_error(), "nope-pw") == NULL);
    return NULL;
}

TEST(auth_as_acl_user) {
    const char *args[] = {"--requirepass", "s3cret", NULL};
    with_redis(auth_as_acl_user_main, args);
}

static void *connect_url_unix_and_bad(void *arg) {
    ctx *x = arg;
    char url[600];
    snprintf(url, sizeof url, "unix://%s?db=2", x->sock);
    int err = 1;
    green_redis *c = green_redis_connect_url(url, 5, &err);
    ASSERT(c != NULL);
    redisReply *r = cmd(c, "CLIENT INFO");
    ASSERT(strstr(r->str, " db=2 ") != NULL);
    freeReplyObject(r);
    green_redis_free(c);

    ASSERT(green_redis_connect_url("redis://u:hunter2@127.0.0.1:99999", 5, &err) == NULL);
    ASSERT_EQ(err, -EINVAL);
    ASSERT(strstr(green_redis_connect_error(), "port") != NULL);
    ASSERT(strstr(green_redis_connect_error(), "hunter2") == NULL);
    return NULL;
}

TEST(connect_url_unix_socket_and_bad_url) {
    with_redis_unix(connect_url_unix_and_bad);
}

/* ---- URL parsing and redaction (no server) ---------------------------------------------- */

TEST(url_parse_accepts_good_urls) {
    green_redis_url u;
    char msg[256];
    ASSERT_EQ(green_redis_url_parse("redis://127.0.0.1", &u, msg, sizeof msg), 0);
    ASSERT_STREQ(u.host, "127.0.0.1");
    ASSERT_EQ(u.port, 6379);
    ASSERT_EQ(u.db, 0);
    ASSERT(u.user == NULL && u.password == NULL && u.path == NULL);
    green_redis_url_clear(&u);

    ASSERT_EQ(
        green_redis_url_parse("redis://bob:p%40ss:w/rd@cache.local:7000/5", &u, msg, sizeof msg),
        0);
    ASSERT_STREQ(u.user, "bob");
    ASSERT_STREQ(u.password, "p@ss:w/rd");
    ASSERT_STREQ(u.host, "cache.local");
    ASSERT_EQ(u.port, 7000);
    ASSERT_EQ(u.db, 5);
    green_redis_url_clear(&u);

    ASSERT_EQ(green_redis_url_parse("REDIS://:only-pw@[::1]:6380/", &u, msg, sizeof msg), 0);
    ASSERT(u.user == NULL);
    ASSERT_STREQ(u.password, "only-pw");
    ASSERT_STREQ(u.host, "::1");
    ASSERT_EQ(u.port, 6380);
    green_redis_url_clear(&u);

    ASSERT_EQ(green_redis_url_parse("redis://h?db=7", &u, msg, sizeof msg), 0);
    ASSERT_EQ(u.db, 7);
    green_redis_url_clear(&u);

    ASSERT_EQ(green_redis_url_parse("unix:///run/redis/redis.sock?db=3", &u, msg, sizeof msg), 0);
    ASSERT_STREQ(u.path, "/run/redis/redis.sock");
    ASSERT(u.host == NULL);
    ASSERT_EQ(u.db, 3);
    green_redis_url_clear(&u);

    ASSERT_EQ(green_redis_url_parse("unix://:pw@/tmp/r.sock", &u, msg, sizeof msg), 0);
    ASSERT_STREQ(u.password, "pw");
    ASSERT_STREQ(u.path, "/tmp/r.sock");
    green_redis_url_clear(&u);
    green_redis_url_clear(&u); /* clearing twice is harmless */
}

/* Each bad URL is refused with a message naming the problem and never the password. */
TEST(url_parse_rejects_bad_urls_without_leaking_password) {
    static const struct {
        const char *url, *says;
    } cases[] = {
        {"", "empty"},
        {"http://:pw-1@host", "scheme"},
        {"rediss://:pw-1@host", "TLS"},
        {"redis://:pw-1@", "missing host"},
        {"redis://:pw-1@host:0", "port"},
        {"redis://:pw-1@host:65536", "port"},
        {"redis://:pw-1@host:abc", "port"},
        {"redis://:pw-1@host/two", "database"},
        {"redis://:pw-1@host?db=x", "db"},
        {"redis://:pw-1@host?timeout=3", "unknown parameter 'timeout'"},
        {"redis://:pw-1@[::1", "IPv6"},
        {"redis://user@host", "needs a password"},
        {"redis://u:pw-1%zz@host", "escape"},
        {"unix://:pw-1@relative.sock", "absolute"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        green_redis_url u;
        char msg[256];
        int rc = green_redis_url_parse(cases[i].url, &u, msg, sizeof msg);
        if (rc != -EINVAL || strstr(msg, cases[i].says) == NULL || strstr(msg, "pw-1"))
            test__fail(__FILE__, __LINE__, "url '%s': rc %d, message '%s'", cases[i].url, rc, msg);
        ASSERT(u.host == NULL && u.password == NULL && u.user == NULL && u.path == NULL);
    }
}

/* The edges where libcurl's URL parser (which green_redis_url_parse uses) reads a URL as
 * RFC 3986 does: an empty port is the default, an IPv6 zone is decoded, a '#' in a
 * socket path is part of it but ends a redis:// URL, a host name has no blanks, and a
 * redis:// URL must name its host. Refusals still never show the password. */
TEST(url_parse_edges_follow_rfc3986) {
    green_redis_url u;
    char msg[256];
    ASSERT_EQ(green_redis_url_parse("redis://h:/3", &u, msg, sizeof msg), 0);
    ASSERT_STREQ(u.host, "h");
    ASSERT_EQ(u.port, 6379);
    ASSERT_EQ(u.db, 3);
    green_redis_url_clear(&u);
    ASSERT_EQ(green_redis_url_parse("redis://[fe80::1%25eth0]:7000", &u, msg, sizeof msg), 0);
    ASSERT_STREQ(u.host, "fe80::1%eth0");
    ASSERT_EQ(u.port, 7000);
    green_redis_url_clear(&u);
    ASSERT_EQ(green_redis_url_parse("unix:///tmp/a#b c.sock?db=1", &u, msg, sizeof msg), 0);
    ASSERT_STREQ(u.path, "/tmp/a#b c.sock");
    ASSERT_EQ(u.port, 0); /* no port for a socket */
    ASSERT_EQ(u.db, 1);
    green_redis_url_clear(&u);
    ASSERT_EQ(green_redis_url_parse("redis://:p%0Aw%20d@h", &u, msg, sizeof msg), 0);
    ASSERT_STREQ(u.password, "p\nw d"); /* any byte but NUL, percent-encoded */
    green_redis_url_clear(&u);

    static const struct {
        const char *url, *says;
    } cases[] = {
        {"redis://:pw-1@h#frag", "fragment"},
        {"redis://:pw-1@[zz]:1", "bad [IPv6] host"},
        {"redis://:pw-1@my host", "not a valid URL"},
        {"redis:///3", "missing host"},
        {"redis://u:pw-1%00@h", "escape"},
        {"unix:///tmp/x%zz.sock", "escape in the socket path"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = green_redis_url_parse(cases[i].url, &u, msg, sizeof msg);
        if (rc != -EINVAL || strstr(msg, cases[i].says) == NULL || strstr(msg, "pw-1"))
            test__fail(__FILE__, __LINE__, "url '%s': rc %d, message '%s'", cases[i].url, rc, msg);
        ASSERT(u.host == NULL && u.password == NULL && u.user == NULL && u.path == NULL);
    }
}

TEST(url_redact_hides_the_password) {
    char buf[256];
    ASSERT_STREQ(green_redis_url_redact("redis://alice:s3cret@h:6379/2", buf, sizeof buf),
                 "redis://alice:***@h:6379/2");
    ASSERT_STREQ(green_redis_url_redact("redis://:s3cret@h", buf, sizeof buf), "redis://:***@h");
    ASSERT_STREQ(green_redis_url_redact("redis://:a/b@c@h/1", buf, sizeof buf), "redis://:***@h/1");
    ASSERT_STREQ(green_redis_url_redact("redis://h:6379/0", buf, sizeof buf), "redis://h:6379/0");
    ASSERT_STREQ(green_redis_url_redact("redis://bob@h", buf, sizeof buf), "redis://bob@h");
    ASSERT_STREQ(green_redis_url_redact("unix://:pw@/tmp/r.sock", buf, sizeof buf),
                 "unix://:***@/tmp/r.sock");
    ASSERT_STREQ(green_redis_url_redact("unix:///tmp/r.sock", buf, sizeof buf),
                 "unix:///tmp/r.sock");
    char small[12];
    green_redis_url_redact("redis://:s3cret@host", small, sizeof small);
    ASSERT_STREQ(small, "redis://:**");
}

/* ---- redis+sentinel:// URLs (no server) ------------------------------------------------- */

TEST(sentinel_url_names_the_sentinels_master_and_logins) {
    green_redis_url u;
    char msg[256];
    ASSERT_EQ(green_redis_url_parse("redis+sentinel://u:p%40w@10.0.0.1:26380,[::1],h3:7/my%2Dm/"
                                    "4?sentinel_password=s%26p",
                                    &u, msg, sizeof msg),
              0);
    ASSERT(u.host == NULL && u.path == NULL);
    ASSERT_EQ(u.nsentinels, 3);
    ASSERT_STREQ(u.sentinels[0].host, "10.0.0.1");
    ASSERT_EQ(u.sentinels[0].port, 26380);
    ASSERT_STREQ(u.sentinels[1].host, "::1");
    ASSERT_EQ(u.sentinels[1].port, 26379); /* the sentinel's default port, not 6379 */
    ASSERT_STREQ(u.sentinels[2].host, "h3");
    ASSERT_EQ(u.sentinels[2].port, 7);
    ASSERT_STREQ(u.master, "my-m");
    ASSERT_EQ(u.db, 4);
    ASSERT_STREQ(u.user, "u");
    ASSERT_STREQ(u.password, "p@w");
    ASSERT_STREQ(u.sentinel_password, "s&p");
    green_redis_url_clear(&u);

    /* One sentinel, no login, db as a parameter; an unencoded '@' and '/' in the password. */
    ASSERT_EQ(green_redis_url_parse("REDIS+SENTINEL://h/mymaster?db=2", &u, msg, sizeof msg), 0);
    ASSERT_EQ(u.nsentinels, 1);
    ASSERT_EQ(u.db, 2);
    ASSERT(u.password == NULL && u.sentinel_password == NULL);
    green_redis_url_clear(&u);
    ASSERT_EQ(green_redis_url_parse("redis+sentinel://:a/b@c@h1,h2/m/", &u, msg, sizeof msg), 0);
    ASSERT_STREQ(u.password, "a/b@c");
    ASSERT_EQ(u.nsentinels, 2);
    ASSERT_EQ(u.db, 0);
    green_redis_url_clear(&u);
}

TEST(sentinel_url_rejects_bad_forms_without_leaking_passwords) {
    static const struct {
        const char *url, *says;
    } cases[] = {
        {"redis+sentinel://:pw-1@/m", "missing host"},
        {"redis+sentinel://:pw-1@h1,,h2/m", "empty sentinel address"},
        {"redis+sentinel://:pw-1@h1,/m", "empty sentinel address"},
        {"redis+sentinel://:pw-1@h1:0/m", "sentinel port"},
        {"redis+sentinel://:pw-1@h1:x/m", "port"},
        {"redis+sentinel://:pw-1@h1", "missing master name"},
        {"redis+sentinel://:pw-1@h1/", "missing master name"},
        {"redis+sentinel://:pw-1@h1//2", "missing master name"},
        {"redis+sentinel://:pw-1@h1/m/x", "database"},
        {"redis+sentinel://:pw-1@h1/m?db=-1", "db must be"},
        {"redis+sentinel://:pw-1@h1/m?timeout=1", "unknown parameter 'timeout'"},
        {"redis+sentinel://:pw-1@h1/m#f", "fragment"},
        {"redis+sentinel://:pw-1@h1/m%zz", "master name"},
        {"redis+sentinel://h1/m?sentinel_password=pw-1%zz", "sentinel_password"},
        {"redis+sentinel://h1/m?sentinel_password=", "sentinel_password"},
        {"redis+sentinel://user@h1/m", "needs a password"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        green_redis_url u;
        char msg[256];
        int rc = green_redis_url_parse(cases[i].url, &u, msg, sizeof msg);
        if (rc != -EINVAL || strstr(msg, cases[i].says) == NULL || strstr(msg, "pw-1"))
            test__fail(__FILE__, __LINE__, "url '%s': rc %d, message '%s'", cases[i].url, rc, msg);
        ASSERT(u.sentinels == NULL && u.master == NULL && u.password == NULL &&
               u.sentinel_password == NULL && u.nsentinels == 0);
    }
}

TEST(sentinel_url_redact_hides_both_passwords) {
    char buf[256];
    ASSERT_STREQ(green_redis_url_redact("redis+sentinel://:dpw@h1,h2/m?sentinel_password=spw", buf,
                                        sizeof buf),
                 "redis+sentinel://:***@h1,h2/m?sentinel_password=***");
    ASSERT_STREQ(green_redis_url_redact("redis+sentinel://h1/m?db=1&sentinel_password=s@p&x=1", buf,
                                        sizeof buf),
                 "redis+sentinel://h1/m?db=1&sentinel_password=***&x=1");
    ASSERT_STREQ(green_redis_url_redact("redis+sentinel://h1,h2/m", buf, sizeof buf),
                 "redis+sentinel://h1,h2/m");
}
