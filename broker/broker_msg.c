/*
 * broker_msg.c - the task-message parser: limits first, then jansson, then field checks.
 *
 * The order matters for hostile input. A message is checked for size before anything
 * reads it, then scanned once, linearly and without recursion, for its bracket depth
 * outside strings; only a message that passes both reaches json_loadb, whose recursive
 * descent is then bounded by limits.max_depth instead of by the stack.
 *
 * When a message is rejected, its id is still wanted (a FAILURE result is written under
 * it). If the JSON parsed, the id comes from the object. Otherwise salvage_id walks the
 * top level of the text with a tiny non-recursive lexer over at most SALVAGE_SCAN bytes,
 * remembering the last "id" member whose value is a string (last wins, as in the parser;
 * an escaped spelling of the key, "\u0069d", counts as "id" there too).
 *
 * Pure computation on the caller's stack; never yields; no global state.
 */
#include "broker_msg.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

/* How far into a rejected message the id salvage looks. */
#define SALVAGE_SCAN (64 * 1024)

void broker_limits_default(broker_limits *lim) {
    lim->max_message_bytes = BROKER_MAX_MESSAGE_BYTES_DEFAULT;
    lim->max_depth = BROKER_MAX_DEPTH_DEFAULT;
    lim->max_args = BROKER_MAX_ARGS_DEFAULT;
    lim->max_kwargs = BROKER_MAX_KWARGS_DEFAULT;
    lim->max_id_bytes = BROKER_ID_MAX;
    lim->max_task_bytes = BROKER_MAX_TASK_BYTES_DEFAULT;
}

/* The caller's limits with zero fields replaced by defaults and the id cap enforced
 * (between the length of a generated id and BROKER_ID_MAX). */
static broker_limits effective_limits(const broker_limits *given) {
    broker_limits lim;
    broker_limits_default(&lim);
    if (given == NULL)
        return lim;
    if (given->max_message_bytes)
        lim.max_message_bytes = given->max_message_bytes;
    if (given->max_depth > 0)
        lim.max_depth = given->max_depth;
    if (given->max_args)
        lim.max_args = given->max_args;
    if (given->max_kwargs)
        lim.max_kwargs = given->max_kwargs;
    if (given->max_id_bytes && given->max_id_bytes < BROKER_ID_MAX)
        lim.max_id_bytes = given->max_id_bytes;
    /* A generated id (36 bytes) is stored into root and becomes the message's own id when
     * it is re-encoded for a retry; a smaller cap would reject that retry. */
    if (lim.max_id_bytes < BROKER_GENERATED_ID_BYTES)
        lim.max_id_bytes = BROKER_GENERATED_ID_BYTES;
    if (given->max_task_bytes)
        lim.max_task_bytes = given->max_task_bytes;
    return lim;
}

static void set_reason(broker_msg_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void set_reason(broker_msg_error *err, const char *fmt, ...) {
    if (err == NULL)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->reason, sizeof err->reason, fmt, ap);
    va_end(ap);
}

/* ---- Depth scan ---------------------------------------------------------------------- */

/* True when raw nests arrays/objects deeper than max_depth. Brackets inside strings do
 * not count; an escape skips the next byte. Unbalanced text is left for the parser to
 * report. */
static bool too_deep(const char *raw, size_t len, int max_depth) {
    int depth = 0;
    bool in_string = false;
    for (size_t i = 0; i < len; i++) {
        char c = raw[i];
        if (in_string) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_string = false;
        } else if (c == '"') {
            in_string = true;
        } else if (c == '[' || c == '{') {
            if (++depth > max_depth)
                return true;
        } else if (c == ']' || c == '}') {
            depth--;
        }
    }
    return false;
}

/* ---- Id salvage from text that will not parse ----------------------------------------- */

