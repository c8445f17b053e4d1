/*
 * wd_limits.c - the time limits of a task's run and the blocking watch (wd_limits.h).
 *
 * Timers. A run's two ev_timers live in its record (inside the job, on the heap) and are
 * started on the task's greenlet, relative to ev_time() rather than to ev_now(), which may
 * be stale by as long as the greenlets before this one ran without the loop. Their
 * callbacks run on the hub: they set a flag and interrupt the greenlet (green_throw,
 * green_kill), which does not yield, as callbacks must not. The hard timer repeats every
 * WD_LIMITS_KILL_AGAIN seconds, each time killing again, until the run ends.
 *
 * The watch. The thread samples (switch count, tag) and keeps one stall at a time:
 *
 *   count moved                 -> a stall that was named and not yet logged is logged
 *                                  with its length; a new sample starts
 *   count still, task's tag,    -> name it (copy id and task under the hazard pointer),
 *   for --blocking-warn            the first time
 *   ... and for a second more   -> log it as still going on, once
 *
 * The length is measured from the first sample that saw the count, so it is short by up
 * to one sampling period (at most 25 ms at the default 0.1 s): "about".
 *
 * The hazard pointer, in detail. The thread: load the tag t; store hazard = t (seq_cst);
 * load the tag again (seq_cst) and the count; only if both still match does it read t's
 * strings, then it clears the hazard. The hub: untags the greenlet (a store of the tag),
 * and later, before freeing the record, issues a seq_cst fence and waits while hazard ==
 * the record. Either the thread's second load comes after the hub's fence in the single
 * order of seq_cst operations, and then it sees the tag gone (and reads nothing), or it
 * comes before, and then so does its hazard store, which the hub's load after the fence
 * must see: the hub waits. Records are only read while their greenlet's tag is published,
 * and a greenlet is tagged only after its record's strings are set (the tag is published
 * with release, read with acquire).
 *
 * Stacks: wd_limits_new, _free and the run functions on greenlets of the hub; the timer
 * callbacks on the hub; watch_main on its own thread.
 */
#include "wd_limits.h"

#include "green_check.h"
#include "wd_log.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The watch samples every quarter of --blocking-warn, but at least every WATCH_PERIOD_MAX
 * and at most every WATCH_PERIOD_MIN seconds (a tiny --blocking-warn must not make the
 * thread a busy loop). */
#define WATCH_PERIOD_MAX 0.05
#define WATCH_PERIOD_MIN 0.005

/* A stall still going on this long after --blocking-warn is logged while it lasts. */
#define STALL_ONGOING_AFTER 1.0

struct wd_limits {
    double soft_default, hard_default;
    double warn; /* --blocking-warn; 0: no watch */
    const green_progress *progress;
    bool watching; /* the thread runs */
    pthread_t thread;
    pthread_mutex_t lock; /* guards stop, for the thread's timed wait */
    pthread_cond_t wake;
    bool stop;
    _Atomic(const struct wd_limits_run *) hazard; /* the record the thread reads */
};

/* ---- the timers, on the hub --------------------------------------------------------- */

static void on_soft(struct ev_loop *loop, ev_timer *t, int revents) {
    struct wd_limits_run *r = t->data;
    (void)loop, (void)revents;
    r->soft_fired = true;
    wd_log_task(WD_LOG_INFO, r->id,
                "%s reached its soft time limit of %g s: its blocking call returns ETIMEDOUT "
                "and it may clean up",
                r->task, r->soft);
    green_throw(r->g, -ETIMEDOUT);
}

static void on_hard(struct ev_loop *loop, ev_timer *t, int revents) {
    struct wd_limits_run *r = t->data;
    (void)loop, (void)revents;
    if (!r->hard_fired)
        wd_log_task(WD_LOG_WARNING, r->id, "%s reached its time limit of %g s: killing it", r->task,
                    r->hard);
    r->hard_fired = true;
    green_kill(r->g);
}

/* Start t to fire `after` seconds from now by the clock, not by the loop's cached time. */
static void timer_start(ev_timer *t, double after, double repeat) {
    struct ev_loop *loop = green_loop();
    ev_timer_set(t, after + (ev_time() - ev_now(loop)), repeat);
    ev_timer_start(loop, t);
}

void wd_limits_run_start(struct wd_limits_run *r, struct wd_limits *l, const broker_msg *m) {
    *r = (struct wd_limits_run){.l = l, .id = m->id, .task = m->task, .g = green_self()};
    r->soft_is_default = !(m->soft_time_limit > 0);
    r->soft = r->soft_is_default ? l->soft_default : m->soft_time_limit;
    r->hard_is_default = !(m->time_limit > 0);
    r->hard = r->hard_is_default ? l->hard_default : m->time_limit;
    ev_init(&r->soft_timer, on_soft);
    r->soft_timer.data = r;
    ev_init(&r->hard_timer, on_hard);
    r->hard_timer.data = r;
    if (r->soft > 0 && !(r->hard > 0 && r->soft >= r->hard)) /* else the kill comes first */
        timer_start(&r->soft_timer, r->soft, 0.);
    if (r->hard > 0)
        timer_start(&r->hard_timer, r->hard, WD_LIMITS_KILL_AGAIN);
    if (l->watching)
        green_set_tag(r);
}

void wd_limits_run_end(struct wd_limits_run *r) {
    struct ev_loop *loop = green_loop();
    ev_timer_stop(loop, &r->soft_timer);
    ev_timer_stop(loop, &r->hard_timer);
    if (r->l->watching)
        green_set_tag(NULL);
    if (r->soft_fired)
        green_throw(r->g, 0); /* a kill pending stays: the shutdown or the hard limit's */
}

