/*
 * broker_msg.h - parse and validate one raw task message (docs/design.md "Task messages").
 *
 * A message is a JSON object; only "task" is required:
 *
 *   {"id": "job-1", "task": "http.get", "args": ["http://127.0.0.1:8080/"],
 *    "kwargs": {"timeout": 5}, "max_retries": 3, "countdown": 10}
 *
 * Fields (a JSON null counts as absent for every optional field; unknown fields, such as
 * the canvas fields, are kept in root untouched):
 *
 *   id               string, 1..limits.max_id_bytes bytes; generated when absent (a random
 *                    UUID-4 text, also stored into root so that encoders see it)
 *   task             string, required, 1..limits.max_task_bytes bytes
 *   queue            string, a valid queue name (broker_check_queue_name); NULL if absent
 *   args             array, default []; at most limits.max_args items
 *   kwargs           object, default {}; at most limits.max_kwargs keys
 *   retries          integer >= 0, default 0 (how many times the task was retried)
 *   max_retries      integer >= 0, default 3 (retries allowed to a task that asks)
 *   retry_backoff    number >= 0, default 1: base seconds of the exponential backoff
 *   retry_backoff_max  number >= 0, default 600: cap of every retry delay, seconds
 *   retry_jitter     boolean, default true: full jitter on the backoff
 *   redelivered      integer >= 0, default 0 (set by recovery, see recover.lua)
 *   countdown        number >= 0, seconds from `now` (the parse argument) until it may run
 *   eta              number >= 0 (Unix seconds) or an RFC 3339 string with its offset
 *                    (broker_time.h): when it may run; wins over countdown
 *   expires          number or RFC 3339 string: when it is revoked instead of run. A
 *                    number below BROKER_EXPIRES_RELATIVE_BELOW is seconds from `now`
 *                    (a producer without a clock, redis-cli, can say "within the hour"),
 *                    from it on Unix seconds
 *   time_limit       number 0..BROKER_TIME_LIMIT_MAX, seconds a run may take before it
 *                    is killed
 *   soft_time_limit  number 0..BROKER_TIME_LIMIT_MAX, seconds before the task is asked
 *                    to stop
 *   ignore_result    boolean, default false
 *   unique_for       number, 0 < x <= BROKER_UNIQUE_FOR_MAX, seconds: while a message
 *                    with the same unique key is pending, scheduled or running, this one
 *                    is not run (broker_unique.h; 0 is refused: leave the field out)
 *   unique_key       string, 1..BROKER_UNIQUE_KEY_MAX bytes, only with unique_for: the
 *                    key to be unique by, instead of task + args + kwargs
 *
 * For the numbers, 0 means "none". msg.eta and msg.expires are always absolute: the
 * field, or now + the relative value, or 0. No time may lie further ahead of `now` than
 * BROKER_TIME_MAX_AHEAD (ten years), nor may countdown, retry_backoff and
 * retry_backoff_max be longer. Whoever keeps a message for later writes it with
 * broker_msg_encode_scheduled, which makes every relative time absolute, or a countdown
 * would start over on the next delivery.
 *
 * Duplicate keys: the LAST occurrence wins (jansson's default, and Lua cjson's). Recovery
 * relies on this: it counts a redelivery by appending ,"redelivered":N before the final
 * '}' of the raw text instead of re-encoding the message, so an older "redelivered" key
 * earlier in the text is overridden.
 *
 * Hostile input is stopped before the parser: the size limit is checked first (a 100 MB
 * message is rejected without reading it), then the nesting depth by a linear scan of the
 * brackets outside strings (so deep nesting never reaches jansson's recursive descent).
 *
 * Pure computation: no I/O, never yields, callable from any stack. Thread-safe (id
 * generation uses getrandom).
 */
#ifndef WORKERD_BROKER_MSG_H
#define WORKERD_BROKER_MSG_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "broker_keys.h"
#include "broker_time.h"

/* Limits on one message. Zero fields take the defaults in brackets. */
typedef struct broker_limits {
    size_t max_message_bytes; /* raw size [1 MiB] */
    int max_depth;            /* nesting of arrays/objects; the message is level 1 [64] */
    size_t max_args;          /* items in args [1024] */
    size_t max_kwargs;        /* keys in kwargs [1024] */
    size_t max_id_bytes;      /* bytes in id [255]; never more than BROKER_ID_MAX, never
                                 less than BROKER_GENERATED_ID_BYTES (so that a generated
                                 id still parses after the message is re-encoded) */
    size_t max_task_bytes;    /* bytes in task [255] */
} broker_limits;

