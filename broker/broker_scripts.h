/*
 * broker_scripts.h - the broker's Lua scripts (the broker/NAME.lua files, embedded at build time)
 * and their SHA1 digests, for EVALSHA.
 *
 * The caller runs a script with EVALSHA <sha1> 0 <argv...>; on a NOSCRIPT error (Redis
 * restarted, SCRIPT FLUSH, a failover) it retries the same call as EVAL <text> 0 <argv...>,
 * which also caches the script again (broker_batch_script and broker_script_retry build
 * both for either client; broker_conn_eval does it all for the green one). The digests
 * are computed here, the same way Redis computes them (SHA1 of the exact text, lower-case
 * hex), so no SCRIPT LOAD round trip is needed before the first EVALSHA. All scripts take
 * 0 KEYS: they build key names from the prefix in ARGV[1] (broker_keys.h documents the
 * names), which is why workerd is not Redis Cluster compatible.
 *
 * Arguments and replies (the .lua files say more):
 *
 *   FETCH    ARGV: prefix, wid, n, queue1, queue2, ...   (strict priority order)
 *            -> flat array tag, queue, raw, ... (at most n triples)
 *   ACK      ARGV: prefix, wid, {tag, result key, result JSON, ttl (0: store none),
 *                  channel ("": no PUBLISH)} per message; a "!<tag>" adds due, queue,
 *                  text: the ack keeps the message in the scheduled set until due; a
 *                  "~<tag>" adds hash, id: the ack also releases the unique lock
 *                  <prefix>:unique:<hash> if id still holds it; a "^<tag>" adds hash
 *                  (or ""), id, canvas ttl, k and k values of canvas operations
 *                  (broker_canvas.h), done in the same step
 *            -> array of integers, 1 acked / 0 no longer owned (nothing written)
 *   RECOVER  ARGV: prefix, dead wid, max_redeliveries, now, recoverer wid
 *                  [, max dead-letter message bytes, default 65536]
 *            -> {requeued, dead, alive}; alive = 1: heartbeat present, nothing touched
 *   REQUEUE  ARGV: prefix, wid, "all" | k, tag1..tagk, queue names whose landing lists
 *                  to drain as well
 *            -> integer: how many messages went back (no redelivery counted)
 *   DEAD_REQUEUE  ARGV: prefix, dead-letter entry (its exact text), queue, message
 *            -> integer: 1 the entry was removed and the message pushed, 0 it was gone
 *   MOVE_DUE ARGV: prefix, n, wid
 *            -> {moved, dead, lowest score left ("" if none), TIME seconds, microseconds}
 *   UNIQUE_ACQUIRE  ARGV: prefix, wid, tag, queue, id, hash, ttl ms, fixed text or ""
 *            -> {"owner" | "duplicate" | "gone", holder id}
 *   RATE_LIMIT ARGV: prefix, wid, kind, name, rate ("": from PREFIX:rate_limits), tag
 *                  ("": check only), queue, text
 *            -> {verdict, due ("" unless waiting), TIME seconds, microseconds}
 *                  (broker_rate.h)
 *   HOST_SLOT  ARGV: prefix, "acquire" | "release", host, holder, limit, lease seconds
 *            -> {taken, wait ("" unless refused), TIME seconds, microseconds}
 *                  (broker_rate.h)
 *   CRAWL_STEP ARGV: prefix, crawl, max_pages, ttl, queue, self, final, {url, message}...
 *            -> {pushed, already seen, over max_pages, enqueued, done, max}
 *                  (broker_crawl.h)
 *   BEAT_FIRE ARGV: prefix, entry name, tick (unix seconds), queue ("": mark the tick
 *                  only), message
 *            -> {1 fired | 0 already fired (or a later tick) | -1 not due yet,
 *                TIME seconds, microseconds} (broker_beat.h)
 *
 * Everything here is thread-safe (the digests are computed once, under pthread_once),
 * never yields and may be called from any stack.
 */
#ifndef WORKERD_BROKER_SCRIPTS_H
#define WORKERD_BROKER_SCRIPTS_H

#include "broker_batch.h"

#include <stdbool.h>
#include <stddef.h>

#include <hiredis/hiredis.h>

typedef enum broker_script_id {
    BROKER_SCRIPT_FETCH,
    BROKER_SCRIPT_ACK,
    BROKER_SCRIPT_RECOVER,
    BROKER_SCRIPT_REQUEUE,
    BROKER_SCRIPT_DEAD_REQUEUE,
    BROKER_SCRIPT_MOVE_DUE,
    BROKER_SCRIPT_UNIQUE_ACQUIRE,
    BROKER_SCRIPT_RATE_LIMIT,
    BROKER_SCRIPT_HOST_SLOT,
    BROKER_SCRIPT_CRAWL_STEP,
    BROKER_SCRIPT_BEAT_FIRE,
    BROKER_SCRIPT_COUNT
} broker_script_id;

typedef struct broker_script {
    const char *name; /* "fetch", "ack", ... (the .lua file's name) */
    const char *text; /* the script, NUL-terminated */
    size_t len;       /* strlen(text) */
    char sha1[41];    /* lower-case hex SHA1 of text, as Redis's SCRIPT LOAD returns */
} broker_script;

/* The script id (static storage, never freed), or NULL when id is out of range. */
const broker_script *broker_script_get(broker_script_id id);

/* Start command "EVALSHA <sha1> 0" of script id in b; the script's ARGV follow, added with
 * broker_batch_arg and friends. Returns 0 or the batch's error. */
int broker_batch_script(broker_batch *b, broker_script_id id);

/* True when r is Redis's NOSCRIPT error (it does not know the script's digest). */
bool broker_reply_is_noscript(const redisReply *r);

/* When r, the reply to command i of b, is NOSCRIPT and command i is an EVALSHA of one of
 * these scripts, turn it into EVAL <text> 0 ... (which runs the script and caches it) and
 * return true: send command i again. False otherwise, b unchanged. */
bool broker_script_retry(broker_batch *b, size_t i, const redisReply *r);

/* SHA1 of n bytes as 40 lower-case hex digits and a NUL. */
void broker_sha1_hex(const void *data, size_t n, char out[41]);

#endif
