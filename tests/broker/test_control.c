/*
 * test_control.c - revocations in Redis (broker_control.h) against a real redis-server:
 * what a revocation writes (the mark, the revoked set, the control stream entry), the
 * snapshot a worker loads, reading the stream on (in order, with the gap a trim leaves),
 * the ordering of stream ids, and the stream's position that every fetch reports. The
 * builders are sent as workerctl sends them (plain hiredis, pipelined); the green calls
 * on a hub.
 */
#include "broker_batch.h"
#include "broker_control.h"
#include "broker_keys.h"
#include "broker_worker.h"
#include "green.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "brokerfix.h"
#include "testlib.h"

static broker_keys keys;

/* The fixture, and the keys of prefix "wt". */
static void start(void) {
    bfix_start();
    ASSERT_EQ(broker_keys_init(&keys, "wt"), 0);
}

/* Send every command of b in one pipeline; the replies go to r[0..b->n). */
static void send_batch(broker_batch *b, redisReply **r) {
    ASSERT_EQ(b->err, 0);
    for (size_t i = 0; i < b->n; i++)
        ASSERT_EQ(redisAppendCommandArgv(bfix_rc, b->argcs[i], b->argvs[i], b->argvlens[i]),
                  REDIS_OK);
    for (size_t i = 0; i < b->n; i++) {
        ASSERT_EQ(redisGetReply(bfix_rc, (void **)&r[i]), REDIS_OK);
        ASSERT(r[i] != NULL);
    }
}

static void send_and_free(broker_batch *b) {
    redisReply *r[16];
    ASSERT(b->n <= 16);
    send_batch(b, r);
    for (size_t i = 0; i < b->n; i++) {
        ASSERT(r[i]->type != REDIS_REPLY_ERROR);
        freeReplyObject(r[i]);
    }
    broker_batch_clear(b);
}

/* A string reply as a double (a score). */
static double cmd_num(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(bfix_rc, fmt, ap);
    va_end(ap);
    ASSERT(r != NULL && r->type == REDIS_REPLY_STRING);
    double v = strtod(r->str, NULL);
    freeReplyObject(r);
    return v;
}

static void revoke(const char *id, bool terminate, long ttl, double now) {
    broker_batch b = {0};
    ASSERT_EQ(broker_cmd_revoke(&b, &keys, id, terminate, ttl, now), 0);
    ASSERT_EQ(b.n, 4);
    send_and_free(&b);
}

/* What the callbacks saw. */
struct seen {
    int n;
    char ids[16][64];
    double until[16];
    bool terminate[16];
};

static void record(void *arg, const char *id, double until, bool terminate) {
    struct seen *s = arg;
    ASSERT(s->n < 16);
    snprintf(s->ids[s->n], sizeof s->ids[s->n], "%s", id);
    s->until[s->n] = until;
    s->terminate[s->n] = terminate;
    s->n++;
}

/* ---- what a revocation writes --------------------------------------------------------- */

TEST(revoke_writes_the_mark_the_set_and_the_entry_in_that_order) {
    start();
    double now = 1.8e9;
    revoke("r-1", false, 600, now);
    revoke("r-2", true, 600, now);
    redisReply *r = bfix_cmd("GET wt:revoked:r-1");
    ASSERT_STREQ(r->str, BROKER_MARK_REVOKE);
    freeReplyObject(r);
    r = bfix_cmd("GET wt:revoked:r-2");
    ASSERT_STREQ(r->str, BROKER_MARK_TERMINATE);
    freeReplyObject(r);
    ASSERT_RANGE(bfix_cmd_int("TTL wt:revoked:r-2"), 590, 600);
    ASSERT_EQ(cmd_num("ZSCORE wt:revoked r-1"), now + 600);
    r = bfix_cmd("XRANGE wt:control - +");
    ASSERT_EQ(r->elements, 2);
    redisReply *f = r->element[1]->element[1];
    ASSERT_EQ(f->elements, 4);
    ASSERT_STREQ(f->element[0]->str, "terminate");
    ASSERT_STREQ(f->element[1]->str, "r-2");
    ASSERT_STREQ(f->element[2]->str, "until");
    ASSERT_EQ(strtod(f->element[3]->str, NULL), now + 600);
    freeReplyObject(r);
    bfix_stop();
}

