/*
 * green.h - the green-thread runtime: gevent's greenlets and hub, in C.
 *
 * One hub per OS thread runs a libev loop. Greenlets are coroutines with their own
 * stacks; they run one at a time on the thread that spawned them and never migrate.
 * A greenlet runs until it makes a blocking call (sleep, a wait on an fd, an HTTP
 * transfer, a Redis reply, ...), which parks it and switches to the next ready greenlet
 * or, when none is ready, to the hub, which runs the loop until a watcher makes some
 * greenlet ready again.
 *
 * Conventions for every green_* call (the other runtime headers follow them too):
 *
 *   - Errors are negative errno values; 0 is success. A call that returns an error
 *     never completes later behind the caller's back.
 *   - "May yield" means the call can switch to other greenlets before it returns. Such
 *     calls must be made from a greenlet. Made from the hub (a libev, curl or hiredis
 *     callback) or from a thread with no running hub, they are a bug in the caller: a
 *     debug build (no NDEBUG) asserts at the call, so the core dump shows who made it; a
 *     release build returns -EPERM instead of deadlocking, and writes one line to stderr
 *     the first time in the process.
 *   - Every blocking call returns -ECANCELED when the greenlet is killed while parked in
 *     it (or is killed before it parks), and -ETIMEDOUT when a deadline passes: its own
 *     timeout argument, or any enclosing green_timeout scope; or whatever code another
 *     greenlet or a callback interrupted it with (green_throw).
 *   - Callbacks of libev, libcurl and hiredis run on the hub's stack. They may make
 *     greenlets ready (green_spawn, green_kill, setting an event) but never yield.
 *   - Nothing here is thread-safe unless it says so: a hub and its greenlets belong to
 *     one OS thread. green_threadpool.h is the way to reach other threads.
 */
#ifndef WORKERD_GREEN_H
#define WORKERD_GREEN_H

#include <errno.h> /* the codes every call returns */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ev_loop;
struct green;

/* A greenlet handle. It carries the generation of the greenlet it names, so using a
 * handle after the greenlet was joined (or, if detached, ended) is a detected error
 * (-ESRCH), never a use-after-free. A zeroed handle names no greenlet. */
typedef struct green_t {
    struct green *ptr;
    uint64_t gen;
} green_t;

typedef void *(*green_fn)(void *arg);

/* Runtime settings, read by green_run. Zero fields take the defaults. */
typedef struct green_config {
    size_t stack_size;    /* usable bytes per greenlet stack; default 256 KiB, rounded
                             up to pages; committed lazily, so only touched pages cost */
    size_t stack_cache;   /* finished stacks kept for reuse; default 4096 */
    size_t max_greenlets; /* spawn fails with -EAGAIN beyond this; default 1,000,000 */
} green_config;

/* Run main_fn(arg) as the first greenlet of a new hub on the calling thread, with loop
 * (NULL: libev's default loop), and drive the loop until main_fn has returned and every
 * other greenlet has ended: when main_fn returns, the greenlets still alive are killed
 * (their pending call returns -ECANCELED) and run to their end, so no stack leaks.
 * *ret (if ret is not NULL) receives main_fn's return value. cfg may be NULL.
 * Returns 0, -EBUSY if a hub already runs on this thread, -ENOMEM. */
int green_run(struct ev_loop *loop, const green_config *cfg, green_fn main_fn, void *arg,
              void **ret);

/* The loop of the hub running on this thread, or NULL. */
struct ev_loop *green_loop(void);

/* True when called from a greenlet (not from the hub or a foreign thread). */
bool green_in_greenlet(void);

/* The calling greenlet's handle; a zero handle on the hub. */
green_t green_self(void);

/* Create a greenlet that will run fn(arg) once the current one yields. Does not yield;
 * callable from the hub. out NULL makes it detached (it is released when it ends);
 * otherwise exactly one green_join or green_detach must follow.
 * Returns 0, -EAGAIN (max_greenlets reached), -ENOMEM (no memory or no stack: the log
 * line written to stderr says which limit, e.g. vm.max_map_count), -EPERM (no hub). */
int green_spawn(green_t *out, green_fn fn, void *arg);

/* Wait for g to end and release it; *ret receives fn's return value (NULL if g was
 * killed before it started). May yield. Returns 0; -ESRCH for a stale or zero handle;
 * -EDEADLK when g is the caller; -EINVAL when another greenlet already joins g;
 * -ECANCELED / -ETIMEDOUT when the joiner itself is killed or times out (g is then
 * still joinable). */
int green_join(green_t g, void **ret);

/* Release g without waiting: it is freed when it ends. Returns 0 or -ESRCH. */
int green_detach(green_t g);

