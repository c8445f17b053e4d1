/*
 * task_http_methods.c - the HTTP methods http.request may send (task_http_methods.h).
 *
 * The extra methods are copied into a fixed table at registration, upper-cased, so a check
 * is a handful of string comparisons and needs no memory: the lists are a few entries
 * written by an administrator.
 */
#include "task_http_methods.h"
#include "task_internal.h"

#include <ctype.h>
#include <errno.h>
#include <string.h>

const char task__http_standard_methods[] = "GET, HEAD, POST, PUT, PATCH, DELETE and OPTIONS";

static const char *const standard[] = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"};

/* The extra methods, upper-case. Written at registration only. */
static char extra[TASK_HTTP_METHODS_MAX][TASK_HTTP_METHOD_MAX + 1];
static size_t nextra;

/* Walk list's entries: each call puts the next one, blanks trimmed and upper-cased, into
 * out and advances *cursor. Returns NULL with an entry, "" at the end, or a sentence. */
static const char *next_entry(const char **cursor, char out[TASK_HTTP_METHOD_MAX + 1]) {
    const char *s = *cursor;
    if (*s == '\0')
        return "";
    size_t len = strcspn(s, ",");
    const char *b = s, *e = s + len;
    *cursor = s[len] == ',' ? s + len + 1 : s + len;
    while (b < e && isspace((unsigned char)*b))
        b++;
    while (e > b && isspace((unsigned char)e[-1]))
        e--;
    if (b == e)
        return "an entry of the list is empty";
    if ((size_t)(e - b) > TASK_HTTP_METHOD_MAX)
        return "a method is longer than 32 characters";
    for (size_t i = 0; i < (size_t)(e - b); i++)
        out[i] = (char)toupper((unsigned char)b[i]);
    out[e - b] = '\0';
    if (!task__http_token_valid(out))
        return "a method may hold only letters, digits and !#$%&'*+-.^_`|~ (an HTTP token)";
    return NULL;
}

const char *task_http_check_methods(const char *list) {
    if (list == NULL)
        return NULL;
    char method[TASK_HTTP_METHOD_MAX + 1];
    size_t n = 0;
    for (const char *cursor = list;;) {
        /* A trailing comma leaves "" behind it: an empty entry, not the end. */
        bool trailing = cursor != list && cursor[-1] == ',' && *cursor == '\0';
        if (trailing)
            return "an entry of the list is empty";
        const char *why = next_entry(&cursor, method);
        if (why != NULL)
            return *why == '\0' ? NULL : why;
        if (++n > TASK_HTTP_METHODS_MAX)
            return "the list names more than 32 methods";
    }
}

int task__http_methods_set(const char *list) {
    if (task_http_check_methods(list) != NULL)
        return -EINVAL;
    nextra = 0;
    if (list == NULL)
        return 0;
    for (const char *cursor = list; next_entry(&cursor, extra[nextra]) == NULL;)
        nextra++;
    return 0;
}

bool task__http_method_allowed(const char *method) {
    for (size_t i = 0; i < sizeof standard / sizeof *standard; i++)
        if (strcmp(method, standard[i]) == 0)
            return true;
    for (size_t i = 0; i < nextra; i++)
        if (strcmp(method, extra[i]) == 0)
            return true;
    return false;
}