/* --result-expires 0: the mark has no TTL, the score is +inf, the entry no "until". */
TEST(revoke_for_ever_has_no_expiry_anywhere) {
    start();
    revoke("f-1", false, 0, 1.8e9);
    ASSERT_EQ(bfix_cmd_int("TTL wt:revoked:f-1"), -1);
    ASSERT(isinf(cmd_num("ZSCORE wt:revoked f-1")));
    redisReply *r = bfix_cmd("XRANGE wt:control - +");
    ASSERT_EQ(r->element[0]->element[1]->elements, 2);
    freeReplyObject(r);
    bfix_stop();
}

/* The later expiry of two revocations of one id wins; ids whose marks have expired leave
 * the set at the next revocation. */
TEST(revoke_keeps_the_later_expiry_and_drops_expired_ids) {
    start();
    revoke("a", false, 1000, 1.8e9);
    revoke("a", false, 10, 1.8e9);
    ASSERT_EQ(cmd_num("ZSCORE wt:revoked a"), 1.8e9 + 1000);
    revoke("b", false, 10, 1.8e9 + 2000);
    ASSERT_EQ(bfix_cmd_int("ZCARD wt:revoked"), 1);
    ASSERT_EQ(cmd_num("ZSCORE wt:revoked b"), 1.8e9 + 2010);
    bfix_stop();
}

TEST(revoke_refuses_an_id_no_key_can_hold) {
    broker_keys k;
    ASSERT_EQ(broker_keys_init(&k, "wt"), 0);
    broker_batch b = {0};
    ASSERT_EQ(broker_cmd_revoke(&b, &k, "", false, 10, 1.8e9), -EINVAL);
    broker_batch_clear(&b);
}

/* ---- what a worker reads -------------------------------------------------------------- */

/* The snapshot: the ids in force (those expired by `now` are not), with their expiry,
 * and the stream's newest entry. */
TEST(snapshot_lists_the_ids_in_force_and_where_the_stream_stands) {
    start();
    double now = (double)time(NULL);
    revoke("old", false, 5, now - 100);
    revoke("live", true, 600, now);
    revoke("ever", false, 0, now);
    broker_batch b = {0};
    ASSERT_EQ(broker_cmd_revoked_snapshot(&b, &keys, now), 0);
    redisReply *r[4];
    send_batch(&b, r);
    struct seen s = {0};
    char last[BROKER_STREAM_ID_MAX] = "";
    ASSERT_EQ(broker_reply_revoked_snapshot(r[3], last, record, &s), 2);
    ASSERT_EQ(s.n, 2);
    ASSERT_STREQ(s.ids[0], "live");
    ASSERT_EQ(s.until[0], now + 600);
    ASSERT(!s.terminate[0]); /* the set does not know; the marks say */
    ASSERT_STREQ(s.ids[1], "ever");
    ASSERT_EQ(s.until[1], 0);
    redisReply *tail = bfix_cmd("XREVRANGE wt:control + - COUNT 1");
    ASSERT_STREQ(last, tail->element[0]->element[0]->str);
    freeReplyObject(tail);
    for (int i = 0; i < 4; i++)
        freeReplyObject(r[i]);
    broker_batch_clear(&b);
    bfix_stop();
}

TEST(snapshot_of_nothing_starts_the_stream_at_zero) {
    start();
    broker_batch b = {0};
    broker_cmd_revoked_snapshot(&b, &keys, 1.8e9);
    redisReply *r[4];
    send_batch(&b, r);
    struct seen s = {0};
    char last[BROKER_STREAM_ID_MAX] = "x";
    ASSERT_EQ(broker_reply_revoked_snapshot(r[3], last, record, &s), 0);
    ASSERT_STREQ(last, "0-0");
    for (int i = 0; i < 4; i++)
        freeReplyObject(r[i]);
    broker_batch_clear(&b);
    bfix_stop();
}

/* One read of the stream after `last`; returns the entries and sets *gap. */
static int read_after(char last[BROKER_STREAM_ID_MAX], struct seen *s, bool *gap) {
    broker_batch b = {0};
    ASSERT_EQ(broker_cmd_control_read(&b, &keys, last, 0, 100), 0);
    redisReply *r[2];
    send_batch(&b, r);
    int n = broker_reply_control_read(r[0], r[1], last, gap, record, s);
    freeReplyObject(r[0]);
    freeReplyObject(r[1]);
    broker_batch_clear(&b);
    return n;
}

