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
 *   - a link error or a time-out is retried (after reconnecting) until the deadline; an
 *     error from Redis itself (it refused the command) is retried max_refusals times,
 *     each retry logged and half a second apart, since retrying rarely helps then;
 *   - a cancelled greenlet (-ECANCELED) or a closed connection (-ESHUTDOWN) ends it at
 *     once.
 *
 * Runs on greenlets of the worker's hub; wd_batch_send MAY YIELD, wd_batch_gather never
 * does. Not thread-safe.
 */
#ifndef WORKERD_WD_BATCH_H
#define WORKERD_WD_BATCH_H

#include "broker_conn.h"
#include "green_sync.h"

#include <stdbool.h>
#include <stddef.h>

/* Take more items from q without waiting, after the n already in items[], until there are
 * max in all or q is empty. A NULL item marks the end of the stream: it is taken but not
 * stored, *ended is set (ended may be NULL for a queue that never carries one) and nothing
 * after it is taken. Returns the number of items now in items[]. Never yields. */
size_t wd_batch_gather(green_queue *q, void **items, size_t n, size_t max, bool *ended);

/* One attempt at the round trip, with at most timeout seconds for it: 0 when Redis took
 * the batch, or a negative errno (broker_conn's). Called on the caller's greenlet. */
typedef int (*wd_batch_send_fn)(void *arg, double timeout);

struct wd_batch_policy {
    broker_conn *conn;        /* the link the round trip uses (borrowed) */
    double call_timeout;      /* the most one attempt may take, in seconds */
    const double *give_up_at; /* unix time after which link errors are no longer retried;
                                 0 for no deadline (yet). Read before every attempt, so
                                 that a shutdown can set it meanwhile. */
    int max_refusals;         /* how often to retry an error from Redis itself */
    const char *what;         /* for the log line of such a retry: "storing 12 results" */
};

/* Call send(arg, timeout) until it returns 0, as the essay above says. Returns 0, or the
 * error it gave up on. MAY YIELD. */
int wd_batch_send(const struct wd_batch_policy *p, wd_batch_send_fn send, void *arg);

#endif
