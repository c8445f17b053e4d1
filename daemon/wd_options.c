/*
 * wd_options.c - the layered settings of wd_options.h.
 *
 * One table (optdefs) describes every option once: its long and short names, its
 * environment/config key, its default and its help. The command-line parser, the
 * environment and config-file layers and the help text are all driven by it, so an option
 * cannot exist in one place and be missing from another.
 *
 * wd_options_load works in two passes. The first runs getopt_long over argv only to
 * collect the values (and to act on --help and --version at once); nothing is validated
 * yet, because the config file, which the command line may name, must be applied first.
 * The second applies the layers in precedence order - defaults, config file, environment,
 * command line - each through set_option, which validates and knows the source for the
 * message. Then the derived values are settled: prefetch and result backend defaults,
 * solo's concurrency, the heartbeat TTL. Everything is built in a local struct that
 * reaches the caller only on success.
 *
 * Runs on the main thread's stack at start-up or reload; never yields.
 */
#include "wd_options.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "green_redis.h"
#include "task_http_policy.h"
#include "wd_conffile.h"

#ifndef WORKERD_VERSION
#define WORKERD_VERSION "0.0.0"
#endif

enum opt_id {
    OPT_POOL = 256, /* above every char, so getopt_long can return ids for long-only ones */
    OPT_CONCURRENCY,
    OPT_QUEUES,
    OPT_BROKER,
    OPT_RESULT_BACKEND,
    OPT_PREFIX,
    OPT_HOSTNAME,
    OPT_PREFETCH,
    OPT_RESULT_EXPIRES,
    OPT_SHUTDOWN_TIMEOUT,
    OPT_LOGLEVEL,
    OPT_MAX_MESSAGE_SIZE,
    OPT_HEARTBEAT,
    OPT_MAX_REDELIVERIES,
    OPT_HTTP_DENY,
    OPT_HTTP_ALLOW,
    OPT_HTTP,
    OPT_EVENTS,
    OPT_PROCESSES,
    OPT_MAX_TASKS_PER_CHILD,
    OPT_MAX_MEMORY_PER_CHILD,
    OPT_CONFIG,
    OPT_HELP,
    OPT_VERSION,
    OPT_END,
};
#define NOPTS (OPT_END - OPT_POOL)

struct optdef {
    enum opt_id id;
    const char *name;  /* long option, without "--" */
    int letter;        /* short option, or 0 */
    const char *env;   /* environment variable and config key, or NULL */
    const char *arg;   /* the value's placeholder in the help, or NULL for a flag */
    const char *deflt; /* the default as text: what set_option is given before any layer */
    const char *help;  /* lines separated by '\n' */
};

