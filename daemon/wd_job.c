/*
 * wd_job.c - running one message, and the acker that stores results in batches.
 *
 * A job is one delivery from the fetcher. Its greenlet (from the worker's pool) parses and
 * validates the message, finds the task, runs it inside its time limits, and queues the
 * outcome for the acker; it never talks to Redis on the common path. The acker takes
 * whatever has queued up (up to ACK_BATCH items) and sends it in one round trip:
 * STARTED results, then the final results with their acks (broker_ack). A STARTED result
 * whose task has already finished by then is dropped: the final one supersedes it, and
 * short tasks cost one write, not two (and no encoding: the acker encodes a STARTED
 * document only when it sends it). A STARTED result is stored only while the message
 * is still this worker's, like a final one (see broker/ack.lua).
 *
 * A message that cannot be run (invalid, unknown task, wrong arguments) is never dropped
 * silently: it goes to the dead-letter list with the reason, gets a FAILURE result when its
 * id can be read, is logged, and is acked. Only that rare path writes from the job's own
 * greenlet (the dead letter must be stored before the ack releases the message).
 *
 * A job killed by a shutdown (-ECANCELED while the worker stops) queues nothing: its
 * message stays in the in-flight hash and the shutdown's requeue puts it back.
 *
 * Revocations (wd_revoke.h): a parsed job asks whether its id is revoked before it runs,
 * and is not run if it is (REVOKED, "revoked"); a job killed by a terminate ends REVOKED,
 * "terminated", whatever its task returned, and is acked like any final result.
 *
 * The acker's round trip is retried through Redis outages by wd_batch_send (wd_batch.h),
 * until the shutdown's deadline (w->give_up_at) once there is one.
 *
 * All of this runs on greenlets of the worker's hub.
 */
#include "wd_worker_internal.h"

#include "broker_result.h"
#include "green_check.h"
#include "task.h"
#include "wd_batch.h"
#include "wd_log.h"
#include "wd_observe.h"
#include "wd_revoke.h"
#include "wd_shutdown.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ACK_BATCH 1024
#define DEAD_LETTER_TIMEOUT 10.0

/* STARTED: store a STARTED result; FINAL: store the result and ack; RELEASE: only free
 * the job (its message stays in flight). */
enum ack_kind { ACK_STARTED, ACK_FINAL, ACK_RELEASE };

/* One item on w->acks, from a job to the acker. */
struct ack_item {
    enum ack_kind kind;
    struct wd_job *job;
    char *json; /* the result document; NULL: ack without storing a result (a STARTED item:
                   the acker encodes it when it sends it) */
};

struct wd_job {
    struct wd_worker *w;
    broker_delivery d;
    broker_msg msg;
    bool parsed;
    char *rejected_id; /* the id read from a message that did not parse (for its FAILURE
                          result); NULL otherwise, where msg.id is the id */
    bool finished;     /* its final ack is queued: a pending STARTED is moot */
    bool terminated;   /* revoked with --terminate while it ran (wd_job_terminate) */
    green_t g;         /* its greenlet, once it started */
    double started_at;
    struct wd_job *prev, *next;           /* w->running: not finished yet */
    struct wd_job *live_prev, *live_next; /* w->live: not freed yet (holds its tag) */
};

/* The id the job's result is stored under, or NULL when it has none. */
static const char *job_id(const struct wd_job *j) {
    return j->parsed ? j->msg.id : j->rejected_id;
}

static void job_free(struct wd_job *j) {
    struct wd_worker *w = j->w;
    w->live_count--;
    if (j->live_prev)
        j->live_prev->live_next = j->live_next;
    else if (w->live == j)
        w->live = j->live_next;
    if (j->live_next)
        j->live_next->live_prev = j->live_prev;
    free(j->rejected_id);
    free(j->d.tag);
    free(j->d.queue);
    free(j->d.raw);
    broker_msg_free(&j->msg);
    free(j);
}

static void unlink_job(struct wd_job *j) {
    if (j->prev)
        j->prev->next = j->next;
    else
        j->w->running = j->next;
    if (j->next)
        j->next->prev = j->prev;
    j->prev = j->next = NULL;
}

