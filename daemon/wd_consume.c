/*
 * wd_consume.c - the greenlets that keep a worker consuming, started by wd_worker.c once
 * Redis is up and stopped (killed) by its shutdown:
 *
 *   fetcher    waits for a free slot in the pool, takes up to min(free, prefetch)
 *              messages in one atomic step (fetch.lua) and starts a job for each
 *              (wd_job.c); when the queues are empty it asks the wakers to block for work
 *   wakers     one per queue, each with its own connection: a BLMOVE with a finite timeout
 *              into this worker's landing list (in flight as far as recovery goes), so an
 *              idle worker does not poll and a new message starts within a round trip;
 *              a waker of a paused queue does not block on it (it asks every 2 s)
 *   heartbeat  refreshes this worker's heartbeat every --heartbeat seconds, and recovers
 *              the messages of workers whose heartbeat expired
 *
 * Redis outages: every loop here waits for its connection (broker_conn reconnects with
 * backoff) and goes on; nothing is dropped.
 *
 * Runs on greenlets of the worker's hub.
 */
#include "wd_worker_internal.h"

#include "broker_stats.h"
#include "green_check.h"
#include "wd_log.h"
#include "wd_notify.h"
#include "wd_observe.h"
#include "wd_rate.h"
#include "wd_sched.h"
#include "wd_revoke.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FETCH_TIMEOUT 10.0
#define BLOCK_SECONDS 2.0
#define IDLE_REFETCH 1.0
#define HEARTBEAT_TIMEOUT 5.0
#define RECOVER_TIMEOUT 10.0

/* The special problem of a lost fetch reply: when a fetch fails after reaching Redis
 * (a time-out, the link dropping mid-reply), the script may have moved messages into this
 * worker's in-flight hash without the worker ever hearing of them. Recovery would only
 * find them once this worker dies, which may be never. So after such a failure the
 * fetcher compares the in-flight hash with the jobs it holds, and puts back every entry
 * that no job owns (without counting a redelivery: nothing ran). Only the fetcher adds
 * entries, and it is the one doing this, so nothing can be added meanwhile. It does the
 * same every heartbeat TTL, as a safety net. */
static int reconcile(struct wd_worker *w) {
    char **tags = NULL;
    size_t ntags = 0, norphans = 0, moved = 0;
    int rc = broker_inflight_tags(w->bw, &tags, &ntags, FETCH_TIMEOUT);
    if (rc)
        return rc;
    const char **orphans = calloc(ntags ? ntags : 1, sizeof *orphans);
    rc = orphans ? wd_job_orphans(w, tags, ntags, orphans, &norphans) : -ENOMEM;
    if (rc == 0 && norphans) {
        rc = broker_requeue(w->bw, orphans, norphans, &moved, FETCH_TIMEOUT);
        if (rc == 0 && moved)
            wd_log(WD_LOG_WARNING,
                   "put back %zu messages that a failed fetch (or a Redis failover) "
                   "left in this worker's in-flight list unseen",
                   moved);
    }
    free(orphans);
    broker_tags_free(tags, ntags);
    return rc;
}

/* --max-tasks-per-child or --max-memory-per-child says this worker is done: let the
 * running tasks finish, then shut down warm (the process exits 0 and its supervisor starts
 * a fresh one). Returns -ECANCELED when a shutdown overtook it. */
static int recycle(struct wd_worker *w) {
    int rc = green_pool_join(&w->pool, -1);
    if (rc == 0 && w->stop == WD_RUNNING) {
        w->stop = WD_WARM;
        wd_notify("STOPPING=1\nSTATUS=recycling");
        green_event_set(&w->stop_ev);
    }
    return rc;
}

