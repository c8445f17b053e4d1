/*
 * broker_celery.c - Celery protocol v2 envelopes in, Celery result documents and
 * protocol v2 envelopes out (broker_celery.h).
 *
 * The body is base64 (kombu's Redis transport always says body_encoding "base64") of the
 * JSON [args, kwargs, embed]. It is decoded only when the content type is
 * application/json: a pickle body is never looked at. Times (eta, expires, date_done) are
 * ISO 8601; Celery writes them with an offset ("+00:00"), a naive one is read as UTC
 * (Celery's enable_utc default).
 *
 * Pure computation: no I/O, never yields; thread-safe (ids from broker_msg_new_id).
 */
#include "broker_celery.h"

#include "broker_keys.h"
#include "broker_time.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- base64 -------------------------------------------------------------------------- */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int b64_value(unsigned char c) {
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+' || c == '-')
        return 62;
    if (c == '/' || c == '_')
        return 63;
    return -1;
}

/* Standard or URL-safe base64, padding optional, whitespace skipped. A new buffer of
 * *outlen bytes (NUL-terminated), or NULL: not base64 (*bad set) or out of memory. */
static char *b64_decode(const char *s, size_t len, size_t *outlen, bool *bad) {
    char *out = malloc(len / 4 * 3 + 4);
    *bad = false;
    if (!out)
        return NULL;
    unsigned acc = 0;
    int bits = 0;
    size_t n = 0;
    bool pad = false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == ' ' || c == '\n' || c == '\r' || c == '\t')
            continue;
        if (c == '=') {
            pad = true;
            continue;
        }
        int v = b64_value(c);
        if (v < 0 || pad) {
            free(out);
            *bad = true;
            return NULL;
        }
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (char)((acc >> bits) & 0xff);
        }
    }
    if (bits >= 6) { /* a lone sixth: not base64 */
        free(out);
        *bad = true;
        return NULL;
    }
    out[n] = '\0';
    *outlen = n;
    return out;
}

static char *b64_encode(const char *s, size_t len) {
    char *out = malloc((len + 2) / 3 * 4 + 1);
    if (!out)
        return NULL;
    size_t n = 0, i = 0;
    for (; i + 2 < len; i += 3) {
        unsigned v =
            (unsigned char)s[i] << 16 | (unsigned char)s[i + 1] << 8 | (unsigned char)s[i + 2];
        out[n++] = b64[v >> 18 & 63], out[n++] = b64[v >> 12 & 63];
        out[n++] = b64[v >> 6 & 63], out[n++] = b64[v & 63];
    }
    if (i < len) {
        unsigned v = (unsigned char)s[i] << 16 | (i + 1 < len ? (unsigned char)s[i + 1] << 8 : 0);
        out[n++] = b64[v >> 18 & 63], out[n++] = b64[v >> 12 & 63];
        out[n++] = i + 1 < len ? b64[v >> 6 & 63] : '=';
        out[n++] = '=';
    }
    out[n] = '\0';
    return out;
}

/* ---- times --------------------------------------------------------------------------- */

/* ISO 8601 as Celery writes it: with an offset, or naive (UTC). */
static bool parse_iso(const char *s, size_t len, double *out) {
    if (broker_time_parse_rfc3339(s, len, out))
        return true;
    if (len > 64)
        return false;
    char buf[80];
    snprintf(buf, sizeof buf, "%.*sZ", (int)len, s);
    return broker_time_parse_rfc3339(buf, len + 1, out);
}

/* "2026-12-04T23:30:00.123456" (UTC, naive, as Celery's date_done) or with "+00:00". */
static void format_iso(double t, bool offset, char out[96]) {
    time_t sec = (time_t)floor(t);
    long usec = (long)((t - (double)sec) * 1e6);
    if (usec > 999999)
        usec = 999999;
    struct tm tm;
    gmtime_r(&sec, &tm);
    snprintf(out, 96, "%04d-%02d-%02dT%02d:%02d:%02d.%06ld%s", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, usec, offset ? "+00:00" : "");
}

/* ---- reading an envelope -------------------------------------------------------------- */

static int refuse(broker_celery_error *err, const char *exc_type, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int refuse(broker_celery_error *err, const char *exc_type, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->reason, sizeof err->reason, fmt, ap);
    va_end(ap);
    err->exc_type = exc_type;
    return -EINVAL;
}

