/*
 * test_e2e_canvas.c - chain, group and chord through the real workerd binary and a real
 * redis-server, as a redis-cli producer uses them (one LPUSH): the chain's results
 * threaded through its links (or not, immutable), a chain aborted by a link that failed
 * after its retries, a group's ordered result and children, a chord's callback with the
 * ordered member results, and the failures of each. Exactly once under the races that
 * matter: members finishing together on two workers, a member delivered twice, a member's
 * worker SIGKILLed after its result was stored but before its ack (a result backend on
 * another Redis, the broker paused), the callback's worker SIGKILLed. Bad input is
 * refused whole: dead letter, FAILURE result, nothing enqueued.
 */
#include "e2e.h"
#include "testlib.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The result's "result" as compact JSON, reals with 6 digits (a static buffer, one at a
 * time). */
static const char *result_text(const json_t *res) {
    static char buf[65536];
    char *s = json_dumps(json_object_get(res, "result"),
                         JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(6));
    snprintf(buf, sizeof buf, "%s", s ? s : "(none)");
    free(s);
    return buf;
}

static const char *error_type(const json_t *res) {
    return e2e_jstr(json_object_get(res, "error"), "type");
}

/* How many times task id started, by the debug log's "[task <id>] <task> started". */
static int starts(const e2e_worker *w, const char *id, const char *task) {
    char needle[512];
    snprintf(needle, sizeof needle, "[task %s] %s started", id, task);
    return e2e_log_count(w, needle);
}

TEST(chain_threads_each_result_into_the_next_link) {
    e2e_env e;
    e2e_env_start(&e);
    E2E_START_READY(&e.w, e.redis.port, "-l", "debug");
    e2e_push(e.c, "default",
             "{\"id\":\"c1\",\"task\":\"echo\",\"args\":[1],\"chain\":[{\"id\":\"c2\",\"task\":"
             "\"echo\",\"args\":[2]},{\"id\":\"c3\",\"task\":\"echo\",\"args\":[3]}]}");
    json_t *c3 = e2e_must_result(&e, "c3");
    ASSERT_STREQ(e2e_jstr(c3, "status"), "SUCCESS");
    ASSERT_STREQ(result_text(c3), "[[[1],2],3]");
    json_t *c2 = e2e_must_result(&e, "c2");
    ASSERT_STREQ(result_text(c2), "[[1],2]");
    /* The markers that make a link's enqueue idempotent expire like results. */
    ASSERT(e2e_int(e.c, "TTL workerd:canvas:c2:sent") > 0);
    ASSERT_EQ(e2e_int(e.c, "LLEN workerd:queue:default"), 0);
    json_decref(c2);
    json_decref(c3);
    e2e_env_end(&e);
}

TEST(immutable_link_keeps_its_own_args_and_a_link_without_id_gets_one) {
    e2e_env e;
    e2e_env_start(&e);
    E2E_START_READY(&e.w, e.redis.port, "-l", "debug");
    e2e_push(e.c, "default",
             "{\"id\":\"i1\",\"task\":\"echo\",\"args\":[1],\"chain\":[{\"task\":\"echo\","
             "\"args\":[2]},{\"id\":\"i3\",\"task\":\"echo\",\"args\":[3],\"immutable\":true}]}");
    json_t *i3 = e2e_must_result(&e, "i3");
    ASSERT_STREQ(result_text(i3), "[3]");
    json_decref(i3);
    /* The middle link ran under an id made from its parent's: its log line says so. */
    ASSERT(e2e_log_wait(&e.w, "echo started", 1.0));
    ASSERT_EQ(e2e_log_count(&e.w, "echo started"), 3);
    e2e_env_end(&e);
}

