/*
 * wd_options.h - workerd's settings as the worker uses them: the options of the shared
 * settings table (settings.h) read from every layer, built-in defaults < config file <
 * WORKERD_* environment < command line, and turned into typed fields with the values that
 * follow from others (the prefetch, the result backend, solo's concurrency, the heartbeat
 * TTL).
 *
 * This file owns workerd's command line: getopt_long over the table's names (options only,
 * no operands, unique abbreviations accepted), --help and --version. The checks, the
 * layers and the messages are the settings module's, the same for workerctl:
 *     workerd: --concurrency: 'abc' is not a number (from the command line)
 *     workerd: WORKERD_CONCURRENCY: '0' is out of range, expected 1..1000000 (from the
 *              environment)
 *     workerd: WORKERD_QUEUES: empty queue name in 'a,,b' (from /etc/workerd/workerd.conf
 *              line 7)
 *
 * Not thread-safe (getopt_long keeps global state); call from the main thread, at start-up
 * and on reload. Never yields; does blocking file I/O (the config file).
 */
#ifndef WORKERD_WD_OPTIONS_H
#define WORKERD_WD_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "settings.h"
#include "wd_log.h"

enum wd_pool {
    WD_POOL_GREEN, /* up to concurrency tasks at once, each on a greenlet */
    WD_POOL_SOLO,  /* one task at a time, on the same runtime (concurrency forced to 1) */
};

/* The settings. The strings point into `all`, which owns them; wd_options_free frees the
 * whole. */
struct wd_options {
    enum wd_pool pool;
    int concurrency; /* tasks in flight at once: 1..1,000,000 (solo: 1) */
    char **queues;   /* consumed in this strict priority order; never empty */
    size_t nqueues;
    char *broker;          /* the URL as given: it may hold a password, so never
                              log it; log broker_redacted */
    char *broker_redacted; /* the URL with its password replaced by *** */
    char *result_backend;  /* the same for results; default: the broker's */
    char *result_backend_redacted;
    char *prefix;          /* Redis key prefix: "<prefix>:queue:<name>" */
    char *hostname;        /* the node name, %h %n %d %% expanded */
    int prefetch;          /* most messages taken from Redis in one fetch (never more
                              than the free slots); default: concurrency */
    long result_expires;   /* seconds a result is kept; 0 = forever */
    long shutdown_timeout; /* seconds a warm shutdown waits for running tasks */
    enum wd_log_level loglevel;
    char *config_path;          /* the config file read, or NULL */
    size_t max_message_size;    /* bytes; a larger message is dead-lettered */
    size_t max_result_size;     /* bytes of JSON; a larger result is a ResultTooLarge FAILURE */
    int heartbeat;              /* seconds between heartbeats */
    int heartbeat_ttl;          /* seconds: 3 * heartbeat; a worker silent longer is dead */
    int max_redeliveries;       /* a message redelivered more often is dead-lettered */
    double soft_time_limit;     /* seconds; a task's default soft time limit; 0: none */
    double time_limit;          /* seconds; its default hard time limit; 0: none */
    double blocking_warn;       /* seconds a task may run without yielding unlogged; 0: off */
    char *http_deny;            /* the http.* tasks' address policy (task_http_policy.h): */
    char *http_allow;           /* validated comma lists as given, or NULL for none */
    char *http_methods;         /* --http-methods: extra methods for http.request, or NULL */
    char *rate_limit;           /* --rate-limit: "TASK=RATE,..." validated, or NULL */
    char *http_host_rate;       /* --http-host-rate: a RATE (broker_rate_parse), or NULL */
    long http_host_concurrency; /* --http-host-concurrency: requests in flight per host over
                                   all workers; 0: no limit */
    char *beat;                 /* --beat: the beat file's path (beat_file.h), or NULL */
    char *http_host;            /* --http: the metrics endpoint's numeric address, or NULL */
    int http_port;              /* its port (0: any free one) */
    int http_base_port;         /* under the supervisor: PORT, child 0's (child k has PORT+k) */
    bool events;                /* -E: publish task events on PREFIX:events */
    int processes;              /* worker processes; > 1 runs the supervisor */
    long max_tasks_per_child;   /* 0: no limit; else a child exits after this many tasks */
    long max_memory_per_child;  /* KiB; 0: no limit */
    char **celery_tasks;        /* --celery-task: "NAME=TASK" entries */
    size_t ncelery_tasks;
    bool celery_result_extended; /* --celery-result-extended */
    bool celery_track_started;   /* --celery-track-started */
    char **queues_owned;         /* the queues as workerd names them inside: -Q's, marked '=' with
                                    --protocol celery, then --celery-queues's, marked (broker_keys.h) */
    char **exec_tasks;           /* --exec-task: "NAME=PATH" entries (task_exec.h) */
    size_t nexec_tasks;
    char **exec_env; /* --exec-env: "KEY=VALUE" entries for the programs */
    size_t nexec_env;
    size_t exec_max_output; /* --exec-max-output: stdout bytes a program may write */
    char **load;            /* --load: plugin paths, in the order given */
    size_t nload;
    bool list_tasks;     /* --list-tasks: print the task names and exit */
    struct settings all; /* every option's value as loaded, which the fields above
                            are read from: what a reload compares */
};

/* Reads one environment variable; getenv and secure_getenv fit. */
typedef char *(*wd_getenv_fn)(const char *name);

/* Fill *opts from the layers: defaults < config file < environment < argv. argv is not
 * modified (options must come before any operand; there are no operands). getenv_fn may
 * be NULL (no environment). An empty environment variable counts as unset; an empty value on
 * the command line or in the file is an error for every option.
 *
 * *opts is output only: its previous contents are ignored, not freed, so a reload loads
 * into a fresh struct and swaps it in only on success. Returns:
 *    0  *opts holds the settings; release them with wd_options_free;
 *    1  --help or --version was given and printed to stdout: exit 0; *opts is zeroed
 *       (--list-tasks is not acted on here: it sets opts->list_tasks, since the plugins
 *       must be loaded first);
 *   -1  an error: a one-line message (no newline) in errbuf; *opts is zeroed.
 * Callable any number of times (getopt's state is reset on each call). */
int wd_options_load(struct wd_options *opts, int argc, char *const argv[], wd_getenv_fn getenv_fn,
                    char *errbuf, size_t errlen);

/* Free what *opts owns and zero it. A zeroed struct may be freed again. */
void wd_options_free(struct wd_options *opts);

/* Print the help text (every option, its variable, its default) to out. */
void wd_options_usage(FILE *out);

/* The first option whose new value needs a restart (settings_first_change over every
 * SETTINGS_RESTART option), as its name without "--", or NULL when none changed. */
const char *wd_options_restart_needed(const struct wd_options *old, const struct wd_options *fresh);

/* "0.1.0": the version printed by --version as "workerd 0.1.0" (settings_version). A
 * static string. */
const char *wd_version(void);

/* The name of a pool ("green", "solo"); a static string. */
const char *wd_pool_name(enum wd_pool pool);

#endif
