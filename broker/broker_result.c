/*
 * broker_result.c - encoders for the result document and the dead-letter entry.
 *
 * Both are built as jansson objects and dumped compactly. jansson refuses strings that are
 * not valid UTF-8, and a dead letter exists precisely because some input was bad, so every
 * string that may carry outside bytes goes through broker_json_string_lossy, which
 * replaces each invalid byte with U+FFFD instead of failing.
 *
 * Pure computation on the caller's stack; never yields; no global state.
 */
#include "broker_result.h"

#include <math.h>
#include <stdbool.h>
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
    ok = ok && put(o, "retries", json_integer(r->retries)) && put_text(o, "worker", r->worker);
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

char *broker_result_encode(const broker_result *r) {
    json_t *o = broker_result_json(r);
    char *text = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return text;
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
