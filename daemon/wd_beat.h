/*
 * wd_beat.h - the worker's side of periodic tasks (--beat FILE; docs/design.md "Periodic
 * tasks"): a greenlet that sleeps until the next tick of any entry of the beat file, then
 * fires the ticks that are due through broker_beat_fire, which enqueues each tick of each
 * entry once however many workers run the same file. There is no beat process to lose:
 * every worker with --beat is one.
 *
 * After a downtime (the mark of an entry in Redis is older than its newest due tick) the
 * entry's catch_up says what runs: "one" the newest missed tick, "all" every missed tick
 * in order (up to WD_BEAT_BURST per round, then the next round at once), "none" only a
 * tick at most BEAT_LATE_MAX seconds late (older ones are marked without a run). An entry
 * Redis has no mark for starts with the ticks after the worker first saw it.
 *
 * Times are the Redis server's clock (wd_sched.h): the greenlet waits for the mover's
 * first clock sample, reads TIME with the marks, and the script refuses a tick that is not
 * due by TIME, so workers whose clocks differ fire nothing early and agree on the ticks.
 *
 * Runs on greenlets of the worker's hub, except wd_beat_reload, which runs on the hub (the
 * SIGHUP watcher) and never yields. Nothing is thread-safe.
 */
#ifndef WORKERD_WD_BEAT_H
#define WORKERD_WD_BEAT_H

#include "beat_file.h"

/* The most ticks one entry fires in one round when catching up "all". */
#define WD_BEAT_BURST 1000

struct wd_beat;
struct wd_worker;

/* Load the beat file at path for a worker. Returns 0 with *out set, or -1 (logged as a
 * failed start naming the entry and field). */
int wd_beat_new(struct wd_beat **out, const char *path);

/* Free it (NULL is fine). Its greenlet must have ended. */
void wd_beat_free(struct wd_beat *b);

/* The greenlet; its argument is the worker (struct wd_worker *), whose beat, sched, conn
 * and opts it uses. Runs until killed. */
void *wd_beat_main(void *worker);

/* SIGHUP: read the file again. A file that does not load is refused, logged with the entry
 * and field, and the running schedule kept; a good one replaces it at the greenlet's next
 * round (at once). Does not yield (blocking file I/O). */
void wd_beat_reload(struct wd_beat *b);

#endif
