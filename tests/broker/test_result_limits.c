/*
 * test_result_limits.c - what the broker does with results Redis cannot or will not take:
 * the size limit of the result encoder (broker_result_encode_max: the whole size is told,
 * the text is never built past the limit), and broker_ack's answer when Redis refuses a
 * batch, against a real redis-server: out of memory is a state to wait out (-EAGAIN, with
 * Redis's words), an argument over proto-max-bulk-len is this batch's fault (never a
 * plain link error that would be retried for ever).
 */
#include "broker_conn.h"
#include "broker_keys.h"
#include "broker_result.h"
#include "broker_worker.h"
#include "green.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testlib.h"

/* ---- the encoder's limit ----------------------------------------------------------------- */

/* A SUCCESS result whose value is a string of n bytes c. */
static json_t *string_of(size_t n, char c) {
    char *s = malloc(n);
    ASSERT(s != NULL);
    memset(s, c, n);
    json_t *v = json_stringn(s, n);
    free(s);
    ASSERT(v != NULL);
    return v;
}

static broker_result success(json_t *value) {
    return (broker_result){.id = "big-1",
                           .task = "echo",
                           .status = BROKER_SUCCESS,
                           .result = value,
                           .worker = "h:1:ab",
                           .started_at = 1700000000.25,
                           .finished_at = 1700000000.5};
}

TEST(a_result_within_the_limit_is_the_same_text_as_without_one) {
    json_t *v = string_of(1000, 'x');
    broker_result r = success(v);
    char *plain = broker_result_encode(&r), *text = NULL;
    size_t len = 0;
    ASSERT(plain != NULL);
    ASSERT_EQ(broker_result_encode_max(&r, strlen(plain), &text, &len), 0);
    ASSERT_STREQ(text, plain);
    ASSERT_EQ(len, strlen(plain));
    free(text);
    free(plain);
    json_decref(v);
}

TEST(a_result_one_byte_over_the_limit_is_refused_with_its_size) {
    json_t *v = string_of(1000, 'x');
    broker_result r = success(v);
    char *plain = broker_result_encode(&r), *text = (char *)"untouched";
    size_t len = 0;
    ASSERT_EQ(broker_result_encode_max(&r, strlen(plain) - 1, &text, &len), -E2BIG);
    ASSERT(text == NULL);
    ASSERT_EQ(len, strlen(plain));
    free(plain);
    json_decref(v);
}

/* 16 MiB of control bytes is 96 MiB escaped: the size comes out exact without the text
 * ever being built (the limit here is 1 MiB). */
TEST(control_bytes_are_counted_at_six_each_without_building_the_text) {
    size_t n = (size_t)16 << 20;
    json_t *v = string_of(n, '\x01');
    broker_result r = success(v);
    json_t *empty = json_string("");
    broker_result small = success(empty);
    char *base = broker_result_encode(&small), *text = NULL;
    size_t len = 0;
    ASSERT_EQ(broker_result_encode_max(&r, (size_t)1 << 20, &text, &len), -E2BIG);
    ASSERT(text == NULL);
    ASSERT_EQ(len, strlen(base) + 6 * n);
    free(base);
    json_decref(empty);
    json_decref(v);
}

TEST(quotes_are_counted_at_two_each) {
    json_t *v = string_of(100000, '"');
    broker_result r = success(v);
    json_t *empty = json_string("");
    broker_result small = success(empty);
    char *base = broker_result_encode(&small), *text = NULL;
    size_t len = 0;
    ASSERT_EQ(broker_result_encode_max(&r, 4096, &text, &len), -E2BIG);
    ASSERT_EQ(len, strlen(base) + 2 * 100000);
    free(base);
    json_decref(empty);
    json_decref(v);
}

TEST(limit_zero_means_no_limit) {
    json_t *v = string_of(100000, 'y');
    broker_result r = success(v);
    char *text = NULL;
    size_t len = 0;
    ASSERT_EQ(broker_result_encode_max(&r, 0, &text, &len), 0);
    ASSERT(text != NULL && len > 100000 && strlen(text) == len);
    free(text);
    json_decref(v);
}

TEST(no_id_is_invalid_whatever_the_limit) {
    broker_result r = {.status = BROKER_SUCCESS};
    char *text = NULL;
    size_t len = 7;
    ASSERT_EQ(broker_result_encode_max(&r, 10, &text, &len), -EINVAL);
    ASSERT(text == NULL && len == 0);
}

/* ---- what Redis refuses -------------------------------------------------------------- */

TEST(refusal_states_are_named_from_the_error_code) {
    ASSERT_STREQ(broker_refusal_state("OOM command not allowed when used memory > "
                                      "'maxmemory'."),
                 "oom");
    ASSERT_STREQ(broker_refusal_state("READONLY You can't write against a read only replica."),
                 "readonly");
    ASSERT_STREQ(broker_refusal_state("MISCONF Redis is configured to save RDB snapshots"),
                 "misconf");
    ASSERT_STREQ(broker_refusal_state("BUSY Redis is busy running a script."), "busy");
    ASSERT_STREQ(broker_refusal_state("NOPERM this user has no permissions"), "noperm");
    ASSERT(broker_refusal_state("ERR Protocol error: invalid bulk length") == NULL);
    ASSERT(broker_refusal_state("ERR user_script:1: bad") == NULL);
    ASSERT(broker_refusal_state("OOMPH not a code") == NULL);
    ASSERT(broker_refusal_state("") == NULL);
}