/* The order here is the order of the help text. */
static const struct optdef optdefs[] = {
    {OPT_POOL, "pool", 'P', "WORKERD_POOL", "POOL", "green",
     "green: run up to --concurrency tasks at once, each on a green thread.\n"
     "solo: run one task at a time on the same runtime (--concurrency is ignored).\n"
     "gevent is accepted for green."},
    {OPT_CONCURRENCY, "concurrency", 'c', "WORKERD_CONCURRENCY", "N", "100",
     "Tasks in flight at once (1..1000000). Celery defaults to the number of CPUs,\n"
     "which suits processes doing CPU work; green tasks mostly wait on I/O, so that\n"
     "would leave this process idle. 100 keeps memory and the load on the services\n"
     "tasks call modest; raise it (thousands are fine) for I/O-bound work."},
    {OPT_QUEUES, "queues", 'Q', "WORKERD_QUEUES", "Q1,Q2", "default",
     "Queues to consume, comma-separated, in strict priority order: a queue is\n"
     "served only while the ones before it are empty."},
    {OPT_BROKER, "broker", 'b', "WORKERD_BROKER", "URL", "redis://127.0.0.1:6379/0",
     "The Redis holding the queues: redis://[user:password@]host[:port][/db]\n"
     "or unix://[user:password@]/path/to/redis.sock[?db=N]; user and password\n"
     "may be percent-encoded (%40 for @)."},
    {OPT_RESULT_BACKEND, "result-backend", 0, "WORKERD_RESULT_BACKEND", "URL", NULL,
     "The Redis storing results (same forms as --broker). Default: the broker."},
    {OPT_PREFIX, "prefix", 0, "WORKERD_PREFIX", "PREFIX", "workerd",
     "Prefix of every Redis key (PREFIX:queue:NAME, PREFIX:result:ID, ...)."},
    {OPT_HOSTNAME, "hostname", 'n', "WORKERD_HOSTNAME", "NAME", NULL,
     "This worker's node name; %h is the host name, %n its first label, %d the\n"
     "rest (the domain), %% a percent sign. Default: the host name."},
    {OPT_PREFETCH, "prefetch", 0, "WORKERD_PREFETCH", "N", NULL,
     "Most messages taken from Redis in one fetch (1..1000000); a fetch never\n"
     "takes more than the free slots. Default: the concurrency."},
    {OPT_RESULT_EXPIRES, "result-expires", 0, "WORKERD_RESULT_EXPIRES", "SECONDS", "86400",
     "How long a result is kept in Redis; 0 keeps it forever."},
    {OPT_SHUTDOWN_TIMEOUT, "shutdown-timeout", 0, "WORKERD_SHUTDOWN_TIMEOUT", "SECONDS", "30",
     "On SIGTERM, how long running tasks may take to finish before the\n"
     "unfinished ones are put back on their queues."},
    {OPT_LOGLEVEL, "loglevel", 'l', "WORKERD_LOGLEVEL", "LEVEL", "info",
     "debug, info, warning or error (any case)."},
    {OPT_MAX_MESSAGE_SIZE, "max-message-size", 0, "WORKERD_MAX_MESSAGE_SIZE", "BYTES", "1M",
     "Largest task message accepted (a K, M or G suffix multiplies by 1024,\n"
     "1024^2, 1024^3); a larger one goes to the dead-letter list."},
    {OPT_HEARTBEAT, "heartbeat", 0, "WORKERD_HEARTBEAT", "SECONDS", "5",
     "Seconds between heartbeats (1..3600). A worker silent for three heartbeats\n"
     "is dead, and its unacknowledged messages go back to their queues."},
    {OPT_MAX_REDELIVERIES, "max-redeliveries", 0, "WORKERD_MAX_REDELIVERIES", "N", "5",
     "A message redelivered more often than this (its workers keep dying on it)\n"
     "goes to the dead-letter list instead (0..1000)."},
    {OPT_HTTP_DENY, "http-deny", 0, "WORKERD_HTTP_DENY", "LIST", NULL,
     "Addresses, CIDR networks and host names (a leading *. matches the names\n"
     "below) that http.* tasks may not connect to, comma-separated, e.g.\n"
     "10.0.0.0/8,127.0.0.0/8,*.internal.example. Checked on the address\n"
     "actually connected to, after DNS, for every redirect too. Always denied:\n"
     "link-local 169.254.0.0/16 and fe80::/10 (cloud metadata), 0.0.0.0/8, ::,\n"
     "multicast and reserved. Loopback and private ranges are allowed unless\n"
     "listed. Default: nothing more."},
    {OPT_HTTP_ALLOW, "http-allow", 0, "WORKERD_HTTP_ALLOW", "LIST", NULL,
     "Exceptions to --http-deny, in the same forms. The most specific rule wins:\n"
     "a matching host name first, then the longest matching prefix (so\n"
     "--http-deny 127.0.0.0/8 --http-allow 127.0.0.1 admits 127.0.0.1 alone);\n"
     "on a tie, --http-deny wins over --http-allow, which wins over the\n"
     "built-in list. Default: none."},
    {OPT_HTTP, "http", 0, "WORKERD_HTTP", "ADDR:PORT", "off",
     "Serve /metrics (Prometheus), /healthz and /workers over HTTP on ADDR:PORT,\n"
     "e.g. 127.0.0.1:9808 ([::1]:9808 for IPv6; 0.0.0.0 listens everywhere: the\n"
     "endpoint has no authentication). With --processes N, child k (0..N-1)\n"
     "listens on PORT+k. off: no endpoint."},
    {OPT_EVENTS, "events", 'E', "WORKERD_EVENTS", NULL, "off",
     "Publish task events (received, started, succeeded, failed, retried,\n"
     "revoked) on the capped stream PREFIX:events, for monitors. As a variable or\n"
     "config key: on or off."},
    {OPT_PROCESSES, "processes", 0, "WORKERD_PROCESSES", "N", "1",
     "Run N worker processes (1..1024) under a supervisor that restarts a child\n"
     "that crashed (backoff 1 s doubling to 30 s) and passes signals on to all."},
    {OPT_MAX_TASKS_PER_CHILD, "max-tasks-per-child", 0, "WORKERD_MAX_TASKS_PER_CHILD", "N", "0",
     "A worker process that has taken N tasks finishes them, exits, and the\n"
     "supervisor starts a fresh one (runs under the supervisor even with\n"
     "--processes 1). 0: no limit."},
    {OPT_MAX_MEMORY_PER_CHILD, "max-memory-per-child", 0, "WORKERD_MAX_MEMORY_PER_CHILD", "KIB",
     "0",
     "A worker process whose resident memory exceeds KIB kibibytes after a task\n"
     "is replaced the same way. 0: no limit."},
    {OPT_CONFIG, "config", 0, "WORKERD_CONFIG", "FILE", NULL,
     "Read settings from FILE: KEY=VALUE lines with the variable names shown\n"
     "here, as systemd's EnvironmentFile= reads them. Default: no file."},
    {OPT_HELP, "help", 'h', NULL, NULL, NULL, "Print this help and exit."},
    {OPT_VERSION, "version", 'V', NULL, NULL, NULL, "Print the version and exit."},
};