TEST(failed_link_aborts_the_rest_of_the_chain_after_its_retries) {
    e2e_env e;
    e2e_env_start(&e);
    E2E_START_READY(&e.w, e.redis.port, "-l", "debug");
    e2e_push(e.c, "default",
             "{\"id\":\"a1\",\"task\":\"echo\",\"chain\":[{\"id\":\"a2\",\"task\":\"fail\","
             "\"args\":[\"boom\"],\"immutable\":true,\"kwargs\":{\"retry\":true,\"retry_in\":0.1},"
             "\"max_retries\":1},{\"id\":\"a3\",\"task\":\"echo\"},{\"task\":\"echo\"},"
             "{\"id\":\"a4\",\"task\":\"echo\"}]}");
    json_t *a2 = e2e_must_result(&e, "a2");
    ASSERT_STREQ(e2e_jstr(a2, "status"), "FAILURE");
    ASSERT_EQ(e2e_jnum(a2, "retries"), 1);
    for (int i = 3; i <= 4; i++) {
        char id[8];
        snprintf(id, sizeof id, "a%d", i);
        json_t *r = e2e_must_result(&e, id);
        ASSERT_STREQ(e2e_jstr(r, "status"), "FAILURE");
        ASSERT_STREQ(error_type(r), "ChainAborted");
        ASSERT(strstr(e2e_jerror(r), "a2") != NULL);
        json_decref(r);
        ASSERT_EQ(starts(&e.w, id, "echo"), 0);
    }
    ASSERT_EQ(e2e_log_count(&e.w, "echo started"), 1); /* a1 alone */
    ASSERT_EQ(e2e_int(e.c, "LLEN workerd:queue:default"), 0);
    ASSERT_EQ(e2e_int(e.c, "ZCARD workerd:scheduled"), 0);
    json_decref(a2);
    e2e_env_end(&e);
}

TEST(group_result_is_in_member_order_whatever_order_they_finish_in) {
    e2e_env e;
    e2e_env_start(&e);
    E2E_START_READY(&e.w, e.redis.port, "-c", "4", "-l", "debug");
    e2e_push(e.c, "default",
             "{\"id\":\"g\",\"task\":\"group\",\"args\":[[{\"task\":\"sleep\",\"args\":[0.6]},"
             "{\"id\":\"mine\",\"task\":\"sleep\",\"args\":[0.4]},{\"task\":\"sleep\",\"args\":"
             "[0.2]},{\"task\":\"echo\",\"args\":[\"x\"]}]]}");
    json_t *g = e2e_wait_result(e.c, "g", "SUCCESS", TEST_NEVER);
    ASSERT(g != NULL);
    ASSERT_STREQ(result_text(g), "[0.6,0.4,0.2,[\"x\"]]");
    char *kids = json_dumps(json_object_get(g, "children"), JSON_COMPACT);
    ASSERT_STREQ(kids, "[\"g.0\",\"mine\",\"g.2\",\"g.3\"]");
    free(kids);
    ASSERT(e2e_jnum(g, "finished_at") > 0);
    json_t *m = e2e_must_result(&e, "g.2");
    ASSERT_STREQ(result_text(m), "0.2");
    json_decref(m);
    /* Its state is gone; the marker that it fired stays until it expires. */
    ASSERT_EQ(e2e_int(e.c, "EXISTS workerd:canvas:g workerd:canvas:g:done"), 0);
    ASSERT(e2e_int(e.c, "TTL workerd:canvas:g:fired") > 0);
    json_decref(g);
    e2e_env_end(&e);
}

TEST(group_with_a_failing_member_fails_and_lists_its_error) {
    e2e_env e;
    e2e_env_start(&e);
    E2E_START_READY(&e.w, e.redis.port, "-l", "debug");
    e2e_push(e.c, "default",
             "{\"id\":\"gf\",\"task\":\"group\",\"args\":[[{\"task\":\"echo\",\"args\":[1]},"
             "{\"task\":\"fail\",\"args\":[\"nope\"]},{\"task\":\"echo\",\"args\":[3]}]]}");
    json_t *g = e2e_must_result(&e, "gf");
    ASSERT_STREQ(e2e_jstr(g, "status"), "FAILURE");
    ASSERT_STREQ(error_type(g), "GroupError");
    json_t *errs = json_object_get(g, "errors");
    ASSERT_EQ(json_array_size(errs), 1);
    json_t *err = json_array_get(errs, 0);
    ASSERT_EQ(e2e_jnum(err, "index"), 1);
    ASSERT_STREQ(e2e_jstr(err, "id"), "gf.1");
    ASSERT_STREQ(e2e_jstr(err, "type"), "TaskError");
    ASSERT_STREQ(e2e_jstr(err, "message"), "nope");
    json_decref(g);
    e2e_env_end(&e);
}

