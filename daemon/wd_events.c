/*
 * wd_events.c - the task event publisher of wd_events.h.
 *
 * Emitters (job greenlets) copy each event into a heap record and try_put it on a bounded
 * green_queue; that never yields, so an event costs a job a malloc and no round trip. The
 * publisher greenlet takes the first record, sleeps WD_EVENTS_PERIOD so that more can
 * gather, takes up to BATCH of them (wd_batch_gather) and sends one pipeline of XADDs
 * (broker_events_xadd builds each) through wd_batch_send: a link error makes it wait for
 * the connection and send the same batch again (an XADD whose reply was lost may then be
 * written twice: events are best effort); Redis refusing the pipeline drops the batch. At
 * stop it drains the queue, giving Redis up to the grace period when it is away, and
 * counts what it could not send.
 *
 * Runs on greenlets of the worker's hub: emit on any of them (or the hub), the rest on the
 * publisher greenlet and the worker's main greenlet (stop).
 */
#include "wd_events.h"

#include "broker_events.h"
#include "broker_keys.h"
#include "green.h"
#include "green_check.h"
#include "green_sync.h"
#include "wd_batch.h"
#include "wd_log.h"
#include "wd_sched.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BATCH 512
#define SEND_TIMEOUT 5.0

static const char *const types[] = {"received", "started", "succeeded",
                                    "failed",   "retried", "revoked"};

struct event {
    const char *type; /* one of types[] */
    char *id, *task;
    char *queue, *error;
    double time, runtime;
};

struct wd_events {
    broker_conn *conn;
    char key[BROKER_KEY_MAX];
    char *wid;
    const struct wd_sched *clock; /* the Redis clock events are dated on, or NULL */
    green_queue q;                /* struct event * */
    green_t g;
    void **batch; /* BATCH slots for struct event *, the publisher's */
    uint64_t dropped;
    bool stopping;
    double give_up_at; /* once stopping: when to stop waiting for Redis */
};

static void event_free(struct event *ev) {
    free(ev->id);
    free(ev->task);
    free(ev->queue);
    free(ev->error);
    free(ev);
}

static char *dup_or_null(const char *s, bool *failed) {
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        *failed = true;
    return d;
}

void wd_events_emit(struct wd_events *e, const char *type, const char *id, const char *task,
                    const char *queue, double runtime, const char *error) {
    if (!e || e->stopping)
        return;
    const char *t = NULL;
    for (size_t i = 0; i < sizeof types / sizeof *types; i++)
        if (strcmp(types[i], type) == 0)
            t = types[i];
    struct event *ev = t ? calloc(1, sizeof *ev) : NULL;
    bool failed = ev == NULL;
    if (ev) {
        *ev = (struct event){.type = t,
                             .time = e->clock ? wd_sched_now_lo(e->clock) : green_wallclock(),
                             .runtime = runtime};
        ev->id = dup_or_null(id, &failed);
        ev->task = dup_or_null(task, &failed);
        if (strcmp(t, "received") == 0)
            ev->queue = dup_or_null(queue, &failed);
        if (strcmp(t, "failed") == 0 || strcmp(t, "revoked") == 0)
            ev->error = dup_or_null(error, &failed);
    }
    if (failed || green_queue_try_put(&e->q, ev) != 0) {
        e->dropped++;
        if (ev)
            event_free(ev);
    }
}

uint64_t wd_events_dropped(const struct wd_events *e) {
    return e ? e->dropped : 0;
}

/* One pipeline of XADDs for n events (wd_batch_send's attempt). */
struct send {
    struct wd_events *e;
    size_t n;
    int *argcs;
    const char ***argvs;
    redisReply **replies;
};

static int send_once(void *arg, double timeout) {
    struct send *s = arg;
    struct wd_events *e = s->e;
    int rc = broker_conn_pipeline(e->conn, s->n, s->argcs, (const char **const *)s->argvs, NULL,
                                  s->replies, timeout);
    if (rc != 0)
        return rc;
    size_t bad = 0;
    const char *why = NULL;
    for (size_t i = 0; i < s->n; i++) {
        if (s->replies[i]->type == REDIS_REPLY_ERROR) {
            bad++;
            why = why ? why : s->replies[i]->str;
        }
    }
    /* A refused XADD (the key holds another type, an old Redis) is a setting to fix, not a
     * passing outage: say so once per change, and count the loss. */
    if (bad)
        wd_log_state("events", 0, WD_LOG_ERROR,
                     "task events: Redis refused XADD on %s: %s; events are dropped", e->key, why);
    else
        wd_log_state("events", 1, WD_LOG_INFO, "task events: publishing on %s", e->key);
    e->dropped += bad;
    for (size_t i = 0; i < s->n; i++)
        freeReplyObject(s->replies[i]);
    return 0;
}

