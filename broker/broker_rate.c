/*
 * broker_rate.c - the rate parser, the rate-limit hash's commands, and the call of
 * rate_limit.lua with its reply read (broker_rate.h; the script says how the limit works).
 *
 * The parser and the builders are pure; broker_rate_check is one round trip on a greenlet
 * of the connection's hub.
 */
#include "broker_rate.h"

#include "broker_cmds.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int broker_rate_parse(const char *text, double *per_second, char *why, size_t whylen) {
    const char *p = text;
    size_t digits = 0;
    while (isdigit((unsigned char)*p))
        p++, digits++;
    if (*p == '.') {
        p++;
        while (isdigit((unsigned char)*p))
            p++, digits++;
    }
    if (digits == 0 || *p != '/') {
        snprintf(why, whylen,
                 "'%s' is not a rate: write a number, '/' and a unit, e.g. 100/s, 10/m, 0.5/h",
                 text);
        return -1;
    }
    double unit = p[1] == 's' ? 1 : p[1] == 'm' ? 60 : p[1] == 'h' ? 3600 : 0;
    if (unit == 0 || p[2] != '\0') {
        snprintf(why, whylen, "'%s' is not a rate: the unit must be s, m or h", text);
        return -1;
    }
    double n = strtod(text, NULL) / unit;
    if (!isfinite(n) || n <= 0) {
        snprintf(why, whylen, "'%s' is not a rate: it must be more than 0", text);
        return -1;
    }
    if (n > BROKER_RATE_MAX_PER_SECOND || n < BROKER_RATE_MIN_PER_SECOND) {
        snprintf(why, whylen, "'%s' is out of range: from 1/86400 per second (one a day) to %g/s",
                 text, BROKER_RATE_MAX_PER_SECOND);
        return -1;
    }
    if (per_second)
        *per_second = n;
    return 0;
}

const char *broker_rate_check_name(const char *name) {
    size_t n = strlen(name);
    if (n == 0)
        return "the name is empty";
    if (n > BROKER_RATE_NAME_MAX)
        return "the name is longer than 256 bytes";
    for (const unsigned char *s = (const unsigned char *)name; *s; s++) {
        if (*s <= ' ' || *s == 0x7f)
            return "the name contains whitespace or a control character";
        if (*s == ',' || *s == '=')
            return "the name contains ',' or '='";
    }
    return NULL;
}

int broker_key_rate_limits(const broker_keys *k, char buf[BROKER_KEY_MAX]) {
    int n = snprintf(buf, BROKER_KEY_MAX, "%s:rate_limits", k->prefix);
    return n < 0 || n >= BROKER_KEY_MAX ? -EINVAL : n;
}

static int start(broker_batch *b, const broker_keys *k, const char *command) {
    char key[BROKER_KEY_MAX];
    int len = broker_key_rate_limits(k, key);
    if (len < 0)
        return broker_batch_fail(b, -EINVAL);
    broker_batch_cmd(b);
    broker_batch_str(b, command);
    return broker_batch_copy(b, key, (size_t)len);
}

int broker_cmd_rate_set(broker_batch *b, const broker_keys *k, const char *task, const char *rate) {
    char why[160];
    if (broker_rate_check_name(task) || broker_rate_parse(rate, NULL, why, sizeof why))
        return broker_batch_fail(b, -EINVAL);
    start(b, k, "HSET");
    broker_batch_copy(b, task, strlen(task));
    return broker_batch_copy(b, rate, strlen(rate));
}

int broker_cmd_rate_off(broker_batch *b, const broker_keys *k, const char *task) {
    if (broker_rate_check_name(task))
        return broker_batch_fail(b, -EINVAL);
    start(b, k, "HDEL");
    return broker_batch_copy(b, task, strlen(task));
}

int broker_cmd_rate_list(broker_batch *b, const broker_keys *k) {
    return start(b, k, "HGETALL");
}

int broker_rate_check(broker_conn *conn, const char *prefix, const char *wid, const char *kind,
                      const char *name, const char *rate, const char *tag, const char *queue,
                      const char *text, size_t len, broker_rate_result *out, double timeout) {
    if (broker_rate_check_name(name))
        return -EINVAL;
    const char *argv[] = {
        prefix,          wid, kind, name, rate ? rate : "", tag ? tag : "", queue ? queue : "",
        text ? text : ""};
    size_t lens[8];
    for (int i = 0; i < 8; i++)
        lens[i] = strlen(argv[i]);
    if (text)
        lens[7] = len;
    redisReply *r = NULL;
    int rc = broker_conn_eval(conn, &r, timeout, BROKER_SCRIPT_RATE_LIMIT, 8, argv, lens);
    if (rc != 0)
        return rc;
    rc = -EPROTO;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 4 &&
        r->element[0]->type == REDIS_REPLY_INTEGER) {
        long long v = r->element[0]->integer;
        double now = broker_reply_clock(r->element + 2);
        double d = broker_reply_number_or_zero(r->element[1]);
        bool waits = v == BROKER_RATE_KEPT || v == BROKER_RATE_WAIT;
        if (v >= -1 && v <= 3 && now >= 0 && (!waits || d > 0)) {
            *out =
                (broker_rate_result){.verdict = (broker_rate_verdict)v, .due = d, .redis_now = now};
            rc = 0;
        }
    }
    freeReplyObject(r);
    return rc;
}

/* ---- host slots (host_slot.lua) ------------------------------------------------------ */

static int slot_call(broker_conn *conn, const char *prefix, const char *op, const char *host,
                     const char *holder, long limit, double lease, broker_slot_result *out,
                     double timeout) {
    if (broker_rate_check_name(host) || broker_rate_check_name(holder))
        return -EINVAL;
    char lim[32] = "", ls[64] = "";
    if (out) {
        if (limit < 1 || !isfinite(lease) || lease <= 0 || lease > 86400 * 7)
            return -EINVAL;
        snprintf(lim, sizeof lim, "%ld", limit);
        snprintf(ls, sizeof ls, "%.3f", lease);
    }
    const char *argv[] = {prefix, op, host, holder, lim, ls};
    size_t lens[6];
    for (int i = 0; i < 6; i++)
        lens[i] = strlen(argv[i]);
    redisReply *r = NULL;
    int rc = broker_conn_eval(conn, &r, timeout, BROKER_SCRIPT_HOST_SLOT, out ? 6 : 4, argv, lens);
    if (rc != 0)
        return rc;
    rc = -EPROTO;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 4 &&
        r->element[0]->type == REDIS_REPLY_INTEGER) {
        double now = broker_reply_clock(r->element + 2);
        double wait = broker_reply_number_or_zero(r->element[1]);
        if (now >= 0 && wait >= 0) {
            if (out)
                *out = (broker_slot_result){
                    .taken = r->element[0]->integer == 1, .wait = wait, .redis_now = now};
            rc = 0;
        }
    }
    freeReplyObject(r);
    return rc;
}

int broker_slot_acquire(broker_conn *conn, const char *prefix, const char *host, const char *holder,
                        long limit, double lease, broker_slot_result *out, double timeout) {
    return slot_call(conn, prefix, "acquire", host, holder, limit, lease, out, timeout);
}

int broker_slot_release(broker_conn *conn, const char *prefix, const char *host, const char *holder,
                        double timeout) {
    return slot_call(conn, prefix, "release", host, holder, 0, 0, NULL, timeout);
}