TEST(chord_callback_gets_the_ordered_results_before_its_own_args) {
    e2e_env e;
    e2e_env_start(&e);
    E2E_START_READY(&e.w, e.redis.port, "-c", "4", "-l", "debug");
    e2e_push(e.c, "default",
             "{\"id\":\"ch\",\"task\":\"chord\",\"args\":[[{\"task\":\"sleep\",\"args\":[0.3]},"
             "{\"task\":\"echo\",\"args\":[2]},{\"task\":\"sleep\",\"args\":[0.1]}],"
             "{\"id\":\"cb\",\"task\":\"echo\",\"args\":[\"done\"],\"kwargs\":{}}]}");
    json_t *cb = e2e_must_result(&e, "cb");
    ASSERT_STREQ(e2e_jstr(cb, "status"), "SUCCESS");
    ASSERT_STREQ(result_text(cb), "[[0.3,[2],0.1],\"done\"]");
    json_t *ch = e2e_must_result(&e, "ch");
    ASSERT_STREQ(e2e_jstr(ch, "status"), "SUCCESS");
    ASSERT_EQ(starts(&e.w, "cb", "echo"), 1);
    json_decref(ch);
    json_decref(cb);
    /* Immutable: the callback runs with its own args only. */
    e2e_push(e.c, "default",
             "{\"id\":\"chi\",\"task\":\"chord\",\"args\":[[{\"task\":\"echo\"}],{\"id\":"
             "\"cbi\",\"task\":\"echo\",\"args\":[7],\"immutable\":true}]}");
    cb = e2e_must_result(&e, "cbi");
    ASSERT_STREQ(result_text(cb), "[7]");
    json_decref(cb);
    /* No members: the callback runs at once with an empty list. */
    e2e_push(e.c, "default",
             "{\"id\":\"che\",\"task\":\"chord\",\"args\":[[],{\"id\":\"cbe\",\"task\":"
             "\"echo\"}]}");
    cb = e2e_must_result(&e, "cbe");
    ASSERT_STREQ(result_text(cb), "[[]]");
    json_decref(cb);
    e2e_env_end(&e);
}

TEST(chord_with_a_failing_member_never_runs_its_callback) {
    e2e_env e;
    e2e_env_start(&e);
    E2E_START_READY(&e.w, e.redis.port, "-l", "debug");
    e2e_push(e.c, "default",
             "{\"id\":\"cf\",\"task\":\"chord\",\"args\":[[{\"task\":\"echo\"},{\"task\":"
             "\"fail\",\"args\":[\"bad\"]}],{\"id\":\"cfcb\",\"task\":\"echo\"}]}");
    json_t *cb = e2e_must_result(&e, "cfcb");
    ASSERT_STREQ(e2e_jstr(cb, "status"), "FAILURE");
    ASSERT_STREQ(error_type(cb), "ChordError");
    json_t *ch = e2e_must_result(&e, "cf");
    ASSERT_STREQ(error_type(ch), "ChordError");
    ASSERT_EQ(starts(&e.w, "cfcb", "echo"), 0);
    ASSERT_EQ(e2e_int(e.c, "LLEN workerd:queue:default"), 0);
    json_decref(ch);
    json_decref(cb);
    e2e_env_end(&e);
}

enum { RACE_CHORDS = 20, RACE_MEMBERS = 40 };

