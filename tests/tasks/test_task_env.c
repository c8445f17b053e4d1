/*
 * test_task_env.c - what task_env.h gives a task, without the daemon: a task_host and a
 * task_ctx per call, as the worker makes them, against a real redis-server. The lent
 * connection (the same within a call, reused after it when it is fit, closed when it is
 * not, replaced when it broke), the timeouts (a call's own is a "Timeout" failure, the
 * task's time limit is handed on), sending (the message a worker will read) and waiting
 * (success, failure, not yet, the result backend), logging, and calls made with no worker
 * behind them.
 */
#include "broker_msg.h"
#include "green.h"
#include "green_check.h"
#include "task_host.h"
#include "testlib.h"

#include <hiredis/hiredis.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

/* One test's servers: the broker's Redis and, for some, another for results. */
struct env {
    test_redis redis, results;
    bool separate;
    char url[64], results_url[64];
    task_host *host;
    void (*body)(struct env *e);
};

static void *main_greenlet(void *arg) {
    struct env *e = arg;
    task_host_cfg cfg = {.broker_url = e->url, .results_url = e->separate ? e->results_url : NULL};
    ASSERT_EQ(task_host_new(&e->host, &cfg), 0);
    e->body(e);
    task_host_free(e->host);
    return NULL;
}

static void with_env(void (*body)(struct env *e), bool separate) {
    struct env e = {.separate = separate, .body = body};
    test_redis_start(&e.redis, NULL);
    snprintf(e.url, sizeof e.url, "redis://127.0.0.1:%d/0", e.redis.port);
    if (separate) {
        test_redis_start(&e.results, NULL);
        snprintf(e.results_url, sizeof e.results_url, "redis://127.0.0.1:%d/0", e.results.port);
    }
    ASSERT_EQ(green_run(NULL, NULL, main_greenlet, &e, NULL), 0);
    if (separate)
        test_redis_stop(&e.results);
    test_redis_stop(&e.redis);
}

/* A call as the worker makes it (end it with task_ctx_end). */
static task_call begin(task_ctx *ctx, task_host *host, const char *id) {
    task_ctx_begin(ctx, host);
    return (task_call){.id = id, .name = "t.test", .ctx = ctx};
}

static long long client_id(green_redis *c) {
    redisReply *r = NULL;
    ASSERT_EQ(green_redis_command(c, &r, 5, "CLIENT ID"), 0);
    long long id = r->integer;
    freeReplyObject(r);
    return id;
}

/* A synchronous client of the test's own (outside the lent connections). */
static redisContext *sync_client(int port) {
    redisContext *c = redisConnect("127.0.0.1", port);
    ASSERT(c != NULL && c->err == 0);
    return c;
}

/* ---- the lent connection -------------------------------------------------------------- */

static void same_within_a_call_reused_after(struct env *e) {
    task_ctx ctx;
    task_error err;
    green_redis *a, *b;
    task_call call = begin(&ctx, e->host, "c-1");
    ASSERT_EQ(task_redis(&call, &a, &err), 0);
    ASSERT_EQ(task_redis(&call, &b, &err), 0);
    ASSERT(a == b);
    long long id = client_id(a);
    task_ctx_end(&ctx);
    ASSERT_EQ(task_host_idle(e->host), 1);

    call = begin(&ctx, e->host, "c-2");
    ASSERT_EQ(task_redis(&call, &b, &err), 0);
    ASSERT_EQ(client_id(b), id); /* the same server-side client: no new connection */
    ASSERT_EQ(task_host_idle(e->host), 0);
    task_ctx_end(&ctx);
}

TEST(lent_connection_is_the_calls_own_and_reused_after_it) {
    with_env(same_within_a_call_reused_after, false);
}

static void pending_reply_not_reused(struct env *e) {
    task_ctx ctx;
    task_error err;
    redisReply *r;
    task_call call = begin(&ctx, e->host, "c-1");
    /* BLPOP for 5 s, given up after 0.1: its reply is still due on the connection. */
    ASSERT_EQ(task_redis_command(&call, &r, 0.1, &err, "BLPOP nothing 5"), TASK_EFAIL);
    ASSERT_STREQ(err.type, "Timeout");
    ASSERT_STREQ(err.message, "Redis command: no answer from Redis within 0.1 s");
    task_ctx_end(&ctx);
    ASSERT_EQ(task_host_idle(e->host), 0); /* closed: it would answer the next borrower */
}

TEST(a_connection_with_a_reply_still_due_is_closed_not_reused) {
    with_env(pending_reply_not_reused, false);
}

