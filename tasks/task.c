/*
 * task.c - the task registry, task_error helpers and argument checking (task.h).
 *
 * The registry is a sorted array of (name, fn) searched by bisection: a worker registers
 * a few dozen tasks at start-up and then only looks them up, once per message, so a
 * sorted array beats a hash table on both memory and simplicity, and it hands out the
 * names in order for --help for free. It is filled before any thread starts and never
 * changes afterwards (task.h), so lookups take no lock.
 *
 * The argument helpers exist so that every task, built-in or plugin, words its
 * complaints the same way: "<task>: argument <n> (<name>) must be <what>, got <type>".
 * They never yield and allocate nothing; what they return borrows from the call.
 *
 * Everything here runs on whatever stack calls it (greenlets, in practice).
 */
#include "task.h"
#include "task_internal.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TASK_NAME_MAX 128

typedef struct entry {
    char *name;
    task_fn fn;
    const char *owner; /* who registered it (task__registry_begin); NULL: the built-ins */
} entry;

static entry *entries;
static size_t n_entries, cap_entries;

/* Who registers now, and the first refusal since (task_internal.h). */
static const char *owner_now;
static int refused_err;
static char refused_name[TASK_NAME_MAX + 1];

/* ---- errors ------------------------------------------------------------------------- */

static void error_vset(task_error *err, const char *type, const char *fmt, va_list ap) {
    snprintf(err->type, sizeof err->type, "%s", type);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
}

int task_error_set(task_error *err, const char *type, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    error_vset(err, type, fmt, ap);
    va_end(ap);
    return TASK_EFAIL;
}

int task_error_invalid(task_error *err, const char *type, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    error_vset(err, type, fmt, ap);
    va_end(ap);
    return TASK_EINVAL;
}

int task_error_set_long(task_error *err, const char *type, const char *text) {
    snprintf(err->type, sizeof err->type, "%s", type);
    snprintf(err->message, sizeof err->message, "%s", text);
    free(err->long_message);
    err->long_message = strlen(text) >= sizeof err->message ? strdup(text) : NULL;
    return TASK_EFAIL;
}

const char *task_error_text(const task_error *err) {
    return err->long_message ? err->long_message : err->message;
}

void task_error_clear(task_error *err) {
    free(err->long_message);
    err->long_message = NULL;
}

int task_retry(task_error *err, double seconds, const char *type, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    error_vset(err, type, fmt, ap);
    va_end(ap);
    err->retry_in = seconds < 0 ? -1 : seconds;
    return TASK_ERETRY;
}

/* ---- time limits -------------------------------------------------------------------- */

/* The daemon points call->soft_lim at a flag its soft-limit timer sets (on the same
 * thread, between two runs of the task's greenlet); a call made by a test or by hand has
 * none and never reaches its soft limit. */
bool task_soft_limit_reached(const task_call *call) {
    return call->soft_lim != NULL && *call->soft_lim;
}

/* ---- the registry ------------------------------------------------------------------- */

static bool name_char(char c, bool first) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_')
        return true;
    if (first)
        return false;
    return (c >= '0' && c <= '9') || c == '-' || c == '.' || c == ':';
}

/* Names appear in messages, logs and Redis keys' neighbourhood: keep them to a safe
 * alphabet, and refuse empty dotted components, which are nearly always typos. */
bool task__name_valid(const char *name) {
    size_t len = strlen(name);
    if (len == 0 || len > TASK_NAME_MAX || name[len - 1] == '.')
        return false;
    for (size_t i = 0; i < len; i++) {
        if (!name_char(name[i], i == 0 || name[i - 1] == '.'))
            return false;
    }
    return strstr(name, "..") == NULL;
}

/* Index of name, or of where it would be inserted (*found tells which). */
static size_t registry_search(const char *name, bool *found) {
    size_t lo = 0, hi = n_entries;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, entries[mid].name);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    *found = false;
    return lo;
}

static int registry_add(const char *name, task_fn fn) {
    if (name == NULL || fn == NULL || !task__name_valid(name))
        return -EINVAL;
    bool found;
    size_t at = registry_search(name, &found);
    if (found)
        return -EEXIST;
    if (n_entries == cap_entries) {
        size_t cap = cap_entries ? cap_entries * 2 : 16;
        entry *grown = realloc(entries, cap * sizeof *grown);
        if (grown == NULL)
            return -ENOMEM;
        entries = grown;
        cap_entries = cap;
    }
    char *copy = strdup(name);
    if (copy == NULL)
        return -ENOMEM;
    memmove(entries + at + 1, entries + at, (n_entries - at) * sizeof *entries);
    entries[at] = (entry){.name = copy, .fn = fn, .owner = owner_now};
    n_entries++;
    return 0;
}

