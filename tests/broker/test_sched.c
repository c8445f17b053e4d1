/*
 * test_sched.c - what scheduling rests on in the broker: RFC 3339 times, the message
 * fields of countdown, eta, expires and retries (their defaults, their checks, the copy
 * that waits in the scheduled set), the ack that keeps a message (ack.lua's "!" entries)
 * and the move of due messages (move_due.lua), against a real redis-server; then the same
 * through broker_ack and broker_sched_move on a green hub.
 */
#include "broker_conn.h"
#include "broker_keys.h"
#include "broker_msg.h"
#include "broker_sched.h"
#include "broker_scripts.h"
#include "broker_time.h"
#include "broker_worker.h"
#include "green.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "brokerfix_script.h"
#include "testlib.h"

/* ---- RFC 3339 ------------------------------------------------------------------------- */

static double rfc(const char *s) {
    double t = -1e300;
    if (!broker_time_parse_rfc3339(s, strlen(s), &t))
        test__fail(__FILE__, __LINE__, "\"%s\" refused", s);
    return t;
}

static bool rfc_ok(const char *s) {
    double t;
    return broker_time_parse_rfc3339(s, strlen(s), &t);
}

TEST(rfc3339_reads_utc_offsets_and_fractions) {
    ASSERT(rfc("1970-01-01T00:00:00Z") == 0);
    ASSERT(rfc("2026-11-26T10:00:00Z") == 1795687200);
    ASSERT(rfc("2026-11-26T11:00:00+01:00") == 1795687200);
    ASSERT(rfc("2026-11-26T04:30:00-05:30") == 1795687200);
    ASSERT(rfc("2026-11-26t10:00:00z") == 1795687200);
    ASSERT(rfc("2026-11-26 10:00:00Z") == 1795687200);
    ASSERT(fabs(rfc("2026-11-26T10:00:00.25Z") - 1795687200.25) < 1e-6);
    ASSERT(fabs(rfc("2026-11-26T10:00:00.123456789+00:00") - 1795687200.123456789) < 1e-6);
    ASSERT(rfc("1969-12-31T23:59:59Z") == -1);
}

TEST(rfc3339_knows_leap_years_and_leap_seconds) {
    ASSERT(rfc("2028-02-29T00:00:00Z") == 1835395200);
    ASSERT(rfc("2000-02-29T00:00:00Z") == 951782400);
    ASSERT(!rfc_ok("2027-02-29T00:00:00Z"));
    ASSERT(!rfc_ok("1900-02-29T00:00:00Z"));
    /* POSIX time has no leap second: 23:59:60 is the next day's first second. */
    ASSERT(rfc("2016-12-31T23:59:60Z") == rfc("2017-01-01T00:00:00Z"));
}

TEST(rfc3339_refuses_what_is_not_a_full_time_with_an_offset) {
    const char *bad[] = {"2026-11-26",
                         "2026-11-26T10:00:00",
                         "2026-11-26T10:00Z",
                         "2026-13-01T00:00:00Z",
                         "2026-11-31T00:00:00Z",
                         "2026-11-26T24:00:00Z",
                         "2026-11-26T10:60:00Z",
                         "2026-11-26T10:00:61Z",
                         "2026-11-26T10:00:00.Z",
                         "2026-11-26T10:00:00+1:00",
                         "2026-11-26T10:00:00+24:00",
                         "2026-11-26T10:00:00Z ",
                         "2026-11-26T10:00:00Zjunk",
                         "26-11-26T10:00:00Z",
                         "2026/11/26T10:00:00Z",
                         "tomorrow",
                         ""};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        if (rfc_ok(bad[i]))
            test__fail(__FILE__, __LINE__, "\"%s\" accepted", bad[i]);
}

/* ---- message fields ------------------------------------------------------------------- */

#define NOW 1795687200.0 /* 2026-11-26T10:00:00Z */

static int parse(const char *text, broker_msg *m, broker_msg_error *e) {
    return broker_msg_parse(text, strlen(text), NULL, NOW, m, e);
}

