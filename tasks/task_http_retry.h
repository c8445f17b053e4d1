/*
 * task_http_retry.h - when an http.* task asks for a retry (TASK_ERETRY, task.h) instead
 * of reporting its outcome:
 *
 *   retry_on=[429, 502, 503, 504]   a response with one of these statuses is retried (a
 *                                   list of at most TASK_HTTP_RETRY_ON_MAX codes, each
 *                                   100..599; default none)
 *   retry_on_errors=true            a transport failure that may pass is retried: the
 *                                   connection refused or reset, DNS failing, the
 *                                   request's own timeout, an empty or cut reply (default
 *                                   false). A refusal by the address policy, a body or
 *                                   headers over their limits never are: they would fail
 *                                   the same way again.
 *
 * A retried response's Retry-After header (RFC 9110: delay-seconds, or an HTTP-date) sets
 * the delay (err->retry_in); the daemon caps it with the message's retry_backoff_max.
 * Without one (and for transport errors) the message's backoff applies. An HTTP-date is
 * counted from the response's own Date header when it has one (so that the server's clock
 * and ours need not agree), else from this host's clock; a date in the past means at once.
 * Once the message's retries are spent, the daemon stores the last failure (FAILURE,
 * HTTPError "HTTP 503", or the transport error).
 *
 * Pure computation on the task's greenlet (argument checks, header parsing); nothing here
 * yields or calls curl's multi interface. Thread-safe.
 */
#ifndef WORKERD_TASK_HTTP_RETRY_H
#define WORKERD_TASK_HTTP_RETRY_H

#include "task.h"

#include <curl/curl.h>
#include <stdbool.h>
#include <stddef.h>

#define TASK_HTTP_RETRY_ON_MAX 64

/* The retry kwargs of call: *retry_on (the list, borrowed; NULL when absent) and
 * *on_errors. 0, or TASK_EINVAL with err naming the argument (a TypeError for a wrong
 * type, a ValueError for a code out of range or too many). */
int task__http_retry_args(const task_call *call, const json_t **retry_on, bool *on_errors,
                          task_error *err);

/* Whether status is in retry_on (NULL: no). */
bool task__http_retry_status(const json_t *retry_on, long status);

/* Whether a transport failure with curl code res may pass on a retry (see above). */
bool task__http_retry_error(CURLcode res);

/* The delay a response asks for, from its raw header lines (headers[0..len), "Name:
 * value\r\n" each, as curl hands them over): seconds >= 0, or -1 without a valid
 * Retry-After. now is this host's clock (unix seconds), used when there is no Date. */
double task__http_retry_after(const char *headers, size_t len, double now);

#endif
