/*
 * wd_sched.c - the worker's side of scheduling: the Redis server's clock as seen from
 * here, the mover greenlet, and the retry delays (wd_sched.h says what each promises).
 *
 * The clock. Every move call returns the server's TIME; with this host's clock read just
 * before the call (t0) and just after its reply (t1), the server's clock minus ours lay
 * in [TIME - t1, TIME - t0 + 1 us] when it ran (TIME truncates to the microsecond). The
 * narrowest such interval of the last CLOCK_KEEP seconds is kept: a call that waited
 * behind a big batch on the shared connection gives a wide one. A sample that does not
 * overlap the kept one means a clock was stepped: it replaces it at once.
 *
 * The mover. It clears its wake-up event before each move (a message kept while the move
 * runs is then noted in kept_during, and one kept after it sets the event), moves, and
 * waits for the earliest due time it knows (the lowest score left, or kept_during), at
 * most WD_SCHED_RECHECK seconds. It computes the wait from the lower bound of the
 * server's clock, so it never wakes before a due time (then it would find nothing due,
 * and look again), only up to a round trip after it.
 *
 * Runs on greenlets of the worker's hub.
 */
#include "wd_sched.h"

#include "broker_sched.h"
#include "green.h"
#include "green_check.h"
#include "green_sync.h"
#include "wd_log.h"
#include "wd_worker_internal.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define MOVE_TIMEOUT 10.0
/* How long a narrow clock sample is preferred to newer, wider ones. */
#define CLOCK_KEEP 10.0

struct wd_sched {
    bool have_clock;
    double off_lo, off_hi; /* the server's clock minus ours lies in [off_lo, off_hi] */
    double sampled_at;     /* our clock when the kept sample was taken */
    green_event clock_known;
    green_event kick;   /* a message was kept due before `target` */
    bool moving;        /* a move call is out */
    double kept_during; /* the earliest due kept while it was (0: none) */
    double target;      /* the due time the mover waits for (0: none known) */
    uint64_t rng;       /* xorshift64* state, for jitter */
};

int wd_sched_new(struct wd_sched **out) {
    struct wd_sched *s = calloc(1, sizeof *s);
    *out = s;
    if (!s)
        return -ENOMEM;
    green_event_init(&s->clock_known);
    green_event_init(&s->kick);
    if (getrandom(&s->rng, sizeof s->rng, 0) != (ssize_t)sizeof s->rng)
        s->rng = (uint64_t)(green_wallclock() * 1e6);
    s->rng |= 1; /* xorshift's state must not be zero */
    return 0;
}

void wd_sched_free(struct wd_sched *s) {
    if (!s)
        return;
    green_event_destroy(&s->clock_known);
    green_event_destroy(&s->kick);
    free(s);
}

/* Uniform in [0, 1). */
static double uniform(struct wd_sched *s) {
    uint64_t x = s->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    s->rng = x;
    return (double)((x * 0x2545f4914f6cdd1dull) >> 11) / 9007199254740992.0;
}

/* ---- the clock ------------------------------------------------------------------------ */

static void clock_sample(struct wd_sched *s, double t0, double t1, double redis_now) {
    double lo = redis_now - t1, hi = redis_now - t0 + 1e-6;
    bool overlaps = lo <= s->off_hi && hi >= s->off_lo;
    if (!s->have_clock || !overlaps || hi - lo <= s->off_hi - s->off_lo ||
        t1 - s->sampled_at > CLOCK_KEEP) {
        s->off_lo = lo;
        s->off_hi = hi;
        s->sampled_at = t1;
    }
    if (!s->have_clock) {
        s->have_clock = true;
        green_event_set(&s->clock_known);
    }
}

int wd_sched_clock_wait(struct wd_sched *s) {
    return s->have_clock ? 0 : green_event_wait(&s->clock_known, -1);
}

double wd_sched_now_lo(const struct wd_sched *s) {
    return green_wallclock() + s->off_lo;
}

double wd_sched_now_hi(const struct wd_sched *s) {
    return green_wallclock() + s->off_hi;
}

double wd_sched_offset_lo(const struct wd_sched *s) {
    return s->off_lo;
}

/* ---- the mover ------------------------------------------------------------------------ */

