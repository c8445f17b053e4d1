/*
 * settings_value.c - the check of one value of one option, by the kind the table gives it
 * (settings.h), and its storage in a struct settings_value.
 *
 * Each check builds the new value aside and replaces the old one only once it is whole, so
 * a failed check leaves the value an earlier layer gave. The messages name the option as
 * the user wrote it and quote the value, except where a name ends up in Redis keys: there
 * the broker's own check decides (broker_check_prefix, broker_check_queue_name) and its
 * sentence is the message, word for word what workerctl's commands say of a bad name. A URL
 * is parsed by the same function that will connect with it (green_redis_url_parse).
 *
 * Runs on the caller's stack; no I/O but gethostname; never yields.
 */
#include "settings_internal.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "broker_keys.h"
#include "green_redis.h"

void settings__value_free(struct settings_value *v) {
    free(v->text);
    free(v->redacted);
    for (size_t i = 0; i < v->nitems; i++)
        free(v->items[i]);
    free(v->items);
    memset(v, 0, sizeof *v);
}

/* Replace *v by fresh (whose strings *v now owns). */
static int store(struct settings_value *v, struct settings_value *fresh) {
    settings__value_free(v);
    *v = *fresh;
    v->set = true;
    return 0;
}

/* A copy of text as the value's text, or -1 after an out-of-memory message. */
static int store_text(struct settings__load *l, const char *name, struct settings_value *v,
                      const char *text) {
    struct settings_value fresh = {0};
    if (text != NULL && (fresh.text = strdup(text)) == NULL)
        return settings__fail(l, "%s: out of memory", name);
    return store(v, &fresh);
}

/* Parse a whole decimal number, with a K/M/G suffix if binary_suffix. Returns 0, -1 when
 * it is not a number, -2 when it is outside [lo, hi]. */
static int parse_number(const char *text, long lo, long hi, bool binary_suffix, long *out) {
    const char *p = text;
    bool neg = *p == '-';
    if (neg)
        p++;
    if (!isdigit((unsigned char)*p))
        return -1;
    long long v = 0;
    bool big = false;
    for (; isdigit((unsigned char)*p); p++) {
        v = v * 10 + (*p - '0');
        if (v > (1LL << 32)) { /* beyond every range here; the cap keeps the shift safe */
            big = true;
            v = 1LL << 32;
        }
    }
    if (binary_suffix && *p != '\0' && p[1] == '\0') {
        int shift = strchr("kK", *p) ? 10 : strchr("mM", *p) ? 20 : strchr("gG", *p) ? 30 : -1;
        if (shift < 0)
            return -1;
        v *= 1LL << shift;
        p++;
    }
    if (*p != '\0')
        return -1;
    if (neg)
        v = -v;
    if (big || v < lo || v > hi)
        return -2;
    *out = (long)v;
    return 0;
}

static int check_number(struct settings__load *l, const char *name, const char *value, long lo,
                        long hi, bool suffix, long *out) {
    int r = parse_number(value, lo, hi, suffix, out);
    if (r == -1)
        return settings__fail(l, "%s: '%s' is not a number", name, value);
    if (r == -2)
        return settings__fail(l, "%s: '%s' is out of range, expected %ld..%ld", name, value, lo,
                              hi);
    return 0;
}

int settings_parse_seconds(const char *text, double max, double *out, char *why, size_t whylen) {
    char *end;
    errno = 0;
    double d = strtod(text, &end);
    if (end == text || *end != '\0' || errno == ERANGE || !isfinite(d) ||
        isspace((unsigned char)*text)) {
        if (why)
            snprintf(why, whylen, "'%s' is not a number of seconds", text);
        return -1;
    }
    if (d < 0 || d > max) {
        if (why)
            snprintf(why, whylen, "'%s' is out of range, expected 0..%g seconds", text, max);
        return -1;
    }
    if (out)
        *out = d;
    return 0;
}

static int set_seconds(struct settings__load *l, const char *name, const char *value, long hi,
                       struct settings_value *v) {
    char why[384];
    double d;
    if (settings_parse_seconds(value, (double)hi, &d, why, sizeof why) < 0)
        return settings__fail(l, "%s: %s", name, why);
    settings__value_free(v);
    v->set = true;
    v->seconds = d;
    return 0;
}

