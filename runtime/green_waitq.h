/*
 * green_waitq.h - the type of a FIFO of parked greenlets, which the public primitives
 * (green_sync.h, green_pool.h) embed in their structs. Only the type is here, so that those
 * headers can be installed without green_internal.h: its fields, and the functions that
 * use it (green_internal.h), are the runtime's own.
 */
#ifndef WORKERD_GREEN_WAITQ_H
#define WORKERD_GREEN_WAITQ_H

#include <stdbool.h>

struct green;

/* A FIFO of parked greenlets (intrusive; waiters live on their greenlets' stacks). All
 * fields are private. */
typedef struct green__waiter {
    struct green__waiter *prev, *next;
    struct green *g;
    bool linked;
} green__waiter;

typedef struct green__waitq {
    green__waiter *head, *tail;
} green__waitq;

#endif
