/*
 * green_threadpool.h - run blocking C calls on OS threads, parking only the calling
 * greenlet (gevent.threadpool.ThreadPool).
 *
 * Every hub has one pool, created on first use: up to `size` POSIX threads (default 4),
 * started one at a time as jobs need them and kept until the hub ends, when they are
 * joined. A call hands fn(arg) to a pool thread and parks the caller; the hub keeps
 * running every other greenlet meanwhile, and wakes the caller when fn has returned.
 *
 * fn runs on a plain OS thread, not on a greenlet: it must not call any green_* function
 * (they would return -EPERM), and whatever it shares with greenlets needs its own
 * locking. Pool threads block every signal, so signals keep going to the hub's thread.
 *
 * The special problem of abandoned jobs: a C function cannot be interrupted. When the
 * caller is killed or its deadline passes while fn runs, the call returns -ECANCELED or
 * -ETIMEDOUT at once, as every blocking call does, but fn keeps running on its thread
 * until it returns by itself. Its job record lives on the heap, not on the caller's
 * stack, and the hub frees it when fn finally returns; green_threadpool_call_ex's
 * `release` hook is then called with arg and fn's result, so whatever they own can be
 * freed too. Therefore arg must stay valid until fn returns, not merely until the call
 * returns: pass heap data owned by the job (and release it in the hook) whenever the
 * caller may give up, never a pointer into the caller's frame. A job still waiting for a
 * free thread when its caller gives up is withdrawn instead: fn never runs, and release
 * is called at once with ret NULL.
 *
 * Fork: a child process inherits the pool's bookkeeping but not its threads. Fork before
 * the hub's first pool call (workerd's supervisor forks before green_run), or exec.
 *
 * The pool does not keep green_run alive on its own: an idle pool (or one only finishing
 * abandoned jobs) lets the hub end once every greenlet has ended; the hub then waits for
 * running jobs to return while it joins the threads.
 */
#ifndef WORKERD_GREEN_THREADPOOL_H
#define WORKERD_GREEN_THREADPOOL_H

#include "green.h"

#include <stddef.h>

/* Called on the hub's stack when an abandoned job is done with: ret is fn's result, or
 * NULL if fn never ran (withdrawn). It must not yield. */
typedef void (*green_threadpool_release_fn)(void *arg, void *ret);

/* The number of threads of pools created from now on, on any hub (a pool keeps its size
 * for life). Default 4. Does not yield; call it before green_run, or at least before the
 * hub's first pool call. Returns 0, -EINVAL (0 or more than 1024), or -EBUSY when the
 * calling thread's hub already has its pool (the new size still applies to later hubs).
 * Thread-safe. */
int green_threadpool_set_size(size_t threads);

/* Run fn(arg) on a pool thread and park the caller until it returns; *ret (if ret is not
 * NULL) receives fn's result. MAY YIELD; must be called from a greenlet. timeout as in
 * green.h (< 0 forever; enclosing green_timeout scopes apply too). Returns 0, -ECANCELED
 * or -ETIMEDOUT (fn may still be running: see abandoned jobs above; *ret is untouched),
 * -EPERM (not a greenlet), -ENOMEM, -EAGAIN (no pool thread could be started at all). */
int green_threadpool_call(void *(*fn)(void *arg), void *arg, void **ret, double timeout);

/* green_threadpool_call with a release hook (NULL: none) that makes ownership simple: on
 * 0 the caller owns arg and *ret as usual and release is never called; on any error,
 * release(arg, ret) is called exactly once, on the hub's thread: before the call
 * returns if fn never ran or has already returned (ret NULL if it never ran), or later,
 * from the hub, when an abandoned fn finally returns. */
int green_threadpool_call_ex(void *(*fn)(void *arg), void *arg, void **ret, double timeout,
                             green_threadpool_release_fn release);

/* Counters of the calling thread's hub's pool (all 0 before it exists), for tests and
 * metrics. Does not yield. */
typedef struct green_threadpool_stats {
    size_t threads;   /* threads started */
    size_t queued;    /* jobs waiting for a thread */
    size_t running;   /* jobs whose fn is running */
    size_t abandoned; /* jobs whose caller gave up, not yet released */
} green_threadpool_stats;

void green_threadpool_get_stats(green_threadpool_stats *out);

#endif
