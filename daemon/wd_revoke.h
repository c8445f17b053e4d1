/*
 * wd_revoke.h - how a worker honours revocations (docs/design.md "Revocations"; the keys
 * and the stream are broker_control.h's):
 *
 *   - The worker holds every revoked id in memory: loaded from <prefix>:revoked when its
 *     control connection comes up (and again after every outage), kept current by a
 *     listener greenlet that blocks in XREAD on <prefix>:control, on a connection of its
 *     own.
 *   - At take: each fetch reports how far the stream had grown when it took its messages
 *     (wd_revoke_fetched). A job asks wd_revoke_check before it runs its task: once the
 *     listener has read that far (at once, nearly always), the answer is a lookup in
 *     memory. A revoked id is not run: the job stores a REVOKED result ("revoked") and
 *     acks the message. Since the set is in Redis, this holds across worker restarts,
 *     redeliveries and, once messages are scheduled, for scheduled messages when they
 *     become due.
 *   - While running: the listener kills the running jobs of each id an entry asks to
 *     terminate (wd_job_terminate): their results are REVOKED ("terminated"). After each
 *     (re)load, and every heartbeat TTL, it also looks up the marks of the running tasks
 *     and terminates those marked "terminate": a broadcast the worker missed, or a mark
 *     set without one, is not missed for good.
 *
 * A terminate racing with a task that is just starting: the fetch that took the message
 * either ran after the entry was written (then the job waits until the listener has read
 * it, and finds the id revoked) or before it (then the job is already listed as running
 * when the listener reads the entry, and is killed).
 *
 * Everything runs on greenlets of the worker's hub; nothing is thread-safe.
 */
#ifndef WORKERD_WD_REVOKE_H
#define WORKERD_WD_REVOKE_H

struct wd_worker;
struct wd_revoke;

/* Create the control connection and start the listener, for worker w (borrowed; it must
 * outlive them). Call before the first fetch. Returns 0, or -ENOMEM / green_spawn's error
 * with nothing started (*out NULL). MAY YIELD (only when it fails, closing what it
 * opened). */
int wd_revoke_start(struct wd_worker *w, struct wd_revoke **out);

/* Stop the listener, close the connection and free rv (NULL: nothing). Call once no job
 * can ask any more (the pool is empty). MAY YIELD. */
void wd_revoke_stop(struct wd_revoke *rv);

/* A fetch took messages when the control stream's newest entry was tail
 * (broker_worker_control_tail): the jobs started from now on wait until the listener has
 * read that far. Call before starting them. Does not yield. */
void wd_revoke_fetched(struct wd_revoke *rv, const char *tail);

/* Whether the message with this id may run. Parks the calling job only while the
 * listener is behind (see wd_revoke_fetched) or reloading after an outage; then looks the
 * id up in memory. Returns 0 (not revoked: run it), 1 (revoked: do not), or -ECANCELED
 * when the job was killed meanwhile (a shutdown, or a terminate of this very id). id is
 * borrowed for the call. MAY YIELD. */
int wd_revoke_check(struct wd_revoke *rv, const char *id);

#endif