TEST(control_read_gives_the_entries_in_order_and_moves_on) {
    start();
    revoke("x-0", false, 60, 1.8e9);
    char last[BROKER_STREAM_ID_MAX];
    redisReply *tail = bfix_cmd("XREVRANGE wt:control + - COUNT 1");
    snprintf(last, sizeof last, "%s", tail->element[0]->element[0]->str);
    freeReplyObject(tail);
    revoke("x-1", false, 60, 1.8e9);
    revoke("x-2", true, 60, 1.8e9);
    /* A field this worker does not know, and an entry that revokes nothing, are skipped. */
    freeReplyObject(bfix_cmd("XADD wt:control * revoke x-3 colour blue"));
    freeReplyObject(bfix_cmd("XADD wt:control * hello world"));
    struct seen s = {0};
    bool gap = true;
    ASSERT_EQ(read_after(last, &s, &gap), 4);
    ASSERT(!gap);
    ASSERT_EQ(s.n, 3);
    ASSERT_STREQ(s.ids[0], "x-1");
    ASSERT(!s.terminate[0]);
    ASSERT_EQ(s.until[0], 1.8e9 + 60);
    ASSERT_STREQ(s.ids[1], "x-2");
    ASSERT(s.terminate[1]);
    ASSERT_STREQ(s.ids[2], "x-3");
    ASSERT_EQ(s.until[2], 0);
    tail = bfix_cmd("XREVRANGE wt:control + - COUNT 1");
    ASSERT_STREQ(last, tail->element[0]->element[0]->str);
    freeReplyObject(tail);
    /* Nothing new: nothing read, last stays. */
    char before[BROKER_STREAM_ID_MAX];
    memcpy(before, last, sizeof before);
    ASSERT_EQ(read_after(last, &s, &gap), 0);
    ASSERT_STREQ(last, before);
    bfix_stop();
}

/* Entries after `last` trimmed away unread: the reader is told, and applies nothing. */
TEST(control_read_reports_entries_trimmed_unread) {
    start();
    revoke("t-0", false, 60, 1.8e9);
    char last[BROKER_STREAM_ID_MAX];
    redisReply *tail = bfix_cmd("XREVRANGE wt:control + - COUNT 1");
    snprintf(last, sizeof last, "%s", tail->element[0]->element[0]->str);
    freeReplyObject(tail);
    revoke("t-1", false, 60, 1.8e9);
    revoke("t-2", false, 60, 1.8e9);
    freeReplyObject(bfix_cmd("XTRIM wt:control MAXLEN 1"));
    struct seen s = {0};
    bool gap = false;
    char before[BROKER_STREAM_ID_MAX];
    memcpy(before, last, sizeof before);
    ASSERT_EQ(read_after(last, &s, &gap), 1);
    ASSERT(gap);
    ASSERT_EQ(s.n, 0);
    ASSERT_STREQ(last, before);
    bfix_stop();
}

TEST(stream_ids_compare_as_numbers) {
    ASSERT(broker_stream_id_cmp("0-0", "0-0") == 0);
    ASSERT(broker_stream_id_cmp("9-0", "10-0") < 0);
    ASSERT(broker_stream_id_cmp("10-2", "10-10") < 0);
    ASSERT(broker_stream_id_cmp("1796418134134-1", "1796418134134-0") > 0);
    ASSERT(broker_stream_id_cmp("5", "5-0") == 0);
    ASSERT(broker_stream_id_cmp("5", "5-1") < 0);
}

TEST(marks_read_back_as_revoked_terminated_or_none) {
    redisReply nil = {.type = REDIS_REPLY_NIL};
    redisReply one = {.type = REDIS_REPLY_STRING, .str = "1", .len = 1};
    redisReply term = {.type = REDIS_REPLY_STRING, .str = "terminate", .len = 9};
    redisReply other = {.type = REDIS_REPLY_STRING, .str = "yes", .len = 3};
    ASSERT_EQ(broker_reply_mark(&nil), BROKER_MARK_NONE);
    ASSERT_EQ(broker_reply_mark(&one), BROKER_MARK_REVOKED);
    ASSERT_EQ(broker_reply_mark(&term), BROKER_MARK_TERMINATED);
    ASSERT_EQ(broker_reply_mark(&other), BROKER_MARK_REVOKED);
}

/* ---- from the green worker ------------------------------------------------------------ */

