/*
 * wd_observe.c - the observation state and task hooks of wd_observe.h: one place where a
 * state change of a task reaches the counters, the metrics and the event stream, and
 * where a supervised child decides that it is time to be replaced.
 *
 * Recycling is decided on the fetcher's greenlet (wd_worker.c asks before every fetch):
 * the fetcher never takes more than --max-tasks-per-child messages in all, and once the
 * limit is reached, or resident memory is over --max-memory-per-child, it stops fetching,
 * waits for the running tasks, and asks for a warm shutdown; the child then exits 0 and
 * the supervisor starts a fresh one. Nothing is lost: every message taken ran to its end.
 *
 * Runs on greenlets of the worker's hub; only wd_observe_stop_events and wd_observe_free
 * yield.
 */
#include "wd_observe.h"

#include "green.h"
#include "wd_events.h"
#include "wd_log.h"
#include "wd_metrics.h"

#include <errno.h>
#include <ev.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define RSS_CHECK_INTERVAL 0.1

struct wd_observe {
    struct wd_counters counters;
    struct wd_metrics *metrics;
    struct wd_events *events; /* NULL unless -E */
    long max_tasks;           /* --max-tasks-per-child; 0: none */
    long max_memory_kib;      /* --max-memory-per-child; 0: none */
    double rss_checked_at;    /* loop time of the last memory check */
    bool refusing;            /* Redis refuses to store results (wd_observe_refusing) */
    char refusal[300];        /* then "<state>: <Redis's words>" */
};

int wd_observe_new(struct wd_observe **out, long max_tasks_per_child, long max_memory_kib) {
    struct wd_observe *o = calloc(1, sizeof *o);
    if (o)
        o->metrics = wd_metrics_new();
    if (!o || !o->metrics) {
        free(o);
        *out = NULL;
        return -ENOMEM;
    }
    o->max_tasks = max_tasks_per_child;
    o->max_memory_kib = max_memory_kib;
    *out = o;
    return 0;
}

void wd_observe_free(struct wd_observe *o) {
    if (!o)
        return;
    wd_observe_stop_events(o, 0);
    wd_metrics_free(o->metrics);
    free(o);
}

int wd_observe_start_events(struct wd_observe *o, broker_conn *conn, const char *prefix,
                            const char *wid, const struct wd_sched *clock) {
    return wd_events_start(&o->events, conn, prefix, wid, clock);
}

void wd_observe_stop_events(struct wd_observe *o, double grace) {
    wd_events_stop(o->events, grace);
    o->events = NULL;
}

void wd_observe_taken(struct wd_observe *o) {
    o->counters.received++;
}

void wd_observe_received(struct wd_observe *o, const char *id, const char *task,
                         const char *queue) {
    wd_events_emit(o->events, "received", id, task, queue, -1, NULL);
}

void wd_observe_started(struct wd_observe *o, const char *id, const char *task) {
    wd_events_emit(o->events, "started", id, task, NULL, -1, NULL);
}

void wd_observe_finished(struct wd_observe *o, const char *id, const char *task,
                         broker_status status, double runtime, const char *etype,
                         const char *emsg) {
    enum wd_outcome outcome;
    const char *type;
    switch (status) {
    case BROKER_SUCCESS:
        outcome = WD_OUTCOME_SUCCEEDED, type = "succeeded";
        break;
    case BROKER_RETRY:
        outcome = WD_OUTCOME_RETRIED, type = "retried";
        break;
    case BROKER_REVOKED:
        outcome = WD_OUTCOME_REVOKED, type = "revoked";
        break;
    default:
        outcome = WD_OUTCOME_FAILED, type = "failed";
        break;
    }
    if (status == BROKER_SUCCESS)
        o->counters.succeeded++;
    else if (status == BROKER_RETRY)
        o->counters.retried++;
    else
        o->counters.failed++;
    wd_metrics_task_done(o->metrics, task, outcome, runtime);
    if (o->events) {
        char error[1024] = "";
        if (etype || emsg)
            snprintf(error, sizeof error, "%s%s%s", etype ? etype : "", etype && emsg ? ": " : "",
                     emsg ? emsg : "");
        wd_events_emit(o->events, type, id, task, NULL, runtime, error[0] ? error : NULL);
    }
}

void wd_observe_invalid(struct wd_observe *o) {
    o->counters.invalid++;
}

void wd_observe_dead_lettered(struct wd_observe *o) {
    o->counters.failed++;
}

void wd_observe_put_back(struct wd_observe *o) {
    o->counters.put_back++;
}

void wd_observe_lost_ownership(struct wd_observe *o) {
    o->counters.lost_ownership++;
}

void wd_observe_refusing(struct wd_observe *o, const char *state, const char *text) {
    if (state) {
        snprintf(o->refusal, sizeof o->refusal, "%s: %s", state, text ? text : "");
        if (!o->refusing)
            wd_log_state("results", 0, WD_LOG_ERROR,
                         "Redis refuses to store results (%s); retrying with backoff, and "
                         "taking no new tasks until it stores them",
                         o->refusal);
        o->refusing = true;
    } else if (o->refusing) {
        wd_log_state("results", 1, WD_LOG_INFO, "Redis stores results again");
        o->refusing = false;
    }
    wd_metrics_set_refusing(o->metrics, o->refusing ? state : NULL);
}

const char *wd_observe_refusal(const struct wd_observe *o) {
    return o->refusing ? o->refusal : NULL;
}

void wd_observe_result_refused(struct wd_observe *o) {
    wd_metrics_result_refused(o->metrics);
}

const struct wd_counters *wd_observe_counters(const struct wd_observe *o) {
    return &o->counters;
}

const struct wd_metrics *wd_observe_metrics(const struct wd_observe *o) {
    return o->metrics;
}

uint64_t wd_observe_events_dropped(const struct wd_observe *o) {
    return wd_events_dropped(o->events);
}

size_t wd_observe_fetch_allowance(const struct wd_observe *o) {
    if (o->max_tasks <= 0)
        return SIZE_MAX;
    uint64_t max = (uint64_t)o->max_tasks, taken = o->counters.received;
    return taken >= max ? 0 : (size_t)(max - taken);
}

bool wd_observe_should_recycle(struct wd_observe *o) {
    if (o->max_tasks > 0 && o->counters.received >= (uint64_t)o->max_tasks) {
        wd_log(WD_LOG_INFO,
               "recycling: this worker has taken %ld tasks "
               "(--max-tasks-per-child); finishing them and exiting",
               o->max_tasks);
        return true;
    }
    double now = ev_now(green_loop());
    /* Only once a task has run: a worker that starts above the limit would otherwise be
     * replaced forever without doing any work. */
    if (o->max_memory_kib > 0 && o->counters.received > 0 &&
        now - o->rss_checked_at >= RSS_CHECK_INTERVAL) {
        o->rss_checked_at = now;
        long long rss = wd_metrics_rss_bytes();
        if (rss > (long long)o->max_memory_kib * 1024) {
            wd_log(WD_LOG_INFO,
                   "recycling: resident memory %lld KiB exceeds "
                   "--max-memory-per-child %ld KiB; finishing the running tasks and exiting",
                   rss / 1024, o->max_memory_kib);
            return true;
        }
    }
    return false;
}
