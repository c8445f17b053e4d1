/*
 * green_pool.h - a bounded group of greenlets, gevent.pool.Pool(size): spawning into a
 * full pool parks the spawner until a member ends. This is workerd's bound on the number
 * of tasks in flight.
 *
 * Members are detached greenlets tracked by the pool: their function's return value is
 * discarded (hand results back through a green_result or a green_queue), and they are
 * released when they end. The pool counts a member as running from its spawn until its
 * function has returned, whether or not it has started yet.
 *
 * A green_pool is a plain struct the caller embeds; its fields are private. Like
 * everything in green.h it belongs to one hub and is not thread-safe. Blocking calls
 * follow green_sync.h's conventions: `timeout` in seconds (< 0 forever), enclosing
 * green_timeout scopes apply, they MAY YIELD and must run on a greenlet (-EPERM from the
 * hub), they check for a pending kill before anything else, and an error means nothing
 * happened.
 *
 * The pool must be empty (green_pool_join returned 0) before it is destroyed and before
 * the hub ends: green_run kills the greenlets still alive when main_fn returns, and a
 * member killed by it before it started never runs, so its record would leak.
 *
 * A member that spawns into its own full pool waits for a slot that only its own end can
 * free: a deadlock, exactly as in gevent. Use a timeout or a second pool.
 */
#ifndef WORKERD_GREEN_POOL_H
#define WORKERD_GREEN_POOL_H

#include "green.h"
#include "green_waitq.h"

#include <stddef.h>

struct green_pool_member;

typedef struct green_pool {
    size_t size;                       /* private: 0 = unbounded */
    size_t running;                    /* private: members spawned and not ended */
    struct green_pool_member *members; /* private: doubly linked list */
    green__waitq spawners;             /* private: parked in green_pool_spawn */
    green__waitq available;            /* private: parked in green_pool_wait_available */
    green__waitq joiners;              /* private: parked in green_pool_join */
} green_pool;

/* Initialise p for at most `size` concurrent members (0: no limit). Never fails. */
void green_pool_init(green_pool *p, size_t size);

/* Release p. It must be empty and nobody may wait on it (asserted). */
void green_pool_destroy(green_pool *p);

/* Run fn(arg) in a new member greenlet, first waiting while the pool is full. The new
 * greenlet starts once the caller yields. MAY YIELD. Returns 0; -ETIMEDOUT, -ECANCELED,
 * -EPERM (nothing spawned, fn will not run); or green_spawn's -EAGAIN / -ENOMEM. */
int green_pool_spawn(green_pool *p, green_fn fn, void *arg, double timeout);

/* Spawn only if a slot is free now. Does not yield; callable from the hub.
 * Returns 0, -EAGAIN (full, or green_spawn's limit), -ENOMEM, -EPERM (no hub). */
int green_pool_try_spawn(green_pool *p, green_fn fn, void *arg);

/* Wait until at least one slot is free (gevent's Pool.wait_available), without taking
 * it: a later try_spawn from the same greenlet, with no yield in between, succeeds.
 * MAY YIELD. Returns 0, -ETIMEDOUT, -ECANCELED, -EPERM. */
int green_pool_wait_available(green_pool *p, double timeout);

/* Wait until every member has ended (returns at once for an empty pool). Members spawned
 * while it waits are waited for too. MAY YIELD. Returns 0, -ETIMEDOUT, -ECANCELED,
 * -EPERM. */
int green_pool_join(green_pool *p, double timeout);

/* Kill every member (green_kill): a running member's pending or next blocking call
 * returns -ECANCELED; a member that has not started never runs fn. Does not wait for
 * them to end (join for that). Does not yield; callable from the hub. Returns how many
 * members were killed. */
size_t green_pool_kill_all(green_pool *p);

/* Members spawned and not yet ended. */
size_t green_pool_running(const green_pool *p);

/* Slots free now: size - running, or SIZE_MAX for an unbounded pool. */
size_t green_pool_free_slots(const green_pool *p);

#endif