static void queue_ack(struct wd_worker *w, enum ack_kind kind, struct wd_job *j, char *json) {
    struct ack_item *it = malloc(sizeof *it);
    if (it)
        *it = (struct ack_item){.kind = kind, .job = j, .json = json};
    if (!it || green_queue_try_put(&w->acks, it) != 0) {
        /* Out of memory: the message stays in flight and comes back through recovery. */
        wd_log_task(WD_LOG_ERROR, j->parsed ? j->msg.id : j->d.tag,
                    "out of memory queueing a result; the message will be redelivered");
        free(it);
        free(json);
        if (kind != ACK_STARTED)
            job_free(j);
    }
}

/* Forget a job without acking it: its message stays in flight, for the shutdown's requeue
 * or for recovery. The acker frees it, after any STARTED item that still points at it. */
static void release(struct wd_job *j) {
    unlink_job(j);
    j->finished = true;
    queue_ack(j->w, ACK_RELEASE, j, NULL);
}

static char *result_json(struct wd_job *j, const char *id, broker_status status, json_t *value,
                         const char *etype, const char *emsg) {
    broker_result r = {
        .id = id,
        .task = j->parsed ? j->msg.task : NULL,
        .status = status,
        .result = value,
        .error_type = etype,
        .error_message = emsg,
        .retries = j->parsed ? j->msg.retries : 0,
        .worker = j->w->wid,
        .started_at = j->started_at,
        .finished_at = status == BROKER_STARTED ? 0 : green_wallclock(),
    };
    return broker_result_encode(&r);
}

/* The final outcome: counted, logged, queued for the acker (which frees the job). */
static void finish(struct wd_job *j, broker_status status, json_t *value, const char *etype,
                   const char *emsg) {
    struct wd_worker *w = j->w;
    unlink_job(j);
    j->finished = true;
    const char *id = j->msg.id;
    if (status == BROKER_SUCCESS) {
        wd_log_task(WD_LOG_DEBUG, id, "%s succeeded in %.3f s", j->msg.task,
                    green_wallclock() - j->started_at);
    } else {
        wd_log_task(WD_LOG_WARNING, id, "%s %s: %s: %s", j->msg.task,
                    status == BROKER_REVOKED ? "revoked" : "failed", etype, emsg);
    }
    wd_observe_finished(w->obs, id, j->msg.task, status,
                        status == BROKER_REVOKED ? -1 : green_wallclock() - j->started_at, etype,
                        emsg);
    char *json = j->msg.ignore_result ? NULL : result_json(j, id, status, value, etype, emsg);
    queue_ack(w, ACK_FINAL, j, json);
}

/* Store a dead letter, retrying through Redis outages: the message must not be acked
 * before its dead letter is safe. Returns 0, or -ECANCELED when a shutdown interrupts. */
static int store_dead_letter(struct wd_job *j, const char *id, const char *reason) {
    struct wd_worker *w = j->w;
    broker_dead d = {
        .raw = j->d.raw,
        .raw_len = j->d.len,
        .reason = reason,
        .worker = w->wid,
        .time = green_wallclock(),
        .id = id,
        .queue = j->d.queue,
    };
    char *json = broker_dead_encode(&d);
    int rc = json ? 0 : -ENOMEM;
    while (json && (rc = broker_dead_letter(w->bw, json, DEAD_LETTER_TIMEOUT)) != 0 &&
           rc != -ECANCELED)
        if (green_sleep(0.5) == -ECANCELED) {
            rc = -ECANCELED;
            break;
        }
    free(json);
    return rc;
}

/* A message that cannot run: dead letter, FAILURE result if the id is known, ack. */
static void reject(struct wd_job *j, const char *id, const char *etype, const char *reason) {
    struct wd_worker *w = j->w;
    wd_observe_invalid(w->obs);
    wd_log_task(WD_LOG_WARNING, id ? id : "-", "dead-lettered message from queue %s (tag %s): %s",
                j->d.queue, j->d.tag, reason);
    if (store_dead_letter(j, id, reason) != 0) {
        release(j); /* left in flight: the shutdown puts it back */
        return;
    }
    unlink_job(j);
    j->finished = true;
    wd_observe_dead_lettered(w->obs);
    /* The acker stores the result under job_id(j): for a message that did not parse,
     * that is this copy of the id the parser could still read. */
    if (id && !j->parsed)
        j->rejected_id = strdup(id);
    char *json = job_id(j) ? result_json(j, id, BROKER_FAILURE, NULL, etype, reason) : NULL;
    if (id && !json) {
        wd_log_task(WD_LOG_ERROR, id, "out of memory encoding a result");
    }
    queue_ack(w, ACK_FINAL, j, json);
}