static void *green_main(void *arg) {
    void (*body)(broker_conn *, broker_worker *) = *(void (**)(broker_conn *, broker_worker *))arg;
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/0", bfix_server.port);
    broker_conn *conn = broker_conn_new(url, "broker", NULL, NULL);
    ASSERT(conn != NULL);
    ASSERT_EQ(broker_conn_wait_up(conn, 10), 0);
    const char *queues[] = {"a"};
    broker_worker_cfg cfg = {.prefix = "wt",
                             .wid = "w1",
                             .queues = queues,
                             .nqueues = 1,
                             .result_expires = 100,
                             .heartbeat_ttl = 15,
                             .max_redeliveries = 5};
    broker_worker *w = broker_worker_new(&cfg, conn, NULL);
    ASSERT(w != NULL);
    body(conn, w);
    broker_worker_free(w);
    broker_conn_close(conn);
    return NULL;
}

static void run_green(void (*body)(broker_conn *, broker_worker *)) {
    ASSERT_EQ(green_run(NULL, NULL, green_main, &body, NULL), 0);
}

static void fetch_one(broker_worker *w) {
    broker_delivery *d = NULL;
    size_t n = 0;
    ASSERT_EQ(broker_fetch(w, 10, &d, &n, 5), 0);
    ASSERT_EQ(n, 1);
    broker_deliveries_free(d, n);
}

static void fetch_body(broker_conn *c, broker_worker *w) {
    (void)c;
    ASSERT_STREQ(broker_worker_control_tail(w), "0-0");
    freeReplyObject(bfix_cmd("LPUSH wt:queue:a {\"task\":\"echo\"}"));
    fetch_one(w);
    ASSERT_STREQ(broker_worker_control_tail(w), "0-0"); /* no stream yet */
    revoke("z-1", false, 60, 1.8e9);
    freeReplyObject(bfix_cmd("LPUSH wt:queue:a {\"task\":\"echo\"}"));
    /* A Redis that forgot the script: the fetch and the tail go again, in order. */
    freeReplyObject(bfix_cmd("SCRIPT FLUSH"));
    fetch_one(w);
    redisReply *tail = bfix_cmd("XREVRANGE wt:control + - COUNT 1");
    ASSERT_STREQ(broker_worker_control_tail(w), tail->element[0]->element[0]->str);
    freeReplyObject(tail);
    /* A fetch that takes nothing leaves the tail as it was. */
    revoke("z-2", false, 60, 1.8e9);
    broker_delivery *d = NULL;
    size_t n = 9;
    ASSERT_EQ(broker_fetch(w, 10, &d, &n, 5), 0);
    ASSERT_EQ(n, 0);
    broker_deliveries_free(d, n);
    tail = bfix_cmd("XREVRANGE wt:control + - COUNT 1");
    ASSERT(strcmp(broker_worker_control_tail(w), tail->element[0]->element[0]->str) != 0);
    freeReplyObject(tail);
}

/* Every fetch that takes messages reads the stream's newest entry right after them. */
TEST(fetch_reports_where_the_control_stream_stood) {
    start();
    run_green(fetch_body);
    bfix_stop();
}

static void green_reads_body(broker_conn *c, broker_worker *w) {
    (void)w;
    const char *ids[] = {"g-1", "g-2", "g-3"};
    broker_mark marks[3];
    ASSERT_EQ(broker_marks_get(c, &keys, ids, 3, marks, 5), 0);
    ASSERT_EQ(marks[0], BROKER_MARK_REVOKED);
    ASSERT_EQ(marks[1], BROKER_MARK_TERMINATED);
    ASSERT_EQ(marks[2], BROKER_MARK_NONE);
    struct seen s = {0};
    char last[BROKER_STREAM_ID_MAX];
    ASSERT_EQ(broker_revoked_snapshot(c, &keys, 1.8e9, last, record, &s, 5), 2);
    ASSERT_EQ(s.n, 2);
    /* Nothing after the newest entry: an XREAD that waits, then gives up. */
    bool gap = true;
    double t0 = test_now();
    ASSERT_EQ(broker_control_read(c, &keys, last, 0.2, &gap, record, &s), 0);
    ASSERT(test_now() - t0 >= 0.15);
    ASSERT(!gap);
    /* A key of another type: an error, not a crash. */
    freeReplyObject(bfix_cmd("DEL wt:control"));
    freeReplyObject(bfix_cmd("SET wt:control x"));
    ASSERT_EQ(broker_control_read(c, &keys, last, 0.1, &gap, record, &s), -EPROTO);
    ASSERT_EQ(broker_revoked_snapshot(c, &keys, 1.8e9, last, record, &s, 5), -EPROTO);
}

TEST(green_calls_read_marks_the_set_and_the_stream) {
    start();
    revoke("g-1", false, 60, 1.8e9);
    revoke("g-2", true, 60, 1.8e9);
    run_green(green_reads_body);
    bfix_stop();
}
