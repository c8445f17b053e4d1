/*
 * broker_unique.h - unique tasks: the key a message is unique by, and the lock that
 * keeps a second message with the same key from running (docs/design.md "Unique tasks").
 *
 * A message with "unique_for" (seconds) is unique by its key text:
 *
 *   - its "unique_key" string, byte for byte, when it has one;
 *   - otherwise the canonical JSON of the array [task, args, kwargs]: no whitespace at
 *     all, object keys sorted by their bytes (strcmp) at every depth, strings as UTF-8
 *     with only '"', '\\' and control characters escaped (\n, \t... or \u00XX), '/' not
 *     escaped, integers in decimal and reals as jansson writes them (17 significant
 *     digits, with ".0" when they would look like integers). So {"b":1,"a":2} and
 *     {"a":2,"b":1} are the same key, and 1 and 1.0 are not. Example: the message
 *     {"task":"echo","args":[1,"x"],"kwargs":{"z":null,"a":[true]}} is unique by
 *     ["echo",[1,"x"],{"a":[true],"z":null}].
 *
 * The lock is <prefix>:unique:<SHA-1 of the key text, 40 lower-case hex digits>, a string
 * holding the id of the message that owns it, with an expiry of unique_for. It is taken
 * by unique_acquire.lua when a worker first takes the message (before a countdown or eta
 * sends it to the scheduled set: a scheduled message holds its lock), passed by the same
 * id again (a redelivery, a retry, the scheduled copy coming due), and released by the
 * final ack (ack.lua's "~" entries) only if it still holds that id.
 *
 * broker_unique_text and broker_unique_hash are pure computation (no I/O, never yield,
 * thread-safe). broker_unique_acquire MAY YIELD: call it from a greenlet of the
 * connection's hub.
 */
#ifndef WORKERD_BROKER_UNIQUE_H
#define WORKERD_BROKER_UNIQUE_H

#include "broker_conn.h"
#include "broker_keys.h"
#include "broker_msg.h"

#include <stddef.h>

/* The key text of msg (above): a new malloc'd NUL-terminated string of *len bytes (free
 * it), or NULL when out of memory. msg must have been parsed by broker_msg_parse. */
char *broker_unique_text(const broker_msg *msg, size_t *len);

/* The SHA-1 of msg's key text in hex (the <hash> of its lock). Returns 0 or -ENOMEM. */
int broker_unique_hash(const broker_msg *msg, char out[41]);

typedef enum broker_unique_verdict {
    BROKER_UNIQUE_OWNER,     /* the lock is msg's: run it */
    BROKER_UNIQUE_DUPLICATE, /* another id holds it: holder names it */
    BROKER_UNIQUE_GONE,      /* the delivery is no longer this worker's: do nothing */
} broker_unique_verdict;

/* Run unique_acquire.lua on conn for the delivery `tag` from `queue` of worker wid,
 * carrying msg, whose key hashes to `hash`. When msg's id was generated, the in-flight
 * entry is rewritten with it as the lock is taken. On success returns 0 with *verdict
 * set and, for a duplicate, holder filled with the original's id; otherwise a negative
 * errno (a link error: safe to call again, the script is idempotent). */
int broker_unique_acquire(broker_conn *conn, const broker_keys *keys, const char *wid,
                          const char *tag, const char *queue, const broker_msg *msg,
                          const char *hash, broker_unique_verdict *verdict,
                          char holder[BROKER_ID_MAX + 1], double timeout);

#endif