/* The outcome of a task revoked before it ran, or terminated while it ran. */
static void finish_revoked(struct wd_job *j) {
    finish(j, BROKER_REVOKED, NULL, "TaskRevokedError", j->terminated ? "terminated" : "revoked");
}

/* Whether the job's id is revoked (wd_revoke.h): then it is finished here and must not
 * run. A made-up id cannot have been revoked. */
static bool revoked(struct wd_job *j) {
    if (j->msg.id_generated)
        return false;
    int rc = wd_revoke_check(j->w->revoke, j->msg.id);
    if (rc == 0)
        return false;
    if (rc < 0 && !j->terminated)
        release(j); /* killed by a shutdown: left in flight, the shutdown puts it back */
    else
        finish_revoked(j);
    return true;
}

static void run(struct wd_job *j) {
    struct wd_worker *w = j->w;
    broker_msg *m = &j->msg;
    task_fn fn = task_registry_find(m->task);
    if (!fn) {
        char reason[512];
        snprintf(reason, sizeof reason, "unknown task \"%s\"", m->task);
        reject(j, m->id, "NotRegistered", reason);
        return;
    }
    if (m->expires > 0 && green_wallclock() > m->expires) {
        finish(j, BROKER_REVOKED, NULL, "TaskExpired", "the message expired before it ran");
        return;
    }
    if (m->redelivered > 0)
        /* Worth a warning: a message that keeps coming back may be what kills workers,
         * and the operator should see it before it becomes a poison pill. */
        wd_log_task(WD_LOG_WARNING, m->id,
                    "%s redelivered %d time(s): the worker running it "
                    "before died",
                    m->task, m->redelivered);
    /* The STARTED document is encoded by the acker, and only if the task is still
     * running when the batch goes out: most tasks finish first, and encoding it here cost
     * a quarter of the worker's CPU on 100k echo tasks for documents that were dropped. */
    if (!m->ignore_result)
        queue_ack(w, ACK_STARTED, j, NULL);
    wd_log_task(WD_LOG_DEBUG, m->id, "%s started (tag %s)", m->task, j->d.tag);
    wd_observe_started(w->obs, m->id, m->task);

    green_timeout hard, soft;
    green_timeout_start(&hard, m->time_limit > 0 ? m->time_limit : -1);
    green_timeout_start(&soft, m->soft_time_limit > 0 ? m->soft_time_limit : -1);
    json_t *result = NULL;
    task_error err = {{0}, {0}};
    task_call call = {m->id, m->task, m->args, m->kwargs, m->retries};
    int rc = fn(&call, &result, &err);
    bool soft_fired = green_timeout_end(&soft);
    bool hard_fired = green_timeout_end(&hard);

    if (j->terminated) {
        json_decref(result);
        finish_revoked(j);
        return;
    }
    if (rc == -ECANCELED && w->stop != WD_RUNNING) {
        json_decref(result);
        wd_observe_put_back(w->obs);
        wd_log_task(WD_LOG_INFO, m->id, "%s interrupted by shutdown; it goes back to queue %s",
                    m->task, j->d.queue);
        release(j);
        return;
    }
    if (rc == 0) {
        finish(j, BROKER_SUCCESS, result ? result : json_null(), NULL, NULL);
    } else if (rc == TASK_EFAIL) {
        finish(j, BROKER_FAILURE, NULL, err.type[0] ? err.type : "TaskError", err.message);
    } else if (rc == TASK_EINVAL) {
        reject(j, m->id, err.type[0] ? err.type : "TypeError", err.message);
    } else if (rc == -ETIMEDOUT && (hard_fired || soft_fired)) {
        char msg[128];
        double limit = hard_fired ? m->time_limit : m->soft_time_limit;
        snprintf(msg, sizeof msg, "the task ran past its %s of %g s",
                 hard_fired ? "time_limit" : "soft_time_limit", limit);
        finish(j, BROKER_FAILURE, NULL, hard_fired ? "TimeLimitExceeded" : "SoftTimeLimitExceeded",
               msg);
    } else if (rc < 0) {
        /* An errno the task should have turned into a TASK_EFAIL (task.h). */
        finish(j, BROKER_FAILURE, NULL, "InternalError", strerror(-rc));
    } else {
        /* Not an errno at all: strerror would name an unrelated error. */
        char msg[96];
        snprintf(msg, sizeof msg, "the task returned %d, which is not a task result code", rc);
        finish(j, BROKER_FAILURE, NULL, "InternalError", msg);
    }
    json_decref(result);
}

