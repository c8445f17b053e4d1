/*
 * broker_worker.h - one worker's side of the delivery protocol (docs/design.md "Delivery"):
 * fetch a batch into the in-flight hash, wait for work with a blocking BLMOVE, ack with
 * results, heartbeat, recover dead workers, put messages back, dead-letter.
 *
 * Each call is one round trip (a script or a pipeline), whatever the batch size. Each is
 * safe to repeat after a link error: fetch moves nothing twice (a lost reply leaves the
 * messages in this worker's in-flight hash, where recovery or the next start finds them),
 * ack only touches entries this worker still owns, requeue and recover skip what is gone.
 *
 * All calls MAY YIELD and run on greenlets of one hub. The broker never knows what a task
 * means: messages are opaque bytes here.
 */
#ifndef WORKERD_BROKER_WORKER_H
#define WORKERD_BROKER_WORKER_H

#include "broker_canvas.h"
#include "broker_batch.h"
#include "broker_conn.h"
#include "broker_celery.h"
#include "broker_keys.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct broker_worker_cfg {
    const char *prefix;
    const char *wid;           /* this worker's id: host:pid:random */
    const char *const *queues; /* strict priority order */
    size_t nqueues;
    long result_expires; /* seconds a result is kept; 0: forever */
    int heartbeat_ttl;   /* seconds; a worker silent this long is dead */
    int max_redeliveries;
} broker_worker_cfg;

typedef struct broker_worker broker_worker;

/* One message taken from a queue. All strings are owned by the delivery array. */
typedef struct broker_delivery {
    char *tag;   /* delivery tag: the in-flight hash field */
    char *queue; /* queue name */
    char *raw;   /* the message bytes (NUL-terminated for convenience) */
    size_t len;
} broker_delivery;

/* What to store when a message is done. */
typedef struct broker_ack_entry {
    const char *tag;  /* the delivery tag; NULL: store the result only (no ack) */
    const char *id;   /* task id: where the result goes; NULL: no result stored */
    const char *json; /* the result document */
    bool if_owned;    /* with a tag: no ack; store the result only while the tag is still
                         this worker's (a STARTED result sent late must never replace the
                         final result of a worker that took the message over) */
    const char *keep; /* with a tag: instead of dropping the message, keep this text of it
                         in the scheduled set until `due` (ack.lua's "!" entries): a
                         countdown or eta not reached yet, a retry */
    size_t keep_len;
    const char *queue;       /* with keep: the queue it goes back to when due */
    double due;              /* with keep: unix seconds, the Redis server's clock */
    const char *unlock_hash; /* with a tag, an ack (not keep, not if_owned): also release
                                the unique lock <prefix>:unique:<unlock_hash> if it still
                                holds unlock_id (ack.lua's "~" entries; broker_unique.h) */
    const char *unlock_id;
    const broker_canvas *canvas; /* with a tag, an ack (not keep, not if_owned): canvas
                                    operations done in the same step, only if the entry
                                    was still this worker's (ack.lua's "^" entries);
                                    NULL or empty: none. Canvas results and state live in
                                    the broker's Redis, whatever the result backend */
    bool celery; /* the result is Celery's: stored at celery-task-meta-<id> (never over a
                    stored SUCCESS) and published there (broker_celery.h) */
    /* with a tag, a plain ack (not keep, not if_owned, no unlock): also do follow[i] in
     * the same atomic step (ack.lua's "+" entries): the messages a Celery task's
     * callbacks, errbacks and chain publish, the failures of its chain's later tasks */
    const broker_celery_follow *follow;
    size_t nfollow;
} broker_ack_entry;

/* cfg is copied. main carries fetch/ack/heartbeat; results may be the same connection or
 * a second one when the result backend is another Redis (acks then store the result
 * there first and ack on the broker after). Neither is owned. */
broker_worker *broker_worker_new(const broker_worker_cfg *cfg, broker_conn *main,
                                 broker_conn *results);
void broker_worker_free(broker_worker *w);

/* Take up to n messages (strict queue order) into the in-flight hash. *out is a new
 * array of *count deliveries (free with broker_deliveries_free), possibly empty. */
int broker_fetch(broker_worker *w, size_t n, broker_delivery **out, size_t *count, double timeout);
void broker_deliveries_free(broker_delivery *d, size_t n);

/* The id of the newest entry of the control stream (broker_control.h) as the last fetch
 * that took messages read it, right after taking them ("0-0" before any): a worker that
 * has read the stream up to there knows of every revocation written before those
 * messages were taken. Valid until the next fetch. Does not yield. */
const char *broker_worker_control_tail(const broker_worker *w);

/* Block on conn (a connection of its own: BLMOVE holds it) up to block_seconds for a
 * message on queue, which lands in this worker's landing list for it (in flight as far as
 * recovery is concerned). Returns 1 when one landed, 0 when none came, 2 when the queue
 * is paused (<prefix>:paused, asked first; nothing was moved: the caller waits and asks
 * again), or an error. A pause that comes while it blocks does not stop the BLMOVE: the
 * next fetch puts what landed back (fetch.lua). */
