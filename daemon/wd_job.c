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
 * A message taken before its due time (countdown, eta), and one whose task asked for a
 * retry (TASK_ERETRY), is acked into the scheduled set instead (an ACK_KEEP item: the ack
 * and the move are one script, ack.lua's "!" entries), with a RETRY result for a retry;
 * the job ends there and its slot is free (docs/design.md "Delivery"; the clock and the
 * delays are wd_sched.h's).
 *
 * A job killed by a shutdown (-ECANCELED while the worker stops) queues nothing: its
 * message stays in the in-flight hash and the shutdown's requeue puts it back.
 *
 * A result is at most --max-result-size bytes of JSON: broker_result_encode_max stops
 * building a larger one at the limit, and it becomes a FAILURE ResultTooLarge saying how
 * large it would have been. A task is counted (metrics, events, /workers) once its result
 * is stored, not when it ends: until Redis has taken it, it has not succeeded for anyone
 * reading results.
 *
 * The acker's round trips go through wd_batch_send_entries (wd_batch.h): retried through
 * Redis outages until the shutdown's deadline (w->give_up_at) once there is one; waited
 * out on the reconnect schedule while Redis refuses writes (out of memory, ...), which is
 * reported to the observers (the log, /healthz, the metrics) and stops the fetcher; and,
 * when Redis refuses a batch itself, sent again in halves down to the one result it will
 * not take, which becomes a short FAILURE ResultRefused (ack_refused) so that it neither
 * holds up the others nor comes back to the next worker.
 *
 * Revocations (wd_revoke.h): a parsed job asks whether its id is revoked before it runs,
 * and is not run if it is (REVOKED, "revoked"); a job killed by a terminate ends REVOKED,
 * "terminated", whatever its task returned, and is acked like any final result.
 *
 * All of this runs on greenlets of the worker's hub.
 */
#include "wd_worker_internal.h"

#include "broker_celery.h"
#include "broker_result.h"
#include "green_check.h"
#include "task.h"
#include "task_crawl.h"
#include "task_host.h"
#include "wd_batch.h"
#include "wd_canvas.h"
#include "wd_limits.h"
#include "wd_log.h"
#include "wd_observe.h"
#include "wd_rate.h"
#include "wd_sched.h"
#include "wd_revoke.h"
#include "wd_shutdown.h"
#include "wd_unique.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ACK_BATCH 1024
/* The most bytes of results one round trip sends (a larger result goes alone): the
 * command is copied twice on its way out (hiredis formats it, then buffers it), and
 * results of many MiB gain nothing from sharing a round trip. */
#define ACK_BATCH_BYTES ((size_t)8 << 20)
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
    /* A final outcome (finish): reported to the observers once the result is stored. */
    bool observe;
    bool shrunk; /* Redis refused the result: json is now a short FAILURE saying so */
    broker_status status;
    double runtime;
    char *etype, *emsg; /* malloc'd copies, or NULL */
    char *keep;         /* ACK_KEEP: the message as it will run (broker_msg_encode_scheduled) */
    size_t keep_len;
    double due;                   /* ACK_KEEP: when, on the Redis server's clock */
    broker_celery_follow *follow; /* ACK_FINAL of a Celery task: what its ack also does */
    size_t nfollow;
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
    struct wd_limits_run lim;             /* its time limits (wd_limits.h) */
    bool unique_owner;                    /* it holds its unique key's lock (wd_unique.h):
                                             the final ack releases it */
    char unique_hash[41];                 /* that lock's hash */
    char *duplicate_of;                   /* a Duplicate: the id holding the lock */
    broker_canvas canvas;                 /* what its final ack does for a chain, group or
                                             chord (wd_canvas.h); empty: nothing */
    bool canvas_start;                    /* a group or chord: its ack stores no result of
                                             its own (the canvas ops store the interim one) */
    bool no_canvas;                       /* parsed, and no canvas part at all
                                             (wd_canvas_involved): no canvas ops to build */
    bool celery;                          /* from a Celery queue (broker_celery.h) */
    broker_celery_info cinfo;             /* its envelope, once read */
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
    free(j->duplicate_of);
    broker_canvas_free(&j->canvas);
    broker_celery_info_free(&j->cinfo);
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

static void item_free(struct ack_item *it) {
    free(it->json);
    free(it->etype);
    free(it->emsg);
    free(it->keep);
    broker_celery_follow_free(it->follow, it->nfollow);
    free(it);
}

static void queue_item(struct wd_worker *w, struct ack_item *it, enum ack_kind kind,
                       struct wd_job *j, char *json) {
    if (it) {
        it->kind = kind;
        it->job = j;
        it->json = json;
    }
    if (!it || green_queue_try_put(&w->acks, it) != 0) {
        /* Out of memory: the message stays in flight and comes back through recovery. */
        wd_log_task(WD_LOG_ERROR, j->parsed ? j->msg.id : j->d.tag,
                    "out of memory queueing a result; the message will be redelivered");
        if (it)
            item_free(it);
        else
            free(json);
        if (kind != ACK_STARTED)
            job_free(j);
    }
}

static void queue_ack(struct wd_worker *w, enum ack_kind kind, struct wd_job *j, char *json) {
    queue_item(w, calloc(1, sizeof(struct ack_item)), kind, j, json);
}

/* Forget a job without acking it: its message stays in flight, for the shutdown's requeue
 * or for recovery. The acker frees it, after any STARTED item that still points at it. */
static void release(struct wd_job *j) {
    unlink_job(j);
    j->finished = true;
    queue_ack(j->w, ACK_RELEASE, j, NULL);
}

/* A time of this host's clock as the Redis server's clock says it (docs/design.md
 * "Delivery", whose clock): results carry the times every worker shares, so a host whose
 * clock is off by 30 s does not date its results 30 s off. Durations stay on this host's
 * clock (both ends move together). */
static double on_redis_clock(const struct wd_worker *w, double t) {
    return t > 0 ? t + wd_sched_offset_lo(w->sched) : t;
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
        .started_at = on_redis_clock(j->w, j->started_at),
        .finished_at = status == BROKER_STARTED ? 0 : on_redis_clock(j->w, green_wallclock()),
    };
    if (j->celery)
        return broker_celery_result_encode(&r, j->cinfo.envelope ? &j->cinfo : NULL,
                                           j->parsed ? &j->msg : NULL,
                                           j->w->opts->celery_result_extended, j->d.queue);
    if (!j->duplicate_of)
        return broker_result_encode(&r);
    /* A Duplicate names the message it is a duplicate of. */
    json_t *doc = broker_result_json(&r);
    char *json = NULL;
    if (doc && json_object_set_new(doc, "original", json_string(j->duplicate_of)) == 0)
        json = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    return json;
}

/* The final result document of j, at most --max-result-size bytes: one that would be
 * larger becomes a FAILURE ResultTooLarge saying how large it was (*status, *etype and
 * *emsg then describe that failure; emsg points into buf). NULL when out of memory. */
static char *final_json(struct wd_job *j, broker_status *status, json_t *value, const char **etype,
                        const char **emsg, char *buf, size_t buflen) {
    if (j->duplicate_of) /* small, and it names the original (result_json) */
        return result_json(j, j->msg.id, *status, value, *etype, *emsg);
    broker_result r = {
        .id = j->msg.id,
        .task = j->msg.task,
        .status = *status,
        .result = value,
        .error_type = *etype,
        .error_message = *emsg,
        .retries = j->msg.retries,
        .worker = j->w->wid,
        .started_at = on_redis_clock(j->w, j->started_at),
        .finished_at = on_redis_clock(j->w, green_wallclock()),
    };
    char *json = NULL;
    size_t len = 0, max = j->w->opts->max_result_size;
    if (j->celery) {
        json = result_json(j, j->msg.id, *status, value, *etype, *emsg);
        if (!json || (len = strlen(json)) <= max)
            return json;
        free(json);
    } else if (broker_result_encode_max(&r, max, &json, &len) != -E2BIG) {
        return json;
    }
    snprintf(buf, buflen,
             "the result is %zu bytes of JSON, over --max-result-size (%zu bytes); it was not "
             "stored",
             len, max);
    *status = BROKER_FAILURE;
    *etype = "ResultTooLarge";
    *emsg = buf;
    return result_json(j, j->msg.id, *status, NULL, *etype, *emsg);
}

/* A page of an http.scrape crawl is counted done (SUCCESS) or failed (any other final
 * outcome) in its crawl by its final ack, in the same atomic step (task_crawl.h,
 * broker_canvas_crawl): whoever decided the outcome, the task or the worker (a time limit,
 * a revocation, an expiry, a dead letter). False when out of memory. */
static bool crawl_final(struct wd_job *j, broker_status status) {
    task_crawl_page p;
    int rc = task_crawl_page_of(j->msg.task, j->msg.id, j->msg.args, j->msg.kwargs, &p);
    if (rc == 1)
        rc = broker_canvas_crawl(&j->canvas, p.crawl, p.url, p.max_pages, TASK_CRAWL_TTL,
                                 status == BROKER_SUCCESS);
    task_crawl_page_free(&p);
    return rc >= 0;
}

/* The final outcome: logged, queued for the acker (which frees the job, and counts it once
 * the result is stored). */
static void finish(struct wd_job *j, broker_status status, json_t *value, const char *etype,
                   const char *emsg) {
    struct wd_worker *w = j->w;
    const char *id = j->msg.id;
    char too_large[160];
    char *json = j->msg.ignore_result || j->canvas_start
                     ? NULL
                     : final_json(j, &status, value, &etype, &emsg, too_large, sizeof too_large);
    /* The chain's next link or its abort, the member's record, the crawl's count: in the
     * same ack. */
    if (!j->canvas_start &&
        ((!j->no_canvas && wd_canvas_final(&j->msg, j->d.queue, &w->limits, status, value, etype,
                                           emsg, &j->canvas) != 0) ||
         !crawl_final(j, status))) {
        wd_log_task(WD_LOG_ERROR, id,
                    "out of memory building its chain, chord or crawl step; it stays in flight and "
                    "will be redelivered");
        free(json);
        release(j);
        return;
    }
    unlink_job(j);
    j->finished = true;
    if (status == BROKER_SUCCESS) {
        wd_log_task(WD_LOG_DEBUG, id, "%s succeeded in %.3f s", j->msg.task,
                    green_wallclock() - j->started_at);
    } else {
        wd_log_task(WD_LOG_WARNING, id, "%s %s: %s: %s", j->msg.task,
                    status == BROKER_REVOKED ? "revoked" : "failed", etype, emsg);
    }
    struct ack_item *it = calloc(1, sizeof *it);
    if (it && j->celery && (status == BROKER_SUCCESS || status == BROKER_FAILURE)) {
        /* Celery's callbacks, errbacks and chain: published by the ack itself. */
        char *doc =
            json || status == BROKER_SUCCESS ? NULL : result_json(j, id, status, NULL, etype, emsg);
        if (broker_celery_follow_up(&j->cinfo, id, status == BROKER_SUCCESS, value,
                                    json ? json : doc, j->d.queue, &it->follow, &it->nfollow) != 0)
            wd_log_task(WD_LOG_ERROR, id,
                        "out of memory publishing its callbacks or chain; they are skipped");
        free(doc);
    }
    if (it) {
        it->observe = true;
        it->status = status;
        it->runtime = status == BROKER_REVOKED ? -1 : green_wallclock() - j->started_at;
        it->etype = etype ? strdup(etype) : NULL;
        it->emsg = emsg ? strdup(emsg) : NULL;
    }
    queue_item(w, it, ACK_FINAL, j, json);
}

/* ---- keeping a message for later (wd_sched.h) -------------------------------------------
 *
 * A message whose time has not come, or whose task asked for a retry, is acked with its
 * text kept in the scheduled set (ack.lua's "!" entries): the acker sends it in its next
 * batch, and until then it is still in flight here, so a kill at any point leaves the old
 * delivery or the kept copy, never both. No pool slot is held meanwhile. */

/* The longest a task may defer its message (TASK_EDEFER): a day. */
#define WD_JOB_DEFER_MAX 86400.0

/* Queue the ack that keeps j's message, as `retries`, due at `due` (server clock), with
 * result json (may be NULL: none stored); with retry (a RETRY outcome: error type, message
 * and runtime), it is reported to the observers once the acker has stored it, like a
 * final outcome. Returns false, the job untouched, when out of memory; json is the
 * caller's then. */
struct kept_retry {
    const char *etype, *emsg;
    double runtime;
};

static bool keep_observed(struct wd_job *j, double due, int retries, char *json,
                          const struct kept_retry *retry) {
    struct ack_item *it = calloc(1, sizeof *it);
    size_t len = 0;
    char *text = !it         ? NULL
                 : j->celery ? broker_celery_encode_scheduled(&j->cinfo, due, retries, &len)
                             : broker_msg_encode_scheduled(&j->msg, due, retries, &len);
    if (it && retry) {
        it->observe = true;
        it->status = BROKER_RETRY;
        it->runtime = retry->runtime;
        it->etype = retry->etype ? strdup(retry->etype) : NULL;
        it->emsg = retry->emsg ? strdup(retry->emsg) : NULL;
    }
    if (!text) {
        if (it) {
            free(it->etype);
            free(it->emsg);
        }
        free(it);
        return false;
    }
    unlink_job(j);
    j->finished = true;
    it->keep = text;
    it->keep_len = len;
    it->due = due;
    queue_item(j->w, it, ACK_KEEP, j, json);
    return true;
}

static bool keep_for_later(struct wd_job *j, double due, int retries, char *json) {
    return keep_observed(j, due, retries, json, NULL);
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
    const char *emsg = task_error_text(err);
    if (m->retries >= m->max_retries) {
        wd_log_task(WD_LOG_INFO, m->id, "%s asked for a retry, but it has had all %d", m->task,
                    m->max_retries);
        finish(j, BROKER_FAILURE, NULL, etype, emsg);
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
            .error_message = emsg,
            .retries = m->retries + 1,
            .eta = due,
            .worker = w->wid,
            .started_at = on_redis_clock(w, j->started_at),
            .finished_at = on_redis_clock(w, finished),
        };
        json = j->celery ? broker_celery_result_encode(&r, &j->cinfo, m,
                                                       w->opts->celery_result_extended, j->d.queue)
                         : broker_result_encode(&r);
        if (!json) {
            finish(j, BROKER_FAILURE, NULL, "MemoryError", "out of memory scheduling a retry");
            return;
        }
    }
    wd_log_task(WD_LOG_INFO, m->id, "%s failed (%s: %s); retry %d of %d in %.3f s", m->task, etype,
                emsg, m->retries + 1, m->max_retries, delay);
    /* Counted as retried by the acker once the retry is stored (a retry that is never
     * stored, the message lost to recovery meanwhile, is not one). */
    struct kept_retry kept = {etype, emsg, finished - j->started_at};
    if (!keep_observed(j, due, m->retries + 1, json, &kept)) {
        free(json);
        finish(j, BROKER_FAILURE, NULL, "MemoryError", "out of memory scheduling a retry");
    }
}

