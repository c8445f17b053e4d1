/*
 * wd_options.c - workerd's command line and typed settings (wd_options.h) over the shared
 * settings module (settings.h).
 *
 * wd_options_load works in two passes. The first runs getopt_long over argv, with the long
 * and short names of the settings table, only to collect the values (and to act on --help
 * and --version at once); nothing is checked yet, because the config file, which the
 * command line may name, must be applied first. The second is settings_load, which applies
 * the layers in precedence order - defaults, config file, environment, command line -
 * checking each value with the layer it came from in the message. Then the typed fields
 * are read from the values, and the derived ones settled: prefetch and result backend
 * defaults, solo's concurrency, the heartbeat TTL.
 *
 * Runs on the main thread's stack at start-up or reload; never yields.
 */
#include "wd_options.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker_msg.h"
#include "broker_rate.h"
#include "task.h"
#include "task_exec.h"
#include "task_http_policy.h"

#define OPT_BASE 256 /* above every char, so getopt_long can return ids for long-only ones */

const char *wd_version(void) {
    return settings_version();
}

const char *wd_pool_name(enum wd_pool pool) {
    return pool == WD_POOL_SOLO ? "solo" : "green";
}

/* A mistake in the shape of the command line itself (an unknown option, a missing value):
 * no "(from ...)", it could only be the command line. Returns -1. */