void *wd_fetcher_main(void *arg) {
    struct wd_worker *w = arg;
    bool uncertain = false; /* a failed fetch may have moved messages we never saw */
    /* After every reconnect, too: a Redis that failed over to a replica (or restarted from
     * an older snapshot) may have lost acks this worker saw confirmed, and so hold
     * in-flight entries of tasks that are finished here. They are put back and run again:
     * a duplicate the failover explains, never a message stuck until this worker dies. */
    unsigned long drops_seen = broker_conn_drops(w->conn);
    double next_check = green_wallclock() + w->opts->heartbeat_ttl;
    /* Due times are on the Redis server's clock: take nothing before it is known. */
    if (wd_sched_clock_wait(w->sched) != 0)
        return NULL;
    /* --rate-limit goes to Redis before the first message: every worker then agrees. */
    if (wd_rate_seed(w) != 0)
        return NULL;
    while (w->fetching) {
        /* Also every heartbeat TTL: one HKEYS is cheap, and whatever else might strand an
         * entry (a bug, a hand edit) cannot strand it for long. */
        if (broker_conn_drops(w->conn) != drops_seen && broker_conn_is_up(w->conn)) {
            drops_seen = broker_conn_drops(w->conn);
            uncertain = true;
        }
        if (uncertain || green_wallclock() >= next_check) {
            next_check = green_wallclock() + w->opts->heartbeat_ttl;
            int rc = reconcile(w);
            if (rc == -ECANCELED)
                break;
            if (rc != 0) {
                if (broker_conn_wait_up(w->conn, 1.0) == -ECANCELED ||
                    green_sleep(0.1) == -ECANCELED)
                    break;
                continue;
            }
            uncertain = false;
        }
        if (green_pool_wait_available(&w->pool, -1) != 0)
            break;
        if (wd_observe_should_recycle(w->obs)) {
            recycle(w);
            break;
        }
        size_t n = green_pool_free_slots(&w->pool);
        if (n > (size_t)w->opts->prefetch)
            n = (size_t)w->opts->prefetch;
        if (n > wd_observe_fetch_allowance(w->obs))
            n = wd_observe_fetch_allowance(w->obs);
        /* The special problem of a fast fetcher: a job frees its slot once its result is
         * queued, not stored, so fetching by free slots alone lets results pile up faster
         * than one acker stores them, and the worker ends up holding tens of thousands of
         * messages (memory, and redeliveries after a crash). A worker holds at most twice
         * its concurrency: the running and the finished-but-not-yet-acked. */
        size_t cap = 2 * (size_t)w->opts->concurrency;
        /* While Redis refuses to store results (out of memory, ...), new work would only
         * pile up more results it cannot take: wait until the acker gets a batch in. */
        if (w->live_count >= cap || wd_observe_refusal(w->obs)) {
            green_event_clear(&w->acked);
            if (green_event_wait(&w->acked, 1.0) == -ECANCELED)
                break;
            continue;
        }
        if (n > cap - w->live_count)
            n = cap - w->live_count;
        broker_delivery *d = NULL;
        size_t count = 0;
        /* Cleared before the fetch, not after it: a waker's BLMOVE on its own connection
         * can land a message just after fetch.lua ran, and its reply can be handled
         * before the fetch's. Clearing afterwards would lose that wake-up, and the
         * message would wait out IDLE_REFETCH. A spurious set costs one empty fetch. */
        green_event_clear(&w->work_landed);
        int rc = broker_fetch(w->bw, n, &d, &count, FETCH_TIMEOUT);
        if (rc == -ECANCELED)
            break;
        if (rc != 0) {
            uncertain = true;
            if (!broker_conn_error_is_link(rc) && rc != -ETIMEDOUT)
                wd_log(WD_LOG_ERROR, "fetching messages failed: %s; retrying in 1 s",
                       strerror(-rc));
            if (broker_conn_wait_up(w->conn, 1.0) == -ECANCELED || green_sleep(0.1) == -ECANCELED)
                break;
            continue;
        }
        if (count > 0) /* the jobs check revocations written up to this fetch */
            wd_revoke_fetched(w->revoke, broker_worker_control_tail(w->bw));
        for (size_t i = 0; i < count; i++) {
            if (wd_job_start(w, &d[i]) != 0) {
                wd_log_task(WD_LOG_ERROR, d[i].tag,
                            "cannot start a task (no memory or "
                            "greenlet limit); it goes back to its queue");
                uncertain = true; /* the next round puts it back */
            }
        }
        broker_deliveries_free(d, count);
        if (count == 0) {
            green_event_set(&w->want_work);
            rc = green_event_wait(&w->work_landed, IDLE_REFETCH);
            green_event_clear(&w->want_work);
            if (rc == -ECANCELED)
                break;
        }
    }
    return NULL;
}

