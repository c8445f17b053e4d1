/*
 * broker_cmds.h - the commands that both of workerd's Redis clients send, built as
 * broker_batch argument vectors, and the parsers of their replies: the green worker sends
 * them with broker_conn_pipeline, workerctl with hiredis's synchronous calls, and neither
 * spells a key, a command or a script of its own.
 *
 *   enqueue        LPUSH <queue key> <message>           `call` (as any producer)
 *   queue depths   LLEN of each queue key               the worker's /metrics, `queues`
 *   queue scan     SCAN over every queue key             `queues`, `revoke`
 *   result store   SET <result key> [EX ttl] + PUBLISH   the worker's results, `revoke`
 *   revoke mark    SET <prefix>:revoked:<id> 1 [EX ttl]  the mark alone (tests); revoking
 *                                                        is broker_control.h's
 *   dead requeue   dead_requeue.lua                      `dead requeue`
 *   dead drop      LREM <prefix>:dead 1 <entry>          `dead drop`
 *   purge          MULTI LLEN DEL EXEC of a queue key     `purge`, the dashboard
 *   pause, resume  SADD / SREM <prefix>:paused <queue>    `pause`, `resume`, the dashboard
 *   paused list    SMEMBERS <prefix>:paused               `paused`, `queues`, the dashboard
 *
 * Builders append one or more commands to a batch and return 0, -EINVAL (a name fails its
 * broker_keys.h check; the batch is then failed, see broker_batch.h) or -ENOMEM. Keys and
 * names are copied into the batch; documents (a result, an entry, a message) are
 * borrowed: keep them until the batch is sent. A command built on EVALSHA (dead requeue)
 * may be answered NOSCRIPT: broker_script_retry (broker_scripts.h) turns it into the EVAL
 * to send again.
 *
 * Parsers take one reply, as hiredis gives it to either client; they never free it.
 *
 * Pure computation: no I/O, never yields, callable from any stack; thread-safe on
 * distinct batches.
 */
#ifndef WORKERD_BROKER_CMDS_H
#define WORKERD_BROKER_CMDS_H

#include "broker_batch.h"
#include "broker_keys.h"

#include <stddef.h>

#include <hiredis/hiredis.h>

/* Send a new message to a queue, msg[0..len): LPUSH onto the queue key (workers take
 * from the other end: first in, first out). One command; its reply is the queue's new
 * length. */
int broker_cmd_enqueue(broker_batch *b, const broker_keys *k, const char *queue, const char *msg,
                       size_t len);

/* LLEN of the queue key of each of queues[0..n): n commands, in that order. */
int broker_cmd_queue_depths(broker_batch *b, const broker_keys *k, const char *const *queues,
                            size_t n);

/* A queue's depth from the reply to its LLEN: >= 0 (an absent key is an empty queue), or
 * -1 when Redis answered anything else (an error: the key holds something else). */
long long broker_reply_queue_depth(const redisReply *r);

#define BROKER_SCAN_CURSOR_MAX 32 /* a SCAN cursor is a 64-bit number in decimal */

/* One step of a SCAN over the queue keys of k's prefix, from cursor ("0" to begin):
 * SCAN <cursor> MATCH <broker_key_queue_pattern> COUNT 1000. Keep calling with the cursor
 * the reply gives until it is "0" again; a key may come twice (when Redis rehashes), and
 * every key that SCAN finds still has to be read with broker_key_queue_name. */
int broker_cmd_scan_queues(broker_batch *b, const broker_keys *k, const char *cursor);

/* The reply to a SCAN step: the next cursor (into cursor) and the keys of this step
 * (*keys, an array reply borrowed from r). 0, or -EPROTO for any other reply. */
int broker_reply_scan(const redisReply *r, char cursor[BROKER_SCAN_CURSOR_MAX],
                      const redisReply **keys);