/* "on" or "off" (also yes/no, true/false, 1/0, any case). */
static int set_flag(struct settings__load *l, const char *name, const char *value,
                    struct settings_value *v) {
    static const char *const yes[] = {"on", "yes", "true", "1"}, *const no[] = {"off", "no",
                                                                                "false", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(value, yes[i]) == 0 || strcasecmp(value, no[i]) == 0) {
            struct settings_value fresh = {.num = strcasecmp(value, yes[i]) == 0};
            return store(v, &fresh);
        }
    }
    return settings__fail(l, "%s: '%s' is neither on nor off", name, value);
}

static int set_choice(struct settings__load *l, const struct settings_opt *d, const char *name,
                      const char *value, struct settings_value *v) {
    for (const struct settings_choice *c = d->choices; c->name != NULL; c++)
        if (strcasecmp(value, c->name) == 0)
            return store_text(l, name, v, c->means ? c->means : c->name);
    return settings__fail(l, "unknown %s '%s' (choose %s)", d->noun, value, d->choose);
}

/* A Redis URL, kept with its redacted form. The parser's message already quotes the URL
 * redacted. */
static int set_url(struct settings__load *l, const char *name, const char *value,
                   struct settings_value *v) {
    char why[512], safe[1024];
    green_redis_url parsed;
    int r = green_redis_url_parse(value, &parsed, why, sizeof why);
    if (r == -ENOMEM)
        return settings__fail(l, "%s: out of memory", name);
    if (r < 0)
        return settings__fail(l, "%s: %s", name, why);
    green_redis_url_clear(&parsed);
    green_redis_url_redact(value, safe, sizeof safe);
    struct settings_value fresh = {.text = strdup(value), .redacted = strdup(safe)};
    if (fresh.text == NULL || fresh.redacted == NULL) {
        settings__value_free(&fresh);
        return settings__fail(l, "%s: out of memory", name);
    }
    return store(v, &fresh);
}

static int set_prefix(struct settings__load *l, const char *name, const char *value,
                      struct settings_value *v) {
    const char *why = broker_check_prefix(value);
    if (why != NULL)
        return settings__fail(l, "%s: %s", name, why);
    return store_text(l, name, v, value);
}

/* What a list's entries are called in its messages, and the check of one entry. */
struct list_kind {
    const char *empty;                       /* "empty <empty> in '...'" */
    const char *noun;                        /* "<noun> '...' is listed twice" */
    const char *(*check)(const char *entry); /* NULL, or why the entry is refused */
};

/* A comma list, as in Celery's "-Q a, b": blanks around an entry are dropped; an empty
 * entry, or one listed twice, is an error. */
static int set_list(struct settings__load *l, const struct list_kind *k, const char *name,
                    const char *value, struct settings_value *v) {
    struct settings_value fresh = {0};
    size_t n = 1;
    for (const char *p = value; *p; p++)
        n += *p == ',';
    if ((fresh.items = calloc(n, sizeof *fresh.items)) == NULL)
        return settings__fail(l, "%s: out of memory", name);
    for (const char *p = value;; p++) {
        size_t len = strcspn(p, ",");
        const char *q = p, *e = p + len;
        while (q < e && isspace((unsigned char)*q))
            q++;
        while (e > q && isspace((unsigned char)e[-1]))
            e--;
        char *entry = strndup(q, (size_t)(e - q));
        if (entry == NULL) {
            settings__fail(l, "%s: out of memory", name);
            goto fail;
        }
        fresh.items[fresh.nitems++] = entry;
        if (*entry == '\0') {
            settings__fail(l, "%s: empty %s in '%s'", name, k->empty, value);
            goto fail;
        }
        const char *why = k->check ? k->check(entry) : NULL;
        if (why != NULL) {
            settings__fail(l, "%s: %s", name, why);
            goto fail;
        }
        for (size_t i = 0; i + 1 < fresh.nitems; i++) {
            if (strcmp(fresh.items[i], entry) == 0) {
                settings__fail(l, "%s: %s '%s' is listed twice", name, k->noun, entry);
                goto fail;
            }
        }
        p += len;
        if (*p == '\0')
            break;
    }
    return store(v, &fresh);
fail:
    settings__value_free(&fresh);
    return -1;
}