static test_redis server;

static redisReply *cmd(const char *fmt, const char *a, const char *b) {
    redisContext *c = redisConnect("127.0.0.1", server.port);
    ASSERT(c != NULL && c->err == 0);
    redisReply *r = redisCommand(c, fmt, a, b);
    ASSERT(r != NULL && r->type != REDIS_REPLY_ERROR);
    redisFree(c);
    return r;
}

static void config_set(const char *name, const char *value) {
    freeReplyObject(cmd("CONFIG SET %s %s", name, value));
}

/* A worker with one message in flight under tag "1" (as fetch.lua leaves it). */
struct ack_env {
    broker_conn *conn;
    broker_worker *w;
};

static void ack_env_start(struct ack_env *e) {
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/0", server.port);
    e->conn = broker_conn_new(url, "broker", NULL, NULL);
    ASSERT(e->conn != NULL);
    const char *queues[] = {"default"};
    broker_worker_cfg cfg = {.prefix = "wt",
                             .wid = "h:1:ab",
                             .queues = queues,
                             .nqueues = 1,
                             .result_expires = 60,
                             .heartbeat_ttl = 15,
                             .max_redeliveries = 5};
    e->w = broker_worker_new(&cfg, e->conn, NULL);
    ASSERT(e->w != NULL);
    ASSERT_EQ(broker_conn_wait_up(e->conn, 5), 0);
    redisReply *r = cmd("HSET wt:inflight:h:1:ab %s %s", "1", "default\n{\"task\":\"echo\"}");
    freeReplyObject(r);
}

static void ack_env_end(struct ack_env *e) {
    broker_worker_free(e->w);
    broker_conn_close(e->conn);
}

/* A STARTED result (a conditional store: the script's first write is the SET) on a Redis
 * over maxmemory with noeviction: refused for now, in Redis's words, nothing written. */
static void *oom_body(void *arg) {
    (void)arg;
    struct ack_env e;
    ack_env_start(&e);
    config_set("maxmemory-policy", "noeviction");
    config_set("maxmemory", "1");
    broker_ack_entry ack = {
        .tag = "1", .id = "job-1", .json = "{\"status\":\"STARTED\"}", .if_owned = true};
    bool owned = false;
    ASSERT_EQ(broker_ack(e.w, &ack, 1, &owned, 5), -EAGAIN);
    const char *text = broker_worker_refusal(e.w);
    ASSERT(strncmp(text, "OOM command not allowed", 23) == 0);
    ASSERT(strstr(text, "script:") == NULL); /* the script's location is cut off */
    ASSERT_STREQ(broker_refusal_state(text), "oom");
    config_set("maxmemory", "0");
    ASSERT_EQ(broker_ack(e.w, &ack, 1, &owned, 5), 0);
    ASSERT(owned);
    ack_env_end(&e);
    return NULL;
}

TEST(ack_refused_for_want_of_memory_is_a_state_to_wait_out) {
    test_redis_start(&server, NULL);
    ASSERT_EQ(green_run(NULL, NULL, oom_body, NULL, NULL), 0);
    test_redis_stop(&server);
}

/* A result over proto-max-bulk-len (1 MiB at the lowest): Redis answers with a protocol
 * error and closes the connection, while the worker may still be writing. Either way the
 * answer must not be a plain link error that reconnecting would cure... unless Redis cut
 * the link before its error arrived: then the caller's rule for big batches applies
 * (wd_batch.h), and a retry meets the same. Here: never a success, never -EAGAIN. */
static void *too_long_body(void *arg) {
    (void)arg;
    struct ack_env e;
    ack_env_start(&e);
    config_set("proto-max-bulk-len", "1mb");
    size_t n = (size_t)2 << 20;
    char *json = malloc(n + 1);
    ASSERT(json != NULL);
    memset(json, 'x', n);
    json[n] = '\0';
    broker_ack_entry ack = {.tag = "1", .id = "job-1", .json = json};
    bool owned = false;
    int rc = broker_ack(e.w, &ack, 1, &owned, 10);
    ASSERT(rc == -EREMOTEIO || broker_conn_error_is_link(rc));
    if (rc == -EREMOTEIO)
        ASSERT(strstr(broker_worker_refusal(e.w), "Protocol error") != NULL);
    printf("the ack of 2 MiB: %s\n", rc == -EREMOTEIO ? broker_worker_refusal(e.w) : strerror(-rc));
    /* The message is still this worker's: nothing of the batch was run. The link may take
     * a moment to be seen down (then up again). */
    free(json);
    ack.json = "{\"status\":\"FAILURE\"}";
    for (int i = 0; i < 50; i++) {
        ASSERT_EQ(broker_conn_wait_up(e.conn, 10), 0);
        if ((rc = broker_ack(e.w, &ack, 1, &owned, 5)) == 0 || !broker_conn_error_is_link(rc))
            break;
        green_sleep(0.1);
    }
    ASSERT_EQ(rc, 0);
    ASSERT(owned);
    ack_env_end(&e);
    return NULL;
}

TEST(ack_of_an_argument_over_proto_max_bulk_len_is_no_success_and_no_state) {
    test_redis_start(&server, NULL);
    ASSERT_EQ(green_run(NULL, NULL, too_long_body, NULL, NULL), 0);
    test_redis_stop(&server);
}
