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
#include "wd_limits.h"
#include "wd_log.h"
#include "wd_observe.h"
#include "wd_rate.h"
#include "wd_sched.h"
#include "wd_shutdown.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ACK_BATCH 1024
#define DEAD_LETTER_TIMEOUT 10.0

/* STARTED: store a STARTED result; FINAL: store the result and ack; KEEP: the same, the
 * ack keeping the message in the scheduled set until it is due (a countdown or eta not
 * reached, a retry); RELEASE: only free the job (its message stays in flight). */
enum ack_kind { ACK_STARTED, ACK_FINAL, ACK_KEEP, ACK_RELEASE };

/* One item on w->acks, from a job to the acker. */
struct ack_item {
    enum ack_kind kind;
    struct wd_job *job;
    char *json; /* the result document; NULL: ack without storing a result (a STARTED item:
                   the acker encodes it when it sends it) */
    char *keep; /* ACK_KEEP: the message as it will run (broker_msg_encode_scheduled) */
    size_t keep_len;
    double due; /* ACK_KEEP: when, on the Redis server's clock */
};

struct wd_job {
    struct wd_worker *w;
    broker_delivery d;
    broker_msg msg;
    bool parsed;
    char *rejected_id; /* the id read from a message that did not parse (for its FAILURE
                          result); NULL otherwise, where msg.id is the id */
    bool finished;     /* its final ack is queued: a pending STARTED is moot */
    double started_at;
    struct wd_limits_run lim;             /* its time limits (wd_limits.h) */
    struct wd_job *prev, *next;           /* w->running: not finished yet */
    struct wd_job *live_prev, *live_next; /* w->live: not freed yet (holds its tag) */
};

/* The id the job's result is stored under, or NULL when it has none. */
static const char *job_id(const struct wd_job *j) {
    return j->parsed ? j->msg.id : j->rejected_id;
}

