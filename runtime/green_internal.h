/*
 * green_internal.h - what the runtime's own modules (sync primitives, I/O, HTTP, Redis,
 * thread pool) use to park and wake greenlets. Not for code outside runtime/.
 *
 * The parking protocol, in one paragraph: a blocking primitive records the current
 * greenlet somewhere a completion can find it (a wait queue, a watcher's data field, a
 * heap record), then calls green__park(deadline). Whoever completes the wait - another
 * greenlet, or a libev/curl/hiredis callback on the hub - calls green__wake(g, 0).
 * green__park returns that code, or -ETIMEDOUT (deadline or an enclosing green_timeout
 * passed) or -ECANCELED (green_kill). A wake of a greenlet that is not parked (already
 * woken, by a timeout say) does nothing and returns false, so a waker that hands over a
 * resource must try the next waiter. After green__park returns, the primitive undoes its
 * own registration (unlinks its waiter, stops its watcher) on the greenlet's stack: so a
 * callback never needs to know whether the greenlet is still interested, except for
 * completions that cannot be withdrawn (a hiredis callback), whose record must live on
 * the heap and be freed by the callback once abandoned.
 */
#ifndef WORKERD_GREEN_INTERNAL_H
#define WORKERD_GREEN_INTERNAL_H

#include "green.h"
#include "green_waitq.h"

#include <assert.h>
#include <errno.h>

/* The running greenlet, or NULL on the hub / a foreign thread. */
struct green *green__current(void);

/* Absolute time, in the ev_time() clock, `seconds` from now; seconds < 0 gives
 * GREEN_FOREVER. */
#define GREEN_FOREVER 1e300
double green__deadline_in(double seconds);

/* Park the current greenlet until green__wake, the absolute deadline (GREEN_FOREVER for
 * none; enclosing green_timeout scopes apply as well), or green_kill.
 * Returns the wake code (0 or what the waker passed), -ETIMEDOUT, -ECANCELED, or -EPERM
 * when not called from a greenlet. A pending cancellation or an already passed deadline
 * returns at once without parking (but after yielding nothing). */
int green__park(double deadline);

/* Same, but reports whether the deadline that ended the park was `deadline` itself
 * (*own_deadline = true) or an enclosing scope. green_sleep uses it. */
int green__park_ex(double deadline, bool *own_deadline);

/* Whether this thread's hub runs on libev's default loop, the one loop that can watch
 * child processes (green_run was given NULL). Asked of the hub rather than with libev's
 * ev_is_default_loop, which reads a variable of libev's that the executable would then
 * define and export (a copy relocation). */
bool green__default_loop(void);

/* Park like green__park, but with the enclosing green_timeout scopes lifted for the
 * duration: only `deadline`, a wake or green_kill end it. For clean-up that must still
 * wait after a scope has expired (green_proc_stop reaping a child whose time limit has
 * just fired); never for ordinary waits, which must honour every scope. The scopes are
 * back in force when it returns. Returns as green__park; -ETIMEDOUT means `deadline`. */
int green__park_unscoped(double deadline);

/* Make g ready with code as green__park's return value. Returns false if g is not
 * parked (already woken, or running). Callable from the hub and from greenlets. */
bool green__wake(struct green *g, int code);

/* Check before starting an operation that could block: returns -EPERM outside a
 * greenlet, -ECANCELED if a cancellation is pending (and consumes it), -ETIMEDOUT if an
 * enclosing scope has already expired, else 0. */
int green__check(void);

/* The wait queue's type is green_waitq.h's (public headers embed it). */

/* Park the current greenlet on q until woken, deadline, or kill; unlinks itself
 * afterwards. Returns as green__park. */
int green__waitq_wait(green__waitq *q, double deadline);

/* Wake the first waiter that is still parked (removing it, and any stale ones before
 * it, from q). Returns true if one was woken. */
bool green__waitq_wake_one(green__waitq *q, int code);

/* Wake every waiter. Returns how many were woken. */
size_t green__waitq_wake_all(green__waitq *q, int code);

static inline bool green__waitq_empty(const green__waitq *q) {
    return q->head == NULL;
}

/* Per-hub state of other runtime modules: one slot each, freed by the hook given at
 * set time when the hub ends (after every greenlet has ended). */
enum green__slot { GREEN__SLOT_HTTP, GREEN__SLOT_THREADPOOL, GREEN__SLOT_IO, GREEN__SLOT_COUNT };
void *green__slot_get(enum green__slot slot);
void green__slot_set(enum green__slot slot, void *value, void (*destroy)(void *value));

/* ---- green_redis internals shared with green_redis_sentinel.c ---- */

struct green_redis;
struct green_redis_url;

/* AUTH and SELECT as u says, on a fresh connection (green_redis.c); on failure the
 * connect error is set. Returns 0, -EACCES, -EINVAL or the call's error. MAY YIELD. */
int green__redis_setup(struct green_redis *c, const struct green_redis_url *u);

/* Set the per-thread message that green_redis_connect_error returns. */
void green__redis_connect_error_set(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Connect to the master that the sentinels of u (a redis+sentinel:// URL) name, logged in
 * and checked with ROLE (green_redis_sentinel.c). Within the caller's timeout scopes.
 * MAY YIELD. NULL with *err set (and the connect error) on failure. */
struct green_redis *green__redis_connect_sentinel(const struct green_redis_url *u, int *err);

#endif
