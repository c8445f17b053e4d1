/*
 * green_waitq.c - FIFO wait queues of parked greenlets (green_internal.h), the building
 * block of events, queues, pools and servers.
 *
 * Waiters live on their greenlets' stacks and are linked only while their greenlet waits
 * in green__waitq_wait: a waker unlinks the waiter it wakes, and a waiter that resumed for
 * another reason (deadline, kill) unlinks itself before its frame goes away. A waiter
 * that is linked but no longer parked (woken by its timer, not yet run) is skipped by
 * green__waitq_wake_one, which then tries the next one, so a hand-over is never lost.
 *
 * Called from greenlets (wait) and from greenlets or the hub (wake); never yields except
 * in green__waitq_wait.
 */
#include "green_internal.h"

static void link_tail(green__waitq *q, green__waiter *w) {
    w->next = NULL;
    w->prev = q->tail;
    if (q->tail)
        q->tail->next = w;
    else
        q->head = w;
    q->tail = w;
    w->linked = true;
}

static void unlink_waiter(green__waitq *q, green__waiter *w) {
    if (!w->linked)
        return;
    if (w->prev)
        w->prev->next = w->next;
    else
        q->head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        q->tail = w->prev;
    w->prev = w->next = NULL;
    w->linked = false;
}

int green__waitq_wait(green__waitq *q, double deadline) {
    green__waiter w = {.g = green__current()};
    if (!w.g)
        return green__park(deadline); /* reports -EPERM */
    link_tail(q, &w);
    int rc = green__park(deadline);
    unlink_waiter(q, &w);
    return rc;
}

bool green__waitq_wake_one(green__waitq *q, int code) {
    while (q->head) {
        green__waiter *w = q->head;
        unlink_waiter(q, w);
        if (green__wake(w->g, code))
            return true;
    }
    return false;
}

size_t green__waitq_wake_all(green__waitq *q, int code) {
    size_t n = 0;
    while (q->head) {
        green__waiter *w = q->head;
        unlink_waiter(q, w);
        n += green__wake(w->g, code);
    }
    return n;
}
