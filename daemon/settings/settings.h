/*
 * settings.h - the settings of workerd and workerctl: one table of every option, the checks
 * of their values, and the layers they come from, built-in defaults < config file <
 * WORKERD_* environment < command line.
 *
 * The table (settings_opts, in settings_table.c) describes each option once: its long and
 * short names, its environment variable (which is also its config-file key), its default,
 * the kind of value and its range, its help text, and whether a new value can be applied
 * to a running worker (SETTINGS_LIVE) or needs a restart (SETTINGS_RESTART). Everything
 * else is driven by it: workerd's getopt_long parser and --help (wd_options.h), the shared
 * options of workerctl (daemon/ctl/ctl_opts.c), the file and environment layers here, and
 * the comparison a reload makes.
 *
 * The programs parse their own command lines (workerd takes options only, workerctl has
 * commands and operands) and hand settings_load the values they found, by option; the
 * layering, the checks and the messages are all here, so both programs accept the same
 * values and say the same thing about a bad one:
 *     workerd: --concurrency: 'abc' is not a number (from the command line)
 *     workerctl: WORKERD_PREFIX: key prefix is longer than 64 bytes (from
 *                /etc/workerd/workerd.conf line 3)
 * A bad value in a lower layer is an error even if a higher layer overrides it: a broken
 * config file should be fixed before the day the override goes away.
 *
 * Names that become part of Redis keys (the prefix, queue names) are checked with the
 * broker's own checks (broker_keys.h), URLs with the runtime's own parser
 * (green_redis_url_parse): what passes here is exactly what the worker and workerctl can
 * use later.
 *
 * Never yields. settings_load does blocking file I/O (the config file) and calls the
 * caller's getenv function; call it from the main thread, at start-up or on reload. The
 * rest is pure and may be called anywhere.
 */
#ifndef WORKERD_SETTINGS_H
#define WORKERD_SETTINGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Every option, in the order of the help text. */
enum settings_id {
    SETTINGS_POOL,
    SETTINGS_CONCURRENCY,
    SETTINGS_QUEUES,
    SETTINGS_PROTOCOL,
    SETTINGS_CELERY_QUEUES,
    SETTINGS_CELERY_TASK,
    SETTINGS_CELERY_RESULT_EXTENDED,
    SETTINGS_CELERY_TRACK_STARTED,
    SETTINGS_BROKER,
    SETTINGS_RESULT_BACKEND,
    SETTINGS_PREFIX,
    SETTINGS_HOSTNAME,
    SETTINGS_PREFETCH,
    SETTINGS_RESULT_EXPIRES,
    SETTINGS_SHUTDOWN_TIMEOUT,
    SETTINGS_LOGLEVEL,
    SETTINGS_MAX_MESSAGE_SIZE,
    SETTINGS_MAX_RESULT_SIZE,
    SETTINGS_HEARTBEAT,
    SETTINGS_MAX_REDELIVERIES,
    SETTINGS_SOFT_TIME_LIMIT,
    SETTINGS_TIME_LIMIT,
    SETTINGS_BLOCKING_WARN,
    SETTINGS_RATE_LIMIT,
    SETTINGS_HTTP_HOST_RATE,
    SETTINGS_HTTP_HOST_CONCURRENCY,
    SETTINGS_BEAT,
    SETTINGS_HTTP_DENY,
    SETTINGS_HTTP_ALLOW,
    SETTINGS_HTTP_METHODS,
    SETTINGS_HTTP,
    SETTINGS_EVENTS,
    SETTINGS_PROCESSES,
    SETTINGS_MAX_TASKS_PER_CHILD,
    SETTINGS_MAX_MEMORY_PER_CHILD,
    SETTINGS_LOAD,
    SETTINGS_EXEC_TASK,
    SETTINGS_EXEC_ENV,
    SETTINGS_EXEC_MAX_OUTPUT,
    SETTINGS_CONFIG,
    SETTINGS_HELP,
    SETTINGS_VERSION,
    SETTINGS_LIST_TASKS,
    SETTINGS_COUNT
};

