/*
 * broker_batch.c - the command vectors of broker_batch.h.
 *
 * All arguments of all commands live in one array (args, lens); command i's are the
 * argcs[i] entries from first[i]. argvs[i] and argvlens[i] point into those arrays, so
 * all of them are set again whenever the arrays move (a realloc, which doubling makes
 * rare: building stays linear); otherwise only the last command's are.
 *
 * Copied arguments go into blocks that are never moved once allocated (a pointer handed
 * out stays valid until broker_batch_clear): BLOCK_FIRST bytes at first, doubling up to
 * BLOCK_MAX, or exactly what one large argument needs.
 *
 * Pure computation; no I/O; never yields.
 */
#include "broker_batch.h"

#include "green_check.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BLOCK_FIRST 1024
#define BLOCK_MAX (64 * 1024)

struct broker_batch_block {
    struct broker_batch_block *next;
    size_t used, cap;
    char data[];
};

int broker_batch_fail(broker_batch *b, int err) {
    if (b->err == 0)
        b->err = err;
    return b->err;
}

/* Point every command's argv and argvlen at the (possibly moved) argument arrays. */
static void repoint(broker_batch *b) {
    if (b->args == NULL || b->lens == NULL)
        return;
    for (size_t i = 0; i < b->n; i++) {
        b->argvs[i] = b->args + b->first[i];
        b->argvlens[i] = b->lens + b->first[i];
    }
}

int broker_batch_cmd(broker_batch *b) {
    if (b->err)
        return b->err;
    if (b->n == b->cap_cmds) {
        size_t cap = b->cap_cmds ? 2 * b->cap_cmds : 4;
        int *argcs = realloc(b->argcs, cap * sizeof *argcs);
        if (argcs != NULL)
            b->argcs = argcs;
        const char ***argvs = realloc(b->argvs, cap * sizeof *argvs);
        if (argvs != NULL)
            b->argvs = argvs;
        const size_t **argvlens = realloc(b->argvlens, cap * sizeof *argvlens);
        if (argvlens != NULL)
            b->argvlens = argvlens;
        size_t *first = realloc(b->first, cap * sizeof *first);
        if (first != NULL)
            b->first = first;
        if (!argcs || !argvs || !argvlens || !first)
            return broker_batch_fail(b, -ENOMEM);
        b->cap_cmds = cap;
    }
    b->first[b->n] = b->nargs;
    b->argcs[b->n] = 0;
    b->argvs[b->n] = NULL; /* set with its first argument */
    b->argvlens[b->n] = NULL;
    b->n++;
    return 0;
}

int broker_batch_arg(broker_batch *b, const char *s, size_t len) {
    if (b->err)
        return b->err;
    GREEN_CHECK(b->n > 0, "broker_batch: an argument before the first broker_batch_cmd");
    if (b->nargs == b->cap_args) {
        size_t cap = b->cap_args ? 2 * b->cap_args : 16;
        const char **args = realloc(b->args, cap * sizeof *args);
        if (args != NULL)
            b->args = args;
        size_t *lens = realloc(b->lens, cap * sizeof *lens);
        if (lens != NULL)
            b->lens = lens;
        repoint(b);
        if (!args || !lens)
            return broker_batch_fail(b, -ENOMEM);
        b->cap_args = cap;
    }
    b->args[b->nargs] = s;
    b->lens[b->nargs] = len;
    b->nargs++;
    size_t last = b->n - 1;
    b->argcs[last]++;
    b->argvs[last] = b->args + b->first[last];
    b->argvlens[last] = b->lens + b->first[last];
    return 0;
}

int broker_batch_str(broker_batch *b, const char *s) {
    return broker_batch_arg(b, s, strlen(s));
}

void broker_batch_set(broker_batch *b, size_t i, int j, const char *s, size_t len) {
    GREEN_CHECK(i < b->n && j >= 0 && j < b->argcs[i], "broker_batch_set: no such argument");
    b->args[b->first[i] + (size_t)j] = s;
    b->lens[b->first[i] + (size_t)j] = len;
}

/* len bytes in a block that will not move; NULL when out of memory. */
static char *space(broker_batch *b, size_t len) {
    struct broker_batch_block *k = b->blocks;
    if (k == NULL || k->cap - k->used < len) {
        size_t cap = k ? (k->cap < BLOCK_MAX ? 2 * k->cap : BLOCK_MAX) : BLOCK_FIRST;
        if (cap < len)
            cap = len;
        struct broker_batch_block *fresh = malloc(sizeof *fresh + cap);
        if (fresh == NULL)
            return NULL;
        fresh->next = k;
        fresh->used = 0;
        fresh->cap = cap;
        b->blocks = k = fresh;
    }
    char *p = k->data + k->used;
    k->used += len;
    return p;
}

int broker_batch_copy(broker_batch *b, const char *s, size_t len) {
    if (b->err)
        return b->err;
    char *p = space(b, len + 1);
    if (p == NULL)
        return broker_batch_fail(b, -ENOMEM);
    memcpy(p, s, len);
    p[len] = '\0';
    return broker_batch_arg(b, p, len);
}

int broker_batch_num(broker_batch *b, long long v) {
    char text[32];
    int len = snprintf(text, sizeof text, "%lld", v);
    return broker_batch_copy(b, text, (size_t)len);
}

void broker_batch_clear(broker_batch *b) {
    while (b->blocks != NULL) {
        struct broker_batch_block *next = b->blocks->next;
        free(b->blocks);
        b->blocks = next;
    }
    free(b->argcs);
    free(b->argvs);
    free(b->argvlens);
    free(b->first);
    free(b->args);
    free(b->lens);
    *b = (broker_batch){0};
}
