/*
 * task_http_headers.c - the request headers of http.get and http.request: names checked as
 * HTTP tokens, values without line breaks (no header injection), counted and sized against
 * the limits, and turned into curl's list, with "Expect:" added.
 */
#include "task_internal.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static bool tchar(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

bool task__http_token_valid(const char *s) {
    if (*s == '\0')
        return false;
    for (; *s; s++) {
        if (!tchar((unsigned char)*s))
            return false;
    }
    return true;
}

/* The header list when the task gives none: the same for every request, never freed
 * (curl only reads the list). */
static struct curl_slist expect_only = {.data = (char *)"Expect:", .next = NULL};

/* The header list for the request, validated against the limits, or NULL with err filled
 * (rc TASK_EINVAL, or TASK_EFAIL for out of memory); &expect_only when headers is empty.
 * "Expect:" turns off curl's 100-continue wait for larger bodies, a pointless round trip
 * with most servers. */
int task__http_header_list(const task_call *call, const json_t *headers,
                           const task_http_limits *limits, struct curl_slist **out,
                           task_error *err) {
    if (json_object_size(headers) == 0) {
        *out = &expect_only;
        return 0;
    }
    struct curl_slist *list = NULL;
    size_t count = 0, bytes = 0;
    bool has_expect = false;
    const char *key;
    json_t *value;
    int rc = 0;
    json_object_foreach((json_t *)headers, key, value) {
        if (!json_is_string(value)) {
            rc = task_error_invalid(err, "TypeError", "%s: headers['%s'] must be a string, got %s",
                                    call->name, key, task_json_type_name(value));
            break;
        }
        const char *v = json_string_value(value);
        size_t vlen = json_string_length(value);
        if (!task__http_token_valid(key)) {
            rc = task_error_invalid(err, "ValueError", "%s: invalid header name '%s'", call->name,
                                    key);
            break;
        }
        if (strcspn(v, "\r\n") != vlen) {
            rc = task_error_invalid(err, "ValueError",
                                    "%s: header '%s' has a line break or NUL in its value",
                                    call->name, key);
            break;
        }
        bytes += strlen(key) + vlen + 4;
        if (++count > limits->max_headers || bytes > limits->max_header_bytes) {
            rc = task_error_invalid(err, "ValueError",
                                    "%s: headers exceed the limit of %zu headers / %zu bytes",
                                    call->name, limits->max_headers, limits->max_header_bytes);
            break;
        }
        has_expect |= strcasecmp(key, "expect") == 0;
        /* "Name;" is curl's way to send an empty value; "Name:" would remove the header. */
        char *line = NULL;
        if (asprintf(&line, vlen ? "%s: %s" : "%s;", key, v) < 0) {
            rc = task_error_set(err, "MemoryError", "out of memory");
            break;
        }
        struct curl_slist *grown = curl_slist_append(list, line);
        free(line);
        if (grown == NULL) {
            rc = task_error_set(err, "MemoryError", "out of memory");
            break;
        }
        list = grown;
    }
    if (rc == 0 && !has_expect) {
        struct curl_slist *grown = curl_slist_append(list, "Expect:");
        if (grown == NULL)
            rc = task_error_set(err, "MemoryError", "out of memory");
        else
            list = grown;
    }
    if (rc != 0) {
        curl_slist_free_all(list);
        return rc;
    }
    *out = list;
    return 0;
}

void task__http_header_list_free(struct curl_slist *list) {
    if (list != &expect_only)
        curl_slist_free_all(list);
}
