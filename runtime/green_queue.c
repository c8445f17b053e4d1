/*
 * green_queue.c - green_queue, gevent's Queue: a FIFO of void * items, bounded or not,
 * whose put parks while full and whose get parks while empty.
 *
 * Storage is a ring buffer of `alloc` slots (a power of two, so wrapping is a mask),
 * holding `count` items from `head`. It starts empty and doubles as items arrive, up to
 * the capacity of a bounded queue; it never shrinks (a queue that was once busy will be
 * busy again, and the bytes are few).
 *
 * The wake protocol. A get that takes an item wakes one parked putter (there is room
 * now); a put that adds one wakes one parked getter. A woken greenlet is not handed the
 * item: it goes back round its loop and looks at the queue again, because another
 * greenlet (or a hub callback's try_get) may have run first and taken it, in which case
 * it parks again with its original deadline. That keeps one rule for everybody: the
 * queue's contents are the truth, a wake is only a hint to look.
 *
 * The special problem of the waiter that times out as the item arrives. A getter's
 * deadline fires (it is now ready with -ETIMEDOUT but has not run yet) and in the same
 * loop iteration a put wakes the getters. green__waitq_wake_one finds that getter no
 * longer parked, drops it, and wakes the next one, so the item goes to a greenlet that
 * will take it, or stays queued for the next get. Nothing is lost because nothing was
 * handed over. The converse hazard is a greenlet that did get the wake but leaves with an
 * error anyway (a kill that lands between its wake and its run, if the core ever lets a
 * kill override a wake): then the item sits in the queue while another getter sleeps.
 * So every exit with an error passes the baton: if what it waited for is there, it wakes
 * the next waiter of its kind. A spare wake costs one extra look; a missing one strands
 * a greenlet forever.
 *
 * Stacks: try_put, try_get and the accessors run anywhere (greenlet or hub) and never
 * yield; put and get run on the calling greenlet's stack and their waiters live there.
 */
#include "green_sync.h"
#include "green_internal.h"

#include <stdint.h>
#include <stdlib.h>

#define MIN_ALLOC 8

void green_queue_init(green_queue *q, size_t capacity) {
    q->ring = NULL;
    q->alloc = 0;
    q->head = 0;
    q->count = 0;
    q->capacity = capacity;
    q->getters.head = q->getters.tail = NULL;
    q->putters.head = q->putters.tail = NULL;
}

void green_queue_destroy(green_queue *q) {
    assert((green__waitq_empty(&q->getters) && green__waitq_empty(&q->putters)) &&
           "green_queue_destroy: greenlets still wait on this queue");
    free(q->ring);
    q->ring = NULL;
    q->alloc = q->count = q->head = 0;
}

static bool is_full(const green_queue *q) {
    return q->capacity != 0 && q->count >= q->capacity;
}

/* Make room for one more item: double the ring, unrolling the wrapped part so that the
 * items stay in order from index 0. Returns 0 or -ENOMEM (q unchanged). */
static int grow(green_queue *q) {
    if (q->count < q->alloc)
        return 0;
    size_t alloc = q->alloc ? q->alloc * 2 : MIN_ALLOC;
    if (alloc < q->alloc || alloc > SIZE_MAX / sizeof(void *))
        return -ENOMEM;
    void **ring = malloc(alloc * sizeof(void *));
    if (ring == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < q->count; i++)
        ring[i] = q->ring[(q->head + i) & (q->alloc - 1)];
    free(q->ring);
    q->ring = ring;
    q->alloc = alloc;
    q->head = 0;
    return 0;
}

int green_queue_try_put(green_queue *q, void *item) {
    if (is_full(q))
        return -EAGAIN;
    int rc = grow(q);
    if (rc < 0)
        return rc;
    q->ring[(q->head + q->count) & (q->alloc - 1)] = item;
    q->count++;
    green__waitq_wake_one(&q->getters, 0);
    return 0;
}

int green_queue_try_get(green_queue *q, void **item) {
    if (q->count == 0)
        return -EAGAIN;
    *item = q->ring[q->head];
    q->head = (q->head + 1) & (q->alloc - 1);
    q->count--;
    green__waitq_wake_one(&q->putters, 0);
    return 0;
}

int green_queue_put(green_queue *q, void *item, double timeout) {
    int rc = green__check();
    if (rc < 0)
        return rc;
    double deadline = green__deadline_in(timeout);
    while ((rc = green_queue_try_put(q, item)) == -EAGAIN) {
        rc = green__waitq_wait(&q->putters, deadline);
        if (rc < 0)
            break;
    }
    /* Leaving with an error while there is room: pass the baton (see the essay at the
     * top). This covers -ENOMEM after a wake as well as a timeout or a kill. */
    if (rc < 0 && !is_full(q))
        green__waitq_wake_one(&q->putters, 0);
    return rc;
}

int green_queue_get(green_queue *q, void **item, double timeout) {
    int rc = green__check();
    if (rc < 0)
        return rc;
    double deadline = green__deadline_in(timeout);
    while (green_queue_try_get(q, item) == -EAGAIN) {
        rc = green__waitq_wait(&q->getters, deadline);
        if (rc < 0) {
            /* Pass the baton (see the essay at the top). */
            if (q->count > 0)
                green__waitq_wake_one(&q->getters, 0);
            return rc;
        }
    }
    return 0;
}

size_t green_queue_size(const green_queue *q) {
    return q->count;
}

size_t green_queue_capacity(const green_queue *q) {
    return q->capacity;
}
