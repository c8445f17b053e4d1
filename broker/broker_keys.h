/*
 * broker_keys.h - the names of workerd's Redis keys, built from one configurable prefix,
 * and the validation of the names that go into them (prefix, queue names, worker ids,
 * task ids).
 *
 * Every key is "<prefix>:<kind>[:<part>...]" (docs/design.md "Redis keys"):
 *
 *   <prefix>:queue:<name>            list    pending messages (producers LPUSH, we RPOP)
 *   <prefix>:scheduled               zset    messages with an ETA, scored by due time
 *   <prefix>:worker:<wid>            hash    a live worker's heartbeat (with a TTL)
 *   <prefix>:workers                 hash    wid -> comma-separated queue names of every
 *                                            worker that may hold in-flight messages (a
 *                                            hash, not a set: recovery needs the queue
 *                                            list to find the landing lists)
 *   <prefix>:inflight:<wid>          hash    delivery tag -> "<queue>\n<raw message>"
 *   <prefix>:landing:<wid>:<queue>   list    where a blocking BLMOVE drops a message
 *   <prefix>:result:<id>             string  the result document (with a TTL); also the
 *                                            pub/sub channel its waiters listen on
 *   <prefix>:revoked:<id>            string  the id is revoked: "1", or "terminate" (kill it
 *                                            where it runs); TTL as results (broker_control.h)
 *   <prefix>:revoked                 zset    every revoked id, scored by its mark's expiry
 *   <prefix>:control                 stream  revocations as they happen, read by every worker
 *   <prefix>:unique:<sha1 hex>       string  the id of the message holding a unique
 *                                            key's lock (PX unique_for; broker_unique.h)
 *   <prefix>:canvas:<id>             hash    a group or chord waiting for its members
 *   <prefix>:canvas:<id>:done        hash    member index -> its outcome (HSETNX)
 *   <prefix>:canvas:<id>:sent        string  the follow-ups of id were enqueued
 *   <prefix>:canvas:<id>:fired       string  the group or chord id fired (all four: TTL
 *                                            as results; only ack.lua builds them,
 *                                            broker_canvas.h)
 *   <prefix>:crawl:<id>              hash    an http.scrape crawl's {max, enqueued, done}
 *   <prefix>:crawl:<id>:seen         set     its URLs enqueued; :done, its pages done
 *                                            (TTL; broker_crawl.h)
 *   <prefix>:beat                    hash    beat entry name -> the tick (unix seconds) it
 *                                            last fired or skipped (broker_beat.h)
 *   <prefix>:dead                    list    dead letters
 *   <prefix>:paused                  set     names of the paused queues (as workerd names
 *                                            them: "=<name>" for a Celery queue); no
 *                                            worker takes from them (fetch.lua)
 *   <prefix>:events                  stream  task events for monitors
 *   <prefix>:seq                     string  the delivery-tag counter (INCRBY)
 *   <prefix>:stats:minute:<minute>   hash    tasks processed / failed by every worker in
 *                                            that minute (unix time / 60), with a TTL
 *   <prefix>:stats:total             hash    the same since the keys were made
 *
 * Celery's own names, outside the prefix (docs/design.md "Celery interop"):
 *
 *   <name>                           list    a Celery queue as kombu's Redis transport
 *   <name>\x06\x16<N>                 list    keeps it; N = 3, 6, 9: its priority lists
 *   celery-task-meta-<id>            string  a result as Celery's Redis backend stores it
 *   celery-taskset-meta-<gid>.j      zset    a chord's finished members, [1, id, state,
 *                                            result] by group_index; .s its size (the
 *                                            producer's), .t added by replaced tasks
 *
 * Inside workerd a Celery queue is named "=<name>" (BROKER_CELERY_MARK): the worker's
 * queue list, the in-flight values, the scheduled set and the Lua scripts carry that
 * form, and the scripts map it to the list <name> as broker_key_queue does. A name a user
 * gives may not start with '=' (broker_check_queue_name).
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
 * Values with a structure of their own are written and read here too: the comma list of
 * a worker's queues (the <prefix>:workers hash) and the "<queue>\n<raw>" in-flight value.
 * The other commands and their replies are in broker_cmds.h.
 *
 * Everything here is pure computation: no I/O, never yields, callable from anywhere
 * (hub callbacks included), thread-safe on distinct buffers.
 */
#ifndef WORKERD_BROKER_KEYS_H
#define WORKERD_BROKER_KEYS_H

#include <stdbool.h>
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
/* The mark that starts a Celery queue's name inside workerd ("=celery"). */
#define BROKER_CELERY_MARK '='
/* True for a Celery queue's inner name. */
bool broker_queue_is_celery(const char *queue);
/* A queue as workerd names it inside: a user's name (broker_check_queue_name), or '='
 * and one. */