TEST(chord_members_finishing_together_on_two_workers_fire_once) {
    e2e_env e;
    e2e_env_start(&e);
    e2e_worker w2;
    E2E_START(&e.w, e.redis.port, "-c", "50", "-l", "debug");
    E2E_START(&w2, e.redis.port, "-c", "50", "-l", "debug");
    e2e_wait_ready(&e.w);
    e2e_wait_ready(&w2);
    /* Every member sleeps the same 0.2 s: they finish together on both workers. */
    for (int k = 0; k < RACE_CHORDS; k++) {
        char msg[8192];
        int len = snprintf(msg, sizeof msg, "{\"id\":\"r%d\",\"task\":\"chord\",\"args\":[[", k);
        for (int i = 0; i < RACE_MEMBERS; i++)
            len += snprintf(msg + len, sizeof msg - (size_t)len,
                            "%s{\"task\":\"sleep\",\"args\":[0.2]}", i ? "," : "");
        snprintf(msg + len, sizeof msg - (size_t)len, "],{\"id\":\"r%d-cb\",\"task\":\"echo\"}]}",
                 k);
        e2e_push(e.c, "default", msg);
    }
    for (int k = 0; k < RACE_CHORDS; k++) {
        char id[32];
        snprintf(id, sizeof id, "r%d-cb", k);
        json_t *cb = e2e_must_result_within(&e, id, TEST_NEVER);
        ASSERT_STREQ(e2e_jstr(cb, "status"), "SUCCESS");
        ASSERT_EQ(json_array_size(json_array_get(json_object_get(cb, "result"), 0)), RACE_MEMBERS);
        json_decref(cb);
    }
    /* Both workers ran members; each callback ran exactly once, on either. */
    ASSERT(e2e_log_count(&e.w, "sleep started") > 0);
    ASSERT(e2e_log_count(&w2, "sleep started") > 0);
    for (int k = 0; k < RACE_CHORDS; k++) {
        char id[32];
        snprintf(id, sizeof id, "r%d-cb", k);
        ASSERT_EQ(starts(&e.w, id, "echo") + starts(&w2, id, "echo"), 1);
    }
    ASSERT_EQ(e2e_int(e.c, "LLEN workerd:queue:default"), 0);
    e2e_worker_signal(&w2, SIGTERM);
    ASSERT_EQ(e2e_worker_wait(&w2, 30.0), 0);
    e2e_worker_stop(&w2);
    e2e_env_end(&e);
}

TEST(member_delivered_twice_is_counted_once) {
    e2e_env e;
    e2e_env_start(&e);
    E2E_START_READY(&e.w, e.redis.port, "-c", "4", "-l", "debug");
    e2e_push(e.c, "default",
             "{\"id\":\"d\",\"task\":\"chord\",\"args\":[[{\"task\":\"sleep\",\"args\":[1.5]},"
             "{\"task\":\"echo\",\"args\":[1]},{\"task\":\"echo\",\"args\":[2]}],"
             "{\"id\":\"dcb\",\"task\":\"echo\"}]}");
    json_t *m1 = e2e_must_result(&e, "d.1");
    json_decref(m1);
    /* Member 1 again, as a redelivery brings it, while member 0 still runs: counting it
     * twice would make three and fire the callback without member 0. */
    e2e_push(e.c, "default",
             "{\"id\":\"d.1\",\"task\":\"echo\",\"args\":[1],\"member_of\":{\"id\":\"d\","
             "\"index\":1},\"redelivered\":1}");
    ASSERT(e2e_log_wait_n(&e.w, "[task d.1] echo started", 2, TEST_SOON));
    json_t *cb = e2e_must_result(&e, "dcb");
    ASSERT_STREQ(result_text(cb), "[[1.5,[1],[2]]]");
    json_decref(cb);
    /* And once more after it fired: nothing fires again. */
    e2e_push(e.c, "default",
             "{\"id\":\"d.2\",\"task\":\"echo\",\"args\":[2],\"member_of\":{\"id\":\"d\","
             "\"index\":2}}");
    ASSERT(e2e_log_wait_n(&e.w, "[task d.2] echo started", 2, TEST_SOON));
    json_t *d2 = e2e_wait_result(e.c, "d.2", "SUCCESS", TEST_SOON);
    json_decref(d2);
    ASSERT_EQ(starts(&e.w, "dcb", "echo"), 1);
    e2e_env_end(&e);
}