static void broken_is_replaced(struct env *e) {
    task_ctx ctx;
    task_error err;
    green_redis *first, *second;
    redisReply *r;
    task_call call = begin(&ctx, e->host, "c-1");
    ASSERT_EQ(task_redis(&call, &first, &err), 0);
    long long id = client_id(first);
    redisContext *admin = sync_client(e->redis.port);
    redisReply *killed = redisCommand(admin, "CLIENT KILL ID %lld", id);
    ASSERT(killed != NULL && killed->integer == 1);
    freeReplyObject(killed);
    redisFree(admin);
    /* The lent connection fails (once the hub has seen the close), and stays valid. */
    int rc;
    while ((rc = green_redis_command(first, &r, 5, "PING")) == 0) {
        freeReplyObject(r);
        green_sleep(0.01);
    }
    ASSERT(!green_redis_is_connected(first));
    ASSERT_EQ(task_redis(&call, &second, &err), 0);
    ASSERT(second != first);
    ASSERT(client_id(second) != id);
    ASSERT(green_redis_command(first, &r, 5, "PING") != 0); /* still safe to call */
    task_ctx_end(&ctx);
    ASSERT_EQ(task_host_idle(e->host), 1); /* the new one; the broken one is freed */
}

TEST(a_broken_lent_connection_is_replaced_and_stays_valid_until_the_call_ends) {
    with_env(broken_is_replaced, false);
}

static void error_replies_and_deadlines(struct env *e) {
    task_ctx ctx;
    task_error err;
    redisReply *r;
    task_call call = begin(&ctx, e->host, "c-1");
    ASSERT_EQ(task_redis_command(&call, &r, 5, &err, "INCR %s", "k"), 0);
    ASSERT_EQ(r->integer, 1);
    freeReplyObject(r);
    ASSERT_EQ(task_redis_command(&call, &r, 5, &err, "LPUSH %s x", "k"), TASK_EFAIL);
    ASSERT(r == NULL);
    ASSERT_STREQ(err.type, "RedisError");
    ASSERT(strncmp(err.message, "WRONGTYPE", 9) == 0);
    /* The task's time limit (an enclosing scope) is handed on as -ETIMEDOUT. */
    green_timeout limit;
    green_timeout_start(&limit, 0.1);
    ASSERT_EQ(task_redis_command(&call, &r, 10, &err, "BLPOP nothing 5"), -ETIMEDOUT);
    ASSERT(green_timeout_end(&limit));
    task_ctx_end(&ctx);
}

TEST(error_replies_fail_and_a_time_limit_is_handed_on) {
    with_env(error_replies_and_deadlines, false);
}

static void unreachable(struct env *e) {
    task_ctx ctx;
    task_error err;
    green_redis *c;
    char want[256];
    test_redis_stop(&e->redis); /* nobody listens on its port now */
    task_call call = begin(&ctx, e->host, "c-1");
    ASSERT_EQ(task_redis(&call, &c, &err), TASK_EFAIL);
    ASSERT_STREQ(err.type, "RedisError");
    snprintf(want, sizeof want, "cannot connect to %s: ", e->url);
    ASSERT(strncmp(err.message, want, strlen(want)) == 0);
    task_ctx_end(&ctx);
    test_redis_start(&e->redis, NULL); /* for with_env's stop */
}

TEST(an_unreachable_redis_is_a_redis_error_naming_it) {
    with_env(unreachable, false);
}

/* ---- sending and waiting ------------------------------------------------------------- */

static void send_message(struct env *e) {
    task_ctx ctx;
    task_error err;
    char id[TASK_ID_MAX + 1];
    task_call call = begin(&ctx, e->host, "parent-1");
    json_t *args = json_pack("[i, s]", 1, "two"), *kwargs = json_pack("{s:b}", "loud", 1);
    task_send_opts opts = {.queue = "low",
                           .id = "child-1",
                           .expires = 60,
                           .time_limit = 5,
                           .soft_time_limit = 4,
                           .ignore_result = true};
    ASSERT_EQ(task_send(&call, "echo", args, kwargs, &opts, id, &err), 0);
    ASSERT_STREQ(id, "child-1");
    ASSERT_EQ(task_send(&call, "echo", NULL, NULL, NULL, id, &err), 0);
    ASSERT_EQ(strlen(id), BROKER_GENERATED_ID_BYTES);
    json_decref(args);
    json_decref(kwargs);
    task_ctx_end(&ctx);

    /* What a worker reads: the same parser, the same fields. */
    redisContext *c = sync_client(e->redis.port);
    redisReply *r = redisCommand(c, "RPOP workerd:queue:low");
    ASSERT(r != NULL && r->type == REDIS_REPLY_STRING);
    broker_limits lim;
    broker_limits_default(&lim);
    broker_msg m;
    broker_msg_error perr;
    ASSERT_EQ(broker_msg_parse(r->str, r->len, &lim, green_wallclock(), &m, &perr), 0);
    ASSERT_STREQ(m.id, "child-1");
    ASSERT_STREQ(m.task, "echo");
    ASSERT_EQ(json_array_size(m.args), 2);
    ASSERT(json_is_true(json_object_get(m.kwargs, "loud")));
    ASSERT_STREQ(m.queue, "low");
    ASSERT_EQ(m.time_limit, 5);
    ASSERT_EQ(m.soft_time_limit, 4);
    ASSERT(m.ignore_result);
    ASSERT_RANGE(m.expires - green_wallclock(), 50, 61);
    ASSERT_STREQ(json_string_value(json_object_get(m.root, "parent_id")), "parent-1");
    broker_msg_free(&m);
    freeReplyObject(r);
    r = redisCommand(c, "LLEN workerd:queue:default");
    ASSERT_EQ(r->integer, 1);
    freeReplyObject(r);
    redisFree(c);
}

