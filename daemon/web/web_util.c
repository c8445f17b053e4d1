/*
 * web_util.c - the small helpers every part of workerd-web uses (web.h "web_util.c"):
 * query strings and cookies, JSON answers, sending a broker_batch on the green
 * connection.
 */
#include "web.h"

#include "broker_result.h"
#include "broker_scripts.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int hexval(int c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

bool web_query(const char *query, const char *name, char *buf, size_t len) {
    size_t nlen = strlen(name);
    for (const char *p = query; p && *p;) {
        const char *end = strchr(p, '&');
        if (!end)
            end = p + strlen(p);
        if ((size_t)(end - p) > nlen && strncmp(p, name, nlen) == 0 && p[nlen] == '=') {
            size_t n = 0;
            for (const char *s = p + nlen + 1; s < end; s++) {
                int c = (unsigned char)*s;
                if (c == '+') {
                    c = ' ';
                } else if (c == '%' && s + 2 < end + 1 && hexval(s[1]) >= 0 && hexval(s[2]) >= 0) {
                    c = hexval(s[1]) * 16 + hexval(s[2]);
                    s += 2;
                }
                if (c == 0 || n + 1 >= len)
                    return false;
                buf[n++] = (char)c;
            }
            buf[n] = '\0';
            return true;
        }
        p = *end ? end + 1 : end;
    }
    return false;
}

long web_query_long(const char *query, const char *name, long deflt, long lo, long hi) {
    char buf[32], *end;
    if (!web_query(query, name, buf, sizeof buf))
        return deflt;
    long v = strtol(buf, &end, 10);
    if (end == buf || *end)
        return deflt;
    return v < lo ? lo : v > hi ? hi : v;
}

bool web_cookie(const char *cookie, const char *name, char *buf, size_t len) {
    size_t nlen = strlen(name);
    for (const char *p = cookie; p && *p;) {
        while (*p == ' ' || *p == ';')
            p++;
        const char *end = strchr(p, ';');
        if (!end)
            end = p + strlen(p);
        if ((size_t)(end - p) > nlen && strncmp(p, name, nlen) == 0 && p[nlen] == '=') {
            size_t n = (size_t)(end - p) - nlen - 1;
            if (n + 1 > len)
                return false;
            memcpy(buf, p + nlen + 1, n);
            buf[n] = '\0';
            return true;
        }
        p = end;
    }
    return false;
}

void web_json(struct web_answer *ans, int status, json_t *v) {
    char *text = v ? json_dumps(v, JSON_COMPACT | JSON_ESCAPE_SLASH) : NULL;
    json_decref(v);
    ans->type = "application/json";
    if (!text) {
        ans->status = 500;
        ans->body = (char *)"{\"error\":\"out of memory\"}";
        ans->body_static = true;
        ans->len = strlen(ans->body);
        return;
    }
    ans->status = status;
    ans->body = text;
    ans->len = strlen(text);
}

void web_error(struct web_answer *ans, int status, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    web_json(ans, status, json_pack("{s:o}", "error", web_jstr(msg, strlen(msg), sizeof msg)));
}

int web_send(broker_conn *c, broker_batch *b, redisReply **replies) {
    if (b->err)
        return b->err;
    for (size_t i = 0; i < b->n; i++)
        replies[i] = NULL;
    int rc = broker_conn_pipeline(c, b->n, b->argcs, (const char **const *)b->argvs, b->argvlens,
                                  replies, WEB_REDIS_TIMEOUT);
    if (rc)
        return rc;
    /* An EVALSHA Redis forgot (a restart, SCRIPT FLUSH): once more as EVAL, alone. */
    for (size_t i = 0; i < b->n; i++) {
        if (!broker_script_retry(b, i, replies[i]))
            continue;
        redisReply *again = NULL;
        rc = broker_conn_call(c, &again, WEB_REDIS_TIMEOUT, b->argcs[i], b->argvs[i],
                              b->argvlens[i]);
        if (rc) {
            web_replies_free(replies, b->n);
            return rc;
        }
        freeReplyObject(replies[i]);
        replies[i] = again;
    }
    return 0;
}

void web_replies_free(redisReply **replies, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (replies[i])
            freeReplyObject(replies[i]);
        replies[i] = NULL;
    }
}

json_t *web_jstr(const char *s, size_t n, size_t max) {
    if (!s)
        return json_null();
    if (n > max) {
        n = max;
        /* Back up to the start of a UTF-8 sequence. */
        while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
            n--;
    }
    return broker_json_string_lossy(s, n);
}