/* The task said "not now" (TASK_EDEFER; or its HTTP host has no free slot or turn under
 * --http-host-concurrency or --http-host-rate, task_ctx_gate):
 * keep the message for err->retry_in seconds like a retry, but with its retries as they
 * are and no result: waiting for a turn is not an attempt. */
static void defer(struct wd_job *j, const task_error *err) {
    struct wd_worker *w = j->w;
    broker_msg *m = &j->msg;
    double delay = err->retry_in > 0 && err->retry_in < WD_JOB_DEFER_MAX ? err->retry_in : 0;
    if (err->retry_in >= WD_JOB_DEFER_MAX)
        delay = WD_JOB_DEFER_MAX;
    double due = wd_sched_now_hi(w->sched) + delay;
    wd_log_task(WD_LOG_DEBUG, m->id, "%s deferred for %.3f s (%s: %s)", m->task, delay,
                err->type[0] ? err->type : "Deferred", task_error_text(err));
    if (!keep_for_later(j, due, m->retries, NULL)) {
        wd_log_task(WD_LOG_ERROR, m->id,
                    "out of memory keeping a deferred message for later; it stays in flight "
                    "and will be redelivered");
        release(j);
    }
}

/* A message with unique_for takes its key's lock before it runs or waits for its due time
 * (wd_unique.h). True: it holds the lock, go on. False: the job is over, as a Duplicate
 * (REVOKED, naming the original), or released, left in flight (not this worker's any
 * more, a shutdown, an error). */