static void expect_refused(const char *text, const char *want) {
    broker_msg m;
    broker_msg_error e;
    int rc = parse(text, &m, &e);
    if (rc != -EINVAL || strstr(e.reason, want) == NULL)
        test__fail(__FILE__, __LINE__, "%s: rc %d, reason \"%s\", wanted \"%s\"", text, rc,
                   e.reason, want);
    ASSERT(e.has_id && strcmp(e.id, "x") == 0);
}

TEST(retry_fields_default_to_three_retries_from_one_second_jittered) {
    broker_msg m;
    ASSERT_EQ(parse("{\"task\":\"t\"}", &m, NULL), 0);
    ASSERT_EQ(m.retries, 0);
    ASSERT_EQ(m.max_retries, 3);
    ASSERT(m.retry_backoff == 1.0 && m.retry_backoff_max == 600.0 && m.retry_jitter);
    broker_msg_free(&m);
    ASSERT_EQ(parse("{\"task\":\"t\",\"max_retries\":0,\"retry_backoff\":0.25,"
                    "\"retry_backoff_max\":2,\"retry_jitter\":false}",
                    &m, NULL),
              0);
    ASSERT(m.max_retries == 0 && m.retry_backoff == 0.25 && m.retry_backoff_max == 2);
    ASSERT(!m.retry_jitter);
    broker_msg_free(&m);
}

TEST(eta_is_unix_seconds_or_rfc3339) {
    broker_msg m;
    ASSERT_EQ(parse("{\"task\":\"t\",\"eta\":1795687260.5}", &m, NULL), 0);
    ASSERT(m.eta == 1795687260.5);
    broker_msg_free(&m);
    ASSERT_EQ(
        parse("{\"task\":\"t\",\"eta\":\"2026-11-26T11:01:00+01:00\",\"countdown\":5}", &m, NULL),
        0);
    ASSERT(m.eta == NOW + 60); /* the eta wins over the countdown */
    broker_msg_free(&m);
    ASSERT_EQ(parse("{\"task\":\"t\",\"countdown\":2.5}", &m, NULL), 0);
    ASSERT(m.eta == NOW + 2.5);
    broker_msg_free(&m);
}

TEST(small_expires_counts_from_now_large_is_a_unix_time) {
    broker_msg m;
    ASSERT_EQ(parse("{\"task\":\"t\",\"expires\":3600}", &m, NULL), 0);
    ASSERT(m.expires == NOW + 3600);
    broker_msg_free(&m);
    ASSERT_EQ(parse("{\"task\":\"t\",\"expires\":1795690800}", &m, NULL), 0);
    ASSERT(m.expires == 1795690800);
    broker_msg_free(&m);
    ASSERT_EQ(parse("{\"task\":\"t\",\"expires\":\"2026-11-26T12:00:00+01:00\"}", &m, NULL), 0);
    ASSERT(m.expires == NOW + 3600);
    broker_msg_free(&m);
    /* An absolute time already past is kept: the message is revoked when taken. */
    ASSERT_EQ(parse("{\"task\":\"t\",\"expires\":1000000000}", &m, NULL), 0);
    ASSERT(m.expires == 1000000000);
    broker_msg_free(&m);
}

TEST(times_more_than_ten_years_ahead_are_refused_naming_the_field) {
    expect_refused("{\"id\":\"x\",\"task\":\"t\",\"countdown\":400000000}",
                   "field \"countdown\" is 4e+08 seconds, more than 10 years");
    expect_refused("{\"id\":\"x\",\"task\":\"t\",\"eta\":2200000000}",
                   "field \"eta\" is more than 10 years in the future");
    expect_refused("{\"id\":\"x\",\"task\":\"t\",\"eta\":\"2040-01-01T00:00:00Z\"}",
                   "field \"eta\" is more than 10 years in the future");
    expect_refused("{\"id\":\"x\",\"task\":\"t\",\"expires\":2200000000}",
                   "field \"expires\" is more than 10 years in the future");
    expect_refused("{\"id\":\"x\",\"task\":\"t\",\"expires\":500000000}",
                   "field \"expires\" is 5e+08: neither seconds from now");
    expect_refused("{\"id\":\"x\",\"task\":\"t\",\"retry_backoff\":1e10}",
                   "field \"retry_backoff\" is 1e+10 seconds, more than 10 years");
    expect_refused("{\"id\":\"x\",\"task\":\"t\",\"retry_backoff_max\":1e12}",
                   "field \"retry_backoff_max\" is 1e+12 seconds, more than 10 years");
}

