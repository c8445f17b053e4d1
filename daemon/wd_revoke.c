/*
 * wd_revoke.c - the revoked set in memory and the listener that keeps it (wd_revoke.h).
 *
 * The set is a jansson object, id -> the unix time its mark expires (0: never): a hash
 * table that is already at hand; task ids may hold any byte but NUL, so they go in
 * unchecked (json_object_set_new_nocheck). It is replaced whole by each load and grows
 * by each entry read; expired ids are dropped every heartbeat TTL.
 *
 * Why not check each message in Redis: one EXISTS per fetched batch, pipelined on the main
 * connection, cost a fifth to a third of the echo throughput: the jobs of a batch wait
 * for it behind the acker's last batch on the single-threaded Redis, holding their pool
 * slots. In fetch.lua, the script would have to decode every message (cjson, about 1 us)
 * and look its mark up (about 1 us more) on the one Redis every worker shares, where a
 * whole task costs about 6 us. A lookup in memory costs neither; the price is the
 * ordering argument of broker_control.h and the loads after outages.
 *
 * The listener's loop, on its own connection:
 *   - not loaded (at start, after the link dropped, after a gap in the stream): load the
 *     set and the stream's position in one MULTI, then look up the marks of the running
 *     jobs (a terminate broadcast while the link was down is found there);
 *   - every heartbeat TTL: the marks of the running jobs again, and drop expired ids;
 *   - otherwise: read the stream on (XREAD BLOCK, at most CONTROL_BLOCK seconds).
 * Jobs wait on `progress`, pulsed whenever the state they wait for may have changed.
 *
 * Runs on greenlets of the worker's hub.
 */
#include "wd_revoke.h"
#include "wd_worker_internal.h"

#include "broker_control.h"
#include "green_check.h"
#include "wd_log.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONTROL_BLOCK 5.0    /* seconds one XREAD waits for an entry */
#define CONTROL_TIMEOUT 10.0 /* the listener's other calls */
/* Seconds without the set while messages can be taken; then they run unchecked (logged)
 * rather than not at all. */
#define CONTROL_GRACE 10.0

struct wd_revoke {
    struct wd_worker *w;
    broker_keys keys;
    broker_conn *control;                /* the listener's own: XREAD BLOCK holds it */
    json_t *revoked;                     /* id -> until (unix seconds; 0: never) */
    char applied[BROKER_STREAM_ID_MAX];  /* the last stream entry reflected in revoked */
    char required[BROKER_STREAM_ID_MAX]; /* the newest entry a fetch has seen */
    char since[BROKER_STREAM_ID_MAX];    /* the same, since the current load began */
    bool behind;                         /* applied is before required */
    bool loaded;                         /* revoked was loaded since the link last came up */
    double unloaded_at;                  /* when loaded last became false; 0 while loaded */
    bool unchecked;                      /* not loaded for CONTROL_GRACE: jobs do not wait */
    green_event progress;                /* pulsed when loaded, behind or unchecked change */
    green_t listener;
};

/* Wake every job waiting in wd_revoke_check; they look again. */
static void pulse(struct wd_revoke *rv) {
    green_event_set(&rv->progress);
    green_event_clear(&rv->progress);
}

/* ---- the job's side ------------------------------------------------------------------- */

void wd_revoke_fetched(struct wd_revoke *rv, const char *tail) {
    if (broker_stream_id_cmp(tail, rv->required) > 0)
        snprintf(rv->required, sizeof rv->required, "%s", tail);
    if (broker_stream_id_cmp(tail, rv->since) > 0)
        snprintf(rv->since, sizeof rv->since, "%s", tail);
    rv->behind = broker_stream_id_cmp(rv->applied, rv->required) < 0;
}

int wd_revoke_check(struct wd_revoke *rv, const char *id) {
    while (!rv->unchecked && (!rv->loaded || rv->behind)) {
        int rc = green_event_wait(&rv->progress, -1);
        if (rc != 0)
            return rc;
    }
    if (json_object_size(rv->revoked) == 0)
        return 0;
    json_t *until = json_object_get(rv->revoked, id);
    if (!until)
        return 0;
    double t = json_real_value(until);
    return t <= 0 || t > green_wallclock();
}

/* ---- the listener --------------------------------------------------------------------- */

