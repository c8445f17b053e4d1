/*
 * settings_conffile.c - the EnvironmentFile-style parser of settings_conffile.h.
 *
 * A character-at-a-time state machine, shaped like systemd's own (src/basic/env-file.c)
 * so that a file systemd accepts means the same thing here. Key and value grow in heap
 * buffers; vlen_kept marks where trailing unquoted blanks begin, so they can be dropped
 * when the value ends without dropping blanks that were quoted.
 *
 * Runs on the caller's stack; no I/O; never yields.
 */
#include "settings_conffile.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum state {
    PRE_KEY,
    KEY,
    PRE_VALUE,
    VALUE,
    VALUE_ESCAPE,
    SINGLE_QUOTE,
    DOUBLE_QUOTE,
    DOUBLE_QUOTE_ESCAPE,
    COMMENT,
};

struct buf {
    char *p;
    size_t n, cap;
};

static int buf_put(struct buf *b, char c) {
    if (b->n + 1 >= b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        char *p = realloc(b->p, cap);
        if (p == NULL)
            return -1;
        b->p = p;
        b->cap = cap;
    }
    b->p[b->n++] = c;
    b->p[b->n] = '\0';
    return 0;
}

/* Empty b, allocating it if it never was, so b->p is always a string afterwards. */
static int buf_clear(struct buf *b) {
    if (b->p == NULL && buf_put(b, 'x') < 0)
        return -1;
    b->n = 0;
    b->p[0] = '\0';
    return 0;
}

static bool blank(char c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}

static bool key_ok(const char *k) {
    if (k[0] == '\0' || isdigit((unsigned char)k[0]))
        return false;
    for (; *k; k++)
        if (!isalnum((unsigned char)*k) && *k != '_')
            return false;
    return true;
}

/* The text of the line starting at p, for messages: up to 60 bytes, no newline. */
static int line_len(const char *p, const char *end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    size_t len = (size_t)((nl ? nl : end) - p);
    return len > 60 ? 60 : (int)len;
}

int settings_conffile_parse(const char *text, size_t len, const char *name, settings_conffile_fn fn,
                            void *ud, char *errbuf, size_t errlen) {
    struct buf key = {0}, val = {0};
    enum state st = PRE_KEY;
    int line = 1, key_line = 1, rc = -1;
    size_t vlen_kept = 0;
    const char *key_start = text, *end = text + len;

    for (const char *p = text; p <= end; p++) {
        /* The end of the text acts as a final newline, except inside quotes. */
        bool eof = p == end;
        char c = eof ? '\n' : *p;
        if (!eof && c == '\0') {
            snprintf(errbuf, errlen, "NUL byte in the file (from %s line %d)", name, line);
            goto out;
        }
        switch (st) {
        case PRE_KEY:
            if (c == '#' || c == ';') {
                st = COMMENT;
            } else if (!blank(c) && c != '\n') {
                st = KEY;
                key.n = 0;
                key_start = p;
                key_line = line;
                if (buf_put(&key, c) < 0)
                    goto nomem;
            }
            break;
        case KEY:
            if (c == '\n') {
                snprintf(errbuf, errlen, "expected KEY=VALUE, got '%.*s' (from %s line %d)",
                         line_len(key_start, end), key_start, name, key_line);
                goto out;
            } else if (c == '=') {
                while (key.n > 0 && blank(key.p[key.n - 1]))
                    key.p[--key.n] = '\0';
                if (!key_ok(key.p)) {
                    snprintf(errbuf, errlen, "bad key '%s' (from %s line %d)", key.p, name,
                             key_line);
                    goto out;
                }
                st = PRE_VALUE;
                vlen_kept = 0;
                if (buf_clear(&val) < 0)
                    goto nomem;
            } else if (buf_put(&key, c) < 0) {
                goto nomem;
            }
            break;
        case PRE_VALUE:
        case VALUE:
            if (c == '\n') {
                val.p[val.n = vlen_kept] = '\0';
                if (fn(ud, key.p, val.p, key_line, errbuf, errlen) < 0)
                    goto out;
                st = PRE_KEY;
            } else if (st == PRE_VALUE && blank(c)) {
                break;
            } else if (c == '\\') {
                st = VALUE_ESCAPE;
            } else if (c == '\'' && st == PRE_VALUE) {
                st = SINGLE_QUOTE;
            } else if (c == '"' && st == PRE_VALUE) {
                st = DOUBLE_QUOTE;
            } else {
                st = VALUE;
                if (buf_put(&val, c) < 0)
                    goto nomem;
                if (!blank(c))
                    vlen_kept = val.n;
            }
            break;
        case VALUE_ESCAPE:
            st = VALUE;
            if (c == '\n' && !eof)
                break; /* a continuation line */
            if (eof)
                break;
            if (buf_put(&val, c) < 0)
                goto nomem;
            vlen_kept = val.n;
            break;
        case SINGLE_QUOTE:
        case DOUBLE_QUOTE:
            if (eof) {
                snprintf(errbuf, errlen, "unterminated quote in the value of %s (from %s line %d)",
                         key.p, name, key_line);
                goto out;
            }
            if ((st == SINGLE_QUOTE && c == '\'') || (st == DOUBLE_QUOTE && c == '"')) {
                st = PRE_VALUE; /* a quote may follow directly: "a"'b' */
                break;
            }
            if (st == DOUBLE_QUOTE && c == '\\') {
                st = DOUBLE_QUOTE_ESCAPE;
                break;
            }
            if (buf_put(&val, c) < 0)
                goto nomem;
            vlen_kept = val.n;
            break;
        case DOUBLE_QUOTE_ESCAPE:
            st = DOUBLE_QUOTE;
            if (eof) {
                snprintf(errbuf, errlen, "unterminated quote in the value of %s (from %s line %d)",
                         key.p, name, key_line);
                goto out;
            }
            if (c == '\n')
                break;
            if (strchr("\"\\`$", c) == NULL && buf_put(&val, '\\') < 0)
                goto nomem;
            if (buf_put(&val, c) < 0)
                goto nomem;
            vlen_kept = val.n;
            break;
        case COMMENT:
            if (c == '\n')
                st = PRE_KEY;
            break;
        }
        if (c == '\n' && !eof)
            line++;
    }
    rc = 0;
    goto out;
nomem:
    snprintf(errbuf, errlen, "out of memory reading %s", name);
out:
    free(key.p);
    free(val.p);
    return rc;
}