int task_registry_add(const char *name, task_fn fn) {
    int rc = registry_add(name, fn);
    if (rc != 0 && refused_err == 0) {
        refused_err = rc;
        snprintf(refused_name, sizeof refused_name, "%s", name ? name : "(null)");
    }
    return rc;
}

void task__registry_begin(const char *owner) {
    owner_now = owner;
    refused_err = 0;
    refused_name[0] = '\0';
}

int task__registry_end(const char **name) {
    owner_now = NULL;
    *name = refused_name;
    return refused_err;
}

const char *task__registry_owner(const char *name) {
    bool found;
    size_t at = registry_search(name, &found);
    return found ? entries[at].owner : NULL;
}

task_fn task_registry_find(const char *name) {
    if (name == NULL)
        return NULL;
    bool found;
    size_t at = registry_search(name, &found);
    return found ? entries[at].fn : NULL;
}

size_t task_registry_names(const char **out, size_t cap) {
    for (size_t i = 0; i < n_entries && i < cap; i++)
        out[i] = entries[i].name;
    return n_entries;
}

void task_registry_clear(void) {
    for (size_t i = 0; i < n_entries; i++)
        free(entries[i].name);
    free(entries);
    entries = NULL;
    n_entries = cap_entries = 0;
}

/* ---- argument helpers --------------------------------------------------------------- */

const char *task_json_type_name(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "object";
    case JSON_ARRAY:
        return "array";
    case JSON_STRING:
        return "string";
    case JSON_INTEGER:
        return "integer";
    case JSON_REAL:
        return "real";
    case JSON_TRUE:
    case JSON_FALSE:
        return "boolean";
    case JSON_NULL:
        return "null";
    }
    return "unknown";
}

/* How messages name an argument: "argument 1 (url)" or, keyword-only, "timeout". */
static void arg_label(char *out, size_t size, size_t index, const char *name) {
    if (index == TASK_ARG_KWONLY)
        snprintf(out, size, "%s", name);
    else
        snprintf(out, size, "argument %zu (%s)", index + 1, name);
}

static int wrong_type(const task_call *call, size_t index, const char *name, const char *want,
                      const json_t *got, task_error *err) {
    char label[192];
    arg_label(label, sizeof label, index, name);
    return task_error_invalid(err, "TypeError", "%s: %s must be %s, got %s", call->name, label,
                              want, task_json_type_name(got));
}

static int out_of_range(const task_call *call, size_t index, const char *name, double min,
                        double max, double got, task_error *err) {
    char label[192];
    arg_label(label, sizeof label, index, name);
    return task_error_invalid(err, "ValueError", "%s: %s must be between %g and %g, got %g",
                              call->name, label, min, max, got);
}

int task_args_check(const task_call *call, size_t max_args, const char *const *kwargs,
                    task_error *err) {
    size_t n = call->args ? json_array_size(call->args) : 0;
    if (n > max_args) {
        return task_error_invalid(err, "TypeError",
                                  "%s: takes at most %zu positional argument%s (%zu given)",
                                  call->name, max_args, max_args == 1 ? "" : "s", n);
    }
    const char *key;
    json_t *value;
    /* json_object_foreach wants a non-const object; it only reads it. */
    json_object_foreach((json_t *)call->kwargs, key, value) {
        bool known = false;
        for (size_t i = 0; kwargs != NULL && kwargs[i] != NULL && !known; i++)
            known = strcmp(kwargs[i], key) == 0;
        if (!known) {
            return task_error_invalid(err, "TypeError", "%s: unexpected keyword argument '%s'",
                                      call->name, key);
        }
    }
    return 0;
}

int task_arg_value(const task_call *call, size_t index, const char *name, bool required,
                   const json_t **out, task_error *err) {
    const json_t *pos = NULL, *kw = NULL;
    *out = NULL; /* on every path: -O3 cannot see that task_error_invalid returns < 0 */
    if (index != TASK_ARG_KWONLY && call->args != NULL)
        pos = json_array_get(call->args, index);
    if (name != NULL && call->kwargs != NULL)
        kw = json_object_get(call->kwargs, name);
    if (pos != NULL && kw != NULL) {
        return task_error_invalid(err, "TypeError", "%s: got multiple values for argument %s",
                                  call->name, name);
    }
    const json_t *v = pos ? pos : kw;
    if (v != NULL && json_is_null(v))
        v = NULL;
    if (v == NULL && required) {
        char label[192];
        arg_label(label, sizeof label, index, name);
        return task_error_invalid(err, "TypeError", "%s: missing required %s", call->name, label);
    }
    *out = v;
    return 0;
}