/* The second Redis of a test, for results. */
static const char *url_of(int port, char *buf, size_t n) {
    snprintf(buf, n, "redis://127.0.0.1:%d/0", port);
    return buf;
}

TEST(member_killed_after_its_result_before_its_ack_is_counted_once) {
    e2e_env e;
    e2e_env_start(&e);
    test_redis rb;
    test_redis_start(&rb, NULL);
    redisContext *cr = e2e_redis(rb.port);
    char url[64];
    url_of(rb.port, url, sizeof url);
    e2e_worker a, b;
    /* Results on another Redis: the result is stored there, then acked on the broker. */
    E2E_START(&a, e.redis.port, "--result-backend", url, "--heartbeat", "1", "-c", "4", "-l",
              "debug");
    e2e_wait_ready(&a);
    e2e_push(e.c, "default",
             "{\"id\":\"k\",\"task\":\"chord\",\"args\":[[{\"task\":\"sleep\",\"args\":[1]},"
             "{\"task\":\"echo\",\"args\":[1]}],{\"id\":\"kcb\",\"task\":\"echo\"}]}");
    ASSERT(e2e_log_wait(&a, "[task k.0] sleep started", TEST_SOON));
    json_t *m1 = e2e_wait_result(cr, "k.1", "SUCCESS", TEST_SOON);
    ASSERT(m1 != NULL);
    json_decref(m1);
    /* The broker takes no writes: k.0's result reaches the backend, its ack cannot. */
    redisContext *admin = e2e_redis(e.redis.port);
    redisReply *r = redisCommand(admin, "CLIENT PAUSE 30000 WRITE");
    ASSERT(r && r->type == REDIS_REPLY_STATUS);
    freeReplyObject(r);
    json_t *m0 = e2e_wait_result(cr, "k.0", "SUCCESS", TEST_SOON);
    ASSERT(m0 != NULL);
    json_decref(m0);
    e2e_worker_signal(&a, SIGKILL);
    ASSERT_EQ(e2e_worker_wait(&a, 5.0), 128 + SIGKILL);
    r = redisCommand(admin, "CLIENT UNPAUSE");
    freeReplyObject(r);
    E2E_START(&b, e.redis.port, "--result-backend", url, "--heartbeat", "1", "-c", "4", "-l",
              "debug");
    /* k.0 comes back once a's heartbeat expires, runs again, and completes the chord. */
    json_t *cb = e2e_wait_result(cr, "kcb", "SUCCESS", TEST_NEVER);
    if (!cb)
        e2e_log_dump(&b);
    ASSERT(cb != NULL);
    ASSERT_STREQ(result_text(cb), "[[1,[1]]]");
    json_decref(cb);
    ASSERT_EQ(starts(&b, "k.0", "sleep"), 1);
    ASSERT_EQ(starts(&a, "kcb", "echo") + starts(&b, "kcb", "echo"), 1);
    e2e_worker_signal(&b, SIGTERM);
    ASSERT_EQ(e2e_worker_wait(&b, 30.0), 0);
    e2e_worker_stop(&a);
    e2e_worker_stop(&b);
    redisFree(admin);
    redisFree(cr);
    test_redis_stop(&rb);
    e2e_env_end(&e);
}