/* Where a value came from, for messages. */
struct source {
    const char *file; /* NULL: the command line or the environment */
    int line;
    bool env;
    bool plain; /* no "(from ...)": the shape of the command line itself */
};

struct ctx {
    struct wd_options o;
    bool prefetch_set;
    char *errbuf;
    size_t errlen;
    struct source src;
};

const char *wd_version(void) {
    return WORKERD_VERSION;
}

const char *wd_pool_name(enum wd_pool pool) {
    return pool == WD_POOL_SOLO ? "solo" : "green";
}

/* Write "workerd: <what> (from <source>)" to the error buffer; returns -1. Mistakes in the
 * shape of the command line itself (an unknown option, a missing value) leave the source
 * out (src.plain): it could only be the command line. */
static int fail(struct ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(struct ctx *c, const char *fmt, ...) {
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (c->src.plain)
        snprintf(c->errbuf, c->errlen, "workerd: %s", what);
    else if (c->src.file != NULL)
        snprintf(c->errbuf, c->errlen, "workerd: %s (from %s line %d)", what, c->src.file,
                 c->src.line);
    else if (c->src.env)
        snprintf(c->errbuf, c->errlen, "workerd: %s (from the environment)", what);
    else
        snprintf(c->errbuf, c->errlen, "workerd: %s (from the command line)", what);
    return -1;
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

static int set_number(struct ctx *c, const char *name, const char *value, long lo, long hi,
                      bool suffix, long *out) {
    int r = parse_number(value, lo, hi, suffix, out);
    if (r == -1)
        return fail(c, "%s: '%s' is not a number", name, value);
    if (r == -2)
        return fail(c, "%s: '%s' is out of range, expected %ld..%ld", name, value, lo, hi);
    return 0;
}

/* Names used in Redis keys and logs: non-empty, no blanks or control characters. */
static int check_name(struct ctx *c, const char *name, const char *what, const char *value,
                      const char *whole) {
    if (*value == '\0')
        return whole ? fail(c, "%s: empty %s in '%s'", name, what, whole)
                     : fail(c, "%s: empty %s", name, what);
    for (const char *p = value; *p; p++)
        if (isspace((unsigned char)*p) || iscntrl((unsigned char)*p))
            return fail(c, "%s: %s '%s' contains a blank or control character", name, what, value);
    return 0;
}

static int replace(char **field, const char *value) {
    char *copy = strdup(value);
    if (copy == NULL)
        return -1;
    free(*field);
    *field = copy;
    return 0;
}

static void free_queues(struct wd_options *o) {
    for (size_t i = 0; i < o->nqueues; i++)
        free(o->queues[i]);
    free(o->queues);
    o->queues = NULL;
    o->nqueues = 0;
}

static int set_queues(struct ctx *c, const char *name, const char *value) {
    struct wd_options *o = &c->o;
    free_queues(o);
    size_t n = 1;
    for (const char *p = value; *p; p++)
        n += *p == ',';
    o->queues = calloc(n, sizeof *o->queues);
    if (o->queues == NULL)
        return fail(c, "%s: out of memory", name);
    for (const char *p = value;; p++) {
        /* Blanks around a name are dropped, as in Celery's "-Q a, b". */
        size_t len = strcspn(p, ",");
        const char *q = p, *e = p + len;
        while (q < e && isspace((unsigned char)*q))
            q++;
        while (e > q && isspace((unsigned char)e[-1]))
            e--;
        char *queue = strndup(q, (size_t)(e - q));
        if (queue == NULL)
            return fail(c, "%s: out of memory", name);
        o->queues[o->nqueues++] = queue;
        if (check_name(c, name, "queue name", queue, value) < 0)
            return -1;
        for (size_t i = 0; i + 1 < o->nqueues; i++)
            if (strcmp(o->queues[i], queue) == 0)
                return fail(c, "%s: queue '%s' is listed twice", name, queue);
        p += len;
        if (*p == '\0')
            break;
    }
    return 0;
}

/* Expand Celery's %h (host name), %n (its first label), %d (the rest), %%. */
static int set_hostname(struct ctx *c, const char *name, const char *value) {
    char host[256] = "localhost";
    if (gethostname(host, sizeof host - 1) < 0)
        snprintf(host, sizeof host, "localhost");
    if (value == NULL)
        value = host;
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
                return fail(c, "%s: unknown '%%%.1s' in '%s' (use %%h, %%n, %%d or %%%%)", name, p,
                            value);
            }
        }
        size_t len = (size_t)(add_end - add);
        if (n + len >= sizeof out)
            return fail(c, "%s: '%s' is too long", name, value);
        memcpy(out + n, add, len);
        n += len;
    }
    out[n] = '\0';
    if (check_name(c, name, "host name", out, NULL) < 0)
        return -1;
    return replace(&c->o.hostname, out) < 0 ? fail(c, "%s: out of memory", name) : 0;
}

