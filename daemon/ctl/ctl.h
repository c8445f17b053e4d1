/*
 * ctl.h - the internals shared by workerctl's files (workerctl.c and ctl_*.c): its settings,
 * its option parser, its Redis connections and its output helpers.
 *
 * workerctl is a short-lived command-line client: plain synchronous hiredis, no green
 * runtime, no threads. Every function here runs on the main thread and blocks (at most the
 * connect and command time-outs below, except the waits of ctl_wait_result). Nothing here is
 * thread-safe and nothing needs to be.
 *
 * Exit codes (enum ctl_exit) are the contract with scripts:
 *   0 done (for a result: SUCCESS, or a result that is not final yet and not waited for);
 *   1 the thing failed or was not found (a FAILURE or REVOKED result, no such result);
 *   2 bad usage or bad settings (a one-line message on stderr);
 *   3 Redis cannot be reached, refused the login, or the link broke mid-command;
 *   4 --wait ran out of time before a final result.
 *
 * Errors go to stderr as one line "workerctl: ...", never with a password (URLs are shown
 * redacted). Normal output goes to stdout: a human table, or with --json one JSON document.
 */
#ifndef WORKERD_CTL_H
#define WORKERD_CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "broker_batch.h"
#include "broker_keys.h"
#include "settings.h"

enum ctl_exit {
    CTL_OK = 0,
    CTL_FAIL = 1,
    CTL_USAGE = 2,
    CTL_UNREACHABLE = 3,
    CTL_TIMEOUT = 4,
    CTL_DONE = -1, /* not an exit code: --help was printed, exit 0 */
};

#define CTL_URL_MAX 1024
#define CTL_CONNECT_TIMEOUT 5.0  /* seconds to connect to Redis */
#define CTL_COMMAND_TIMEOUT 30.0 /* seconds one command may take */

/* One command of the command table (workerctl.c). */
typedef struct ctl ctl;
typedef struct ctl_command {
    const char *name;
    int (*run)(ctl *c, int argc, char **argv); /* argv[0] is the command's name */
    const char *synopsis;                      /* one line for the command list */
    const char *help;                          /* its own --help text (ctl_command_help adds
                                                  the shared options and exit codes) */
    bool subcommands;                          /* its first word names a subcommand */
} ctl_command;

/* The settings and the connections. Strings are owned (freed by ctl_free). */
struct ctl {
    /* Settings: defaults < config file < WORKERD_* environment < command line. */
    char *broker;                      /* URL (may hold a password: never print it) */
    char *result_backend;              /* URL, or NULL: the broker */
    char broker_redacted[CTL_URL_MAX]; /* for messages */
    char results_redacted[CTL_URL_MAX];
    broker_keys keys;
    long result_expires; /* seconds; 0: forever */
    bool json;           /* --json: one JSON document on stdout */
    char *beat;          /* --beat FILE (or WORKERD_BEAT), or NULL */

    /* Command-line values of the shared settings by settings id (settings.h), applied last
     * by ctl_settle. */
    const char *cli[SETTINGS_COUNT];

    /* Connections, made on first use. results == broker when they share a URL. */
    redisContext *broker_conn;
    redisContext *results_conn;

    const ctl_command *command; /* the running command */
};

void ctl_free(ctl *c);

/* ---- Options ------------------------------------------------------------------------- */

enum ctl_arg {
    CTL_NOARG,  /* a flag */
    CTL_ARG,    /* --name VALUE, --name=VALUE, -x VALUE, -xVALUE */
    CTL_OPTNUM, /* --name [NUMBER]: the next word is taken only when it is a number >= 0;
                   --name=NUMBER always */
};

typedef struct ctl_opt {
    const char *name; /* long name without "--"; NULL ends a table */
    int letter;       /* short letter, or 0 */
    enum ctl_arg arg;
    int id; /* the caller's code for it */
} ctl_opt;

#define CTL_MAX_ITEMS 256

