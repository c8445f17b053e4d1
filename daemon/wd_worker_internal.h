/*
 * wd_worker_internal.h - the worker's own state, shared by wd_worker.c (start-up, signals,
 * shutdown), wd_consume.c (fetching, waking, heartbeats), wd_job.c (running one message,
 * and the acker that stores results in batches) and wd_http.c (which reads it for its
 * pages).
 *
 * What observing the worker needs (counters, metrics, task events, recycling) is not
 * here: it lives behind wd_observe.h, reached through `obs`.
 *
 * Everything here runs on greenlets of the worker's hub; nothing is thread-safe.
 */
#ifndef WORKERD_WD_WORKER_INTERNAL_H
#define WORKERD_WD_WORKER_INTERNAL_H

#include "broker_conn.h"
#include "broker_msg.h"
#include "broker_worker.h"
#include "green.h"
#include "green_pool.h"
#include "green_sync.h"
#include "wd_options.h"
#include "wd_worker.h"

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

enum wd_stop { WD_RUNNING, WD_WARM, WD_COLD };

struct task_host;
struct wd_job;
struct wd_limits;
struct wd_observe;
struct wd_rate;
struct wd_sched;
struct wd_beat;
struct wd_revoke;

struct wd_worker {
    const struct wd_options *opts;
    char wid[BROKER_WORKER_ID_MAX + 1];
    char *queue_list; /* the queues, comma-separated (broker_queue_list_join) */
    broker_limits limits;
    broker_conn *conn;         /* fetch, ack, heartbeat */
    broker_conn *results_conn; /* == conn unless --result-backend is another Redis */
    broker_conn **blocking;    /* one per queue, for BLMOVE */
    broker_worker *bw;
    green_pool pool;         /* the bound on running tasks */
    green_queue acks;        /* result and ack items, to the acker (wd_job.c) */
    green_event want_work;   /* the fetcher found the queues empty */
    green_event work_landed; /* a blocking BLMOVE brought a message */
    green_event stop_ev;     /* a shutdown was asked for */
    enum wd_stop stop;
    bool restart;           /* the stop is a restart asked for by a reload */
    bool fetching;          /* false once shutdown began: no new tasks */
    bool consuming;         /* set once "ready": /healthz says ok only from then on */
    double give_up_at;      /* 0 until a shutdown has stopped its tasks; then the unix
                               time after which the acker and the put-back stop
                               retrying a Redis that is away (bounds the exit) */
    struct wd_job *running; /* jobs taken and not yet finished (a list) */
    struct wd_job *live;    /* jobs not yet freed: their tags are this worker's */
    size_t live_count;      /* how many: running, or finished and not yet acked */
    green_event acked;      /* the acker sent a batch: live_count went down */
    double started_at;      /* unix time */
    uint64_t stats_processed, stats_failed; /* what the heartbeats added to the fleet's
                                               counters so far (broker_stats.h) */
    struct wd_observe *obs;  /* counters, metrics, events, recycling (wd_observe.h) */
    struct wd_limits *lims;  /* time limits' defaults, the blocking watch (wd_limits.h) */
    struct wd_sched *sched;  /* the Redis clock, the mover, retry delays (wd_sched.h) */
    struct wd_rate *rate;    /* the rate-limited tasks (wd_rate.h) */
    struct wd_beat *beat;    /* --beat's periodic tasks (wd_beat.h), or NULL */
    struct wd_http *http;    /* NULL unless --http */
    struct task_host *tasks; /* what the tasks ask of the worker (task_host.h) */
    /* Revocations: checked at take, terminated while running (wd_revoke.h). */
    struct wd_revoke *revoke;
};

/* ---- wd_consume.c ---------------------------------------------------------------------- */

/* The greenlets that consume (wd_consume.c), each with w as its argument: the fetcher,
 * and the heartbeat. wd_heartbeat_once refreshes the heartbeat (and registers the worker)
 * once: 0 or broker_heartbeat's error. MAY YIELD. */
/* broker_conn's state callback for every connection of the worker (arg: the worker): logs
 * "connected to Redis" once up, "Redis unreachable" once down. */
void wd_worker_conn_state(void *arg, const char *name, bool up, const char *err);

void *wd_fetcher_main(void *w);
void *wd_heartbeat_main(void *w);
int wd_heartbeat_once(struct wd_worker *w);

/* Start the waker of queue number index into *g. Returns 0, -ENOMEM or green_spawn's
 * error. Does not yield. */
int wd_waker_start(struct wd_worker *w, size_t index, green_t *g);

/* ---- wd_job.c -------------------------------------------------------------------------- */

/* Run one delivery as a task in the pool (takes ownership of *d's strings). Called by the
 * fetcher, which made sure a slot is free. Returns 0 or a green_pool_spawn error. */
int wd_job_start(struct wd_worker *w, broker_delivery *d);

/* Free the jobs still listed as running once the pool is empty: the pool killed them
 * before they started, so they never ran; their messages stay in flight (for the requeue).
 * Call before the acker's final flush. */
void wd_job_discard_unstarted(struct wd_worker *w);

/* Of the ntags delivery tags (this worker's in-flight hash), put in orphans[] (room for
 * ntags) those that no job holds (running, or waiting for its ack); *norphans says how
 * many. Returns 0 or -ENOMEM. The strings are borrowed from tags. */
int wd_job_orphans(struct wd_worker *w, char *const *tags, size_t ntags, const char **orphans,
                   size_t *norphans);

/* Revocations with --terminate (wd_revoke.c): kill every running job of task id: its
 * blocking call returns -ECANCELED and its result is REVOKED, "terminated", whatever the
 * task returns then. Returns how many were killed. Does not yield. */
size_t wd_job_terminate(struct wd_worker *w, const char *id);

/* Call fn(arg, id) with the id of each running job that has been parsed and not
 * terminated. Does not yield; fn must not yield either. */
void wd_job_each_running(struct wd_worker *w, void (*fn)(void *arg, const char *id), void *arg);

/* Start the acker greenlet (*g): it batches the jobs' results and acks from w->acks and
 * sends each batch in one round trip, until it takes the NULL item that the shutdown puts
 * at the end. Its buffers are allocated here, so that a worker whose acker could not
 * start never says it is ready. Returns 0, -ENOMEM or green_spawn's error; nothing was
 * started then. Does not yield. */
int wd_acker_start(struct wd_worker *w, green_t *g);

#endif