TEST(scheduling_fields_of_the_wrong_type_or_sign_are_refused_naming_the_field) {
    expect_refused("{\"id\":\"x\",\"task\":\"t\",\"countdown\":-1}",
                   "field \"countdown\" must be a non-negative number");
    expect_refused("{\"id\":\"x\",\"task\":\"t\",\"countdown\":\"10\"}",
                   "field \"countdown\" must be a non-negative number");
    expect_refused("{\"id\":\"x\",\"task\":\"t\",\"eta\":true}",
                   "field \"eta\" must be a non-negative number (Unix seconds) or an RFC 3339");
    expect_refused("{\"id\":\"x\",\"task\":\"t\",\"eta\":\"tomorrow\"}",
                   "field \"eta\" is not an RFC 3339 time with an offset");
    expect_refused("{\"id\":\"x\",\"task\":\"t\",\"eta\":\"2026-11-26T10:00:00\"}",
                   "field \"eta\" is not an RFC 3339 time with an offset");
    expect_refused("{\"id\":\"x\",\"task\":\"t\",\"expires\":\"1969-12-31T23:59:59Z\"}",
                   "field \"expires\" is before 1970");
    expect_refused("{\"id\":\"x\",\"task\":\"t\",\"expires\":-3}",
                   "field \"expires\" must be a non-negative number (seconds from now, or Unix");
    expect_refused("{\"id\":\"x\",\"task\":\"t\",\"expires\":{}}",
                   "field \"expires\" must be a non-negative number");
    expect_refused("{\"id\":\"x\",\"task\":\"t\",\"max_retries\":-1}",
                   "field \"max_retries\" must be a non-negative integer");
    expect_refused("{\"id\":\"x\",\"task\":\"t\",\"max_retries\":\"3\"}",
                   "field \"max_retries\" must be a non-negative integer");
    expect_refused("{\"id\":\"x\",\"task\":\"t\",\"retries\":2.5}",
                   "field \"retries\" must be a non-negative integer");
    expect_refused("{\"id\":\"x\",\"task\":\"t\",\"retry_backoff\":-0.5}",
                   "field \"retry_backoff\" must be a non-negative number");
    expect_refused("{\"id\":\"x\",\"task\":\"t\",\"retry_backoff_max\":[60]}",
                   "field \"retry_backoff_max\" must be a non-negative number");
    expect_refused("{\"id\":\"x\",\"task\":\"t\",\"retry_jitter\":1}",
                   "field \"retry_jitter\" must be a boolean");
    expect_refused("{\"id\":\"x\",\"task\":\"t\",\"retry_jitter\":\"false\"}",
                   "field \"retry_jitter\" must be a boolean");
}

TEST(scheduled_copy_has_absolute_times_and_the_retry_count) {
    broker_msg m;
    ASSERT_EQ(parse("{\"task\":\"t\",\"args\":[1,\"\\u00e9\"],\"countdown\":30,\"expires\":60,"
                    "\"retries\":1,\"chain\":[{\"task\":\"next\"}]}",
                    &m, NULL),
              0);
    size_t len = 0;
    char *text = broker_msg_encode_scheduled(&m, NOW + 30.25, 2, &len);
    ASSERT(text != NULL && len == strlen(text));
    json_t *copy = json_loads(text, 0, NULL);
    ASSERT(copy != NULL);
    /* The generated id goes with it: every attempt reports under one id. */
    ASSERT_STREQ(json_string_value(json_object_get(copy, "id")), m.id);
    ASSERT(json_object_get(copy, "countdown") == NULL);
    ASSERT(json_real_value(json_object_get(copy, "eta")) == NOW + 30.25);
    ASSERT_EQ(json_integer_value(json_object_get(copy, "retries")), 2);
    ASSERT(json_number_value(json_object_get(copy, "expires")) == NOW + 60);
    ASSERT(json_is_array(json_object_get(copy, "chain")));
    ASSERT(json_equal(json_object_get(copy, "args"), m.args));
    /* And it parses back to the same due time, whenever it is read. */
    broker_msg again;
    ASSERT_EQ(broker_msg_parse(text, len, NULL, NOW + 100, &again, NULL), 0);
    ASSERT(again.eta == NOW + 30.25 && again.expires == NOW + 60 && again.retries == 2);
    ASSERT_STREQ(again.id, m.id);
    broker_msg_free(&again);
    json_decref(copy);
    free(text);
    ASSERT_EQ(json_object_size(m.root), 8); /* msg itself unchanged: no eta added */
    ASSERT(json_object_get(m.root, "eta") == NULL);
    broker_msg_free(&m);
}

