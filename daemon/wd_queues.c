/*
 * wd_queues.c - joining queue names (wd_queues.h).
 */
#include "wd_queues.h"

#include <stdlib.h>
#include <string.h>

char *wd_queues_join(const char *const *queues, size_t n) {
    size_t len = 1;
    for (size_t i = 0; i < n; i++)
        len += strlen(queues[i]) + 1;
    char *out = malloc(len), *p = out;
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(queues[i]);
        if (i)
            *p++ = ',';
        memcpy(p, queues[i], l);
        p += l;
    }
    *p = '\0';
    return out;
}