/* A set of options, one bit per id: the options a program reads. */
typedef uint64_t settings_set;
#define SETTINGS_BIT(id) ((settings_set)1 << (id))
#define SETTINGS_ALL (SETTINGS_BIT(SETTINGS_COUNT) - 1)

/* What a value is, and so how it is checked and stored (struct settings_value). */
enum settings_kind {
    SETTINGS_KIND_NUMBER,   /* a whole decimal number in lo..hi: num */
    SETTINGS_KIND_SIZE,     /* the same with an optional K, M or G suffix (x 1024^n): num */
    SETTINGS_KIND_SECONDS,  /* seconds, fractions allowed, in 0..hi (settings_parse_seconds):
                               seconds */
    SETTINGS_KIND_FLAG,     /* on/off, yes/no, true/false, 1/0 (any case): num 1 or 0; a flag
                               without a value on the command line */
    SETTINGS_KIND_CHOICE,   /* one of choices (any case): text, the choice it means */
    SETTINGS_KIND_URL,      /* a Redis URL (green_redis_url_parse): text, redacted */
    SETTINGS_KIND_PREFIX,   /* a Redis key prefix (broker_check_prefix): text */
    SETTINGS_KIND_QUEUES,   /* queue names, comma-separated (broker_check_queue_name), blanks
                               around each dropped, none twice: items, nitems */
    SETTINGS_KIND_HOSTNAME, /* a node name with %h %n %d %% expanded: text, expanded */
    SETTINGS_KIND_LISTEN,   /* "off" (text NULL) or ADDR:PORT with a numeric IPv4 address,
                               localhost or [IPv6]: text the numeric address, num the port */
    SETTINGS_KIND_CHECKED,  /* text checked by the program's settings_check_fn */
    SETTINGS_KIND_LIST,     /* entries separated by commas, "\," for a comma inside one and
                               "\\" for a backslash, none empty, each checked by the
                               program's settings_check_fn: items, nitems */
    SETTINGS_KIND_PATHS,    /* file paths, comma-separated, blanks around each dropped, none
                               empty, none twice: items, nitems */
    SETTINGS_KIND_FILE,     /* the config file: text, its path */
    SETTINGS_KIND_ACTION,   /* --help, --version, --list-tasks: no value; the program acts
                               on them */
};

/* What a changed value needs on SIGHUP. Every option with a value is one or the other. */
enum settings_apply {
    SETTINGS_RESTART = 1, /* the worker is built on it: a graceful restart in place */
    SETTINGS_LIVE = 2,    /* applied to the running worker at once */
};

/* One accepted word of a SETTINGS_KIND_CHOICE option. */
struct settings_choice {
    const char *name;  /* as the user may write it (compared in any case) */
    const char *means; /* the name it stands for, or NULL for itself: "gevent" means "green" */
};

/* One option. */
struct settings_opt {
    const char *name;    /* long option, without "--" */
    int letter;          /* short option, or 0 */
    const char *env;     /* environment variable and config key; NULL for an action */
    const char *arg;     /* the value's placeholder in the help; NULL for a flag or action */
    const char *deflt;   /* the default as text, checked like any other value; NULL: none */
    bool deflt_in_words; /* the help says the default in words rather than showing deflt */
    bool repeat;         /* a list the command line may give more than once: the values
                            join, in order, as one comma list (--load a.so --load b.so is
                            --load a.so,b.so); a higher layer still replaces a lower one */
    enum settings_kind kind;
    enum settings_apply apply;
    long lo, hi;                           /* NUMBER, SIZE, SECONDS (hi): the accepted range */
    const struct settings_choice *choices; /* CHOICE: ends with {NULL} */
    const char *noun;                      /* CHOICE: "unknown NOUN 'x' (choose CHOOSE)" */
    const char *choose;
    const char *help; /* lines separated by '\n' */
};

