/*
 * wd_worker.c - the worker's life: connect, register, consume, shut down.
 *
 * Greenlets of one worker, all on the hub of the main thread:
 *
 *   main       wd_worker_run: start-up, then waits for a shutdown request and runs it
 *   fetcher    takes messages and starts a job for each       (wd_consume.c)
 *   wakers     one per queue, block in Redis for new work      (wd_consume.c)
 *   heartbeat  keeps this worker registered, recovers the dead (wd_consume.c)
 *   mover      puts due messages from the scheduled set on their queues (wd_sched.c)
 *   beat       enqueues the due ticks of --beat's periodic tasks     (wd_beat.c)
 *   acker      stores results and acks in batches              (wd_job.c)
 *   jobs       one per running message, from the pool          (wd_job.c)
 *
 * Start-up is a sequence of steps, each in a function of its own: run_new (the worker's
 * state), connect (the Redis connections and the broker's view of this worker),
 * watch_signals, start_observers (--http, -E), wait_for_broker (an unreachable Redis is
 * waited for, with reconnection and backoff, for as long as it takes: a worker may start
 * before its Redis), start_consuming (the acker, the registration, the heartbeat, the
 * fetcher, the wakers), and "ready". A step that fails logs one line, "start-up failed:
 * <what failed>: <why>", and the run ends with exit code 1, never "ready"; what had
 * started is stopped again (once start_consuming has begun, by the ordinary cold shutdown,
 * which puts back whatever might have been taken). A shutdown asked for while waiting for
 * Redis ends the run with 0: nothing was taken.
 *
 * Redis outages: broker_conn reconnects with backoff and every loop of the worker waits
 * for it, so the worker keeps running and nothing in memory is dropped; results wait in
 * the acker's queue until they can be stored. State changes are logged once each
 * (wd_worker_conn_state).
 *
 * Shutdown (warm: SIGTERM or SIGINT; cold: a second SIGINT, or SIGQUIT): stop fetching and
 * close the blocking connections; warm waits up to --shutdown-timeout for running jobs;
 * then the rest are killed (their messages stay in flight), the acker flushes, and one
 * requeue.lua puts every message still in flight (and in the landing lists) back at the
 * head of its queue. Then the worker unregisters and returns 0. With Redis away, the
 * results and the put-back get WD_SHUTDOWN_WARM_FLUSH (cold: WD_SHUTDOWN_COLD_FLUSH)
 * seconds after the tasks have stopped; then the worker returns 1 and leaves its in-flight
 * messages for recovery by another worker. wd_shutdown.h has every timing of this.
 */
#include "wd_worker.h"
#include "wd_worker_internal.h"

#include "broker_keys.h"
#include "wd_beat.h"
#include "green_check.h"
#include "task_host.h"
#include "wd_http.h"
#include "wd_limits.h"
#include "wd_log.h"
#include "wd_notify.h"
#include "wd_observe.h"
#include "wd_rate.h"
#include "wd_sched.h"
#include "wd_revoke.h"
#include "wd_shutdown.h"

#include <ev.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The signals a worker handles: the first three shut it down, SIGHUP reloads. */
static const int handled[] = {SIGTERM, SIGINT, SIGQUIT, SIGHUP};
#define NSIGNALS (sizeof handled / sizeof *handled)

/* One run of the worker: the state it shares with the other wd_worker_internal.h files
 * (w), and what only this file touches. */
struct run {
    struct wd_worker w;
    wd_reload_fn reload;
    void *reload_arg;
    green_t fetcher, acker, heartbeat, mover, beat;
    green_t *wakers; /* one per queue */
    bool watching;   /* the signal and watchdog watchers are started */
    ev_signal sigs[NSIGNALS];
    sigset_t mask;
    ev_timer watchdog;
};