/* Validate a Redis URL with the runtime's own parser (the one green_redis_connect_url
 * uses), and keep it with its redacted form. The parser's message already quotes the URL
 * redacted. */
static int set_url(struct ctx *c, const char *name, const char *value, char **url,
                   char **redacted) {
    char why[512], safe[1024];
    green_redis_url parsed;
    int r = green_redis_url_parse(value, &parsed, why, sizeof why);
    if (r == -ENOMEM)
        return fail(c, "%s: out of memory", name);
    if (r < 0)
        return fail(c, "%s: %s", name, why);
    green_redis_url_clear(&parsed);
    green_redis_url_redact(value, safe, sizeof safe);
    if (replace(url, value) < 0 || replace(redacted, safe) < 0)
        return fail(c, "%s: out of memory", name);
    return 0;
}

/* An address policy list for the http.* tasks, checked by the parser that will use it. */
static int set_policy(struct ctx *c, const char *name, const char *value, char **field) {
    char why[384];
    if (task_http_policy_validate(value, why, sizeof why) < 0)
        return fail(c, "%s: %s", name, why);
    return replace(field, value) < 0 ? fail(c, "%s: out of memory", name) : 0;
}

/* "on" or "off" (also yes/no, true/false, 1/0, any case), for flags set by a variable. */
static int set_bool(struct ctx *c, const char *name, const char *value, bool *out) {
    static const char *const yes[] = {"on", "yes", "true", "1"}, *const no[] = {"off", "no",
                                                                                 "false", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(value, yes[i]) == 0 || strcasecmp(value, no[i]) == 0) {
            *out = strcasecmp(value, yes[i]) == 0;
            return 0;
        }
    }
    return fail(c, "%s: '%s' is neither on nor off", name, value);
}

/* The metrics endpoint's address: "off", or HOST:PORT with a numeric IPv4 host,
 * "localhost", or a bracketed IPv6 address ("[::1]:9808"), and a port 0..65535 (0: any
 * free port, which the log then names). Kept split, ready for green_tcp_listen. */
static int set_listen(struct ctx *c, const char *name, const char *value) {
    struct wd_options *o = &c->o;
    if (strcasecmp(value, "off") == 0) {
        free(o->http_host);
        o->http_host = NULL;
        o->http_port = 0;
        return 0;
    }
    const char *colon = strrchr(value, ':');
    char host[64];
    if (colon == NULL || colon == value || (size_t)(colon - value) >= sizeof host)
        return fail(c, "%s: '%s' is not ADDR:PORT (e.g. 127.0.0.1:9808) or off", name, value);
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
        return fail(c, "%s: '%s' is not a numeric IPv4 address, [IPv6 address] or localhost",
                    name, value);
    long port = 0;
    if (set_number(c, name, colon + 1, 0, 65535, false, &port) < 0)
        return -1;
    if (replace(&o->http_host, host) < 0)
        return fail(c, "%s: out of memory", name);
    o->http_port = (int)port;
    return 0;
}

