/*
 * wd_worker.c - the worker's life: connect, register, consume, shut down.
 *
 * Greenlets of one worker, all on the hub of the main thread:
 *
 *   main       wd_worker_run: start-up, then waits for a shutdown request and runs it
 *   fetcher    waits for a free slot in the pool, takes up to min(free, prefetch)
 *              messages in one atomic step (fetch.lua) and starts a job for each; when the
 *              queues are empty it asks the wakers to block for work
 *   wakers     one per queue, each with its own connection: a BLMOVE with a finite timeout
 *              into this worker's landing list (in flight as far as recovery goes), so an
 *              idle worker does not poll and a new message starts within a round trip
 *   acker      stores results and acks in batches (wd_job.c)
 *   heartbeat  refreshes this worker's heartbeat every --heartbeat seconds, and recovers
 *              the messages of workers whose heartbeat expired
 *   jobs       one per running message, from the pool (wd_job.c)
 *
 * Redis outages: broker_conn reconnects with backoff and every loop here waits for it, so
 * the worker keeps running and nothing in memory is dropped; results wait in the acker's
 * queue until they can be stored. State changes are logged once each.
 *
 * Shutdown (warm: SIGTERM or SIGINT; cold: a second SIGINT, or SIGQUIT): stop fetching and
 * close the blocking connections; warm waits up to --shutdown-timeout for running jobs;
 * then the rest are killed (their messages stay in flight), the acker flushes, and one
 * requeue.lua puts every message still in flight (and in the landing lists) back at the
 * head of its queue. Then the worker unregisters and returns 0. With Redis away, the
 * results and the put-back get WARM_FLUSH_SECONDS (cold: COLD_FLUSH_SECONDS) after the
 * tasks have stopped; then the worker returns 1 and leaves its in-flight messages for
 * recovery by another worker.
 */
#include "wd_worker.h"
#include "wd_worker_internal.h"

#include "green_redis.h"
#include "wd_events.h"
#include "wd_http.h"
#include "wd_log.h"
#include "wd_metrics.h"
#include "wd_notify.h"
#include "wd_observe.h"

#include <ev.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FETCH_TIMEOUT 10.0
#define BLOCK_SECONDS 2.0
#define IDLE_REFETCH 1.0
#define WARM_FLUSH_SECONDS 15.0 /* after the tasks: for the last results and the put-back */
#define COLD_FLUSH_SECONDS 5.0

static void on_conn_state(void *arg, const char *name, bool up, const char *err) {
    struct wd_worker *w = arg;
    if (up)
        wd_log_state(name, 1, WD_LOG_INFO, "%s: connected to Redis at %s", name,
                     w->opts->broker_redacted);
    else
        wd_log_state(name, 0, WD_LOG_WARNING,
                     "%s: Redis unreachable (%s); reconnecting with backoff", name, err);
}

/* ---- signals ------------------------------------------------------------------------ */

static struct wd_worker *signal_worker;

static void on_signal(struct ev_loop *loop, ev_signal *sig, int revents) {
    struct wd_worker *w = signal_worker;
    (void)loop;
    (void)revents;
    if (sig->signum == SIGQUIT || (sig->signum == SIGINT && w->stop == WD_WARM)) {
        if (w->stop != WD_COLD) {
            wd_log(WD_LOG_WARNING, "cold shutdown (%s): putting every message back now",
                   strsignal(sig->signum));
            wd_notify("STOPPING=1\nSTATUS=cold shutdown: putting every message back");
        }
        w->stop = WD_COLD;
    } else if (w->stop == WD_RUNNING) {
        w->stop = WD_WARM;
        wd_log(WD_LOG_INFO, "warm shutdown (%s): finishing %zu running tasks, for up to %ld s",
               strsignal(sig->signum), green_pool_running(&w->pool), w->opts->shutdown_timeout);
        /* The stop may take the shutdown timeout plus the put-back's retries: tell systemd. */
        wd_notifyf("STOPPING=1\nSTATUS=warm shutdown: finishing %zu tasks\n"
                   "EXTEND_TIMEOUT_USEC=%lld",
                   green_pool_running(&w->pool),
                   (long long)(w->opts->shutdown_timeout + 35) * 1000000);
    }
    green_event_set(&w->stop_ev);
}