void wd_worker_conn_state(void *arg, const char *name, bool up, const char *err) {
    struct wd_worker *w = arg;
    if (up)
        wd_log_state(name, 1, WD_LOG_INFO, "%s: connected to Redis at %s", name,
                     w->opts->broker_redacted);
    else
        wd_log_state(name, 0, WD_LOG_WARNING,
                     "%s: Redis unreachable (%s); reconnecting with backoff", name, err);
}

/* ---- signals ------------------------------------------------------------------------ */

static void on_signal(struct ev_loop *loop, ev_signal *sig, int revents) {
    struct run *r = sig->data;
    struct wd_worker *w = &r->w;
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
        /* The stop may take the shutdown timeout plus what comes after the tasks: tell
         * systemd (wd_shutdown.h). */
        wd_notifyf("STOPPING=1\nSTATUS=warm shutdown: finishing %zu tasks\n"
                   "EXTEND_TIMEOUT_USEC=%lld",
                   green_pool_running(&w->pool),
                   (long long)(w->opts->shutdown_timeout + WD_SHUTDOWN_AFTER_TASKS) * 1000000);
    }
    green_event_set(&w->stop_ev);
}

/* SIGHUP: re-read the settings through the caller's hook (logging takes effect at once;
 * the rest is reported as needing a restart). Runs on the hub: it never yields. */
static void on_hup(struct ev_loop *loop, ev_signal *sig, int revents) {
    struct run *r = sig->data;
    struct wd_worker *w = &r->w;
    (void)loop;
    (void)revents;
    wd_notify("RELOADING=1\nSTATUS=reloading the configuration");
    bool restart = r->reload && r->reload(r->reload_arg);
    if (!restart)
        wd_beat_reload(w->beat); /* the file's entries change live; a bad file is refused */
    if (restart && w->stop == WD_RUNNING) {
        /* A warm shutdown, then the caller starts again with the new settings; the new
         * start says READY=1. Nothing is lost: what does not finish goes back. */
        wd_log(WD_LOG_INFO,
               "reload: restarting gracefully to apply the new settings "
               "(finishing %zu running tasks, for up to %ld s)",
               green_pool_running(&w->pool), w->opts->shutdown_timeout);
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

static void watch_signals(struct run *r) {
    sigemptyset(&r->mask);
    for (size_t i = 0; i < NSIGNALS; i++) {
        ev_signal_init(&r->sigs[i], handled[i] == SIGHUP ? on_hup : on_signal, handled[i]);
        r->sigs[i].data = r;
        ev_signal_start(green_loop(), &r->sigs[i]);
        sigaddset(&r->mask, handled[i]);
    }
    /* A supervised child starts with these blocked (wd_supervisor.c), so that a signal sent
     * before the watchers existed waited for them; libev 4.33 leaves the mask alone. */
    sigprocmask(SIG_UNBLOCK, &r->mask, NULL);
    int64_t watchdog_usec = wd_notify_watchdog_usec();
    ev_timer_init(&r->watchdog, on_watchdog, 0., watchdog_usec > 0 ? watchdog_usec / 2e6 : 1.);
    if (watchdog_usec > 0)
        ev_timer_again(green_loop(), &r->watchdog);
    r->watching = true;
}

static void unwatch_signals(struct run *r) {
    if (!r->watching)
        return;
    for (size_t i = 0; i < NSIGNALS; i++)
        ev_signal_stop(green_loop(), &r->sigs[i]);
    /* ev_signal_stop gives the signals back their default action, which is to die: a
     * shutdown signal arriving now (a supervisor forwarding SIGTERM to a child that is
     * already on its way out) must not turn a clean exit into a death by signal. */
    sigprocmask(SIG_BLOCK, &r->mask, NULL);
    ev_timer_stop(green_loop(), &r->watchdog);
    r->watching = false;
}

/* ---- shutdown ----------------------------------------------------------------------- */

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
        double left = give_up - green_wallclock();
        double timeout = left < WD_SHUTDOWN_PUT_BACK_MIN    ? WD_SHUTDOWN_PUT_BACK_MIN
                         : left < WD_SHUTDOWN_PUT_BACK_CALL ? left
                                                            : WD_SHUTDOWN_PUT_BACK_CALL;
        int rc = broker_requeue(w->bw, NULL, 0, &moved, timeout);
        if (rc == 0) {
            if (moved)
                wd_log(WD_LOG_INFO,
                       "put %zu unfinished messages back at the head of their "
                       "queues",
                       moved);
            return 0;
        }
        if (green_wallclock() >= give_up) {
            wd_log(WD_LOG_ERROR,
                   "could not put unfinished messages back (%s): another worker "
                   "will recover them once this worker's heartbeat expires",
                   strerror(-rc));
            return -1;
        }
        broker_conn_wait_up(w->conn, WD_SHUTDOWN_LINK_POLL);
    }
}

