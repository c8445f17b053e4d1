/*
 * broker_control.h - revocations as Redis holds them, and the broadcast that reaches every
 * worker at once (docs/design.md "Revocations"):
 *
 *   <prefix>:revoked:<id>  string + TTL  the mark, kept as long as results: "1" (the id is
 *                                        revoked: a message with it is not run when a
 *                                        worker takes it) or "terminate" (the same, and a
 *                                        task with it that is running is killed)
 *   <prefix>:revoked       zset          every revoked id, scored by when its mark
 *                                        expires (+inf: never): what a worker loads to
 *                                        know them all without scanning the keys
 *   <prefix>:control       stream        the revocations as they happen, MAXLEN ~ 10000:
 *                                        an entry `revoke <id> until <unix time>` or
 *                                        `terminate <id> until <unix time>` (until absent:
 *                                        for ever); every worker reads it as it grows
 *
 * A revocation writes the three in this order (broker_cmd_revoke): the mark, the zset,
 * then the stream entry. By hand, for --result-expires 86400:
 *
 *   until=$(( $(date +%s) + 86400 ))
 *   redis-cli SET workerd:revoked:job-7 terminate EX 86400      # or 1: revoke only
 *   redis-cli ZADD workerd:revoked GT $until job-7
 *   redis-cli XADD workerd:control MAXLEN '~' 10000 '*' terminate job-7 until $until
 *
 * How a worker uses them (wd_revoke.h): it holds every revoked id in memory, loaded from
 * the zset together with the stream's newest entry id (broker_cmd_revoked_snapshot, one
 * MULTI, so that every revocation is either in the zset it read or after the entry it
 * reads on from), then kept current from the stream. Each fetch also reads the stream's
 * newest entry id (broker_worker_control_tail): before it runs what it took, the worker
 * has read the stream up to there, so a message taken after a revocation was written is
 * never run. Checking is then a lookup in memory: no round trip, no work for Redis per
 * message.
 *
 * Builders (broker_cmd_*) append commands to a broker_batch for either client and follow
 * broker_cmds.h's conventions (keys and ids copied; -EINVAL for an id broker_keys.h
 * refuses). Parsers take a reply and never free it. Those are pure computation, callable
 * from any stack. The calls on a broker_conn MAY YIELD and follow broker_conn.h's rules.
 */
#ifndef WORKERD_BROKER_CONTROL_H
#define WORKERD_BROKER_CONTROL_H

#include "broker_batch.h"
#include "broker_conn.h"
#include "broker_keys.h"

#include <stdbool.h>
#include <stddef.h>

#include <hiredis/hiredis.h>

#define BROKER_MARK_REVOKE "1"
#define BROKER_MARK_TERMINATE "terminate"
#define BROKER_CONTROL_MAXLEN 10000 /* entries the control stream keeps, about */
#define BROKER_STREAM_ID_MAX 48     /* "<ms>-<seq>": two 64-bit numbers and a dash */

/* What a mark says about an id. */
typedef enum broker_mark {
    BROKER_MARK_NONE,      /* not revoked */
    BROKER_MARK_REVOKED,   /* revoked: do not run it */
    BROKER_MARK_TERMINATED /* revoked with --terminate: do not run it, kill it if running */
} broker_mark;

/* One revoked id as the zset or the stream says: until is the unix time its mark
 * expires, 0 for never. terminate: the stream entry asks to kill it where it runs (always
 * false from the zset). Must not yield. */
typedef void (*broker_revoked_fn)(void *arg, const char *id, double until, bool terminate);

/* ---- builders and parsers (both clients) ------------------------------------------------ */

/* Revoke id (terminate: and stop it where it runs) for ttl seconds from now (unix time;
 * ttl <= 0: for ever): SET the mark [EX ttl], ZADD <prefix>:revoked GT until id, XADD the
 * entry, and ZREMRANGEBYSCORE the ids whose marks have expired. Four commands. */
int broker_cmd_revoke(broker_batch *b, const broker_keys *k, const char *id, bool terminate,
                      long ttl, double now);

