/*
 * test_scripts.c - the broker's Lua scripts against a real redis-server: fetch (priority,
 * batch limit, landing lists, FIFO, atomic moves), ack (owner check), recover (requeue to
 * the right end, redelivery count, poison pills, unparseable messages, live workers left
 * alone), requeue (by tag, or everything) and dead_requeue; and the shared commands of
 * broker_cmds.h, built as broker_batch vectors and sent as workerctl sends them (a
 * pipeline, EVAL when Redis answers NOSCRIPT). Plain synchronous hiredis; each test starts
 * its own server.
 */
#include "broker_batch.h"
#include "broker_cmds.h"
#include "broker_conn.h"
#include "broker_keys.h"
#include "broker_msg.h"
#include "broker_scripts.h"
#include "broker_worker.h"
#include "green.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <stdarg.h>
#include <string.h>

#include "brokerfix_script.h"
#include "testlib.h"

static broker_keys keys;

/* The fixture, and the keys of prefix "wt". */
static void start(void) {
    bfix_start();
    ASSERT_EQ(broker_keys_init(&keys, "wt"), 0);
}

static const char *key_queue(const char *q) {
    static char buf[BROKER_KEY_MAX];
    broker_key_queue(&keys, q, buf);
    return buf;
}

static const char *key_inflight(const char *wid) {
    static char buf[BROKER_KEY_MAX];
    broker_key_inflight(&keys, wid, buf);
    return buf;
}

static const char *key_landing(const char *wid, const char *q) {
    static char buf[BROKER_KEY_MAX];
    broker_key_landing(&keys, wid, q, buf);
    return buf;
}

static void push(const char *queue, const char *raw) {
    freeReplyObject(bfix_cmd("LPUSH %s %s", key_queue(queue), raw));
}

/* fetch.lua for wid with batch n over the queues (NULL-terminated list). */
static redisReply *fetch(const char *wid, int n, const char *q1, const char *q2) {
    char nbuf[16];
    snprintf(nbuf, sizeof nbuf, "%d", n);
    const char *args[] = {"wt", wid, nbuf, "0", q1, q2, NULL};
    redisReply *r = bfix_run(BROKER_SCRIPT_FETCH, args);
    ASSERT_EQ(r->type, REDIS_REPLY_ARRAY);
    ASSERT_EQ(r->elements % 3, 0);
    return r;
}

static const char *raw_at(redisReply *r, size_t i) {
    return r->element[3 * i + 2]->str;
}

static long long int_at(redisReply *r, size_t i) {
    return r->element[i]->integer;
}

static redisReply *recover(const char *wid, const char *max) {
    const char *args[] = {"wt", wid, max, "1700000000.5", "rescuer", NULL};
    redisReply *r = bfix_run(BROKER_SCRIPT_RECOVER, args);
    ASSERT(r->type == REDIS_REPLY_ARRAY && r->elements == 3);
    return r;
}

/* ---- SHA1 and the embedded texts ------------------------------------------------------ */

