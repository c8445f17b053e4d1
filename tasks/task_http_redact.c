/*
 * task_http_redact.c - userinfo out of URLs in text (task_http_redact.h).
 *
 * One pass that copies the text and, at each authority with an '@', writes the user name
 * (when a ':' follows it) and "***" instead of the userinfo. The output is measured and
 * written by the same code, as snprintf is, so callers size a buffer with a first call.
 */
#include "task_http_redact.h"

#include <stdlib.h>
#include <string.h>

/* Where an authority that starts at s ends. */
static const char *authority_end(const char *s, const char *end) {
    while (s < end && strchr("/?#\\ \t\r\n\"'<>", *s) == NULL && *s != '\0')
        s++;
    return s;
}

typedef struct sink {
    char *out;
    size_t cap, len;
} sink;

static void put(sink *k, const char *s, size_t n) {
    if (k->len < k->cap) {
        size_t room = k->cap - 1 - k->len;
        memcpy(k->out + k->len, s, n < room ? n : room);
    }
    k->len += n;
}

/* Copy the authority [s, e) with its userinfo redacted. */
static void put_authority(sink *k, const char *s, const char *e) {
    const char *at = NULL;
    for (const char *p = s; p < e; p++)
        if (*p == '@')
            at = p;
    if (at == NULL || at == s) {
        put(k, s, (size_t)(e - s));
        return;
    }
    const char *colon = memchr(s, ':', (size_t)(at - s));
    if (colon != NULL)
        put(k, s, (size_t)(colon + 1 - s));
    put(k, "***", 3);
    put(k, at, (size_t)(e - at));
}

size_t task__redact(const char *text, size_t len, bool whole_url, char *out, size_t cap) {
    sink k = {.out = out, .cap = cap};
    const char *p = text, *end = text + len;
    bool found = false;
    for (const char *q = p; end - q >= 3;) {
        if (memcmp(q, "://", 3) != 0) {
            q++;
            continue;
        }
        const char *s = q + 3, *e = authority_end(s, end);
        put(&k, p, (size_t)(s - p));
        put_authority(&k, s, e);
        p = q = e;
        found = true;
    }
    if (!found && whole_url) {
        const char *e = authority_end(p, end);
        put_authority(&k, p, e);
        p = e;
    }
    put(&k, p, (size_t)(end - p));
    if (cap > 0)
        out[k.len < cap ? k.len : cap - 1] = '\0';
    return k.len;
}

char *task__redact_dup(const char *text, size_t len, bool whole_url, size_t *outlen) {
    size_t n = task__redact(text, len, whole_url, NULL, 0);
    char *out = malloc(n + 1);
    if (out == NULL)
        return NULL;
    task__redact(text, len, whole_url, out, n + 1);
    if (outlen != NULL)
        *outlen = n;
    return out;
}

void task__redact_in_place(char *buf, size_t cap) {
    size_t len = strlen(buf);
    if (memchr(buf, '@', len) == NULL)
        return; /* nothing to redact: the common case costs one scan */
    char *copy = malloc(len + 1);
    if (copy == NULL) {
        buf[0] = '\0'; /* better no message than one with a password */
        return;
    }
    memcpy(copy, buf, len + 1);
    task__redact(copy, len, false, buf, cap);
    free(copy);
}