/* Stop consuming and give back what is held. Safe after a start that failed halfway:
 * greenlets that were never spawned have zero handles. Requires the acker to run. */
static int shutdown_worker(struct run *r) {
    struct wd_worker *w = &r->w;
    w->fetching = false;
    kill_join(&r->fetcher);
    kill_join(&r->mover);
    kill_join(&r->beat);
    for (size_t i = 0; i < w->opts->nqueues; i++)
        kill_join(&r->wakers[i]);
    for (size_t i = 0; i < w->opts->nqueues; i++) {
        broker_conn_close(w->blocking[i]);
        w->blocking[i] = NULL;
    }
    double deadline = green_wallclock() + (double)w->opts->shutdown_timeout;
    while (w->stop == WD_WARM && green_pool_running(&w->pool) > 0 && green_wallclock() < deadline)
        green_pool_join(&w->pool, 0.2);
    /* From here on, Redis gets a bounded time to take the results and the put-back: a
     * shutdown during an outage must still end (the messages stay in flight for
     * recovery, and the exit code says so). */
    w->give_up_at =
        green_wallclock() + (w->stop == WD_COLD ? WD_SHUTDOWN_COLD_FLUSH : WD_SHUTDOWN_WARM_FLUSH);
    size_t killed = green_pool_kill_all(&w->pool);
    if (killed)
        wd_log(WD_LOG_INFO, "%zu tasks did not finish in time; their messages go back", killed);
    green_pool_join(&w->pool, -1);
    wd_job_discard_unstarted(w);
    wd_revoke_stop(w->revoke); /* no job asks any more */
    w->revoke = NULL;
    green_queue_try_put(&w->acks, NULL);
    green_join(r->acker, NULL);
    r->acker = (green_t){0};
    kill_join(&r->heartbeat);
    int rc = put_back_all(w);
    if (rc == 0)
        broker_unregister(w->bw, WD_SHUTDOWN_UNREGISTER_CALL);
    return rc;
}

/* ---- start-up, step by step ---------------------------------------------------------- */

static void make_worker_id(struct wd_worker *w) {
    char rnd[37];
    broker_msg_new_id(rnd);
    rnd[8] = '\0';
    snprintf(w->wid, sizeof w->wid, "%.64s:%d:%s", w->opts->hostname, (int)getpid(), rnd);
}

static void run_free(struct run *r);