static bool unique_passes(struct wd_job *j) {
    broker_msg *m = &j->msg;
    char holder[BROKER_ID_MAX + 1] = "";
    broker_unique_verdict verdict = BROKER_UNIQUE_GONE;
    int rc = wd_unique_acquire(j->w, j->d.tag, j->d.queue, m, j->unique_hash, &verdict, holder);
    if (rc != 0 || verdict == BROKER_UNIQUE_GONE) {
        if (rc != 0 && rc != -ECANCELED)
            wd_log_task(WD_LOG_ERROR, m->id,
                        "cannot take its unique key's lock (%s); it stays in flight",
                        strerror(-rc));
        release(j);
        return false;
    }
    if (verdict == BROKER_UNIQUE_OWNER) {
        j->unique_owner = true;
        return true;
    }
    char why[BROKER_ID_MAX + 128];
    snprintf(why, sizeof why,
             "a message with the same unique key (%s) is pending, scheduled or running", holder);
    j->duplicate_of = strdup(holder);
    wd_observe_received(j->w->obs, m->id, m->task, j->d.queue);
    finish(j, BROKER_REVOKED, NULL, "Duplicate", why);
    return false;
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
        .time = wd_sched_now_lo(w->sched), /* the fleet's clock, as results (on_redis_clock) */
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
    /* A refused chain link aborts the chain; a refused member counts as failed. */
    if (j->parsed && !j->canvas_start &&
        ((!j->no_canvas && wd_canvas_final(&j->msg, j->d.queue, &w->limits, BROKER_FAILURE, NULL,
                                           etype, reason, &j->canvas) != 0) ||
         !crawl_final(j, BROKER_FAILURE)))
        broker_canvas_free(&j->canvas);
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

/* A group or chord: its members (and a chord's state) go out with its ack, in one step. */
static void start_canvas(struct wd_job *j) {
    struct wd_worker *w = j->w;
    broker_msg *m = &j->msg;
    wd_observe_started(w->obs, m->id, m->task);
    int rc = wd_canvas_start(m, j->d.queue, &w->limits, w->wid, j->started_at, &j->canvas);
    if (rc != 0) {
        broker_canvas_free(&j->canvas);
        finish(j, BROKER_FAILURE, NULL, "MemoryError", "out of memory starting its members");
        return;
    }
    wd_log_task(WD_LOG_DEBUG, m->id, "%s started (tag %s)", m->task, j->d.tag);
    j->canvas_start = true;
    finish(j, BROKER_SUCCESS, NULL, NULL, NULL);
}

static void run(struct wd_job *j) {
    struct wd_worker *w = j->w;
    broker_msg *m = &j->msg;
    bool builtin = wd_canvas_is_builtin(m->task);
    task_fn fn = builtin ? NULL : task_registry_find(m->task);
    if (!fn && !builtin) {
        char reason[512];
        snprintf(reason, sizeof reason, "unknown task \"%s\"", m->task);
        reject(j, m->id, "NotRegistered", reason);
        return;
    }
    if (m->expires > 0 && wd_sched_now_lo(w->sched) >= m->expires) {
        finish(j, BROKER_REVOKED, NULL, "TaskExpired", "the message expired before it ran");
        return;
    }
    if (builtin) {
        start_canvas(j);
        return;
    }
    if (m->redelivered > 0)
        /* Worth a warning: a message that keeps coming back may be what kills workers,
         * and the operator should see it before it becomes a poison pill. */
        wd_log_task(WD_LOG_WARNING, m->id,
                    "%s redelivered %d time(s): the worker running it "
                    "before died",
                    m->task, m->redelivered);
    json_t *result = NULL;
    task_error err = {{0}, {0}, -1, NULL};
    task_ctx ctx;
    task_ctx_begin(&ctx, w->tasks);
    ctx.msg = m;
    ctx.queue = j->d.queue;
    task_call call = {m->id, m->task, m->args, m->kwargs, m->retries, &j->lim.soft_fired, &ctx};
    /* The per-host limits of the http.* tasks come before the task counts as started: a
     * task that must wait for its host is deferred, never STARTED (wd_rate.h). */
    int rc = task_ctx_gate(&ctx, &call, &err);
    if (rc != 0 || j->terminated) {
        task_ctx_end(&ctx);
        if (j->terminated) {
            finish_revoked(j);
        } else if (rc == TASK_EDEFER) {
            defer(j, &err);
        } else {
            wd_observe_put_back(w->obs);
            wd_log_task(WD_LOG_INFO, m->id, "%s interrupted by shutdown; it goes back to queue %s",
                        m->task, j->d.queue);
            release(j);
        }
        task_error_clear(&err);
        return;
    }
    /* The STARTED document is encoded by the acker, and only if the task is still
     * running when the batch goes out: most tasks finish first, and encoding it here cost
     * a quarter of the worker's CPU on 100k echo tasks for documents that were dropped. */
    if (!m->ignore_result && (!j->celery || w->opts->celery_track_started))
        queue_ack(w, ACK_STARTED, j, NULL);
    if (m->retries > 0)
        wd_log_task(WD_LOG_DEBUG, m->id, "%s started (tag %s, retry %d)", m->task, j->d.tag,
                    m->retries);
    else
        wd_log_task(WD_LOG_DEBUG, m->id, "%s started (tag %s)", m->task, j->d.tag);
    wd_observe_started(w->obs, m->id, m->task);

    wd_limits_run_start(&j->lim, w->lims, m);
    rc = fn(&call, &result, &err);
    wd_limits_run_end(&j->lim);
    /* After the limits end: giving a host slot back is a round trip that a time limit
     * firing meanwhile must not cut short. */
    task_ctx_end(&ctx); /* the task's lent connections go back, its host slot too */
    char limit_msg[128];
    const char *limit_type = wd_limits_outcome(&j->lim, rc, limit_msg, sizeof limit_msg);

    if (j->terminated) {
        json_decref(result);
        finish_revoked(j);
        return;
    }
    if (limit_type) {
        json_decref(result); /* after the hard limit, whatever the task returned */
        task_error_clear(&err);
        finish(j, BROKER_FAILURE, NULL, limit_type, limit_msg);
        return;
    }
    if (rc == -ECANCELED && w->stop != WD_RUNNING) {
        json_decref(result);
        task_error_clear(&err);
        wd_observe_put_back(w->obs);
        wd_log_task(WD_LOG_INFO, m->id, "%s interrupted by shutdown; it goes back to queue %s",
                    m->task, j->d.queue);
        release(j);
        return;
    }
    if (rc == 0) {
        finish(j, BROKER_SUCCESS, result ? result : json_null(), NULL, NULL);
    } else if (rc == TASK_EFAIL) {
        finish(j, BROKER_FAILURE, NULL, err.type[0] ? err.type : "TaskError",
               task_error_text(&err));
    } else if (rc == TASK_EINVAL) {
        reject(j, m->id, err.type[0] ? err.type : "TypeError", task_error_text(&err));
    } else if (rc == TASK_ERETRY) {
        retry(j, &err);
    } else if (rc == TASK_EDEFER) {
        defer(j, &err);
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
    task_error_clear(&err);
}

static void *job_main(void *arg) {
    struct wd_job *j = arg;
    j->g = green_self();
    broker_msg_error perr;
    memset(&perr, 0, sizeof perr);
    j->started_at = green_wallclock();
    /* Relative times (countdown, expires) count from the Redis server's clock, its upper
     * bound: a countdown is never cut short. */
    const char *raw = j->d.raw;
    size_t len = j->d.len;
    char *translated = NULL;
    if (broker_queue_is_celery(j->d.queue)) {
        /* A Celery envelope, read into workerd's own message (broker_celery.h). */
        const struct wd_options *o = j->w->opts;
        broker_celery_map map = {o->celery_tasks, o->ncelery_tasks};
        broker_celery_error cerr;
        j->celery = true;
        int crc = broker_celery_translate(raw, len, &j->w->limits, &map, &j->cinfo, &translated,
                                          &len, &cerr);
        if (crc == -EINVAL) {
            reject(j, cerr.has_id ? cerr.id : NULL, cerr.exc_type, cerr.reason);
            return NULL;
        } else if (crc != 0) {
            wd_log_task(WD_LOG_ERROR, j->d.tag,
                        "cannot read a Celery message: %s; it stays in flight", strerror(-crc));
            release(j);
            return NULL;
        }
        raw = translated;
    }
    double now_hi = wd_sched_now_hi(j->w->sched);
    int rc = broker_msg_parse(raw, len, &j->w->limits, now_hi, &j->msg, &perr);
    free(translated);
    if (rc == 0) {
        j->parsed = true;
        j->no_canvas = !wd_canvas_involved(&j->msg);
        if (!j->no_canvas) {
            const char *etype = NULL;
            char why[512];
            wd_canvas_env env = {&j->w->limits, now_hi, (const char *const *)j->w->opts->queues,
                                 j->w->opts->nqueues};
            if (wd_canvas_check(&j->msg, &env, &etype, why, sizeof why) != 0) {
                reject(j, j->msg.id, etype, why);
                return NULL;
            }
        }
        if (j->msg.unique_for > 0 && !unique_passes(j))
            return NULL;
        if (wait_until_due(j))
            return NULL;
        /* Over its task's rate limit: already moved to the scheduled set (or no longer
         * ours); free the job, no ack, no result (wd_rate.h). */
        if (wd_rate_gate(j->w, &j->d, &j->msg, j->celery ? &j->cinfo : NULL) != WD_RATE_RUN) {
            release(j);
            return NULL;
        }
        /* Read after the due time was checked: a task never starts before its eta. */
        j->started_at = green_wallclock();
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
    bool done[ACK_BATCH];    /* Redis took entry i (owned[i] says whether it was ours) */
    size_t bytes[ACK_BATCH]; /* what entry i sends */
    struct ack_item *sent[ACK_BATCH];
    size_t m;                         /* entries in acks[] and sent[] */
    char refusal[BROKER_REFUSAL_MAX]; /* Redis's words for the last refused round trip */
};

/* What entry i sends, about: the result, its key and channel, the tag. */
static size_t entry_bytes(const broker_ack_entry *e) {
    return (e->json && e->id ? strlen(e->json) + 2 * strlen(e->id) : 0) + 64 +
           (e->canvas ? broker_canvas_bytes(e->canvas) : 0);
}

/* One round trip of entries [first, first + count) (wd_batch_send_entries's attempt).
 * Reports Redis refusing writes, and its end, to the observers. */
static int ack_range(void *arg, size_t first, size_t count, double timeout) {
    struct acker *a = arg;
    struct wd_observe *obs = a->w->obs;
    int rc = broker_ack(a->w->bw, a->acks + first, count, a->owned + first, timeout);
    const char *text = broker_worker_refusal(a->w->bw);
    if (rc == 0) {
        memset(a->done + first, 1, count * sizeof *a->done);
        wd_observe_refusing(obs, NULL, NULL);
    } else if (rc == -EAGAIN) {
        wd_observe_refusing(obs, broker_refusal_state(text), text);
    } else if (rc == -EREMOTEIO) {
        snprintf(a->refusal, sizeof a->refusal, "%s", text);
    }
    return rc;
}

static size_t ack_bytes(void *arg, size_t i) {
    return ((struct acker *)arg)->bytes[i];
}

/* Redis would not take entry i on its own (wd_batch_entries.refused): a poison result must
 * not hold up the others, nor come back to the next worker. A result becomes a short
 * FAILURE ResultRefused saying why; if even that is refused, the message is acked without
 * a result. A STARTED result is only informative: it is dropped. */
static bool ack_refused(void *arg, size_t i, int err) {
    struct acker *a = arg;
    struct ack_item *it = a->sent[i];
    broker_ack_entry *e = &a->acks[i];
    struct wd_job *j = it->job;
    char why[BROKER_REFUSAL_MAX + 64];
    if (err == -EMSGSIZE)
        snprintf(why, sizeof why, "Redis closed the connection each time it was sent");
    else
        snprintf(why, sizeof why, "Redis refused it: %s", a->refusal);
    if (it->kind == ACK_STARTED) {
        wd_log_task(WD_LOG_WARNING, job_id(j), "STARTED result not stored: %s", why);
        return false;
    }
    wd_observe_result_refused(a->w->obs);
    if (e->id && !it->shrunk) {
        char msg[sizeof why + 96];
        snprintf(msg, sizeof msg, "the result (%zu bytes of JSON) could not be stored: %s",
                 strlen(e->json), why);
        char *json = result_json(j, e->id, BROKER_FAILURE, NULL, "ResultRefused", msg);
        char *etype = strdup("ResultRefused"), *emsg = strdup(msg);
        if (json && etype && emsg) {
            wd_log_task(WD_LOG_WARNING, e->id, "%s failed: ResultRefused: %s",
                        j->parsed ? j->msg.task : "message", msg);
            free(it->json);
            free(it->etype);
            free(it->emsg);
            it->json = json, it->etype = etype, it->emsg = emsg;
            e->canvas = NULL; /* what was refused may be the canvas step: dropped */
            it->status = BROKER_FAILURE;
            it->shrunk = true;
            e->json = json;
            a->bytes[i] = entry_bytes(e);
            return true;
        }
        free(json);
        free(etype);
        free(emsg);
    }
    if (e->id) {
        wd_log_task(WD_LOG_ERROR, e->id, "result not stored (%s); acking the message without it",
                    why);
        e->id = NULL;
        e->json = NULL;
        e->canvas = NULL;
        a->bytes[i] = entry_bytes(e);
        return true;
    }
    wd_log_task(WD_LOG_ERROR, job_id(j),
                "Redis refused even the ack of this message (tag %s: %s); it stays in flight",
                e->tag, why);
    return false;
}

static void send_batch(struct acker *a, size_t n) {
    struct wd_worker *w = a->w;
    struct ack_item **sent = a->sent;
    broker_ack_entry *acks = a->acks;
    bool *owned = a->owned;
    size_t m = 0;
    memset(owned, 0, n * sizeof *owned);
    memset(a->done, 0, n * sizeof *a->done);
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
            /* The final ack of a unique key's owner releases its lock in the same step. */
            .unlock_hash =
                it->kind == ACK_FINAL && it->job->unique_owner ? it->job->unique_hash : NULL,
            .unlock_id = it->job->parsed ? it->job->msg.id : NULL,
            .canvas = it->kind == ACK_FINAL ? &it->job->canvas : NULL,
            .celery = it->job->celery,
            .follow = it->follow,
            .nfollow = it->nfollow,
        };
        a->bytes[m] = entry_bytes(&acks[m]);
        sent[m++] = it;
    }
    a->m = m;
    if (m > 0) {
        /* Give up only where waiting may not go on (a shutdown with Redis away or
         * refusing, past its deadline): the messages stay in flight, and recovery or the
         * next start redelivers them. At least once, never lost. A deadline, not a count
         * of attempts: each attempt may wait a whole call time-out for a Redis that is
         * down, and 20 of those kept a SIGTERMed worker for minutes. What Redis refuses
         * for good is found entry by entry (wd_batch_send_entries, ack_refused). */
        char what[64];
        snprintf(what, sizeof what, "storing %zu results", m);
        struct wd_batch_policy policy = {
            .conn = w->conn,
            .call_timeout = WD_SHUTDOWN_ACK_CALL,
            .give_up_at = &w->give_up_at,
            .max_refusals = 2,
            .what = what,
        };
        struct wd_batch_entries entries = {
            .n = m,
            .max_bytes = ACK_BATCH_BYTES,
            .send = ack_range,
            .bytes = ack_bytes,
            .refused = ack_refused,
            .arg = a,
        };
        int rc = wd_batch_send_entries(&policy, &entries);
        size_t left = 0;
        for (size_t i = 0; i < m; i++)
            left += !a->done[i];
        if (rc != 0)
            wd_log(WD_LOG_ERROR,
                   "giving up storing %zu results (%s): their messages stay "
                   "in flight and will be redelivered",
                   left, strerror(-rc));
    }
    for (size_t i = 0; i < m; i++) {
        struct ack_item *it = sent[i];
        if (!a->done[i] || (it->kind != ACK_FINAL && it->kind != ACK_KEEP))
            continue;
        struct wd_job *j = it->job;
        if (it->kind == ACK_KEEP && owned[i])
            wd_sched_kept(w->sched, it->due);
        if (!owned[i]) {
            wd_observe_lost_ownership(w->obs);
            wd_log_task(WD_LOG_WARNING, job_id(j),
                        "this worker was presumed dead and the message was given to another "
                        "worker meanwhile: its result here was not stored");
        } else if (it->observe) {
            /* Counted only now that Redis holds the result: until then the task has not
             * succeeded as far as anyone reading results can tell. */
            wd_observe_finished(w->obs, j->msg.id, j->msg.task, it->status, it->runtime, it->etype,
                                it->emsg);
        }
    }
    for (size_t i = 0; i < n; i++) {
        struct ack_item *it = a->items[i];
        if (it->kind != ACK_STARTED)
            job_free(it->job);
        item_free(it);
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
