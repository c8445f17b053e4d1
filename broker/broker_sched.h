/*
 * broker_sched.h - the scheduled set, <prefix>:scheduled (docs/design.md "Delivery"):
 * messages that wait for their due time (a countdown, an eta, a retry's backoff), scored
 * by that time on the Redis server's clock.
 *
 * Messages enter the set only through an ack that keeps them (broker_ack with an entry's
 * `keep`, ack.lua), in the same atomic step that takes them out of a worker's in-flight
 * hash, and leave it only through broker_sched_move (move_due.lua), in the same atomic
 * step that pushes them onto their queues. So a scheduled message is always in exactly
 * one place, survives every worker being killed (nothing about it lives in a worker), and
 * is moved once however many workers move at the same time.
 *
 * Every call MAY YIELD and runs on a greenlet of the connection's hub.
 */
#ifndef WORKERD_BROKER_SCHED_H
#define WORKERD_BROKER_SCHED_H

#include "broker_conn.h"

#include <stddef.h>

/* What one move did. */
typedef struct broker_sched_moved {
    size_t moved;     /* messages pushed onto their queues */
    size_t dead;      /* malformed members dead-lettered (only a hand edit makes one) */
    double next_due;  /* the earliest due time left in the set; 0 when it is empty */
    double redis_now; /* the server's clock when the move ran (unix seconds) */
} broker_sched_moved;

/* Move up to n due messages (score <= the server's TIME) to the back of their queues,
 * earliest first, and read the earliest due time left. prefix is the key prefix, wid the
 * caller's worker id (named in dead letters). Returns 0 with *out filled, or a
 * broker_conn error, or -EPROTO for an unexpected reply. Safe to repeat after an unknown
 * outcome: what was moved is gone from the set. */
int broker_sched_move(broker_conn *conn, const char *prefix, const char *wid, size_t n,
                      broker_sched_moved *out, double timeout);

#endif
