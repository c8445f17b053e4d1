/*
 * wd_observe.h - what the worker tells its observers about each task: the metrics
 * (wd_metrics.h) and, with -E, the event stream (wd_events.h); and the recycling rules of
 * a supervised child (--max-tasks-per-child, --max-memory-per-child).
 *
 * wd_job.c calls the three hooks at the points where a task changes state; they fan out to
 * whatever is on. They never yield and never fail visibly (an observer that runs out of
 * memory loses a sample, the task is not affected), so they can sit anywhere on a job's
 * path. All run on greenlets of the worker's hub.
 */
#ifndef WORKERD_WD_OBSERVE_H
#define WORKERD_WD_OBSERVE_H

#include "broker_result.h"

#include <stdbool.h>

struct wd_worker;

/* A message was parsed into a task: id, task name, the queue it came from. */
void wd_observe_received(struct wd_worker *w, const char *id, const char *task, const char *queue);

/* The task starts running. */
void wd_observe_started(struct wd_worker *w, const char *id, const char *task);

/* The task ended with status (BROKER_SUCCESS, BROKER_FAILURE, BROKER_RETRY, BROKER_REVOKED)
 * after runtime seconds (< 0 when it never ran, e.g. expired); etype/emsg describe a
 * failure or revocation (may be NULL). */
void wd_observe_finished(struct wd_worker *w, const char *id, const char *task,
                         broker_status status, double runtime, const char *etype, const char *emsg);

/* How many more messages this worker may take before it must recycle: SIZE_MAX without
 * --max-tasks-per-child, 0 once the limit is reached. */
size_t wd_observe_fetch_allowance(const struct wd_worker *w);

/* True when this worker should stop and be replaced: it has taken --max-tasks-per-child
 * messages, or its resident memory exceeds --max-memory-per-child (read from procfs at
 * most every 100 ms). Logs the reason the first time it says so. */
bool wd_observe_should_recycle(struct wd_worker *w);

#endif
