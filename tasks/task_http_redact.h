/*
 * task_http_redact.h - credentials out of what an http.* task reports. A task URL may carry
 * them ("http://user:secret@host/"), and curl reports the URL it fetched with them, so the
 * result's "url", a Location header or an error message would store and publish them in
 * Redis and the logs. These functions replace the userinfo of every URL in a text:
 *
 *     "user:secret@"  becomes  "user:***@"   (the user name stays)
 *     "TOKEN@"        becomes  "***@"        (a single word may be a token)
 *
 * A URL is found by its "://"; its authority runs to the first '/', '?', '#', blank,
 * quote, '<', '>' or '\\', and its userinfo to the last '@' in the authority. Text that is
 * not a URL is copied as it is.
 *
 * Pure functions; no I/O, never yield, callable from any stack.
 */
#ifndef WORKERD_TASK_HTTP_REDACT_H
#define WORKERD_TASK_HTTP_REDACT_H

#include <stdbool.h>
#include <stddef.h>

/* Write text[0..len) redacted into out (cap bytes, NUL-terminated, truncated to fit; out
 * may be NULL when cap is 0). Returns the length of the whole redacted text, as snprintf
 * does. whole_url: text is one URL, so that one without "://" ("user:pw@host/x", which
 * curl reads as http) is redacted too. */
size_t task__redact(const char *text, size_t len, bool whole_url, char *out, size_t cap);

/* The same into a new malloc'd string (its length in *outlen when not NULL), or NULL when
 * out of memory. */
char *task__redact_dup(const char *text, size_t len, bool whole_url, size_t *outlen);

/* Redact a NUL-terminated string in place, within its buffer of cap bytes (an error
 * message: redaction can make it longer, and then it is cut). */
void task__redact_in_place(char *buf, size_t cap);

#endif