/* What ctl_parse found: the command's own options in order, then the operands. */
typedef struct ctl_args {
    struct {
        int id;
        const char *value; /* NULL for a flag, or a CTL_OPTNUM given without a number */
    } opt[CTL_MAX_ITEMS];
    int nopt;
    char *pos[CTL_MAX_ITEMS];
    int npos;
} ctl_args;

/* Parse argv[1..argc) of the running command: its options (opts, may be NULL), the shared
 * options (-b/--broker, --result-backend, --prefix, --config, --result-expires, --json,
 * -h/--help) anywhere, "--" ending the options, and a word that starts with '-' followed
 * by a digit or '.' taken as an operand (a negative number). Then settles the settings
 * from every layer. Returns CTL_OK, CTL_DONE (--help printed), or CTL_USAGE (message
 * printed). */
int ctl_parse(ctl *c, int argc, char **argv, const ctl_opt *opts, ctl_args *out);

/* Settle the settings from the layers (the config file, the environment, the cli values),
 * with the shared settings module. Returns CTL_OK, CTL_USAGE (message printed) or CTL_FAIL
 * (out of memory). Called by ctl_parse. */
int ctl_settle(ctl *c);

/* Whether word is a shared setting's option that takes the next word as its value ("-b",
 * "--prefix"; not "--prefix=x"). */
bool ctl_shared_takes_value(const char *word);

/* Print the help of the shared options (their names, variables and defaults from the
 * settings table), and of --json and --help. */
void ctl_shared_help(FILE *out);

/* Print a command's whole --help: its own text, the shared options, the exit codes
 * (workerctl.c). */
void ctl_command_help(const ctl_command *command, FILE *out);

/* Print "workerctl: <message>" and the hint to see the command's --help; returns
 * CTL_USAGE. */
