/*
 * task_http_json.c - the JSON side of an HTTP response for the http.* tasks: header lines
 * parsed into an object, bodies as text or base64, and text that may not be UTF-8.
 *
 * Pure functions of their input, no curl and no greenlets: they run on the task's
 * greenlet after the transfer, and are tested on their own.
 */
#include "task_internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Standard base64 with padding, as Python's base64.b64encode. */
json_t *task__base64(const void *data, size_t len) {
    const unsigned char *in = data;
    size_t out_len = (len + 2) / 3 * 4;
    char *out = malloc(out_len + 1);
    if (out == NULL)
        return NULL;
    char *o = out;
    size_t i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        *o++ = b64[v >> 18];
        *o++ = b64[(v >> 12) & 63];
        *o++ = b64[(v >> 6) & 63];
        *o++ = b64[v & 63];
    }
    if (i < len) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < len ? (uint32_t)in[i + 1] << 8 : 0);
        *o++ = b64[v >> 18];
        *o++ = b64[(v >> 12) & 63];
        *o++ = i + 1 < len ? b64[(v >> 6) & 63] : '=';
        *o++ = '=';
    }
    json_t *s = json_stringn_nocheck(out, out_len);
    free(out);
    return s;
}

size_t task__json_escaped_len(const char *s, size_t len) {
    size_t n = len;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\' || c == '\b' || c == '\f' || c == '\n' || c == '\r' || c == '\t')
            n += 1;
        else if (c < 0x20)
            n += 5;
    }
    return n;
}

/* A JSON string of bytes that should be text (header values, URLs) but may not be UTF-8
 * (Latin-1 header values exist): invalid bytes become '?', so the result always exists. */
json_t *task__text(const char *s, size_t len) {
    json_t *j = json_stringn(s, len);
    if (j != NULL || len == 0)
        return j;
    char *copy = malloc(len);
    if (copy == NULL)
        return NULL;
    for (size_t i = 0; i < len; i++)
        copy[i] = (unsigned char)s[i] < 0x80 && s[i] != '\0' ? s[i] : '?';
    j = json_stringn(copy, len);
    free(copy);
    return j;
}

static const char *trim(const char *s, const char *end, const char **out_end) {
    while (s < end && (*s == ' ' || *s == '\t'))
        s++;
    while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
        end--;
    *out_end = end;
    return s;
}

/* Append ", value" (or " value" for an obsolete folded line) to headers[name]. */
static int header_add(json_t *obj, const char *name, const char *sep, const char *v, size_t vlen) {
    json_t *old = json_object_get(obj, name);
    if (old == NULL)
        return json_object_set_new(obj, name, task__text(v, vlen));
    size_t olen = json_string_length(old), slen = strlen(sep);
    char *joined = malloc(olen + slen + vlen);
    if (joined == NULL)
        return -1;
    memcpy(joined, json_string_value(old), olen);
    memcpy(joined + olen, sep, slen);
    memcpy(joined + olen + slen, v, vlen);
    int rc = json_object_set_new(obj, name, task__text(joined, olen + slen + vlen));
    free(joined);
    return rc;
}

/* Parse the raw header lines of the final response into {lowercased-name: value}. */
json_t *task__headers_object(const char *raw, size_t len) {
    json_t *obj = json_object();
    char name[256] = "";
    const char *p = raw, *end = raw + len;
    while (obj != NULL && p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *line_end = eol ? eol : end;
        const char *colon = memchr(p, ':', (size_t)(line_end - p));
        const char *v, *v_end;
        int rc = 0;
        if ((*p == ' ' || *p == '\t') && name[0] != '\0') {
            v = trim(p, line_end, &v_end);
            rc = header_add(obj, name, " ", v, (size_t)(v_end - v));
        } else if (colon != NULL && colon > p && (size_t)(colon - p) < sizeof name) {
            size_t nlen = (size_t)(colon - p);
            for (size_t i = 0; i < nlen; i++) {
                unsigned char c = (unsigned char)p[i];
                if (c >= 'A' && c <= 'Z')
                    c += 'a' - 'A';
                name[i] = c >= 0x80 || c < 0x20 ? '?' : (char)c;
            }
            name[nlen] = '\0';
            v = trim(colon + 1, line_end, &v_end);
            rc = header_add(obj, name, ", ", v, (size_t)(v_end - v));
        }
        if (rc != 0) {
            json_decref(obj);
            obj = NULL;
        }
        p = eol ? eol + 1 : end;
    }
    return obj;
}
