/*
 * green_stack.h - greenlet stacks (internal to runtime/): mmap'd, guarded, lazily
 * committed, cached for reuse. One allocator per hub, so no locking.
 */
#ifndef WORKERD_GREEN_STACK_H
#define WORKERD_GREEN_STACK_H

#include <stdbool.h>
#include <stddef.h>

typedef struct green_stack {
    void *lo;       /* lowest usable byte; the guard page is just below */
    size_t size;    /* usable bytes */
    unsigned vg_id; /* valgrind's id for the registered stack */
    bool cold;      /* its pages were given back (MADV_DONTNEED) */
    struct green_stack *next;
} green_stack;

typedef struct green_stack_pool {
    size_t size;       /* usable bytes per stack, page multiple */
    size_t warm_max;   /* cached stacks that keep their pages */
    size_t warm, cold; /* cached stacks, with and without pages */
    size_t mapped;     /* stacks carved so far */
    green_stack *warm_list, *cold_list;
    struct green_stack_slab *slabs;
    int guard_mode; /* how guard pages are made; see green_stack.c */
} green_stack_pool;

void green__stack_pool_init(green_stack_pool *p, size_t size, size_t warm_max);
/* Free every slab. All stacks must have been put back. */
void green__stack_pool_destroy(green_stack_pool *p);
/* A stack, or NULL with errno ENOMEM (the reason is logged once to stderr). */
green_stack *green__stack_get(green_stack_pool *p);
/* Back to the cache; keeps its pages (safe to call on the stack being put back). */
void green__stack_put(green_stack_pool *p, green_stack *s);
/* Give back the pages of cached stacks beyond warm_max. Not on a cached stack. */
void green__stack_trim(green_stack_pool *p);
/* True if addr is in the guard page of s. Async-signal-safe. */
bool green__stack_guard_hit(const green_stack *s, const void *addr);

#endif
