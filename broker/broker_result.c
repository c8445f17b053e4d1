/*
 * broker_result.c - encoders for the result document and the dead-letter entry, and the
 * reader of a dead-letter entry.
 *
 * Both are built as jansson objects and dumped compactly. jansson refuses strings that are
 * not valid UTF-8, and a dead letter exists precisely because some input was bad, so every
 * string that may carry outside bytes goes through broker_json_string_lossy, which
 * replaces each invalid byte with U+FFFD instead of failing.
 *
 * Pure computation on the caller's stack; never yields; no global state.
 */
#include "broker_result.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *broker_status_name(broker_status status) {
    switch (status) {
    case BROKER_STARTED:
        return "STARTED";
    case BROKER_SUCCESS:
        return "SUCCESS";
    case BROKER_FAILURE:
        return "FAILURE";
    case BROKER_RETRY:
        return "RETRY";
    case BROKER_REVOKED:
        return "REVOKED";
    }
    return "UNKNOWN";
}

/* Length of the valid UTF-8 sequence at p (n bytes available), or 0 when it is invalid:
 * a stray continuation byte, an overlong form, a surrogate, beyond U+10FFFF, or cut off. */
static size_t utf8_seq_len(const unsigned char *p, size_t n) {
    unsigned c = p[0];
    if (c < 0x80)
        return 1;
    size_t len;
    unsigned cp;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (p[i] & 0x3f);
    }
    if (len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff)))
        return 0;
    if (len == 4 && (cp < 0x10000 || cp > 0x10ffff))
        return 0;
    return len;
}

