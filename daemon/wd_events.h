/*
 * wd_events.h - task events for monitors (Celery's -E): one entry per state change of a
 * task on the capped Redis stream <prefix>:events, XADD ... MAXLEN ~ BROKER_EVENTS_MAXLEN
 * (broker_events.h builds the command).
 *
 * Each entry has the fields
 *
 *     type     received | started | succeeded | failed | retried | revoked
 *     id       the task id
 *     task     the task name
 *     worker   the worker id (host:pid:random)
 *     time     unix time of the change on the Redis server's clock, seconds with microseconds
 *     queue    (received) the queue the message came from
 *     runtime  (succeeded, failed) seconds the task ran
 *     error    (failed, revoked) "Type: message"
 *
 * so `XREAD BLOCK 0 STREAMS workerd:events $` follows a fleet live, and XRANGE replays
 * the last ~10,000 changes.
 *
 * Emitting never waits: wd_events_emit copies the event into a bounded in-memory queue and
 * returns. A greenlet of its own takes whatever has queued up every WD_EVENTS_PERIOD
 * seconds and sends it as one pipeline of XADDs: one round trip per batch, not per event,
 * and never on a job's path. (Riding on the acker's round trip would save that round
 * trip, but would tie events to the ack's retry and ownership rules; a separate, lossy
 * channel keeps the delivery path exactly as it is.)
 *
 * Events are best effort, as in Celery: ordered per worker, but written independently of
 * the results (a "succeeded" event can be read before the result is stored, for a few
 * milliseconds). While Redis is away they wait in memory, up to WD_EVENTS_MAX_QUEUED;
 * beyond that, or when a batch keeps failing, they are dropped and counted
 * (wd_events_dropped, and the metric workerd_events_dropped_total).
 *
 * All of this runs on the worker's hub; nothing is thread-safe.
 */
#ifndef WORKERD_WD_EVENTS_H
#define WORKERD_WD_EVENTS_H

#include "broker_conn.h"

#include <stdint.h>

#define WD_EVENTS_PERIOD 0.05
#define WD_EVENTS_MAX_QUEUED 100000

struct wd_events;
struct wd_sched;

/* Create the publisher for stream <prefix>:events on conn (borrowed; it must outlive the
 * publisher), and start its greenlet; *out is the publisher. wid is copied. Events are dated
 * on the Redis server's clock as clock (borrowed, may be NULL: this host's clock) knows it,
 * so the events of a fleet whose hosts' clocks disagree still agree. Does not
 * yield. Returns 0, -EINVAL (the prefix is invalid), -ENOMEM, or green_spawn's error
 * (*out is then NULL and nothing was started). */
int wd_events_start(struct wd_events **out, broker_conn *conn, const char *prefix, const char *wid,
                    const struct wd_sched *clock);

/* Queue one event. type is one of the names above; id, task, queue, error may be NULL
 * (the field is then left out; queue and error only appear for the types listed above
 * anyway, whatever is passed); runtime < 0 leaves runtime out. Everything is copied.
 * Does not yield; callable from the hub. e NULL is a no-op (events off). */
void wd_events_emit(struct wd_events *e, const char *type, const char *id, const char *task,
                    const char *queue, double runtime, const char *error);

/* Events dropped so far (0 for NULL). */
uint64_t wd_events_dropped(const struct wd_events *e);

/* Send what is queued (for at most `grace` seconds while Redis is away), stop the
 * greenlet, free e. MAY YIELD; call from a greenlet before conn is closed. NULL is a
 * no-op. */
void wd_events_stop(struct wd_events *e, double grace);

#endif
