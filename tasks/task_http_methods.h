/*
 * task_http_methods.h - which HTTP methods http.request may send: the standard GET, HEAD,
 * POST, PUT, PATCH, DELETE and OPTIONS, and the extra ones the administrator lists
 * (task_http_limits.methods, task.h). Any other method is refused before a connection is
 * made, so that a task message cannot speak another line protocol ("SET /x HTTP/1.1" to a
 * Redis, "CONNECT" to a proxy) through an HTTP request line.
 *
 * The set is process-wide: set at registration (start-up, not thread-safe), read-only
 * afterwards, so any thread may check against it. Nothing here yields.
 */
#ifndef WORKERD_TASK_HTTP_METHODS_H
#define WORKERD_TASK_HTTP_METHODS_H

#include <stdbool.h>

/* Replace the extra methods with those of list (NULL or "": none). 0, or -EINVAL when
 * task_http_check_methods refuses the list (the set is then unchanged). */
int task__http_methods_set(const char *list);

/* Whether method (as http.request sends it: upper-case) is standard or listed. */
bool task__http_method_allowed(const char *method);

/* The standard methods as a sentence fragment for messages: "GET, HEAD, POST, PUT, PATCH,
 * DELETE and OPTIONS". */
extern const char task__http_standard_methods[];

#endif
