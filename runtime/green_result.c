/*
 * green_result.c - green_result, gevent's AsyncResult: one outcome (a value or an error
 * code with an optional message), set once, seen by every greenlet that asks for it.
 *
 * Invariants: `ready` goes from false to true exactly once, in a set call, and the
 * outcome fields never change afterwards; so a greenlet that reads them after its wait
 * sees the same outcome as every other reader, whenever it asked. Greenlets are linked in
 * r->waiters only while parked in green_result_get; a set wakes them all, and nobody
 * parks once r is ready.
 *
 * The message is copied at set time, because the setter is often a hub callback whose
 * buffer (a hiredis reply, a curl error buffer) is gone once the callback returns.
 *
 * Stacks: the set calls, peek and the accessors run anywhere (greenlet or hub) and never
 * yield; get runs on the waiting greenlet's stack and its waiter record lives there.
 */
#include "green_sync.h"
#include "green_internal.h"

#include <stdlib.h>
#include <string.h>

void green_result_init(green_result *r) {
    r->ready = false;
    r->error = 0;
    r->value = NULL;
    r->message = NULL;
    r->waiters.head = NULL;
    r->waiters.tail = NULL;
}

void green_result_destroy(green_result *r) {
    assert(green__waitq_empty(&r->waiters) &&
           "green_result_destroy: greenlets still wait on this result");
    free(r->message);
    r->message = NULL;
    r->ready = false;
}

/* Publish the outcome already stored in r. Not inline in the setters so that the order
 * (fields first, then ready, then wake) is written once. */
static void publish(green_result *r) {
    r->ready = true;
    green__waitq_wake_all(&r->waiters, 0);
}

int green_result_set_value(green_result *r, void *value) {
    if (r->ready)
        return -EALREADY;
    r->error = 0;
    r->value = value;
    publish(r);
    return 0;
}

int green_result_set_error(green_result *r, int code, const char *message) {
    if (r->ready)
        return -EALREADY;
    if (code == 0)
        return -EINVAL;
    char *copy = NULL;
    if (message != NULL) {
        copy = strdup(message);
        if (copy == NULL)
            return -ENOMEM;
    }
    r->error = code;
    r->value = NULL;
    r->message = copy;
    publish(r);
    return 0;
}

int green_result_peek(const green_result *r, void **value) {
    if (!r->ready)
        return -EAGAIN;
    if (r->error != 0)
        return r->error;
    if (value != NULL)
        *value = r->value;
    return 0;
}

int green_result_get(green_result *r, double timeout, void **value) {
    int rc = green__check();
    if (rc < 0)
        return rc;
    if (!r->ready) {
        /* Only a set wakes this queue, and a set makes r ready for good: one park is
         * enough, no re-check loop. */
        rc = green__waitq_wait(&r->waiters, green__deadline_in(timeout));
        if (rc < 0)
            return rc;
    }
    assert(r->ready);
    return green_result_peek(r, value);
}

bool green_result_ready(const green_result *r) {
    return r->ready;
}

const char *green_result_message(const green_result *r) {
    return r->ready ? r->message : NULL;
}
