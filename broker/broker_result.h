/*
 * broker_result.h - JSON encoders for what the broker writes: the result document stored
 * at <prefix>:result:<id>, and the dead-letter entry pushed on <prefix>:dead.
 *
 * Result document (fields absent when unknown):
 *
 *   {"id": "job-1", "task": "http.get", "status": "SUCCESS", "result": <any JSON>,
 *    "retries": 0, "worker": "host:1234:ab12", "started_at": 1700000000.25,
 *    "finished_at": 1700000000.5, "runtime": 0.25}
 *
 *   status is STARTED, SUCCESS, FAILURE, RETRY or REVOKED. A RETRY result (the task
 *   asked to run again and waits for it) also has "eta": when the next attempt is due;
 *   "retries" is then the number of that attempt's retry. "result" is present for
 *   SUCCESS (null when the task returned nothing); "error": {"type": ..., "message": ...}
 *   is present whenever an error type or message is given (FAILURE, RETRY, REVOKED).
 *   runtime = finished_at - started_at, when both are known.
 *
 * Dead-letter entry (recover.lua and requeue.lua write the same shape from Lua):
 *
 *   {"message": "<raw text>", "truncated": false, "message_bytes": 57,
 *    "reason": "missing or non-string field \"task\"", "worker": "host:1234:ab12",
 *    "time": 1700000000.5, "id": "job-1", "queue": "default"}
 *
 *   "message" is the raw text as a JSON string, cut to max_message_bytes (on a UTF-8
 *   character boundary) with "truncated": true when it was longer; message_bytes is the
 *   original size. "id" and "queue" are present only when known.
 *
 * Every string is made valid UTF-8 before encoding (each invalid byte becomes U+FFFD),
 * so a message with garbage bytes still yields a dead letter instead of an encoding
 * failure. A dead-letter entry is also read back here (broker_dead_parse), to requeue it.
 * Pure computation; never yields; callable from any stack; thread-safe.
 */
#ifndef WORKERD_BROKER_RESULT_H
#define WORKERD_BROKER_RESULT_H

#include "broker_keys.h"

#include <stddef.h>

#include <jansson.h>

typedef enum broker_status {
    BROKER_STARTED,
    BROKER_SUCCESS,
    BROKER_FAILURE,
    BROKER_RETRY,
    BROKER_REVOKED,
} broker_status;

/* "STARTED", "SUCCESS", ...; "UNKNOWN" for a value outside the enum. */
const char *broker_status_name(broker_status status);

/* What goes into a result document. Everything is borrowed for the call. */
typedef struct broker_result {
    const char *id;   /* required */
    const char *task; /* NULL: omitted */
    broker_status status;
    json_t *result;            /* SUCCESS: the value (NULL encodes as null) */
    const char *error_type;    /* e.g. "TimeoutError", "InvalidMessage"; NULL: omitted */
    const char *error_message; /* NULL: omitted */
    int retries;
    double eta;         /* RETRY: when the next attempt is due (unix seconds); 0: omitted */
    const char *worker; /* NULL: omitted */
    double started_at;  /* unix seconds; 0: unknown, omitted */
    double finished_at; /* unix seconds; 0: unknown (STARTED), omitted */
} broker_result;

/* The result document as a new JSON object (caller owns the reference), or NULL when out
 * of memory or when id is NULL. */
json_t *broker_result_json(const broker_result *r);

/* The same, encoded compactly into a malloc'd NUL-terminated string (free it), or NULL. */
char *broker_result_encode(const broker_result *r);

/* The same with a size limit, for what a task returned: 0 with *out (malloc'd,
 * NUL-terminated, *len bytes) when the document takes at most max bytes; -E2BIG when it
 * would take more, with *out NULL and *len its whole size. Past max the encoder stops
 * storing and only counts, so a huge result costs at most max bytes of memory here, never
 * its whole text (an http.get of 100 MiB of control bytes is 600 MB escaped). -ENOMEM,
 * or -EINVAL when id is NULL or the value cannot be encoded (nested deeper than 1024, a
 * timestamp that is no number). max 0: no limit. */
int broker_result_encode_max(const broker_result *r, size_t max, char **out, size_t *len);

#define BROKER_DEAD_MESSAGE_MAX_DEFAULT (64 * 1024)

/* What goes into a dead-letter entry. Everything is borrowed for the call. */
typedef struct broker_dead {
    const char *raw; /* the message bytes as received (need not be UTF-8) */
    size_t raw_len;
    const char *reason;       /* required: why it is dead */
    const char *worker;       /* the worker that gave up on it; NULL: omitted */
    double time;              /* unix seconds */
    const char *id;           /* the message's id if it could be read; NULL: omitted */
    const char *queue;        /* the queue it came from; NULL: omitted */
    size_t max_message_bytes; /* cut raw to this; 0: BROKER_DEAD_MESSAGE_MAX_DEFAULT */
} broker_dead;

/* The dead-letter entry as a new JSON object (caller owns it), or NULL when out of
 * memory or when reason is NULL. */
json_t *broker_dead_json(const broker_dead *d);

/* The same, encoded compactly into a malloc'd string (free it), or NULL. */
char *broker_dead_encode(const broker_dead *d);

/* A dead-letter entry read back, to push its message back on its queue. */
typedef struct broker_dead_entry {
    char *message; /* malloc'd: what to push back (see broker_dead_parse); NULL if none */
    size_t message_len;
    char queue[BROKER_QUEUE_NAME_MAX + 1]; /* its "queue"; "default" when it names none */
    char id[BROKER_ID_MAX + 1];            /* its "id"; "" when it has none */
} broker_dead_entry;

/* Read the dead-letter entry raw[0..len) (as broker_dead_encode, recover.lua or
 * requeue.lua wrote it) for requeueing. The message is the original text, byte-exact,
 * except that one which counted redeliveries ("redelivered": N > 0, as a poison pill has)
 * gets ,"redelivered":0 appended before its final '}': the last key wins, as recover.lua
 * counts, so a requeued message starts afresh. Returns NULL with *e filled (release it
 * with broker_dead_entry_clear), or a static sentence saying why the entry cannot be
 * requeued: no message (not an entry at all), a message cut when it was stored, an
 * invalid queue name, out of memory. id and queue are filled in either case. */
const char *broker_dead_parse(const char *raw, size_t len, broker_dead_entry *e);
void broker_dead_entry_clear(broker_dead_entry *e);

/* A JSON string from n arbitrary bytes: invalid UTF-8 bytes become U+FFFD, NUL bytes are
 * kept (jansson escapes them as \u0000). New reference, or NULL when out of memory. */
json_t *broker_json_string_lossy(const char *s, size_t n);

#endif