/* Kill the running jobs of id. */
static void terminate(struct wd_revoke *rv, const char *id) {
    if (wd_job_terminate(rv->w, id))
        wd_log_task(WD_LOG_INFO, id, "revoked with --terminate: stopping it");
}

/* Record id as revoked until `until` in set (the later expiry wins; 0 is never). */
static void add(json_t *set, const char *id, double until) {
    json_t *old = json_object_get(set, id);
    if (old) {
        double t = json_real_value(old);
        if (t <= 0 || (until > 0 && until <= t))
            return;
    }
    if (json_object_set_new_nocheck(set, id, json_real(until)) != 0)
        wd_log_task(WD_LOG_ERROR, id, "out of memory: its revocation is not known here");
}

static void on_loaded(void *arg, const char *id, double until, bool term) {
    (void)term;
    add(arg, id, until);
}

static void on_entry(void *arg, const char *id, double until, bool term) {
    struct wd_revoke *rv = arg;
    add(rv->revoked, id, until);
    if (term)
        terminate(rv, id);
}

/* The ids of the running jobs, copied: they may end while the lookup is out. */
struct running {
    char **ids;
    size_t n, cap;
    bool failed;
};

static void collect(void *arg, const char *id) {
    struct running *r = arg;
    if (r->failed)
        return;
    if (r->n == r->cap) {
        size_t cap = r->cap ? 2 * r->cap : 64;
        char **ids = realloc(r->ids, cap * sizeof *ids);
        if (!ids) {
            r->failed = true;
            return;
        }
        r->ids = ids;
        r->cap = cap;
    }
    if (!(r->ids[r->n] = strdup(id)))
        r->failed = true;
    else
        r->n++;
}

/* Terminate the running jobs whose mark says "terminate"; drop expired ids. */
static int recheck(struct wd_revoke *rv) {
    struct running r = {0};
    wd_job_each_running(rv->w, collect, &r);
    broker_mark *marks = r.n ? calloc(r.n, sizeof *marks) : NULL;
    int rc = r.failed || (r.n && !marks) ? -ENOMEM : 0;
    if (rc == 0 && r.n)
        rc = broker_marks_get(rv->control, &rv->keys, (const char *const *)r.ids, r.n, marks,
                              CONTROL_TIMEOUT);
    for (size_t i = 0; rc == 0 && i < r.n; i++)
        if (marks[i] == BROKER_MARK_TERMINATED)
            terminate(rv, r.ids[i]);
    for (size_t i = 0; i < r.n; i++)
        free(r.ids[i]);
    free(r.ids);
    free(marks);
    double now = green_wallclock();
    const char *id;
    json_t *until;
    void *tmp;
    json_object_foreach_safe(rv->revoked, tmp, id, until) {
        double t = json_real_value(until);
        if (t > 0 && t <= now)
            json_object_del(rv->revoked, id);
    }
    return rc;
}

/* Load the set and the stream's position, then look at the running jobs. */
static int load(struct wd_revoke *rv) {
    strcpy(rv->since, "0-0");
    json_t *set = json_object();
    char tail[BROKER_STREAM_ID_MAX];
    int rc = set ? broker_revoked_snapshot(rv->control, &rv->keys, green_wallclock(), tail,
                                           on_loaded, set, CONTROL_TIMEOUT)
                 : -ENOMEM;
    if (rc < 0) {
        json_decref(set);
        return rc;
    }
    json_decref(rv->revoked);
    rv->revoked = set;
    memcpy(rv->applied, tail, sizeof tail);
    /* What fetches saw before the load began, the load covers (they ran before it); a
     * fetch that ran meanwhile may have seen more, which the listener must read first.
     * Older positions are dropped: after a Redis that lost its data they may be ahead of
     * any the new stream will reach. */
    memcpy(rv->required, broker_stream_id_cmp(rv->since, tail) > 0 ? rv->since : tail, sizeof tail);
    rv->behind = broker_stream_id_cmp(rv->applied, rv->required) < 0;
    rv->loaded = true;
    rv->unloaded_at = 0;
    if (rv->unchecked) {
        wd_log(WD_LOG_INFO, "revocations are read again: tasks are checked again");
        rv->unchecked = false;
    }
    pulse(rv);
    return recheck(rv);
}

