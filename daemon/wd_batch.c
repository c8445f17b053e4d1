/*
 * wd_batch.c - the batch sending loop of wd_batch.h.
 *
 * Runs on the greenlet of its caller (the acker, the event publisher), on the worker's hub.
 */
#include "wd_batch.h"

#include "green.h"
#include "green_check.h"
#include "wd_log.h"
#include "wd_shutdown.h"

#include <errno.h>
#include <string.h>

/* Pause between retries of a batch that Redis refused. */
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

int wd_batch_send(const struct wd_batch_policy *p, wd_batch_send_fn send, void *arg) {
    for (int refusals = 0;;) {
        /* Past the deadline, only a link that is up now is tried: waiting for it is over,
         * and each batch still queued would otherwise cost one more wait. */
        int rc;
        do
            rc = broker_conn_wait_up(p->conn, past(p) ? 0 : WD_SHUTDOWN_LINK_POLL);
        while (rc == -ETIMEDOUT && !past(p));
        if (rc == 0) {
            rc = send(arg, call_timeout(p));
            if (rc == 0)
                return 0;
        }
        if (rc == -ECANCELED || rc == -ESHUTDOWN)
            return rc;
        bool link = broker_conn_error_is_link(rc) || rc == -ETIMEDOUT;
        if (past(p) || (!link && refusals++ >= p->max_refusals))
            return rc;
        if (!link) {
            wd_log(WD_LOG_ERROR, "%s failed: %s; retrying", p->what, strerror(rc < 0 ? -rc : rc));
            if (green_sleep(REFUSAL_PAUSE) == -ECANCELED)
                return -ECANCELED;
        }
    }
}
