/*
 * broker_keys.h - the names of workerd's Redis keys, built from one configurable prefix,
 * and the validation of the names that go into them (prefix, queue names, worker ids,
 * task ids).
 *
 * Every key is "<prefix>:<kind>[:<part>...]" (DESIGN.md "Redis keys"):
 *
 *   <prefix>:queue:<name>            list    pending messages (producers LPUSH, we RPOP)
 *   <prefix>:scheduled               zset    messages with an ETA, scored by due time
 *   <prefix>:worker:<wid>            hash    a live worker's heartbeat (with a TTL)
 *   <prefix>:workers                 hash    wid -> comma-separated queue names of every
 *                                            worker that may hold in-flight messages (a
 *                                            hash, not DESIGN's set: recovery needs the
 *                                            queue list to find the landing lists)
 *   <prefix>:inflight:<wid>          hash    delivery tag -> "<queue>\n<raw message>"
 *   <prefix>:landing:<wid>:<queue>   list    where a blocking BLMOVE drops a message
 *   <prefix>:result:<id>             string  the result document (with a TTL)
 *   <prefix>:dead                    list    dead letters
 *   <prefix>:events                  stream  task events for monitors
 *   <prefix>:seq                     string  the delivery-tag counter (INCRBY)
 *
 * The Lua scripts (broker_scripts.h) build the same names from the prefix inside Redis, so
 * the two must agree; this file is the reference. Because scripts touch keys they were not
 * given in KEYS, workerd is not Redis Cluster compatible (it targets one Redis, with
 * Sentinel for failover).
 *
 * Names are validated so that a key can never be ambiguous or break the formats above:
 * queue names may not contain ',' (the workers hash separates them with commas) and no
 * name may contain whitespace or control characters (the in-flight value separates the
 * queue from the message with '\n'; log lines stay one line).
 *
 * Everything here is pure computation: no I/O, never yields, callable from anywhere
 * (hub callbacks included), thread-safe on distinct buffers.
 */
#ifndef WORKERD_BROKER_KEYS_H
#define WORKERD_BROKER_KEYS_H

#include <stddef.h>

#define BROKER_PREFIX_DEFAULT "workerd"
#define BROKER_PREFIX_MAX 64      /* bytes in the prefix */
#define BROKER_QUEUE_NAME_MAX 128 /* bytes in a queue name */
#define BROKER_WORKER_ID_MAX 128  /* bytes in a worker id */
#define BROKER_ID_MAX 255         /* bytes in a task id (also broker_msg.h's hard cap) */

/* Large enough for the longest key any broker_key_* function can produce. */
#define BROKER_KEY_MAX                                                                             \
    (BROKER_PREFIX_MAX + BROKER_WORKER_ID_MAX + BROKER_QUEUE_NAME_MAX + BROKER_ID_MAX + 32)

/* A validated prefix. Plain data: copy it freely. */
typedef struct broker_keys {
    char prefix[BROKER_PREFIX_MAX + 1];
} broker_keys;

/* Validation. Each returns NULL when the name is acceptable, otherwise a static sentence
 * saying what is wrong ("queue name contains whitespace or a control character"). */
const char *broker_check_prefix(const char *prefix);
const char *broker_check_queue_name(const char *name);
const char *broker_check_worker_id(const char *wid);
/* Task ids: non-empty, at most BROKER_ID_MAX bytes; any other byte is allowed (Redis keys
 * are binary-safe) except NUL, which a C string cannot hold. */
const char *broker_check_task_id(const char *id);

/* Sets k from prefix (NULL: BROKER_PREFIX_DEFAULT). Returns 0, or -EINVAL when
 * broker_check_prefix rejects it (k is then left unchanged). */
int broker_keys_init(broker_keys *k, const char *prefix);

/* Key builders. Each writes the NUL-terminated key into buf (BROKER_KEY_MAX bytes) and
 * returns its length, or -EINVAL when a name part fails its check above (buf is then
 * an empty string). */
int broker_key_queue(const broker_keys *k, const char *queue, char buf[BROKER_KEY_MAX]);
int broker_key_scheduled(const broker_keys *k, char buf[BROKER_KEY_MAX]);
int broker_key_worker(const broker_keys *k, const char *wid, char buf[BROKER_KEY_MAX]);
int broker_key_workers(const broker_keys *k, char buf[BROKER_KEY_MAX]);
int broker_key_inflight(const broker_keys *k, const char *wid, char buf[BROKER_KEY_MAX]);
int broker_key_landing(const broker_keys *k, const char *wid, const char *queue,
                       char buf[BROKER_KEY_MAX]);
int broker_key_result(const broker_keys *k, const char *id, char buf[BROKER_KEY_MAX]);
int broker_key_dead(const broker_keys *k, char buf[BROKER_KEY_MAX]);
int broker_key_events(const broker_keys *k, char buf[BROKER_KEY_MAX]);
int broker_key_seq(const broker_keys *k, char buf[BROKER_KEY_MAX]);

#endif
