/*
 * beat_file.c - reading and checking a beat file, and the ticks and messages of its
 * entries (beat_file.h).
 *
 * Every check names where it failed: the entry by its position (1-based) and, once read,
 * its name, then the field. A message is checked by the worker's own parser
 * (broker_msg_parse) with the id of a run filled in, so a file that loads never produces a
 * message that a worker would dead-letter for its form.
 */
#include "beat_file.h"

#include "broker_keys.h"
#include "broker_msg.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FILE_MAX (16 << 20)

static const char *const keys[] = {"name",    "every",    "cron", "timezone",
                                   "message", "catch_up", NULL};

/* "<path>: entry <i> ("<name>"): <what>" into err; returns -EINVAL. */
__attribute__((format(printf, 6, 7))) static int entry_error(char *err, size_t errlen,
                                                             const char *path, size_t i,
                                                             const char *name, const char *fmt,
                                                             ...) {
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (name)
        snprintf(err, errlen, "%s: entry %zu (\"%s\"): %s", path, i + 1, name, what);
    else
        snprintf(err, errlen, "%s: entry %zu: %s", path, i + 1, what);
    return -EINVAL;
}

static bool name_ok(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > BEAT_NAME_MAX)
        return false;
    for (const char *p = s; *p; p++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

static void entry_free(beat_entry *e) {
    free(e->name);
    free(e->cron);
    free(e->tz_name);
    beat_tz_free(e->tz);
    free(e->queue);
    json_decref(e->message);
}

void beat_schedule_free(beat_schedule *s) {
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++)
        entry_free(&s->entries[i]);
    free(s->entries);
    free(s);
}

/* One entry, obj, at position i, into *e (zeroed by the caller). */
static int read_entry(json_t *obj, size_t i, const char *path, double now, beat_entry *e, char *err,
                      size_t errlen) {
    if (!json_is_object(obj))
        return entry_error(err, errlen, path, i, NULL, "not an object");
    json_t *name = json_object_get(obj, "name");
    if (!name)
        return entry_error(err, errlen, path, i, NULL, "field \"name\" is missing");
    if (!json_is_string(name) || !name_ok(json_string_value(name)))
        return entry_error(err, errlen, path, i, NULL,
                           "field \"name\": must be 1 to %d letters, digits, '.', '_' or '-'",
                           BEAT_NAME_MAX);
    const char *nm = json_string_value(name);
    if (!(e->name = strdup(nm)))
        return -ENOMEM;
    const char *key;
    json_t *val;
    json_object_foreach(obj, key, val) {
        size_t k = 0;
        while (keys[k] && strcmp(keys[k], key) != 0)
            k++;
        if (!keys[k])
            return entry_error(err, errlen, path, i, nm,
                               "field \"%.64s\": unknown (expected name, every or cron, "
                               "timezone, message, catch_up)",
                               key);
    }
    json_t *every = json_object_get(obj, "every"), *cron = json_object_get(obj, "cron");
    json_t *tz = json_object_get(obj, "timezone");
    if (!every == !cron)
        return entry_error(err, errlen, path, i, nm, "field \"every\" or \"cron\": give %s",
                           every ? "only one of them" : "one of them");
    char why[256];
    if (every) {
        if (!json_is_integer(every) || json_integer_value(every) < 1 ||
            json_integer_value(every) > BEAT_EVERY_MAX)
            return entry_error(err, errlen, path, i, nm,
                               "field \"every\": must be a whole number of seconds, 1 to %d",
                               BEAT_EVERY_MAX);
        e->every = json_integer_value(every);
        if (tz)
            return entry_error(err, errlen, path, i, nm,
                               "field \"timezone\": only a cron entry has one");
    } else {
        if (!json_is_string(cron))
            return entry_error(err, errlen, path, i, nm, "field \"cron\": must be a string");
        if (beat_cron_parse(json_string_value(cron), &e->spec, why, sizeof why) != 0)
            return entry_error(err, errlen, path, i, nm, "field \"cron\": %s", why);
        if (!(e->cron = strdup(json_string_value(cron))))
            return -ENOMEM;
    }
    const char *tzname = "UTC";
    if (tz) {
        if (!json_is_string(tz))
            return entry_error(err, errlen, path, i, nm, "field \"timezone\": must be a string");
        tzname = json_string_value(tz);
    }
    int rc = beat_tz_load(tzname, &e->tz, why, sizeof why);
    if (rc == -ENOMEM)
        return rc;
    if (rc != 0)
        return entry_error(err, errlen, path, i, nm, "field \"timezone\": '%.64s': %s", tzname,
                           why);
    if (!(e->tz_name = strdup(tzname)))
        return -ENOMEM;
    json_t *cu = json_object_get(obj, "catch_up");
    if (cu) {
        const char *v = json_is_string(cu) ? json_string_value(cu) : "";
        if (strcmp(v, "one") == 0)
            e->catch_up = BEAT_CATCH_UP_ONE;
        else if (strcmp(v, "all") == 0)
            e->catch_up = BEAT_CATCH_UP_ALL;
        else if (strcmp(v, "none") == 0)
            e->catch_up = BEAT_CATCH_UP_NONE;
        else
            return entry_error(err, errlen, path, i, nm,
                               "field \"catch_up\": must be \"one\", \"all\" or \"none\"");
    }
    json_t *msg = json_object_get(obj, "message");
    if (!msg)
        return entry_error(err, errlen, path, i, nm, "field \"message\" is missing");
    if (!json_is_object(msg))
        return entry_error(err, errlen, path, i, nm, "field \"message\": must be an object");
    if (json_object_get(msg, "id"))
        return entry_error(err, errlen, path, i, nm,
                           "field \"message\": has an \"id\" (each run's id is "
                           "beat:<name>:<time>)");
    json_t *q = json_object_get(msg, "queue");
    const char *queue = "default";
    if (q && !json_is_null(q)) {
        const char *bad =
            json_is_string(q) ? broker_check_queue_name(json_string_value(q)) : "must be a string";
        if (bad)
            return entry_error(err, errlen, path, i, nm, "field \"message\": \"queue\": %s", bad);
        queue = json_string_value(q);
    }
    if (!(e->queue = strdup(queue)))
        return -ENOMEM;
    e->message = json_incref(msg);
    /* The worker's own check, on the message of a run. */
    size_t len;
    char *text = beat_entry_message(e, (int64_t)now, &len);
    if (!text)
        return -ENOMEM;
    broker_msg m;
    broker_msg_error merr;
    rc = broker_msg_parse(text, len, NULL, now, &m, &merr);
    free(text);
    if (rc == -ENOMEM)
        return rc;
    if (rc != 0)
        return entry_error(err, errlen, path, i, nm, "field \"message\": %s", merr.reason);
    broker_msg_free(&m);
    return 0;
}