/* Queue names: the broker's check decides, and its sentence is the message. */
static const struct list_kind queue_list = {"queue name", "queue", broker_check_queue_name};

/* Plugin paths: anything but an empty entry; whether the file loads is the program's to
 * find out (and say) when it loads it. */
static const struct list_kind path_list = {"path", "path", NULL};

/* Names used in logs and the worker id: no blanks or control characters. */
static int check_blanks(struct settings__load *l, const char *name, const char *what,
                        const char *value) {
    for (const char *p = value; *p; p++)
        if (isspace((unsigned char)*p) || iscntrl((unsigned char)*p))
            return settings__fail(l, "%s: %s '%s' contains a blank or control character", name,
                                  what, value);
    return 0;
}

/* Expand Celery's %h (host name), %n (its first label), %d (the rest), %%. */
static int set_hostname(struct settings__load *l, const char *name, const char *value,
                        struct settings_value *v) {
    char host[256] = "localhost";
    if (gethostname(host, sizeof host - 1) < 0)
        snprintf(host, sizeof host, "localhost");
    char out[1024];
    size_t n = 0;
    const char *dot = strchr(host, '.');
    for (const char *p = value; *p; p++) {
        const char *add = p, *add_end = p + 1;
        if (*p == '%') {
            p++;
            if (*p == 'h') {
                add = host, add_end = host + strlen(host);
            } else if (*p == 'n') {
                add = host, add_end = dot ? dot : host + strlen(host);
            } else if (*p == 'd') {
                add = dot ? dot + 1 : "", add_end = add + strlen(add);
            } else if (*p == '%') {
                add = p, add_end = p + 1;
            } else {
                return settings__fail(l, "%s: unknown '%%%.1s' in '%s' (use %%h, %%n, %%d or %%%%)",
                                      name, p, value);
            }
        }
        size_t len = (size_t)(add_end - add);
        if (n + len >= sizeof out)
            return settings__fail(l, "%s: '%s' is too long", name, value);
        memcpy(out + n, add, len);
        n += len;
    }
    out[n] = '\0';
    if (*out == '\0')
        return settings__fail(l, "%s: empty host name", name);
    if (check_blanks(l, name, "host name", out) < 0)
        return -1;
    return store_text(l, name, v, out);
}

/* "off", or HOST:PORT with a numeric IPv4 host, "localhost", or a bracketed IPv6 address
 * ("[::1]:9808"), and a port 0..65535 (0: any free port). Kept split, ready for
 * green_tcp_listen. */
static int set_listen(struct settings__load *l, const char *name, const char *value,
                      struct settings_value *v) {
    if (strcasecmp(value, "off") == 0) {
        struct settings_value off = {0};
        return store(v, &off);
    }
    const char *colon = strrchr(value, ':');
    char host[64];
    if (colon == NULL || colon == value || (size_t)(colon - value) >= sizeof host)
        return settings__fail(l, "%s: '%s' is not ADDR:PORT (e.g. 127.0.0.1:9808) or off", name,
                              value);
    snprintf(host, sizeof host, "%.*s", (int)(colon - value), value);
    unsigned char addr[16];
    bool v6 = host[0] == '[' && host[strlen(host) - 1] == ']';
    if (v6) {
        memmove(host, host + 1, strlen(host) - 2);
        host[strlen(host) - 2] = '\0';
    } else if (strcmp(host, "localhost") == 0) {
        snprintf(host, sizeof host, "127.0.0.1");
    }
    if (inet_pton(v6 ? AF_INET6 : AF_INET, host, addr) != 1)
        return settings__fail(
            l, "%s: '%s' is not a numeric IPv4 address, [IPv6 address] or localhost", name, value);
    long port = 0;
    if (check_number(l, name, colon + 1, 0, 65535, false, &port) < 0)
        return -1;
    if (store_text(l, name, v, host) < 0)
        return -1;
    v->num = port;
    return 0;
}

