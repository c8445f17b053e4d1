/*
 * wd_rate.h - the worker's side of the rate limits (docs/design.md "Rate limits"): the
 * gate a message of a rate-limited task passes before it runs, and the seeding of
 * PREFIX:rate_limits from --rate-limit.
 *
 * The limit itself lives in Redis (broker_rate.h): the rate of a task is read by the
 * check script from the hash at every check, and its state (GCRA) is shared by every
 * worker. To keep the hot path free of Redis, the worker remembers which tasks have a
 * limit (the hash's fields, read again at most every WD_RATE_REFRESH seconds, by the
 * first message that finds the list older than that); a message of any other task passes
 * without a call. So a changed or removed limit applies at the next check, a limit on a
 * task that had none within WD_RATE_REFRESH seconds.
 *
 * A message over the rate is moved by the check itself, atomically, from this worker's
 * in-flight hash to the scheduled set, due at its turn: it holds no pool slot while it
 * waits, its `retries` is untouched and no result is written (a STARTED result is not
 * written either: the gate comes before the task starts).
 *
 * The per-host limits of the http.* tasks (--http-host-concurrency, --http-host-rate) are
 * asked before the task is marked started (wd_rate_host_turn, installed as the task host's
 * turn hook and called by task_ctx_gate): nothing moved; over a limit the call is deferred
 * (TASK_EDEFER) and the job keeps the message for later, its retries untouched, no result
 * written, never STARTED. A slot taken is given back when the call ends
 * (wd_rate_host_release, from task_ctx_end).
 *
 * Everything runs on greenlets of the worker's hub; nothing is thread-safe.
 */
#ifndef WORKERD_WD_RATE_H
#define WORKERD_WD_RATE_H

#include "broker_celery.h"
#include "broker_msg.h"
#include "broker_worker.h"
#include "task_host.h"

/* Most seconds a worker goes on with an old list of rate-limited tasks. */
#define WD_RATE_REFRESH 1.0

struct wd_rate;
struct wd_worker;

/* New state; nothing known yet. Returns 0 or -ENOMEM (*out NULL). */
int wd_rate_new(struct wd_rate **out);

/* Free it (NULL is fine). No gate may be waiting. */
void wd_rate_free(struct wd_rate *r);

/* HSET every --rate-limit of w's options into PREFIX:rate_limits (a restart with the
 * option sets it again, over what workerctl wrote) and read the list of limited tasks,
 * retrying through Redis outages. Returns 0, or -ECANCELED when killed. MAY YIELD. */
int wd_rate_seed(struct wd_worker *w);

/* What the gate decided. */
enum wd_rate_gate {
    WD_RATE_RUN,  /* no limit, or its turn: run it now */
    WD_RATE_KEPT, /* over the rate: it is in the scheduled set now, no longer in flight
                     here; free the job without an ack */
    WD_RATE_GONE, /* no longer this worker's (or a shutdown came): free the job without an
                     ack; what stays in flight goes back through the requeue or recovery */
};

/* The gate of message m, delivery d. The limit is m->task's: for a Celery message (celery:
 * its envelope, else NULL) the workerd task its name maps to, so one --rate-limit covers
 * both protocols; a Celery message waits for its turn as its envelope (broker_celery.h),
 * as it came, so that it goes back to its Celery list. MAY YIELD (one round trip for a
 * limited task, and a refresh of the list at most every WD_RATE_REFRESH seconds). */
enum wd_rate_gate wd_rate_gate(struct wd_worker *w, const broker_delivery *d, const broker_msg *m,
                               const broker_celery_info *celery);

/* task_host_turn_fn for --http-host-concurrency and --http-host-rate (arg: the struct
 * wd_worker): first a slot of the host (host_slot.lua, leased for t->lease plus a margin),
 * then a check-only call of rate_limit.lua, kind "host" (a slot taken is given back when
 * the rate says no). 0: no limit, its slot (t->holder) and turn taken, or a check failed
 * (logged: a broken check never stops requests); 1: no free slot (t->wait a short delay
 * to ask again) or over the rate (t->wait until its turn on the server's clock);
 * -ECANCELED. MAY YIELD (a round trip per limit set). */
int wd_rate_host_turn(void *arg, const char *host, task_host_ticket *t);

/* task_host_release_fn: give an --http-host-concurrency slot back. A failure is logged
 * (the lease frees it). MAY YIELD (one round trip). */
void wd_rate_host_release(void *arg, const char *host, const char *holder);

#endif
