/*
 * broker_rate.h - rate limits shared by every worker of one Redis (docs/design.md "Rate
 * limits"): the parser of a rate ("100/s", "10/m", "0.5/h"), the hash of per-task limits
 * that workerd --rate-limit seeds and workerctl rate-limit changes, and the check
 * (rate_limit.lua, GCRA) that either gives a message its turn or moves it, in the same
 * atomic step, from the worker's in-flight hash to the scheduled set until its turn.
 *
 *   <prefix>:rate_limits        hash, task -> rate as written ("20/s")
 *   <prefix>:rate:task:<task>   hash {tat, tail}, the GCRA state of a task (with a TTL)
 *   <prefix>:rate:host:<host>   the same for an HTTP destination host (--http-host-rate)
 *   <prefix>:slots:host:<host>  sorted set, holder -> end of its lease (ms, server clock):
 *                               the slots of a host under --http-host-concurrency
 *
 * The slots (host_slot.lua) are a counting semaphore per destination host: at most `limit`
 * holders at once over every worker; a holder gives its slot back when its request ends,
 * and one that never does (SIGKILLed mid-request) loses it when its lease runs out.
 *
 * broker_rate_parse, broker_rate_check_name and the command builders are pure (no I/O,
 * never yield, any stack, thread-safe). broker_rate_check MAY YIELD and runs on a
 * greenlet of the connection's hub.
 */
#ifndef WORKERD_BROKER_RATE_H
#define WORKERD_BROKER_RATE_H

#include "broker_batch.h"
#include "broker_conn.h"
#include "broker_keys.h"

#include <stdbool.h>
#include <stddef.h>

#include <hiredis/hiredis.h>

#define BROKER_RATE_MAX_PER_SECOND 1000000.0     /* faster is a mistake (or no limit at all) */
#define BROKER_RATE_MIN_PER_SECOND (1.0 / 86400) /* slower than one a day: a mistake */
#define BROKER_RATE_NAME_MAX 256                 /* a task or host name in a key */

/* Parse a rate, "<number>/<unit>": the number in plain decimal digits with an optional
 * fraction ("20", "0.5", ".5"; no sign, exponent or blank), the unit s, m or h. On success
 * returns 0 with the rate in starts per second in *per_second (may be NULL); else -1 with a
 * one-line reason in why ("'20/d' is not a rate: the unit must be s, m or h"). The same
 * form rate_limit.lua reads: a value that passes here means the same there. */
int broker_rate_parse(const char *text, double *per_second, char *why, size_t whylen);

/* NULL when name may carry a rate limit (a task or a host name: 1..BROKER_RATE_NAME_MAX
 * bytes, no blank, control character, ',' or '='), otherwise a static sentence. */
const char *broker_rate_check_name(const char *name);

/* <prefix>:rate_limits into buf; its length. */
int broker_key_rate_limits(const broker_keys *k, char buf[BROKER_KEY_MAX]);

/* Builders (broker_cmds.h's conventions): HSET <prefix>:rate_limits task rate; HDEL of a
 * task; HGETALL of the hash. Names and rates are checked (-EINVAL fails the batch). */
int broker_cmd_rate_set(broker_batch *b, const broker_keys *k, const char *task, const char *rate);
int broker_cmd_rate_off(broker_batch *b, const broker_keys *k, const char *task);
int broker_cmd_rate_list(broker_batch *b, const broker_keys *k);

/* What a check found (rate_limit.lua's verdicts). */
typedef enum broker_rate_verdict {
    BROKER_RATE_GONE = -1, /* the tag is no longer this worker's: nothing was done */
    BROKER_RATE_KEPT = 0,  /* over the rate: moved to the scheduled set until `due` */
    BROKER_RATE_RUN = 1,   /* its turn: run it now */
    BROKER_RATE_WAIT = 2,  /* over the rate, a check without a message: wait until `due` */
    BROKER_RATE_NONE = 3,  /* no limit is set (or the stored one is not a rate) */
} broker_rate_verdict;

typedef struct broker_rate_result {
    broker_rate_verdict verdict;
    double due;       /* KEPT, WAIT: unix seconds on the server's clock */
    double redis_now; /* the server's TIME when the check ran */
} broker_rate_result;

/* One message (or, with tag NULL, one turn) that may only start within a rate.
 *   kind   "task" or "host"; name the task or the host
 *   rate   the rate to apply, or NULL: the task's entry in <prefix>:rate_limits, read in
 *          the script (so a change there applies at the next check)
 *   tag, queue, text[0..len)  the message in wid's in-flight hash, and its text as it
 *          will run again (broker_msg_encode_scheduled): over the rate, the script moves it
 *          to <prefix>:scheduled, due at its turn (ack.lua's member format). tag NULL:
 *          only check.
 * Returns 0 with *out filled, a broker_conn error (the outcome is then unknown: the
 * message may have been moved; the tag tells, see GONE), -EINVAL for a bad name, or -EPROTO
 * for an unexpected reply. */
int broker_rate_check(broker_conn *conn, const char *prefix, const char *wid, const char *kind,
                      const char *name, const char *rate, const char *tag, const char *queue,
                      const char *text, size_t len, broker_rate_result *out, double timeout);

/* What an acquire found. */
typedef struct broker_slot_result {
    bool taken;       /* the slot is the holder's */
    double wait;      /* not taken: seconds until the earliest lease runs out (>= 0) */
    double redis_now; /* the server's TIME */
} broker_slot_result;

/* Take one of the `limit` (>= 1) slots of host for holder (a name unique over all workers,
 * at most BROKER_RATE_NAME_MAX bytes) for `lease` seconds (> 0): the lease runs out then
 * unless released first. Taking a slot the holder already has renews its lease. Returns 0
 * with *out filled, a broker_conn error (the outcome is then unknown: release to be sure),
 * -EINVAL for a bad host, holder, limit or lease, or -EPROTO for an unexpected reply. MAY
 * YIELD. */
int broker_slot_acquire(broker_conn *conn, const char *prefix, const char *host, const char *holder,
                        long limit, double lease, broker_slot_result *out, double timeout);

/* Give holder's slot of host back (nothing when it holds none). Returns 0, a broker_conn
 * error, -EINVAL or -EPROTO as above. MAY YIELD. */
int broker_slot_release(broker_conn *conn, const char *prefix, const char *host, const char *holder,
                        double timeout);

#endif