/* The workerd task a Celery name runs, or NULL. */
static const char *map_name(const broker_celery_map *map, const char *name) {
    size_t len = strlen(name);
    for (size_t i = 0; map && i < map->n; i++) {
        const char *e = map->entries[i];
        if (strncmp(e, name, len) == 0 && e[len] == '=' && e[len + 1] != '\0')
            return e + len + 1;
    }
    static const char pre[] = "workerd.";
    if (strncmp(name, pre, sizeof pre - 1) == 0 && name[sizeof pre - 1] != '\0')
        return name + sizeof pre - 1;
    return NULL;
}

static const char *opt_string(json_t *obj, const char *key) {
    return json_string_value(json_object_get(obj, key));
}

/* A header that must be absent, null or of type `type` (a jansson type). */
static bool header_ok(json_t *headers, const char *key, json_type type, bool number) {
    json_t *v = json_object_get(headers, key);
    if (!v || json_is_null(v))
        return true;
    return number ? json_is_number(v) : json_typeof(v) == type;
}

/* eta/expires: an ISO 8601 text (or a number of Unix seconds). *out 0 when absent. */
static bool header_time(json_t *headers, const char *key, double *out) {
    json_t *v = json_object_get(headers, key);
    *out = 0;
    if (!v || json_is_null(v))
        return true;
    if (json_is_number(v)) {
        *out = json_number_value(v);
        return true;
    }
    return json_is_string(v) && parse_iso(json_string_value(v), json_string_length(v), out);
}

void broker_celery_info_free(broker_celery_info *info) {
    json_decref(info->envelope);
    json_decref(info->embed);
    memset(info, 0, sizeof *info);
}