static void *job_main(void *arg) {
    struct wd_job *j = arg;
    j->g = green_self();
    broker_msg_error perr;
    memset(&perr, 0, sizeof perr);
    j->started_at = green_wallclock();
    int rc = broker_msg_parse(j->d.raw, j->d.len, &j->w->limits, j->started_at, &j->msg, &perr);
    if (rc == 0) {
        j->parsed = true;
        wd_observe_received(j->w->obs, j->msg.id, j->msg.task, j->d.queue);
        if (!revoked(j))
            run(j);
    } else if (rc == -EINVAL) {
        reject(j, perr.has_id ? perr.id : NULL, "InvalidMessage", perr.reason);
    } else {
        wd_log_task(WD_LOG_ERROR, j->d.tag, "cannot parse a message: %s; it stays in flight",
                    strerror(-rc));
        release(j);
    }
    return NULL;
}

int wd_job_start(struct wd_worker *w, broker_delivery *d) {
    struct wd_job *j = calloc(1, sizeof *j);
    if (!j)
        return -ENOMEM;
    int rc = green_pool_try_spawn(&w->pool, job_main, j);
    if (rc != 0) {
        free(j);
        return rc;
    }
    /* The job greenlet starts only once the fetcher yields: filling it in now is safe. */
    j->w = w;
    j->d = *d;
    *d = (broker_delivery){0};
    j->next = w->running;
    if (w->running)
        w->running->prev = j;
    w->running = j;
    j->live_next = w->live;
    if (w->live)
        w->live->live_prev = j;
    w->live = j;
    w->live_count++;
    wd_observe_taken(w->obs);
    return 0;
}

void wd_job_discard_unstarted(struct wd_worker *w) {
    while (w->running)
        release(w->running);
}

size_t wd_job_terminate(struct wd_worker *w, const char *id) {
    size_t n = 0;
    for (struct wd_job *j = w->running; j; j = j->next) {
        if (j->parsed && !j->terminated && strcmp(j->msg.id, id) == 0) {
            j->terminated = true;
            green_kill(j->g);
            n++;
        }
    }
    return n;
}

void wd_job_each_running(struct wd_worker *w, void (*fn)(void *arg, const char *id), void *arg) {
    for (struct wd_job *j = w->running; j; j = j->next)
        if (j->parsed && !j->terminated)
            fn(arg, j->msg.id);
}

static int cmp_u64(const void *a, const void *b) {
    unsigned long long x = *(const unsigned long long *)a, y = *(const unsigned long long *)b;
    return x < y ? -1 : x > y;
}

int wd_job_orphans(struct wd_worker *w, char *const *tags, size_t ntags, const char **orphans,
                   size_t *norphans) {
    unsigned long long *live = malloc((w->live_count ? w->live_count : 1) * sizeof *live);
    if (!live)
        return -ENOMEM;
    size_t nlive = 0;
    for (struct wd_job *j = w->live; j; j = j->live_next)
        live[nlive++] = strtoull(j->d.tag, NULL, 10);
    qsort(live, nlive, sizeof *live, cmp_u64);
    *norphans = 0;
    for (size_t i = 0; i < ntags; i++) {
        unsigned long long t = strtoull(tags[i], NULL, 10);
        if (!bsearch(&t, live, nlive, sizeof *live, cmp_u64))
            orphans[(*norphans)++] = tags[i];
    }
    free(live);
    return 0;
}

/* ---- the acker ------------------------------------------------------------------------ */

/* The acker's arrays, allocated once at its start: per batch, their calloc (over 1 KiB, so
 * a malloc_consolidate each time) cost more than the rest of the acker's bookkeeping. */