TEST(sha1_matches_known_vectors) {
    char out[41];
    broker_sha1_hex("", 0, out);
    ASSERT_STREQ(out, "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    broker_sha1_hex("abc", 3, out);
    ASSERT_STREQ(out, "a9993e364706816aba3e25717850c26c9cd0d89d");
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    broker_sha1_hex(two, strlen(two), out);
    ASSERT_STREQ(out, "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
}

TEST(script_digests_match_redis_script_load) {
    start();
    for (int id = 0; id < BROKER_SCRIPT_COUNT; id++) {
        const broker_script *s = broker_script_get((broker_script_id)id);
        ASSERT(s->len > 100 && strlen(s->text) == s->len);
        ASSERT(strstr(s->text, s->name) != NULL); /* each file starts "-- <name>.lua" */
        redisReply *r = redisCommand(bfix_rc, "SCRIPT LOAD %b", s->text, s->len);
        ASSERT(r != NULL && r->type == REDIS_REPLY_STRING);
        ASSERT_STREQ(r->str, s->sha1);
        freeReplyObject(r);
    }
    ASSERT(broker_script_get(BROKER_SCRIPT_COUNT) == NULL);
    bfix_stop();
}

/* ---- fetch ---------------------------------------------------------------------------- */

TEST(fetch_takes_messages_in_fifo_order_into_inflight) {
    start();
    push("default", "m1");
    push("default", "m2");
    push("default", "m3");
    redisReply *r = fetch("w1", 10, "default", NULL);
    ASSERT_EQ(r->elements, 9);
    ASSERT_STREQ(raw_at(r, 0), "m1");
    ASSERT_STREQ(raw_at(r, 1), "m2");
    ASSERT_STREQ(raw_at(r, 2), "m3");
    ASSERT_STREQ(r->element[1]->str, "default");
    ASSERT_EQ(bfix_cmd_int("HLEN %s", key_inflight("w1")), 3);
    ASSERT_STREQ(bfix_cmd_str("HGET %s %s", key_inflight("w1"), r->element[0]->str), "default\nm1");
    ASSERT_EQ(bfix_cmd_int("LLEN %s", key_queue("default")), 0);
    freeReplyObject(r);
    bfix_stop();
}

/* A failover can roll the tag counter back under tags a worker still holds: fetch.lua
 * raises it to the worker's floor first, so no tag is handed out twice; a floor below
 * the counter changes nothing. */
TEST(fetch_never_hands_out_a_tag_below_the_workers_floor) {
    start();
    push("default", "m1");
    push("default", "m2");
    freeReplyObject(bfix_cmd("SET wt:seq 5"));
    const char *args[] = {"wt", "w1", "1", "100", "default", NULL};
    redisReply *r = bfix_run(BROKER_SCRIPT_FETCH, args);
    ASSERT_EQ(r->elements, 3);
    ASSERT_STREQ(r->element[0]->str, "101");
    freeReplyObject(r);
    const char *low[] = {"wt", "w1", "1", "50", "default", NULL};
    r = bfix_run(BROKER_SCRIPT_FETCH, low);
    ASSERT_STREQ(r->element[0]->str, "102");
    freeReplyObject(r);
    bfix_stop();
}

TEST(fetch_respects_the_batch_limit_and_counts_add_up) {
    start();
    for (int i = 0; i < 5; i++)
        push("default", "m");
    redisReply *r = fetch("w1", 2, "default", NULL);
    ASSERT_EQ(r->elements, 6);
    freeReplyObject(r);
    ASSERT_EQ(bfix_cmd_int("LLEN %s", key_queue("default")), 3);
    ASSERT_EQ(bfix_cmd_int("HLEN %s", key_inflight("w1")), 2);
    bfix_stop();
}

TEST(fetch_takes_queues_in_strict_priority_order) {
    start();
    push("low", "l1");
    push("low", "l2");
    push("high", "h1");
    redisReply *r = fetch("w1", 2, "high", "low");
    ASSERT_EQ(r->elements, 6);
    ASSERT_STREQ(raw_at(r, 0), "h1");
    ASSERT_STREQ(r->element[1]->str, "high");
    ASSERT_STREQ(raw_at(r, 1), "l1");
    ASSERT_STREQ(r->element[4]->str, "low");
    freeReplyObject(r);
    ASSERT_EQ(bfix_cmd_int("LLEN %s", key_queue("low")), 1);
    bfix_stop();
}

TEST(fetch_takes_the_landing_list_before_its_queue) {
    start();
    push("default", "first");
    push("default", "second");
    /* What the blocking waiter does on its own connection. */
    freeReplyObject(
        bfix_cmd("BLMOVE %s %s RIGHT LEFT 1", key_queue("default"), key_landing("w1", "default")));
    push("default", "third");
    redisReply *r = fetch("w1", 3, "default", NULL);
    ASSERT_EQ(r->elements, 9);
    ASSERT_STREQ(raw_at(r, 0), "first");
    ASSERT_STREQ(raw_at(r, 1), "second");
    ASSERT_STREQ(raw_at(r, 2), "third");
    freeReplyObject(r);
    ASSERT_EQ(bfix_cmd_int("EXISTS %s", key_landing("w1", "default")), 0);
    bfix_stop();
}

TEST(fetch_does_not_let_a_low_landing_list_jump_a_high_queue) {
    start();
    push("low", "l1");
    freeReplyObject(
        bfix_cmd("BLMOVE %s %s RIGHT LEFT 1", key_queue("low"), key_landing("w1", "low")));
    push("high", "h1");
    redisReply *r = fetch("w1", 1, "high", "low");
    ASSERT_EQ(r->elements, 3);
    ASSERT_STREQ(raw_at(r, 0), "h1");
    freeReplyObject(r);
    ASSERT_EQ(bfix_cmd_int("LLEN %s", key_landing("w1", "low")), 1);
    bfix_stop();
}

TEST(fetch_tags_are_unique_and_increase_across_batches) {
    start();
    push("default", "a");
    push("default", "b");
    redisReply *r1 = fetch("w1", 1, "default", NULL);
    redisReply *r2 = fetch("w2", 1, "default", NULL);
    long long t1 = atoll(r1->element[0]->str), t2 = atoll(r2->element[0]->str);
    ASSERT(t1 >= 1 && t2 == t1 + 1);
    freeReplyObject(r1);
    freeReplyObject(r2);
    bfix_stop();
}

TEST(fetch_registers_the_worker_and_its_queues) {
    start();
    redisReply *r = fetch("w1", 5, "high", "low");
    ASSERT_EQ(r->elements, 0); /* nothing ready: nothing registered, no tag spent */
    freeReplyObject(r);
    ASSERT_EQ(bfix_cmd_int("EXISTS wt:workers wt:seq"), 0);
    push("low", "x");
    freeReplyObject(fetch("w1", 5, "high", "low"));
    ASSERT_STREQ(bfix_cmd_str("HGET wt:workers w1"), "high,low");
    bfix_stop();
}

TEST(fetch_of_a_large_batch_stores_every_message) {
    start();
    redisReply *r = bfix_cmd("EVAL %s 0 %s",
                             "for i = 1, 2500 do redis.call('LPUSH', KEYS[1] or ARGV[1], i) end",
                             key_queue("default"));
    freeReplyObject(r);
    r = fetch("w1", 3000, "default", NULL);
    ASSERT_EQ(r->elements, 3 * 2500);
    ASSERT_STREQ(raw_at(r, 2499), "2500");
    freeReplyObject(r);
    ASSERT_EQ(bfix_cmd_int("HLEN %s", key_inflight("w1")), 2500);
    bfix_stop();
}

/* ---- ack ------------------------------------------------------------------------------ */

/* ack.lua for one message of w1. */
static long long ack_one(const char *wid, const char *tag, const char *json, const char *ttl) {
    const char *args[] = {"wt", wid, tag, "wt:result:j1", json, ttl, "wt:result:j1", NULL};
    redisReply *r = bfix_run(BROKER_SCRIPT_ACK, args);
    ASSERT(r->type == REDIS_REPLY_ARRAY && r->elements == 1);
    long long v = int_at(r, 0);
    freeReplyObject(r);
    return v;
}

TEST(ack_removes_the_entry_and_stores_the_result_with_a_ttl) {
    start();
    push("default", "{\"id\":\"j1\",\"task\":\"t\"}");
    redisReply *r = fetch("w1", 1, "default", NULL);
    ASSERT_EQ(ack_one("w1", r->element[0]->str, "{\"status\":\"SUCCESS\"}", "60"), 1);
    freeReplyObject(r);
    ASSERT_EQ(bfix_cmd_int("HLEN %s", key_inflight("w1")), 0);
    ASSERT_STREQ(bfix_cmd_str("GET wt:result:j1"), "{\"status\":\"SUCCESS\"}");
    ASSERT_RANGE(bfix_cmd_int("TTL wt:result:j1"), 1, 60);
    bfix_stop();
}

TEST(ack_with_zero_ttl_stores_no_result) {
    start();
    push("default", "m");
    redisReply *r = fetch("w1", 1, "default", NULL);
    ASSERT_EQ(ack_one("w1", r->element[0]->str, "{}", "0"), 1);
    freeReplyObject(r);
    ASSERT_EQ(bfix_cmd_int("EXISTS wt:result:j1"), 0);
    ASSERT_EQ(bfix_cmd_int("HLEN %s", key_inflight("w1")), 0);
    bfix_stop();
}

TEST(ack_with_negative_ttl_keeps_the_result_forever) {
    start();
    push("default", "{\"id\":\"j1\",\"task\":\"t\"}");
    redisReply *r = fetch("w1", 1, "default", NULL);
    ASSERT_EQ(ack_one("w1", r->element[0]->str, "{\"status\":\"SUCCESS\"}", "-1"), 1);
    freeReplyObject(r);
    ASSERT_STREQ(bfix_cmd_str("GET wt:result:j1"), "{\"status\":\"SUCCESS\"}");
    ASSERT_EQ(bfix_cmd_int("TTL wt:result:j1"), -1);
    bfix_stop();
}

TEST(ack_publishes_the_result) {
    start();
    redisContext *sub = redisConnect("127.0.0.1", bfix_server.port);
    ASSERT(sub != NULL && sub->err == 0);
    struct timeval tv = {5, 0};
    redisSetTimeout(sub, tv);
    freeReplyObject(redisCommand(sub, "SUBSCRIBE wt:result:j1"));
    push("default", "m");
    redisReply *r = fetch("w1", 1, "default", NULL);
    ASSERT_EQ(ack_one("w1", r->element[0]->str, "{\"status\":\"SUCCESS\"}", "60"), 1);
    freeReplyObject(r);
    redisReply *msg = NULL;
    ASSERT_EQ(redisGetReply(sub, (void **)&msg), REDIS_OK);
    ASSERT(msg->type == REDIS_REPLY_ARRAY && msg->elements == 3);
    ASSERT_STREQ(msg->element[0]->str, "message");
    ASSERT_STREQ(msg->element[2]->str, "{\"status\":\"SUCCESS\"}");
    freeReplyObject(msg);
    redisFree(sub);
    bfix_stop();
}

TEST(ack_of_a_batch_answers_per_message) {
    start();
    push("default", "a");
    push("default", "b");
    redisReply *f = fetch("w1", 2, "default", NULL);
    /* clang-format off */
    const char *args[] = {"wt", "w1",
                          f->element[0]->str, "wt:result:a", "A", "60", "",
                          "999999",           "wt:result:x", "X", "60", "",
                          f->element[3]->str, "wt:result:b", "B", "60", "",
                          NULL};
    /* clang-format on */
    redisReply *r = bfix_run(BROKER_SCRIPT_ACK, args);
    ASSERT_EQ(r->elements, 3);
    ASSERT_EQ(int_at(r, 0), 1);
    ASSERT_EQ(int_at(r, 1), 0);
    ASSERT_EQ(int_at(r, 2), 1);
    freeReplyObject(r);
    freeReplyObject(f);
    ASSERT_STREQ(bfix_cmd_str("GET wt:result:a"), "A");
    ASSERT_STREQ(bfix_cmd_str("GET wt:result:b"), "B");
    ASSERT_EQ(bfix_cmd_int("EXISTS wt:result:x"), 0);
    bfix_stop();
}

TEST(ack_after_recovery_returns_zero_and_keeps_the_new_result) {
    start();
    push("default", "{\"id\":\"j1\",\"task\":\"t\"}");
    redisReply *old = fetch("w1", 1, "default", NULL); /* w1 then stops (SIGSTOP) */
    freeReplyObject(recover("w1", "3"));
    redisReply *now = fetch("w2", 1, "default", NULL);
    ASSERT_EQ(now->elements, 3);
    ASSERT_EQ(ack_one("w2", now->element[0]->str, "new", "60"), 1);
    ASSERT_EQ(ack_one("w1", old->element[0]->str, "stale", "60"), 0);
    ASSERT_STREQ(bfix_cmd_str("GET wt:result:j1"), "new");
    freeReplyObject(old);
    freeReplyObject(now);
    bfix_stop();
}

/* "?<tag>": a STARTED result, stored while the message is ours, which stays in flight. */
TEST(ack_of_a_question_tag_stores_the_result_and_keeps_the_entry) {
    start();
    push("default", "{\"id\":\"j1\",\"task\":\"t\"}");
    redisReply *r = fetch("w1", 1, "default", NULL);
    char tag[64];
    snprintf(tag, sizeof tag, "?%s", r->element[0]->str);
    ASSERT_EQ(ack_one("w1", tag, "{\"status\":\"STARTED\"}", "60"), 1);
    ASSERT_STREQ(bfix_cmd_str("GET wt:result:j1"), "{\"status\":\"STARTED\"}");
    ASSERT_EQ(bfix_cmd_int("HLEN %s", key_inflight("w1")), 1);
    /* The final ack still finds it, and its result replaces the STARTED one. */
    ASSERT_EQ(ack_one("w1", r->element[0]->str, "{\"status\":\"SUCCESS\"}", "60"), 1);
    ASSERT_STREQ(bfix_cmd_str("GET wt:result:j1"), "{\"status\":\"SUCCESS\"}");
    ASSERT_EQ(bfix_cmd_int("HLEN %s", key_inflight("w1")), 0);
    freeReplyObject(r);
    bfix_stop();
}

/* A worker stopped between starting a task and writing its STARTED result wakes after
 * another worker has run the task to the end: its late STARTED must not replace the
 * final result (its final ack is refused, so nothing would ever correct it). */
TEST(late_started_result_after_recovery_keeps_the_final_result) {
    start();
    push("default", "{\"id\":\"j1\",\"task\":\"t\"}");
    redisReply *old = fetch("w1", 1, "default", NULL); /* w1 then stops (SIGSTOP) */
    freeReplyObject(recover("w1", "3"));
    redisReply *now = fetch("w2", 1, "default", NULL);
    ASSERT_EQ(now->elements, 3);
    ASSERT_EQ(ack_one("w2", now->element[0]->str, "final", "60"), 1);
    char tag[64];
    snprintf(tag, sizeof tag, "?%s", old->element[0]->str);
    ASSERT_EQ(ack_one("w1", tag, "late STARTED", "60"), 0);
    ASSERT_STREQ(bfix_cmd_str("GET wt:result:j1"), "final");
    ASSERT_EQ(ack_one("w1", old->element[0]->str, "stale", "60"), 0);
    ASSERT_STREQ(bfix_cmd_str("GET wt:result:j1"), "final");
    ASSERT_EQ(bfix_cmd_int("EXISTS %s", key_inflight("w1")), 0);
    freeReplyObject(old);
    freeReplyObject(now);
    bfix_stop();
}

/* ---- recover -------------------------------------------------------------------------- */

TEST(recover_requeues_at_the_right_end_counting_the_redelivery) {
    start();
    push("default", "{\"id\":\"m1\",\"task\":\"t\"}");
    freeReplyObject(fetch("w1", 1, "default", NULL));
    push("default", "pending");
    redisReply *r = recover("w1", "3");
    ASSERT_EQ(int_at(r, 0), 1);
    ASSERT_EQ(int_at(r, 1), 0);
    ASSERT_EQ(int_at(r, 2), 0);
    freeReplyObject(r);
    ASSERT_STREQ(bfix_cmd_str("RPOP %s", key_queue("default")),
                 "{\"id\":\"m1\",\"task\":\"t\",\"redelivered\":1}");
    ASSERT_STREQ(bfix_cmd_str("RPOP %s", key_queue("default")), "pending");
    ASSERT_EQ(bfix_cmd_int("EXISTS %s", key_inflight("w1")), 0);
    ASSERT_EQ(bfix_cmd_int("HEXISTS wt:workers w1"), 0);
    bfix_stop();
}

TEST(recover_counts_on_from_the_previous_redelivery) {
    start();
    push("default", "{\"task\":\"t\",\"redelivered\":2}");
    freeReplyObject(fetch("w1", 1, "default", NULL));
    freeReplyObject(recover("w1", "5"));
    const char *raw = bfix_cmd_str("RPOP %s", key_queue("default"));
    ASSERT_STREQ(raw, "{\"task\":\"t\",\"redelivered\":2,\"redelivered\":3}");
    /* The worker's parser reads the appended (last) key. */
    broker_msg m;
    ASSERT_EQ(broker_msg_parse(raw, strlen(raw), NULL, 0, &m, NULL), 0);
    ASSERT_EQ(m.redelivered, 3);
    broker_msg_free(&m);
    bfix_stop();
}

TEST(recover_keeps_the_text_byte_exact_apart_from_the_count) {
    start();
    push("default", " {  } \n");
    push("default", "{\"task\":\"t\",\"args\":[1.50, \"}\"]}\t");
    freeReplyObject(fetch("w1", 2, "default", NULL));
    freeReplyObject(recover("w1", "3"));
    ASSERT_STREQ(bfix_cmd_str("RPOP %s", key_queue("default")), " {  \"redelivered\":1} \n");
    ASSERT_STREQ(bfix_cmd_str("RPOP %s", key_queue("default")),
                 "{\"task\":\"t\",\"args\":[1.50, \"}\"],\"redelivered\":1}\t");
    bfix_stop();
}

TEST(recover_keeps_the_order_of_the_recovered_messages) {
    start();
    push("default", "{\"n\":1}");
    push("default", "{\"n\":2}");
    push("default", "{\"n\":3}");
    freeReplyObject(fetch("w1", 3, "default", NULL));
    freeReplyObject(recover("w1", "3"));
    redisReply *r = fetch("w2", 3, "default", NULL);
    ASSERT_STREQ(raw_at(r, 0), "{\"n\":1,\"redelivered\":1}");
    ASSERT_STREQ(raw_at(r, 1), "{\"n\":2,\"redelivered\":1}");
    ASSERT_STREQ(raw_at(r, 2), "{\"n\":3,\"redelivered\":1}");
    freeReplyObject(r);
    bfix_stop();
}

TEST(recover_dead_letters_a_poison_pill) {
    start();
    push("default", "{\"id\":\"pp\",\"task\":\"t\",\"redelivered\":3}");
    freeReplyObject(fetch("w1", 1, "default", NULL));
    redisReply *r = recover("w1", "3");
    ASSERT_EQ(int_at(r, 0), 0);
    ASSERT_EQ(int_at(r, 1), 1);
    freeReplyObject(r);
    ASSERT_EQ(bfix_cmd_int("LLEN %s", key_queue("default")), 0);
    json_t *d = json_loads(bfix_cmd_str("LINDEX wt:dead 0"), 0, NULL);
    ASSERT(d != NULL);
    ASSERT_STREQ(json_string_value(json_object_get(d, "reason")),
                 "poison pill: redelivered 4 times");
    ASSERT_STREQ(json_string_value(json_object_get(d, "id")), "pp");
    ASSERT_STREQ(json_string_value(json_object_get(d, "message")),
                 "{\"id\":\"pp\",\"task\":\"t\",\"redelivered\":3}");
    ASSERT_STREQ(json_string_value(json_object_get(d, "queue")), "default");
    ASSERT_STREQ(json_string_value(json_object_get(d, "worker")), "rescuer");
    ASSERT_STREQ(json_string_value(json_object_get(d, "dead_worker")), "w1");
    /* Dated on the server's clock, not on the recoverer's (the "1700000000.5" it passed). */
    ASSERT_RANGE(json_number_value(json_object_get(d, "time")) - bfix_redis_now(), -5, 1);
    ASSERT(json_is_false(json_object_get(d, "truncated")));
    json_decref(d);
    bfix_stop();
}

TEST(recover_dead_letters_unparseable_messages) {
    start();
    push("default", "not json");
    push("default", "[1,2]");
    freeReplyObject(fetch("w1", 2, "default", NULL));
    redisReply *r = recover("w1", "3");
    ASSERT_EQ(int_at(r, 0), 0);
    ASSERT_EQ(int_at(r, 1), 2);
    freeReplyObject(r);
    for (int i = 0; i < 2; i++) {
        json_t *d = json_loads(bfix_cmd_str("LINDEX wt:dead %d", i), 0, NULL);
        ASSERT(d != NULL);
        ASSERT_STREQ(json_string_value(json_object_get(d, "reason")),
                     "unparseable message recovered from dead worker w1");
        ASSERT(json_object_get(d, "id") == NULL);
        json_decref(d);
    }
    ASSERT_EQ(bfix_cmd_int("EXISTS %s", key_inflight("w1")), 0);
    bfix_stop();
}

TEST(recover_leaves_a_worker_with_a_heartbeat_alone) {
    start();
    push("default", "{\"task\":\"t\"}");
    freeReplyObject(fetch("w1", 1, "default", NULL));
    freeReplyObject(bfix_cmd("HSET wt:worker:w1 pid 1"));
    freeReplyObject(bfix_cmd("EXPIRE wt:worker:w1 30"));
    redisReply *r = recover("w1", "3");
    ASSERT_EQ(int_at(r, 0), 0);
    ASSERT_EQ(int_at(r, 1), 0);
    ASSERT_EQ(int_at(r, 2), 1);
    freeReplyObject(r);
    ASSERT_EQ(bfix_cmd_int("HLEN %s", key_inflight("w1")), 1);
    ASSERT_EQ(bfix_cmd_int("HEXISTS wt:workers w1"), 1);
    ASSERT_EQ(bfix_cmd_int("LLEN %s", key_queue("default")), 0);
    bfix_stop();
}

TEST(recover_moves_landing_lists_back_without_counting) {
    start();
    push("default", "{\"task\":\"flight\"}");
    freeReplyObject(fetch("w1", 1, "default", NULL)); /* registers w1 with "default" */
    push("default", "{\"task\":\"landed\"}");
    freeReplyObject(
        bfix_cmd("BLMOVE %s %s RIGHT LEFT 1", key_queue("default"), key_landing("w1", "default")));
    redisReply *r = recover("w1", "3");
    ASSERT_EQ(int_at(r, 0), 2);
    freeReplyObject(r);
    ASSERT_STREQ(bfix_cmd_str("RPOP %s", key_queue("default")),
                 "{\"task\":\"flight\",\"redelivered\":1}");
    ASSERT_STREQ(bfix_cmd_str("RPOP %s", key_queue("default")), "{\"task\":\"landed\"}");
    ASSERT_EQ(bfix_cmd_int("EXISTS %s", key_landing("w1", "default")), 0);
    bfix_stop();
}

TEST(recover_twice_finds_nothing_the_second_time) {
    start();
    push("default", "{\"task\":\"t\"}");
    freeReplyObject(fetch("w1", 1, "default", NULL));
    freeReplyObject(recover("w1", "3"));
    redisReply *r = recover("w1", "3");
    ASSERT_EQ(int_at(r, 0), 0);
    ASSERT_EQ(int_at(r, 1), 0);
    freeReplyObject(r);
    ASSERT_EQ(bfix_cmd_int("LLEN %s", key_queue("default")), 1);
    bfix_stop();
}

/* ---- requeue -------------------------------------------------------------------------- */

TEST(requeue_puts_back_only_the_given_tags_uncounted) {
    start();
    push("default", "{\"n\":1}");
    push("default", "{\"n\":2}");
    push("default", "{\"n\":3}");
    push("default", "{\"n\":4}");
    redisReply *f = fetch("w1", 3, "default", NULL);
    const char *args[] = {"wt", "w1", "3", f->element[6]->str, f->element[0]->str, "424242", NULL};
    redisReply *r = bfix_run(BROKER_SCRIPT_REQUEUE, args);
    ASSERT_EQ(r->type, REDIS_REPLY_INTEGER);
    ASSERT_EQ(r->integer, 2);
    freeReplyObject(r);
    ASSERT_EQ(bfix_cmd_int("HLEN %s", key_inflight("w1")), 1);
    ASSERT_STREQ(bfix_cmd_str("HGET %s %s", key_inflight("w1"), f->element[3]->str),
                 "default\n{\"n\":2}");
    ASSERT_STREQ(bfix_cmd_str("RPOP %s", key_queue("default")), "{\"n\":1}");
    ASSERT_STREQ(bfix_cmd_str("RPOP %s", key_queue("default")), "{\"n\":3}");
    ASSERT_STREQ(bfix_cmd_str("RPOP %s", key_queue("default")), "{\"n\":4}");
    freeReplyObject(f);
    bfix_stop();
}

TEST(requeue_all_empties_inflight_and_landing_lists) {
    start();
    push("high", "h1");
    push("low", "l1");
    push("low", "l2");
    freeReplyObject(fetch("w1", 2, "high", "low"));
    freeReplyObject(
        bfix_cmd("BLMOVE %s %s RIGHT LEFT 1", key_queue("low"), key_landing("w1", "low")));
    const char *args[] = {"wt", "w1", "all", "high", "low", NULL};
    redisReply *r = bfix_run(BROKER_SCRIPT_REQUEUE, args);
    ASSERT_EQ(r->integer, 3);
    freeReplyObject(r);
    ASSERT_EQ(bfix_cmd_int("EXISTS %s %s", key_inflight("w1"), key_landing("w1", "low")), 0);
    ASSERT_STREQ(bfix_cmd_str("RPOP %s", key_queue("high")), "h1");
    ASSERT_STREQ(bfix_cmd_str("RPOP %s", key_queue("low")), "l1");
    ASSERT_STREQ(bfix_cmd_str("RPOP %s", key_queue("low")), "l2");
    bfix_stop();
}

/* ---- command vectors ------------------------------------------------------------------ */

/* Send b as one pipeline, as workerctl does: replies[i] for command i (free them), an
 * EVALSHA answered NOSCRIPT sent again as EVAL. Returns how many were sent again. */
static int send_batch(broker_batch *b, redisReply **replies) {
    ASSERT_EQ(b->err, 0);
    for (size_t i = 0; i < b->n; i++)
        ASSERT_EQ(redisAppendCommandArgv(bfix_rc, b->argcs[i], b->argvs[i], b->argvlens[i]),
                  REDIS_OK);
    for (size_t i = 0; i < b->n; i++) {
        void *reply = NULL;
        ASSERT(redisGetReply(bfix_rc, &reply) == REDIS_OK && reply != NULL);
        replies[i] = reply;
    }
    int again = 0;
    for (size_t i = 0; i < b->n; i++) {
        if (broker_script_retry(b, i, replies[i])) {
            freeReplyObject(replies[i]);
            replies[i] = redisCommandArgv(bfix_rc, b->argcs[i], b->argvs[i], b->argvlens[i]);
            ASSERT(replies[i] != NULL);
            again++;
        }
    }
    return again;
}

/* Send a batch of one command and return its reply (free it). */
static redisReply *send_one(broker_batch *b) {
    ASSERT_EQ(b->n, 1);
    redisReply *r = NULL;
    send_batch(b, &r);
    return r;
}

static void free_replies(redisReply **replies, size_t n) {
    for (size_t i = 0; i < n; i++)
        freeReplyObject(replies[i]);
}

TEST(batch_arguments_survive_growth_and_copies_are_copies) {
    broker_batch b = {0};
    char text[16];
    for (int i = 0; i < 1000; i++) {
        ASSERT_EQ(broker_batch_cmd(&b), 0);
        broker_batch_str(&b, "SET");
        snprintf(text, sizeof text, "k%d", i);
        broker_batch_copy(&b, text, strlen(text)); /* text is reused: the copy must stay */
        ASSERT_EQ(broker_batch_num(&b, -i), 0);
    }
    ASSERT_EQ(b.n, 1000);
    for (int i = 0; i < 1000; i++) {
        snprintf(text, sizeof text, "k%d", i);
        ASSERT_EQ(b.argcs[i], 3);
        ASSERT_STREQ(b.argvs[i][0], "SET");
        ASSERT_EQ(b.argvlens[i][1], strlen(text));
        ASSERT_STREQ(b.argvs[i][1], text);
        snprintf(text, sizeof text, "%d", -i);
        ASSERT_STREQ(b.argvs[i][2], text);
    }
    char big[100000];
    memset(big, 'b', sizeof big);
    ASSERT_EQ(broker_batch_copy(&b, big, sizeof big), 0); /* larger than any block */
    ASSERT_EQ(b.argcs[999], 4);
    ASSERT(memcmp(b.argvs[999][3], big, sizeof big) == 0 && b.argvs[999][3][sizeof big] == 0);
    broker_batch_clear(&b);
    ASSERT(b.n == 0 && b.argcs == NULL && b.err == 0);
}

TEST(batch_errors_are_sticky) {
    broker_batch b = {0};
    broker_keys k;
    broker_keys_init(&k, "wt");
    const char *queues[] = {"good", "bad name", "also good"};
    ASSERT_EQ(broker_cmd_queue_depths(&b, &k, queues, 3), -EINVAL);
    ASSERT_EQ(b.err, -EINVAL);
    size_t n = b.n;
    ASSERT_EQ(broker_batch_cmd(&b), -EINVAL);
    ASSERT_EQ(broker_batch_str(&b, "PING"), -EINVAL);
    ASSERT_EQ(broker_cmd_revoke_mark(&b, &k, "x", 10), -EINVAL);
    ASSERT_EQ(b.n, n); /* nothing added after the error */
    ASSERT_EQ(broker_batch_fail(&b, -ENOMEM), -EINVAL);
    broker_batch_clear(&b);
    ASSERT_EQ(broker_cmd_revoke_mark(&b, &k, "", 10), -EINVAL);
    broker_batch_clear(&b);
    ASSERT_EQ(broker_cmd_dead_requeue(&b, &k, "e", 1, "a,b", "m", 1), -EINVAL);
    broker_batch_clear(&b);
}

/* ---- the shared commands -------------------------------------------------------------- */

TEST(enqueue_pushes_at_the_end_workers_take_last) {
    start();
    broker_batch b = {0};
    ASSERT_EQ(broker_cmd_enqueue(&b, &keys, "default", "m1", 2), 0);
    ASSERT_EQ(broker_cmd_enqueue(&b, &keys, "default", "m2\0x", 4), 0);
    redisReply *r[2];
    send_batch(&b, r);
    ASSERT_EQ(r[1]->integer, 2);
    free_replies(r, 2);
    broker_batch_clear(&b);
    redisReply *f = fetch("w1", 10, "default", NULL); /* first in, first out */
    ASSERT_STREQ(raw_at(f, 0), "m1");
    ASSERT_EQ(f->element[5]->len, 4);
    freeReplyObject(f);
    bfix_stop();
}

TEST(queue_depths_come_in_one_pipeline_in_order) {
    start();
    push("a", "1");
    push("a", "2");
    push("a", "3");
    freeReplyObject(bfix_cmd("SET %s x", key_queue("c"))); /* not a list: someone else's key */
    const char *queues[] = {"a", "b", "c"};
    broker_batch b = {0};
    ASSERT_EQ(broker_cmd_queue_depths(&b, &keys, queues, 3), 0);
    ASSERT_EQ(b.n, 3);
    redisReply *r[3];
    send_batch(&b, r);
    ASSERT_EQ(broker_reply_queue_depth(r[0]), 3);
    ASSERT_EQ(broker_reply_queue_depth(r[1]), 0);
    ASSERT_EQ(broker_reply_queue_depth(r[2]), -1);
    ASSERT_EQ(broker_reply_queue_depth(NULL), -1);
    free_replies(r, 3);
    broker_batch_clear(&b);
    bfix_stop();
}

/* Every queue of the prefix, whatever the prefix's glob characters, and nothing else. */
TEST(scan_finds_the_queue_keys_of_its_prefix_only) {
    start();
    broker_keys glob;
    ASSERT_EQ(broker_keys_init(&glob, "w*"), 0);
    char qname[16], key[BROKER_KEY_MAX];
    for (int i = 0; i < 300; i++) {
        snprintf(qname, sizeof qname, "q%d", i);
        broker_key_queue(&glob, qname, key);
        freeReplyObject(bfix_cmd("LPUSH %s x", key));
    }
    freeReplyObject(bfix_cmd("LPUSH wx:queue:other x"));
    freeReplyObject(bfix_cmd("SET w*:result:q1 x"));
    freeReplyObject(bfix_cmd("SET w*:queue:a%s x", " b")); /* a key no queue name makes */
    int found = 0;
    char cursor[BROKER_SCAN_CURSOR_MAX] = "0", seen[300] = {0};
    do {
        broker_batch b = {0};
        ASSERT_EQ(broker_cmd_scan_queues(&b, &glob, cursor), 0);
        redisReply *r = send_one(&b);
        const redisReply *batch;
        ASSERT_EQ(broker_reply_scan(r, cursor, &batch), 0);
        for (size_t i = 0; i < batch->elements; i++) {
            const redisReply *k = batch->element[i];
            const char *name = broker_key_queue_name(&glob, k->str, k->len);
            if (name == NULL)
                continue;
            int n = atoi(name + 1);
            ASSERT(name[0] == 'q' && n >= 0 && n < 300);
            found += !seen[n];
            seen[n] = 1;
        }
        freeReplyObject(r);
        broker_batch_clear(&b);
    } while (strcmp(cursor, "0") != 0);
    ASSERT_EQ(found, 300);
    redisReply *r = bfix_cmd("PING");
    const redisReply *batch;
    ASSERT_EQ(broker_reply_scan(r, cursor, &batch), -EPROTO);
    freeReplyObject(r);
    bfix_stop();
}

TEST(result_store_sets_with_the_ttl_and_publishes) {
    start();
    redisContext *sub = redisConnect("127.0.0.1", bfix_server.port);
    ASSERT(sub != NULL && sub->err == 0);
    char channel[BROKER_KEY_MAX];
    broker_key_result(&keys, "r-1", channel);
    redisReply *s = redisCommand(sub, "SUBSCRIBE %s", channel);
    ASSERT(s != NULL);
    freeReplyObject(s);
    const char doc[] = "{\"id\":\"r-1\",\"status\":\"SUCCESS\"}";
    broker_batch b = {0};
    ASSERT_EQ(broker_cmd_result_store(&b, &keys, "r-1", doc, sizeof doc - 1, 100), 0);
    ASSERT_EQ(broker_cmd_result_store(&b, &keys, "r-2", "{}", 2, 0), 0);
    ASSERT_EQ(b.n, 4);
    redisReply *r[4];
    send_batch(&b, r);
    long long subscribers = -1;
    ASSERT_EQ(broker_reply_integer(r[1], &subscribers), 0);
    ASSERT_EQ(subscribers, 1);
    free_replies(r, 4);
    broker_batch_clear(&b);
    ASSERT_STREQ(bfix_cmd_str("GET %s", channel), doc);
    ASSERT_RANGE(bfix_cmd_int("TTL %s", channel), 1, 100);
    broker_key_result(&keys, "r-2", channel);
    ASSERT_EQ(bfix_cmd_int("TTL %s", channel), -1); /* 0: kept for ever */
    void *m = NULL;
    ASSERT(redisGetReply(sub, &m) == REDIS_OK);
    redisReply *msg = m;
    ASSERT(msg->type == REDIS_REPLY_ARRAY && msg->elements == 3);
    ASSERT_STREQ(msg->element[2]->str, doc);
    freeReplyObject(msg);
    redisFree(sub);
    bfix_stop();
}

TEST(revoke_mark_lives_as_long_as_results) {
    start();
    broker_batch b = {0};
    ASSERT_EQ(broker_cmd_revoke_mark(&b, &keys, "v-1", 500), 0);
    ASSERT_EQ(broker_cmd_revoke_mark(&b, &keys, "v-2", 0), 0);
    redisReply *r[2];
    send_batch(&b, r);
    free_replies(r, 2);
    broker_batch_clear(&b);
    char key[BROKER_KEY_MAX];
    broker_key_revoked(&keys, "v-1", key);
    ASSERT_STREQ(bfix_cmd_str("GET %s", key), "1");
    ASSERT_RANGE(bfix_cmd_int("TTL %s", key), 1, 500);
    broker_key_revoked(&keys, "v-2", key);
    ASSERT_EQ(bfix_cmd_int("TTL %s", key), -1);
    bfix_stop();
}

/* dead_requeue.lua through its builder; the first run of a script Redis does not know
 * comes back NOSCRIPT and goes again as EVAL, the next ones are EVALSHA. */
static long long dead_requeue(const char *entry, const char *queue, const char *msg, int *again) {
    broker_batch b = {0};
    ASSERT_EQ(broker_cmd_dead_requeue(&b, &keys, entry, strlen(entry), queue, msg, strlen(msg)), 0);
    ASSERT_STREQ(b.argvs[0][0], "EVALSHA");
    redisReply *r = NULL;
    *again = send_batch(&b, &r);
    long long v = -1;
    ASSERT_EQ(broker_reply_integer(r, &v), 0);
    freeReplyObject(r);
    broker_batch_clear(&b);
    return v;
}

TEST(dead_requeue_pushes_the_message_once_per_entry) {
    start();
    char dead[BROKER_KEY_MAX];
    broker_key_dead(&keys, dead);
    freeReplyObject(bfix_cmd("LPUSH %s E other E", dead)); /* the same entry twice */
    int again = 0;
    ASSERT_EQ(dead_requeue("E", "low", "m", &again), 1);
    ASSERT_EQ(again, 1); /* a fresh Redis: NOSCRIPT, then EVAL */
    ASSERT_EQ(bfix_cmd_int("LLEN %s", dead), 2);
    ASSERT_EQ(dead_requeue("E", "low", "m", &again), 1);
    ASSERT_EQ(again, 0);                                 /* cached by the EVAL */
    ASSERT_EQ(dead_requeue("E", "low", "m", &again), 0); /* gone: nothing pushed */
    ASSERT_EQ(bfix_cmd_int("LLEN %s", key_queue("low")), 2);
    ASSERT_EQ(bfix_cmd_int("LLEN %s", dead), 1);
    ASSERT_STREQ(bfix_cmd_str("LINDEX %s 0", dead), "other");
    freeReplyObject(bfix_cmd("SCRIPT FLUSH"));
    ASSERT_EQ(dead_requeue("other", "low", "m2", &again), 1);
    ASSERT_EQ(again, 1);
    ASSERT_STREQ(bfix_cmd_str("LINDEX %s 0", key_queue("low")), "m2");
    bfix_stop();
}

TEST(dead_drop_removes_one_copy_of_the_entry) {
    start();
    char dead[BROKER_KEY_MAX];
    broker_key_dead(&keys, dead);
    freeReplyObject(bfix_cmd("LPUSH %s E E F", dead));
    broker_batch b = {0};
    ASSERT_EQ(broker_cmd_dead_drop(&b, &keys, "E", 1), 0);
    ASSERT_EQ(broker_cmd_dead_drop(&b, &keys, "G", 1), 0);
    redisReply *r[2];
    ASSERT_EQ(send_batch(&b, r), 0);
    long long n = -1;
    ASSERT_EQ(broker_reply_integer(r[0], &n), 0);
    ASSERT_EQ(n, 1);
    ASSERT_EQ(broker_reply_integer(r[1], &n), 0);
    ASSERT_EQ(n, 0);
    free_replies(r, 2);
    broker_batch_clear(&b);
    ASSERT_EQ(bfix_cmd_int("LLEN %s", dead), 2);
    bfix_stop();
}

/* Only an EVALSHA of one of the scripts is turned into an EVAL, and only on NOSCRIPT. */
TEST(script_retry_touches_only_unknown_scripts) {
    start();
    broker_batch b = {0};
    broker_cmd_dead_drop(&b, &keys, "E", 1);
    broker_batch_script(&b, BROKER_SCRIPT_DEAD_REQUEUE);
    broker_batch_str(&b, "wt");
    redisReply *ok = bfix_cmd("PING");
    ASSERT(!broker_script_retry(&b, 1, ok)); /* not an error */
    freeReplyObject(ok);
    redisReply *noscript =
        redisCommand(bfix_rc, "EVALSHA %s 0", "0000000000000000000000000000000000000000");
    ASSERT(broker_reply_is_noscript(noscript));
    ASSERT(!broker_script_retry(&b, 0, noscript)); /* an LREM */
    ASSERT(!broker_script_retry(&b, 7, noscript)); /* no such command */
    ASSERT(broker_script_retry(&b, 1, noscript));
    ASSERT_STREQ(b.argvs[1][0], "EVAL");
    ASSERT_EQ(b.argvlens[1][1], broker_script_get(BROKER_SCRIPT_DEAD_REQUEUE)->len);
    ASSERT(!broker_script_retry(&b, 1, noscript)); /* an EVAL already */
    freeReplyObject(noscript);
    broker_batch_clear(&b);
    bfix_stop();
}

/* ---- the same commands from the green worker ----------------------------------------- */

typedef struct green_case {
    void (*body)(broker_worker *w);
} green_case;

/* Run body on a hub with a broker_worker "wt"/"w1" on queues a and b of the test's Redis. */
static void *green_main(void *arg) {
    green_case *gc = arg;
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/0", bfix_server.port);
    broker_conn *conn = broker_conn_new(url, "broker", NULL, NULL);
    ASSERT(conn != NULL);
    ASSERT_EQ(broker_conn_wait_up(conn, 10), 0);
    const char *queues[] = {"a", "b"};
    broker_worker_cfg cfg = {.prefix = "wt",
                             .wid = "w1",
                             .queues = queues,
                             .nqueues = 2,
                             .result_expires = 100,
                             .heartbeat_ttl = 15,
                             .max_redeliveries = 5};
    broker_worker *w = broker_worker_new(&cfg, conn, NULL);
    ASSERT(w != NULL);
    gc->body(w);
    broker_worker_free(w);
    broker_conn_close(conn);
    return NULL;
}

static void run_green(void (*body)(broker_worker *w)) {
    green_case gc = {body};
    ASSERT_EQ(green_run(NULL, NULL, green_main, &gc, NULL), 0);
}

static void depths_body(broker_worker *w) {
    long long depths[2] = {7, 7};
    ASSERT_EQ(broker_queue_depths(w, depths, 5), 0);
    ASSERT_EQ(depths[0], 2);
    ASSERT_EQ(depths[1], -1); /* not a list */
}

TEST(worker_reads_the_depth_of_each_of_its_queues) {
    start();
    push("a", "1");
    push("a", "2");
    freeReplyObject(bfix_cmd("SET %s x", key_queue("b")));
    run_green(depths_body);
    bfix_stop();
}

static void store_body(broker_worker *w) {
    broker_ack_entry acks[] = {{.id = "s-1", .json = "{\"n\":1}"},
                               {.id = "s-2", .json = "{\"n\":2}"}};
    bool owned[2] = {false, false};
    ASSERT_EQ(broker_ack(w, acks, 2, owned, 5), 0);
    ASSERT(owned[0] && owned[1]);
}

/* Results without a delivery tag are stored on their own, SET with the TTL + PUBLISH. */
TEST(worker_stores_results_without_a_tag_with_their_ttl) {
    start();
    run_green(store_body);
    char key[BROKER_KEY_MAX];
    broker_key_result(&keys, "s-1", key);
    ASSERT_STREQ(bfix_cmd_str("GET %s", key), "{\"n\":1}");
    ASSERT_RANGE(bfix_cmd_int("TTL %s", key), 1, 100);
    broker_key_result(&keys, "s-2", key);
    ASSERT_STREQ(bfix_cmd_str("GET %s", key), "{\"n\":2}");
    bfix_stop();
}