int beat_schedule_parse(const char *text, size_t len, const char *path, double now,
                        beat_schedule **out, char *err, size_t errlen) {
    *out = NULL;
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        snprintf(err, errlen, "%s: not valid JSON: line %d column %d: %s", path, jerr.line,
                 jerr.column, jerr.text);
        return -EINVAL;
    }
    if (!json_is_array(root)) {
        json_decref(root);
        snprintf(err, errlen, "%s: must be a JSON list of entries", path);
        return -EINVAL;
    }
    beat_schedule *s = calloc(1, sizeof *s);
    size_t n = json_array_size(root);
    if (!s || !(s->entries = calloc(n ? n : 1, sizeof *s->entries))) {
        free(s);
        json_decref(root);
        snprintf(err, errlen, "%s: out of memory", path);
        return -ENOMEM;
    }
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        rc = read_entry(json_array_get(root, i), i, path, now, &s->entries[i], err, errlen);
        s->n = i + 1;
        for (size_t j = 0; j < i && rc == 0; j++)
            if (strcmp(s->entries[j].name, s->entries[i].name) == 0)
                rc = entry_error(err, errlen, path, i, s->entries[i].name,
                                 "field \"name\": entry %zu has the same name", j + 1);
    }
    json_decref(root);
    if (rc != 0) {
        if (rc == -ENOMEM)
            snprintf(err, errlen, "%s: out of memory", path);
        beat_schedule_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

int beat_schedule_load(const char *path, double now, beat_schedule **out, char *err,
                       size_t errlen) {
    *out = NULL;
    FILE *f = fopen(path, "re");
    if (!f) {
        int e = errno;
        snprintf(err, errlen, "%s: cannot read it: %s", path, strerror(e));
        return e == ENOENT ? -ENOENT : -EINVAL;
    }
    char *buf = malloc(FILE_MAX);
    size_t len = buf ? fread(buf, 1, FILE_MAX, f) : 0;
    bool error = buf && ferror(f), large = buf && len == FILE_MAX;
    fclose(f);
    if (!buf) {
        snprintf(err, errlen, "%s: out of memory", path);
        return -ENOMEM;
    }
    if (error || large) {
        free(buf);
        snprintf(err, errlen, "%s: %s", path, error ? "cannot read it" : "larger than 16 MiB");
        return -EINVAL;
    }
    int rc = beat_schedule_parse(buf, len, path, now, out, err, errlen);
    free(buf);
    return rc;
}

/* ---- ticks and messages ------------------------------------------------------------ */

int64_t beat_entry_next(const beat_entry *e, int64_t t) {
    if (e->every > 0) {
        int64_t k = t >= 0 ? t / e->every : -((-t + e->every - 1) / e->every);
        return (k + 1) * e->every;
    }
    return beat_cron_next(&e->spec, e->tz, t);
}

int64_t beat_entry_newest(const beat_entry *e, int64_t after, int64_t t) {
    if (t <= after)
        return -1;
    if (e->every > 0) {
        int64_t tick = beat_entry_next(e, t) - e->every;
        return tick > after ? tick : -1;
    }
    /* Look back over growing windows, so a frequent schedule costs a few steps and a rare
     * one a few more. */
    static const int64_t windows[] = {3600, 86400, 32 * 86400, 367 * 86400, 31LL * 366 * 86400};
    for (size_t w = 0; w < sizeof windows / sizeof *windows; w++) {
        int64_t start = t - windows[w] > after ? t - windows[w] : after;
        int64_t x = beat_entry_next(e, start);
        if (x >= 0 && x <= t) {
            for (int64_t y; (y = beat_entry_next(e, x)) >= 0 && y <= t;)
                x = y;
            return x;
        }
        if (start == after)
            return -1;
    }
    return -1;
}

void beat_entry_id(const beat_entry *e, int64_t tick, char *buf) {
    snprintf(buf, BEAT_ID_MAX + 1, "beat:%s:%" PRId64, e->name, tick);
}

char *beat_entry_message(const beat_entry *e, int64_t tick, size_t *len) {
    char id[BEAT_ID_MAX + 1];
    beat_entry_id(e, tick, id);
    json_t *m = json_copy(e->message);
    if (!m || json_object_set_new(m, "id", json_string(id)) != 0) {
        json_decref(m);
        return NULL;
    }
    char *text = json_dumps(m, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(m);
    if (text)
        *len = strlen(text);
    return text;
}

void beat_entry_describe(const beat_entry *e, char *buf, size_t len) {
    if (e->every > 0)
        snprintf(buf, len, "every %" PRId64 " s", e->every);
    else
        snprintf(buf, len, "cron %s (%s)", e->cron, e->tz_name);
}