TEST(send_pushes_a_message_a_worker_reads) {
    with_env(send_message, false);
}

static void send_refusals(struct env *e) {
    task_ctx ctx;
    task_error err;
    task_call call = begin(&ctx, e->host, "p-1");
    json_t *obj = json_object();
    task_send_opts bad_queue = {.queue = "a b"}, bad_limit = {.time_limit = -1};
    ASSERT_EQ(task_send(&call, "", NULL, NULL, NULL, NULL, &err), TASK_EFAIL);
    ASSERT_STREQ(err.type, "ValueError");
    ASSERT_STREQ(err.message, "task_send: the task name must be 1 to 255 bytes");
    ASSERT_EQ(task_send(&call, "echo", obj, NULL, NULL, NULL, &err), TASK_EFAIL);
    ASSERT_STREQ(err.message, "task_send: args must be a JSON array, got object");
    ASSERT_EQ(task_send(&call, "echo", NULL, NULL, &bad_queue, NULL, &err), TASK_EFAIL);
    ASSERT(strncmp(err.message, "task_send: queue: ", 18) == 0);
    ASSERT_EQ(task_send(&call, "echo", NULL, NULL, &bad_limit, NULL, &err), TASK_EFAIL);
    ASSERT_EQ(task_send(&call, "\xff", NULL, NULL, NULL, NULL, &err), TASK_EFAIL);
    ASSERT_STREQ(err.message, "task_send: the task is not valid UTF-8");
    json_decref(obj);
    task_ctx_end(&ctx);
    redisContext *c = sync_client(e->redis.port);
    redisReply *r = redisCommand(c, "DBSIZE");
    ASSERT_EQ(r->integer, 0); /* nothing was sent */
    freeReplyObject(r);
    redisFree(c);
}

TEST(send_refuses_what_no_worker_could_run) {
    with_env(send_refusals, false);
}

/* Store a result document by hand, as a worker would (on the result backend). */
static void store(int port, const char *id, const char *doc) {
    redisContext *c = sync_client(port);
    redisReply *r = redisCommand(c, "SET workerd:result:%s %s", id, doc);
    ASSERT(r != NULL && r->type == REDIS_REPLY_STATUS);
    freeReplyObject(r);
    redisFree(c);
}

struct later {
    int port;
    const char *id, *doc;
};

/* A greenlet that stores a result after a while, as the subtask's worker would. */
static void *store_later(void *arg) {
    struct later *l = arg;
    green_sleep(0.2);
    store(l->port, l->id, l->doc);
    return NULL;
}