/* The run's state, with nothing started yet. NULL (logged) when out of memory. */
static struct run *run_new(const struct wd_options *opts, wd_reload_fn reload, void *reload_arg) {
    struct run *r = calloc(1, sizeof *r);
    if (!r) {
        wd_log(WD_LOG_ERROR, "start-up failed: the worker's state: %s", strerror(ENOMEM));
        return NULL;
    }
    struct wd_worker *w = &r->w;
    r->reload = reload;
    r->reload_arg = reload_arg;
    w->opts = opts;
    w->started_at = green_wallclock();
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
    w->queue_list = broker_queue_list_join((const char *const *)opts->queues, opts->nqueues);
    w->blocking = calloc(opts->nqueues, sizeof *w->blocking);
    r->wakers = calloc(opts->nqueues, sizeof *r->wakers);
    int rc = wd_observe_new(&w->obs, opts->max_tasks_per_child, opts->max_memory_per_child);
    if (rc == 0)
        rc = wd_limits_new(&w->lims, opts->soft_time_limit, opts->time_limit, opts->blocking_warn);
    if (rc == 0)
        rc = wd_sched_new(&w->sched);
    if (rc == 0)
        rc = wd_rate_new(&w->rate);
    if (rc == 0 && opts->beat && wd_beat_new(&w->beat, opts->beat) != 0) {
        run_free(r); /* wd_beat_new logged why */
        return NULL;
    }
    if (rc == 0 && (!w->queue_list || !w->blocking || !r->wakers))
        rc = -ENOMEM;
    if (rc != 0) {
        wd_log(WD_LOG_ERROR, "start-up failed: the worker's state: %s", strerror(-rc));
        run_free(r);
        return NULL;
    }
    return r;
}

/* broker_conn_new, logged when it fails (it fails only for want of memory or of a
 * greenlet for the connection). */
static broker_conn *conn_new(struct wd_worker *w, const char *url, const char *name,
                             const char *what) {
    broker_conn *c = broker_conn_new(url, name, wd_worker_conn_state, w);
    if (!c)
        wd_log(WD_LOG_ERROR,
               "start-up failed: the %s: cannot create it (out of memory, or no "
               "greenlet could be spawned for it)",
               what);
    return c;
}

/* task_log's lines: the worker's log, with the task id. */
_Static_assert(TASK_LOG_DEBUG == (int)WD_LOG_DEBUG && TASK_LOG_INFO == (int)WD_LOG_INFO &&
                   TASK_LOG_WARNING == (int)WD_LOG_WARNING && TASK_LOG_ERROR == (int)WD_LOG_ERROR,
               "task_env.h's log levels are wd_log.h's");
static void task_log_line(enum task_log_level level, const char *task_id, const char *fmt,
                          va_list ap) {
    wd_logv((enum wd_log_level)level, task_id, fmt, ap);
}

/* The Redis connections (they connect in the background) and the broker's view of this
 * worker. Returns 0 or -1 (logged). */
static int connect_broker(struct run *r) {
    struct wd_worker *w = &r->w;
    const struct wd_options *opts = w->opts;
    task_host_cfg tasks = {
        .broker_url = opts->broker,
        .results_url = opts->result_backend,
        .prefix = opts->prefix,
        .log = task_log_line,
        .turn = opts->http_host_rate || opts->http_host_concurrency > 0 ? wd_rate_host_turn : NULL,
        .release = wd_rate_host_release,
        .turn_arg = w};
    int rc = task_host_new(&w->tasks, &tasks);
    if (rc != 0) {
        wd_log(WD_LOG_ERROR, "start-up failed: the tasks' connections: %s", strerror(-rc));
        return -1;
    }
    if (!(w->conn = conn_new(w, opts->broker, "broker", "connection to the broker")))
        return -1;
    w->results_conn =
        strcmp(opts->result_backend, opts->broker) == 0
            ? w->conn
            : conn_new(w, opts->result_backend, "results", "connection to the result backend");
    if (!w->results_conn)
        return -1;
    for (size_t i = 0; i < opts->nqueues; i++) {
        char name[BROKER_QUEUE_NAME_MAX + 16], what[BROKER_QUEUE_NAME_MAX + 64];
        snprintf(name, sizeof name, "blocking:%s", opts->queues[i]);
        snprintf(what, sizeof what, "blocking connection for queue %s", opts->queues[i]);
        if (!(w->blocking[i] = conn_new(w, opts->broker, name, what)))
            return -1;
    }
    broker_worker_cfg cfg = {
        .prefix = opts->prefix,
        .wid = w->wid,
        .queues = (const char *const *)opts->queues,
        .nqueues = opts->nqueues,
        .result_expires = opts->result_expires,
        .heartbeat_ttl = opts->heartbeat_ttl,
        .max_redeliveries = opts->max_redeliveries,
    };
    if (!(w->bw = broker_worker_new(&cfg, w->conn, w->results_conn))) {
        /* broker_worker_new says only that it failed: find out why. */
        const char *why = broker_check_prefix(opts->prefix);
        if (why)
            wd_log(WD_LOG_ERROR, "start-up failed: --prefix: %s", why);
        else if ((why = broker_check_worker_id(w->wid)))
            wd_log(WD_LOG_ERROR, "start-up failed: the worker id %s (from --hostname): %s", w->wid,
                   why);
        else
            wd_log(WD_LOG_ERROR, "start-up failed: the broker's worker state: %s",
                   strerror(ENOMEM));
        return -1;
    }
    return 0;
}