static int get_string(const task_call *call, size_t index, const char *name, bool required,
                      const char *def, const char **out, size_t *len, task_error *err) {
    const json_t *v;
    int rc = task_arg_value(call, index, name, required, &v, err);
    if (rc != 0)
        return rc;
    if (v == NULL) {
        *out = def;
        if (len != NULL)
            *len = def ? strlen(def) : 0;
        return 0;
    }
    if (!json_is_string(v))
        return wrong_type(call, index, name, "a string", v, err);
    /* A caller that takes no length would silently use a truncated string (a URL cut
     * short at a NUL is another URL): refuse embedded NULs unless the length is taken. */
    if (len == NULL && strlen(json_string_value(v)) != json_string_length(v)) {
        char label[192];
        arg_label(label, sizeof label, index, name);
        return task_error_invalid(err, "ValueError", "%s: %s must not contain NUL characters",
                                  call->name, label);
    }
    *out = json_string_value(v);
    if (len != NULL)
        *len = json_string_length(v);
    return 0;
}

static int get_number(const task_call *call, size_t index, const char *name, bool required,
                      double def, double min, double max, double *out, task_error *err) {
    const json_t *v;
    int rc = task_arg_value(call, index, name, required, &v, err);
    if (rc != 0)
        return rc;
    if (v == NULL) {
        *out = def;
        return 0;
    }
    if (!json_is_number(v))
        return wrong_type(call, index, name, "a number", v, err);
    double d = json_number_value(v);
    if (!isfinite(d) || d < min || d > max)
        return out_of_range(call, index, name, min, max, d, err);
    *out = d;
    return 0;
}

int task_arg_string(const task_call *call, size_t index, const char *name, const char **out,
                    task_error *err) {
    return get_string(call, index, name, true, NULL, out, NULL, err);
}

int task_arg_number(const task_call *call, size_t index, const char *name, double min, double max,
                    double *out, task_error *err) {
    return get_number(call, index, name, true, 0, min, max, out, err);
}

int task_opt_string(const task_call *call, size_t index, const char *name, const char *def,
                    const char **out, size_t *len, task_error *err) {
    return get_string(call, index, name, false, def, out, len, err);
}

int task_opt_number(const task_call *call, size_t index, const char *name, double def, double min,
                    double max, double *out, task_error *err) {
    return get_number(call, index, name, false, def, min, max, out, err);
}

int task_opt_integer(const task_call *call, size_t index, const char *name, long long def,
                     long long min, long long max, long long *out, task_error *err) {
    const json_t *v;
    int rc = task_arg_value(call, index, name, false, &v, err);
    if (rc != 0)
        return rc;
    if (v == NULL) {
        *out = def;
        return 0;
    }
    if (!json_is_integer(v))
        return wrong_type(call, index, name, "an integer", v, err);
    long long n = json_integer_value(v);
    if (n < min || n > max) {
        char label[192];
        arg_label(label, sizeof label, index, name);
        return task_error_invalid(err, "ValueError",
                                  "%s: %s must be between %lld and %lld, got %lld", call->name,
                                  label, min, max, n);
    }
    *out = n;
    return 0;
}

int task_opt_bool(const task_call *call, size_t index, const char *name, bool def, bool *out,
                  task_error *err) {
    const json_t *v;
    int rc = task_arg_value(call, index, name, false, &v, err);
    if (rc != 0)
        return rc;
    if (v == NULL) {
        *out = def;
        return 0;
    }
    if (!json_is_boolean(v))
        return wrong_type(call, index, name, "a boolean", v, err);
    *out = json_is_true(v);
    return 0;
}

int task_opt_object(const task_call *call, size_t index, const char *name, const json_t **out,
                    task_error *err) {
    const json_t *v;
    int rc = task_arg_value(call, index, name, false, &v, err);
    if (rc != 0)
        return rc;
    if (v != NULL && !json_is_object(v))
        return wrong_type(call, index, name, "an object", v, err);
    *out = v;
    return 0;
}
