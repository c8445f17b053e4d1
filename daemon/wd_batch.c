/*
 * wd_batch.c - the batch sending loops of wd_batch.h.
 *
 * wd_batch_send keeps no state between batches: each call starts with a fresh backoff
 * and a fresh count of lost links. wd_batch_send_entries finds a refused entry by
 * bisection: a refused round trip of n entries becomes two of n/2, recursively, so one
 * poison entry among 1024 costs about 2 log2(1024) = 20 round trips, and the depth of
 * the recursion (on the caller's greenlet stack) is at most log2 of the batch.
 *
 * Runs on the greenlet of its caller (the acker, the event publisher), on the worker's hub.
 */
#include "wd_batch.h"

#include "green.h"
#include "green_check.h"
#include "wd_log.h"
#include "wd_shutdown.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Pause between retries of a batch that failed for another reason (wd_batch.h). */
#define REFUSAL_PAUSE 0.5

size_t wd_batch_gather(green_queue *q, void **items, size_t n, size_t max, bool *ended) {
    void *it;
    while (n < max && green_queue_try_get(q, &it) == 0) {
        if (it == NULL) {
            if (ended)
                *ended = true;
            break;
        }
        items[n++] = it;
    }
    return n;
}

static bool past(const struct wd_batch_policy *p) {
    return *p->give_up_at > 0 && green_wallclock() >= *p->give_up_at;
}

/* The call time-out: the policy's, cut to what is left before the deadline, but at least
 * WD_SHUTDOWN_LAST_CALL. */
static double call_timeout(const struct wd_batch_policy *p) {
    double timeout = p->call_timeout;
    if (*p->give_up_at > 0) {
        double left = *p->give_up_at - green_wallclock();
        if (left < timeout)
            timeout = left;
        if (timeout < WD_SHUTDOWN_LAST_CALL)
            timeout = WD_SHUTDOWN_LAST_CALL;
    }
    return timeout;
}

/* The next pause while Redis refuses writes: delay jittered as broker_conn's reconnects
 * are (so a fleet does not come back in step), cut to what is left before the deadline;
 * *delay doubles up to the most. */
static double backoff(const struct wd_batch_policy *p, double *delay) {
    static unsigned int seed;
    if (seed == 0)
        seed = (unsigned int)time(NULL) ^ (unsigned int)getpid() ^ 0x5bd1e995u;
    double r = (double)rand_r(&seed) / RAND_MAX; /* 0..1 */
    double pause = *delay * (1 - BROKER_CONN_BACKOFF_JITTER + 2 * BROKER_CONN_BACKOFF_JITTER * r);
    *delay = *delay * 2 > BROKER_CONN_BACKOFF_MAX ? BROKER_CONN_BACKOFF_MAX : *delay * 2;
    if (*p->give_up_at > 0) {
        double left = *p->give_up_at - green_wallclock();
        if (left < pause)
            pause = left > 0 ? left : 0;
    }
    return pause;
}

int wd_batch_send(const struct wd_batch_policy *p, wd_batch_send_fn send, void *arg) {
    double delay = BROKER_CONN_BACKOFF_FIRST;
    int cuts = 0; /* links lost in a row right after sending a big batch */
    for (int refusals = 0;;) {
        /* Past the deadline, only a link that is up now is tried: waiting for it is over,
         * and each batch still queued would otherwise cost one more wait. */
        int rc;
        do
            rc = broker_conn_wait_up(p->conn, past(p) ? 0 : WD_SHUTDOWN_LINK_POLL);
        while (rc == -ETIMEDOUT && !past(p));
        bool sent = rc == 0;
        if (sent) {
            rc = send(arg, call_timeout(p));
            if (rc == 0)
                return 0;
        }
        if (rc == -ECANCELED || rc == -ESHUTDOWN || rc == -EREMOTEIO)
            return rc;
        bool link = broker_conn_error_is_link(rc) || rc == -ETIMEDOUT;
        if (sent && link && rc != -ETIMEDOUT && p->bytes >= WD_BATCH_BIG) {
            if (++cuts >= WD_BATCH_CUTS)
                return -EMSGSIZE;
        } else if (sent) {
            cuts = 0;
        }
        if (past(p))
            return rc;
        if (rc == -EAGAIN) {
            /* Redis is up and refuses writes for now: wait as for a reconnect. */
            if (green_sleep(backoff(p, &delay)) == -ECANCELED)
                return -ECANCELED;
            continue;
        }
        if (!link && refusals++ >= p->max_refusals)
            return rc;
        if (!link) {
            wd_log(WD_LOG_ERROR, "%s failed: %s; retrying", p->what, strerror(rc < 0 ? -rc : rc));
            if (green_sleep(REFUSAL_PAUSE) == -ECANCELED)
                return -ECANCELED;
        }
    }
}

/* ---- entries that Redis may refuse one by one ------------------------------------------ */

struct range {
    const struct wd_batch_entries *e;
    size_t first, count;
};

static int send_range_once(void *arg, double timeout) {
    struct range *r = arg;
    return r->e->send(r->e->arg, r->first, r->count, timeout);
}

static size_t range_bytes(const struct wd_batch_entries *e, size_t first, size_t count) {
    size_t bytes = 0;
    for (size_t i = first; i < first + count; i++)
        bytes += e->bytes(e->arg, i);
    return bytes;
}

/* Send entries [first, first + count); split them in halves while Redis refuses them. */
static int send_range(const struct wd_batch_policy *p, const struct wd_batch_entries *e,
                      size_t first, size_t count, int depth) {
    struct wd_batch_policy q = *p;
    struct range r = {e, first, count};
    for (;;) {
        q.bytes = range_bytes(e, first, count);
        int rc = wd_batch_send(&q, send_range_once, &r);
        if (rc != -EREMOTEIO && rc != -EMSGSIZE)
            return rc;
        if (count > 1) {
            if (depth == 0)
                wd_log(WD_LOG_WARNING,
                       "%s: Redis would not take them (%s); sending them in smaller "
                       "batches to find the one it refuses",
                       p->what,
                       rc == -EMSGSIZE ? "it closed the connection each time" : "an error");
            size_t half = count / 2;
            rc = send_range(p, e, first, half, depth + 1);
            return rc ? rc : send_range(p, e, first + half, count - half, depth + 1);
        }
        if (!e->refused(e->arg, first, rc))
            return 0;
    }
}

int wd_batch_send_entries(const struct wd_batch_policy *p, const struct wd_batch_entries *e) {
    for (size_t first = 0; first < e->n;) {
        size_t count = 0, bytes = 0;
        while (first + count < e->n) {
            size_t b = e->bytes(e->arg, first + count);
            if (count > 0 && (bytes >= e->max_bytes || b > e->max_bytes - bytes))
                break;
            bytes += b;
            count++;
        }
        GREEN_CHECK(count > 0, "a round trip sends at least one entry");
        int rc = send_range(p, e, first, count, 0);
        if (rc != 0)
            return rc;
        first += count;
    }
    return 0;
}