int broker_wait_for_work(broker_worker *w, broker_conn *conn, const char *queue,
                         double block_seconds);

/* Store results and ack, n entries in one round trip, in order. owned[i] (if owned is not
 * NULL) is set to true when entry i was still this worker's (acked and stored), false when
 * it had been recovered by another worker meanwhile (nothing written). An entry with keep
 * moves its message from the in-flight hash to the scheduled set (or, already due by the
 * server's clock, to the back of its queue) in the same atomic step as the ack. Entries with tag
 * NULL are stored unconditionally; entries with if_owned are stored (not acked) only while
 * their tag is still in flight here. With a separate result backend (another Redis) no
 * script can check both at once: there if_owned entries are stored unconditionally, as
 * before the ack; the late-STARTED race is then still open.
 *
 * Returns 0, a link error or -ETIMEDOUT (broker_conn's: retry once the link is back),
 * or, when Redis answered with an error (its words in broker_worker_refusal):
 *   -EAGAIN     Redis refuses writes of any kind for now (broker_refusal_state names the
 *               state: out of memory under noeviction, a read-only replica, ...): the
 *               same batch will do once that passes; nothing was written;
 *   -EREMOTEIO  Redis refused this batch itself (an argument over proto-max-bulk-len, a
 *               script error): sending the same again will not help; some entries before
 *               the one that failed may have been written, as a script stops where it
 *               fails. */
int broker_ack(broker_worker *w, const broker_ack_entry *acks, size_t n, bool *owned,
               double timeout);

/* The last error reply broker_ack met, in Redis's words (the first line, without the
 * "script: <sha>, on @user_script:N." that Redis adds inside a script; at most
 * BROKER_REFUSAL_MAX - 1 bytes); "" before any. Valid until the next broker_ack. */
#define BROKER_REFUSAL_MAX 256
const char *broker_worker_refusal(const broker_worker *w);

/* The state of a Redis that refuses every write for a while, named from its error reply
 * (text, as broker_worker_refusal gives it): "oom" (maxmemory reached with noeviction),
 * "readonly" (a replica), "misconf" (snapshots failing, stop-writes-on-bgsave-error),
 * "busy" (a script or module running too long), "loading", "noreplicas", "masterdown",
 * "noperm", "noauth", "clusterdown", "tryagain"; NULL when the error is about the
 * command itself. Pure; callable anywhere. */
const char *broker_refusal_state(const char *text);

/* Refresh this worker's heartbeat (<prefix>:worker:<wid>, a hash of info_fields pairs,
 * with the TTL) and its entry in <prefix>:workers. info is name, value, name, value...
 * extra (NULL: none) holds more commands sent in the same round trip, after those (the
 * task counters, broker_stats.h). Returns 0, a link error, or -EPROTO when Redis refused
 * the heartbeat itself. What became of the extra commands goes to *extra_err (may be NULL
 * when extra is): 0 when Redis took them all, -EPROTO when it refused one (a key holding
 * another type), b->err when the batch had failed to build (nothing of it sent), or the
 * call's own error; a refused extra command never fails the heartbeat. */
int broker_heartbeat(broker_worker *w, const char *const *info, size_t ninfo,
                     const broker_batch *extra, int *extra_err, double timeout);

/* Find workers in <prefix>:workers whose heartbeat expired and give their messages back
 * (recover.lua). Adds what it did to *requeued and *dead. */
int broker_recover(broker_worker *w, size_t *requeued, size_t *dead, double timeout);

/* Put this worker's own messages back to their queues without counting a redelivery:
 * the given tags (ntags > 0) or every in-flight entry (tags NULL), and the landing lists.
 * *moved receives the count. */
int broker_requeue(broker_worker *w, const char *const *tags, size_t ntags, size_t *moved,
                   double timeout);

/* The delivery tags in this worker's in-flight hash (HKEYS): a new array of *n
 * NUL-terminated strings, freed with broker_tags_free. */
int broker_inflight_tags(broker_worker *w, char ***tags, size_t *n, double timeout);
void broker_tags_free(char **tags, size_t n);

/* LPUSH a dead-letter entry (broker_dead_encode's document) onto <prefix>:dead. */
int broker_dead_letter(broker_worker *w, const char *json, double timeout);

/* The depth (LLEN) of each of this worker's queues, one round trip: depths[i] for
 * cfg->queues[i], -1 where unknown (the reply was not a length, or the call failed: then
 * its error is returned). Waits for the link within timeout: a caller that must not wait
 * (a metrics scrape while Redis is away) checks broker_conn_is_up first. */
int broker_queue_depths(broker_worker *w, long long *depths, double timeout);

/* Remove this worker's heartbeat and registration, if its in-flight hash is empty
 * (otherwise leave it for recovery). */
int broker_unregister(broker_worker *w, double timeout);

#endif
