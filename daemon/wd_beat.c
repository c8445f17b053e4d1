/*
 * wd_beat.c - the beat greenlet (wd_beat.h).
 *
 * A round: swap in a reloaded schedule if there is one; read every entry's mark and the
 * server's TIME in one round trip (broker_cmd_beat_state); for each entry, fire what its
 * catch_up says of the ticks in (mark, now]; then sleep until the earliest next tick of
 * any entry (an ev_timer under green_event_wait, woken early by a reload). So an idle
 * worker makes one round trip per tick of its schedule and none in between, and N workers
 * running one file make N rounds per tick, of which one fires.
 *
 * The wait is computed from the lower bound of the server's clock (wd_sched_now_lo), so the
 * greenlet never wakes before a tick by the server's clock; if it does anyway (a clock was
 * stepped), the script answers "not due" and the round is tried again shortly.
 */
#include "wd_beat.h"

#include "broker_beat.h"
#include "green.h"
#include "green_check.h"
#include "green_sync.h"
#include "wd_log.h"
#include "wd_sched.h"
#include "wd_worker_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define CALL_TIMEOUT 10.0
#define RETRY_SOON 0.05 /* seconds, after a "not due yet" */
#define RETRY_ERROR 1.0 /* seconds, after a failed call */

struct wd_beat {
    char *path;
    beat_schedule *sched;   /* what the greenlet runs */
    beat_schedule *pending; /* a reload's, swapped in at the next round */
    int64_t *seen;          /* per entry: the newest tick when the worker first saw the
                               entry without a mark (0: not yet) */
    green_event kick;       /* a reload happened */
};

static void log_load_error(const char *what, const char *err) {
    wd_log(WD_LOG_ERROR, "%s: --beat: %s", what, err);
}

int wd_beat_new(struct wd_beat **out, const char *path) {
    struct wd_beat *b = calloc(1, sizeof *b);
    *out = NULL;
    char err[1024];
    if (b)
        green_event_init(&b->kick);
    if (!b || !(b->path = strdup(path))) {
        free(b);
        wd_log(WD_LOG_ERROR, "start-up failed: --beat: out of memory");
        return -1;
    }
    if (beat_schedule_load(path, green_wallclock(), &b->sched, err, sizeof err) != 0) {
        log_load_error("start-up failed", err);
        wd_beat_free(b);
        return -1;
    }
    b->seen = calloc(b->sched->n ? b->sched->n : 1, sizeof *b->seen);
    if (!b->seen) {
        wd_beat_free(b);
        wd_log(WD_LOG_ERROR, "start-up failed: --beat: out of memory");
        return -1;
    }
    *out = b;
    wd_log(WD_LOG_INFO, "beat: %zu entries from %s", b->sched->n, path);
    return 0;
}

void wd_beat_free(struct wd_beat *b) {
    if (!b)
        return;
    beat_schedule_free(b->sched);
    beat_schedule_free(b->pending);
    free(b->seen);
    free(b->path);
    green_event_destroy(&b->kick);
    free(b);
}

void wd_beat_reload(struct wd_beat *b) {
    if (!b)
        return;
    beat_schedule *s;
    char err[1024];
    if (beat_schedule_load(b->path, green_wallclock(), &s, err, sizeof err) != 0) {
        wd_log(WD_LOG_ERROR, "beat: reload refused, keeping the running schedule: %s", err);
        return;
    }
    beat_schedule_free(b->pending);
    b->pending = s;
    wd_log(WD_LOG_INFO, "beat: reloaded %s: %zu entries", b->path, s->n);
    green_event_set(&b->kick);
}

/* Take a reloaded schedule. 0, or -ENOMEM (the old one stays). */
static int swap_in(struct wd_beat *b) {
    int64_t *seen = calloc(b->pending->n ? b->pending->n : 1, sizeof *seen);
    if (!seen)
        return -ENOMEM;
    beat_schedule_free(b->sched);
    free(b->seen);
    b->sched = b->pending;
    b->seen = seen;
    b->pending = NULL;
    return 0;
}

/* Fire one tick (queue NULL: mark it only). 0 with *status, or the call's error. */
static int fire(struct wd_worker *w, const beat_entry *e, int64_t tick, bool run,
                broker_beat_status *status) {
    size_t len = 0;
    char *msg = run ? beat_entry_message(e, tick, &len) : NULL;
    if (run && !msg)
        return -ENOMEM;
    double redis_now;
    int rc = broker_beat_fire(w->conn, w->opts->prefix, e->name, tick, run ? e->queue : "",
                              msg ? msg : "", len, status, &redis_now, CALL_TIMEOUT);
    free(msg);
    if (rc == 0 && *status == BROKER_BEAT_FIRED)
        wd_log(run ? WD_LOG_DEBUG : WD_LOG_INFO, "beat: %s: %s beat:%s:%" PRId64, e->name,
               run ? "enqueued" : "dropped the missed tick", e->name, tick);
    return rc;
}