/* Apply one value from the current source. name is the option as the user wrote it. */
static int set_option(struct ctx *c, enum opt_id id, const char *name, const char *value) {
    struct wd_options *o = &c->o;
    long v = 0;
    if (*value == '\0')
        return fail(c, "%s: empty value", name);
    switch (id) {
    case OPT_POOL:
        if (strcasecmp(value, "green") == 0 || strcasecmp(value, "gevent") == 0)
            o->pool = WD_POOL_GREEN;
        else if (strcasecmp(value, "solo") == 0)
            o->pool = WD_POOL_SOLO;
        else
            return fail(c, "unknown pool '%s' (choose green or solo)", value);
        return 0;
    case OPT_CONCURRENCY:
        if (set_number(c, name, value, 1, 1000000, false, &v) < 0)
            return -1;
        o->concurrency = (int)v;
        return 0;
    case OPT_QUEUES:
        return set_queues(c, name, value);
    case OPT_BROKER:
        return set_url(c, name, value, &o->broker, &o->broker_redacted);
    case OPT_RESULT_BACKEND:
        return set_url(c, name, value, &o->result_backend, &o->result_backend_redacted);
    case OPT_PREFIX:
        if (check_name(c, name, "prefix", value, NULL) < 0)
            return -1;
        return replace(&o->prefix, value) < 0 ? fail(c, "%s: out of memory", name) : 0;
    case OPT_HOSTNAME:
        return set_hostname(c, name, value);
    case OPT_PREFETCH:
        if (set_number(c, name, value, 1, 1000000, false, &v) < 0)
            return -1;
        o->prefetch = (int)v;
        c->prefetch_set = true;
        return 0;
    case OPT_RESULT_EXPIRES:
        return set_number(c, name, value, 0, 315360000, false, &o->result_expires);
    case OPT_SHUTDOWN_TIMEOUT:
        return set_number(c, name, value, 0, 86400, false, &o->shutdown_timeout);
    case OPT_LOGLEVEL:
        if (wd_log_level_parse(value, &o->loglevel) < 0)
            return fail(c, "unknown log level '%s' (choose debug, info, warning or error)", value);
        return 0;
    case OPT_MAX_MESSAGE_SIZE:
        if (set_number(c, name, value, 1024, 512L << 20, true, &v) < 0)
            return -1;
        o->max_message_size = (size_t)v;
        return 0;
    case OPT_HEARTBEAT:
        if (set_number(c, name, value, 1, 3600, false, &v) < 0)
            return -1;
        o->heartbeat = (int)v;
        return 0;
    case OPT_MAX_REDELIVERIES:
        if (set_number(c, name, value, 0, 1000, false, &v) < 0)
            return -1;
        o->max_redeliveries = (int)v;
        return 0;
    case OPT_HTTP_DENY:
        return set_policy(c, name, value, &o->http_deny);
    case OPT_HTTP_ALLOW:
        return set_policy(c, name, value, &o->http_allow);
    case OPT_HTTP:
        return set_listen(c, name, value);
    case OPT_EVENTS:
        return set_bool(c, name, value, &o->events);
    case OPT_PROCESSES:
        if (set_number(c, name, value, 1, 1024, false, &v) < 0)
            return -1;
        o->processes = (int)v;
        return 0;
    case OPT_MAX_TASKS_PER_CHILD:
        return set_number(c, name, value, 0, 1000000000, false, &o->max_tasks_per_child);
    case OPT_MAX_MEMORY_PER_CHILD:
        return set_number(c, name, value, 0, 1L << 30, false, &o->max_memory_per_child);
    default:
        return 0; /* --config, --help and --version are handled by the caller */
    }
}

/* The config-file callback: keys are the environment names. */
static int file_entry(void *ud, const char *key, const char *value, int line, char *errbuf,
                      size_t errlen) {
    struct ctx *c = ud;
    (void)errbuf, (void)errlen; /* fail() writes into c->errbuf, which is the same buffer */
    c->src.line = line;
    for (size_t i = 0; i < NOPTS; i++)
        if (optdefs[i].env && optdefs[i].id != OPT_CONFIG && strcmp(optdefs[i].env, key) == 0)
            return set_option(c, optdefs[i].id, key, value);
    return fail(c, "unknown key '%s'", key);
}