int broker_celery_translate(const char *raw, size_t len, const broker_limits *lim,
                            const broker_celery_map *map, broker_celery_info *info, char **out,
                            size_t *outlen, broker_celery_error *err) {
    memset(info, 0, sizeof *info);
    memset(err, 0, sizeof *err);
    *out = NULL;
    size_t max =
        lim && lim->max_message_bytes ? lim->max_message_bytes : BROKER_MAX_MESSAGE_BYTES_DEFAULT;
    if (len > max)
        return refuse(err, "InvalidMessage", "message of %zu bytes is over the limit (%zu)", len,
                      max);
    json_error_t jerr;
    json_t *env = json_loadb(raw, len, 0, &jerr);
    if (!json_is_object(env)) {
        json_decref(env);
        return refuse(err, "InvalidMessage", "not a Celery message: not a JSON object");
    }
    info->envelope = env;
    json_t *headers = json_object_get(env, "headers");
    json_t *props = json_object_get(env, "properties");
    const char *id = json_is_object(headers) ? opt_string(headers, "id") : NULL;
    if (id && broker_check_task_id(id) == NULL) {
        err->has_id = true;
        snprintf(err->id, sizeof err->id, "%s", id);
    }
    int rc = 0;
    if (!json_is_object(headers) || !json_is_object(props)) {
        rc = refuse(err, "InvalidMessage",
                    "not a Celery message: \"headers\" and \"properties\" must be objects");
        goto fail;
    }
    if (!json_object_get(headers, "task")) {
        rc = refuse(err, "InvalidMessage",
                    "Celery message protocol v1 is not supported (no \"task\" header): send "
                    "protocol 2 (Celery 4 and later)");
        goto fail;
    }
    const char *ctype = opt_string(env, "content-type");
    if (!ctype || strcmp(ctype, "application/json") != 0) {
        rc = refuse(err, "ContentDisallowed",
                    "content type \"%s\" is not accepted: only application/json; the body was "
                    "not deserialised",
                    ctype ? ctype : "(none)");
        goto fail;
    }
    const char *name = opt_string(headers, "task");
    if (!name || !id || !err->has_id) {
        rc = refuse(err, "InvalidMessage",
                    "header \"task\" and \"id\" must be strings (an id of 1..255 bytes)");
        goto fail;
    }
    info->name = name;
    if (!header_ok(headers, "retries", JSON_INTEGER, false) ||
        !header_ok(headers, "root_id", JSON_STRING, false) ||
        !header_ok(headers, "parent_id", JSON_STRING, false) ||
        !header_ok(headers, "group", JSON_STRING, false) ||
        !header_ok(headers, "group_index", JSON_INTEGER, false) ||
        !header_ok(headers, "timelimit", JSON_ARRAY, false) ||
        !header_ok(props, "priority", JSON_INTEGER, false) ||
        !header_ok(env, "redelivered", JSON_INTEGER, false)) {
        rc = refuse(err, "InvalidMessage",
                    "a header has the wrong type (retries, group_index: integer; root_id, "
                    "parent_id, group: string; timelimit: [hard, soft]; priority: integer)");
        goto fail;
    }
    double eta = 0, expires = 0;
    if (!header_time(headers, "eta", &eta) || !header_time(headers, "expires", &expires)) {
        rc = refuse(err, "InvalidMessage", "header \"eta\" or \"expires\" is not an ISO 8601 time");
        goto fail;
    }
    double hard = 0, soft = 0;
    json_t *tl = json_object_get(headers, "timelimit");
    if (json_is_array(tl)) {
        json_t *h = json_array_get(tl, 0), *s = json_array_get(tl, 1);
        if ((h && !json_is_null(h) && !json_is_number(h)) ||
            (s && !json_is_null(s) && !json_is_number(s))) {
            rc = refuse(err, "InvalidMessage", "header \"timelimit\" must be [hard, soft]");
            goto fail;
        }
        hard = json_is_number(h) ? json_number_value(h) : 0;
        soft = json_is_number(s) ? json_number_value(s) : 0;
    }
    const char *enc = opt_string(props, "body_encoding");
    json_t *bodyv = json_object_get(env, "body");
    if (!enc || strcmp(enc, "base64") != 0 || !json_is_string(bodyv)) {
        rc = refuse(err, "InvalidMessage",
                    "the body must be a base64 text (properties.body_encoding \"base64\")");
        goto fail;
    }
    size_t blen = 0;
    bool bad = false;
    char *btext = b64_decode(json_string_value(bodyv), json_string_length(bodyv), &blen, &bad);
    if (!btext) {
        rc = bad ? refuse(err, "InvalidMessage", "the body is not valid base64") : -ENOMEM;
        goto fail;
    }
    json_t *body = json_loadb(btext, blen, 0, &jerr);
    free(btext);
    json_t *args = json_array_get(body, 0), *kwargs = json_array_get(body, 1),
           *embed = json_array_get(body, 2);
    if (!json_is_array(body) || json_array_size(body) != 3 || !json_is_array(args) ||
        !json_is_object(kwargs) || !(json_is_object(embed) || json_is_null(embed))) {
        json_decref(body);
        rc = refuse(err, "InvalidMessage",
                    "the body is not the JSON [args, kwargs, embed] of protocol 2");
        goto fail;
    }
    const char *task = map_name(map, name);
    if (!task) {
        json_decref(body);
        rc = refuse(err, "NotRegistered",
                    "'%s' is not a task workerd runs (name it workerd.<task>, or map it with "
                    "--celery-task)",
                    name);
        goto fail;
    }
    info->embed = json_is_object(embed) ? json_incref(embed) : NULL;
    info->root_id = opt_string(headers, "root_id");
    info->parent_id = opt_string(headers, "parent_id");
    info->group = opt_string(headers, "group");
    info->priority = (int)json_integer_value(json_object_get(props, "priority"));
    json_t *gi = json_object_get(headers, "group_index");
    info->group_index = json_is_integer(gi) ? json_integer_value(gi) : -1;

    json_t *msg = json_object();
    json_t *retries = json_object_get(headers, "retries");
    json_t *redelivered = json_object_get(env, "redelivered");
    int bad_set = !msg;
    bad_set |= json_object_set_new(msg, "id", json_string(id));
    bad_set |= json_object_set_new(msg, "task", json_string(task));
    bad_set |= json_object_set(msg, "args", args);
    bad_set |= json_object_set(msg, "kwargs", kwargs);
    if (json_is_integer(retries))
        bad_set |= json_object_set(msg, "retries", retries);
    if (json_is_integer(redelivered))
        bad_set |= json_object_set(msg, "redelivered", redelivered);
    if (eta > 0)
        bad_set |= json_object_set_new(msg, "eta", json_real(eta));
    if (expires > 0)
        bad_set |= json_object_set_new(msg, "expires", json_real(expires));
    if (hard > 0)
        bad_set |= json_object_set_new(msg, "time_limit", json_real(hard));
    if (soft > 0)
        bad_set |= json_object_set_new(msg, "soft_time_limit", json_real(soft));
    json_t *ignore = json_object_get(headers, "ignore_result");
    if (json_is_boolean(ignore))
        bad_set |= json_object_set(msg, "ignore_result", ignore);
    json_decref(body);
    char *text = bad_set ? NULL : json_dumps(msg, JSON_COMPACT);
    json_decref(msg);
    if (!text) {
        rc = -ENOMEM;
        goto fail;
    }
    *out = text;
    *outlen = strlen(text);
    return 0;
fail:
    broker_celery_info_free(info);
    return rc;
}