/* Handle entry i at server time now, with mark (have_mark) from Redis. Sets *wake to when
 * the entry needs the next round (server clock). Returns 0 or a call's error. */
static int run_entry(struct wd_worker *w, struct wd_beat *b, size_t i, bool have_mark, int64_t mark,
                     double now, double *wake) {
    const beat_entry *e = &b->sched->entries[i];
    int64_t sec = (int64_t)floor(now);
    if (!have_mark) {
        if (b->seen[i] == 0) {
            int64_t newest = beat_entry_newest(e, INT64_MIN, sec);
            b->seen[i] = newest >= 0 ? newest : sec;
        }
        mark = b->seen[i];
    }
    int64_t next = beat_entry_next(e, sec);
    *wake = next >= 0 ? (double)next : INFINITY;
    broker_beat_status st = BROKER_BEAT_DONE;
    int rc = 0;
    if (e->catch_up == BEAT_CATCH_UP_ALL) {
        int64_t t = beat_entry_next(e, mark);
        for (int n = 0; rc == 0 && t >= 0 && t <= sec; n++) {
            if (n == WD_BEAT_BURST) {
                *wake = now; /* more to catch up: the next round at once */
                break;
            }
            if ((rc = fire(w, e, t, true, &st)) == 0 && st == BROKER_BEAT_NOT_DUE)
                break;
            t = beat_entry_next(e, t);
        }
    } else {
        int64_t t = beat_entry_newest(e, mark, sec);
        if (t >= 0) {
            bool run = e->catch_up == BEAT_CATCH_UP_ONE || now - (double)t <= BEAT_LATE_MAX;
            rc = fire(w, e, t, run, &st);
        }
    }
    if (rc == 0 && st == BROKER_BEAT_NOT_DUE)
        *wake = now + RETRY_SOON;
    return rc;
}

/* One round: the marks and TIME, then every entry. *wake: when the next is due (server
 * clock; INFINITY for never). */
static int round_once(struct wd_worker *w, struct wd_beat *b, double *wake) {
    broker_keys keys;
    if (broker_keys_init(&keys, w->opts->prefix) != 0)
        return -EINVAL;
    broker_batch batch = {0};
    broker_cmd_beat_state(&batch, &keys);
    if (batch.err) {
        int err = batch.err;
        broker_batch_clear(&batch);
        return err;
    }
    redisReply *replies[2] = {NULL, NULL};
    int rc = broker_conn_pipeline(w->conn, batch.n, batch.argcs, batch.argvs, batch.argvlens,
                                  replies, CALL_TIMEOUT);
    broker_batch_clear(&batch);
    double now = 0;
    if (rc == 0)
        rc = broker_reply_time(replies[1], &now);
    *wake = INFINITY;
    for (size_t i = 0; rc == 0 && i < b->sched->n; i++) {
        int64_t mark = 0;
        int found = broker_reply_beat_mark(replies[0], b->sched->entries[i].name, &mark);
        if (found < 0) {
            rc = found;
            break;
        }
        double when;
        rc = run_entry(w, b, i, found == 1, mark, now, &when);
        if (rc == 0 && when < *wake)
            *wake = when;
    }
    for (size_t i = 0; i < 2; i++)
        if (replies[i])
            freeReplyObject(replies[i]);
    return rc;
}

void *wd_beat_main(void *arg) {
    struct wd_worker *w = arg;
    struct wd_beat *b = w->beat;
    if (wd_sched_clock_wait(w->sched) != 0)
        return NULL;
    for (;;) {
        green_event_clear(&b->kick);
        if (b->pending && swap_in(b) != 0)
            wd_log(WD_LOG_ERROR, "beat: out of memory: keeping the running schedule");
        double wake;
        int rc = round_once(w, b, &wake);
        if (rc == -ECANCELED)
            break;
        double wait = RETRY_ERROR; /* seconds; < 0: until a reload */
        if (rc != 0 && !broker_conn_error_is_link(rc) && rc != -ETIMEDOUT)
            wd_log(WD_LOG_ERROR, "beat: firing the due ticks failed: %s; retrying", strerror(-rc));
        if (rc == 0)
            wait = isinf(wake) ? -1 : fmax(0, wake - wd_sched_now_lo(w->sched));
        if (wait != 0 && green_event_wait(&b->kick, wait) == -ECANCELED)
            break;
    }
    return NULL;
}
