/*
 * ctl_out.c - workerctl's output: one-line JSON documents for scripts (--json), aligned text
 * tables and short durations for people.
 *
 * A table is collected first and printed at the end, because the column widths depend on
 * every row. Cells are copied, escaped (ctl.h: no control character from Redis reaches a
 * terminal), so callers may pass temporary buffers and raw values. The last column is not
 * padded, so lines carry no trailing blanks. Out of memory while collecting drops the cell's
 * text (it prints as "?"): this is output of a short-lived CLI, not data.
 *
 * Runs on the main thread; writes to stdout.
 */
#include "ctl.h"

#include "broker_beat.h"
#include "green_check.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- escaping ------------------------------------------------------------------------ */

/* The length of the UTF-8 sequence at s (at most n bytes), with its code point in *cp, or
 * 0 when the bytes there are not one (overlong forms, surrogates and values past
 * U+10FFFF are not). */
static size_t utf8_sequence(const unsigned char *s, size_t n, unsigned *cp) {
    unsigned c = s[0];
    size_t len;
    unsigned lo = 0x80, hi = 0xbf; /* the range of the second byte */
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2, *cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3, *cp = c & 0x0f;
        lo = c == 0xe0 ? 0xa0 : 0x80;
        hi = c == 0xed ? 0x9f : 0xbf;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4, *cp = c & 0x07;
        lo = c == 0xf0 ? 0x90 : 0x80;
        hi = c == 0xf4 ? 0x8f : 0xbf;
    } else {
        return 0;
    }
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        *cp = *cp << 6 | (s[i] & 0x3f);
    }
    return len;
}

/* Characters that change how a terminal shows what follows without being C0 or C1
 * controls: the bidirectional marks, embeddings, overrides and isolates. */
static bool is_bidi_control(unsigned cp) {
    return cp == 0x200e || cp == 0x200f || (cp >= 0x202a && cp <= 0x202e) ||
           (cp >= 0x2066 && cp <= 0x2069);
}

/* Escape s[0..len) into out (which holds at least 6 * len + 1 bytes: \u202e is the
 * longest escape, for 3 bytes; \xNN for 1 byte). Returns the length written. */
static size_t escape_into(const char *s, size_t len, char *out) {
    const unsigned char *p = (const unsigned char *)s;
    char *o = out;
    for (size_t i = 0; i < len;) {
        unsigned c = p[i], cp;
        size_t n;
        if (c >= 0x20 && c < 0x7f) {
            *o++ = (char)c;
            i++;
        } else if (c == '\n' || c == '\r' || c == '\t') {
            *o++ = '\\';
            *o++ = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
            i++;
        } else if (c < 0x80 || (n = utf8_sequence(p + i, len - i, &cp)) == 0) {
            o += sprintf(o, "\\x%02x", c);
            i++;
        } else if ((cp >= 0x80 && cp <= 0x9f) || is_bidi_control(cp)) {
            o += sprintf(o, "\\u%04x", cp);
            i += n;
        } else {
            memcpy(o, p + i, n);
            o += n;
            i += n;
        }
    }
    *o = '\0';
    return (size_t)(o - out);
}

char *ctl_escape(const char *s, size_t len) {
    if (len > (SIZE_MAX - 1) / 6)
        return NULL;
    char *out = malloc(6 * len + 1);
    if (out != NULL)
        escape_into(s, len, out);
    return out;
}

void ctl_put_escaped(const char *s, size_t len) {
    char *e = ctl_escape(s, len);
    fputs(e ? e : "?", stdout);
    free(e);
}

