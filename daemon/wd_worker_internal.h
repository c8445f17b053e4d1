/*
 * wd_worker_internal.h - the worker's state, shared by wd_worker.c (life cycle, fetching,
 * heartbeats, shutdown) and wd_job.c (running one message, acking in batches).
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

enum wd_stop { WD_RUNNING, WD_WARM, WD_COLD };

struct wd_job;

struct wd_worker {
    const struct wd_options *opts;
    wd_reload_fn reload;
    void *reload_arg;
    char wid[BROKER_WORKER_ID_MAX + 1];
    broker_limits limits;
    broker_conn *conn;         /* fetch, ack, heartbeat */
    broker_conn *results_conn; /* == conn unless --result-backend is another Redis */
    broker_conn **blocking;    /* one per queue, for BLMOVE */
    broker_worker *bw;
    green_pool pool;           /* the bound on running tasks */
    green_queue acks;          /* struct wd_ack_item *, to the acker */
    green_event want_work;     /* the fetcher found the queues empty */
    green_event work_landed;   /* a blocking BLMOVE brought a message */
    green_event stop_ev;       /* a shutdown was asked for */
    enum wd_stop stop;
    bool restart;              /* the stop is a restart asked for by a reload */
    bool fetching;             /* false once shutdown began: no new tasks */
    double give_up_at;         /* 0 until a shutdown has stopped its tasks; then the unix
                                  time after which the acker and the put-back stop
                                  retrying a Redis that is away (bounds the exit) */
    struct wd_job *running;    /* jobs taken and not yet finished (a list) */
    struct wd_job *live;       /* jobs not yet freed: their tags are this worker's */
    size_t live_count;         /* how many: running, or finished and not yet acked */
    green_event acked;         /* the acker sent a batch: live_count went down */
    double started_at;
    /* counters, for logs and (later) metrics */
    uint64_t received, succeeded, failed, invalid, put_back, lost_ownership;
    /* operations (wd_observe.h): metrics, task events, the HTTP endpoint, recycling */
    struct wd_metrics *metrics;
    struct wd_events *events; /* NULL unless -E */
    struct wd_http *http;     /* NULL unless --http */
    bool consuming;           /* set once "ready": /healthz says ok only from then on */
    double rss_checked_at;    /* the last --max-memory-per-child check */
};

/* STARTED: store a STARTED result; FINAL: store the result and ack; RELEASE: only free
 * the job (its message stays in flight). */
enum wd_ack_kind { WD_ACK_STARTED, WD_ACK_FINAL, WD_ACK_RELEASE };

struct wd_ack_item {
    enum wd_ack_kind kind;
    struct wd_job *job;
    char *json; /* the result document; NULL: ack without storing a result (a STARTED item:
                   the acker encodes it when it sends it) */
};

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

/* The acker greenlet: batches wd_ack_items and sends each batch in one round trip, until
 * it gets the NULL item that wd_worker puts at the end of a shutdown. */
void *wd_acker_main(void *arg);

/* Unix time now, in seconds. */
double wd_unix_now(void);

#endif