static const char *skip_ws(const char *p, const char *end) {
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* p points at an opening quote; returns the byte after the closing quote, or NULL. */
static const char *skip_string(const char *p, const char *end) {
    for (p++; p < end; p++) {
        if (*p == '\\')
            p++;
        else if (*p == '"')
            return p + 1;
    }
    return NULL;
}

/* Skips one JSON value starting at p (containers by counting brackets, never by
 * recursion); returns the byte after it, or NULL when it runs past end. */
static const char *skip_value(const char *p, const char *end) {
    if (p >= end)
        return NULL;
    if (*p == '"')
        return skip_string(p, end);
    if (*p == '{' || *p == '[') {
        size_t depth = 0;
        while (p < end) {
            if (*p == '"') {
                p = skip_string(p, end);
                if (p == NULL)
                    return NULL;
                continue;
            }
            if (*p == '{' || *p == '[') {
                depth++;
            } else if (*p == '}' || *p == ']') {
                if (--depth == 0)
                    return p + 1;
            }
            p++;
        }
        return NULL;
    }
    while (p < end && *p != ',' && *p != '}' && *p != ']' && *p != ' ' && *p != '\t' &&
           *p != '\n' && *p != '\r')
        p++;
    return p;
}

/* Stores the id in err if s is an acceptable id, otherwise forgets any earlier one (the
 * last "id" member is the message's id, and this one is bad). */
static void note_id(broker_msg_error *err, const char *s, size_t n, const broker_limits *lim) {
    if (s != NULL && n > 0 && n <= lim->max_id_bytes && memchr(s, '\0', n) == NULL) {
        memcpy(err->id, s, n);
        err->id[n] = '\0';
        err->has_id = true;
    } else {
        err->has_id = false;
        err->id[0] = '\0';
    }
}

/* Whether a key token (quotes included) is "id" once its escapes are undone: jansson reads
 * "\u0069d" as the key id too, and the last such member is the message's id. The longest
 * spelling is "\u0069\u0064", 14 bytes, so longer tokens are not decoded at all. */
static bool key_is_id(const char *tok, size_t n) {
    if (n == 4)
        return memcmp(tok, "\"id\"", 4) == 0;
    if (n > 14 || memchr(tok, '\\', n) == NULL)
        return false;
    json_t *s = json_loadb(tok, n, JSON_DECODE_ANY, NULL);
    bool is = json_is_string(s) && json_string_length(s) == 2 &&
              memcmp(json_string_value(s), "id", 2) == 0;
    json_decref(s);
    return is;
}

static void salvage_id(const char *raw, size_t len, const broker_limits *lim,
                       broker_msg_error *err) {
    const char *end = raw + (len < SALVAGE_SCAN ? len : SALVAGE_SCAN);
    const char *p = skip_ws(raw, end);
    if (p >= end || *p != '{')
        return;
    p++;
    for (;;) {
        p = skip_ws(p, end);
        if (p >= end || *p != '"')
            return;
        const char *key = p;
        p = skip_string(p, end);
        if (p == NULL)
            return;
        bool is_id = key_is_id(key, (size_t)(p - key));
        p = skip_ws(p, end);
        if (p >= end || *p != ':')
            return;
        p = skip_ws(p + 1, end);
        const char *val = p;
        p = skip_value(p, end);
        if (p == NULL)
            return;
        if (is_id) {
            /* Let jansson undo the escapes of just this one string token. */
            json_t *s = NULL;
            if (*val == '"')
                s = json_loadb(val, (size_t)(p - val), JSON_DECODE_ANY, NULL);
            if (json_is_string(s))
                note_id(err, json_string_value(s), json_string_length(s), lim);
            else
                note_id(err, NULL, 0, lim);
            json_decref(s);
        }
        p = skip_ws(p, end);
        if (p >= end || *p != ',')
            return;
        p++;
    }
}

/* ---- Id generation ------------------------------------------------------------------- */

void broker_msg_new_id(char out[37]) {
    unsigned char b[16];
    if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b) {
        /* No entropy source (very old kernel, seccomp): mix time, pid and a counter with
         * splitmix64. Unique enough for an id, not meant to be unguessable. */
        static _Atomic uint64_t counter;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t x = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
        x ^= (uint64_t)getpid() << 32 ^ ++counter;
        for (int i = 0; i < 16; i++) {
            uint64_t z = (x += 0x9e3779b97f4a7c15u);
            z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
            z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
            b[i] = (unsigned char)(z ^ (z >> 31));
        }
    }
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    static const char hex[] = "0123456789abcdef";
    char *o = out;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *o++ = '-';
        *o++ = hex[b[i] >> 4];
        *o++ = hex[b[i] & 15];
    }
    *o = '\0';
}

/* ---- Field checks -------------------------------------------------------------------- */

/* The member name of root, or NULL when absent or JSON null (null counts as absent). */
static json_t *field(json_t *root, const char *name) {
    json_t *v = json_object_get(root, name);
    return json_is_null(v) ? NULL : v;
}

static bool get_count(json_t *root, const char *name, int dflt, int *out, broker_msg_error *err) {
    json_t *v = field(root, name);
    if (v == NULL) {
        *out = dflt;
        return true;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > INT_MAX) {
        set_reason(err, "field \"%s\" must be a non-negative integer", name);
        return false;
    }
    *out = (int)json_integer_value(v);
    return true;
}