/* ---- results ------------------------------------------------------------------------- */

/* The Python module of an exception type, so that AsyncResult.get() raises the real
 * class where there is one; NULL: an Exception subclass of that name (Celery makes one
 * for a module it cannot find). */
static const char *exc_module(const char *type) {
    static const char *const celery[] = {"NotRegistered", "TimeLimitExceeded",
                                         "SoftTimeLimitExceeded", "TaskRevokedError", NULL};
    static const char *const builtins[] = {"TypeError", "ValueError", "MemoryError", "TimeoutError",
                                           NULL};
    for (int i = 0; celery[i]; i++)
        if (strcmp(type, celery[i]) == 0)
            return "celery.exceptions";
    for (int i = 0; builtins[i]; i++)
        if (strcmp(type, builtins[i]) == 0)
            return "builtins";
    if (strcmp(type, "ContentDisallowed") == 0)
        return "kombu.exceptions";
    return "workerd";
}

char *broker_celery_result_encode(const broker_result *r, const broker_celery_info *info,
                                  const broker_msg *msg, bool extended, const char *queue) {
    if (!r->id)
        return NULL;
    json_t *doc = json_object();
    if (!doc)
        return NULL;
    int bad = 0;
    bad |= json_object_set_new(doc, "status", json_string(broker_status_name(r->status)));
    if (r->status == BROKER_SUCCESS || r->status == BROKER_STARTED) {
        if (r->status == BROKER_STARTED) {
            json_t *meta = json_object();
            bad |= json_object_set_new(meta, "pid", json_null());
            bad |= json_object_set_new(meta, "hostname", json_string(r->worker ? r->worker : ""));
            bad |= json_object_set_new(doc, "result", meta);
        } else {
            bad |= json_object_set(doc, "result", r->result ? r->result : json_null());
        }
        bad |= json_object_set_new(doc, "traceback", json_null());
    } else {
        const char *type = r->error_type ? r->error_type : "TaskError";
        const char *text = r->error_message ? r->error_message : "";
        if (strcmp(type, "TaskExpired") == 0) { /* Celery: TaskRevokedError("expired") */
            type = "TaskRevokedError";
            text = "expired";
        }
        json_t *exc = json_object();
        bad |= json_object_set_new(exc, "exc_type", json_string(type));
        bad |= json_object_set_new(exc, "exc_message", json_pack("[s]", text));
        bad |= json_object_set_new(exc, "exc_module", json_string(exc_module(type)));
        bad |= json_object_set_new(doc, "result", exc);
        char tb[1024];
        snprintf(tb, sizeof tb, "%s: %s (in workerd %s)\n", type, text, r->worker ? r->worker : "");
        bad |= json_object_set_new(doc, "traceback", json_string(tb));
    }
    bad |= json_object_set_new(doc, "children", json_array());
    if (r->status == BROKER_SUCCESS || r->status == BROKER_FAILURE || r->status == BROKER_REVOKED) {
        char iso[96];
        format_iso(r->finished_at > 0 ? r->finished_at : 0, false, iso);
        bad |= json_object_set_new(doc, "date_done", json_string(iso));
    } else {
        bad |= json_object_set_new(doc, "date_done", json_null());
    }
    bad |= json_object_set_new(doc, "task_id", json_string(r->id));
    if (info && info->group)
        bad |= json_object_set_new(doc, "group_id", json_string(info->group));
    if (info && info->parent_id)
        bad |= json_object_set_new(doc, "parent_id", json_string(info->parent_id));
    if (extended) {
        json_t *name = info && info->name ? json_string(info->name) : json_null();
        bad |= json_object_set_new(doc, "name", name);
        bad |= json_object_set(doc, "args", msg && msg->args ? msg->args : json_null());
        bad |= json_object_set(doc, "kwargs", msg && msg->kwargs ? msg->kwargs : json_null());
        bad |= json_object_set_new(doc, "worker", r->worker ? json_string(r->worker) : json_null());
        bad |= json_object_set_new(doc, "retries", json_integer(r->retries));
        const char *q = queue && broker_queue_is_celery(queue) ? queue + 1 : queue;
        bad |= json_object_set_new(doc, "queue", q ? json_string(q) : json_null());
    }
    char *text = bad ? NULL : json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    return text;
}

