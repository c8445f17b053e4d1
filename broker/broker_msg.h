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
 *   max_retries      integer >= 0, default 3
 *   redelivered      integer >= 0, default 0 (set by recovery, see recover.lua)
 *   countdown        number >= 0, seconds from `now` (the parse argument) until it may run
 *   eta              number >= 0, unix seconds when it may run (wins over countdown)
 *   expires          number >= 0, unix seconds after which it is revoked instead of run
 *   time_limit       number 0..BROKER_TIME_LIMIT_MAX, seconds a run may take before it
 *                    is killed
 *   soft_time_limit  number 0..BROKER_TIME_LIMIT_MAX, seconds before the task is asked
 *                    to stop
 *   ignore_result    boolean, default false
 *
 * For the numbers, 0 means "none". msg.eta is always absolute: the "eta" field, else
 * now + countdown, else 0. Whoever moves a due message from the scheduled set to its queue
 * must rewrite a countdown into an eta first, or the countdown starts over on delivery.
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
#define BROKER_GENERATED_ID_BYTES 36 /* a UUID-4 text, broker_msg_new_id */
/* The longest time_limit and soft_time_limit, in seconds: a day. More is surely a mistake
 * (a timestamp, milliseconds), and would hold a slot for ever. */
#define BROKER_TIME_LIMIT_MAX 86400.0

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
    double countdown; /* as given (relative seconds), 0 = none */
    double eta;       /* absolute unix seconds, 0 = run now */
    double expires;   /* absolute unix seconds, 0 = never */
    double time_limit;
    double soft_time_limit;
    bool ignore_result;
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
 * defaults). now is the current unix time, used only to turn a countdown into an eta.
 *
 * Returns 0 with *msg filled (free it with broker_msg_free); or -EINVAL when the message
 * is rejected, with err->reason set and, when an id could be read (from the parsed object,
 * or for unparseable, oversized or too deep text by a cheap scan of its top level that
 * looks no further than the first 64 KiB), err->id; or -ENOMEM. On error *msg is zeroed
 * and owns nothing. err may be NULL. */
int broker_msg_parse(const char *raw, size_t len, const broker_limits *lim, double now,
                     broker_msg *msg, broker_msg_error *err);

/* Releases what msg owns and zeroes it. A zeroed msg is fine. */
void broker_msg_free(broker_msg *msg);

/* Writes a fresh random id: a UUID version 4 in its 36-character text form. */
void broker_msg_new_id(char out[37]);

#endif