/* Checked by the program (the http.* tasks' address policy is the tasks' to parse). */
static int set_checked(struct settings__load *l, enum settings_id id, const char *name,
                       const char *value, struct settings_value *v) {
    char why[384];
    if (l->check != NULL && l->check(id, value, why, sizeof why) < 0)
        return settings__fail(l, "%s: %s", name, why);
    return store_text(l, name, v, value);
}

/* Entries separated by commas, unescaped ("\," is a comma, "\\" a backslash; any other
 * backslash is kept as written), none empty, each checked by the program. A comma is the
 * separator the other lists use; the escape lets a path or a value hold one anyway. */
static int set_entries(struct settings__load *l, enum settings_id id, const char *name,
                       const char *value, struct settings_value *v) {
    struct settings_value fresh = {0};
    size_t n = 1, len = strlen(value);
    char why[384];
    for (const char *p = value; *p; p++)
        n += *p == ',';
    char *entry = malloc(len + 1);
    if (entry == NULL || (fresh.items = calloc(n, sizeof *fresh.items)) == NULL) {
        free(entry);
        return settings__fail(l, "%s: out of memory", name);
    }
    for (const char *p = value;;) {
        size_t k = 0;
        for (; *p && *p != ','; p++) {
            if (*p == '\\' && (p[1] == ',' || p[1] == '\\'))
                p++;
            entry[k++] = *p;
        }
        entry[k] = '\0';
        if (k == 0) {
            settings__fail(l, "%s: an entry of the list is empty", name);
            goto fail;
        }
        if (l->check != NULL && l->check(id, entry, why, sizeof why) < 0) {
            settings__fail(l, "%s: %s", name, why);
            goto fail;
        }
        if ((fresh.items[fresh.nitems] = strdup(entry)) == NULL) {
            settings__fail(l, "%s: out of memory", name);
            goto fail;
        }
        fresh.nitems++;
        if (*p++ == '\0')
            break;
    }
    free(entry);
    return store(v, &fresh);
fail:
    free(entry);
    settings__value_free(&fresh);
    return -1;
}

int settings__set(struct settings__load *l, enum settings_id id, const char *name,
                  const char *value, struct settings_value *v) {
    const struct settings_opt *d = &settings_opts[id];
    long num = 0;
    if (*value == '\0')
        return settings__fail(l, "%s: empty value", name);
    switch (d->kind) {
    case SETTINGS_KIND_NUMBER:
    case SETTINGS_KIND_SIZE:
        if (check_number(l, name, value, d->lo, d->hi, d->kind == SETTINGS_KIND_SIZE, &num) < 0)
            return -1;
        settings__value_free(v);
        v->set = true;
        v->num = num;
        return 0;
    case SETTINGS_KIND_SECONDS:
        return set_seconds(l, name, value, d->hi, v);
    case SETTINGS_KIND_FLAG:
        return set_flag(l, name, value, v);
    case SETTINGS_KIND_CHOICE:
        return set_choice(l, d, name, value, v);
    case SETTINGS_KIND_URL:
        return set_url(l, name, value, v);
    case SETTINGS_KIND_PREFIX:
        return set_prefix(l, name, value, v);
    case SETTINGS_KIND_QUEUES:
        return set_list(l, &queue_list, name, value, v);
    case SETTINGS_KIND_PATHS:
        return set_list(l, &path_list, name, value, v);
    case SETTINGS_KIND_HOSTNAME:
        return set_hostname(l, name, value, v);
    case SETTINGS_KIND_LISTEN:
        return set_listen(l, name, value, v);
    case SETTINGS_KIND_CHECKED:
        return set_checked(l, id, name, value, v);
    case SETTINGS_KIND_LIST:
        return set_entries(l, id, name, value, v);
    case SETTINGS_KIND_FILE:
        return store_text(l, name, v, value);
    case SETTINGS_KIND_ACTION:
        break;
    }
    return 0;
}