/* MGET of the marks of ids[0..n): one command; read element i of its reply with
 * broker_reply_mark. */
int broker_cmd_marks_get(broker_batch *b, const broker_keys *k, const char *const *ids, size_t n);

/* What one element of the MGET reply says: nil is none, "terminate" terminated, any other
 * value (by hand: anything at all) revoked. */
broker_mark broker_reply_mark(const redisReply *r);

/* XREVRANGE <prefix>:control + - COUNT 1: the newest entry. One command. */
int broker_cmd_control_tail(broker_batch *b, const broker_keys *k);

/* Its reply: the newest entry's id into last, or "0-0" when the stream is empty or
 * absent. 0, or -EPROTO for any other reply (last unchanged). */
int broker_reply_control_tail(const redisReply *r, char last[BROKER_STREAM_ID_MAX]);

/* Every id revoked now, and where the stream stands, in one MULTI: MULTI, XREVRANGE
 * <prefix>:control + - COUNT 1, ZRANGEBYSCORE <prefix>:revoked (now +inf WITHSCORES, EXEC.
 * Four commands; the reply to parse is EXEC's, the last. */
int broker_cmd_revoked_snapshot(broker_batch *b, const broker_keys *k, double now);

/* EXEC's reply to it: fn for each id, the newest entry's id into last. Returns the number
 * of ids, or -EPROTO (nothing called, last unchanged). */
int broker_reply_revoked_snapshot(const redisReply *exec, char last[BROKER_STREAM_ID_MAX],
                                  broker_revoked_fn fn, void *arg);

/* The entries after entry `after`: XRANGE <prefix>:control - + COUNT 1 (the oldest entry
 * still kept: when it is newer than `after`, entries after it may have been trimmed
 * unread), then XREAD COUNT count [BLOCK block_ms] STREAMS <prefix>:control after
 * (block_ms <= 0: no BLOCK; never BLOCK 0, which waits for ever). Two commands. */
int broker_cmd_control_read(broker_batch *b, const broker_keys *k, const char *after, long block_ms,
                            long count);

/* The replies to it (head: the XRANGE's, read: the XREAD's): fn for each entry that
 * revokes an id, in order (fields other than revoke, terminate and until are ignored:
 * room for other broadcasts), last moved on to the last entry. *gap is set when the
 * oldest entry kept is newer than last was: some entries may never be read (then nothing
 * is called). Nil (BLOCK ran out) is no entry. Returns the number of entries, or -EPROTO
 * for a reply of another shape (nothing called, last unchanged). */
int broker_reply_control_read(const redisReply *head, const redisReply *read,
                              char last[BROKER_STREAM_ID_MAX], bool *gap, broker_revoked_fn fn,
                              void *arg);

/* Compare two stream entry ids ("<ms>-<seq>", or "<ms>"): < 0, 0, > 0 as a is before, the
 * same as or after b. */
int broker_stream_id_cmp(const char *a, const char *b);

/* ---- on a green connection (MAY YIELD) ------------------------------------------------- */

/* The marks of ids[0..n) into marks[0..n): one MGET. The ids are copied before the first
 * yield. Returns 0, -ENOMEM, -EINVAL (an id no key can hold; nothing sent) or
 * broker_conn's errors (marks are then undefined). */
int broker_marks_get(broker_conn *c, const broker_keys *k, const char *const *ids, size_t n,
                     broker_mark *marks, double timeout);

/* broker_cmd_revoked_snapshot on c, parsed. Returns the number of ids or an error. */
int broker_revoked_snapshot(broker_conn *c, const broker_keys *k, double now,
                            char last[BROKER_STREAM_ID_MAX], broker_revoked_fn fn, void *arg,
                            double timeout);

/* broker_cmd_control_read on c (a connection of its own: XREAD BLOCK holds it), waiting
 * up to block seconds for an entry, parsed. Returns the number of entries (0 when none
 * came) or an error. */
int broker_control_read(broker_conn *c, const broker_keys *k, char last[BROKER_STREAM_ID_MAX],
                        double block, bool *gap, broker_revoked_fn fn, void *arg);

#endif
