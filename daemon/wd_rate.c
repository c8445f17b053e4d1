/*
 * wd_rate.c - the rate limits on the worker's side: the list of rate-limited tasks, its
 * seeding from --rate-limit, and the gate (wd_rate.h says what each promises; broker/
 * rate_limit.lua how the limit is kept).
 *
 * The list is a sorted array of task names, replaced whole by each refresh (one HGETALL);
 * a refresh that fails keeps the old list. Only one refresh runs at a time: a job that
 * finds one out goes on with the old list rather than wait.
 *
 * Runs on greenlets of the worker's hub.
 */
#include "wd_rate.h"

#include "broker_rate.h"
#include "green.h"
#include "green_check.h"
#include "wd_log.h"
#include "wd_sched.h"
#include "wd_worker_internal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RATE_TIMEOUT 10.0

struct wd_rate {
    char **tasks; /* sorted */
    size_t ntasks;
    double read_at; /* our clock when the list was read; 0: never */
    bool reading;
    unsigned long long slot_seq; /* the last --http-host-concurrency holder's number */
};

int wd_rate_new(struct wd_rate **out) {
    *out = calloc(1, sizeof **out);
    return *out ? 0 : -ENOMEM;
}

static void drop_list(struct wd_rate *r) {
    for (size_t i = 0; i < r->ntasks; i++)
        free(r->tasks[i]);
    free(r->tasks);
    r->tasks = NULL;
    r->ntasks = 0;
}

