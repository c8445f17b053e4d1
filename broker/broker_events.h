/*
 * broker_events.h - the Redis command that appends one task event to the capped stream
 * <prefix>:events (broker_key_events): the argument vector of
 *
 *     XADD <key> MAXLEN ~ BROKER_EVENTS_MAXLEN * type <type> [id <id>] [task <task>]
 *          worker <wid> time <unix time> [queue <queue>] [runtime <seconds>] [error <text>]
 *
 * in this field order, the optional fields left out when absent. Times are printed with
 * microseconds ("%.6f"). "MAXLEN ~" trims the stream to about BROKER_EVENTS_MAXLEN entries
 * (Redis trims whole nodes, so a few more may stay), which keeps it capped without the
 * cost of exact trimming on every XADD.
 *
 * The daemon's publisher (daemon/wd_events.c) sends a batch of these as one pipeline; the
 * meaning of each field is documented there (wd_events.h) and in the README.
 *
 * Pure computation: no I/O, never yields, callable from any stack, thread-safe on distinct
 * commands.
 */
#ifndef WORKERD_BROKER_EVENTS_H
#define WORKERD_BROKER_EVENTS_H

/* About how many entries the stream keeps. */
#define BROKER_EVENTS_MAXLEN 10000

/* The most arguments one XADD of an event has: six before the fields, two per field. */
#define BROKER_EVENTS_ARGC_MAX (6 + 2 * 8)

/* One event; everything is borrowed. */
typedef struct broker_event {
    const char *type;   /* received, started, succeeded, failed, retried, revoked */
    const char *id;     /* NULL: left out */
    const char *task;   /* NULL: left out */
    const char *worker; /* the worker id; required */
    double time;        /* unix seconds of the change */
    const char *queue;  /* NULL: left out */
    double runtime;     /* seconds; < 0: left out */
    const char *error;  /* NULL: left out */
} broker_event;

/* An XADD command: argv[0..argc) for broker_conn_pipeline or redisCommandArgv. The
 * numbers are printed into the command itself, so argv points into it: use it where it was
 * built (do not copy the struct). The strings of key and of the event are borrowed and
 * must outlive it. */
typedef struct broker_events_cmd {
    int argc;
    const char *argv[BROKER_EVENTS_ARGC_MAX];
    char maxlen[24], time[32], runtime[32];
} broker_events_cmd;

/* Build the XADD of ev onto the stream key (from broker_key_events) into *cmd. Returns
 * cmd->argc. Never fails. */
int broker_events_xadd(broker_events_cmd *cmd, const char *key, const broker_event *ev);

#endif