/* Why green_spawn (or a start function passing its error on) failed, for a log line. */
static const char *spawn_error(int rc) {
    return rc == -EAGAIN ? "the runtime's greenlet limit is reached" : strerror(-rc);
}

/* --http and -E. The endpoint comes up first, so /healthz can say "starting" while Redis
 * is away; a port that cannot be had is a failed start, not a worker without its metrics.
 * Returns 0 or -1 (logged). */
static int start_observers(struct run *r) {
    struct wd_worker *w = &r->w;
    const struct wd_options *opts = w->opts;
    if (opts->http_host && !(w->http = wd_http_start(w, opts->http_host, opts->http_port)))
        return -1; /* wd_http_start said why */
    if (opts->events) {
        int rc = wd_observe_start_events(w->obs, w->conn, opts->prefix, w->wid, w->sched);
        if (rc != 0) {
            wd_log(WD_LOG_ERROR, "start-up failed: the task event publisher (-E): %s",
                   spawn_error(rc));
            return -1;
        }
    }
    return 0;
}

/* Wait for Redis, however long it takes (it may start after the worker), unless a
 * shutdown is asked for first. Returns 0 when connected, -ECANCELED after a shutdown
 * request. */
static int wait_for_broker(struct run *r) {
    struct wd_worker *w = &r->w;
    while (w->stop == WD_RUNNING && broker_conn_wait_up(w->conn, 1.0) != 0)
        ;
    return w->stop == WD_RUNNING ? 0 : -ECANCELED;
}

/* Spawn fn(arg) into *g; log and return -1 when it cannot be. */
static int spawn(green_t *g, green_fn fn, void *arg, const char *what) {
    int rc = green_spawn(g, fn, arg);
    if (rc != 0)
        wd_log(WD_LOG_ERROR, "start-up failed: the %s: %s", what, spawn_error(rc));
    return rc ? -1 : 0;
}

/* The acker first (nothing is taken yet, so a failure there needs no clean-up), then the
 * registration and the greenlets that take work. Returns 0 or -1 (logged); after a
 * failure with the acker running, shutdown_worker undoes the rest. */
static int start_consuming(struct run *r) {
    struct wd_worker *w = &r->w;
    int rc = wd_acker_start(w, &r->acker);
    if (rc != 0) {
        wd_log(WD_LOG_ERROR, "start-up failed: the acker, which stores results: %s",
               spawn_error(rc));
        return -1;
    }
    if ((rc = wd_revoke_start(w, &w->revoke)) != 0) {
        wd_log(WD_LOG_ERROR, "start-up failed: the revocation listener: %s", spawn_error(rc));
        return -1;
    }
    wd_heartbeat_once(w); /* registers this worker; the heartbeat greenlet retries failures */
    if (spawn(&r->heartbeat, wd_heartbeat_main, w, "heartbeat greenlet") != 0 ||
        spawn(&r->mover, wd_sched_main, w, "mover of due messages") != 0 ||
        (w->beat && spawn(&r->beat, wd_beat_main, w, "beat (--beat)") != 0) ||
        spawn(&r->fetcher, wd_fetcher_main, w, "fetcher greenlet") != 0)
        return -1;
    for (size_t i = 0; i < w->opts->nqueues; i++) {
        if ((rc = wd_waker_start(w, i, &r->wakers[i])) != 0) {
            wd_log(WD_LOG_ERROR, "start-up failed: the waker greenlet of queue %s: %s",
                   w->opts->queues[i], spawn_error(rc));
            return -1;
        }
    }
    return 0;
}

