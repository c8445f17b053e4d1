/*
 * green_stack.c - the stack allocator.
 *
 * Stacks are carved from slabs: one mmap of GREEN_SLAB_STACKS stacks, each preceded by a
 * guard page, MAP_NORESERVE so that only the pages a greenlet touches are ever committed.
 * A parked greenlet that used little stack costs one or two resident pages.
 *
 * The special problem of the kernel's map count. Linux limits a process to
 * vm.max_map_count mappings (65530 by default), and a guard page made with mprotect
 * splits a mapping in two: one mmap plus one guard per stack costs two mappings, so the
 * naive allocator dies near 32,000 greenlets. Since Linux 6.13, madvise(MADV_GUARD_INSTALL)
 * makes guard pages that are not mappings at all: a whole slab, guards included, stays one
 * mapping, and 100,000 greenlets cost ~1,600 mappings. That is the first choice. On older
 * kernels the allocator falls back to mprotect guards, which cost a mapping each; when the
 * map count runs out, mprotect fails with ENOMEM and the allocator says so (raise
 * vm.max_map_count, see README) instead of handing out an unguarded stack.
 *
 * Cached stacks keep their pages up to warm_max (a reused stack is already faulted in);
 * beyond that green__stack_trim gives them back to the kernel with MADV_DONTNEED (guards
 * survive it). Trimming is separate from putting back because a finishing greenlet puts
 * back the very stack it still runs on.
 */
#include "green_stack.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#ifdef GREEN_HAVE_VALGRIND
#include <valgrind/valgrind.h>
#else
#define VALGRIND_STACK_REGISTER(lo, hi) 0u
#define VALGRIND_STACK_DEREGISTER(id) ((void)(id))
#endif

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif

#define GREEN_SLAB_STACKS 64

enum { GUARD_UNKNOWN, GUARD_MADVISE, GUARD_MPROTECT };

typedef struct green_stack_slab {
    struct green_stack_slab *next;
    void *base;
    size_t len;
    green_stack stacks[GREEN_SLAB_STACKS];
} green_stack_slab;

static size_t page_size(void) {
    static size_t ps;
    if (!ps)
        ps = (size_t)sysconf(_SC_PAGESIZE);
    return ps;
}

void green__stack_pool_init(green_stack_pool *p, size_t size, size_t warm_max) {
    size_t ps = page_size();
    *p = (green_stack_pool){0};
    p->size = (size + ps - 1) / ps * ps;
    p->warm_max = warm_max;
}

static int install_guard(green_stack_pool *p, void *guard) {
    size_t ps = page_size();
    if (p->guard_mode != GUARD_MPROTECT) {
        if (madvise(guard, ps, MADV_GUARD_INSTALL) == 0) {
            p->guard_mode = GUARD_MADVISE;
            return 0;
        }
        if (errno != EINVAL || p->guard_mode == GUARD_MADVISE)
            return -1;
        p->guard_mode = GUARD_MPROTECT; /* kernel older than 6.13 */
    }
    return mprotect(guard, ps, PROT_NONE);
}

/* Once per process, whichever hub (thread) runs out first: hence an atomic flag. */
static atomic_flag said_no_stack = ATOMIC_FLAG_INIT;

static void report(const char *what, int err) {
    if (atomic_flag_test_and_set(&said_no_stack))
        return;
    fprintf(stderr,
            "green: cannot make a greenlet stack: %s: %s (on kernels older than 6.13 every "
            "stack costs two memory mappings: raise vm.max_map_count or lower the "
            "concurrency)\n",
            what,
            err == ENOMEM ? "out of memory or of vm.max_map_count mappings" : "unexpected error");
}

static int add_slab(green_stack_pool *p) {
    size_t ps = page_size(), span = p->size + ps;
    green_stack_slab *slab = calloc(1, sizeof *slab);
    if (!slab)
        return -1;
    slab->len = span * GREEN_SLAB_STACKS;
    slab->base = mmap(NULL, slab->len, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (slab->base == MAP_FAILED) {
        int err = errno;
        report("mmap", err);
        free(slab);
        errno = err;
        return -1;
    }
    for (int i = 0; i < GREEN_SLAB_STACKS; i++) {
        char *guard = (char *)slab->base + (size_t)i * span;
        if (install_guard(p, guard) != 0) {
            int err = errno;
            report("guard page", err);
            for (int j = 0; j < i; j++)
                VALGRIND_STACK_DEREGISTER(slab->stacks[j].vg_id);
            munmap(slab->base, slab->len);
            free(slab);
            errno = err;
            return -1;
        }
        green_stack *s = &slab->stacks[i];
        s->lo = guard + ps;
        s->size = p->size;
        s->vg_id = VALGRIND_STACK_REGISTER(s->lo, (char *)s->lo + s->size);
        s->cold = true;
        s->next = p->cold_list;
        p->cold_list = s;
    }
    p->cold += GREEN_SLAB_STACKS;
    p->mapped += GREEN_SLAB_STACKS;
    slab->next = p->slabs;
    p->slabs = slab;
    return 0;
}

green_stack *green__stack_get(green_stack_pool *p) {
    green_stack *s = p->warm_list;
    if (s) {
        p->warm_list = s->next;
        p->warm--;
        return s;
    }
    if (!p->cold_list && add_slab(p) != 0)
        return NULL;
    s = p->cold_list;
    p->cold_list = s->next;
    p->cold--;
    s->cold = false;
    return s;
}

void green__stack_put(green_stack_pool *p, green_stack *s) {
    s->next = p->warm_list;
    p->warm_list = s;
    p->warm++;
}

void green__stack_trim(green_stack_pool *p) {
    while (p->warm > p->warm_max) {
        green_stack *s = p->warm_list;
        p->warm_list = s->next;
        p->warm--;
        madvise(s->lo, s->size, MADV_DONTNEED);
        s->cold = true;
        s->next = p->cold_list;
        p->cold_list = s;
        p->cold++;
    }
}

bool green__stack_guard_hit(const green_stack *s, const void *addr) {
    uintptr_t a = (uintptr_t)addr, lo = (uintptr_t)s->lo;
    return a < lo && a >= lo - page_size();
}

void green__stack_pool_destroy(green_stack_pool *p) {
    green_stack_slab *slab = p->slabs;
    while (slab) {
        green_stack_slab *next = slab->next;
        for (int i = 0; i < GREEN_SLAB_STACKS; i++)
            VALGRIND_STACK_DEREGISTER(slab->stacks[i].vg_id);
        munmap(slab->base, slab->len);
        free(slab);
        slab = next;
    }
    *p = (green_stack_pool){.size = p->size, .warm_max = p->warm_max};
}