/* ---- messages out -------------------------------------------------------------------- */

char *broker_celery_encode_scheduled(const broker_celery_info *info, double due, int retries,
                                     size_t *len) {
    json_t *env = json_deep_copy(info->envelope);
    json_t *headers = json_object_get(env, "headers");
    char iso[96];
    format_iso(due, true, iso);
    char *text = NULL;
    if (json_is_object(headers) && json_object_set_new(headers, "eta", json_string(iso)) == 0 &&
        json_object_set_new(headers, "retries", json_integer(retries)) == 0)
        text = json_dumps(env, JSON_COMPACT);
    json_decref(env);
    if (text)
        *len = strlen(text);
    return text;
}

void broker_celery_follow_free(broker_celery_follow *f, size_t n) {
    for (size_t i = 0; f && i < n; i++) {
        free(f[i].key);
        free(f[i].text);
    }
    free(f);
}

struct follow_list {
    broker_celery_follow *v;
    size_t n, cap;
};

static int follow_add(struct follow_list *l, char op, const char *key, char *text) {
    if (!text)
        return -ENOMEM;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4;
        broker_celery_follow *v = realloc(l->v, cap * sizeof *v);
        if (!v) {
            free(text);
            return -ENOMEM;
        }
        l->v = v, l->cap = cap;
    }
    char *k = strdup(key);
    if (!k) {
        free(text);
        return -ENOMEM;
    }
    l->v[l->n++] = (broker_celery_follow){op, k, text};
    return 0;
}

/* A protocol v2 envelope running signature sig with first (prepended to its args unless
 * it is immutable; NULL: nothing), parent id, the chain to run after it (NULL: none), to
 * the list *key it goes to. A new string, or NULL (out of memory, or a signature that is
 * not one: *skip). With body_out, the body is left out of the envelope ("body": "") and
 * *body_out is its JSON text, not encoded (a new string); tid_out (37 bytes or more): the
 * task id it runs under. */