const char *broker_check_queue_ref(const char *queue);
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
/* queue: a user's name, or a Celery queue's inner name ("=celery": the list "celery"). */
int broker_key_queue(const broker_keys *k, const char *queue, char buf[BROKER_KEY_MAX]);
/* The list kombu's Redis transport keeps a Celery queue's messages of that priority in
 * (queue with or without the mark): "<name>" for 0..2, "<name>\x06\x16<step>" for the
 * steps 3, 6, 9 (the highest not above priority). */
int broker_key_celery_queue(const char *queue, int priority, char buf[BROKER_KEY_MAX]);
/* "celery-task-meta-<id>": Celery's result key, also its pub/sub channel. */
int broker_key_celery_result(const char *id, char buf[BROKER_KEY_MAX]);
/* "celery-taskset-meta-<gid>": a Celery group's key; its chord counts members in the
 * sorted set "<key>.j" (score: group_index), the size is "<key>.s" (set by the producer),
 * "<key>.t" what replaced tasks added (celery/backends/redis.py on_chord_part_return). */
int broker_key_celery_group(const char *gid, char buf[BROKER_KEY_MAX]);
int broker_key_scheduled(const broker_keys *k, char buf[BROKER_KEY_MAX]);
int broker_key_worker(const broker_keys *k, const char *wid, char buf[BROKER_KEY_MAX]);
int broker_key_workers(const broker_keys *k, char buf[BROKER_KEY_MAX]);
int broker_key_inflight(const broker_keys *k, const char *wid, char buf[BROKER_KEY_MAX]);
int broker_key_landing(const broker_keys *k, const char *wid, const char *queue,
                       char buf[BROKER_KEY_MAX]);
int broker_key_result(const broker_keys *k, const char *id, char buf[BROKER_KEY_MAX]);
int broker_key_revoked(const broker_keys *k, const char *id, char buf[BROKER_KEY_MAX]);
int broker_key_revoked_set(const broker_keys *k, char buf[BROKER_KEY_MAX]);
int broker_key_control(const broker_keys *k, char buf[BROKER_KEY_MAX]);
/* hash: the 40 hex digits of broker_unique_hash. */
int broker_key_unique(const broker_keys *k, const char *hash, char buf[BROKER_KEY_MAX]);
int broker_key_dead(const broker_keys *k, char buf[BROKER_KEY_MAX]);
int broker_key_paused(const broker_keys *k, char buf[BROKER_KEY_MAX]);
int broker_key_beat(const broker_keys *k, char buf[BROKER_KEY_MAX]);
int broker_key_events(const broker_keys *k, char buf[BROKER_KEY_MAX]);
int broker_key_seq(const broker_keys *k, char buf[BROKER_KEY_MAX]);
/* The per-minute and the total task counters (broker_stats.h). */
int broker_key_stats_minute(const broker_keys *k, long long minute, char buf[BROKER_KEY_MAX]);
int broker_key_stats_total(const broker_keys *k, char buf[BROKER_KEY_MAX]);

/* The SCAN MATCH pattern of every queue key of k's prefix, "<prefix>:queue:*", with the
 * glob characters of the prefix (* ? [ ] \) escaped: prefix "a*" matches its own keys
 * only. Writes buf (BROKER_KEY_MAX bytes) and returns its length. */
int broker_key_queue_pattern(const broker_keys *k, char buf[BROKER_KEY_MAX]);

/* The queue name in key (a NUL-terminated string of len bytes, as a reply's str and len)
 * when it is a queue key of k's prefix, "<prefix>:queue:<name>": a pointer into key. NULL
 * when it is not: another prefix or kind, a NUL inside, or a name broker_check_queue_name
 * refuses (a key broker_key_queue would never make, so no queue of workerd's). */
const char *broker_key_queue_name(const broker_keys *k, const char *key, size_t len);

/* ---- Values -------------------------------------------------------------------------- */

/* The <prefix>:workers value of a worker consuming queues[0..n): the names joined with
 * ','. A new string (free it), or NULL when out of memory. */
char *broker_queue_list_join(const char *const *queues, size_t n);

/* The names of such a list one by one, as strtok_r does: *cursor starts at a writable copy
 * of the list; each call NUL-terminates the next name in place and returns it, NULL at the
 * end. Empty items are skipped. */
char *broker_queue_list_next(char **cursor);

/* Split an in-flight value, "<queue>\n<raw message>", at its first newline: *queue and
 * *raw point into value. Returns false for a value without a newline (only a hand edit
 * makes one): then the queue is empty and raw is the whole value. */
bool broker_inflight_split(const char *value, size_t len, const char **queue, size_t *qlen,
                           const char **raw, size_t *rawlen);

#endif