struct acker {
    struct wd_worker *w;
    void *items[ACK_BATCH]; /* struct ack_item * */
    broker_ack_entry acks[ACK_BATCH];
    bool owned[ACK_BATCH];
    struct ack_item *sent[ACK_BATCH];
    size_t m; /* entries in acks[] and sent[] */
};

/* One round trip of the batch (wd_batch_send's attempt). */
static int ack_once(void *arg, double timeout) {
    struct acker *a = arg;
    return broker_ack(a->w->bw, a->acks, a->m, a->owned, timeout);
}

static void send_batch(struct acker *a, size_t n) {
    struct wd_worker *w = a->w;
    struct ack_item **sent = a->sent;
    broker_ack_entry *acks = a->acks;
    bool *owned = a->owned;
    size_t m = 0;
    memset(owned, 0, n * sizeof *owned);
    for (size_t i = 0; i < n; i++) {
        struct ack_item *it = a->items[i];
        if (it->kind == ACK_RELEASE || (it->kind == ACK_STARTED && it->job->finished))
            continue;
        if (it->kind == ACK_STARTED) {
            struct wd_job *j = it->job;
            it->json = result_json(j, j->msg.id, BROKER_STARTED, NULL, NULL, NULL);
            if (!it->json)
                continue; /* out of memory: a STARTED result is only informative */
        }
        /* A STARTED result is stored only while the message is still this worker's: sent
         * late (this worker was stopped, or retries after a long outage) it must not
         * replace the result of a worker that took the message over meanwhile. */
        acks[m] = (broker_ack_entry){
            .tag = it->job->d.tag,
            .id = it->json ? job_id(it->job) : NULL,
            .json = it->json,
            .if_owned = it->kind == ACK_STARTED,
        };
        sent[m++] = it;
    }
    a->m = m;
    if (m > 0) {
        /* Give up where retrying cannot help (Redis refuses the batch three times) or may
         * not wait (a shutdown with Redis away, past its deadline): the messages stay in
         * flight, and recovery or the next start redelivers them. At least once, never
         * lost. A deadline, not a count of attempts: each attempt may wait a whole call
         * time-out for a Redis that is down, and 20 of those kept a SIGTERMed worker for
         * minutes. */
        char what[64];
        snprintf(what, sizeof what, "storing %zu results", m);
        struct wd_batch_policy policy = {
            .conn = w->conn,
            .call_timeout = WD_SHUTDOWN_ACK_CALL,
            .give_up_at = &w->give_up_at,
            .max_refusals = 2,
            .what = what,
        };
        int rc = wd_batch_send(&policy, ack_once, a);
        if (rc != 0) {
            wd_log(WD_LOG_ERROR,
                   "giving up storing %zu results (%s): their messages stay "
                   "in flight and will be redelivered",
                   m, strerror(-rc));
            memset(owned, 1, m * sizeof *owned);
        }
    }
    for (size_t i = 0; i < m; i++) {
        if (sent[i]->kind == ACK_FINAL && !owned[i]) {
            wd_observe_lost_ownership(w->obs);
            wd_log_task(WD_LOG_WARNING, job_id(sent[i]->job),
                        "this worker was presumed dead and the message was given to another "
                        "worker meanwhile: its result here was not stored");
        }
    }
    for (size_t i = 0; i < n; i++) {
        struct ack_item *it = a->items[i];
        if (it->kind != ACK_STARTED)
            job_free(it->job);
        free(it->json);
        free(it);
    }
}

static void *acker_main(void *arg) {
    struct acker *a = arg;
    struct wd_worker *w = a->w;
    bool end = false;
    while (!end) {
        if (green_queue_get(&w->acks, &a->items[0], -1) != 0)
            break;
        size_t n = 0;
        if (a->items[0] == NULL)
            end = true;
        else
            n = wd_batch_gather(&w->acks, a->items, 1, ACK_BATCH, &end);
        send_batch(a, n);
        green_event_set(&w->acked);
    }
    free(a);
    return NULL;
}

int wd_acker_start(struct wd_worker *w, green_t *g) {
    struct acker *a = malloc(sizeof *a);
    if (!a)
        return -ENOMEM;
    a->w = w;
    int rc = green_spawn(g, acker_main, a);
    if (rc != 0)
        free(a);
    return rc;
}
