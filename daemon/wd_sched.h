/*
 * wd_sched.h - the worker's side of scheduling (docs/design.md "Delivery"): the Redis
 * server's clock as this worker knows it, the mover that puts due messages on their
 * queues, and the retry delays.
 *
 * Due times are the Redis server's (hosts' clocks differ, Redis's is the one all workers
 * share). The worker reads it with every move (move_due.lua returns TIME) and keeps two
 * bounds, never wrong while no clock is stepped: wd_sched_now_lo is never later than the
 * server's clock (so a message is run only once its time has surely come), and
 * wd_sched_now_hi never earlier (so a countdown counted from it is never short). The
 * bounds are one round trip apart.
 *
 * The mover (wd_sched_main) waits for the earliest due time it knows of: the lowest score
 * left in the set after each move, and whatever this worker keeps for later itself
 * (wd_sched_kept). Another worker's message due earlier is seen at the next re-check, at
 * most WD_SCHED_RECHECK seconds later (that worker's own mover sees it at once), so an
 * idle worker makes one call every WD_SCHED_RECHECK seconds. When a move finds a full
 * batch it moves again at once.
 *
 * All of this runs on greenlets of the worker's hub; nothing is thread-safe.
 */
#ifndef WORKERD_WD_SCHED_H
#define WORKERD_WD_SCHED_H

#include "broker_msg.h"

/* Most seconds between two looks at the scheduled set, +-10 % so that a fleet started
 * together does not look together. */
#define WD_SCHED_RECHECK 2.0

/* Messages moved per call (move_due.lua's n): a call takes about 2 ms of Redis's time
 * per 1,000. A burst (a full batch, more due) doubles it up to the max, so that 100,000
 * messages due at once are on their queues in a few dozen calls. */
#define WD_SCHED_BATCH 1000
#define WD_SCHED_BATCH_MAX 8000

struct wd_sched;
struct wd_worker;

/* New scheduling state, the clock still unknown. Returns 0 or -ENOMEM (*out NULL). */
int wd_sched_new(struct wd_sched **out);

/* Free it (NULL is fine). The mover must have ended. */
void wd_sched_free(struct wd_sched *s);

/* The mover greenlet; its argument is the worker (struct wd_worker *), whose sched, conn,
 * opts and wid it uses. Runs until killed. */
void *wd_sched_main(void *worker);

/* Wait until the server's clock is known (the mover's first call came back). Returns 0,
 * or the wait's error (-ECANCELED when killed). MAY YIELD. */
int wd_sched_clock_wait(struct wd_sched *s);

/* The server's clock now, unix seconds: a lower bound and an upper bound (see above).
 * Before the first sample, this host's clock. Do not yield. */
double wd_sched_now_lo(const struct wd_sched *s);
double wd_sched_now_hi(const struct wd_sched *s);

/* wd_sched_now_lo minus this host's clock: what turns a time of this host into the lower
 * bound's (0 before the first sample). Reads no clock. Do not yield. */
double wd_sched_offset_lo(const struct wd_sched *s);

/* This worker's acker has put a message in the scheduled set, due at `due` (server
 * clock): wake the mover earlier if that is before what it waits for. Does not yield. */
void wd_sched_kept(struct wd_sched *s, double due);

/* Seconds until the next attempt of m, whose task asked for a retry: `asked` (a task's
 * retry_in, e.g. a Retry-After) when >= 0, else retry_backoff * 2^retries, with full jitter
 * (uniform in [0, that]) unless retry_jitter is false; either way at most
 * retry_backoff_max. Does not yield. */
double wd_sched_retry_delay(struct wd_sched *s, const broker_msg *m, double asked);

#endif