const char *wd_limits_outcome(const struct wd_limits_run *r, int rc, char *msg, size_t len) {
    if (r->hard_fired) {
        snprintf(msg, len, "the task ran past its time_limit of %g s%s", r->hard,
                 r->hard_is_default ? " (--time-limit)" : "");
        return "TimeLimitExceeded";
    }
    if (r->soft_fired && rc == -ETIMEDOUT) {
        snprintf(msg, len, "the task ran past its soft_time_limit of %g s%s", r->soft,
                 r->soft_is_default ? " (--soft-time-limit)" : "");
        return "SoftTimeLimitExceeded";
    }
    return NULL;
}

void wd_limits_run_release(struct wd_limits_run *r) {
    struct wd_limits *l = r->l;
    if (!l || !l->watching)
        return;
    atomic_thread_fence(memory_order_seq_cst);
    while (atomic_load(&l->hazard) == r)
        sched_yield();
}

/* ---- the watch, on its own thread --------------------------------------------------- */

static double mono_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The stall being watched. */
struct stall {
    uint64_t count; /* the switch count it is stuck at */
    double since;   /* when a sample first saw that count */
    bool named;     /* a task's greenlet: id and task copied */
    bool logged;
    char id[256];
    char task[256];
};

/* Copy the running task's id and name into s, if a task runs and the hub is still at
 * s->count (see the hazard pointer above). */
static bool name_stall(struct wd_limits *l, struct stall *s) {
    const struct wd_limits_run *r = green_progress_tag(l->progress);
    if (!r)
        return false;
    atomic_store(&l->hazard, r);
    bool same =
        green_progress_tag(l->progress) == r && green_progress_switches(l->progress) == s->count;
    if (same) {
        snprintf(s->id, sizeof s->id, "%s", r->id);
        snprintf(s->task, sizeof s->task, "%s", r->task);
    }
    atomic_store(&l->hazard, NULL);
    return same;
}

/* Wait up to seconds, or until wd_limits_free asks the thread to stop: true then. */
static bool wait_or_stop(struct wd_limits *l, double seconds) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    double ns = (double)ts.tv_nsec + seconds * 1e9;
    ts.tv_sec += (time_t)(ns / 1e9);
    ts.tv_nsec = (long)fmod(ns, 1e9);
    pthread_mutex_lock(&l->lock);
    while (!l->stop && pthread_cond_timedwait(&l->wake, &l->lock, &ts) != ETIMEDOUT)
        ;
    bool stop = l->stop;
    pthread_mutex_unlock(&l->lock);
    return stop;
}

static void *watch_main(void *arg) {
    struct wd_limits *l = arg;
    double period = fmax(WATCH_PERIOD_MIN, fmin(WATCH_PERIOD_MAX, l->warn / 4));
    struct stall s = {.count = green_progress_switches(l->progress), .since = mono_now()};
    while (!wait_or_stop(l, period)) {
        uint64_t count = green_progress_switches(l->progress);
        double now = mono_now();
        if (count != s.count) {
            if (s.named && !s.logged)
                wd_log_task(WD_LOG_WARNING, s.id,
                            "%s did not yield for about %.2f s (--blocking-warn %g s): every "
                            "other task of this process waited meanwhile",
                            s.task, now - s.since, l->warn);
            s = (struct stall){.count = count, .since = now};
            continue;
        }
        double stuck = now - s.since;
        if (!s.named && stuck >= l->warn)
            s.named = name_stall(l, &s);
        if (s.named && !s.logged && stuck >= l->warn + STALL_ONGOING_AFTER) {
            wd_log_task(WD_LOG_WARNING, s.id,
                        "%s has not yielded for %.1f s and still runs (--blocking-warn %g s): "
                        "every other task of this process waits; a task that computes is "
                        "only stopped by replacing its process (--processes, --time-limit)",
                        s.task, stuck, l->warn);
            s.logged = true;
        }
    }
    return NULL;
}

/* ---- the worker's limits ------------------------------------------------------------ */

static int watch_start(struct wd_limits *l) {
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(&l->wake, &attr);
    pthread_condattr_destroy(&attr);
    if (rc != 0)
        return -rc;
    pthread_mutex_init(&l->lock, NULL);
    /* The thread takes no signals: they are the loop's (ev_signal). */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = pthread_create(&l->thread, NULL, watch_main, l);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        pthread_cond_destroy(&l->wake);
        pthread_mutex_destroy(&l->lock);
        return -rc;
    }
    l->watching = true;
    return 0;
}

int wd_limits_new(struct wd_limits **out, double soft_default, double hard_default,
                  double blocking_warn) {
    struct wd_limits *l = calloc(1, sizeof *l);
    if (!l)
        return -ENOMEM;
    l->soft_default = soft_default;
    l->hard_default = hard_default;
    l->warn = blocking_warn;
    l->progress = green_progress_get();
    atomic_init(&l->hazard, NULL);
    if (l->warn > 0 && l->progress) {
        int rc = watch_start(l);
        if (rc != 0) {
            free(l);
            return rc;
        }
    }
    *out = l;
    return 0;
}

void wd_limits_free(struct wd_limits *l) {
    if (!l)
        return;
    if (l->watching) {
        pthread_mutex_lock(&l->lock);
        l->stop = true;
        pthread_cond_signal(&l->wake);
        pthread_mutex_unlock(&l->lock);
        pthread_join(l->thread, NULL);
        pthread_cond_destroy(&l->wake);
        pthread_mutex_destroy(&l->lock);
    }
    free(l);
}