static char *envelope_for(const broker_celery_info *info, json_t *sig, json_t *first,
                          const char *parent, json_t *chain, const char *default_queue,
                          char key[BROKER_KEY_MAX], bool *skip, char **body_out,
                          char tid_out[BROKER_ID_MAX + 1]) {
    *skip = false;
    const char *task = opt_string(sig, "task");
    json_t *opts = json_object_get(sig, "options");
    json_t *sargs = json_object_get(sig, "args"), *skwargs = json_object_get(sig, "kwargs");
    if (!json_is_object(sig) || !task) {
        *skip = true;
        return NULL;
    }
    const char *tid = json_is_object(opts) ? opt_string(opts, "task_id") : NULL;
    char fresh[37];
    if (!tid || broker_check_task_id(tid) != NULL) {
        broker_msg_new_id(fresh);
        tid = fresh;
    }
    const char *queue = json_is_object(opts) ? opt_string(opts, "queue") : NULL;
    json_t *prio = json_is_object(opts) ? json_object_get(opts, "priority") : NULL;
    int priority = json_is_integer(prio) ? (int)json_integer_value(prio) : 0;
    char inner[BROKER_QUEUE_NAME_MAX + 2];
    if (queue && broker_check_queue_name(queue) == NULL)
        snprintf(inner, sizeof inner, "%c%s", BROKER_CELERY_MARK, queue);
    else
        snprintf(inner, sizeof inner, "%s", default_queue);
    if (broker_key_celery_queue(inner, priority, key) < 0) {
        *skip = true;
        return NULL;
    }
    bool immutable = json_is_true(json_object_get(sig, "immutable"));
    json_t *args = json_array();
    if (first && !immutable)
        json_array_append(args, first);
    if (json_is_array(sargs))
        json_array_extend(args, sargs);
    json_t *kwargs = json_is_object(skwargs) ? json_incref(skwargs) : json_object();
    json_t *embed = json_pack("{s:n,s:n,s:O,s:n}", "callbacks", "errbacks", "chain",
                              chain ? chain : json_null(), "chord");
    json_t *link = json_is_object(opts) ? json_object_get(opts, "link") : NULL;
    json_t *link_error = json_is_object(opts) ? json_object_get(opts, "link_error") : NULL;
    if (embed && link && !json_is_null(link))
        json_object_set_new(embed, "callbacks",
                            json_is_array(link) ? json_incref(link) : json_pack("[O]", link));
    if (embed && link_error && !json_is_null(link_error))
        json_object_set_new(embed, "errbacks",
                            json_is_array(link_error) ? json_incref(link_error)
                                                      : json_pack("[O]", link_error));
    json_t *body = json_pack("[ooo]", args, kwargs, embed);
    char *btext = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    char *b64text = NULL;
    if (body_out) {
        *body_out = btext;
        b64text = btext ? strdup("") : NULL;
    } else {
        b64text = btext ? b64_encode(btext, strlen(btext)) : NULL;
        free(btext);
    }
    if (tid_out)
        snprintf(tid_out, BROKER_ID_MAX + 1, "%s", tid);
    const char *root = info->root_id ? info->root_id : parent;
    char tag[37];
    broker_msg_new_id(tag);
    const char *qname = broker_queue_is_celery(inner) ? inner + 1 : inner;
    json_t *env =
        b64text ? json_pack("{s:s,s:s,s:s,s:{s:s,s:s,s:s,s:n,s:n,s:n,s:n,s:n,s:i,s:[nn],s:s,"
                            "s:s,s:s,s:s,s:s},s:{s:s,s:s,s:i,s:{s:s,s:s},s:i,s:s,s:s}}",
                            "body", b64text, "content-encoding", "utf-8", "content-type",
                            "application/json", "headers", "lang", "py", "task", task, "id", tid,
                            "shadow", "eta", "expires", "group", "group_index", "retries", 0,
                            "timelimit", "root_id", root, "parent_id", parent, "argsrepr", "",
                            "kwargsrepr", "", "origin", "workerd", "properties", "correlation_id",
                            tid, "reply_to", "", "delivery_mode", 2, "delivery_info", "exchange",
                            "", "routing_key", qname, "priority", priority, "body_encoding",
                            "base64", "delivery_tag", tag)
                : NULL;
    free(b64text);
    char *text = env ? json_dumps(env, JSON_COMPACT) : NULL;
    json_decref(env);
    return text;
}

/* The chord step of member id (op 'J', broker_celery.h): its [1, id, state, result] and
 * the callback (embed.chord) as ack.lua completes it: its envelope around the body, the
 * body around the list of the members' results. 0 (nothing added when the signature is not
 * one), or -ENOMEM. */
#define CHORD_SLOT "\\u0001workerd-chord-results\\u0001"

