/*
 * task_http_retry.c - the retry kwargs of the http.* tasks, which failures may pass, and
 * the Retry-After header (task_http_retry.h says what each promises).
 *
 * HTTP dates come in three forms (RFC 9110 5.6.7: IMF-fixdate, and the obsolete RFC 850
 * and asctime forms a recipient must still accept); curl_getdate reads all three, and is
 * a plain parser, callable anywhere.
 */
#include "task_http_retry.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

int task__http_retry_args(const task_call *call, const json_t **retry_on, bool *on_errors,
                          task_error *err) {
    const json_t *list;
    int rc = task_arg_value(call, TASK_ARG_KWONLY, "retry_on", false, &list, err);
    if (rc != 0)
        return rc;
    if (list != NULL && !json_is_array(list))
        return task_error_invalid(err, "TypeError",
                                  "%s: retry_on must be a list of HTTP status codes, got %s",
                                  call->name, task_json_type_name(list));
    if (list != NULL && json_array_size(list) > TASK_HTTP_RETRY_ON_MAX)
        return task_error_invalid(err, "ValueError",
                                  "%s: retry_on lists %zu status codes, more than %d", call->name,
                                  json_array_size(list), TASK_HTTP_RETRY_ON_MAX);
    for (size_t i = 0; list != NULL && i < json_array_size(list); i++) {
        const json_t *code = json_array_get(list, i);
        if (!json_is_integer(code))
            return task_error_invalid(err, "TypeError",
                                      "%s: retry_on[%zu] must be an HTTP status code, got %s",
                                      call->name, i, task_json_type_name(code));
        if (json_integer_value(code) < 100 || json_integer_value(code) > 599)
            return task_error_invalid(err, "ValueError",
                                      "%s: retry_on[%zu] must be between 100 and 599, got %lld",
                                      call->name, i, (long long)json_integer_value(code));
    }
    *retry_on = list;
    return task_opt_bool(call, TASK_ARG_KWONLY, "retry_on_errors", false, on_errors, err);
}

bool task__http_retry_status(const json_t *retry_on, long status) {
    for (size_t i = 0; retry_on != NULL && i < json_array_size(retry_on); i++)
        if (json_integer_value(json_array_get(retry_on, i)) == status)
            return true;
    return false;
}

bool task__http_retry_error(CURLcode res) {
    switch (res) {
    case CURLE_COULDNT_RESOLVE_HOST: /* DNS failing (or the name unknown, for now) */
    case CURLE_COULDNT_CONNECT:      /* refused, unreachable */
    case CURLE_OPERATION_TIMEDOUT:   /* the request's own timeout */
    case CURLE_SEND_ERROR:           /* reset while sending */
    case CURLE_RECV_ERROR:           /* reset while receiving */
    case CURLE_GOT_NOTHING:          /* closed without a reply */
    case CURLE_PARTIAL_FILE:         /* the body cut short */
    case CURLE_HTTP2:                /* the connection's HTTP/2 framing broke */
    case CURLE_HTTP2_STREAM:         /* the stream was reset */
        return true;
    default:
        return false;
    }
}

/* The value of the last header line named name (case-insensitive) in headers, trimmed,
 * copied into out; false when absent or longer than out. */
static bool header_value(const char *headers, size_t len, const char *name, char *out, size_t cap) {
    size_t nlen = strlen(name);
    bool found = false;
    const char *p = headers, *end = headers + len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *next = eol ? eol + 1 : end;
        if ((size_t)(next - p) > nlen && strncasecmp(p, name, nlen) == 0 && p[nlen] == ':') {
            const char *v = p + nlen + 1, *ve = eol ? eol : end;
            while (v < ve && (*v == ' ' || *v == '\t'))
                v++;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            if ((size_t)(ve - v) < cap) {
                memcpy(out, v, (size_t)(ve - v));
                out[ve - v] = '\0';
                found = true;
            } else {
                found = false;
            }
        }
        p = next;
    }
    return found;
}

double task__http_retry_after(const char *headers, size_t len, double now) {
    char value[128];
    if (headers == NULL || !header_value(headers, len, "retry-after", value, sizeof value) ||
        value[0] == '\0')
        return -1;
    if (strspn(value, "0123456789") == strlen(value)) {
        /* delay-seconds: digits only. Anything past a year is the cap's business. */
        double s = 0;
        for (const char *c = value; *c && s < 1e9; c++)
            s = s * 10 + (*c - '0');
        return s;
    }
    time_t when = curl_getdate(value, NULL);
    if (when == -1)
        return -1;
    char date[128];
    double ref = now;
    if (header_value(headers, len, "date", date, sizeof date)) {
        time_t server = curl_getdate(date, NULL);
        if (server != -1)
            ref = (double)server;
    }
    double delay = (double)when - ref;
    return delay > 0 ? delay : 0;
}