/* SIGHUP: re-read the settings through the caller's hook (logging takes effect at once;
 * the rest is reported as needing a restart). Runs on the hub: it never yields. */
static void on_hup(struct ev_loop *loop, ev_signal *sig, int revents) {
    struct wd_worker *w = signal_worker;
    (void)loop;
    (void)sig;
    (void)revents;
    wd_notify("RELOADING=1\nSTATUS=reloading the configuration");
    if (w->reload && w->reload(w->reload_arg) && w->stop == WD_RUNNING) {
        /* A warm shutdown, then the caller starts again with the new settings; the new
         * start says READY=1. Nothing is lost: what does not finish goes back. */
        wd_log(WD_LOG_INFO, "reload: restarting gracefully to apply the new settings "
               "(finishing %zu running tasks, for up to %ld s)", green_pool_running(&w->pool),
               w->opts->shutdown_timeout);
        w->restart = true;
        w->stop = WD_WARM;
        green_event_set(&w->stop_ev);
        return;
    }
    wd_notify("READY=1\nSTATUS=consuming");
}

/* systemd's watchdog is fed from the loop itself, so a stuck loop gets the service
 * restarted. */
static void on_watchdog(struct ev_loop *loop, ev_timer *t, int revents) {
    (void)loop;
    (void)t;
    (void)revents;
    wd_notify("WATCHDOG=1");
}

/* ---- the consuming greenlets ---------------------------------------------------------- */

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
            wd_log(WD_LOG_WARNING, "put back %zu messages that a failed fetch had moved into "
                   "this worker's in-flight list unseen", moved);
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