/* ---- the scripts ---------------------------------------------------------------------- */

/* Put raw in w1's in-flight hash under tag, as fetch.lua would, from queue q. */
static void in_flight(const char *tag, const char *q, const char *raw) {
    freeReplyObject(bfix_cmd("HSET wt:inflight:w1 %s %s\n%s", tag, q, raw));
}

/* ack.lua's "!" entry for w1's tag: keep text until due on queue q, with a result. */
static long long keep(const char *tag, double due, const char *q, const char *text,
                      const char *json) {
    char mark[64], when[64];
    snprintf(mark, sizeof mark, "!%s", tag);
    snprintf(when, sizeof when, "%.17g", due);
    const char *args[] = {"wt", "w1", mark, "wt:result:k", json ? json : "", "60", "wt:result:k",
                          when, q,    text, NULL};
    if (!json)
        args[5] = "0";
    redisReply *r = bfix_run(BROKER_SCRIPT_ACK, args);
    ASSERT(r->type == REDIS_REPLY_ARRAY && r->elements == 1);
    long long v = r->element[0]->integer;
    freeReplyObject(r);
    return v;
}

/* move_due.lua with batch n: returns the reply (free it). */
static redisReply *move(int n) {
    char nbuf[16];
    snprintf(nbuf, sizeof nbuf, "%d", n);
    const char *args[] = {"wt", nbuf, "mover", NULL};
    redisReply *r = bfix_run(BROKER_SCRIPT_MOVE_DUE, args);
    ASSERT(r->type == REDIS_REPLY_ARRAY && r->elements == 5);
    return r;
}

TEST(keep_moves_a_message_from_in_flight_to_the_scheduled_set) {
    bfix_start();
    in_flight("7", "q", "{\"task\":\"t\"}");
    double due = bfix_redis_now() + 100.125;
    ASSERT_EQ(keep("7", due, "q", "{\"task\":\"t\",\"eta\":1}", "{\"status\":\"RETRY\"}"), 1);
    ASSERT_EQ(bfix_cmd_int("HLEN wt:inflight:w1"), 0);
    ASSERT_EQ(bfix_cmd_int("ZCARD wt:scheduled"), 1);
    ASSERT_STREQ(bfix_cmd_str("ZRANGE wt:scheduled 0 0"), "7@w1\nq\n{\"task\":\"t\",\"eta\":1}");
    redisReply *r = bfix_cmd("ZSCORE wt:scheduled %s", "7@w1\nq\n{\"task\":\"t\",\"eta\":1}");
    ASSERT(fabs(atof(r->str) - due) < 1e-6);
    freeReplyObject(r);
    ASSERT_STREQ(bfix_cmd_str("GET wt:result:k"), "{\"status\":\"RETRY\"}");
    ASSERT_EQ(bfix_cmd_int("LLEN wt:queue:q"), 0);
    bfix_stop();
}

TEST(keep_of_a_message_already_due_puts_it_at_the_back_of_its_queue) {
    bfix_start();
    freeReplyObject(bfix_cmd("LPUSH wt:queue:q waiting"));
    in_flight("8", "q", "m");
    ASSERT_EQ(keep("8", bfix_redis_now() - 1, "q", "due-now", NULL), 1);
    ASSERT_EQ(bfix_cmd_int("ZCARD wt:scheduled"), 0);
    ASSERT_EQ(bfix_cmd_int("LLEN wt:queue:q"), 2);
    ASSERT_STREQ(bfix_cmd_str("LINDEX wt:queue:q 0"), "due-now"); /* the back: taken last */
    ASSERT_EQ(bfix_cmd_int("EXISTS wt:result:k"), 0);             /* no result given, none stored */
    bfix_stop();
}