static void job_free(struct wd_job *j) {
    struct wd_worker *w = j->w;
    wd_limits_run_release(&j->lim);
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

static void queue_item(struct wd_worker *w, struct ack_item *it) {
    if (green_queue_try_put(&w->acks, it) != 0) {
        /* Out of memory: the message stays in flight and comes back through recovery. */
        wd_log_task(WD_LOG_ERROR, it->job->parsed ? it->job->msg.id : it->job->d.tag,
                    "out of memory queueing a result; the message will be redelivered");
        if (it->kind != ACK_STARTED)
            job_free(it->job);
        free(it->json);
        free(it->keep);
        free(it);
    }
}

static void queue_ack(struct wd_worker *w, enum ack_kind kind, struct wd_job *j, char *json) {
    struct ack_item *it = malloc(sizeof *it);
    if (!it) {
        wd_log_task(WD_LOG_ERROR, j->parsed ? j->msg.id : j->d.tag,
                    "out of memory queueing a result; the message will be redelivered");
        free(json);
        if (kind != ACK_STARTED)
            job_free(j);
        return;
    }
    *it = (struct ack_item){.kind = kind, .job = j, .json = json};
    queue_item(w, it);
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

/* ---- keeping a message for later (wd_sched.h) -------------------------------------------
 *
 * A message whose time has not come, or whose task asked for a retry, is acked with its
 * text kept in the scheduled set (ack.lua's "!" entries): the acker sends it in its next
 * batch, and until then it is still in flight here, so a kill at any point leaves the old
 * delivery or the kept copy, never both. No pool slot is held meanwhile. */

/* Queue the ack that keeps j's message, as `retries`, due at `due` (server clock), with
 * result json (may be NULL: none stored). Returns false, the job untouched, when out of
 * memory; json is the caller's then. */
static bool keep_for_later(struct wd_job *j, double due, int retries, char *json) {
    struct ack_item *it = malloc(sizeof *it);
    size_t len = 0;
    char *text = it ? broker_msg_encode_scheduled(&j->msg, due, retries, &len) : NULL;
    if (!text) {
        free(it);
        return false;
    }
    unlink_job(j);
    j->finished = true;
    *it = (struct ack_item){
        .kind = ACK_KEEP, .job = j, .json = json, .keep = text, .keep_len = len, .due = due};
    queue_item(j->w, it);
    return true;
}

/* A message taken before its eta (or countdown): back to the scheduled set, unrun. True
 * when it was kept (or, out of memory, released to stay in flight); false: run it now. */
static bool wait_until_due(struct wd_job *j) {
    struct wd_worker *w = j->w;
    broker_msg *m = &j->msg;
    if (m->eta <= 0 || m->eta <= wd_sched_now_lo(w->sched))
        return false;
    wd_log_task(WD_LOG_DEBUG, m->id, "%s waits until %.6f (in %.3f s) in the scheduled set",
                m->task, m->eta, m->eta - wd_sched_now_lo(w->sched));
    if (!keep_for_later(j, m->eta, m->retries, NULL)) {
        wd_log_task(WD_LOG_ERROR, m->id,
                    "out of memory keeping a message for later; it stays in flight and "
                    "will be redelivered");
        release(j);
    }
    return true;
}

/* The task asked for a retry (TASK_ERETRY): keep the message for its next attempt with a
 * RETRY result, or, without retries left, the FAILURE result. */
static void retry(struct wd_job *j, const task_error *err) {
    struct wd_worker *w = j->w;
    broker_msg *m = &j->msg;
    const char *etype = err->type[0] ? err->type : "TaskError";
    if (m->retries >= m->max_retries) {
        wd_log_task(WD_LOG_INFO, m->id, "%s asked for a retry, but it has had all %d", m->task,
                    m->max_retries);
        finish(j, BROKER_FAILURE, NULL, etype, err->message);
        return;
    }
    /* The attempt ended before the delay starts: read in this order, the next attempt
     * never starts before finished_at + delay. */
    double finished = green_wallclock();
    double delay = wd_sched_retry_delay(w->sched, m, err->retry_in);
    double due = wd_sched_now_hi(w->sched) + delay;
    char *json = NULL;
    if (!m->ignore_result) {
        broker_result r = {
            .id = m->id,
            .task = m->task,
            .status = BROKER_RETRY,
            .error_type = etype,
            .error_message = err->message,
            .retries = m->retries + 1,
            .eta = due,
            .worker = w->wid,
            .started_at = j->started_at,
            .finished_at = finished,
        };
        json = broker_result_encode(&r);
        if (!json) {
            finish(j, BROKER_FAILURE, NULL, "MemoryError", "out of memory scheduling a retry");
            return;
        }
    }
    wd_log_task(WD_LOG_INFO, m->id, "%s failed (%s: %s); retry %d of %d in %.3f s", m->task, etype,
                err->message, m->retries + 1, m->max_retries, delay);
    wd_observe_finished(w->obs, m->id, m->task, BROKER_RETRY, finished - j->started_at, etype,
                        err->message);
    if (!keep_for_later(j, due, m->retries + 1, json)) {
        free(json);
        finish(j, BROKER_FAILURE, NULL, "MemoryError", "out of memory scheduling a retry");
    }
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
    if (m->expires > 0 && wd_sched_now_lo(w->sched) >= m->expires) {
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
    if (m->retries > 0)
        wd_log_task(WD_LOG_DEBUG, m->id, "%s started (tag %s, retry %d)", m->task, j->d.tag,
                    m->retries);
    else
        wd_log_task(WD_LOG_DEBUG, m->id, "%s started (tag %s)", m->task, j->d.tag);
    wd_observe_started(w->obs, m->id, m->task);

    json_t *result = NULL;
    task_error err = {{0}, {0}, -1};
    wd_limits_run_start(&j->lim, w->lims, m);
    task_call call = {m->id, m->task, m->args, m->kwargs, m->retries, &j->lim.soft_fired};
    int rc = fn(&call, &result, &err);
    wd_limits_run_end(&j->lim);
    char limit_msg[128];
    const char *limit_type = wd_limits_outcome(&j->lim, rc, limit_msg, sizeof limit_msg);

    if (limit_type) {
        json_decref(result); /* after the hard limit, whatever the task returned */
        finish(j, BROKER_FAILURE, NULL, limit_type, limit_msg);
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
    } else if (rc == TASK_ERETRY) {
        retry(j, &err);
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
    broker_msg_error perr;
    memset(&perr, 0, sizeof perr);
    j->started_at = green_wallclock();
    /* Relative times (countdown, expires) count from the Redis server's clock, its upper
     * bound: a countdown is never cut short. */
    int rc = broker_msg_parse(j->d.raw, j->d.len, &j->w->limits, wd_sched_now_hi(j->w->sched),
                              &j->msg, &perr);
    if (rc == 0) {
        j->parsed = true;
        if (wait_until_due(j))
            return NULL;
        /* Over its task's rate limit: already moved to the scheduled set (or no longer
         * ours); free the job, no ack, no result (wd_rate.h). */
        if (wd_rate_gate(j->w, &j->d, &j->msg) != WD_RATE_RUN) {
            release(j);
            return NULL;
        }
        /* Read after the due time was checked: a task never starts before its eta. */
        j->started_at = green_wallclock();
        wd_observe_received(j->w->obs, j->msg.id, j->msg.task, j->d.queue);
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
            .keep = it->keep,
            .keep_len = it->keep_len,
            .queue = it->job->d.queue,
            .due = it->due,
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
        if (sent[i]->kind == ACK_KEEP && owned[i])
            wd_sched_kept(w->sched, sent[i]->due);
        if ((sent[i]->kind == ACK_FINAL || sent[i]->kind == ACK_KEEP) && !owned[i]) {
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
        free(it->keep);
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