static bool get_seconds(json_t *root, const char *name, double *out, broker_msg_error *err) {
    json_t *v = field(root, name);
    *out = 0;
    if (v == NULL)
        return true;
    if (!json_is_number(v) || !(json_number_value(v) >= 0) || !isfinite(json_number_value(v))) {
        set_reason(err, "field \"%s\" must be a non-negative number", name);
        return false;
    }
    *out = json_number_value(v);
    return true;
}

/* A duration (seconds, >= 0) that may not exceed BROKER_TIME_MAX_AHEAD; dflt when absent. */
static bool get_duration(json_t *root, const char *name, double dflt, double *out,
                         broker_msg_error *err) {
    if (!get_seconds(root, name, out, err))
        return false;
    if (field(root, name) == NULL)
        *out = dflt;
    if (*out > BROKER_TIME_MAX_AHEAD) {
        set_reason(err, "field \"%s\" is %g seconds, more than 10 years", name, *out);
        return false;
    }
    return true;
}

/* A point in time: Unix seconds >= 0 or an RFC 3339 string; 0 when absent. The caller
 * checks how far ahead it is. *relative (when not NULL) says a number below
 * BROKER_EXPIRES_RELATIVE_BELOW is seconds from now: then *out is now + it. */
static bool get_time(json_t *root, const char *name, double now, bool relative, double *out,
                     broker_msg_error *err) {
    json_t *v = field(root, name);
    *out = 0;
    if (v == NULL)
        return true;
    if (json_is_string(v)) {
        if (!broker_time_parse_rfc3339(json_string_value(v), json_string_length(v), out)) {
            set_reason(err,
                       "field \"%s\" is not an RFC 3339 time with an offset, like "
                       "\"2026-11-26T10:00:00Z\" or \"2026-11-26T11:00:00+01:00\"",
                       name);
            return false;
        }
        if (*out < 0) { /* as a number may not be negative */
            set_reason(err, "field \"%s\" is before 1970", name);
            return false;
        }
    } else if (json_is_number(v) && json_number_value(v) >= 0 && isfinite(json_number_value(v))) {
        *out = json_number_value(v);
        if (relative && *out > 0 && *out < BROKER_EXPIRES_RELATIVE_BELOW) {
            if (*out > BROKER_TIME_MAX_AHEAD) {
                set_reason(err,
                           "field \"%s\" is %g: neither seconds from now (at most 10 years) "
                           "nor a Unix time (from %.0f on)",
                           name, *out, BROKER_EXPIRES_RELATIVE_BELOW);
                return false;
            }
            *out += now;
        }
    } else {
        set_reason(err,
                   "field \"%s\" must be a non-negative number (%s) or an RFC 3339 time "
                   "with an offset",
                   name, relative ? "seconds from now, or Unix seconds" : "Unix seconds");
        return false;
    }
    if (*out > now + BROKER_TIME_MAX_AHEAD) {
        set_reason(err, "field \"%s\" is more than 10 years in the future", name);
        return false;
    }
    return true;
}

/* A time limit: get_seconds, and at most BROKER_TIME_LIMIT_MAX. */
static bool get_limit(json_t *root, const char *name, double *out, broker_msg_error *err) {
    if (!get_seconds(root, name, out, err))
        return false;
    if (*out > BROKER_TIME_LIMIT_MAX) {
        set_reason(err, "field \"%s\" must be at most %g seconds, got %g", name,
                   BROKER_TIME_LIMIT_MAX, *out);
        return false;
    }
    return true;
}

/* unique_for and unique_key (broker_unique.h): a positive duration with a sane cap, and
 * a non-empty string that makes sense only with it. */
