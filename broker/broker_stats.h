/*
 * broker_stats.h - the fleet's task counters in Redis: how many tasks every worker of one
 * Redis processed and how many of them failed, per minute for the last two hours and in
 * total, so that a dashboard (workerd-web) can draw the last hour after it restarts and
 * sum the fleet for Prometheus without asking any worker.
 *
 *   <prefix>:stats:minute:<m>   hash {processed, failed}, m = floor(unix time / 60) on the
 *                               Redis server's clock as the worker knows it,
 *                               expiring BROKER_STATS_MINUTE_TTL after its last write
 *   <prefix>:stats:total        hash {processed, failed}, never expires
 *
 * Workers do not write these per task: each one counts in memory and adds what it counted
 * since the last time to the bucket of the current minute with its heartbeat, in the same
 * pipeline (broker_heartbeat's extra commands), so the cost is five small commands every
 * --heartbeat seconds whatever the task rate. A count therefore lands in the minute of the
 * heartbeat that carried it (up to --heartbeat seconds late), and what a worker counted
 * after its last heartbeat before it stopped is not added. A heartbeat whose reply was
 * lost is sent again with the next one: a count may then be added twice (never lost).
 * "processed" counts every task that ended (SUCCESS, FAILURE, REVOKED, dead letters),
 * "failed" those that did not end in SUCCESS.
 *
 * Builders and parsers follow broker_cmds.h's conventions: pure computation, no I/O,
 * never yield, callable from any stack, thread-safe on distinct batches.
 */
#ifndef WORKERD_BROKER_STATS_H
#define WORKERD_BROKER_STATS_H

#include "broker_batch.h"
#include "broker_keys.h"

#include <hiredis/hiredis.h>

#define BROKER_STATS_MINUTE_TTL 7200 /* seconds a minute's bucket is kept */

/* Add processed and failed to the bucket of `minute` and to the totals: HINCRBY minute
 * processed, HINCRBY minute failed, EXPIRE minute BROKER_STATS_MINUTE_TTL, HINCRBY total
 * processed, HINCRBY total failed. Five commands (none when both are 0). */
int broker_cmd_stats_add(broker_batch *b, const broker_keys *k, long long minute,
                         long long processed, long long failed);

/* Read the buckets of minutes first .. first + n - 1, then the totals: n + 1 HMGET
 * processed failed commands, in that order. */
int broker_cmd_stats_read(broker_batch *b, const broker_keys *k, long long first, int n);

/* One HMGET reply of those: *processed and *failed (0 for an absent bucket or field, or a
 * reply of another shape). */
void broker_reply_stats(const redisReply *r, long long *processed, long long *failed);

#endif