static void log_stopped(const struct wd_worker *w) {
    const struct wd_counters *c = wd_observe_counters(w->obs);
    wd_log(WD_LOG_INFO,
           "stopped: %llu received, %llu succeeded, %llu failed (%llu invalid), "
           "%llu retried, %llu put back",
           (unsigned long long)c->received, (unsigned long long)c->succeeded,
           (unsigned long long)c->failed, (unsigned long long)c->invalid,
           (unsigned long long)c->retried, (unsigned long long)c->put_back);
}

/* Close and free everything run_new and connect_broker made. MAY YIELD. */
static void run_free(struct run *r) {
    struct wd_worker *w = &r->w;
    wd_observe_free(w->obs); /* stops the event publisher first, if it still runs */
    wd_limits_free(w->lims);
    wd_sched_free(w->sched);
    wd_rate_free(w->rate);
    wd_beat_free(w->beat);
    for (size_t i = 0; w->blocking && i < w->opts->nqueues; i++)
        broker_conn_close(w->blocking[i]);
    free(w->blocking);
    free(r->wakers);
    broker_worker_free(w->bw);
    if (w->results_conn != w->conn)
        broker_conn_close(w->results_conn);
    broker_conn_close(w->conn);
    task_host_free(w->tasks);
    green_queue_destroy(&w->acks);
    green_pool_destroy(&w->pool);
    green_event_destroy(&w->want_work);
    green_event_destroy(&w->work_landed);
    green_event_destroy(&w->stop_ev);
    green_event_destroy(&w->acked);
    free(w->queue_list);
    free(r);
}

int wd_worker_run(const struct wd_options *opts, wd_reload_fn reload, void *reload_arg) {
    struct run *r = run_new(opts, reload, reload_arg);
    if (!r)
        return 1;
    struct wd_worker *w = &r->w;
    if (connect_broker(r) != 0) {
        run_free(r);
        return 1;
    }
    watch_signals(r);
    wd_log(WD_LOG_INFO,
           "workerd %s starting: pool %s, concurrency %d, queues %s, broker %s, "
           "worker id %s",
           wd_version(), wd_pool_name(opts->pool), opts->concurrency, w->queue_list,
           opts->broker_redacted, w->wid);

    int code = 1;
    if (start_observers(r) != 0) {
        w->stop = WD_COLD;
    } else if (wait_for_broker(r) != 0) {
        code = 0; /* stopped before connecting: nothing was taken */
    } else {
        bool started = start_consuming(r) == 0;
        if (started && w->stop == WD_RUNNING) {
            w->consuming = true;
            wd_log(WD_LOG_INFO, "ready: consuming %s", w->queue_list);
            wd_notifyf("READY=1\nSTATUS=consuming %s", w->queue_list);
        }
        if (!started)
            w->stop = WD_COLD;
        while (w->stop == WD_RUNNING)
            green_event_wait(&w->stop_ev, -1);
        if (r->acker.ptr)
            code = shutdown_worker(r) == 0 && started ? 0 : 1;
    }
    /* After the shutdown, so that /healthz said "shutting down" all along, and the events
     * of the last tasks went out. */
    wd_observe_stop_events(w->obs, WD_SHUTDOWN_EVENTS_GRACE);
    wd_http_stop(w->http);
    log_stopped(w);
    unwatch_signals(r);
    bool restart = w->restart;
    run_free(r);
    return code == 0 && restart ? WD_WORKER_RESTART : code;
}
