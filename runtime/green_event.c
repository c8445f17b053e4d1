/*
 * green_event.c - green_event, gevent's Event: a flag and the greenlets waiting for it.
 *
 * Invariants: a greenlet is linked in e->waiters only while it is parked in
 * green_event_wait (the waitq unlinks it when its park ends, however it ends). While the
 * flag is set nobody parks, so a set event has no live waiters; it may still have stale
 * links of greenlets that were woken and have not run yet, which the waitq skips.
 *
 * A waiter that green_event_set woke returns 0 even if the event was cleared again before
 * it ran, as gevent's Event.wait does: it was set while the greenlet waited, which is what
 * the caller asked to learn. So a wake never needs a re-check loop here, and a wait that
 * did not get the wake (timeout, kill) reports exactly that.
 *
 * Stacks: set, clear and is_set run anywhere (greenlet or hub) and never yield; wait runs
 * on the waiting greenlet's stack and its waiter record lives there.
 */
#include "green_sync.h"
#include "green_internal.h"

void green_event_init(green_event *e) {
    e->flag = false;
    e->waiters.head = NULL;
    e->waiters.tail = NULL;
}

void green_event_destroy(green_event *e) {
    assert(green__waitq_empty(&e->waiters) &&
           "green_event_destroy: greenlets still wait on this event");
    e->flag = false;
}

void green_event_set(green_event *e) {
    if (e->flag)
        return;
    e->flag = true;
    green__waitq_wake_all(&e->waiters, 0);
}

void green_event_clear(green_event *e) {
    e->flag = false;
}

bool green_event_is_set(const green_event *e) {
    return e->flag;
}

int green_event_wait(green_event *e, double timeout) {
    int rc = green__check();
    if (rc < 0)
        return rc;
    if (e->flag)
        return 0;
    /* The only wake this queue ever receives is a set, so 0 means the flag was set. */
    return green__waitq_wait(&e->waiters, green__deadline_in(timeout));
}