int ctl_usage(ctl *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Print "workerctl: <message>" on stderr; returns code. */
int ctl_error(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The longest --wait, in seconds (its value is read by settings_parse_seconds). */
#define CTL_WAIT_MAX 1e9

/* A whole number >= 0: 0 and *out set, or -1. */
int ctl_parse_index(const char *text, long *out);

/* ---- Redis --------------------------------------------------------------------------- */

/* The connection to the broker / to the result backend, made on first use (connect with
 * AUTH and SELECT as the URL says). NULL after printing why: exit CTL_UNREACHABLE. */
redisContext *ctl_broker(ctl *c);
redisContext *ctl_results(ctl *c);

/* A fresh connection to the result backend, for a SUBSCRIBE (which takes the whole
 * connection). NULL after printing why. Free it with redisFree. */
redisContext *ctl_results_connect_new(ctl *c);

/* Run a command (redisCommand's format). Returns the reply (freeReplyObject it), or NULL
 * after printing why: the link broke (*code = CTL_UNREACHABLE) or Redis answered an error
 * (*code = CTL_FAIL). code may be NULL. */
redisReply *ctl_cmd(redisContext *rc, int *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
redisReply *ctl_cmd_argv(redisContext *rc, int *code, int argc, const char **argv,
                         const size_t *lens);

/* Send the commands of b (built with broker_cmds.h) in one round trip; their replies go
 * to replies[0..b->n), each to be freed with freeReplyObject. An EVALSHA that Redis does
 * not know is sent again as EVAL (broker_script_retry). Error replies are replies, left
 * to the caller's parser. Returns CTL_OK, or after printing why: CTL_FAIL when b failed
 * to build (out of memory, a name no key may hold), CTL_UNREACHABLE when the link broke;
 * replies are then all NULL. */
int ctl_send(redisContext *rc, broker_batch *b, redisReply **replies);

/* Send b, a batch of one command, and check its reply as ctl_cmd does. Returns the reply
 * (freeReplyObject it), or NULL after printing why (*code set; code may be NULL). */
redisReply *ctl_send_one(redisContext *rc, broker_batch *b, int *code);

/* ctl_send_one of b on the broker connection (ctl_broker), then broker_batch_clear(b),
 * whatever happened: the whole of a subcommand that sends one command. Returns the reply
 * (freeReplyObject it), or NULL after printing why (*code = CTL_UNREACHABLE when the
 * broker cannot be reached, else as ctl_send_one; code may be NULL). */
redisReply *ctl_broker_one(ctl *c, broker_batch *b, int *code);

/* The names of the queues that have a key, from SCAN over the queue keys (never KEYS),
 * sorted, each once, as a NULL-terminated malloc'd array of malloc'd strings (free with
 * ctl_strv_free). NULL after printing why (*code set). */
char **ctl_queue_names(ctl *c, redisContext *rc, int *code);
void ctl_strv_free(char **v);

/* The "id" and "task" of a raw message (copied into the buffers; "" when unreadable). */
void ctl_msg_fields(const char *raw, size_t len, char *id, size_t idlen, char *task,
                    size_t tasklen);

/* ---- Output -------------------------------------------------------------------------- */

/*
 * Human output never writes a control character it got from Redis: a result, an error
 * message, a dead letter or a key may hold ESC sequences that retitle, clear or rewrite a
 * terminal. Every string from Redis that a person's output shows goes through
 * ctl_escape (the tables do it for their cells): C0 controls and DEL become \xNN (\n,
 * \r and \t as such), the C1 controls U+0080..U+009F and the bidirectional formatting
 * characters (U+200E, U+200F, U+202A..U+202E, U+2066..U+2069) become \uNNNN, and bytes
 * that are not UTF-8 become \xNN. Backslashes are left as they are: the form is for
 * reading; --json gives the exact value.
 */

/* s[0..len) escaped as above, in a new malloc'd string; NULL when out of memory. */
char *ctl_escape(const char *s, size_t len);

/* Write s[0..len) escaped to stdout (on out of memory, "?" instead). */
void ctl_put_escaped(const char *s, size_t len);

/* Print a JSON value on one line on stdout and take the reference. */
void ctl_print_json(json_t *v);

/* Set "raw" in obj to the stored bytes s[0..len) that are not the JSON expected there: a
 * JSON string of them when they are UTF-8 (NUL bytes included), else "raw_base64", their
 * standard base64. Returns 0, or -1 when out of memory. */
int ctl_json_set_raw(json_t *obj, const char *s, size_t len);

/* A text table: rows of cells, printed with aligned columns (the last one not padded). */
typedef struct ctl_table {
    int ncols;
    char **cells; /* nrows * ncols */
    int nrows;
} ctl_table;

void ctl_table_init(ctl_table *t, int ncols, ...); /* the header cells */
void ctl_table_row(ctl_table *t, ...);             /* ncols strings (NULL prints "-") */
void ctl_table_print(ctl_table *t);                /* prints and frees */

/* "3h12m" style duration since unix time t, into buf: counted on the Redis server's clock
 * once ctl_clock_sync has read it (the times workers write are on it, docs/design.md
 * "Delivery"), on this host's clock before. */
const char *ctl_age(double t, char *buf, size_t len);

/* Read the server's clock (TIME) on rc for ctl_age; on failure ctl_age keeps this host's
 * clock (nothing printed: an age is worth no error). */
void ctl_clock_sync(redisContext *rc);

/* ---- Commands ------------------------------------------------------------------------ */

int ctl_cmd_call(ctl *c, int argc, char **argv);
int ctl_cmd_result(ctl *c, int argc, char **argv);
int ctl_cmd_workers(ctl *c, int argc, char **argv);
int ctl_cmd_inspect(ctl *c, int argc, char **argv);
int ctl_cmd_queues(ctl *c, int argc, char **argv);
int ctl_cmd_stats(ctl *c, int argc, char **argv);
int ctl_cmd_purge(ctl *c, int argc, char **argv);
int ctl_cmd_pause(ctl *c, int argc, char **argv);
int ctl_cmd_resume(ctl *c, int argc, char **argv);
int ctl_cmd_paused(ctl *c, int argc, char **argv);
int ctl_cmd_revoke(ctl *c, int argc, char **argv);
int ctl_cmd_dead(ctl *c, int argc, char **argv);
int ctl_cmd_rate_limit(ctl *c, int argc, char **argv);
int ctl_cmd_crawl(ctl *c, int argc, char **argv);
int ctl_cmd_beat(ctl *c, int argc, char **argv);

#endif