TEST(callback_whose_worker_dies_is_redelivered) {
    e2e_env e;
    e2e_env_start(&e);
    e2e_worker a, b;
    E2E_START_READY(&a, e.redis.port, "--heartbeat", "1", "-l", "debug");
    e2e_push(e.c, "default",
             "{\"id\":\"x\",\"task\":\"chord\",\"args\":[[{\"task\":\"echo\",\"args\":[1]}],"
             "{\"id\":\"xcb\",\"task\":\"sleep\",\"args\":[30],\"immutable\":true}]}");
    ASSERT(e2e_log_wait(&a, "[task xcb] sleep started", TEST_SOON));
    e2e_worker_signal(&a, SIGKILL);
    ASSERT_EQ(e2e_worker_wait(&a, 5.0), 128 + SIGKILL);
    E2E_START_READY(&b, e.redis.port, "--heartbeat", "1", "-l", "debug");
    ASSERT(e2e_log_wait(&b, "[task xcb] sleep started", TEST_NEVER));
    ASSERT(e2e_log_count(&b, "redelivered 1 time(s)") == 1);
    e2e_worker_stop(&a);
    e2e_worker_stop(&b);
    e2e_env_end(&e);
}

enum { BIG = 2000 };

TEST(chord_of_2000_members_fires_once_with_every_result) {
    e2e_env e;
    e2e_env_start(&e);
    E2E_START_READY(&e.w, e.redis.port, "-c", "200");
    size_t cap = (size_t)BIG * 48 + 256;
    char *msg = malloc(cap);
    ASSERT(msg != NULL);
    size_t len = (size_t)snprintf(msg, cap, "{\"id\":\"big\",\"task\":\"chord\",\"args\":[[");
    for (int i = 0; i < BIG; i++)
        len += (size_t)snprintf(msg + len, cap - len, "%s{\"task\":\"echo\",\"args\":[%d]}",
                                i ? "," : "", i);
    snprintf(msg + len, cap - len, "],{\"id\":\"bigcb\",\"task\":\"echo\"}]}");
    e2e_push(e.c, "default", msg);
    free(msg);
    json_t *cb = e2e_must_result_within(&e, "bigcb", TEST_NEVER);
    json_t *list = json_array_get(json_object_get(cb, "result"), 0);
    ASSERT_EQ(json_array_size(list), BIG);
    for (int i = 0; i < BIG; i++)
        ASSERT_EQ(json_integer_value(json_array_get(json_array_get(list, (size_t)i), 0)), i);
    json_decref(cb);
    e2e_env_end(&e);
}

/* A message refused whole: FAILURE of etype with a reason containing `words`, one dead
 * letter, nothing enqueued. */
static void expect_refused(e2e_env *e, const char *id, const char *etype, const char *words) {
    json_t *res = e2e_must_result(e, id);
    ASSERT_STREQ(e2e_jstr(res, "status"), "FAILURE");
    ASSERT_STREQ(error_type(res), etype);
    if (!strstr(e2e_jerror(res), words))
        test__fail(__FILE__, __LINE__, "%s: \"%s\" does not say \"%s\"", id, e2e_jerror(res),
                   words);
    json_decref(res);
    ASSERT_EQ(e2e_int(e->c, "LLEN workerd:queue:default"), 0);
    ASSERT_EQ(e2e_count_keys(e->c, "workerd:canvas:*"), 0);
}