TEST(keep_of_a_message_no_longer_ours_changes_nothing) {
    bfix_start();
    ASSERT_EQ(keep("9", bfix_redis_now() + 50, "q", "m", "{\"status\":\"RETRY\"}"), 0);
    ASSERT_EQ(bfix_cmd_int("ZCARD wt:scheduled"), 0);
    ASSERT_EQ(bfix_cmd_int("EXISTS wt:result:k"), 0);
    bfix_stop();
}

TEST(identical_messages_kept_are_two_members) {
    bfix_start();
    in_flight("10", "q", "same");
    in_flight("11", "q", "same");
    double due = bfix_redis_now() + 50;
    ASSERT_EQ(keep("10", due, "q", "same", NULL), 1);
    ASSERT_EQ(keep("11", due, "q", "same", NULL), 1);
    ASSERT_EQ(bfix_cmd_int("ZCARD wt:scheduled"), 2);
    bfix_stop();
}

TEST(move_due_moves_only_what_is_due_earliest_first_behind_the_waiting) {
    bfix_start();
    double now = bfix_redis_now();
    freeReplyObject(bfix_cmd("LPUSH wt:queue:q already-waiting"));
    freeReplyObject(bfix_cmd("ZADD wt:scheduled %.6f %s %.6f %s %.6f %s %.6f %s", now - 3,
                             "1@w\nq\nfirst", now - 2, "2@w\nq\nsecond", now - 1,
                             "3@w\nother\nthird", now + 500, "4@w\nq\nlater"));
    redisReply *r = move(100);
    ASSERT_EQ(r->element[0]->integer, 3);
    ASSERT_EQ(r->element[1]->integer, 0);
    ASSERT(fabs(atof(r->element[2]->str) - (now + 500)) < 1e-3);
    double t = atof(r->element[3]->str) + atof(r->element[4]->str) / 1e6;
    ASSERT(t >= now && t < now + TEST_NEVER);
    freeReplyObject(r);
    ASSERT_EQ(bfix_cmd_int("ZCARD wt:scheduled"), 1);
    /* Taken from the right: what waited first, then the due ones earliest first. */
    ASSERT_EQ(bfix_cmd_int("LLEN wt:queue:q"), 3);
    ASSERT_STREQ(bfix_cmd_str("RPOP wt:queue:q"), "already-waiting");
    ASSERT_STREQ(bfix_cmd_str("RPOP wt:queue:q"), "first");
    ASSERT_STREQ(bfix_cmd_str("RPOP wt:queue:q"), "second");
    ASSERT_STREQ(bfix_cmd_str("RPOP wt:queue:other"), "third");
    bfix_stop();
}

TEST(move_due_respects_its_batch_and_a_second_move_finds_nothing_twice) {
    bfix_start();
    double now = bfix_redis_now();
    for (int i = 0; i < 25; i++)
        freeReplyObject(bfix_cmd("ZADD wt:scheduled %.6f %d@w\nq\nm%d", now - 1, i, i));
    redisReply *r = move(10);
    ASSERT_EQ(r->element[0]->integer, 10);
    ASSERT(atof(r->element[2]->str) <= now); /* more are due already */
    freeReplyObject(r);
    r = move(100);
    ASSERT_EQ(r->element[0]->integer, 15);
    ASSERT_EQ(r->element[2]->len, 0); /* the set is empty */
    freeReplyObject(r);
    r = move(100);
    ASSERT_EQ(r->element[0]->integer, 0);
    freeReplyObject(r);
    ASSERT_EQ(bfix_cmd_int("LLEN wt:queue:q"), 25);
    bfix_stop();
}