json_t *broker_json_string_lossy(const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, k;
    while (i < n && (k = utf8_seq_len(p + i, n - i)) != 0)
        i += k;
    if (i == n)
        return json_stringn(s, n);

    /* Slow path: copy, replacing each invalid byte by the 3-byte U+FFFD. */
    char *buf = malloc(n * 3 + 1);
    if (buf == NULL)
        return NULL;
    memcpy(buf, s, i);
    size_t o = i;
    while (i < n) {
        k = utf8_seq_len(p + i, n - i);
        if (k == 0) {
            memcpy(buf + o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
        } else {
            memcpy(buf + o, s + i, k);
            o += k;
            i += k;
        }
    }
    json_t *str = json_stringn(buf, o);
    free(buf);
    return str;
}

/* Adds key: value (a new reference, stolen) to obj; false when value is NULL or on
 * failure. */
static bool put(json_t *obj, const char *key, json_t *value) {
    return value != NULL && json_object_set_new(obj, key, value) == 0;
}

static bool put_text(json_t *obj, const char *key, const char *text) {
    return text == NULL || put(obj, key, broker_json_string_lossy(text, strlen(text)));
}

/* Timestamps and durations to the microsecond: enough, and it keeps the text short. */
static json_t *seconds(double t) {
    return json_real(round(t * 1e6) / 1e6);
}

json_t *broker_result_json(const broker_result *r) {
    if (r->id == NULL)
        return NULL;
    json_t *o = json_object();
    if (o == NULL)
        return NULL;
    bool ok = put_text(o, "id", r->id) && put_text(o, "task", r->task) &&
              put(o, "status", json_string(broker_status_name(r->status)));
    if (ok && r->status == BROKER_SUCCESS)
        ok = put(o, "result", r->result != NULL ? json_incref(r->result) : json_null());
    if (ok && (r->error_type != NULL || r->error_message != NULL)) {
        json_t *e = json_object();
        ok = put(o, "error", e) && put_text(e, "type", r->error_type) &&
             put_text(e, "message", r->error_message);
    }
    ok = ok && put(o, "retries", json_integer(r->retries));
    if (ok && r->eta > 0)
        ok = put(o, "eta", seconds(r->eta));
    ok = ok && put_text(o, "worker", r->worker);
    if (ok && r->started_at > 0)
        ok = put(o, "started_at", seconds(r->started_at));
    if (ok && r->finished_at > 0)
        ok = put(o, "finished_at", seconds(r->finished_at));
    if (ok && r->started_at > 0 && r->finished_at > 0) {
        /* A wall-clock step can make the difference negative; a runtime never is. */
        double runtime = r->finished_at - r->started_at;
        ok = put(o, "runtime", seconds(runtime > 0 ? runtime : 0));
    }
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* ---- the result document as text, directly -------------------------------------------
 *
 * broker_result_encode is on every task's path, and building a jansson object only to dump
 * it cost more than the rest of an echo task together (a profile of 100k echo tasks: 58 %
 * of the worker's CPU in encoding, a third of that in printf's "%.17g" for the three
 * timestamps). So the document is written straight into one growing buffer, with the same
 * fields in the same order and the same escaping as json_dumps(broker_result_json(r),
 * JSON_COMPACT), except for reals (shortest round-trip text, tb_real) and \u escapes
 * (lower-case hex); the task's own value too (tb_value). Timestamps are written
 * from whole microseconds with integer arithmetic: the same double as seconds() gives,
 * always with a decimal point so that a reader sees a real, not an integer.
 *
 * The buffer may have a limit (broker_result_encode_max): past it, what was stored is
 * freed and the rest is only counted, so the caller learns the whole size without the
 * worker ever holding the text of a result Redis would refuse anyway. */

typedef struct text_buf {
    char *p;
    size_t len, cap;
    size_t max;  /* the most bytes stored (the NUL aside); SIZE_MAX: no limit */
    bool over;   /* len went past max: nothing is stored any more, len only counts */
    bool failed; /* out of memory (nomem), or a value that has no JSON text */
    bool nomem;
} text_buf;

static void tb_put(text_buf *b, const char *s, size_t n) {
    if (b->failed)
        return;
    if (b->over || n > b->max - b->len) {
        /* Past the limit: keep counting, so that the caller can say how large the
         * document would have been, but let go of what was stored. */
        if (!b->over) {
            free(b->p);
            b->p = NULL;
            b->cap = 0;
            b->over = true;
        }
        b->len = n > SIZE_MAX - b->len ? SIZE_MAX : b->len + n;
        return;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        if (b->max != SIZE_MAX && cap > b->max + 1)
            cap = b->max + 1; /* never twice the limit for the last doubling */
        char *p = realloc(b->p, cap);
        if (p == NULL) {
            b->failed = b->nomem = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void tb_lit(text_buf *b, const char *s) {
    tb_put(b, s, strlen(s));
}

/* A JSON string as jansson writes it (no ASCII-only escaping, '/' kept), with each byte
 * that is not valid UTF-8 replaced by U+FFFD, as broker_json_string_lossy does. */
static void tb_string(text_buf *b, const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    tb_put(b, "\"", 1);
    size_t run = 0; /* start of the bytes copied as they are */
    for (size_t i = 0; i < n;) {
        unsigned char c = p[i];
        const char *esc = NULL;
        char u[8];
        size_t k = 1;
        if (c == '"') {
            esc = "\\\"";
        } else if (c == '\\') {
            esc = "\\\\";
        } else if (c < 0x20) {
            switch (c) {
            case '\b':
                esc = "\\b";
                break;
            case '\f':
                esc = "\\f";
                break;
            case '\n':
                esc = "\\n";
                break;
            case '\r':
                esc = "\\r";
                break;
            case '\t':
                esc = "\\t";
                break;
            default: /* by hand: snprintf per byte was seconds for 100 MiB of them */
                memcpy(u, "\\u00", 4);
                u[4] = "0123456789abcdef"[c >> 4];
                u[5] = "0123456789abcdef"[c & 15];
                u[6] = '\0';
                esc = u;
            }
        } else if (c >= 0x80 && (k = utf8_seq_len(p + i, n - i)) == 0) {
            esc = "\xef\xbf\xbd";
            k = 1;
        }
        if (esc != NULL) {
            tb_put(b, s + run, i - run);
            tb_lit(b, esc);
            run = i + k;
        }
        i += k;
    }
    tb_put(b, s + run, n - run);
    tb_put(b, "\"", 1);
}

static void tb_text(text_buf *b, const char *s) {
    tb_string(b, s, strlen(s));
}

/* Decimal digits of x at the end of d[24]: returns where they start (snprintf's "%lld"
 * showed up in the profile). */
static char *digits_of(unsigned long long x, char d[24]) {
    char *o = d + 24;
    do {
        *--o = (char)('0' + x % 10);
        x /= 10;
    } while (x);
    return o;
}

static void tb_long(text_buf *b, long long x) {
    char d[24];
    if (x < 0)
        tb_put(b, "-", 1);
    char *o = digits_of(x < 0 ? 0ULL - (unsigned long long)x : (unsigned long long)x, d);
    tb_put(b, o, (size_t)(d + 24 - o));
}

/* A real as the shortest text that reads back as the same double (15, 16 or 17
 * significant digits), always with a point or an exponent so that it reads as a real:
 * 0.1 is "0.1", where jansson's "%.17g" writes "0.10000000000000001". */
static void tb_real(text_buf *b, double x) {
    char d[40];
    for (int precision = 15; precision <= 17; precision++) {
        snprintf(d, sizeof d, "%.*g", precision, x);
        if (precision == 17 || strtod(d, NULL) == x)
            break;
    }
    tb_lit(b, d);
    if (strpbrk(d, ".eEn") == NULL) /* n: no "inf.0"; jansson holds no such value anyway */
        tb_lit(b, ".0");
}

/* seconds(t) as text: whole microseconds, then "s.ffffff" with trailing zeros dropped
 * (at least one digit after the point). Not finite in microseconds: refused, as json_real
 * refuses it. */
static void tb_seconds(text_buf *b, double t) {
    double us = round(t * 1e6);
    if (!isfinite(us)) { /* t itself, or t beyond 1.8e302 s: "inf.0" is no JSON */
        b->failed = true;
        return;
    }
    if (fabs(us) >= 9e18) { /* beyond a long long: no timestamp is, but stay correct */
        tb_real(b, us / 1e6);
        return;
    }
    long long v = (long long)us;
    if (v < 0) {
        tb_put(b, "-", 1);
        v = -v;
    }
    char d[24];
    char *o = digits_of((unsigned long long)(v / 1000000), d);
    tb_put(b, o, (size_t)(d + 24 - o));
    long long frac = v % 1000000;
    int n = 6;
    if (frac == 0) {
        n = 1;
    } else {
        while (frac % 10 == 0) {
            frac /= 10;
            n--;
        }
    }
    char f[8] = ".";
    for (int i = n; i >= 1; i--, frac /= 10)
        f[i] = (char)('0' + frac % 10);
    tb_put(b, f, (size_t)n + 1);
}

#define VALUE_MAX_DEPTH 1024 /* deeper (or a cycle a task made by mistake): refused */

/* A task's value, compact, keys in jansson's order (insertion order): what
 * json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) means, without its callback per token and
 * the hash table per container it keeps against cycles. */
static void tb_value(text_buf *b, const json_t *v, int depth) {
    if (depth > VALUE_MAX_DEPTH) {
        b->failed = true;
        return;
    }
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        tb_put(b, "{", 1);
        bool first = true;
        for (void *it = json_object_iter((json_t *)v); it && !b->failed;
             it = json_object_iter_next((json_t *)v, it)) {
            if (!first)
                tb_put(b, ",", 1);
            first = false;
            tb_string(b, json_object_iter_key(it), json_object_iter_key_len(it));
            tb_put(b, ":", 1);
            tb_value(b, json_object_iter_value(it), depth + 1);
        }
        tb_put(b, "}", 1);
        break;
    }
    case JSON_ARRAY:
        tb_put(b, "[", 1);
        for (size_t i = 0; i < json_array_size(v) && !b->failed; i++) {
            if (i > 0)
                tb_put(b, ",", 1);
            tb_value(b, json_array_get(v, i), depth + 1);
        }
        tb_put(b, "]", 1);
        break;
    case JSON_STRING:
        tb_string(b, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER:
        tb_long(b, json_integer_value(v));
        break;
    case JSON_REAL:
        tb_real(b, json_real_value(v));
        break;
    case JSON_TRUE:
        tb_lit(b, "true");
        break;
    case JSON_FALSE:
        tb_lit(b, "false");
        break;
    case JSON_NULL:
        tb_lit(b, "null");
        break;
    }
}

/* The result document into b (see broker_result_encode_max). */
static void tb_result(text_buf *b, const broker_result *r) {
    tb_lit(b, "{\"id\":");
    tb_text(b, r->id);
    if (r->task != NULL) {
        tb_lit(b, ",\"task\":");
        tb_text(b, r->task);
    }
    tb_lit(b, ",\"status\":\"");
    tb_lit(b, broker_status_name(r->status));
    tb_lit(b, "\"");
    if (r->status == BROKER_SUCCESS) {
        tb_lit(b, ",\"result\":");
        if (r->result == NULL)
            tb_lit(b, "null");
        else
            tb_value(b, r->result, 1);
    }
    if (r->error_type != NULL || r->error_message != NULL) {
        tb_lit(b, ",\"error\":{");
        if (r->error_type != NULL) {
            tb_lit(b, "\"type\":");
            tb_text(b, r->error_type);
        }
        if (r->error_message != NULL) {
            tb_lit(b, r->error_type != NULL ? ",\"message\":" : "\"message\":");
            tb_text(b, r->error_message);
        }
        tb_lit(b, "}");
    }
    tb_lit(b, ",\"retries\":");
    tb_long(b, r->retries);
    if (r->eta > 0) {
        tb_lit(b, ",\"eta\":");
        tb_seconds(b, r->eta);
    }
    if (r->worker != NULL) {
        tb_lit(b, ",\"worker\":");
        tb_text(b, r->worker);
    }
    if (r->started_at > 0) {
        tb_lit(b, ",\"started_at\":");
        tb_seconds(b, r->started_at);
    }
    if (r->finished_at > 0) {
        tb_lit(b, ",\"finished_at\":");
        tb_seconds(b, r->finished_at);
    }
    if (r->started_at > 0 && r->finished_at > 0) {
        /* A wall-clock step can make the difference negative; a runtime never is. */
        double runtime = r->finished_at - r->started_at;
        tb_lit(b, ",\"runtime\":");
        tb_seconds(b, runtime > 0 ? runtime : 0);
    }
    tb_lit(b, "}");
}

int broker_result_encode_max(const broker_result *r, size_t max, char **out, size_t *len) {
    *out = NULL;
    *len = 0;
    if (r->id == NULL)
        return -EINVAL;
    text_buf b = {.max = max ? max : SIZE_MAX};
    tb_result(&b, r);
    if (b.failed) {
        free(b.p);
        return b.nomem ? -ENOMEM : -EINVAL;
    }
    *len = b.len;
    if (b.over)
        return -E2BIG;
    *out = b.p;
    return 0;
}

char *broker_result_encode(const broker_result *r) {
    char *text;
    size_t len;
    return broker_result_encode_max(r, 0, &text, &len) == 0 ? text : NULL;
}

/* The largest cut <= max that does not split a UTF-8 character of raw (if raw is UTF-8
 * at all: backing off at most 3 continuation bytes). */
static size_t cut_point(const char *raw, size_t len, size_t max) {
    if (len <= max)
        return len;
    size_t cut = max;
    for (int i = 0; i < 3 && cut > 0 && ((unsigned char)raw[cut] & 0xc0) == 0x80; i++)
        cut--;
    return cut;
}

json_t *broker_dead_json(const broker_dead *d) {
    if (d->reason == NULL)
        return NULL;
    size_t max = d->max_message_bytes ? d->max_message_bytes : BROKER_DEAD_MESSAGE_MAX_DEFAULT;
    size_t len = d->raw != NULL ? d->raw_len : 0;
    size_t cut = cut_point(d->raw, len, max);
    json_t *o = json_object();
    if (o == NULL)
        return NULL;
    bool ok = put(o, "message", broker_json_string_lossy(d->raw != NULL ? d->raw : "", cut)) &&
              put(o, "truncated", json_boolean(cut < len)) &&
              put(o, "message_bytes", json_integer((json_int_t)len)) &&
              put_text(o, "reason", d->reason) && put_text(o, "worker", d->worker) &&
              put(o, "time", seconds(d->time)) && put_text(o, "id", d->id) &&
              put_text(o, "queue", d->queue);
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    return o;
}

char *broker_dead_encode(const broker_dead *d) {
    json_t *o = broker_dead_json(d);
    char *text = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return text;
}

/* ---- Reading a dead letter back ------------------------------------------------------ */

void broker_dead_entry_clear(broker_dead_entry *e) {
    free(e->message);
    e->message = NULL;
    e->message_len = 0;
}

/* Copy message m[0..n) into e, with ,"redelivered":0 before its final '}' when reset. */
static const char *copy_message(broker_dead_entry *e, const char *m, size_t n, bool reset) {
    static const char zero[] = ",\"redelivered\":0";
    const char *close = reset ? memrchr(m, '}', n) : NULL;
    size_t extra = close ? sizeof zero - 1 : 0;
    if ((e->message = malloc(n + extra + 1)) == NULL)
        return "out of memory";
    size_t head = close ? (size_t)(close - m) : n;
    memcpy(e->message, m, head);
    memcpy(e->message + head, zero, extra);
    memcpy(e->message + head + extra, m + head, n - head);
    e->message_len = n + extra;
    e->message[e->message_len] = '\0';
    return NULL;
}

const char *broker_dead_parse(const char *raw, size_t len, broker_dead_entry *e) {
    *e = (broker_dead_entry){0};
    json_t *doc = json_loadb(raw, len, 0, NULL), *msg = NULL;
    json_t *message = json_object_get(doc, "message");
    const char *queue = json_string_value(json_object_get(doc, "queue"));
    const char *id = json_string_value(json_object_get(doc, "id"));
    const char *why = NULL;
    snprintf(e->id, sizeof e->id, "%s", id ? id : "");
    snprintf(e->queue, sizeof e->queue, "%s", queue ? queue : "default");
    if (!json_is_string(message))
        why = "the entry has no \"message\"";
    else if (json_is_true(json_object_get(doc, "truncated")))
        why = "the message was cut when it was dead-lettered";
    else if (broker_check_queue_ref(queue ? queue : "default") != NULL)
        why = "the entry names an invalid queue";
    if (why == NULL) {
        const char *m = json_string_value(message);
        size_t n = json_string_length(message);
        msg = json_loadb(m, n, 0, NULL);
        json_int_t redelivered = json_integer_value(json_object_get(msg, "redelivered"));
        why = copy_message(e, m, n, json_is_object(msg) && redelivered > 0);
    }
    json_decref(msg);
    json_decref(doc);
    return why;
}