/* Read the whole config file (at most 1 MiB: it is a few lines) and apply it. how names
 * the option that named the file, for the message when it cannot be read. */
static int apply_file(struct ctx *c, const char *path, const char *how) {
    FILE *f = fopen(path, "re");
    char *text = NULL;
    size_t len = 0;
    const size_t max = 1 << 20;
    if (f != NULL) {
        text = malloc(max + 1);
        if (text != NULL)
            len = fread(text, 1, max + 1, f);
    }
    if (f == NULL || text == NULL || ferror(f) || len > max) {
        const char *why = f == NULL || ferror(f) ? strerror(errno)
                          : text == NULL         ? "out of memory"
                                                 : "larger than 1 MiB";
        int r = fail(c, "%s: cannot read config file '%s': %s", how, path, why);
        if (f != NULL)
            fclose(f);
        free(text);
        return r;
    }
    fclose(f);
    c->src = (struct source){.file = path};
    int r = wd_conffile_parse(text, len, path, file_entry, c, c->errbuf, c->errlen);
    free(text);
    return r;
}

/* An unknown option, or an abbreviation of more than one (getopt_long accepts unique
 * abbreviations such as --conc, and rejects --con without saying why). */
static int unknown_option(struct ctx *c, const char *shown) {
    char matches[256] = "";
    int n = 0;
    size_t len = strlen(shown);
    for (size_t i = 0; len > 2 && shown[1] == '-' && i < NOPTS; i++) {
        if (strncmp(optdefs[i].name, shown + 2, len - 2) == 0) {
            size_t used = strlen(matches);
            snprintf(matches + used, sizeof matches - used, "%s--%s", n ? " or " : "",
                     optdefs[i].name);
            n++;
        }
    }
    if (n > 1)
        return fail(c, "ambiguous option '%s' (could be %s)", shown, matches);
    return fail(c, "unknown option '%s' (see workerd --help)", shown);
}

/* The first pass: collect argv's values into cli[], act on --help and --version.
 * Returns 0, 1 (help or version printed) or -1. */
