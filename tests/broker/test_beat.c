/*
 * test_beat.c - beat_fire.lua against a real redis-server: a due tick is pushed once and
 * its mark set, the same tick or an older one again pushes nothing, a tick later than the
 * server's clock is refused untouched, a tick with an empty queue only moves the mark, and
 * the marks and the clock read back through broker_cmd_beat_state's parsers.
 */
#include "broker_beat.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "brokerfix_script.h"
#include "testlib.h"

/* Fire tick of name onto queue; the status the script answered. */
static long long fire(const char *name, long long tick, const char *queue) {
    char t[32];
    snprintf(t, sizeof t, "%lld", tick);
    char msg[128];
    snprintf(msg, sizeof msg, "{\"id\":\"beat:%s:%lld\",\"task\":\"echo\"}", name, tick);
    const char *args[] = {"workerd", name, t, queue, msg, NULL};
    redisReply *r = bfix_run(BROKER_SCRIPT_BEAT_FIRE, args);
    ASSERT(r->type == REDIS_REPLY_ARRAY && r->elements == 3);
    ASSERT(r->element[0]->type == REDIS_REPLY_INTEGER);
    long long status = r->element[0]->integer;
    freeReplyObject(r);
    return status;
}

TEST(a_due_tick_is_pushed_once_and_never_an_older_one) {
    bfix_start();
    long long now = (long long)bfix_redis_now();
    ASSERT_EQ(fire("a", now - 10, "q"), BROKER_BEAT_FIRED);
    ASSERT_EQ(bfix_cmd_int("LLEN workerd:queue:q"), 1);
    ASSERT_EQ(fire("a", now - 10, "q"), BROKER_BEAT_DONE); /* a second worker, or a retry */
    ASSERT_EQ(fire("a", now - 20, "q"), BROKER_BEAT_DONE); /* older than the mark */
    ASSERT_EQ(bfix_cmd_int("LLEN workerd:queue:q"), 1);
    ASSERT_EQ(fire("a", now - 5, "q"), BROKER_BEAT_FIRED);
    ASSERT_EQ(bfix_cmd_int("LLEN workerd:queue:q"), 2);
    ASSERT_EQ(fire("b", now - 10, "q"), BROKER_BEAT_FIRED); /* marks are per entry */
    char expect[32];
    snprintf(expect, sizeof expect, "%lld", now - 5);
    ASSERT_STREQ(bfix_cmd_str("HGET workerd:beat a"), expect);
    bfix_stop();
}

TEST(a_tick_not_due_by_the_server_clock_changes_nothing) {
    bfix_start();
    long long now = (long long)bfix_redis_now();
    ASSERT_EQ(fire("a", now + 30, "q"), BROKER_BEAT_NOT_DUE);
    ASSERT_EQ(bfix_cmd_int("EXISTS workerd:beat"), 0);
    ASSERT_EQ(bfix_cmd_int("LLEN workerd:queue:q"), 0);
    bfix_stop();
}

TEST(an_empty_queue_marks_a_dropped_tick_without_a_run) {
    bfix_start();
    long long now = (long long)bfix_redis_now();
    ASSERT_EQ(fire("a", now - 100, ""), BROKER_BEAT_FIRED);
    ASSERT_EQ(bfix_cmd_int("DBSIZE"), 1); /* the mark alone */
    ASSERT_EQ(fire("a", now - 100, "q"), BROKER_BEAT_DONE);
    bfix_stop();
}

TEST(the_state_reads_back_marks_and_clock) {
    bfix_start();
    bfix_cmd_int("HSET workerd:beat a 1767225600 b 42");
    broker_keys k;
    ASSERT_EQ(broker_keys_init(&k, "workerd"), 0);
    broker_batch b = {0};
    ASSERT_EQ(broker_cmd_beat_state(&b, &k), 0);
    ASSERT_EQ(b.n, 2);
    redisReply *replies[2];
    for (size_t i = 0; i < b.n; i++)
        ASSERT_EQ(redisAppendCommandArgv(bfix_rc, b.argcs[i], b.argvs[i], b.argvlens[i]), 0);
    for (size_t i = 0; i < b.n; i++)
        ASSERT_EQ(redisGetReply(bfix_rc, (void **)&replies[i]), 0);
    broker_batch_clear(&b);
    int64_t tick = 0;
    ASSERT_EQ(broker_reply_beat_mark(replies[0], "a", &tick), 1);
    ASSERT_EQ(tick, 1767225600);
    ASSERT_EQ(broker_reply_beat_mark(replies[0], "b", &tick), 1);
    ASSERT_EQ(tick, 42);
    ASSERT_EQ(broker_reply_beat_mark(replies[0], "c", &tick), 0);
    double now = 0;
    ASSERT_EQ(broker_reply_time(replies[1], &now), 0);
    ASSERT_RANGE(now - bfix_redis_now(), -TEST_SOON, 0);
    ASSERT_EQ(broker_reply_time(replies[0], &now), -EPROTO);
    freeReplyObject(replies[0]);
    freeReplyObject(replies[1]);
    bfix_stop();
}
