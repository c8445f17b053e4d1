/*
 * broker_beat.h - periodic tasks in Redis (docs/design.md "Periodic tasks"): the mark of
 * the last tick each beat entry fired, <prefix>:beat (entry name -> unix seconds), and the
 * one script that fires a tick (beat_fire.lua): it pushes the run's message only when the
 * tick is due by the server's clock and later than the mark, and moves the mark, in one
 * atomic step. So any number of workers may fire the same entry at the same time: each
 * tick is enqueued once.
 *
 * broker_beat_fire MAY YIELD and runs on a greenlet of the connection's hub. The command
 * builders and reply parsers are pure (broker_cmds.h's conventions), for the worker and
 * for workerctl.
 */
#ifndef WORKERD_BROKER_BEAT_H
#define WORKERD_BROKER_BEAT_H

#include "broker_batch.h"
#include "broker_conn.h"
#include "broker_keys.h"

#include <stdint.h>

typedef enum broker_beat_status {
    BROKER_BEAT_NOT_DUE = -1, /* the tick is later than the server's clock: nothing done */
    BROKER_BEAT_DONE = 0,     /* this tick, or a later one, was fired already */
    BROKER_BEAT_FIRED = 1,    /* pushed now (or marked, for an empty queue) */
} broker_beat_status;

/* Fire tick of entry name: LPUSH msg[0..len) onto queue and set the mark, if the tick is due
 * and later than the mark; with queue "" only set the mark (a tick that is dropped).
 * Returns 0 with *status and *redis_now (the server's clock) set, a broker_conn error, or
 * -EPROTO. Safe to repeat after an unknown outcome: a tick fired is not fired again. */
int broker_beat_fire(broker_conn *conn, const char *prefix, const char *name, int64_t tick,
                     const char *queue, const char *msg, size_t len, broker_beat_status *status,
                     double *redis_now, double timeout);

/* Read the marks and the server's clock: HGETALL <prefix>:beat, then TIME. Two commands. */
int broker_cmd_beat_state(broker_batch *b, const broker_keys *k);

/* From the reply to the HGETALL: the mark of entry name into *tick. 1 found, 0 none, or
 * -EPROTO for any other reply. */
int broker_reply_beat_mark(const redisReply *all, const char *name, int64_t *tick);

/* From the reply to TIME: the server's clock, unix seconds. 0, or -EPROTO. */
int broker_reply_time(const redisReply *r, double *now);

#endif