TEST(bad_signatures_are_refused_whole) {
    e2e_env e;
    e2e_env_start(&e);
    E2E_START_READY(&e.w, e.redis.port, "--max-message-size", "8M", "-l", "debug");
    e2e_push(e.c, "default",
             "{\"id\":\"b1\",\"task\":\"group\",\"args\":[[{\"task\":\"echo\"},{\"task\":"
             "\"no.such\"}]]}");
    expect_refused(&e, "b1", "NotRegistered", "args[0][1]: unknown task \"no.such\"");
    e2e_push(e.c, "default",
             "{\"id\":\"b2\",\"task\":\"echo\",\"chain\":[{\"task\":\"echo\"},42]}");
    expect_refused(&e, "b2", "InvalidMessage", "chain[1] is not a signature");
    e2e_push(e.c, "default", "{\"id\":\"b3\",\"task\":\"group\"}");
    expect_refused(&e, "b3", "TypeError", "group takes args");
    e2e_push(e.c, "default",
             "{\"id\":\"b4\",\"task\":\"chord\",\"args\":[[{\"task\":\"echo\",\"countdown\":"
             "-1}],{\"task\":\"echo\"}]}");
    expect_refused(&e, "b4", "InvalidMessage", "args[0][0]: field \"countdown\"");
    /* Nesting that would fire early is refused, naming the signature. */
    e2e_push(e.c, "default",
             "{\"id\":\"b5\",\"task\":\"echo\",\"chain\":[{\"task\":\"group\",\"args\":[[]]}]}");
    expect_refused(&e, "b5", "InvalidMessage", "chain[0] is a group");
    e2e_push(e.c, "default",
             "{\"id\":\"b6\",\"task\":\"group\",\"args\":[[{\"task\":\"echo\",\"chain\":[{"
             "\"task\":\"echo\"}]}]]}");
    expect_refused(&e, "b6", "InvalidMessage", "args[0][0] has a chain of its own");
    /* A chain of 100,000 links and a group of 100,001 members: over the limits. */
    size_t cap = 100001 * 20 + 256, len;
    char *msg = malloc(cap);
    ASSERT(msg != NULL);
    len = (size_t)snprintf(msg, cap, "{\"id\":\"b7\",\"task\":\"echo\",\"chain\":[");
    for (int i = 0; i < 100000; i++)
        len += (size_t)snprintf(msg + len, cap - len, "%s{\"task\":\"echo\"}", i ? "," : "");
    snprintf(msg + len, cap - len, "]}");
    e2e_push(e.c, "default", msg);
    expect_refused(&e, "b7", "InvalidMessage", "chain has 100000 links; at most 1000");
    len = (size_t)snprintf(msg, cap, "{\"id\":\"b8\",\"task\":\"group\",\"args\":[[");
    for (int i = 0; i < 100001; i++)
        len += (size_t)snprintf(msg + len, cap - len, "%s{\"task\":\"echo\"}", i ? "," : "");
    snprintf(msg + len, cap - len, "]]}");
    e2e_push(e.c, "default", msg);
    expect_refused(&e, "b8", "InvalidMessage", "args[0] has 100001 members; at most 100000");
    free(msg);
    ASSERT_EQ(e2e_int(e.c, "LLEN workerd:dead"), 8);
    ASSERT_EQ(e2e_log_count(&e.w, "echo started"), 0);
    e2e_env_end(&e);
}

TEST(member_for_another_queue_is_judged_by_that_queue_s_workers) {
    e2e_env e;
    e2e_env_start(&e);
    E2E_START_READY(&e.w, e.redis.port, "-l", "debug");
    /* This worker does not consume "other": it cannot know that queue's tasks. */
    e2e_push(e.c, "default",
             "{\"id\":\"q\",\"task\":\"group\",\"args\":[[{\"task\":\"echo\"},{\"task\":"
             "\"other.only\",\"queue\":\"other\"}]]}");
    json_t *g = e2e_wait_result(e.c, "q", "STARTED", TEST_SOON);
    ASSERT(g != NULL);
    json_decref(g);
    ASSERT(e2e_int(e.c, "LLEN workerd:queue:other") == 1);
    /* Its workers do not know it either: the member is dead-lettered, the group fails. */
    e2e_worker w2;
    E2E_START_READY(&w2, e.redis.port, "-Q", "other", "-l", "debug");
    g = e2e_must_result(&e, "q");
    ASSERT_STREQ(error_type(g), "GroupError");
    json_t *err = json_array_get(json_object_get(g, "errors"), 0);
    ASSERT_STREQ(e2e_jstr(err, "id"), "q.1");
    ASSERT_STREQ(e2e_jstr(err, "type"), "NotRegistered");
    json_decref(g);
    e2e_worker_signal(&w2, SIGTERM);
    ASSERT_EQ(e2e_worker_wait(&w2, 30.0), 0);
    e2e_worker_stop(&w2);
    e2e_env_end(&e);
}