static int scan_argv(struct ctx *c, int argc, char *const argv[], const char *cli[]) {
    struct option longopts[NOPTS + 1];
    char shortopts[3 + 2 * NOPTS] = "+:"; /* '+': never permute argv; ':': report ':' */
    size_t ns = 2;
    for (size_t i = 0; i < NOPTS; i++) {
        const struct optdef *d = &optdefs[i];
        longopts[i] =
            (struct option){d->name, d->arg ? required_argument : no_argument, NULL, (int)d->id};
        if (d->letter) {
            shortopts[ns++] = (char)d->letter;
            if (d->arg)
                shortopts[ns++] = ':';
        }
    }
    shortopts[ns] = '\0';
    longopts[NOPTS] = (struct option){0};

    /* optind = 0 makes glibc reinitialise getopt completely (including the position
     * inside a group of short options), so a second load (a reload) starts afresh. */
    optind = 0;
    opterr = 0;
    c->src = (struct source){.plain = true};
    int ch;
    while ((ch = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
        const char *bad = argv[optind - 1];
        if (ch == '?' || ch == ':') {
            char shown[64];
            if (optopt > 0 && optopt < 256)
                snprintf(shown, sizeof shown, "-%c", optopt);
            else
                snprintf(shown, sizeof shown, "%.*s", (int)strcspn(bad, "="), bad);
            if (ch == ':')
                return fail(c, "option '%s' needs a value", shown);
            if (optopt >= OPT_POOL && optopt < OPT_END) /* a flag given "=value" */
                return fail(c, "option '%s' takes no value", shown);
            return unknown_option(c, shown);
        }
        for (size_t i = 0; i < NOPTS; i++)
            if (optdefs[i].letter == ch)
                ch = (int)optdefs[i].id;
        if (ch == OPT_HELP) {
            wd_options_usage(stdout);
            fflush(stdout);
            return 1;
        }
        if (ch == OPT_VERSION) {
            printf("workerd %s\n", wd_version());
            fflush(stdout);
            return 1;
        }
        cli[ch - OPT_POOL] = optarg ? optarg : "on"; /* a flag (-E) sets "on" */
    }
    if (optind < argc)
        return fail(c, "unexpected argument '%s' (workerd takes options only)", argv[optind]);
    return 0;
}

int wd_options_load(struct wd_options *opts, int argc, char *const argv[], wd_getenv_fn getenv_fn,
                    char *errbuf, size_t errlen) {
    struct ctx c = {.errbuf = errbuf, .errlen = errlen};
    const char *cli[NOPTS] = {0};
    char name[64];
    memset(opts, 0, sizeof *opts);
    errbuf[0] = '\0';

    int r = scan_argv(&c, argc, argv, cli);
    if (r != 0)
        return r;
    c.src = (struct source){0};

    /* Defaults first: the same validation path as any other layer. */
    for (size_t i = 0; i < NOPTS; i++)
        if (optdefs[i].deflt && set_option(&c, optdefs[i].id, "default", optdefs[i].deflt) < 0)
            goto fail;

    const char *config = cli[OPT_CONFIG - OPT_POOL];
    const char *config_how = "--config";
    if (config == NULL && getenv_fn != NULL) {
        config = getenv_fn("WORKERD_CONFIG");
        config_how = "WORKERD_CONFIG";
        c.src = (struct source){.env = true};
        if (config != NULL && *config == '\0')
            config = NULL;
    }
    if (config != NULL) {
        if (apply_file(&c, config, config_how) < 0 || replace(&c.o.config_path, config) < 0)
            goto fail;
    }

    c.src = (struct source){.env = true};
    for (size_t i = 0; getenv_fn != NULL && i < NOPTS; i++) {
        const struct optdef *d = &optdefs[i];
        const char *value = d->env && d->id != OPT_CONFIG ? getenv_fn(d->env) : NULL;
        if (value != NULL && *value != '\0' && set_option(&c, d->id, d->env, value) < 0)
            goto fail;
    }

    c.src = (struct source){0};
    for (size_t i = 0; i < NOPTS; i++) {
        snprintf(name, sizeof name, "--%s", optdefs[i].name);
        if (cli[i] != NULL && set_option(&c, optdefs[i].id, name, cli[i]) < 0)
            goto fail;
    }

    /* Derived values. */
    struct wd_options *o = &c.o;
    if (o->hostname == NULL && set_hostname(&c, "--hostname", NULL) < 0)
        goto fail;
    if (o->pool == WD_POOL_SOLO)
        o->concurrency = 1;
    if (!c.prefetch_set)
        o->prefetch = o->concurrency;
    if (o->result_backend == NULL) {
        if (replace(&o->result_backend, o->broker) < 0 ||
            replace(&o->result_backend_redacted, o->broker_redacted) < 0) {
            fail(&c, "out of memory");
            goto fail;
        }
    }
    o->heartbeat_ttl = 3 * o->heartbeat;
    *opts = c.o;
    return 0;

fail:
    wd_options_free(&c.o);
    return -1;
}

void wd_options_free(struct wd_options *o) {
    free_queues(o);
    free(o->broker);
    free(o->broker_redacted);
    free(o->result_backend);
    free(o->result_backend_redacted);
    free(o->prefix);
    free(o->hostname);
    free(o->config_path);
    free(o->http_deny);
    free(o->http_allow);
    free(o->http_host);
    memset(o, 0, sizeof *o);
}

void wd_options_usage(FILE *out) {
    fprintf(out, "Usage: workerd [OPTION]...\n"
                 "Run tasks from Redis queues on green threads, like celery worker -P gevent.\n"
                 "\n"
                 "Each option can also be set by the environment variable shown with it, or by\n"
                 "a line VARIABLE=VALUE in the config file. The command line overrides the\n"
                 "environment, which overrides the config file, which overrides the defaults.\n"
                 "\n");
    for (size_t i = 0; i < NOPTS; i++) {
        const struct optdef *d = &optdefs[i];
        char opt[80];
        int n = d->letter ? snprintf(opt, sizeof opt, "  -%c, --%s", d->letter, d->name)
                          : snprintf(opt, sizeof opt, "      --%s", d->name);
        if (d->arg)
            snprintf(opt + n, sizeof opt - (size_t)n, "=%s", d->arg);
        fprintf(out, "%s\n", opt);
        for (const char *p = d->help; *p;) {
            size_t len = strcspn(p, "\n");
            fprintf(out, "        %.*s\n", (int)len, p);
            p += len + (p[len] == '\n');
        }
        if (d->env && d->deflt)
            fprintf(out, "        [%s; default: %s]\n", d->env, d->deflt);
        else if (d->env)
            fprintf(out, "        [%s]\n", d->env);
    }
    fprintf(out, "\nworkerd %s\n", wd_version());
}
