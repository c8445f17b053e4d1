/*
 * wd_unique.c - a job takes its message's unique lock (wd_unique.h).
 *
 * Unique messages are the rare path, so the job talks to Redis itself, as the dead-letter
 * path does, rather than through the acker: it cannot decide to run or to wait before it
 * knows. The call is safe to repeat (the same id passes its own lock), so a lost reply is
 * simply retried. A kill at any point leaves the message in flight and the lock, if taken,
 * naming its id: the recovered copy passes it.
 *
 * Runs on job greenlets of the worker's hub.
 */
#include "wd_unique.h"

#include "green.h"
#include "wd_log.h"
#include "wd_options.h"
#include "wd_worker_internal.h"

#include <errno.h>
#include <string.h>

#define ACQUIRE_TIMEOUT 10.0
#define RETRY_PAUSE 0.5

int wd_unique_acquire(struct wd_worker *w, const char *tag, const char *queue,
                      const broker_msg *msg, char hash[41], broker_unique_verdict *verdict,
                      char holder[BROKER_ID_MAX + 1]) {
    broker_keys keys;
    int rc = broker_keys_init(&keys, w->opts->prefix);
    if (rc != 0)
        return rc;
    rc = broker_unique_hash(msg, hash);
    if (rc != 0)
        return rc;
    bool logged = false;
    for (;;) {
        rc = broker_unique_acquire(w->conn, &keys, w->wid, tag, queue, msg, hash, verdict, holder,
                                   ACQUIRE_TIMEOUT);
        if (rc == 0 || rc == -ECANCELED || !broker_conn_error_is_link(rc))
            return rc;
        if (!logged) {
            wd_log_task(WD_LOG_WARNING, msg->id,
                        "cannot check its unique key's lock yet (%s); retrying", strerror(-rc));
            logged = true;
        }
        if (green_sleep(RETRY_PAUSE) == -ECANCELED)
            return -ECANCELED;
    }
}