void wd_rate_free(struct wd_rate *r) {
    if (r)
        drop_list(r);
    free(r);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* One round trip: the HSETs of `limits` ("TASK=RATE,...", already checked; NULL: none)
 * and the HGETALL, whose fields become the list. */
static int read_list(struct wd_worker *w, const char *limits) {
    struct wd_rate *r = w->rate;
    broker_keys keys;
    if (broker_keys_init(&keys, w->opts->prefix) != 0)
        return -EINVAL;
    broker_batch b = {0};
    char *copy = limits ? strdup(limits) : NULL, *save = NULL;
    if (limits && !copy)
        return -ENOMEM;
    for (char *item = copy ? strtok_r(copy, ",", &save) : NULL; item;
         item = strtok_r(NULL, ",", &save)) {
        while (*item == ' ' || *item == '\t')
            item++;
        char *eq = strchr(item, '=');
        if (!eq)
            continue;
        *eq = '\0';
        char *end = eq + 1 + strcspn(eq + 1, " \t");
        *end = '\0';
        broker_cmd_rate_set(&b, &keys, item, eq + 1);
    }
    broker_cmd_rate_list(&b, &keys);
    free(copy);
    if (b.err) {
        int err = b.err;
        broker_batch_clear(&b);
        return err;
    }
    redisReply **replies = calloc(b.n, sizeof *replies);
    int rc = replies ? broker_conn_pipeline(w->conn, b.n, b.argcs, b.argvs, b.argvlens, replies,
                                            RATE_TIMEOUT)
                     : -ENOMEM;
    if (rc == 0) {
        const redisReply *all = replies[b.n - 1];
        rc = -EPROTO;
        if (all->type == REDIS_REPLY_ARRAY) {
            size_t n = all->elements / 2;
            char **tasks = calloc(n ? n : 1, sizeof *tasks);
            size_t k = 0;
            for (size_t i = 0; tasks && i < n; i++)
                if (all->element[2 * i]->type == REDIS_REPLY_STRING &&
                    (tasks[k] = strdup(all->element[2 * i]->str)) != NULL)
                    k++;
            if (tasks) {
                qsort(tasks, k, sizeof *tasks, cmp_str);
                drop_list(r);
                r->tasks = tasks;
                r->ntasks = k;
                r->read_at = green_wallclock();
                rc = 0;
            } else {
                rc = -ENOMEM;
            }
        }
    }
    for (size_t i = 0; replies && i < b.n; i++)
        if (replies[i])
            freeReplyObject(replies[i]);
    free(replies);
    broker_batch_clear(&b);
    return rc;
}

int wd_rate_seed(struct wd_worker *w) {
    for (;;) {
        w->rate->reading = true;
        int rc = read_list(w, w->opts->rate_limit);
        w->rate->reading = false;
        if (rc == 0) {
            if (w->opts->rate_limit)
                wd_log(WD_LOG_INFO, "rate limits set for every worker: %s", w->opts->rate_limit);
            return 0;
        }
        if (rc == -ECANCELED)
            return rc;
        wd_log(WD_LOG_ERROR, "cannot write the rate limits to Redis: %s; retrying", strerror(-rc));
        if (broker_conn_wait_up(w->conn, 1.0) == -ECANCELED || green_sleep(0.5) == -ECANCELED)
            return -ECANCELED;
    }
}

static bool limited(struct wd_worker *w, const char *task) {
    struct wd_rate *r = w->rate;
    if (!r->reading && green_wallclock() - r->read_at >= WD_RATE_REFRESH) {
        r->reading = true;
        int rc = read_list(w, NULL);
        r->reading = false;
        if (rc != 0 && rc != -ECANCELED)
            wd_log(WD_LOG_WARNING, "cannot read the rate limits: %s; using the last ones",
                   strerror(-rc));
    }
    return r->ntasks > 0 && bsearch(&task, r->tasks, r->ntasks, sizeof *r->tasks, cmp_str);
}

enum wd_rate_gate wd_rate_gate(struct wd_worker *w, const broker_delivery *d, const broker_msg *m,
                               const broker_celery_info *celery) {
    if (!limited(w, m->task))
        return WD_RATE_RUN;
    /* The text it runs as when it comes back: relative times made absolute, its id and
     * its retries as they are (waiting for a turn is not a retry). A past eta runs at
     * once: the turn is what it waits for. */
    double eta = m->eta > 0 ? m->eta : wd_sched_now_lo(w->sched);
    size_t len = 0;
    char *text = celery ? broker_celery_encode_scheduled(celery, eta, m->retries, &len)
                        : broker_msg_encode_scheduled(m, eta, m->retries, &len);
    if (!text) {
        wd_log_task(WD_LOG_ERROR, m->id,
                    "out of memory checking the rate limit; it stays in "
                    "flight and will be redelivered");
        return WD_RATE_GONE;
    }
    broker_rate_result res;
    int rc;
    /* A failed call may or may not have run: the next one finds out (the script checks
     * that the tag is still ours before anything else), so retrying is safe. */
    while ((rc = broker_rate_check(w->conn, w->opts->prefix, w->wid, "task", m->task, NULL, d->tag,
                                   d->queue, text, len, &res, RATE_TIMEOUT)) != 0 &&
           broker_conn_error_is_link(rc) && w->stop == WD_RUNNING)
        if (broker_conn_wait_up(w->conn, 1.0) == -ECANCELED || green_sleep(0.2) == -ECANCELED) {
            rc = -ECANCELED;
            break;
        }
    free(text);
    if (rc != 0) {
        if (rc != -ECANCELED)
            wd_log_task(WD_LOG_ERROR, m->id,
                        "checking the rate limit of %s failed: %s; the message stays in "
                        "flight and will be put back",
                        m->task, strerror(-rc));
        return WD_RATE_GONE;
    }
    switch (res.verdict) {
    case BROKER_RATE_KEPT:
        wd_log_task(WD_LOG_DEBUG, m->id, "%s is over its rate limit: it waits %.3f s for its turn",
                    m->task, res.due - res.redis_now);
        wd_sched_kept(w->sched, res.due);
        return WD_RATE_KEPT;
    case BROKER_RATE_GONE:
    case BROKER_RATE_WAIT: /* not for a check with a tag */
        return WD_RATE_GONE;
    default:
        return WD_RATE_RUN;
    }
}

/* The most seconds a request is expected to outlast its own timeout: the connection's set-up
 * before curl's clock starts, and the release's round trip. A slot's lease is the request's
 * timeout plus this. */
#define SLOT_LEASE_MARGIN 2.0
/* A task whose host has no free slot asks again after about this long (from half to one
 * and a half times it, spread so that the waiting tasks do not come back together), or
 * when the earliest lease runs out if that is sooner: slots are given back as requests end,
 * which the worker cannot be told of, so it looks again soon rather than at a lease's end. */
#define SLOT_RETRY 0.25
#define SLOT_TIMEOUT 5.0

static void release_slot(struct wd_worker *w, const char *host, const char *holder) {
    int rc = broker_slot_release(w->conn, w->opts->prefix, host, holder, SLOT_TIMEOUT);
    if (rc != 0)
        wd_log(WD_LOG_WARNING,
               "giving back an --http-host-concurrency slot of %s failed: %s; it is free again "
               "when its lease runs out",
               host, strerror(-rc));
}

void wd_rate_host_release(void *arg, const char *host, const char *holder) {
    release_slot(arg, host, holder);
}

/* A slot of host for t (--http-host-concurrency): 0 taken (t->holder) or no check made; 1
 * none free; -ECANCELED. */
static int take_slot(struct wd_worker *w, const char *host, task_host_ticket *t) {
    struct wd_rate *r = w->rate;
    unsigned long long seq = ++r->slot_seq;
    char holder[sizeof t->holder];
    int n = snprintf(holder, sizeof holder, "%.*s:%llu", (int)(sizeof holder - 24), w->wid, seq);
    if (n < 0 || (size_t)n >= sizeof holder)
        return 0; /* cannot happen: worker ids are shorter */
    broker_slot_result res;
    double lease = (t->lease > 0 ? t->lease : 0) + SLOT_LEASE_MARGIN;
    int rc = broker_slot_acquire(w->conn, w->opts->prefix, host, holder,
                                 w->opts->http_host_concurrency, lease, &res, SLOT_TIMEOUT);
    if (rc == -ECANCELED) {
        /* Killed while asking: the slot may be ours; the kill is spent, so this can run. */
        broker_slot_release(w->conn, w->opts->prefix, host, holder, SLOT_TIMEOUT);
        return rc;
    }
    if (rc != 0) {
        wd_log(WD_LOG_WARNING,
               "taking an --http-host-concurrency slot of %s failed: %s; the request goes on", host,
               strerror(-rc));
        return 0;
    }
    if (!res.taken) {
        double spread = fmod((double)seq * 0.6180339887, 1.0);
        double again = SLOT_RETRY * (0.5 + spread);
        t->wait = res.wait < again ? res.wait : again;
        t->limit = "--http-host-concurrency";
        return 1;
    }
    snprintf(t->holder, sizeof t->holder, "%s", holder);
    return 0;
}

int wd_rate_host_turn(void *arg, const char *host, task_host_ticket *t) {
    struct wd_worker *w = arg;
    t->wait = 0;
    t->holder[0] = '\0';
    if (broker_rate_check_name(host) != NULL)
        return 0; /* a name no key can carry: not limited */
    /* The slot first: given back at once if the rate says no, where a turn of the rate
     * taken for a request that then waits for a slot would be lost. */
    if (w->opts->http_host_concurrency > 0) {
        int rc = take_slot(w, host, t);
        if (rc != 0)
            return rc;
    }
    const char *rate = w->opts->http_host_rate;
    if (rate == NULL)
        return 0;
    broker_rate_result res;
    int rc = broker_rate_check(w->conn, w->opts->prefix, w->wid, "host", host, rate, NULL, NULL,
                               NULL, 0, &res, RATE_TIMEOUT);
    if (rc != 0) {
        if (rc == -ECANCELED) {
            if (t->holder[0])
                release_slot(w, host, t->holder);
            t->holder[0] = '\0';
            return rc;
        }
        wd_log(WD_LOG_WARNING, "checking --http-host-rate for %s failed: %s; the request goes on",
               host, strerror(-rc));
        return 0;
    }
    if (res.verdict != BROKER_RATE_WAIT)
        return 0;
    if (t->holder[0])
        release_slot(w, host, t->holder);
    t->holder[0] = '\0';
    t->wait = res.due - res.redis_now;
    if (t->wait < 0)
        t->wait = 0;
    t->limit = "--http-host-rate";
    return 1;
}
