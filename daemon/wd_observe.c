/*
 * wd_observe.c - the task hooks of wd_observe.h: one place where a state change of a task
 * reaches the metrics and the event stream, and where a supervised child decides that it
 * is time to be replaced.
 *
 * Recycling is decided on the fetcher's greenlet (wd_worker.c asks before every fetch):
 * the fetcher never takes more than --max-tasks-per-child messages in all, and once the
 * limit is reached, or resident memory is over --max-memory-per-child, it stops fetching,
 * waits for the running tasks, and asks for a warm shutdown; the child then exits 0 and
 * the supervisor starts a fresh one. Nothing is lost: every message taken ran to its end.
 *
 * Runs on greenlets of the worker's hub; never yields.
 */
#include "wd_observe.h"

#include "wd_events.h"
#include "wd_log.h"
#include "wd_metrics.h"
#include "wd_worker_internal.h"

#include <stdint.h>
#include <stdio.h>

#define RSS_CHECK_INTERVAL 0.1

void wd_observe_received(struct wd_worker *w, const char *id, const char *task, const char *queue) {
    wd_events_emit(w->events, "received", id, task, queue, -1, NULL);
}

void wd_observe_started(struct wd_worker *w, const char *id, const char *task) {
    wd_events_emit(w->events, "started", id, task, NULL, -1, NULL);
}

void wd_observe_finished(struct wd_worker *w, const char *id, const char *task,
                         broker_status status, double runtime, const char *etype,
                         const char *emsg) {
    enum wd_outcome o;
    const char *type;
    switch (status) {
    case BROKER_SUCCESS:
        o = WD_OUTCOME_SUCCEEDED, type = "succeeded";
        break;
    case BROKER_RETRY:
        o = WD_OUTCOME_RETRIED, type = "retried";
        break;
    case BROKER_REVOKED:
        o = WD_OUTCOME_REVOKED, type = "revoked";
        break;
    default:
        o = WD_OUTCOME_FAILED, type = "failed";
        break;
    }
    wd_metrics_task_done(w->metrics, task, o, runtime);
    if (w->events) {
        char error[1024] = "";
        if (etype || emsg)
            snprintf(error, sizeof error, "%s%s%s", etype ? etype : "", etype && emsg ? ": " : "",
                     emsg ? emsg : "");
        wd_events_emit(w->events, type, id, task, NULL, runtime, error[0] ? error : NULL);
    }
}

size_t wd_observe_fetch_allowance(const struct wd_worker *w) {
    long max = w->opts->max_tasks_per_child;
    if (max <= 0)
        return SIZE_MAX;
    return w->received >= (uint64_t)max ? 0 : (size_t)((uint64_t)max - w->received);
}

bool wd_observe_should_recycle(struct wd_worker *w) {
    long max = w->opts->max_tasks_per_child;
    if (max > 0 && w->received >= (uint64_t)max) {
        wd_log(WD_LOG_INFO,
               "recycling: this worker has taken %ld tasks "
               "(--max-tasks-per-child); finishing them and exiting",
               max);
        return true;
    }
    long kib = w->opts->max_memory_per_child;
    double now = wd_unix_now();
    /* Only once a task has run: a worker that starts above the limit would otherwise be
     * replaced forever without doing any work. */
    if (kib > 0 && w->received > 0 && now - w->rss_checked_at >= RSS_CHECK_INTERVAL) {
        w->rss_checked_at = now;
        long long rss = wd_metrics_rss_bytes();
        if (rss > (long long)kib * 1024) {
            wd_log(WD_LOG_INFO,
                   "recycling: resident memory %lld KiB exceeds "
                   "--max-memory-per-child %ld KiB; finishing the running tasks and exiting",
                   rss / 1024, kib);
            return true;
        }
    }
    return false;
}