/* The table, indexed by enum settings_id. */
extern const struct settings_opt settings_opts[SETTINGS_COUNT];

/* The value of one option after every layer. Strings are owned (settings_free). */
struct settings_value {
    bool set;       /* false: no layer gave it and it has no default */
    long num;       /* NUMBER, SIZE; FLAG: 1 or 0; LISTEN: the port */
    double seconds; /* SECONDS */
    char *text;     /* CHOICE, URL, PREFIX, HOSTNAME, CHECKED, FILE; LISTEN: the address */
    char *redacted; /* URL: text with its password replaced by *** (for logs) */
    char **items;   /* QUEUES, PATHS: the entries in order; LIST: unescaped */
    size_t nitems;
};

struct settings {
    struct settings_value v[SETTINGS_COUNT]; /* indexed by enum settings_id */
};

/* Reads one environment variable; getenv and secure_getenv fit. */
typedef char *(*settings_getenv_fn)(const char *name);

/* Checks a SETTINGS_KIND_CHECKED value, or one entry of a SETTINGS_KIND_LIST: 0, or -1
 * with a one-line reason in why. */
typedef int (*settings_check_fn)(enum settings_id id, const char *value, char *why, size_t whylen);

/* What settings_load reads. */
struct settings_sources {
    const char *program;             /* "workerd", "workerctl": the first word of messages */
    const char *cli[SETTINGS_COUNT]; /* the command line's values by id, or NULL; "on" for a
                                        flag or action given; cli[SETTINGS_CONFIG] names the
                                        file; a repeat option's values joined with ',' */
    settings_getenv_fn getenv_fn;    /* NULL: no environment */
    settings_set uses;               /* the options the program reads; a config-file key of
                                        another option is skipped, unchecked */
    bool unknown_keys_ok;            /* a config-file key no option has is skipped rather
                                        than an error (workerctl: the file is workerd's) */
    settings_check_fn check;         /* for the used SETTINGS_KIND_CHECKED options */
};

/* Parse a number of seconds, fractions allowed, in 0..max: "0", "2", "0.5", ".5", "1e-3";
 * not "1s", "nan", "inf", " 1", "1e999". 0 with the value in *out (may be NULL), or -1 with
 * a one-line reason in why (may be NULL): "'5s' is not a number of seconds", "'61' is out
 * of range, expected 0..60 seconds". The one parser of seconds of both programs (the
 * SECONDS options, workerctl's --wait). Pure. */
int settings_parse_seconds(const char *text, double max, double *out, char *why, size_t whylen);

/* Fill *s from the layers: the defaults, the config file (cli[SETTINGS_CONFIG], else
 * WORKERD_CONFIG from the environment; an empty one counts as unset), the environment (an
 * empty variable counts as unset), then the command line; an empty value on the command
 * line or in the file is an error for every option. Only the options in src->uses are
 * read. *s is output only: its previous contents are ignored, not freed, so a reload loads
 * into a fresh struct and swaps it in only on success. Returns 0 (release *s with
 * settings_free), or -1 with a one-line message (no newline) in errbuf, "<program>: ...",
 * and *s zeroed. */
int settings_load(struct settings *s, const struct settings_sources *src, char *errbuf,
                  size_t errlen);

/* Free what *s owns and zero it. A zeroed struct may be freed again. */
void settings_free(struct settings *s);

/* The first option marked apply whose value differs between a and b, or -1 when they all
 * agree: with SETTINGS_RESTART, whether a reload needs a restart, and which option says so. */
int settings_first_change(const struct settings *a, const struct settings *b,
                          enum settings_apply apply);

/* Print the options of uses, in table order, each as its names, its help indented, and
 * "[VARIABLE; default: VALUE]" (workerd --help's format). */
void settings_print_help(FILE *out, settings_set uses);

/* "0.1.0": the version of workerd and workerctl. A static string. */
const char *settings_version(void);

#endif
