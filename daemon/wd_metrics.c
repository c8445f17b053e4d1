/*
 * wd_metrics.c - counters, the runtime histogram and the Prometheus text rendering of
 * wd_metrics.h.
 *
 * The per-task table is an open-addressing hash (FNV-1a, linear probing) of
 * TABLE_SLOTS slots, twice WD_METRICS_MAX_TASKS, so a probe sequence stays short even when
 * the table is as full as it is allowed to get; names are never removed. Counting a task
 * is a hash and a strcmp or two: it runs once per finished task on the job's greenlet.
 *
 * The histogram is global (not per task): its buckets are the ones the operations issue
 * asked for, from 5 ms to a minute, which covers HTTP calls and sleeps alike. Buckets are
 * stored non-cumulative and summed at render time.
 *
 * Rendering follows the text exposition format 0.0.4: "# HELP name text" and "# TYPE name
 * type" before each family's samples (also for a family with no samples yet, so a
 * dashboard sees every name from the first scrape), label values escaped (backslash,
 * double quote, newline), counters ending in _total. Runs on the HTTP handler's greenlet;
 * never yields.
 */
#include "wd_metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TABLE_SLOTS (2 * WD_METRICS_MAX_TASKS)

static const double bucket_bounds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                       1,     2.5,  5,     10,   30,  60};
static const char *const bucket_labels[] = {".005", ".01", ".025", ".05", ".1", ".25", ".5",
                                            "1",    "2.5", "5",    "10",  "30", "60"};
#define NBUCKETS (sizeof bucket_bounds / sizeof *bucket_bounds)

struct task_row {
    char *name; /* NULL: a free slot */
    uint64_t count[WD_OUTCOME_COUNT];
};

struct wd_metrics {
    struct task_row rows[TABLE_SLOTS];
    size_t nrows;
    struct task_row other;          /* past WD_METRICS_MAX_TASKS names, or out of memory */
    uint64_t buckets[NBUCKETS + 1]; /* the last one is +Inf */
    uint64_t observed;
    double sum;
    char refusing[32];        /* broker_refusal_state's name while Redis refuses; "" */
    uint64_t results_refused; /* results Redis would not take */
};

struct wd_metrics *wd_metrics_new(void) {
    return calloc(1, sizeof(struct wd_metrics));
}

void wd_metrics_free(struct wd_metrics *m) {
    if (!m)
        return;
    for (size_t i = 0; i < TABLE_SLOTS; i++)
        free(m->rows[i].name);
    free(m);
}

static uint32_t fnv1a(const char *s) {
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

/* The row for name, created if there is room; &m->other otherwise. */
static struct task_row *row_for(struct wd_metrics *m, const char *name) {
    for (size_t i = fnv1a(name) % TABLE_SLOTS;; i = (i + 1) % TABLE_SLOTS) {
        struct task_row *r = &m->rows[i];
        if (r->name && strcmp(r->name, name) == 0)
            return r;
        if (!r->name) {
            if (m->nrows >= WD_METRICS_MAX_TASKS || !(r->name = strdup(name)))
                return &m->other;
            m->nrows++;
            return r;
        }
    }
}

void wd_metrics_task_done(struct wd_metrics *m, const char *task, enum wd_outcome outcome,
                          double runtime) {
    if (!m || outcome >= WD_OUTCOME_COUNT)
        return;
    row_for(m, task ? task : "unknown")->count[outcome]++;
    if (runtime >= 0) {
        size_t b = 0;
        while (b < NBUCKETS && runtime > bucket_bounds[b])
            b++;
        m->buckets[b]++;
        m->observed++;
        m->sum += runtime;
    }
}

void wd_metrics_set_refusing(struct wd_metrics *m, const char *state) {
    if (m)
        snprintf(m->refusing, sizeof m->refusing, "%s", state ? state : "");
}

void wd_metrics_result_refused(struct wd_metrics *m) {
    if (m)
        m->results_refused++;
}

uint64_t wd_metrics_total(const struct wd_metrics *m, enum wd_outcome outcome) {
    uint64_t n = m->other.count[outcome];
    for (size_t i = 0; i < TABLE_SLOTS; i++)
        n += m->rows[i].count[outcome];
    return n;
}

long long wd_metrics_rss_bytes(void) {
    int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    char buf[128];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    int err = errno;
    close(fd);
    if (n <= 0)
        return n < 0 ? -err : -EIO;
    buf[n] = '\0';
    unsigned long long size = 0, resident = 0;
    if (sscanf(buf, "%llu %llu", &size, &resident) != 2)
        return -EIO;
    return (long long)(resident * (unsigned long long)sysconf(_SC_PAGESIZE));
}

/* ---- rendering -------------------------------------------------------------------------- */

/* A growing string; a failed allocation makes it sticky-failed (rendered as NULL). */
struct buf {
    char *p;
    size_t len, cap;
    bool failed;
};

static void put(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct buf *b, const char *fmt, ...) {
    for (int attempt = 0; !b->failed && attempt < 2; attempt++) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->failed = true;
        } else if (b->p && (size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        } else {
            size_t cap = b->cap ? b->cap : 4096;
            while (cap - b->len <= (size_t)n)
                cap *= 2;
            char *p = realloc(b->p, cap);
            if (!p)
                b->failed = true;
            else
                b->p = p, b->cap = cap;
        }
    }
}

