/*
 * wd_batch.h - sending queued items to Redis in batches, until Redis takes them or a
 * deadline passes: the loop the acker (wd_job.c) and the task event publisher
 * (wd_events.c) share.
 *
 * Both take whatever has queued up (wd_batch_gather), make one round trip of it (the
 * caller's send function: a script, a pipeline), and retry that round trip through Redis
 * outages (wd_batch_send):
 *
 *   - while the link is down, wait for it WD_SHUTDOWN_LINK_POLL (a second) at a time, so
 *     that a deadline set meanwhile (a shutdown) is seen within a second; past the
 *     deadline, do not wait;
 *   - give each attempt the policy's call time-out, cut to what is left before the
 *     deadline once there is one, but never less than WD_SHUTDOWN_LAST_CALL: a Redis that
 *     is up always gets one real try;
 *   - a link error or a time-out is retried (after reconnecting) until the deadline;
 *   - Redis refusing writes for now (-EAGAIN: out of memory under noeviction, a read-only
 *     replica, ...; broker_worker.h) is retried on the schedule of a reconnect (0.1 s
 *     doubling to 5 s, +-20 % jitter: BROKER_CONN_BACKOFF_*) until the deadline: never
 *     at once, so a refusing Redis does not turn the worker into a tight loop;
 *   - Redis refusing the batch itself (-EREMOTEIO) is not retried: the same bytes would
 *     be refused again. Neither is a batch of WD_BATCH_BIG bytes or more after which the
 *     link was cut WD_BATCH_CUTS times in a row (-EMSGSIZE): Redis closes the connection
 *     of a client that sends an argument over proto-max-bulk-len or a command over
 *     client-query-buffer-limit, and neither can be set below 1 MiB, so a smaller batch
 *     never does that, and a larger one that keeps losing the link on a Redis that
 *     answers every reconnect's PING is most likely why. The caller decides what to do
 *     (wd_batch_send_entries splits the batch);
 *   - any other error (out of memory here) is retried max_refusals times, each retry
 *     logged and half a second apart;
 *   - a cancelled greenlet (-ECANCELED) or a closed connection (-ESHUTDOWN) ends it at
 *     once.
 *
 * wd_batch_send_entries is for batches whose entries Redis may refuse one by one (the
 * acker's results): it sends them in round trips of at most max_bytes, and when Redis
 * refuses one (-EREMOTEIO or -EMSGSIZE) it sends it again in halves, down to the single
 * entry that Redis will not take, which the caller makes smaller (its result replaced by a
 * short failure) or gives up. So one poison entry costs a few round trips and never holds
 * up the others; it is never retried for ever.
 *
 * Runs on greenlets of the worker's hub; wd_batch_send and wd_batch_send_entries MAY
 * YIELD, wd_batch_gather never does. Not thread-safe.
 */
#ifndef WORKERD_WD_BATCH_H
#define WORKERD_WD_BATCH_H

#include "broker_conn.h"
#include "green_sync.h"

#include <stdbool.h>
#include <stddef.h>

/* See the essay: the smallest batch whose lost links may be its own fault (Redis's
 * lowest proto-max-bulk-len and client-query-buffer-limit), and how many lost links in a
 * row make it so. */
#define WD_BATCH_BIG ((size_t)1 << 20)
#define WD_BATCH_CUTS 3

/* Take more items from q without waiting, after the n already in items[], until there are
 * max in all or q is empty. A NULL item marks the end of the stream: it is taken but not
 * stored, *ended is set (ended may be NULL for a queue that never carries one) and nothing
 * after it is taken. Returns the number of items now in items[]. Never yields. */
size_t wd_batch_gather(green_queue *q, void **items, size_t n, size_t max, bool *ended);

/* One attempt at the round trip, with at most timeout seconds for it: 0 when Redis took
 * the batch, or a negative errno: broker_conn's, or broker_ack's -EAGAIN and -EREMOTEIO
 * (broker_worker.h). Called on the caller's greenlet. */
typedef int (*wd_batch_send_fn)(void *arg, double timeout);

struct wd_batch_policy {
    broker_conn *conn;        /* the link the round trip uses (borrowed) */
    double call_timeout;      /* the most one attempt may take, in seconds */
    const double *give_up_at; /* unix time after which link errors are no longer retried;
                                 0 for no deadline (yet). Read before every attempt, so
                                 that a shutdown can set it meanwhile. */
    int max_refusals;         /* how often to retry any other error (see the essay) */
    const char *what;         /* for the log line of such a retry: "storing 12 results" */
    size_t bytes;             /* what one attempt sends, for the lost-link rule; 0: small */
};

/* Call send(arg, timeout) until it returns 0, as the essay above says. Returns 0, or the
 * error it gave up on (-EMSGSIZE for a big batch that keeps losing the link). MAY
 * YIELD. */
int wd_batch_send(const struct wd_batch_policy *p, wd_batch_send_fn send, void *arg);

/* A batch of entries 0..n-1 that Redis may refuse one by one. */
struct wd_batch_entries {
    size_t n;
    size_t max_bytes; /* the most bytes one round trip sends; a larger entry goes alone */
    /* One round trip of entries [first, first + count), within timeout seconds, as a
     * wd_batch_send_fn: 0 once Redis took them (the caller notes that they are done). */
    int (*send)(void *arg, size_t first, size_t count, double timeout);
    size_t (*bytes)(void *arg, size_t i); /* what entry i sends */
    /* Redis would not take entry i on its own (err: -EREMOTEIO, or -EMSGSIZE for a lost
     * link): make it smaller and return true to send it again, or false to give it up
     * (it is then left unsent, and the others go on). */
    bool (*refused)(void *arg, size_t i, int err);
    void *arg;
};

/* Send every entry, in order, as the essay says, each round trip through wd_batch_send
 * with policy p (whose bytes it sets per round trip). Returns 0 once every entry was sent
 * or given up on, or the error that ended it (the deadline, a shutdown): the entries not
 * yet sent then stay unsent. MAY YIELD. */
int wd_batch_send_entries(const struct wd_batch_policy *p, const struct wd_batch_entries *e);

#endif