/* ---- JSON ---------------------------------------------------------------------------- */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int ctl_json_set_raw(json_t *obj, const char *s, size_t len) {
    json_t *text = json_stringn(s, len);
    if (text != NULL)
        return json_object_set_new(obj, "raw", text);
    char *out = len < SIZE_MAX / 2 ? malloc((len + 2) / 3 * 4 + 1) : NULL;
    if (out == NULL)
        return -1;
    const unsigned char *in = (const unsigned char *)s;
    char *o = out;
    for (size_t i = 0; i < len; i += 3) {
        unsigned long v = (unsigned long)in[i] << 16;
        if (i + 1 < len)
            v |= (unsigned long)in[i + 1] << 8;
        if (i + 2 < len)
            v |= in[i + 2];
        *o++ = b64[v >> 18 & 63];
        *o++ = b64[v >> 12 & 63];
        *o++ = i + 1 < len ? b64[v >> 6 & 63] : '=';
        *o++ = i + 2 < len ? b64[v & 63] : '=';
    }
    int rc = json_object_set_new(obj, "raw_base64", json_stringn(out, (size_t)(o - out)));
    free(out);
    return rc;
}

void ctl_print_json(json_t *v) {
    char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (text != NULL) {
        puts(text);
        free(text);
    } else {
        ctl_error(CTL_FAIL, "out of memory");
    }
    json_decref(v);
}

static void add_row(ctl_table *t, va_list ap) {
    char **cells = realloc(t->cells, (size_t)(t->nrows + 1) * (size_t)t->ncols * sizeof *cells);
    if (cells == NULL)
        return;
    t->cells = cells;
    for (int i = 0; i < t->ncols; i++) {
        const char *s = va_arg(ap, const char *);
        cells[t->nrows * t->ncols + i] = s ? ctl_escape(s, strlen(s)) : strdup("-");
    }
    t->nrows++;
}

void ctl_table_init(ctl_table *t, int ncols, ...) {
    memset(t, 0, sizeof *t);
    t->ncols = ncols;
    va_list ap;
    va_start(ap, ncols);
    add_row(t, ap);
    va_end(ap);
}

void ctl_table_row(ctl_table *t, ...) {
    va_list ap;
    va_start(ap, t);
    add_row(t, ap);
    va_end(ap);
}

void ctl_table_print(ctl_table *t) {
    size_t width[32] = {0};
    for (int r = 0; r < t->nrows; r++)
        for (int i = 0; i < t->ncols && i < 32; i++) {
            const char *s = t->cells[r * t->ncols + i];
            size_t len = s ? strlen(s) : 1;
            if (len > width[i])
                width[i] = len;
        }
    for (int r = 0; r < t->nrows; r++) {
        for (int i = 0; i < t->ncols; i++) {
            const char *s = t->cells[r * t->ncols + i];
            if (i + 1 < t->ncols)
                printf("%-*s  ", (int)width[i < 32 ? i : 31], s ? s : "?");
            else
                printf("%s\n", s ? s : "?");
        }
        for (int i = 0; i < t->ncols; i++)
            free(t->cells[r * t->ncols + i]);
    }
    free(t->cells);
    memset(t, 0, sizeof *t);
}

/* The Redis server's clock minus this host's, once ctl_clock_sync read it. */
static double clock_offset;

void ctl_clock_sync(redisContext *rc) {
    double t0 = green_wallclock(), now;
    redisReply *r = redisCommand(rc, "TIME");
    if (r != NULL && broker_reply_time(r, &now) == 0)
        clock_offset = now - (t0 + green_wallclock()) / 2;
    if (r != NULL)
        freeReplyObject(r);
}

const char *ctl_age(double t, char *buf, size_t len) {
    if (!(t > 0)) {
        snprintf(buf, len, "-");
        return buf;
    }
    double d = green_wallclock() + clock_offset - t;
    long s = d > 0 ? (long)d : 0;
    if (s < 60)
        snprintf(buf, len, "%lds", s);
    else if (s < 3600)
        snprintf(buf, len, "%ldm%02lds", s / 60, s % 60);
    else if (s < 86400)
        snprintf(buf, len, "%ldh%02ldm", s / 3600, s % 3600 / 60);
    else
        snprintf(buf, len, "%ldd%02ldh", s / 86400, s % 86400 / 3600);
    return buf;
}
