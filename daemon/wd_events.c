/*
 * wd_events.c - the task event publisher of wd_events.h.
 *
 * Emitters (job greenlets) copy each event into a heap record and try_put it on a bounded
 * green_queue; that never yields, so an event costs a job a malloc and no round trip. The
 * publisher greenlet takes the first record, sleeps WD_EVENTS_PERIOD so that more can
 * gather, takes up to BATCH of them and sends one pipeline of XADDs. A link error makes it
 * wait for the connection and send the same batch again (an XADD whose reply was lost may
 * then be written twice: events are best effort). At stop it drains the queue, giving
 * Redis up to the grace period when it is away, and counts what it could not send.
 *
 * Runs on greenlets of the worker's hub: emit on any of them (or the hub), the rest on the
 * publisher greenlet and the worker's main greenlet (stop).
 */
#include "wd_events.h"

#include "broker_keys.h"
#include "green.h"
#include "green_sync.h"
#include "wd_log.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BATCH 512
#define SEND_TIMEOUT 5.0
#define MAX_ARGS 20

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
    green_queue q; /* struct event * */
    green_t g;
    uint64_t dropped;
    bool stopping;
    double give_up_at; /* once stopping: when to stop waiting for Redis */
};

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

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
        *ev = (struct event){.type = t, .time = now(), .runtime = runtime};
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

/* The XADD of one event into argv (strings live in ev and num, NUM_LEN bytes per slot). */
#define NUM_LEN 32
static int build_xadd(const struct wd_events *e, const struct event *ev, const char **argv,
                      char (*num)[NUM_LEN]) {
    int n = 0;
    argv[n++] = "XADD";
    argv[n++] = e->key;
    argv[n++] = "MAXLEN";
    argv[n++] = "~";
    snprintf(num[0], NUM_LEN, "%d", WD_EVENTS_MAXLEN);
    argv[n++] = num[0];
    argv[n++] = "*";
    argv[n++] = "type";
    argv[n++] = ev->type;
    if (ev->id) {
        argv[n++] = "id";
        argv[n++] = ev->id;
    }
    if (ev->task) {
        argv[n++] = "task";
        argv[n++] = ev->task;
    }
    argv[n++] = "worker";
    argv[n++] = e->wid;
    snprintf(num[1], NUM_LEN, "%.6f", ev->time);
    argv[n++] = "time";
    argv[n++] = num[1];
    if (ev->queue) {
        argv[n++] = "queue";
        argv[n++] = ev->queue;
    }
    if (ev->runtime >= 0) {
        snprintf(num[2], NUM_LEN, "%.6f", ev->runtime);
        argv[n++] = "runtime";
        argv[n++] = num[2];
    }
    if (ev->error) {
        argv[n++] = "error";
        argv[n++] = ev->error;
    }
    return n;
}

/* Send n events in one pipeline, retrying through link errors (until the stop's grace
 * has passed). Frees nothing; counts what was not written as dropped. */
static void send_batch(struct wd_events *e, struct event **batch, size_t n) {
    int *argcs = calloc(n, sizeof *argcs);
    const char **args = calloc(n * MAX_ARGS, sizeof *args);
    const char **argvs_store[BATCH];
    char(*nums)[NUM_LEN] = calloc(n * 3, NUM_LEN);
    redisReply **replies = calloc(n, sizeof *replies);
    if (!argcs || !args || !nums || !replies) {
        e->dropped += n;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        argvs_store[i] = args + i * MAX_ARGS;
        argcs[i] = build_xadd(e, batch[i], args + i * MAX_ARGS, nums + i * 3);
    }
    for (;;) {
        int rc = broker_conn_pipeline(e->conn, n, argcs, (const char **const *)argvs_store, NULL,
                                      replies, SEND_TIMEOUT);
        if (rc == 0) {
            size_t bad = 0;
            const char *why = NULL;
            for (size_t i = 0; i < n; i++) {
                if (replies[i]->type == REDIS_REPLY_ERROR) {
                    bad++;
                    why = why ? why : replies[i]->str;
                }
            }
            /* A refused XADD (the key holds another type, an old Redis) is a setting to
             * fix, not a passing outage: say so once per change, and count the loss. */
            if (bad)
                wd_log_state("events", 0, WD_LOG_ERROR,
                             "task events: Redis refused XADD on "
                             "%s: %s; events are dropped",
                             e->key, why);
            else
                wd_log_state("events", 1, WD_LOG_INFO, "task events: publishing on %s", e->key);
            e->dropped += bad;
            for (size_t i = 0; i < n; i++)
                freeReplyObject(replies[i]);
            break;
        }
        bool give_up = rc == -ECANCELED || (e->stopping && now() >= e->give_up_at) ||
                       !(broker_conn_error_is_link(rc) || rc == -ETIMEDOUT);
        if (give_up) {
            e->dropped += n;
            break;
        }
        rc = broker_conn_wait_up(e->conn, 1.0);
        if (rc == -ECANCELED || rc == -ESHUTDOWN) {
            e->dropped += n;
            break;
        }
    }
out:
    free(argcs);
    free(args);
    free(nums);
    free(replies);
}

static void *publisher_main(void *arg) {
    struct wd_events *e = arg;
    struct event **batch = calloc(BATCH, sizeof *batch);
    for (;;) {
        void *it = NULL;
        /* A finite wait, so that a stop request is seen without a sentinel item (the
         * queue may be full when it comes). */
        int rc = green_queue_get(&e->q, &it, e->stopping ? 0 : 0.25);
        if (rc == -ECANCELED)
            break;
        if (rc != 0) {
            if (e->stopping)
                break; /* stopping and nothing left */
            continue;
        }
        size_t n = 0;
        if (batch)
            batch[n++] = it;
        else
            event_free(it), e->dropped++;
        /* Let more gather: a burst of finishing tasks becomes one round trip. */
        if (!e->stopping && green_sleep(WD_EVENTS_PERIOD) == -ECANCELED)
            e->stopping = true;
        while (batch && n < BATCH && green_queue_try_get(&e->q, &it) == 0)
            batch[n++] = it;
        if (n)
            send_batch(e, batch, n);
        for (size_t i = 0; i < n; i++)
            event_free(batch[i]);
    }
    free(batch);
    return NULL;
}

struct wd_events *wd_events_start(broker_conn *conn, const char *prefix, const char *wid) {
    struct wd_events *e = calloc(1, sizeof *e);
    broker_keys keys;
    if (!e || broker_keys_init(&keys, prefix) != 0 || broker_key_events(&keys, e->key) < 0 ||
        !(e->wid = strdup(wid))) {
        if (e)
            free(e->wid);
        free(e);
        return NULL;
    }
    e->conn = conn;
    green_queue_init(&e->q, WD_EVENTS_MAX_QUEUED);
    if (green_spawn(&e->g, publisher_main, e) != 0) {
        green_queue_destroy(&e->q);
        free(e->wid);
        free(e);
        return NULL;
    }
    return e;
}

void wd_events_stop(struct wd_events *e, double grace) {
    if (!e)
        return;
    e->stopping = true;
    e->give_up_at = now() + grace;
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
    free(e->wid);
    free(e);
}
