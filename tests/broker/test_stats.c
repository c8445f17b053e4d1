/*
 * test_stats.c - the fleet's task counters (broker_stats.h) in a real redis-server: what
 * a heartbeat's extra commands add, the bucket's expiry, and what the dashboard reads
 * back, absent buckets as zero.
 */
#include "broker_stats.h"
#include "testlib.h"

#include <hiredis/hiredis.h>
#include <string.h>

/* Send every command of b on c, in order, and drop the replies (ASSERTs none is an
 * error). */
static void send_all(redisContext *c, broker_batch *b) {
    ASSERT_EQ(b->err, 0);
    for (size_t i = 0; i < b->n; i++)
        redisAppendCommandArgv(c, b->argcs[i], b->argvs[i], b->argvlens[i]);
    for (size_t i = 0; i < b->n; i++) {
        redisReply *r = NULL;
        ASSERT_EQ(redisGetReply(c, (void **)&r), REDIS_OK);
        ASSERT(r->type != REDIS_REPLY_ERROR);
        freeReplyObject(r);
    }
}

TEST(stats_add_counts_per_minute_and_in_total_with_a_ttl) {
    test_redis server;
    test_redis_start(&server, NULL);
    redisContext *c = redisConnect("127.0.0.1", server.port);
    ASSERT(c != NULL && c->err == 0);
    broker_keys keys;
    ASSERT_EQ(broker_keys_init(&keys, "t"), 0);
    broker_batch b = {0};
    broker_cmd_stats_add(&b, &keys, 1000, 7, 2);
    broker_cmd_stats_add(&b, &keys, 1001, 3, 0);
    broker_cmd_stats_add(&b, &keys, 1001, 0, 0); /* nothing to add: no command */
    ASSERT_EQ(b.n, 10);
    send_all(c, &b);
    broker_batch_clear(&b);

    redisReply *r = redisCommand(c, "TTL t:stats:minute:1000");
    ASSERT(r->integer > BROKER_STATS_MINUTE_TTL - 60 && r->integer <= BROKER_STATS_MINUTE_TTL);
    freeReplyObject(r);
    r = redisCommand(c, "TTL t:stats:total");
    ASSERT_EQ(r->integer, -1);
    freeReplyObject(r);

    /* Read minutes 999..1001 and the totals, as the dashboard does. */
    broker_cmd_stats_read(&b, &keys, 999, 3);
    ASSERT_EQ(b.n, 4);
    for (size_t i = 0; i < b.n; i++)
        redisAppendCommandArgv(c, b.argcs[i], b.argvs[i], b.argvlens[i]);
    const long long want[][2] = {{0, 0}, {7, 2}, {3, 0}, {10, 2}};
    for (size_t i = 0; i < 4; i++) {
        ASSERT_EQ(redisGetReply(c, (void **)&r), REDIS_OK);
        long long p = -1, f = -1;
        broker_reply_stats(r, &p, &f);
        ASSERT_EQ(p, want[i][0]);
        ASSERT_EQ(f, want[i][1]);
        freeReplyObject(r);
    }
    broker_batch_clear(&b);
    redisFree(c);
    test_redis_stop(&server);
}
