/*
 * green_sync.h - gevent's synchronisation primitives for greenlets: Event, AsyncResult
 * and Queue (gevent.event.Event, gevent.event.AsyncResult, gevent.queue.Queue).
 *
 * All three are plain structs the caller embeds wherever it likes (a greenlet's frame, a
 * heap record, a static); init them before use and destroy them when no greenlet waits on
 * them any more. Their fields are private. They belong to the hub of one OS thread, like
 * everything in green.h: none of them is thread-safe (green_threadpool.h is the way in
 * from another thread).
 *
 * Conventions shared by every blocking call here (they are green.h's):
 *
 *   - `timeout` is in seconds: < 0 waits forever, 0 only takes what is ready now, > 0 is
 *     a deadline. Enclosing green_timeout scopes apply as well; whichever is earliest ends
 *     the wait with -ETIMEDOUT.
 *   - A blocking call MAY YIELD and must be made from a greenlet: from the hub (a libev,
 *     curl or hiredis callback) it returns -EPERM (and asserts in debug builds).
 *   - A blocking call first checks for a pending green_kill or an expired scope, even when
 *     it could complete at once: it returns -ECANCELED / -ETIMEDOUT then, as green_yield
 *     does. Killed while parked, it returns -ECANCELED.
 *   - A call that returned an error took nothing and never completes later: a queue item
 *     is not consumed, a pool slot is not taken.
 *
 * The calls that never yield (set, try_put, try_get, peek, ...) are callable from the hub,
 * which is how a libev/curl/hiredis callback hands a result to a greenlet.
 */
#ifndef WORKERD_GREEN_SYNC_H
#define WORKERD_GREEN_SYNC_H

#include "green.h"
#include "green_waitq.h"

#include <stdbool.h>
#include <stddef.h>

/* ------------------------------------------------------------------------------------ */
/* green_event: a flag greenlets can wait for (gevent.event.Event).                     */
/* ------------------------------------------------------------------------------------ */

typedef struct green_event {
    bool flag;            /* private */
    green__waitq waiters; /* private */
} green_event;

/* Initialise e, unset. Never fails. */
void green_event_init(green_event *e);

/* Release e. No greenlet may be parked in green_event_wait on it (asserted). */
void green_event_destroy(green_event *e);

/* Set the flag and wake every greenlet waiting for it; later waits return at once until
 * green_event_clear. Does not yield; callable from the hub. Setting a set event does
 * nothing. */
void green_event_set(green_event *e);

/* Unset the flag. Greenlets already woken by an earlier set still return 0. Does not
 * yield; callable from the hub. */
void green_event_clear(green_event *e);

/* Whether the flag is set. Callable from anywhere on the hub's thread. */
bool green_event_is_set(const green_event *e);

/* Wait until the flag is set. MAY YIELD. Returns 0 (the flag was set, or was set when
 * the call started), -ETIMEDOUT, -ECANCELED, -EPERM. */
int green_event_wait(green_event *e, double timeout);

/* ------------------------------------------------------------------------------------ */
/* green_result: a value or an error, set once, read by any number of greenlets         */
/* (gevent.event.AsyncResult).                                                          */
/* ------------------------------------------------------------------------------------ */

typedef struct green_result {
    bool ready;           /* private */
    int error;            /* private: 0 for a value */
    void *value;          /* private */
    char *message;        /* private: owned copy, or NULL */
    green__waitq waiters; /* private */
} green_result;

/* Initialise r, not ready. Never fails. */
void green_result_init(green_result *r);

/* Release r and its copy of the error message. The value is the caller's (r never owns
 * it). No greenlet may be parked in green_result_get on it (asserted). */
void green_result_destroy(green_result *r);

/* Store value and wake every waiter. Does not yield; callable from the hub.
 * Returns 0, or -EALREADY if r was already set (r keeps its first outcome). */
int green_result_set_value(green_result *r, void *value);

/* Store an error and wake every waiter. code is what green_result_get will return: a
 * negative errno by convention, but any nonzero int is kept as is (choose codes that
 * cannot be confused with get's own -ETIMEDOUT / -ECANCELED / -EPERM if that matters).
 * message (may be NULL) is copied. Does not yield; callable from the hub.
 * Returns 0; -EALREADY if r was already set; -EINVAL if code is 0; -ENOMEM if the message
 * could not be copied (r is then left unset). */
int green_result_set_error(green_result *r, int code, const char *message);

/* Wait until r is set. On a value, *value (if value is not NULL) receives it and 0 is
 * returned; on an error, the stored code is returned and *value is untouched. Otherwise
 * -ETIMEDOUT, -ECANCELED, -EPERM. MAY YIELD. Any number of greenlets may wait, before
 * and after the set: all of them see the same outcome. */
int green_result_get(green_result *r, double timeout, void **value);

/* Non-blocking get: -EAGAIN if r is not set yet, else exactly what green_result_get
 * would return. Does not yield; callable from the hub. */
int green_result_peek(const green_result *r, void **value);

/* Whether r has been set. */
bool green_result_ready(const green_result *r);

/* The copied error message, or NULL (not set, a value, or no message given). Owned by r:
 * valid until green_result_destroy. */
const char *green_result_message(const green_result *r);

/* ------------------------------------------------------------------------------------ */
/* green_queue: a FIFO of void * items between greenlets (gevent.queue.Queue).          */
/* ------------------------------------------------------------------------------------ */

typedef struct green_queue {
    void **ring;          /* private: circular buffer of `alloc` slots */
    size_t alloc;         /* private */
    size_t head;          /* private: index of the oldest item */
    size_t count;         /* private */
    size_t capacity;      /* private: 0 = unbounded */
    green__waitq getters; /* private: parked in green_queue_get */
    green__waitq putters; /* private: parked in green_queue_put */
} green_queue;

/* Initialise q with room for `capacity` items (0: unbounded). The buffer is allocated
 * as items arrive, so a large capacity costs nothing up front. Never fails. */
void green_queue_init(green_queue *q, size_t capacity);

/* Release q's buffer. Items still queued are NOT freed (they are the caller's: drain q
 * first if they own memory). No greenlet may be parked on q (asserted). */
void green_queue_destroy(green_queue *q);

/* Append item, waiting while a bounded q is full. MAY YIELD. Returns 0, -ETIMEDOUT,
 * -ECANCELED, -EPERM, -ENOMEM (growing the buffer failed). On error q is unchanged. */
int green_queue_put(green_queue *q, void *item, double timeout);

/* Remove the oldest item into *item, waiting while q is empty. MAY YIELD. Returns 0,
 * -ETIMEDOUT, -ECANCELED, -EPERM. On error nothing was taken. */
int green_queue_get(green_queue *q, void **item, double timeout);

/* Append item if there is room now. Does not yield; callable from the hub.
 * Returns 0, -EAGAIN (bounded and full), -ENOMEM. */
int green_queue_try_put(green_queue *q, void *item);

/* Remove the oldest item if there is one. Does not yield; callable from the hub.
 * Returns 0 or -EAGAIN (empty). */
int green_queue_try_get(green_queue *q, void **item);

/* Items queued now. */
size_t green_queue_size(const green_queue *q);

/* The capacity given to init (0: unbounded). */
size_t green_queue_capacity(const green_queue *q);

#endif