#define BROKER_MAX_MESSAGE_BYTES_DEFAULT (1024 * 1024)
#define BROKER_MAX_DEPTH_DEFAULT 64
#define BROKER_MAX_ARGS_DEFAULT 1024
#define BROKER_MAX_KWARGS_DEFAULT 1024
#define BROKER_MAX_TASK_BYTES_DEFAULT 255
#define BROKER_MAX_RETRIES_DEFAULT 3
#define BROKER_RETRY_BACKOFF_DEFAULT 1.0
#define BROKER_RETRY_BACKOFF_MAX_DEFAULT 600.0
/* An "expires" number below this (2001-09-09 as a Unix time) is relative seconds. */
#define BROKER_EXPIRES_RELATIVE_BELOW 1e9
#define BROKER_GENERATED_ID_BYTES 36 /* a UUID-4 text, broker_msg_new_id */
/* The longest time_limit and soft_time_limit, in seconds: a day. More is surely a mistake
 * (a timestamp, milliseconds), and would hold a slot for ever. */
#define BROKER_TIME_LIMIT_MAX 86400.0
/* The longest unique_for, in seconds: 30 days. A lock held longer is surely a unit
 * mistake (milliseconds, a timestamp). */
#define BROKER_UNIQUE_FOR_MAX (30 * 86400.0)
/* The longest unique_key, in bytes (it is hashed, so this only bounds the work). */
#define BROKER_UNIQUE_KEY_MAX 65536

/* Fills every field with its default. */
void broker_limits_default(broker_limits *lim);

/* One parsed, validated message. Every pointer is owned by the struct: release it with
 * broker_msg_free. args and kwargs are borrowed from root (always present there after a
 * successful parse). */
typedef struct broker_msg {
    char *id;       /* never NULL */
    char *task;     /* never NULL */
    char *queue;    /* NULL when the message names none */
    json_t *args;   /* array */
    json_t *kwargs; /* object */
    int retries;
    int max_retries;
    int redelivered;
    double retry_backoff;     /* seconds, the backoff's base */
    double retry_backoff_max; /* seconds, the cap of every retry delay */
    bool retry_jitter;        /* full jitter on the backoff */
    double countdown;         /* as given (relative seconds), 0 = none */
    double eta;               /* absolute unix seconds, 0 = run now */
    double expires;           /* absolute unix seconds, 0 = never */
    double time_limit;
    double soft_time_limit;
    bool ignore_result;
    double unique_for;      /* seconds, 0 = not unique */
    const char *unique_key; /* borrowed from root; NULL = task + args + kwargs */
    size_t unique_key_len;
    bool id_generated; /* the message had no id; id was made up */
    json_t *root;      /* the whole message; holds the only reference */
} broker_msg;

/* Why a message was rejected. */
typedef struct broker_msg_error {
    char reason[256];           /* a sentence for the user, e.g. "field \"args\" must be
                                   an array"; the dead-letter reason */
    bool has_id;                /* the message's id could be read despite the rest */
    char id[BROKER_ID_MAX + 1]; /* that id (write the FAILURE result under it) */
} broker_msg_error;

/* Parses raw[0..len) (not necessarily NUL-terminated) into *msg. lim may be NULL (the
 * defaults). now is the current unix time (the worker passes its estimate of the Redis
 * server's clock): relative times count from it, and no time may be more than
 * BROKER_TIME_MAX_AHEAD after it.
 *
 * Returns 0 with *msg filled (free it with broker_msg_free); or -EINVAL when the message
 * is rejected, with err->reason set and, when an id could be read (from the parsed object,
 * or for unparseable, oversized or too deep text by a cheap scan of its top level that
 * looks no further than the first 64 KiB), err->id; or -ENOMEM. On error *msg is zeroed
 * and owns nothing. err may be NULL. */
int broker_msg_parse(const char *raw, size_t len, const broker_limits *lim, double now,
                     broker_msg *msg, broker_msg_error *err);

/* The message as it waits to run again, in the scheduled set (docs/design.md
 * "Delivery"): msg's object (its id included, also a generated one, so that every
 * attempt reports under the same id) with "eta" set to eta, "retries" to retries,
 * "expires" made absolute (msg.expires) and "countdown" removed, encoded compactly. A new
 * string of *len bytes (free it), or NULL when out of memory. Does not change msg. */
char *broker_msg_encode_scheduled(const broker_msg *msg, double eta, int retries, size_t *len);

/* Releases what msg owns and zeroes it. A zeroed msg is fine. */
void broker_msg_free(broker_msg *msg);

/* Writes a fresh random id: a UUID version 4 in its 36-character text form. */
void broker_msg_new_id(char out[37]);

#endif