/* Store a task's result document json[0..len) and tell its waiters: SET <result key> json,
 * with EX ttl when ttl > 0 (ttl <= 0 keeps it for ever), then PUBLISH on the channel of
 * the same name. Two commands. */
int broker_cmd_result_store(broker_batch *b, const broker_keys *k, const char *id, const char *json,
                            size_t len, long ttl);
/* The same at Celery's result key (celery-task-meta-<id>) when celery is true. A plain
 * SET: only ack.lua keeps a stored SUCCESS of Celery's from being replaced. */
int broker_cmd_result_store_at(broker_batch *b, const broker_keys *k, const char *id, bool celery,
                               const char *json, size_t len, long ttl);

/* Set the revocation mark of id alone: SET <prefix>:revoked:<id> 1, with EX ttl when
 * ttl > 0. One command. Workers take messages by the revoked set, not by the marks: to
 * revoke, use broker_cmd_revoke (broker_control.h), which writes all that they read. */
int broker_cmd_revoke_mark(broker_batch *b, const broker_keys *k, const char *id, long ttl);

/* Put back the message of the dead-letter entry entry[0..elen) (its exact text on
 * <prefix>:dead): msg[0..mlen) goes onto queue if, and only if, the entry is still there
 * to be removed (dead_requeue.lua). One command; its reply (broker_reply_integer) is 1
 * when requeued, 0 when the entry was gone. */
int broker_cmd_dead_requeue(broker_batch *b, const broker_keys *k, const char *entry, size_t elen,
                            const char *queue, const char *msg, size_t mlen);

/* Remove one copy of a dead-letter entry: LREM <prefix>:dead 1 <entry>. One command; its
 * reply (broker_reply_integer) is how many went, 0 or 1. */
int broker_cmd_dead_drop(broker_batch *b, const broker_keys *k, const char *entry, size_t elen);

/* Delete a queue and count what went, atomically: MULTI, LLEN <queue key>, DEL <queue
 * key>, EXEC. Four commands; parse the last reply (EXEC's) with broker_reply_purge. */
int broker_cmd_purge(broker_batch *b, const broker_keys *k, const char *queue);

/* The number of messages the purge deleted, from EXEC's reply: >= 0, or -EPROTO. */
long long broker_reply_purge(const redisReply *exec);

/* Pause a queue: SADD <prefix>:paused <queue> (queue: a user's name, or "=<name>" for a
 * Celery queue). From the next fetch on no worker takes its messages; they stay queued
 * (fetch.lua). One command; its reply (broker_reply_integer) is 1 when it was running,
 * 0 when it was paused already. */
int broker_cmd_pause(broker_batch *b, const broker_keys *k, const char *queue);

/* Resume a paused queue: SREM <prefix>:paused <queue>. One command; its reply
 * (broker_reply_integer) is 1 when it was paused, 0 when it was not. */
int broker_cmd_resume(broker_batch *b, const broker_keys *k, const char *queue);

/* The paused queues: SMEMBERS <prefix>:paused. One command; its reply is an array of
 * the names (in no order). */
int broker_cmd_paused(broker_batch *b, const broker_keys *k);

/* An integer reply into *out: 0, or -EPROTO for any other reply (an error included). */
int broker_reply_integer(const redisReply *r, long long *out);

/* A reply element as a number, as scripts return them: an integer reply as it is, a
 * string ("1764000000.25", a score, one of TIME's digit strings) parsed whole with
 * strtod. -1 for anything else (another type, an empty string, trailing text): callers
 * of it expect values >= 0 and treat a negative one as a malformed reply. */
double broker_reply_number(const redisReply *e);

/* A clock reading as scripts and TIME return it, two elements pair[0] (seconds) and
 * pair[1] (microseconds), as Unix seconds: >= 0, or -1 when either is not a number >= 0
 * (broker_reply_number). */
double broker_reply_clock(redisReply *const *pair);

/* broker_reply_number, but an empty string (a script's "none") reads as 0. */
double broker_reply_number_or_zero(const redisReply *e);

#endif