static int fail(char *errbuf, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(char *errbuf, size_t errlen, const char *fmt, ...) {
    char what[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    snprintf(errbuf, errlen, "workerd: %s", what);
    return -1;
}

/* An unknown option, or an abbreviation of more than one (getopt_long accepts unique
 * abbreviations such as --conc, and rejects --con without saying why). */
static int unknown_option(const char *shown, char *errbuf, size_t errlen) {
    char matches[256] = "";
    int n = 0;
    size_t len = strlen(shown);
    for (int id = 0; len > 2 && shown[1] == '-' && id < SETTINGS_COUNT; id++) {
        if (strncmp(settings_opts[id].name, shown + 2, len - 2) == 0) {
            size_t used = strlen(matches);
            snprintf(matches + used, sizeof matches - used, "%s--%s", n ? " or " : "",
                     settings_opts[id].name);
            n++;
        }
    }
    if (n > 1)
        return fail(errbuf, errlen, "ambiguous option '%s' (could be %s)", shown, matches);
    return fail(errbuf, errlen, "unknown option '%s' (see workerd --help)", shown);
}

/* Add value to a repeat option's list in cli[id]: the first value is used as it is, later
 * ones are joined with ',' into a string of joined[id] (freed by the caller). */
static int add_repeat(int id, const char *value, const char *cli[], char *joined[], char *errbuf,
                      size_t errlen) {
    if (cli[id] == NULL) {
        cli[id] = value;
        return 0;
    }
    char *both = NULL;
    if (asprintf(&both, "%s,%s", cli[id], value) < 0)
        return fail(errbuf, errlen, "out of memory");
    free(joined[id]);
    cli[id] = joined[id] = both;
    return 0;
}

/* The first pass: collect argv's values into cli[], act on --help and --version.
 * Returns 0, 1 (help or version printed) or -1. */
static int scan_argv(int argc, char *const argv[], const char *cli[], char *joined[], char *errbuf,
                     size_t errlen) {
    struct option longopts[SETTINGS_COUNT + 1];
    char shortopts[3 + 2 * SETTINGS_COUNT] = "+:"; /* '+': never permute argv; ':': report ':' */
    size_t ns = 2;
    for (int id = 0; id < SETTINGS_COUNT; id++) {
        const struct settings_opt *d = &settings_opts[id];
        longopts[id] =
            (struct option){d->name, d->arg ? required_argument : no_argument, NULL, OPT_BASE + id};
        if (d->letter) {
            shortopts[ns++] = (char)d->letter;
            if (d->arg)
                shortopts[ns++] = ':';
        }
    }
    shortopts[ns] = '\0';
    longopts[SETTINGS_COUNT] = (struct option){0};

    /* optind = 0 makes glibc reinitialise getopt completely (including the position
     * inside a group of short options), so a second load (a reload) starts afresh. */
    optind = 0;
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
        const char *bad = argv[optind - 1];
        if (ch == '?' || ch == ':') {
            char shown[64];
            if (optopt > 0 && optopt < OPT_BASE)
                snprintf(shown, sizeof shown, "-%c", optopt);
            else
                snprintf(shown, sizeof shown, "%.*s", (int)strcspn(bad, "="), bad);
            if (ch == ':')
                return fail(errbuf, errlen, "option '%s' needs a value", shown);
            if (optopt >= OPT_BASE && optopt < OPT_BASE + SETTINGS_COUNT) /* a flag "=value" */
                return fail(errbuf, errlen, "option '%s' takes no value", shown);
            return unknown_option(shown, errbuf, errlen);
        }
        int id = ch - OPT_BASE;
        for (int i = 0; i < SETTINGS_COUNT; i++)
            if (settings_opts[i].letter == ch)
                id = i;
        if (id == SETTINGS_HELP) {
            wd_options_usage(stdout);
            fflush(stdout);
            return 1;
        }
        if (id == SETTINGS_VERSION) {
            printf("workerd %s\n", wd_version());
            fflush(stdout);
            return 1;
        }
        if (settings_opts[id].repeat) {
            if (add_repeat(id, optarg, cli, joined, errbuf, errlen) < 0)
                return -1;
            continue;
        }
        cli[id] = optarg ? optarg : "on"; /* a flag (-E) sets "on" */
    }
    if (optind < argc)
        return fail(errbuf, errlen, "unexpected argument '%s' (workerd takes options only)",
                    argv[optind]);
    return 0;
}

/* --rate-limit's list: TASK=RATE items, comma-separated, blanks around an item allowed,
 * no task twice. */
static int check_rate_limits(const char *value, char *why, size_t whylen) {
    char *copy = strdup(value), *save = NULL;
    if (!copy) {
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    int rc = 0, n = 0;
    const char *seen[64];
    for (char *item = strtok_r(copy, ",", &save); item && rc == 0;
         item = strtok_r(NULL, ",", &save)) {
        while (isspace((unsigned char)*item))
            item++;
        size_t len = strlen(item);
        while (len > 0 && isspace((unsigned char)item[len - 1]))
            item[--len] = '\0';
        char *eq = strchr(item, '=');
        const char *bad;
        char reason[160];
        if (!eq) {
            snprintf(why, whylen, "'%s' is not TASK=RATE (e.g. echo=20/s)", item);
            rc = -1;
        } else if (*eq = '\0', (bad = broker_rate_check_name(item)) != NULL) {
            snprintf(why, whylen, "task '%.300s': %s", item, bad);
            rc = -1;
        } else if (broker_rate_parse(eq + 1, NULL, reason, sizeof reason) != 0) {
            snprintf(why, whylen, "task '%.300s': %s", item, reason);
            rc = -1;
        } else {
            for (int i = 0; i < n && rc == 0; i++)
                if (strcmp(seen[i], item) == 0) {
                    snprintf(why, whylen, "task '%.300s' is given two rates", item);
                    rc = -1;
                }
            if (rc == 0 && n == (int)(sizeof seen / sizeof *seen)) {
                snprintf(why, whylen, "more than %d tasks", n);
                rc = -1;
            }
            if (rc == 0)
                seen[n++] = item;
        }
    }
    if (rc == 0 && n == 0) {
        snprintf(why, whylen, "no TASK=RATE given");
        rc = -1;
    }
    free(copy);
    return rc;
}

/* A --celery-task entry: NAME=TASK, both non-empty, NAME without whitespace. */
static int check_celery_task(const char *value, char *why, size_t whylen) {
    const char *eq = strchr(value, '=');
    if (!eq || eq == value || eq[1] == '\0') {
        snprintf(why, whylen, "'%.300s' is not NAME=TASK", value);
        return -1;
    }
    for (const char *p = value; *p; p++)
        if ((unsigned char)*p <= 0x20 || *p == 0x7f) {
            snprintf(why, whylen, "'%.300s' has whitespace or a control character", value);
            return -1;
        }
    return 0;
}

/* The values the settings module leaves to workerd: the http.* tasks' address policy
 * lists and extra methods and the entries of --exec-task and --exec-env (the tasks' to
 * parse), and the rates. */
static int check_value(enum settings_id id, const char *value, char *why, size_t whylen) {
    if (id == SETTINGS_EXEC_TASK)
        return task_exec_check_task(value, why, whylen);
    if (id == SETTINGS_CELERY_TASK)
        return check_celery_task(value, why, whylen);
    if (id == SETTINGS_EXEC_ENV)
        return task_exec_check_env(value, why, whylen);
    if (id == SETTINGS_RATE_LIMIT)
        return check_rate_limits(value, why, whylen);
    if (id == SETTINGS_HTTP_HOST_RATE)
        return broker_rate_parse(value, NULL, why, whylen) == 0 ? 0 : -1;
    if (id == SETTINGS_BEAT)
        return 0; /* a path; the file is read by beat_schedule_load, which names what fails */
    if (id == SETTINGS_HTTP_METHODS) {
        const char *bad = task_http_check_methods(value);
        if (bad == NULL)
            return 0;
        snprintf(why, whylen, "%s", bad);
        return -1;
    }
    return task_http_policy_validate(value, why, whylen);
}

/* The typed fields, from the values (every option has one, but the three without a
 * default), and the values that follow from others. */
/* The queues as workerd names them inside (o->queues_owned): -Q's, each marked as a
 * Celery queue with --protocol celery, then --celery-queues's, marked; a name twice in
 * the same protocol once. 0 or -1 (out of memory). */
static int inner_queues(struct wd_options *o) {
    const struct settings_value *v = o->all.v;
    bool celery = strcmp(v[SETTINGS_PROTOCOL].text, "celery") == 0;
    size_t nq = v[SETTINGS_QUEUES].nitems, nc = v[SETTINGS_CELERY_QUEUES].nitems, n = 0;
    char **q = calloc(nq + nc + 1, sizeof *q);
    if (!q)
        return -1;
    o->queues_owned = q;
    for (size_t i = 0; i < nq + nc; i++) {
        const char *name =
            i < nq ? v[SETTINGS_QUEUES].items[i] : v[SETTINGS_CELERY_QUEUES].items[i - nq];
        bool mark = i < nq ? celery : true;
        char *inner = NULL;
        if (asprintf(&inner, "%s%s", mark ? "=" : "", name) < 0)
            return -1;
        bool seen = false;
        for (size_t k = 0; k < n && !seen; k++)
            seen = strcmp(q[k], inner) == 0;
        if (seen)
            free(inner);
        else
            q[n++] = inner;
    }
    o->queues = q;
    o->nqueues = n;
    return 0;
}

static void read_values(struct wd_options *o) {
    const struct settings_value *v = o->all.v;
    o->pool = strcmp(v[SETTINGS_POOL].text, "solo") == 0 ? WD_POOL_SOLO : WD_POOL_GREEN;
    o->concurrency = (int)v[SETTINGS_CONCURRENCY].num;
    o->queues = v[SETTINGS_QUEUES].items;
    o->nqueues = v[SETTINGS_QUEUES].nitems;
    o->celery_tasks = v[SETTINGS_CELERY_TASK].items;
    o->ncelery_tasks = v[SETTINGS_CELERY_TASK].nitems;
    o->celery_result_extended = v[SETTINGS_CELERY_RESULT_EXTENDED].num != 0;
    o->celery_track_started = v[SETTINGS_CELERY_TRACK_STARTED].num != 0;
    o->broker = v[SETTINGS_BROKER].text;
    o->broker_redacted = v[SETTINGS_BROKER].redacted;
    o->result_backend = v[SETTINGS_RESULT_BACKEND].text;
    o->result_backend_redacted = v[SETTINGS_RESULT_BACKEND].redacted;
    o->prefix = v[SETTINGS_PREFIX].text;
    o->hostname = v[SETTINGS_HOSTNAME].text;
    o->prefetch = (int)v[SETTINGS_PREFETCH].num;
    o->result_expires = v[SETTINGS_RESULT_EXPIRES].num;
    o->shutdown_timeout = v[SETTINGS_SHUTDOWN_TIMEOUT].num;
    wd_log_level_parse(v[SETTINGS_LOGLEVEL].text, &o->loglevel); /* one of its names */
    o->config_path = v[SETTINGS_CONFIG].text;
    o->max_message_size = (size_t)v[SETTINGS_MAX_MESSAGE_SIZE].num;
    o->max_result_size = (size_t)v[SETTINGS_MAX_RESULT_SIZE].num;
    o->heartbeat = (int)v[SETTINGS_HEARTBEAT].num;
    o->max_redeliveries = (int)v[SETTINGS_MAX_REDELIVERIES].num;
    o->soft_time_limit = v[SETTINGS_SOFT_TIME_LIMIT].seconds;
    o->time_limit = v[SETTINGS_TIME_LIMIT].seconds;
    o->blocking_warn = v[SETTINGS_BLOCKING_WARN].seconds;
    o->http_deny = v[SETTINGS_HTTP_DENY].text;
    o->http_allow = v[SETTINGS_HTTP_ALLOW].text;
    o->http_methods = v[SETTINGS_HTTP_METHODS].text;
    o->rate_limit = v[SETTINGS_RATE_LIMIT].text;
    o->http_host_rate = v[SETTINGS_HTTP_HOST_RATE].text;
    o->http_host_concurrency = v[SETTINGS_HTTP_HOST_CONCURRENCY].num;
    o->beat = v[SETTINGS_BEAT].text;
    o->http_host = v[SETTINGS_HTTP].text;
    o->http_port = (int)v[SETTINGS_HTTP].num;
    o->events = v[SETTINGS_EVENTS].num != 0;
    o->processes = (int)v[SETTINGS_PROCESSES].num;
    o->max_tasks_per_child = v[SETTINGS_MAX_TASKS_PER_CHILD].num;
    o->max_memory_per_child = v[SETTINGS_MAX_MEMORY_PER_CHILD].num;
    o->exec_tasks = v[SETTINGS_EXEC_TASK].items;
    o->nexec_tasks = v[SETTINGS_EXEC_TASK].nitems;
    o->exec_env = v[SETTINGS_EXEC_ENV].items;
    o->nexec_env = v[SETTINGS_EXEC_ENV].nitems;
    o->exec_max_output = (size_t)v[SETTINGS_EXEC_MAX_OUTPUT].num;
    o->load = v[SETTINGS_LOAD].items;
    o->nload = v[SETTINGS_LOAD].nitems;

    if (o->pool == WD_POOL_SOLO)
        o->concurrency = 1;
    if (!v[SETTINGS_PREFETCH].set)
        o->prefetch = o->concurrency;
    if (!v[SETTINGS_RESULT_BACKEND].set) {
        o->result_backend = o->broker;
        o->result_backend_redacted = o->broker_redacted;
    }
    o->heartbeat_ttl = 3 * o->heartbeat;
}

int wd_options_load(struct wd_options *opts, int argc, char *const argv[], wd_getenv_fn getenv_fn,
                    char *errbuf, size_t errlen) {
    struct settings_sources src = {
        .program = "workerd", .getenv_fn = getenv_fn, .uses = SETTINGS_ALL, .check = check_value};
    char *joined[SETTINGS_COUNT] = {0};
    memset(opts, 0, sizeof *opts);
    errbuf[0] = '\0';
    int r = scan_argv(argc, argv, src.cli, joined, errbuf, errlen);
    if (r == 0 && settings_load(&opts->all, &src, errbuf, errlen) < 0)
        r = -1;
    if (r == 0) {
        read_values(opts);
        if (inner_queues(opts) != 0) {
            snprintf(errbuf, errlen, "workerd: out of memory");
            r = -1;
        }
        opts->list_tasks = src.cli[SETTINGS_LIST_TASKS] != NULL;
    }
    for (int id = 0; id < SETTINGS_COUNT; id++)
        free(joined[id]);
    return r;
}

void wd_options_free(struct wd_options *o) {
    for (char **q = o->queues_owned; q && *q; q++)
        free(*q);
    free(o->queues_owned);
    settings_free(&o->all);
    memset(o, 0, sizeof *o);
}

const char *wd_options_restart_needed(const struct wd_options *old,
                                      const struct wd_options *fresh) {
    int id = settings_first_change(&old->all, &fresh->all, SETTINGS_RESTART);
    return id < 0 ? NULL : settings_opts[id].name;
}

void wd_options_usage(FILE *out) {
    fprintf(out, "Usage: workerd [OPTION]...\n"
                 "Run tasks from Redis queues on green threads, like celery worker -P gevent.\n"
                 "\n"
                 "Each option can also be set by the environment variable shown with it, or by\n"
                 "a line VARIABLE=VALUE in the config file. The command line overrides the\n"
                 "environment, which overrides the config file, which overrides the defaults.\n"
                 "\n");
    settings_print_help(out, SETTINGS_ALL);
    fprintf(out, "\nworkerd %s\n", wd_version());
}