void wd_sched_kept(struct wd_sched *s, double due) {
    if (s->moving) {
        if (s->kept_during == 0 || due < s->kept_during)
            s->kept_during = due;
    } else if (s->target == 0 || due < s->target) {
        s->target = due;
        green_event_set(&s->kick);
    }
}

/* One move of up to *batch messages on conn; 0, or the call's error. After a full
 * batch (more are due: a burst) the next one is twice as large, up to WD_SCHED_BATCH_MAX;
 * otherwise it goes back to WD_SCHED_BATCH. *full when it moved a whole batch. */
static int move_once(struct wd_worker *w, broker_conn *conn, size_t *batch, bool *full) {
    struct wd_sched *s = w->sched;
    broker_sched_moved mv;
    green_event_clear(&s->kick);
    s->moving = true;
    s->kept_during = 0;
    double t0 = green_wallclock();
    int rc = broker_sched_move(conn, w->opts->prefix, w->wid, *batch, &mv, MOVE_TIMEOUT);
    double t1 = green_wallclock();
    s->moving = false;
    if (rc != 0) {
        s->target = s->kept_during;
        return rc;
    }
    clock_sample(s, t0, t1, mv.redis_now);
    if (mv.dead)
        wd_log(WD_LOG_WARNING,
               "dead-lettered %zu malformed entries of the scheduled set (not written by "
               "workerd)",
               mv.dead);
    if (mv.moved)
        wd_log(WD_LOG_DEBUG, "moved %zu due messages to their queues", mv.moved);
    s->target = mv.next_due;
    if (s->kept_during > 0 && (s->target == 0 || s->kept_during < s->target))
        s->target = s->kept_during;
    *full = mv.moved >= *batch;
    *batch = !*full ? WD_SCHED_BATCH : *batch < WD_SCHED_BATCH_MAX ? 2 * *batch : *batch;
    return 0;
}

void *wd_sched_main(void *arg) {
    struct wd_worker *w = arg;
    struct wd_sched *s = w->sched;
    /* A connection of its own: a move must not wait behind the acker's batches on the
     * worker's connection (a burst of due messages is on their queues that much sooner),
     * and a clock sample taken on an idle link is narrow. Without memory for it, the
     * worker's. Its outages are the broker's too, which logs them. */
    broker_conn *own = broker_conn_new(w->opts->broker, "mover", NULL, NULL);
    broker_conn *conn = own ? own : w->conn;
    size_t batch = WD_SCHED_BATCH;
    for (;;) {
        bool full = false;
        int rc = move_once(w, conn, &batch, &full);
        if (rc == -ECANCELED)
            break;
        if (rc != 0) {
            if (!broker_conn_error_is_link(rc) && rc != -ETIMEDOUT)
                wd_log(WD_LOG_ERROR, "moving due messages failed: %s; retrying", strerror(-rc));
            if (broker_conn_wait_up(conn, 1.0) == -ECANCELED ||
                green_sleep(0.1 + 0.1 * uniform(s)) == -ECANCELED)
                break;
            continue;
        }
        if (full)
            continue; /* more are due: the call yielded, others had their turn */
        double wait = WD_SCHED_RECHECK * (0.9 + 0.2 * uniform(s));
        if (s->target > 0 && s->target - wd_sched_now_lo(s) < wait)
            wait = s->target - wd_sched_now_lo(s);
        if (wait > 0 && green_event_wait(&s->kick, wait) == -ECANCELED)
            break;
    }
    if (own)
        broker_conn_close(own);
    return NULL;
}

/* ---- retries -------------------------------------------------------------------------- */

double wd_sched_retry_delay(struct wd_sched *s, const broker_msg *m, double asked) {
    double delay;
    if (asked >= 0) {
        delay = asked;
    } else {
        /* base * 2^retries; past 2^62 the cap has long won. */
        delay = ldexp(m->retry_backoff, m->retries < 62 ? m->retries : 62);
        if (delay > m->retry_backoff_max)
            delay = m->retry_backoff_max;
        if (m->retry_jitter)
            delay *= uniform(s);
    }
    return delay < m->retry_backoff_max ? delay : m->retry_backoff_max;
}
