/*
 * broker_scripts.h - the broker's Lua scripts (the broker/NAME.lua files, embedded at build time)
 * and their SHA1 digests, for EVALSHA.
 *
 * The caller runs a script with EVALSHA <sha1> 0 <argv...>; on a NOSCRIPT error (Redis
 * restarted, SCRIPT FLUSH, a failover) it retries the same call as EVAL <text> 0 <argv...>,
 * which also caches the script again. The digests are computed here, the same way Redis
 * computes them (SHA1 of the exact text, lower-case hex), so no SCRIPT LOAD round trip is
 * needed before the first EVALSHA. All scripts take 0 KEYS: they build key names from
 * the prefix in ARGV[1] (broker_keys.h documents the names), which is why workerd is not
 * Redis Cluster compatible.
 *
 * Arguments and replies (the .lua files say more):
 *
 *   FETCH    ARGV: prefix, wid, n, queue1, queue2, ...   (strict priority order)
 *            -> flat array tag, queue, raw, ... (at most n triples)
 *   ACK      ARGV: prefix, wid, {tag, result key, result JSON, ttl (0: store none),
 *                  channel ("": no PUBLISH)} per message
 *            -> array of integers, 1 acked / 0 no longer owned (nothing written)
 *   RECOVER  ARGV: prefix, dead wid, max_redeliveries, now, recoverer wid
 *                  [, max dead-letter message bytes, default 65536]
 *            -> {requeued, dead, alive}; alive = 1: heartbeat present, nothing touched
 *   REQUEUE  ARGV: prefix, wid, "all" | k, tag1..tagk, queue names whose landing lists
 *                  to drain as well
 *            -> integer: how many messages went back (no redelivery counted)
 *
 * broker_script_get is thread-safe (the digests are computed once, under pthread_once),
 * never yields and may be called from any stack.
 */
#ifndef WORKERD_BROKER_SCRIPTS_H
#define WORKERD_BROKER_SCRIPTS_H

#include <stddef.h>

typedef enum broker_script_id {
    BROKER_SCRIPT_FETCH,
    BROKER_SCRIPT_ACK,
    BROKER_SCRIPT_RECOVER,
    BROKER_SCRIPT_REQUEUE,
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

/* SHA1 of n bytes as 40 lower-case hex digits and a NUL. */
void broker_sha1_hex(const void *data, size_t n, char out[41]);

#endif
