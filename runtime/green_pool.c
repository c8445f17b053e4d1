/*
 * green_pool.c - green_pool, gevent's Pool(size): at most `size` member greenlets at
 * once; spawning into a full pool parks the spawner until a member ends.
 *
 * Each member is a heap record (fn, arg, its greenlet handle, list links) and a detached
 * greenlet running `member_main`, which calls fn and then does the member's whole
 * bookkeeping: unlink, free, count down, wake. Keeping all of it in that one place means
 * a slot is freed exactly once, however fn ended (returned, or unwound after a kill).
 *
 * Invariants:
 *   - running == the number of records in `members`; it goes up in spawn_now (no yield
 *     between the check for a free slot and the increment, so two spawners can never
 *     both take the last slot) and down in member_main just before the greenlet ends.
 *   - A record's greenlet is alive while the record is listed (member_main unlinks it
 *     as its last act), so green_kill on a listed handle never hits a stale one.
 *   - member_main touches neither its record nor the pool after waking the waiters: a
 *     joiner woken by the last member may destroy the pool as soon as it runs, and
 *     nothing runs before member_main returns, since it does not yield.
 *
 * Killing a member that has not started yet: green_kill would make its greenlet never
 * run, so member_main would never do the bookkeeping and the slot would leak. Instead
 * kill_all marks such a record `cancelled`; its greenlet starts, skips fn and ends at
 * once. (green_run's own kill of leftover greenlets at hub end has the same effect with
 * no such remedy: hence the header's rule that a pool is joined before the hub ends.)
 *
 * Wakes are hints, as in green_queue.c: a woken spawner looks again and parks again if a
 * try_spawn took the slot first; a spawner that leaves with an error while a slot is free
 * passes the wake on to the next spawner, so none is stranded.
 *
 * Stacks: try_spawn, kill_all and the accessors run anywhere (greenlet or hub) and never
 * yield; spawn, wait_available and join run on the caller's greenlet and their waiters
 * live on its stack; member_main runs on the member's own stack.
 */
#include "green_pool.h"
#include "green_internal.h"

#include <stdint.h>
#include <stdlib.h>

typedef struct green_pool_member {
    struct green_pool_member *prev, *next;
    green_pool *pool;
    green_fn fn;
    void *arg;
    green_t g;
    bool started;   /* member_main has begun: a kill reaches fn through green_kill */
    bool cancelled; /* killed before it started: member_main skips fn */
} green_pool_member;

void green_pool_init(green_pool *p, size_t size) {
    p->size = size;
    p->running = 0;
    p->members = NULL;
    p->spawners.head = p->spawners.tail = NULL;
    p->available.head = p->available.tail = NULL;
    p->joiners.head = p->joiners.tail = NULL;
}

void green_pool_destroy(green_pool *p) {
    assert((p->running == 0 && p->members == NULL) &&
           "green_pool_destroy: the pool still has members (join it first)");
    assert((green__waitq_empty(&p->spawners) && green__waitq_empty(&p->available) &&
            green__waitq_empty(&p->joiners)) &&
           "green_pool_destroy: greenlets still wait on this pool");
    (void)p;
}

static bool has_slot(const green_pool *p) {
    return p->size == 0 || p->running < p->size;
}

static void unlink_member(green_pool *p, green_pool_member *m) {
    if (m->prev != NULL)
        m->prev->next = m->next;
    else
        p->members = m->next;
    if (m->next != NULL)
        m->next->prev = m->prev;
}

static void *member_main(void *arg) {
    green_pool_member *m = arg;
    green_pool *p = m->pool;
    m->started = true;
    if (!m->cancelled)
        (void)m->fn(m->arg);

    unlink_member(p, m);
    free(m);
    p->running--;
    /* Last touches of p; see the invariants above. */
    green__waitq_wake_one(&p->spawners, 0);
    green__waitq_wake_all(&p->available, 0);
    if (p->running == 0)
        green__waitq_wake_all(&p->joiners, 0);
    return NULL;
}

/* Spawn a member into a free slot (the caller checked there is one). */
static int spawn_now(green_pool *p, green_fn fn, void *arg) {
    green_pool_member *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return -ENOMEM;
    m->pool = p;
    m->fn = fn;
    m->arg = arg;
    int rc = green_spawn(&m->g, member_main, m);
    if (rc < 0) {
        free(m);
        return rc;
    }
    /* Detaching only gives up the right to join: the handle stays valid for green_kill
     * until the greenlet ends, and the record is unlinked before that. */
    rc = green_detach(m->g);
    assert(rc == 0);
    (void)rc;
    m->next = p->members;
    if (p->members != NULL)
        p->members->prev = m;
    p->members = m;
    p->running++;
    return 0;
}

int green_pool_try_spawn(green_pool *p, green_fn fn, void *arg) {
    if (!has_slot(p))
        return -EAGAIN;
    return spawn_now(p, fn, arg);
}

int green_pool_spawn(green_pool *p, green_fn fn, void *arg, double timeout) {
    int rc = green__check();
    if (rc < 0)
        return rc;
    double deadline = green__deadline_in(timeout);
    while (!has_slot(p)) {
        rc = green__waitq_wait(&p->spawners, deadline);
        if (rc < 0) {
            if (has_slot(p))
                green__waitq_wake_one(&p->spawners, 0);
            return rc;
        }
    }
    rc = spawn_now(p, fn, arg);
    if (rc < 0)
        green__waitq_wake_one(&p->spawners, 0); /* the slot is still free: pass it on */
    return rc;
}

int green_pool_wait_available(green_pool *p, double timeout) {
    int rc = green__check();
    if (rc < 0)
        return rc;
    double deadline = green__deadline_in(timeout);
    while (!has_slot(p)) {
        /* Every member end wakes all of these waiters, so none needs to pass a wake on. */
        rc = green__waitq_wait(&p->available, deadline);
        if (rc < 0)
            return rc;
    }
    return 0;
}

int green_pool_join(green_pool *p, double timeout) {
    int rc = green__check();
    if (rc < 0)
        return rc;
    double deadline = green__deadline_in(timeout);
    while (p->running > 0) {
        rc = green__waitq_wait(&p->joiners, deadline);
        if (rc < 0)
            return rc;
    }
    return 0;
}

size_t green_pool_kill_all(green_pool *p) {
    size_t n = 0;
    for (green_pool_member *m = p->members; m != NULL; m = m->next) {
        if (m->started) {
            /* -ESRCH cannot happen: a listed member's greenlet is alive. */
            int rc = green_kill(m->g);
            assert(rc == 0);
            (void)rc;
        } else {
            m->cancelled = true;
        }
        n++;
    }
    return n;
}

size_t green_pool_running(const green_pool *p) {
    return p->running;
}

size_t green_pool_free_slots(const green_pool *p) {
    if (p->size == 0)
        return SIZE_MAX;
    return p->running < p->size ? p->size - p->running : 0;
}