static bool get_unique(json_t *root, broker_msg *msg, broker_msg_error *err) {
    json_t *v = field(root, "unique_for");
    json_t *key = field(root, "unique_key");
    msg->unique_for = 0;
    if (v != NULL) {
        double x = json_is_number(v) ? json_number_value(v) : NAN;
        if (!(x > 0) || !isfinite(x)) {
            set_reason(err, "field \"unique_for\" must be a positive number of seconds (leave it "
                            "out for a task that need not be unique)");
            return false;
        }
        if (x > BROKER_UNIQUE_FOR_MAX) {
            set_reason(err, "field \"unique_for\" must be at most %g seconds (30 days), got %g",
                       BROKER_UNIQUE_FOR_MAX, x);
            return false;
        }
        msg->unique_for = x;
    }
    if (key != NULL) {
        if (!json_is_string(key) || json_string_length(key) == 0 ||
            json_string_length(key) > BROKER_UNIQUE_KEY_MAX) {
            set_reason(err, "field \"unique_key\" must be a non-empty string of at most %d bytes",
                       BROKER_UNIQUE_KEY_MAX);
            return false;
        }
        if (v == NULL) {
            set_reason(err, "field \"unique_key\" needs \"unique_for\" (how long to be unique)");
            return false;
        }
        msg->unique_key = json_string_value(key);
        msg->unique_key_len = json_string_length(key);
    }
    return true;
}

/* Checks every field of the parsed object and fills msg (strings still unset). Returns
 * false with the reason in err. */
static bool check_fields(json_t *root, const broker_limits *lim, double now, broker_msg *msg,
                         broker_msg_error *err) {
    json_t *task = json_object_get(root, "task");
    if (!json_is_string(task)) {
        set_reason(err, "missing or non-string field \"task\"");
        return false;
    }
    if (json_string_length(task) == 0) {
        set_reason(err, "field \"task\" is empty");
        return false;
    }
    if (json_string_length(task) > lim->max_task_bytes) {
        set_reason(err, "field \"task\" is longer than %zu bytes", lim->max_task_bytes);
        return false;
    }
    json_t *queue = field(root, "queue");
    if (queue != NULL) {
        const char *why = json_is_string(queue) ? broker_check_queue_name(json_string_value(queue))
                                                : "it is not a string";
        if (why == NULL && strlen(json_string_value(queue)) != json_string_length(queue))
            why = "queue name contains a NUL byte";
        if (why != NULL) {
            set_reason(err, "field \"queue\" is not a valid queue name: %s", why);
            return false;
        }
    }

    json_t *args = field(root, "args");
    if (args != NULL && !json_is_array(args)) {
        set_reason(err, "field \"args\" must be an array");
        return false;
    }
    if (args != NULL && json_array_size(args) > lim->max_args) {
        set_reason(err, "field \"args\" has %zu items, more than the limit of %zu",
                   json_array_size(args), lim->max_args);
        return false;
    }
    json_t *kwargs = field(root, "kwargs");
    if (kwargs != NULL && !json_is_object(kwargs)) {
        set_reason(err, "field \"kwargs\" must be an object");
        return false;
    }
    if (kwargs != NULL && json_object_size(kwargs) > lim->max_kwargs) {
        set_reason(err, "field \"kwargs\" has %zu keys, more than the limit of %zu",
                   json_object_size(kwargs), lim->max_kwargs);
        return false;
    }

    if (!get_count(root, "retries", 0, &msg->retries, err) ||
        !get_count(root, "max_retries", BROKER_MAX_RETRIES_DEFAULT, &msg->max_retries, err) ||
        !get_count(root, "redelivered", 0, &msg->redelivered, err))
        return false;
    if (!get_duration(root, "countdown", 0, &msg->countdown, err) ||
        !get_time(root, "eta", now, false, &msg->eta, err) ||
        !get_time(root, "expires", now, true, &msg->expires, err) ||
        !get_duration(root, "retry_backoff", BROKER_RETRY_BACKOFF_DEFAULT, &msg->retry_backoff,
                      err) ||
        !get_duration(root, "retry_backoff_max", BROKER_RETRY_BACKOFF_MAX_DEFAULT,
                      &msg->retry_backoff_max, err) ||
        !get_limit(root, "time_limit", &msg->time_limit, err) ||
        !get_limit(root, "soft_time_limit", &msg->soft_time_limit, err))
        return false;
    if (msg->eta == 0 && msg->countdown > 0)
        msg->eta = now + msg->countdown;

    json_t *jitter = field(root, "retry_jitter");
    if (jitter != NULL && !json_is_boolean(jitter)) {
        set_reason(err, "field \"retry_jitter\" must be a boolean");
        return false;
    }
    msg->retry_jitter = jitter == NULL || json_is_true(jitter);

    json_t *ignore = field(root, "ignore_result");
    if (ignore != NULL && !json_is_boolean(ignore)) {
        set_reason(err, "field \"ignore_result\" must be a boolean");
        return false;
    }
    msg->ignore_result = json_is_true(ignore);
    if (!get_unique(root, msg, err))
        return false;
    msg->args = args;
    msg->kwargs = kwargs;
    return true;
}