TEST(move_due_dead_letters_a_malformed_member) {
    bfix_start();
    freeReplyObject(bfix_cmd("ZADD wt:scheduled 1 %s 2 %s", "no-newline", "1@w\nq\ngood"));
    redisReply *r = move(100);
    ASSERT_EQ(r->element[0]->integer, 1);
    ASSERT_EQ(r->element[1]->integer, 1);
    freeReplyObject(r);
    ASSERT_EQ(bfix_cmd_int("ZCARD wt:scheduled"), 0);
    ASSERT_EQ(bfix_cmd_int("LLEN wt:dead"), 1);
    json_t *d = json_loads(bfix_cmd_str("LINDEX wt:dead 0"), 0, NULL);
    ASSERT_STREQ(json_string_value(json_object_get(d, "message")), "no-newline");
    ASSERT_STREQ(json_string_value(json_object_get(d, "worker")), "mover");
    ASSERT(strstr(json_string_value(json_object_get(d, "reason")), "scheduled set") != NULL);
    json_decref(d);
    bfix_stop();
}

/* ---- through broker_ack and broker_sched_move on a hub -------------------------------- */

static void *green_main(void *arg) {
    (void)arg;
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/0", bfix_server.port);
    broker_conn *conn = broker_conn_new(url, "broker", NULL, NULL);
    ASSERT(conn != NULL);
    ASSERT_EQ(broker_conn_wait_up(conn, 10), 0);
    const char *queues[] = {"q"};
    broker_worker_cfg cfg = {.prefix = "wt",
                             .wid = "w1",
                             .queues = queues,
                             .nqueues = 1,
                             .result_expires = 100,
                             .heartbeat_ttl = 15,
                             .max_redeliveries = 5};
    broker_worker *w = broker_worker_new(&cfg, conn, NULL);
    ASSERT(w != NULL);
    broker_delivery *d = NULL;
    size_t n = 0;
    ASSERT_EQ(broker_fetch(w, 10, &d, &n, 5), 0);
    ASSERT_EQ(n, 2);
    broker_sched_moved mv;
    ASSERT_EQ(broker_sched_move(conn, "wt", "w1", 10, &mv, 5), 0);
    double now = mv.redis_now;
    ASSERT(mv.moved == 0 && mv.next_due == 0 && now > 1e9);
    /* One kept a little ahead, one a long way ahead, with a result. */
    broker_ack_entry acks[] = {
        {.tag = d[0].tag, .keep = "soon", .keep_len = 4, .queue = "q", .due = now + 0.2},
        {.tag = d[1].tag,
         .id = "k",
         .json = "{\"status\":\"RETRY\"}",
         .keep = "later",
         .keep_len = 5,
         .queue = "q",
         .due = now + 1000},
    };
    bool owned[2] = {false, false};
    ASSERT_EQ(broker_ack(w, acks, 2, owned, 5), 0);
    ASSERT(owned[0] && owned[1]);
    broker_deliveries_free(d, n);
    ASSERT_EQ(broker_sched_move(conn, "wt", "w1", 10, &mv, 5), 0);
    ASSERT(mv.moved == 0 && fabs(mv.next_due - (now + 0.2)) < 1e-6);
    while (mv.redis_now < now + 0.2) {
        ASSERT_EQ(green_sleep(0.05), 0);
        ASSERT_EQ(broker_sched_move(conn, "wt", "w1", 10, &mv, 5), 0);
    }
    ASSERT_EQ(mv.moved, 1);
    ASSERT(fabs(mv.next_due - (now + 1000)) < 1e-6);
    broker_worker_free(w);
    broker_conn_close(conn);
    return NULL;
}

TEST(worker_acks_keep_messages_and_the_move_brings_them_back_when_due) {
    bfix_start();
    freeReplyObject(bfix_cmd("LPUSH wt:queue:q a b"));
    ASSERT_EQ(green_run(NULL, NULL, green_main, NULL, NULL), 0);
    ASSERT_EQ(bfix_cmd_int("LLEN wt:queue:q"), 1);
    ASSERT_STREQ(bfix_cmd_str("LINDEX wt:queue:q 0"), "soon");
    ASSERT_STREQ(bfix_cmd_str("GET wt:result:k"), "{\"status\":\"RETRY\"}");
    ASSERT_EQ(bfix_cmd_int("ZCARD wt:scheduled"), 1);
    bfix_stop();
}