static void *fetcher_main(void *arg) {
    struct wd_worker *w = arg;
    bool uncertain = false; /* a failed fetch may have moved messages we never saw */
    double next_check = wd_unix_now() + w->opts->heartbeat_ttl;
    while (w->fetching) {
        /* Also every heartbeat TTL: one HKEYS is cheap, and whatever else might strand an
         * entry (a bug, a hand edit) cannot strand it for long. */
        if (uncertain || wd_unix_now() >= next_check) {
            next_check = wd_unix_now() + w->opts->heartbeat_ttl;
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
        if (wd_observe_should_recycle(w)) {
            recycle(w);
            break;
        }
        size_t n = green_pool_free_slots(&w->pool);
        if (n > (size_t)w->opts->prefetch)
            n = (size_t)w->opts->prefetch;
        if (n > wd_observe_fetch_allowance(w))
            n = wd_observe_fetch_allowance(w);
        /* The special problem of a fast fetcher: a job frees its slot once its result is
         * queued, not stored, so fetching by free slots alone lets results pile up faster
         * than one acker stores them, and the worker ends up holding tens of thousands of
         * messages (memory, and redeliveries after a crash). A worker holds at most twice
         * its concurrency: the running and the finished-but-not-yet-acked. */
        size_t cap = 2 * (size_t)w->opts->concurrency;
        if (w->live_count >= cap) {
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
        for (size_t i = 0; i < count; i++) {
            if (wd_job_start(w, &d[i]) != 0) {
                wd_log_task(WD_LOG_ERROR, d[i].tag, "cannot start a task (no memory or "
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

static int heartbeat_once(struct wd_worker *w) {
    char pid[32], conc[32], started[32];
    snprintf(pid, sizeof pid, "%d", (int)getpid());
    snprintf(conc, sizeof conc, "%d", w->opts->concurrency);
    snprintf(started, sizeof started, "%.3f", w->started_at);
    char queues[1024] = "";
    for (size_t i = 0; i < w->opts->nqueues; i++) {
        if (i)
            strncat(queues, ",", sizeof queues - strlen(queues) - 1);
        strncat(queues, w->opts->queues[i], sizeof queues - strlen(queues) - 1);
    }
    const char *info[] = {"host", w->opts->hostname, "pid", pid, "queues", queues,
                          "concurrency", conc, "pool", wd_pool_name(w->opts->pool),
                          "started", started, "version", wd_version(),
                          "broker", w->opts->broker_redacted};
    return broker_heartbeat(w->bw, info, sizeof info / sizeof *info, 5.0);
}

static void *heartbeat_main(void *arg) {
    struct wd_worker *w = arg;
    for (;;) {
        int rc = heartbeat_once(w);
        if (rc == 0) {
            size_t requeued = 0, dead = 0;
            rc = broker_recover(w->bw, &requeued, &dead, 10.0);
            if (requeued || dead)
                wd_log(WD_LOG_WARNING, "recovered the messages of dead workers: %zu back to "
                       "their queues, %zu dead-lettered as poison pills", requeued, dead);
        }
        if (rc == -ECANCELED || green_sleep(w->opts->heartbeat) == -ECANCELED)
            break;
    }
    return NULL;
}

/* ---- start-up and shutdown ------------------------------------------------------------ */

static void make_worker_id(struct wd_worker *w) {
    char rnd[37];
    broker_msg_new_id(rnd);
    rnd[8] = '\0';
    snprintf(w->wid, sizeof w->wid, "%.64s:%d:%s", w->opts->hostname, (int)getpid(), rnd);
}

static void kill_join(green_t *g) {
    if (g->ptr) {
        green_kill(*g);
        green_join(*g, NULL);
        *g = (green_t){0};
    }
}

/* Put back everything still in flight. Retries while Redis is away, until the shutdown's
 * give_up_at (at least one attempt). */
static int put_back_all(struct wd_worker *w) {
    double give_up = w->give_up_at;
    for (;;) {
        size_t moved = 0;
        double left = give_up - wd_unix_now();
        int rc = broker_requeue(w->bw, NULL, 0, &moved,
                                left < 1.0 ? 1.0 : left < 5.0 ? left : 5.0);
        if (rc == 0) {
            if (moved)
                wd_log(WD_LOG_INFO, "put %zu unfinished messages back at the head of their "
                       "queues", moved);
            return 0;
        }
        if (wd_unix_now() >= give_up) {
            wd_log(WD_LOG_ERROR, "could not put unfinished messages back (%s): another worker "
                   "will recover them once this worker's heartbeat expires", strerror(-rc));
            return -1;
        }
        broker_conn_wait_up(w->conn, 1.0);
    }
}

static int shutdown_worker(struct wd_worker *w, green_t *fetcher, green_t *wakers,
                           green_t *acker, green_t *heartbeat) {
    w->fetching = false;
    kill_join(fetcher);
    for (size_t i = 0; i < w->opts->nqueues; i++)
        kill_join(&wakers[i]);
    for (size_t i = 0; i < w->opts->nqueues; i++) {
        broker_conn_close(w->blocking[i]);
        w->blocking[i] = NULL;
    }
    double deadline = wd_unix_now() + (double)w->opts->shutdown_timeout;
    while (w->stop == WD_WARM && green_pool_running(&w->pool) > 0 && wd_unix_now() < deadline)
        green_pool_join(&w->pool, 0.2);
    /* From here on, Redis gets a bounded time to take the results and the put-back: a
     * shutdown during an outage must still end (the messages stay in flight for
     * recovery, and the exit code says so). */
    w->give_up_at =
        wd_unix_now() + (w->stop == WD_COLD ? COLD_FLUSH_SECONDS : WARM_FLUSH_SECONDS);
    size_t killed = green_pool_kill_all(&w->pool);
    if (killed)
        wd_log(WD_LOG_INFO, "%zu tasks did not finish in time; their messages go back", killed);
    green_pool_join(&w->pool, -1);
    wd_job_discard_unstarted(w);
    green_queue_try_put(&w->acks, NULL);
    green_join(*acker, NULL);
    *acker = (green_t){0};
    kill_join(heartbeat);
    int rc = put_back_all(w);
    if (rc == 0)
        broker_unregister(w->bw, 5.0);
    return rc;
}

int wd_worker_run(const struct wd_options *opts, wd_reload_fn reload, void *reload_arg) {
    struct wd_worker *w = calloc(1, sizeof *w);
    if (!w)
        return 1;
    w->opts = opts;
    w->reload = reload;
    w->reload_arg = reload_arg;
    w->started_at = wd_unix_now();
    w->fetching = true;
    make_worker_id(w);
    broker_limits_default(&w->limits);
    w->limits.max_message_bytes = opts->max_message_size;
    green_pool_init(&w->pool, (size_t)opts->concurrency);
    green_queue_init(&w->acks, 0);
    green_event_init(&w->want_work);
    green_event_init(&w->work_landed);
    green_event_init(&w->stop_ev);
    green_event_init(&w->acked);

    int code = 1;
    w->conn = broker_conn_new(opts->broker, "broker", on_conn_state, w);
    w->results_conn = strcmp(opts->result_backend, opts->broker) == 0
                          ? w->conn
                          : broker_conn_new(opts->result_backend, "results", on_conn_state, w);
    w->blocking = calloc(opts->nqueues, sizeof *w->blocking);
    green_t *wakers = calloc(opts->nqueues, sizeof *wakers);
    broker_worker_cfg cfg = {
        .prefix = opts->prefix, .wid = w->wid, .queues = (const char *const *)opts->queues,
        .nqueues = opts->nqueues, .result_expires = opts->result_expires,
        .heartbeat_ttl = opts->heartbeat_ttl, .max_redeliveries = opts->max_redeliveries,
    };
    w->metrics = wd_metrics_new();
    if (!w->conn || !w->results_conn || !w->blocking || !wakers || !w->metrics ||
        !(w->bw = broker_worker_new(&cfg, w->conn, w->results_conn))) {
        wd_log(WD_LOG_ERROR, "out of memory at start-up");
        goto out;
    }
    for (size_t i = 0; i < opts->nqueues; i++) {
        char name[BROKER_QUEUE_NAME_MAX + 16];
        snprintf(name, sizeof name, "blocking:%s", opts->queues[i]);
        if (!(w->blocking[i] = broker_conn_new(opts->broker, name, on_conn_state, w)))
            goto out;
    }

    signal_worker = w;
    ev_signal sigs[4];
    int signums[4] = {SIGTERM, SIGINT, SIGQUIT, SIGHUP};
    sigset_t mask;
    sigemptyset(&mask);
    for (int i = 0; i < 4; i++) {
        ev_signal_init(&sigs[i], signums[i] == SIGHUP ? on_hup : on_signal, signums[i]);
        ev_signal_start(green_loop(), &sigs[i]);
        sigaddset(&mask, signums[i]);
    }
    /* A supervised child starts with these blocked (wd_supervisor.c), so that a signal sent
     * before the watchers existed waited for them; libev 4.33 leaves the mask alone. */
    sigprocmask(SIG_UNBLOCK, &mask, NULL);
    ev_timer watchdog;
    int64_t watchdog_usec = wd_notify_watchdog_usec();
    ev_timer_init(&watchdog, on_watchdog, 0., watchdog_usec > 0 ? watchdog_usec / 2e6 : 1.);
    if (watchdog_usec > 0)
        ev_timer_again(green_loop(), &watchdog);

    char queues[1024] = "";
    for (size_t i = 0; i < opts->nqueues; i++) {
        if (i)
            strncat(queues, ",", sizeof queues - strlen(queues) - 1);
        strncat(queues, opts->queues[i], sizeof queues - strlen(queues) - 1);
    }
    wd_log(WD_LOG_INFO, "workerd %s starting: pool %s, concurrency %d, queues %s, broker %s, "
           "worker id %s", wd_version(), wd_pool_name(opts->pool), opts->concurrency, queues,
           opts->broker_redacted, w->wid);

    green_t fetcher = {0}, acker = {0}, heartbeat = {0};
    /* The endpoint comes up first, so /healthz can say "starting" while Redis is away; a
     * port that cannot be had is a failed start, not a worker without its metrics. */
    bool failed_start = false;
    if (opts->http_host && !(w->http = wd_http_start(w, opts->http_host, opts->http_port))) {
        failed_start = true;
        w->stop = WD_COLD;
    }
    if (opts->events && w->stop == WD_RUNNING &&
        !(w->events = wd_events_start(w->conn, opts->prefix, w->wid))) {
        wd_log(WD_LOG_ERROR, "cannot start the task event publisher");
        failed_start = true;
        w->stop = WD_COLD;
    }
    while (w->stop == WD_RUNNING && broker_conn_wait_up(w->conn, 1.0) != 0)
        ;
    if (w->stop == WD_RUNNING) {
        heartbeat_once(w);
        if (green_spawn(&acker, wd_acker_main, w) || green_spawn(&heartbeat, heartbeat_main, w) ||
            green_spawn(&fetcher, fetcher_main, w)) {
            wd_log(WD_LOG_ERROR, "cannot start the worker's greenlets");
            w->stop = WD_COLD;
        }
        for (size_t i = 0; w->stop == WD_RUNNING && i < opts->nqueues; i++) {
            struct waker *k = malloc(sizeof *k);
            if (k)
                *k = (struct waker){w, i};
            if (!k || green_spawn(&wakers[i], waker_main, k) != 0) {
                free(k);
                w->stop = WD_COLD;
                break;
            }
        }
        if (w->stop == WD_RUNNING) {
            w->consuming = true;
            wd_log(WD_LOG_INFO, "ready: consuming %s", queues);
            wd_notifyf("READY=1\nSTATUS=consuming %s", queues);
        }
        while (w->stop == WD_RUNNING)
            green_event_wait(&w->stop_ev, -1);
    }
    if (acker.ptr)
        code = shutdown_worker(w, &fetcher, wakers, &acker, &heartbeat) == 0 ? 0 : 1;
    else
        code = failed_start ? 1 : 0; /* stopped before connecting: nothing was taken */
    /* After the shutdown, so that /healthz said "shutting down" all along, and the events
     * of the last tasks went out. */
    wd_events_stop(w->events, 2.0);
    wd_http_stop(w->http);
    wd_log(WD_LOG_INFO, "stopped: %llu received, %llu succeeded, %llu failed (%llu invalid), "
           "%llu put back", (unsigned long long)w->received, (unsigned long long)w->succeeded,
           (unsigned long long)w->failed, (unsigned long long)w->invalid,
           (unsigned long long)w->put_back);
    for (int i = 0; i < 4; i++)
        ev_signal_stop(green_loop(), &sigs[i]);
    /* ev_signal_stop gives the signals back their default action, which is to die: a
     * shutdown signal arriving now (a supervisor forwarding SIGTERM to a child that is
     * already on its way out) must not turn a clean exit into a death by signal. */
    sigprocmask(SIG_BLOCK, &mask, NULL);
    ev_timer_stop(green_loop(), &watchdog);
    signal_worker = NULL;
out:
    for (size_t i = 0; w->blocking && i < opts->nqueues; i++)
        broker_conn_close(w->blocking[i]);
    free(w->blocking);
    free(wakers);
    broker_worker_free(w->bw);
    if (w->results_conn != w->conn)
        broker_conn_close(w->results_conn);
    broker_conn_close(w->conn);
    green_queue_destroy(&w->acks);
    green_pool_destroy(&w->pool);
    green_event_destroy(&w->want_work);
    green_event_destroy(&w->work_landed);
    green_event_destroy(&w->stop_ev);
    green_event_destroy(&w->acked);
    bool restart = w->restart;
    wd_metrics_free(w->metrics);
    free(w);
    return code == 0 && restart ? WD_WORKER_RESTART : code;
}