/* Send n events in one pipeline, retrying through link errors (until the stop's grace has
 * passed). Frees nothing; counts what was not written as dropped. */
static void send_batch(struct wd_events *e, void **batch, size_t n) {
    broker_events_cmd *cmds = calloc(n, sizeof *cmds);
    struct send s = {
        .e = e,
        .n = n,
        .argcs = calloc(n, sizeof *s.argcs),
        .argvs = calloc(n, sizeof *s.argvs),
        .replies = calloc(n, sizeof *s.replies),
    };
    if (!cmds || !s.argcs || !s.argvs || !s.replies) {
        e->dropped += n;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        const struct event *ev = batch[i];
        broker_event be = {.type = ev->type,
                           .id = ev->id,
                           .task = ev->task,
                           .worker = e->wid,
                           .time = ev->time,
                           .queue = ev->queue,
                           .runtime = ev->runtime,
                           .error = ev->error};
        s.argcs[i] = broker_events_xadd(&cmds[i], e->key, &be);
        s.argvs[i] = cmds[i].argv;
    }
    /* No retry of a refused batch: events are best effort, and Redis would refuse it
     * again. */
    struct wd_batch_policy policy = {
        .conn = e->conn,
        .call_timeout = SEND_TIMEOUT,
        .give_up_at = &e->give_up_at,
        .max_refusals = 0,
        .what = "publishing task events",
    };
    if (wd_batch_send(&policy, send_once, &s) != 0)
        e->dropped += n;
out:
    free(cmds);
    free(s.argcs);
    free(s.argvs);
    free(s.replies);
}

static void *publisher_main(void *arg) {
    struct wd_events *e = arg;
    void **batch = e->batch;
    for (;;) {
        /* A finite wait, so that a stop request is seen without a sentinel item (the
         * queue may be full when it comes). */
        int rc = green_queue_get(&e->q, &batch[0], e->stopping ? 0 : 0.25);
        if (rc == -ECANCELED)
            break;
        if (rc != 0) {
            if (e->stopping)
                break; /* stopping and nothing left */
            continue;
        }
        /* Let more gather: a burst of finishing tasks becomes one round trip. */
        if (!e->stopping && green_sleep(WD_EVENTS_PERIOD) == -ECANCELED)
            e->stopping = true;
        size_t n = wd_batch_gather(&e->q, batch, 1, BATCH, NULL);
        send_batch(e, batch, n);
        for (size_t i = 0; i < n; i++)
            event_free(batch[i]);
    }
    return NULL;
}

static void events_free(struct wd_events *e) {
    free(e->batch);
    free(e->wid);
    free(e);
}

int wd_events_start(struct wd_events **out, broker_conn *conn, const char *prefix, const char *wid,
                    const struct wd_sched *clock) {
    *out = NULL;
    broker_keys keys;
    if (broker_keys_init(&keys, prefix) != 0)
        return -EINVAL;
    struct wd_events *e = calloc(1, sizeof *e);
    if (!e)
        return -ENOMEM;
    e->wid = strdup(wid);
    e->batch = calloc(BATCH, sizeof *e->batch);
    if (!e->wid || !e->batch) {
        events_free(e);
        return -ENOMEM;
    }
    GREEN_CHECK(broker_key_events(&keys, e->key) > 0, "a valid prefix makes a valid key");
    e->conn = conn;
    e->clock = clock;
    green_queue_init(&e->q, WD_EVENTS_MAX_QUEUED);
    int rc = green_spawn(&e->g, publisher_main, e);
    if (rc != 0) {
        green_queue_destroy(&e->q);
        events_free(e);
        return rc;
    }
    *out = e;
    return 0;
}

void wd_events_stop(struct wd_events *e, double grace) {
    if (!e)
        return;
    e->stopping = true;
    e->give_up_at = green_wallclock() + grace;
    if (green_join(e->g, NULL) != 0) { /* this greenlet was killed: do not wait politely */
        green_kill(e->g);
        green_join(e->g, NULL);
    }
    void *it;
    while (green_queue_try_get(&e->q, &it) == 0) {
        e->dropped++;
        event_free(it);
    }
    if (e->dropped)
        wd_log(WD_LOG_WARNING, "task events: %llu could not be published",
               (unsigned long long)e->dropped);
    green_queue_destroy(&e->q);
    events_free(e);
}