/* Reads the object's id into err (for the FAILURE result) when it is acceptable. */
static void id_from_object(json_t *root, const broker_limits *lim, broker_msg_error *err) {
    json_t *id = json_object_get(root, "id");
    if (err != NULL && json_is_string(id))
        note_id(err, json_string_value(id), json_string_length(id), lim);
}

/* ---- Parse --------------------------------------------------------------------------- */

int broker_msg_parse(const char *raw, size_t len, const broker_limits *given, double now,
                     broker_msg *msg, broker_msg_error *err) {
    broker_limits lim = effective_limits(given);
    memset(msg, 0, sizeof *msg);
    if (err != NULL) {
        err->reason[0] = '\0';
        err->has_id = false;
        err->id[0] = '\0';
    }

    if (len > lim.max_message_bytes) {
        set_reason(err, "message of %zu bytes exceeds the %zu-byte limit", len,
                   lim.max_message_bytes);
        goto salvage;
    }
    if (too_deep(raw, len, lim.max_depth)) {
        set_reason(err, "JSON nested deeper than %d levels", lim.max_depth);
        goto salvage;
    }
    json_error_t jerr;
    json_t *root = json_loadb(raw, len, JSON_DECODE_ANY, &jerr);
    if (root == NULL) {
        set_reason(err, "invalid JSON at line %d column %d: %s", jerr.line, jerr.column, jerr.text);
        goto salvage;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        set_reason(err, "message is not a JSON object");
        return -EINVAL;
    }

    json_t *id = field(root, "id");
    if (id != NULL && (!json_is_string(id) || json_string_length(id) == 0 ||
                       json_string_length(id) > lim.max_id_bytes ||
                       strlen(json_string_value(id)) != json_string_length(id))) {
        set_reason(err, "field \"id\" must be a non-empty string of at most %zu bytes",
                   lim.max_id_bytes);
        json_decref(root);
        return -EINVAL;
    }
    if (!check_fields(root, &lim, now, msg, err)) {
        id_from_object(root, &lim, err);
        json_decref(root);
        memset(msg, 0, sizeof *msg);
        return -EINVAL;
    }

    msg->root = root;
    if (id == NULL) {
        char fresh[37];
        broker_msg_new_id(fresh);
        if (json_object_set_new(root, "id", json_string(fresh)) != 0)
            goto nomem;
        msg->id_generated = true;
    }
    /* Defaults live in root too, so that args/kwargs are always borrowed from it. */
    if (msg->args == NULL) {
        msg->args = json_array();
        if (msg->args == NULL || json_object_set_new(root, "args", msg->args) != 0)
            goto nomem;
    }
    if (msg->kwargs == NULL) {
        msg->kwargs = json_object();
        if (msg->kwargs == NULL || json_object_set_new(root, "kwargs", msg->kwargs) != 0)
            goto nomem;
    }
    json_t *queue = field(root, "queue");
    msg->id = strdup(json_string_value(json_object_get(root, "id")));
    msg->task = strdup(json_string_value(json_object_get(root, "task")));
    msg->queue = queue != NULL ? strdup(json_string_value(queue)) : NULL;
    if (msg->id == NULL || msg->task == NULL || (queue != NULL && msg->queue == NULL))
        goto nomem;
    return 0;

nomem:
    broker_msg_free(msg);
    set_reason(err, "out of memory while parsing the message");
    return -ENOMEM;

salvage:
    if (err != NULL)
        salvage_id(raw, len, &lim, err);
    return -EINVAL;
}

char *broker_msg_encode_scheduled(const broker_msg *msg, double eta, int retries, size_t *len) {
    /* A shallow copy: the members are shared with msg->root, and only the copy's own
     * table is changed. */
    json_t *copy = json_copy(msg->root);
    if (copy == NULL)
        return NULL;
    json_object_del(copy, "countdown");
    char *text = NULL;
    if (json_object_set_new(copy, "eta", json_real(eta)) == 0 &&
        json_object_set_new(copy, "retries", json_integer(retries)) == 0 &&
        (msg->expires <= 0 || json_object_set_new(copy, "expires", json_real(msg->expires)) == 0))
        text = json_dumps(copy, JSON_COMPACT);
    json_decref(copy);
    if (text != NULL && len != NULL)
        *len = strlen(text);
    return text;
}

void broker_msg_free(broker_msg *msg) {
    free(msg->id);
    free(msg->task);
    free(msg->queue);
    json_decref(msg->root);
    memset(msg, 0, sizeof *msg);
}
