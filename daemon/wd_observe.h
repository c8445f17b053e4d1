/*
 * wd_observe.h - what one worker tells its observers, and the state that belongs to
 * observing it: the counters (logs, /workers, /metrics), the metrics (wd_metrics.h), with
 * -E the task event publisher (wd_events.h), and the recycling rules of a supervised child
 * (--max-tasks-per-child, --max-memory-per-child).
 *
 * The worker owns one wd_observe for its run. wd_job.c calls the hooks at the points where
 * a task changes state; they count and fan out to whatever is on. They never yield and
 * never fail visibly (an observer that runs out of memory loses a sample, the task is not
 * affected), so they can sit anywhere on a job's path. The HTTP endpoint (wd_http.c) reads
 * the counters and the metrics back.
 *
 * All of this runs on greenlets of the worker's hub; nothing is thread-safe.
 */
#ifndef WORKERD_WD_OBSERVE_H
#define WORKERD_WD_OBSERVE_H

#include "broker_conn.h"
#include "broker_result.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What happened to the messages of one run, as /workers and the last log line show it. */
struct wd_counters {
    uint64_t received;       /* messages taken from the queues */
    uint64_t succeeded;      /* tasks that ended in SUCCESS */
    uint64_t failed;         /* tasks that ended otherwise, dead letters included */
    uint64_t retried;        /* attempts that ended in a retry stored in the scheduled set
                                (not failures: the task runs again) */
    uint64_t invalid;        /* messages that could not run (dead-lettered) */
    uint64_t put_back;       /* tasks interrupted by a shutdown, back on their queue */
    uint64_t lost_ownership; /* results not stored: the message had been recovered */
};

struct wd_observe;
struct wd_sched;
struct wd_metrics;

/* New observation state with the recycling limits (0: none). Returns 0 or -ENOMEM (*out
 * is then NULL). Does not yield. */
int wd_observe_new(struct wd_observe **out, long max_tasks_per_child, long max_memory_kib);

/* Stop the event publisher if it runs (see wd_observe_stop_events) and free o. NULL is
 * fine. MAY YIELD. */
void wd_observe_free(struct wd_observe *o);

/* -E: start publishing task events on <prefix>:events over conn (borrowed; it must
 * outlive the publisher), dated on clock (wd_events_start). Returns 0 or wd_events_start's
 * error. Does not yield. */
int wd_observe_start_events(struct wd_observe *o, broker_conn *conn, const char *prefix,
                            const char *wid, const struct wd_sched *clock);

/* Send the events still queued (for at most grace seconds while Redis is away) and stop
 * the publisher; a no-op without one. MAY YIELD; call before conn is closed. */
void wd_observe_stop_events(struct wd_observe *o, double grace);

/* ---- the hooks ------------------------------------------------------------------------- */

/* The fetcher took a message (before it is parsed). */
void wd_observe_taken(struct wd_observe *o);

/* A message was parsed into a task: id, task name, the queue it came from. */
void wd_observe_received(struct wd_observe *o, const char *id, const char *task, const char *queue);

/* The task starts running. */
void wd_observe_started(struct wd_observe *o, const char *id, const char *task);

/* The task ended with status (BROKER_SUCCESS, BROKER_FAILURE, BROKER_RETRY, BROKER_REVOKED)
 * after runtime seconds (< 0 when it never ran, e.g. expired); etype/emsg describe a
 * failure or revocation (may be NULL). Called once its result is stored (or, for a task
 * that stores none, once its message is acked): a task whose result Redis has not taken
 * has not succeeded yet. */
void wd_observe_finished(struct wd_observe *o, const char *id, const char *task,
                         broker_status status, double runtime, const char *etype, const char *emsg);

/* A message cannot run (invalid, unknown task, bad arguments): counted at once; and
 * counted as failed too once its dead letter is stored (wd_observe_dead_lettered). */
void wd_observe_invalid(struct wd_observe *o);
void wd_observe_dead_lettered(struct wd_observe *o);

/* A task was interrupted by a shutdown; its message goes back to its queue. */
void wd_observe_put_back(struct wd_observe *o);

/* A result was not stored because another worker had taken the message over. */
void wd_observe_lost_ownership(struct wd_observe *o);

/* ---- Redis refusing results ------------------------------------------------------------ */

/* The acker's round trip was refused because Redis refuses writes for now (state: "oom",
 * "readonly", ... as broker_refusal_state names it; text: Redis's words), or, with state
 * NULL, Redis took a batch again. The change is logged once each way (not at every retry);
 * /healthz, the metrics and the fetcher (which takes no new work meanwhile) read it back. */
void wd_observe_refusing(struct wd_observe *o, const char *state, const char *text);

/* While Redis refuses results, why, for /healthz ("oom: OOM command not allowed when used
 * memory > 'maxmemory'."); NULL otherwise. */
const char *wd_observe_refusal(const struct wd_observe *o);

/* Redis would not take one result (too large for it, a refusal of that entry alone): it
 * was replaced by a small FAILURE result, or not stored at all. */
void wd_observe_result_refused(struct wd_observe *o);

/* ---- reading back ---------------------------------------------------------------------- */

const struct wd_counters *wd_observe_counters(const struct wd_observe *o);
const struct wd_metrics *wd_observe_metrics(const struct wd_observe *o);

/* Task events dropped so far (0 without -E). */
uint64_t wd_observe_events_dropped(const struct wd_observe *o);

/* ---- recycling ------------------------------------------------------------------------- */

/* How many more messages this worker may take before it must recycle: SIZE_MAX without
 * --max-tasks-per-child, 0 once the limit is reached. */
size_t wd_observe_fetch_allowance(const struct wd_observe *o);

/* True when this worker should stop and be replaced: it has taken --max-tasks-per-child
 * messages, or its resident memory exceeds --max-memory-per-child (read from procfs at
 * most every 100 ms). Logs the reason the first time it says so. */
bool wd_observe_should_recycle(struct wd_observe *o);

#endif