struct waker {
    struct wd_worker *w;
    size_t index;
};

static void *waker_main(void *arg) {
    struct waker *k = arg;
    struct wd_worker *w = k->w;
    broker_conn *conn = w->blocking[k->index];
    const char *queue = w->opts->queues[k->index];
    for (;;) {
        if (green_event_wait(&w->want_work, -1) != 0)
            break;
        int rc = broker_wait_for_work(w->bw, conn, queue, BLOCK_SECONDS);
        if (rc == 1) {
            green_event_set(&w->work_landed);
        } else if (rc == 2) { /* paused: ask again later; the fetcher polls meanwhile */
            if (green_sleep(BLOCK_SECONDS) == -ECANCELED)
                break;
        } else if (rc == -ECANCELED) {
            break;
        } else if (rc < 0) {
            if (broker_conn_wait_up(conn, 1.0) == -ECANCELED || green_sleep(0.2) == -ECANCELED)
                break;
        }
    }
    free(k);
    return NULL;
}

int wd_heartbeat_once(struct wd_worker *w) {
    char pid[32], conc[32], started[32], beat[32];
    /* The beat, the start and the stats minute on the Redis server's clock as the scheduler
     * knows it: readers on other hosts compare them with their clock (heartbeat age,
     * uptime, the last hour's chart), and this host's clock may be off. */
    double now = wd_sched_now_lo(w->sched);
    snprintf(pid, sizeof pid, "%d", (int)getpid());
    snprintf(conc, sizeof conc, "%d", w->opts->concurrency);
    snprintf(started, sizeof started, "%.3f", w->started_at + (now - green_wallclock()));
    snprintf(beat, sizeof beat, "%.3f", now);
    const char *info[] = {"host",        w->opts->hostname,
                          "pid",         pid,
                          "queues",      w->queue_list,
                          "concurrency", conc,
                          "pool",        wd_pool_name(w->opts->pool),
                          "started",     started,
                          "version",     wd_version(),
                          "broker",      w->opts->broker_redacted,
                          "beat",        beat};
    /* The tasks that ended since the last heartbeat that got through, added to the fleet's
     * per-minute counters in the same round trip (broker_stats.h). */
    const struct wd_counters *c = wd_observe_counters(w->obs);
    uint64_t processed = c->succeeded + c->failed, failed = c->failed;
    broker_batch b = {0};
    broker_keys keys;
    if (broker_keys_init(&keys, w->opts->prefix) != 0)
        broker_batch_fail(&b, -EINVAL);
    broker_cmd_stats_add(&b, &keys, (long long)(now / 60),
                         (long long)(processed - w->stats_processed),
                         (long long)(failed - w->stats_failed));
    /* A counters key that holds something else (a hand edit) refuses its commands: the
     * counts wait, the heartbeat and what follows it (recovery) go on. */
    int counted = 0;
    int rc =
        broker_heartbeat(w->bw, info, sizeof info / sizeof *info, &b, &counted, HEARTBEAT_TIMEOUT);
    broker_batch_clear(&b);
    if (rc == 0 && counted == 0) {
        w->stats_processed = processed;
        w->stats_failed = failed;
    }
    return rc;
}

void *wd_heartbeat_main(void *arg) {
    struct wd_worker *w = arg;
    for (;;) {
        int rc = wd_heartbeat_once(w);
        if (rc == 0) {
            size_t requeued = 0, dead = 0;
            rc = broker_recover(w->bw, &requeued, &dead, RECOVER_TIMEOUT);
            if (requeued || dead)
                wd_log(WD_LOG_WARNING,
                       "recovered the messages of dead workers: %zu back to "
                       "their queues, %zu dead-lettered as poison pills",
                       requeued, dead);
        }
        if (rc == -ECANCELED || green_sleep(w->opts->heartbeat) == -ECANCELED)
            break;
    }
    return NULL;
}

int wd_waker_start(struct wd_worker *w, size_t index, green_t *g) {
    struct waker *k = malloc(sizeof *k);
    if (!k)
        return -ENOMEM;
    *k = (struct waker){w, index};
    int rc = green_spawn(g, waker_main, k);
    if (rc != 0)
        free(k);
    return rc;
}
