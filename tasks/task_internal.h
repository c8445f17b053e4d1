/*
 * task_internal.h - what the files of tasks/ share and plugins do not see: the
 * registration hook of each group of built-in tasks, called by task_register_builtins.
 */
#ifndef WORKERD_TASK_INTERNAL_H
#define WORKERD_TASK_INTERNAL_H

#include "task.h"

#include <stdbool.h>
#include <stddef.h>

/* Whether name is a valid task name (task_registry_add's rule, task.h). task.c. */
bool task__name_valid(const char *name);

/* Store limits (NULL: defaults; zero fields: defaults) for every later http.* call of the
 * process and register http.get and http.request. Returns 0 or task_registry_add's error. */
int task__http_register(const task_http_limits *limits);

/* The longest host name task__http_destination gives, with its NUL. */
#define TASK__HTTP_HOST_MAX 256

/* For the per-host limits (task_ctx_gate): when call is an http.get or http.request whose
 * arguments the task will accept, true with its URL's host, lower-cased, in host, and its
 * timeout (seconds) in *timeout; false for any other call (the task reports bad arguments
 * itself), a URL without a host, or a host longer than cap - 1. Pure; never yields. */
bool task__http_destination(const task_call *call, char *host, size_t cap, double *timeout);

/* For tests: how many easy handles this thread has (created and not freed: in use or in
 * its free list), and how many sit in its free list now. */
void task__http_stats(size_t *live, size_t *cached);

/* ---- http.get's fetch, for http.scrape (task_http.c) ---------------------------------- */

/* The keyword arguments task__http_fetch reads (NULL-terminated): http.get's. */
extern const char *const task__http_fetch_kwargs[];

/* A response, all malloc'd (free with task__http_fetched_free). */
typedef struct task_http_fetched {
    long status;
    char *body; /* NUL-terminated; NULL when empty */
    size_t body_len;
    char *headers; /* raw header lines of the last response ("Name: value\r\n" each) */
    size_t headers_len;
    char *url; /* the final URL as curl reports it, credentials included: never show it
                  unredacted (task__http_url_json) */
    double elapsed_ms;
} task_http_fetched;

/* Whether a response whose header lines are headers[0..len) ("Name: value\r\n" each;
 * headers may be NULL) is worth its body. Called on the hub stack, from curl's write
 * callback: pure computation only. */
typedef bool (*task_http_wants_fn)(const char *headers, size_t len);

/* Exactly http.get's request: its keyword arguments (task__http_fetch_kwargs; the url is
 * argument url_index), limits, address policy, redirects, --http-host-rate turn and
 * retry_on / raise_for_status checks, but without the result's cap on the body (max_size
 * still bounds it). wants_body (may be NULL: every body is read) is asked once the
 * headers are in: when it says no, the transfer stops before the body, and the fetch
 * returns 0 with the headers and an empty body. Returns 0 with *out filled, or what http.get
 * returns on failure (TASK_EINVAL, TASK_EFAIL, TASK_ERETRY, TASK_EDEFER, -ETIMEDOUT, -ECANCELED)
 * with *out empty. MAY YIELD: on a task's greenlet. */
int task__http_fetch(const task_call *call, size_t url_index, task_http_wants_fn wants_body,
                     task_http_fetched *out, task_error *err);
void task__http_fetched_free(task_http_fetched *f);

/* A JSON string of a URL with its credentials redacted (task_http_redact.h); NULL when out
 * of memory. */
json_t *task__http_url_json(const char *url);

/* Register http.scrape (task_scrape.c); initializes libxml2 once, on the calling thread:
 * call it at start-up, before any worker thread. */
int task__scrape_register(void);

/* task_http_headers.c. */

struct curl_slist;

/* Whether s is a non-empty HTTP token (RFC 9110: header names, methods). */
bool task__http_token_valid(const char *s);

/* The curl header list for a task's headers object (NULL or {} for none), checked: names
 * are tokens, values strings without CR, LF or NUL, at most limits->max_headers headers
 * and limits->max_header_bytes bytes. 0 and the list in *out (free it with
 * task__http_header_list_free), or TASK_EINVAL / TASK_EFAIL with err filled. */
int task__http_header_list(const task_call *call, const json_t *headers,
                           const task_http_limits *limits, struct curl_slist **out,
                           task_error *err);
void task__http_header_list_free(struct curl_slist *list);

/* task_http_json.c. Each returns a new reference, or NULL when out of memory. */

/* Standard padded base64 of len bytes (Python's base64.b64encode). */
json_t *task__base64(const void *data, size_t len);

/* The length of the JSON string the result encoder writes for these bytes, quotes aside:
 * 2 for '"', '\\', \b, \f, \n, \r, \t; 6 for another byte under 0x20 (\u0001); 1 for
 * the rest. Pure; never allocates. */
size_t task__json_escaped_len(const char *s, size_t len);

/* A JSON string of bytes that ought to be text but may not be UTF-8: when the bytes are not
 * valid UTF-8, each non-ASCII or NUL byte becomes '?'. */
json_t *task__text(const char *s, size_t len);

/* Raw header lines ("Name: value\r\n" each, no status line) as {lowercased-name: value};
 * a repeated header's values are joined with ", ", folded lines with " ". */
json_t *task__headers_object(const char *raw, size_t len);

/* ---- who registered a task (task.c), for the plugin loader's messages ---------------- */

/* From now on, tasks registered are owner's (a string that outlives the registry; NULL:
 * the built-in tasks), and the first refusal of task_registry_add is remembered. */
void task__registry_begin(const char *owner);

/* Stop: the first refusal since task__registry_begin, as task_registry_add's error (0 if
 * none), and the name it was given in *name (a static buffer, cut to 128 bytes). */
int task__registry_end(const char **name);

/* Who registered name: the owner given to task__registry_begin, or NULL (the built-in
 * tasks, or no such task). */
const char *task__registry_owner(const char *name);

#endif