/* Cancel g, like gevent's kill: its pending blocking call (or the next one it makes)
 * returns -ECANCELED, and it unwinds through its own code. A greenlet that has not
 * started yet never runs. Does not wait for g to end (join for that) and does not yield;
 * callable from the hub. Cancellation is delivered once: later blocking calls in the
 * victim's clean-up code work normally. Returns 0 (also for an ended but unjoined g) or
 * -ESRCH. */
int green_kill(green_t g);

/* Interrupt g like green_kill, but its pending blocking call (or its next one) returns
 * code instead of -ECANCELED: gevent's kill(exception=...), e.g. green_throw(g, -ETIMEDOUT)
 * for a deadline someone else keeps. code is a negative errno. Delivered once, like a kill;
 * a pending kill is never replaced by a throw, and a kill replaces a pending throw. A
 * greenlet that has not started yet starts and gets code at its first blocking call.
 * green_throw(g, 0) withdraws a throw not delivered yet (never a kill): for the owner of a
 * deadline that ended before the greenlet blocked again. Does not yield; callable from the
 * hub. Returns 0 (also for an ended but unjoined g) or -ESRCH. */
int green_throw(green_t g, int code);

/* Let every other ready greenlet run, and the loop poll for I/O, then continue.
 * May yield. Returns 0, -ECANCELED, -EPERM. */
int green_yield(void);

/* Park the caller for seconds (fractions allowed; <= 0 behaves like green_yield).
 * May yield. Returns 0 when the time has passed, -ETIMEDOUT when an enclosing
 * green_timeout ends it first, -ECANCELED, -EPERM. */
int green_sleep(double seconds);

/* A scoped deadline, like gevent.Timeout: between green_timeout_start and
 * green_timeout_end every blocking call of this greenlet returns -ETIMEDOUT once the
 * deadline has passed (immediately if it already has). Scopes nest (the earliest
 * deadline wins) and must end in LIFO order. The struct lives in the caller's frame;
 * its fields are private. */
typedef struct green_timeout {
    double deadline;  /* absolute, ev_time() clock */
    double outer_min; /* earliest deadline of the enclosing scopes */
    bool fired;       /* set when this scope's deadline ended a call */
    struct green_timeout *outer;
} green_timeout;

/* Open a scope on the calling greenlet. seconds < 0 means no deadline (a scope that
 * never fires). Must be called from a greenlet. */
void green_timeout_start(green_timeout *t, double seconds);

/* Close the innermost scope t. Returns true if t's deadline ended a blocking call
 * (so the caller can tell its own Timeout from an outer one). */
bool green_timeout_end(green_timeout *t);

/* ---- watching a hub from another thread ----------------------------------------------
 *
 * A greenlet that computes for long without a blocking call holds up every other greenlet
 * of its hub, and nothing on the hub's own thread can notice while it happens. A monitor
 * thread can (gevent's monitor thread does the same): the hub publishes, at every switch,
 * how many switches it has made and the tag of the greenlet it switched to (NULL for the
 * hub itself and for untagged greenlets). A count that stays the same across two looks,
 * with a tag, is a tagged greenlet that has not yielded in between. Publishing costs two
 * stores per switch. */
typedef struct green_progress green_progress;

/* The progress record of the hub on this thread (NULL without one). It lives until
 * green_run returns: stop every thread reading it before that. Call from the hub's
 * thread; the reads below are for any thread. */
const green_progress *green_progress_get(void);

/* The hub's switch count (relaxed: only compare it with an earlier one). Thread-safe. */
uint64_t green_progress_switches(const green_progress *p);

/* The tag of the greenlet running now, or of the last one switched to. A seq_cst load,
 * which pairs with the release store the hub makes when it switches: whatever the
 * greenlet's owner wrote before green_set_tag is visible once the tag is seen. The tag
 * may be stale a moment later; whoever frees what it points to must agree with the
 * monitor on how it stops looking (a hazard pointer, for one). Thread-safe. */
void *green_progress_tag(const green_progress *p);

/* Tag the calling greenlet (NULL: untag it); published at once and at every switch to
 * it. A new greenlet has no tag. Must be called from a greenlet; does not yield. */
void green_set_tag(void *tag);

/* Counters of the hub on this thread, for metrics and tests. */
typedef struct green_stats {
    size_t alive;         /* greenlets spawned and not yet ended */
    size_t stacks_mapped; /* stacks ever mapped (in use + cached) */
    size_t stacks_cached; /* stacks ready for reuse */
    uint64_t switches;    /* context switches so far */
} green_stats;

void green_get_stats(green_stats *out);

#endif