static int chord_follow(struct follow_list *l, const broker_celery_info *info, const char *id,
                        bool success, json_t *result, const char *failure_doc,
                        const char *default_queue) {
    json_t *sig = json_object_get(info->embed, "chord");
    char gkey[BROKER_KEY_MAX], rkey[BROKER_KEY_MAX], qkey[BROKER_KEY_MAX];
    char cb_id[BROKER_ID_MAX + 1];
    if (!info->group || !json_is_object(sig) || broker_key_celery_group(info->group, gkey) < 0)
        return 0;
    json_t *slot = json_string("\x01workerd-chord-results\x01");
    char *body = NULL;
    bool skip = false;
    char *env =
        slot ? envelope_for(info, sig, slot, id, NULL, default_queue, qkey, &skip, &body, cb_id)
             : NULL;
    json_decref(slot);
    if (skip)
        return 0;
    json_t *doc = failure_doc ? json_loads(failure_doc, 0, NULL) : NULL;
    json_t *value = success ? (result ? result : json_null()) : json_object_get(doc, "result");
    json_t *member =
        json_pack("[i,s,s,O]", 1, id, success ? "SUCCESS" : "FAILURE", value ? value : json_null());
    char *mtext = member ? json_dumps(member, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    json_decref(member);
    json_decref(doc);
    const char *eb = env ? strstr(env, "\"body\":\"\"") : NULL;
    const char *slot_at = body ? strstr(body, CHORD_SLOT) : NULL;
    int rc = -ENOMEM;
    json_t *ctl = NULL;
    if (env && body && mtext && eb && broker_key_celery_result(cb_id, rkey) >= 0) {
        char iso[96];
        format_iso((double)time(NULL), false, iso);
        size_t head = (size_t)(eb - env) + 8, slen = strlen("\"" CHORD_SLOT "\"");
        size_t bhead = slot_at ? (size_t)(slot_at - body) - 1 : strlen(body);
        ctl =
            json_pack("{s:I,s:s,s:s,s:s,s:s,s:s,s:s%,s:s,s:s%,s:s,s:b,s:s}", "index",
                      (json_int_t)info->group_index, "id", id, "member", mtext, "queue", qkey,
                      "cb_id", cb_id, "cb_key", rkey, "env_head", env, head, "env_tail", env + head,
                      "body_head", body, bhead, "body_tail", slot_at ? slot_at - 1 + slen : "",
                      "results", slot_at != NULL, "date_done", iso);
        char *text = ctl ? json_dumps(ctl, JSON_COMPACT) : NULL;
        rc = follow_add(l, 'J', gkey, text);
    }
    json_decref(ctl);
    free(env);
    free(body);
    free(mtext);
    return rc;
}

int broker_celery_follow_up(const broker_celery_info *info, const char *id, bool success,
                            json_t *result, const char *failure_doc, const char *default_queue,
                            broker_celery_follow **out, size_t *n) {
    struct follow_list l = {0};
    int rc = 0;
    *out = NULL;
    *n = 0;
    json_t *embed = info ? info->embed : NULL;
    if (!embed)
        return 0;
    json_t *callbacks = json_object_get(embed, success ? "callbacks" : "errbacks");
    json_t *chain = json_object_get(embed, "chain");
    json_t *first = success ? (result ? result : json_null()) : json_string(id);
    size_t i;
    json_t *sig;
    char key[BROKER_KEY_MAX];
    bool skip;
    if (json_is_array(callbacks)) {
        json_array_foreach(callbacks, i, sig) {
            char *text =
                envelope_for(info, sig, first, id, NULL, default_queue, key, &skip, NULL, NULL);
            if (!skip && (rc = follow_add(&l, 'L', key, text)) != 0)
                goto out;
        }
    }
    size_t clen = json_is_array(chain) ? json_array_size(chain) : 0;
    if (success && clen > 0) {
        /* The chain runs from its end: the next signature is the last one. */
        json_t *rest = clen > 1 ? json_array() : NULL;
        for (size_t k = 0; rest && k + 1 < clen; k++)
            json_array_append(rest, json_array_get(chain, k));
        char *text = envelope_for(info, json_array_get(chain, clen - 1), first, id, rest,
                                  default_queue, key, &skip, NULL, NULL);
        json_decref(rest);
        if (!skip && (rc = follow_add(&l, 'L', key, text)) != 0)
            goto out;
    } else if (!success && clen > 0 && failure_doc) {
        /* As Celery's backend does: every later task of the chain fails with this one,
         * so that whoever waits for the chain's end hears of it. */
        json_t *doc = json_loads(failure_doc, 0, NULL);
        json_array_foreach(chain, i, sig) {
            json_t *opts = json_object_get(sig, "options");
            const char *tid = json_is_object(opts) ? opt_string(opts, "task_id") : NULL;
            if (!doc || !tid || broker_key_celery_result(tid, key) < 0)
                continue;
            json_object_set_new(doc, "task_id", json_string(tid));
            if ((rc = follow_add(&l, 'R', key, json_dumps(doc, JSON_COMPACT))) != 0)
                break;
        }
        json_decref(doc);
    }
    if (rc == 0)
        rc = chord_follow(&l, info, id, success, result, failure_doc, default_queue);
out:
    if (!success)
        json_decref(first);
    if (rc != 0) {
        broker_celery_follow_free(l.v, l.n);
        return rc;
    }
    *out = l.v;
    *n = l.n;
    return 0;
}