/* The set could not be loaded or kept current (rc): it is loaded again next. Jobs wait
 * for that, except when it has been failing for CONTROL_GRACE seconds while messages can
 * still be taken (the control connection cannot connect, the keys hold something else):
 * then they run unchecked, logged once, rather than not at all. */
static void unload(struct wd_revoke *rv, int rc) {
    double now = green_wallclock();
    if (rv->loaded || rv->unloaded_at == 0)
        rv->unloaded_at = now;
    rv->loaded = false;
    if (rc == 0 || rv->unchecked || now - rv->unloaded_at < CONTROL_GRACE ||
        !broker_conn_is_up(rv->w->conn))
        return;
    wd_log(WD_LOG_ERROR,
           "cannot read the revocations (%s) while messages can be taken: tasks run without "
           "being checked until this works again",
           strerror(-rc));
    rv->unchecked = true;
    pulse(rv);
}

static void *listener_main(void *arg) {
    struct wd_revoke *rv = arg;
    double every = rv->w->opts->heartbeat_ttl > 0 ? rv->w->opts->heartbeat_ttl : 15;
    unsigned long drops = 0;
    double next_recheck = 0;
    for (;;) {
        int rc;
        if (!rv->loaded) {
            drops = broker_conn_drops(rv->control);
            if ((rc = load(rv)) == 0)
                next_recheck = green_wallclock() + every;
        } else if (green_wallclock() >= next_recheck) {
            if ((rc = recheck(rv)) == 0)
                next_recheck = green_wallclock() + every;
        } else {
            double block = next_recheck - green_wallclock();
            block = block > CONTROL_BLOCK ? CONTROL_BLOCK : block < 0.1 ? 0.1 : block;
            bool gap = false;
            rc =
                broker_control_read(rv->control, &rv->keys, rv->applied, block, &gap, on_entry, rv);
            if (rc > 0) {
                rv->behind = broker_stream_id_cmp(rv->applied, rv->required) < 0;
                if (gap)
                    unload(rv, 0); /* entries were trimmed unread: load again */
                else
                    pulse(rv);
            } else if (rc == 0 && rv->behind) {
                /* A fetch saw an entry the stream no longer holds (deleted by hand, or a
                 * Redis that lost its data): load again rather than wait for it. */
                unload(rv, 0);
            }
            rc = rc > 0 ? 0 : rc;
        }
        if (rc == -ECANCELED)
            break;
        /* A failed call, or a link that dropped and came back between two calls: what
         * was written meanwhile may be missing here. */
        if (rc != 0 || broker_conn_drops(rv->control) != drops)
            unload(rv, rc);
        if (rc != 0 && (broker_conn_wait_up(rv->control, 1.0) == -ECANCELED ||
                        green_sleep(broker_conn_error_is_link(rc) ? 0.1 : 1.0) == -ECANCELED))
            break;
    }
    return NULL;
}

/* ---- start and stop ------------------------------------------------------------------- */

int wd_revoke_start(struct wd_worker *w, struct wd_revoke **out) {
    *out = NULL;
    struct wd_revoke *rv = calloc(1, sizeof *rv);
    if (!rv)
        return -ENOMEM;
    rv->w = w;
    strcpy(rv->applied, "0-0");
    strcpy(rv->required, "0-0");
    strcpy(rv->since, "0-0");
    green_event_init(&rv->progress);
    int rc = broker_keys_init(&rv->keys, w->opts->prefix);
    if (rc == 0 && !(rv->revoked = json_object()))
        rc = -ENOMEM;
    if (rc == 0 &&
        !(rv->control = broker_conn_new(w->opts->broker, "control", wd_worker_conn_state, w)))
        rc = -ENOMEM;
    if (rc == 0)
        rc = green_spawn(&rv->listener, listener_main, rv);
    if (rc != 0) {
        wd_revoke_stop(rv); /* what was made */
        return rc;
    }
    *out = rv;
    return 0;
}

void wd_revoke_stop(struct wd_revoke *rv) {
    if (!rv)
        return;
    if (rv->listener.ptr) {
        green_kill(rv->listener);
        green_join(rv->listener, NULL);
    }
    if (rv->control)
        broker_conn_close(rv->control);
    json_decref(rv->revoked);
    green_event_destroy(&rv->progress);
    free(rv);
}