static void wait_outcomes(struct env *e) {
    int port = e->separate ? e->results.port : e->redis.port;
    task_ctx ctx;
    task_error err;
    json_t *result;
    task_call call = begin(&ctx, e->host, "p-1");
    store(port, "ok", "{\"id\":\"ok\",\"status\":\"SUCCESS\",\"result\":[1,2]}");
    ASSERT_EQ(task_wait(&call, "ok", 5, &result, &err), 0);
    ASSERT_EQ(json_array_size(result), 2);
    json_decref(result);
    store(port, "bad",
          "{\"id\":\"bad\",\"status\":\"FAILURE\",\"error\":{\"type\":\"HTTPError\",\"message\":"
          "\"refused\"}}");
    ASSERT_EQ(task_wait(&call, "bad", 5, &result, &err), TASK_EFAIL);
    ASSERT(result == NULL);
    ASSERT_STREQ(err.type, "HTTPError");
    ASSERT_STREQ(err.message, "refused");
    store(port, "junk", "not json");
    ASSERT_EQ(task_wait(&call, "junk", 5, &result, &err), TASK_EFAIL);
    ASSERT_STREQ(err.type, "RuntimeError");

    /* STARTED is not final: the wait goes on until the final result comes. */
    store(port, "slow", "{\"id\":\"slow\",\"status\":\"STARTED\"}");
    struct later l = {port, "slow", "{\"id\":\"slow\",\"status\":\"SUCCESS\",\"result\":7}"};
    green_t g;
    ASSERT_EQ(green_spawn(&g, store_later, &l), 0);
    ASSERT_EQ(task_wait(&call, "slow", 10, &result, &err), 0);
    ASSERT_EQ(json_integer_value(result), 7);
    json_decref(result);
    green_join(g, NULL);

    ASSERT_EQ(task_wait(&call, "never", 0.2, &result, &err), TASK_EFAIL);
    ASSERT_STREQ(err.type, "Timeout");
    ASSERT_STREQ(err.message, "no result for never within 0.2 s");
    green_timeout limit;
    green_timeout_start(&limit, 0.2);
    ASSERT_EQ(task_wait(&call, "never", 10, &result, &err), -ETIMEDOUT);
    ASSERT(green_timeout_end(&limit));
    task_ctx_end(&ctx);
}

TEST(wait_returns_the_result_or_the_error_and_times_out) {
    with_env(wait_outcomes, false);
}

TEST(wait_reads_the_result_backend) {
    with_env(wait_outcomes, true);
}

/* ---- no worker behind the call -------------------------------------------------------- */

static void *no_worker_main(void *arg) {
    (void)arg;
    task_call call = {.id = "solo-1", .name = "t.test"};
    task_error err;
    green_redis *c;
    json_t *result;
    ASSERT_EQ(task_redis(&call, &c, &err), TASK_EFAIL);
    ASSERT_STREQ(err.type, "RuntimeError");
    ASSERT_STREQ(err.message, "t.test: a Redis connection is available only in a task run by "
                              "a worker");
    ASSERT_EQ(task_send(&call, "echo", NULL, NULL, NULL, NULL, &err), TASK_EFAIL);
    ASSERT_STREQ(err.type, "RuntimeError");
    ASSERT_EQ(task_wait(&call, "x", 1, &result, &err), TASK_EFAIL);
    ASSERT_STREQ(err.type, "RuntimeError");
    return NULL;
}

TEST(without_a_worker_services_fail_and_logs_go_to_stderr) {
    ASSERT_EQ(green_run(NULL, NULL, no_worker_main, NULL, NULL), 0);
    if (test_in_child()) {
        task_call call = {.id = "solo-1", .name = "t.test"};
        task_log(&call, TASK_LOG_WARNING, "%d lines, %s", 1, "one");
        exit(0);
    }
    char *err = NULL;
    int st = test_child("without_a_worker_services_fail_and_logs_go_to_stderr", &err);
    ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    ASSERT(strstr(err, "WARN  [task solo-1] 1 lines, one\n") != NULL);
    free(err);
}

/* A worker's log function gets the level, the task id and the message. */
static char logged[256];

static void capture(enum task_log_level level, const char *task_id, const char *fmt, va_list ap) {
    char text[128];
    vsnprintf(text, sizeof text, fmt, ap);
    snprintf(logged, sizeof logged, "%d %s %s", (int)level, task_id, text);
}

static void *logs_main(void *arg) {
    (void)arg;
    task_host *host;
    task_host_cfg cfg = {.broker_url = "redis://127.0.0.1:1/0", .log = capture};
    ASSERT_EQ(task_host_new(&host, &cfg), 0);
    task_ctx ctx;
    task_call call = begin(&ctx, host, "job-9");
    task_log(&call, TASK_LOG_ERROR, "%s=%d", "x", 3);
    ASSERT_STREQ(logged, "3 job-9 x=3");
    task_ctx_end(&ctx);
    task_host_free(host);
    return NULL;
}

TEST(log_lines_go_to_the_worker_with_the_task_id) {
    ASSERT_EQ(green_run(NULL, NULL, logs_main, NULL, NULL), 0);
}

TEST(host_refuses_a_bad_prefix) {
    task_host *host;
    task_host_cfg cfg = {.broker_url = "redis://127.0.0.1:1/0", .prefix = "has space"};
    ASSERT_EQ(task_host_new(&host, &cfg), -EINVAL);
    ASSERT(host == NULL);
    cfg = (task_host_cfg){0};
    ASSERT_EQ(task_host_new(&host, &cfg), -EINVAL);
}
