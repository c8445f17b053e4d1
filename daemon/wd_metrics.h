/*
 * wd_metrics.h - the worker's numbers for Prometheus: per-task outcome counters, a task
 * runtime histogram, and the text exposition format (version 0.0.4) that renders them
 * together with the gauges the caller samples at scrape time.
 *
 * The worker owns one wd_metrics. wd_job.c reports every finished task through
 * wd_observe_finished (wd_observe.h), which lands in wd_metrics_task_done; the HTTP
 * endpoint (wd_http.c) fills a wd_metrics_gauges from the worker and calls
 * wd_metrics_render.
 *
 * Task names come from the task registry (only tasks that were found reach
 * wd_metrics_task_done), so the label set is small; still, past WD_METRICS_MAX_TASKS
 * distinct names the rest are counted under task="other", so a flood of names can never
 * grow the table (or a scrape) without bound.
 *
 * Nothing here yields or does I/O; callable from greenlets and the hub alike. Not
 * thread-safe: one worker, one hub.
 */
#ifndef WORKERD_WD_METRICS_H
#define WORKERD_WD_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WD_METRICS_MAX_TASKS 256

/* How a task ended, as the counters name it. */
enum wd_outcome {
    WD_OUTCOME_SUCCEEDED,
    WD_OUTCOME_FAILED,
    WD_OUTCOME_RETRIED,
    WD_OUTCOME_REVOKED,
    WD_OUTCOME_COUNT,
};

struct wd_metrics;

/* A new, empty set of counters, or NULL when out of memory. */
struct wd_metrics *wd_metrics_new(void);

/* Free m (NULL is fine). */
void wd_metrics_free(struct wd_metrics *m);

/* Count one finished task. task is copied (NULL counts as "unknown"). runtime in seconds,
 * observed in the histogram when >= 0 (a task revoked before it ran passes -1). Never
 * fails: out of memory, the task is counted under "other". */
void wd_metrics_task_done(struct wd_metrics *m, const char *task, enum wd_outcome outcome,
                          double runtime);

/* Redis refuses to store results for now: state is broker_refusal_state's name ("oom",
 * copied), or NULL once it stores them again. Rendered as workerd_broker_refusing. */
void wd_metrics_set_refusing(struct wd_metrics *m, const char *state);

/* Count one result Redis would not take (workerd_results_refused_total). */
void wd_metrics_result_refused(struct wd_metrics *m);

/* How many tasks ended with outcome, over every name (for tests and logs). */
uint64_t wd_metrics_total(const struct wd_metrics *m, enum wd_outcome outcome);

/* What the caller samples at scrape time. All borrowed for the call. */
struct wd_metrics_gauges {
    uint64_t received;       /* messages taken from the queues */
    uint64_t dead_letters;   /* messages that could not run (dead-lettered) */
    uint64_t put_back;       /* tasks interrupted by a shutdown, back on their queue */
    uint64_t lost_ownership; /* results not stored: the message had been recovered */
    uint64_t reconnects;     /* times the broker link went down */
    uint64_t events_dropped; /* task events that could not be published */
    size_t in_flight;        /* tasks running now */
    size_t pool_size;        /* --concurrency */
    size_t greenlets_alive;
    bool broker_up;
    long long rss_bytes; /* resident memory; < 0: unknown (omitted) */
    double start_time;   /* unix seconds */
    size_t nqueues;
    const char *const *queues;
    const long long *depths; /* LLEN of each queue; NULL (or an entry < 0): unknown,
                                that sample is omitted */
};

/* The whole exposition as a new NUL-terminated string (free it), every family with its
 * # HELP and # TYPE lines, or NULL when out of memory. */
char *wd_metrics_render(const struct wd_metrics *m, const struct wd_metrics_gauges *g);

/* This process's resident set size in bytes, from /proc/self/statm; -errno on failure.
 * Does a small blocking read of procfs (microseconds); never yields. */
long long wd_metrics_rss_bytes(void);

#endif
