/*
 * settings_internal.h - what settings_load.c (the layers) and settings_value.c (the checks
 * of one value) share: the state of one load, which knows the program's name and where the
 * value being checked came from, so that every message can say both.
 *
 * Not part of the API: only the settings library's own files include it.
 */
#ifndef WORKERD_SETTINGS_INTERNAL_H
#define WORKERD_SETTINGS_INTERNAL_H

#include "settings.h"

/* Where a value came from, for "(from ...)". */
enum settings__layer {
    SETTINGS__DEFAULT,
    SETTINGS__FILE,
    SETTINGS__ENV,
    SETTINGS__CLI,
};

struct settings__load {
    const char *program;
    settings_check_fn check;
    enum settings__layer layer;
    const char *file; /* SETTINGS__FILE: its path and the line of the value */
    int line;
    char *errbuf;
    size_t errlen;
};

/* Write "<program>: <what> (from <where>)" to the error buffer; returns -1. */
int settings__fail(struct settings__load *l, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Check value as option id, written by the user as name ("--concurrency",
 * "WORKERD_CONCURRENCY", "default"), and store it in *v, replacing what an earlier layer
 * put there. Returns 0, or -1 after settings__fail (*v is then unchanged). */
int settings__set(struct settings__load *l, enum settings_id id, const char *name,
                  const char *value, struct settings_value *v);

/* Free what *v owns and zero it. */
void settings__value_free(struct settings_value *v);

#endif