static void family(struct buf *b, const char *name, const char *type, const char *help) {
    put(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A label value with \, " and newline escaped as the format requires. */
static void put_label(struct buf *b, const char *v) {
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            put(b, "\\%c", *v);
        else if (*v == '\n')
            put(b, "\\n");
        else
            put(b, "%c", *v);
    }
}

static void per_task(struct buf *b, const struct wd_metrics *m, enum wd_outcome o, const char *name,
                     const char *help) {
    family(b, name, "counter", help);
    for (size_t i = 0; i <= TABLE_SLOTS; i++) {
        const struct task_row *r = i < TABLE_SLOTS ? &m->rows[i] : &m->other;
        const char *label = i < TABLE_SLOTS ? r->name : "other";
        if (!label || (i == TABLE_SLOTS && r->count[o] == 0))
            continue;
        put(b, "%s{task=\"", name);
        put_label(b, label);
        put(b, "\"} %llu\n", (unsigned long long)r->count[o]);
    }
}

static void scalar(struct buf *b, const char *name, const char *type, const char *help,
                   unsigned long long v) {
    family(b, name, type, help);
    put(b, "%s %llu\n", name, v);
}

char *wd_metrics_render(const struct wd_metrics *m, const struct wd_metrics_gauges *g) {
    struct buf b = {0};
    scalar(&b, "workerd_tasks_received_total", "counter",
           "Messages this worker took from its queues.", (unsigned long long)g->received);
    per_task(&b, m, WD_OUTCOME_SUCCEEDED, "workerd_tasks_succeeded_total",
             "Tasks that ran and succeeded, by task name.");
    per_task(&b, m, WD_OUTCOME_FAILED, "workerd_tasks_failed_total",
             "Tasks that ran and failed (an error, a time limit), by task name.");
    per_task(&b, m, WD_OUTCOME_RETRIED, "workerd_tasks_retried_total",
             "Tasks that failed and were scheduled to run again, by task name.");
    per_task(&b, m, WD_OUTCOME_REVOKED, "workerd_tasks_revoked_total",
             "Tasks not run because they expired or were revoked, by task name.");

    family(&b, "workerd_task_runtime_seconds", "histogram",
           "Seconds tasks ran, from start to their outcome.");
    unsigned long long cum = 0;
    for (size_t i = 0; i < NBUCKETS; i++) {
        cum += m->buckets[i];
        put(&b, "workerd_task_runtime_seconds_bucket{le=\"%s\"} %llu\n", bucket_labels[i], cum);
    }
    cum += m->buckets[NBUCKETS];
    put(&b, "workerd_task_runtime_seconds_bucket{le=\"+Inf\"} %llu\n", cum);
    put(&b, "workerd_task_runtime_seconds_sum %.9g\n", m->sum);
    put(&b, "workerd_task_runtime_seconds_count %llu\n", (unsigned long long)m->observed);

    scalar(&b, "workerd_tasks_in_flight", "gauge", "Tasks running now.",
           (unsigned long long)g->in_flight);
    scalar(&b, "workerd_pool_size", "gauge", "Most tasks in flight at once (--concurrency).",
           (unsigned long long)g->pool_size);
    family(&b, "workerd_queue_depth", "gauge",
           "Messages waiting in each consumed queue (absent while Redis is unreachable).");
    for (size_t i = 0; g->depths && i < g->nqueues; i++) {
        if (g->depths[i] < 0)
            continue;
        put(&b, "workerd_queue_depth{queue=\"");
        put_label(&b, g->queues[i]);
        put(&b, "\"} %lld\n", g->depths[i]);
    }
    scalar(&b, "workerd_broker_up", "gauge", "1 while the broker connection is up, else 0.",
           g->broker_up ? 1 : 0);
    family(&b, "workerd_broker_refusing", "gauge",
           "1 while Redis refuses to store results, labelled with why (oom: maxmemory "
           "reached with noeviction; readonly, misconf, busy, ...), else 0.");
    if (m->refusing[0]) {
        put(&b, "workerd_broker_refusing{reason=\"");
        put_label(&b, m->refusing);
        put(&b, "\"} 1\n");
    } else {
        put(&b, "workerd_broker_refusing 0\n");
    }
    scalar(&b, "workerd_results_refused_total", "counter",
           "Results Redis would not take on their own (over its size limits, refused), "
           "stored as a small FAILURE instead.",
           (unsigned long long)m->results_refused);
    scalar(&b, "workerd_broker_reconnects_total", "counter",
           "Times the broker connection went down (each followed by reconnecting).",
           (unsigned long long)g->reconnects);
    scalar(&b, "workerd_greenlets_alive", "gauge", "Greenlets alive on the worker's hub.",
           (unsigned long long)g->greenlets_alive);
    if (g->rss_bytes >= 0)
        scalar(&b, "workerd_resident_memory_bytes", "gauge", "Resident memory of this process.",
               (unsigned long long)g->rss_bytes);
    scalar(&b, "workerd_dead_letters_total", "counter",
           "Messages that could not run and went to the dead-letter list.",
           (unsigned long long)g->dead_letters);
    scalar(&b, "workerd_tasks_put_back_total", "counter",
           "Tasks interrupted by a shutdown and put back on their queue.",
           (unsigned long long)g->put_back);
    scalar(&b, "workerd_lost_ownership_total", "counter",
           "Results not stored because another worker had recovered the message.",
           (unsigned long long)g->lost_ownership);
    scalar(&b, "workerd_events_dropped_total", "counter",
           "Task events that could not be published (Redis away too long, or too many).",
           (unsigned long long)g->events_dropped);
    family(&b, "workerd_start_time_seconds", "gauge", "When this worker started, unix time.");
    put(&b, "workerd_start_time_seconds %.3f\n", g->start_time);
    if (b.failed) {
        free(b.p);
        return NULL;
    }
    return b.p;
}
