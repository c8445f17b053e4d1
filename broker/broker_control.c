/*
 * broker_control.c - the revocation marks, the revoked set and the control stream of
 * broker_control.h.
 *
 * The builders format keys with broker_keys.h and copy them and the ids into the batch,
 * so that nothing the caller passed needs to outlive the call. The green calls build a
 * batch, send it with broker_conn_pipeline (one round trip each) and parse the replies
 * here.
 *
 * Builders and parsers are pure computation; the green calls run on greenlets.
 */
#include "broker_control.h"

#include "green.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int add_key(broker_batch *b, const char *key, int len) {
    if (len < 0)
        return broker_batch_fail(b, -EINVAL);
    return broker_batch_copy(b, key, (size_t)len);
}

static int add_text(broker_batch *b, const char *s) {
    return broker_batch_copy(b, s, strlen(s));
}

/* A unix time as a score or a field: whole seconds and milliseconds. */
static int add_time(broker_batch *b, const char *before, double t) {
    char buf[64];
    snprintf(buf, sizeof buf, "%s%.3f", before, t);
    return add_text(b, buf);
}

/* ---- builders and parsers ------------------------------------------------------------ */

int broker_cmd_revoke(broker_batch *b, const broker_keys *k, const char *id, bool terminate,
                      long ttl, double now) {
    char key[BROKER_KEY_MAX];
    const char *kind = terminate ? "terminate" : "revoke";
    double until = now + (double)ttl;
    broker_batch_cmd(b);
    broker_batch_arg(b, "SET", 3);
    add_key(b, key, broker_key_revoked(k, id, key));
    broker_batch_str(b, terminate ? BROKER_MARK_TERMINATE : BROKER_MARK_REVOKE);
    if (ttl > 0) {
        broker_batch_arg(b, "EX", 2);
        broker_batch_num(b, ttl);
    }
    broker_batch_cmd(b);
    broker_batch_arg(b, "ZADD", 4);
    add_key(b, key, broker_key_revoked_set(k, key));
    broker_batch_arg(b, "GT", 2);
    if (ttl > 0)
        add_time(b, "", until);
    else
        broker_batch_arg(b, "+inf", 4);
    add_text(b, id);
    broker_batch_cmd(b);
    broker_batch_arg(b, "XADD", 4);
    add_key(b, key, broker_key_control(k, key));
    broker_batch_arg(b, "MAXLEN", 6);
    broker_batch_arg(b, "~", 1);
    broker_batch_num(b, BROKER_CONTROL_MAXLEN);
    broker_batch_arg(b, "*", 1);
    broker_batch_str(b, kind);
    add_text(b, id);
    if (ttl > 0) {
        broker_batch_arg(b, "until", 5);
        add_time(b, "", until);
    }
    broker_batch_cmd(b);
    broker_batch_arg(b, "ZREMRANGEBYSCORE", 16);
    add_key(b, key, broker_key_revoked_set(k, key));
    broker_batch_arg(b, "-inf", 4);
    return add_time(b, "(", now);
}

int broker_cmd_marks_get(broker_batch *b, const broker_keys *k, const char *const *ids, size_t n) {
    char key[BROKER_KEY_MAX];
    broker_batch_cmd(b);
    broker_batch_arg(b, "MGET", 4);
    for (size_t i = 0; i < n && b->err == 0; i++)
        add_key(b, key, broker_key_revoked(k, ids[i], key));
    return b->err;
}

broker_mark broker_reply_mark(const redisReply *r) {
    if (r == NULL || r->type == REDIS_REPLY_NIL)
        return BROKER_MARK_NONE;
    if (r->type == REDIS_REPLY_STRING && strcmp(r->str, BROKER_MARK_TERMINATE) == 0)
        return BROKER_MARK_TERMINATED;
    return BROKER_MARK_REVOKED;
}

int broker_cmd_control_tail(broker_batch *b, const broker_keys *k) {
    char key[BROKER_KEY_MAX];
    broker_batch_cmd(b);
    broker_batch_arg(b, "XREVRANGE", 9);
    add_key(b, key, broker_key_control(k, key));
    broker_batch_arg(b, "+", 1);
    broker_batch_arg(b, "-", 1);
    broker_batch_arg(b, "COUNT", 5);
    return broker_batch_arg(b, "1", 1);
}

/* An entry, [id, [field, value, ...]]: its id, or NULL when it has another shape. */
static const redisReply *entry_id(const redisReply *e) {
    if (e == NULL || e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
        e->element[0]->type != REDIS_REPLY_STRING || e->element[0]->len == 0 ||
        e->element[0]->len >= BROKER_STREAM_ID_MAX || e->element[1]->type != REDIS_REPLY_ARRAY)
        return NULL;
    return e->element[0];
}

/* The id of the first entry of an XRANGE / XREVRANGE reply into id ("0-0" for none). */
static int first_entry(const redisReply *r, char id[BROKER_STREAM_ID_MAX]) {
    if (r == NULL || r->type != REDIS_REPLY_ARRAY)
        return -EPROTO;
    if (r->elements == 0) {
        strcpy(id, "0-0");
        return 0;
    }
    const redisReply *e = entry_id(r->element[0]);
    if (e == NULL)
        return -EPROTO;
    memcpy(id, e->str, e->len + 1);
    return 0;
}

int broker_reply_control_tail(const redisReply *r, char last[BROKER_STREAM_ID_MAX]) {
    return first_entry(r, last);
}

int broker_cmd_revoked_snapshot(broker_batch *b, const broker_keys *k, double now) {
    char key[BROKER_KEY_MAX];
    broker_batch_cmd(b);
    broker_batch_arg(b, "MULTI", 5);
    broker_cmd_control_tail(b, k);
    broker_batch_cmd(b);
    broker_batch_arg(b, "ZRANGEBYSCORE", 13);
    add_key(b, key, broker_key_revoked_set(k, key));
    add_time(b, "(", now);
    broker_batch_arg(b, "+inf", 4);
    broker_batch_arg(b, "WITHSCORES", 10);
    broker_batch_cmd(b);
    return broker_batch_arg(b, "EXEC", 4);
}

/* A score or an "until" field as an expiry: 0 for never (inf, or unreadable). */
static double until_of(const char *s) {
    char *end;
    double t = strtod(s, &end);
    return end == s || !isfinite(t) || t <= 0 ? 0 : t;
}

static bool is_task_id(const redisReply *v) {
    return v->type == REDIS_REPLY_STRING && strlen(v->str) == v->len &&
           broker_check_task_id(v->str) == NULL;
}

int broker_reply_revoked_snapshot(const redisReply *exec, char last[BROKER_STREAM_ID_MAX],
                                  broker_revoked_fn fn, void *arg) {
    if (exec == NULL || exec->type != REDIS_REPLY_ARRAY || exec->elements != 2)
        return -EPROTO;
    const redisReply *ids = exec->element[1];
    char tail[BROKER_STREAM_ID_MAX];
    if (first_entry(exec->element[0], tail) != 0 || ids->type != REDIS_REPLY_ARRAY ||
        ids->elements % 2 != 0)
        return -EPROTO;
    for (size_t i = 0; i < ids->elements; i++)
        if (ids->element[i]->type != REDIS_REPLY_STRING)
            return -EPROTO;
    for (size_t i = 0; i < ids->elements; i += 2)
        if (is_task_id(ids->element[i]))
            fn(arg, ids->element[i]->str, until_of(ids->element[i + 1]->str), false);
    memcpy(last, tail, sizeof tail);
    return (int)(ids->elements / 2);
}

int broker_cmd_control_read(broker_batch *b, const broker_keys *k, const char *after, long block_ms,
                            long count) {
    char key[BROKER_KEY_MAX];
    int klen = broker_key_control(k, key);
    broker_batch_cmd(b);
    broker_batch_arg(b, "XRANGE", 6);
    add_key(b, key, klen);
    broker_batch_arg(b, "-", 1);
    broker_batch_arg(b, "+", 1);
    broker_batch_arg(b, "COUNT", 5);
    broker_batch_arg(b, "1", 1);
    broker_batch_cmd(b);
    broker_batch_arg(b, "XREAD", 5);
    broker_batch_arg(b, "COUNT", 5);
    broker_batch_num(b, count);
    if (block_ms > 0) {
        broker_batch_arg(b, "BLOCK", 5);
        broker_batch_num(b, block_ms);
    }
    broker_batch_arg(b, "STREAMS", 7);
    add_key(b, key, klen);
    return add_text(b, after);
}

/* Call fn for what one entry's fields revoke. */
static void apply_entry(const redisReply *fields, broker_revoked_fn fn, void *arg) {
    const redisReply *id = NULL;
    bool terminate = false;
    double until = 0;
    for (size_t j = 0; j + 1 < fields->elements; j += 2) {
        const redisReply *f = fields->element[j], *v = fields->element[j + 1];
        if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            continue;
        if (strcmp(f->str, "revoke") == 0 || strcmp(f->str, "terminate") == 0) {
            id = v;
            terminate = f->str[0] == 't';
        } else if (strcmp(f->str, "until") == 0) {
            until = until_of(v->str);
        }
    }
    if (id && is_task_id(id))
        fn(arg, id->str, until, terminate);
}

int broker_reply_control_read(const redisReply *head, const redisReply *read,
                              char last[BROKER_STREAM_ID_MAX], bool *gap, broker_revoked_fn fn,
                              void *arg) {
    char oldest[BROKER_STREAM_ID_MAX];
    *gap = false;
    if (first_entry(head, oldest) != 0 || read == NULL)
        return -EPROTO;
    if (read->type == REDIS_REPLY_NIL)
        return 0;
    /* [[key, [entry, ...]]]: one stream was asked for. */
    if (read->type != REDIS_REPLY_ARRAY || read->elements != 1 ||
        read->element[0]->type != REDIS_REPLY_ARRAY || read->element[0]->elements != 2 ||
        read->element[0]->element[1]->type != REDIS_REPLY_ARRAY)
        return -EPROTO;
    const redisReply *entries = read->element[0]->element[1];
    for (size_t i = 0; i < entries->elements; i++)
        if (entry_id(entries->element[i]) == NULL)
            return -EPROTO;
    /* The stream is trimmed from its oldest end: entries after `last` were lost only if
     * the oldest entry kept is newer than `last`. (When it is the very next one, nothing
     * was lost, but that cannot be told apart: the caller reloads, which is safe.) */
    if (entries->elements > 0 && broker_stream_id_cmp(oldest, last) > 0) {
        *gap = true;
        return (int)entries->elements;
    }
    for (size_t i = 0; i < entries->elements; i++) {
        const redisReply *e = entries->element[i];
        apply_entry(e->element[1], fn, arg);
        memcpy(last, e->element[0]->str, e->element[0]->len + 1);
    }
    return (int)entries->elements;
}

/* "<ms>-<seq>" (or "<ms>": sequence 0) as two numbers. */
static void split_id(const char *id, unsigned long long *ms, unsigned long long *seq) {
    char *end;
    *ms = strtoull(id, &end, 10);
    *seq = *end == '-' ? strtoull(end + 1, NULL, 10) : 0;
}

int broker_stream_id_cmp(const char *a, const char *b) {
    unsigned long long ams, aseq, bms, bseq;
    split_id(a, &ams, &aseq);
    split_id(b, &bms, &bseq);
    if (ams != bms)
        return ams < bms ? -1 : 1;
    return aseq < bseq ? -1 : aseq > bseq;
}

/* ---- on a green connection ----------------------------------------------------------- */

/* Send b in one round trip; on 0, replies[0..b->n) are the caller's. A Redis error reply
 * to any command is -EPROTO (then no reply is left to free). */
static int send_batch(broker_conn *c, broker_batch *b, redisReply **replies, double timeout) {
    if (b->err)
        return b->err;
    int rc = broker_conn_pipeline(c, b->n, b->argcs, (const char **const *)b->argvs,
                                  (const size_t *const *)b->argvlens, replies, timeout);
    for (size_t i = 0; rc == 0 && i < b->n; i++)
        if (replies[i]->type == REDIS_REPLY_ERROR)
            rc = -EPROTO;
    if (rc == -EPROTO)
        for (size_t i = 0; i < b->n; i++)
            freeReplyObject(replies[i]);
    return rc;
}

int broker_marks_get(broker_conn *c, const broker_keys *k, const char *const *ids, size_t n,
                     broker_mark *marks, double timeout) {
    if (n == 0)
        return 0;
    broker_batch b = {0};
    broker_cmd_marks_get(&b, k, ids, n);
    redisReply *r = NULL;
    int rc = send_batch(c, &b, &r, timeout);
    if (rc == 0) {
        if (r->type != REDIS_REPLY_ARRAY || r->elements != n)
            rc = -EPROTO;
        for (size_t i = 0; rc == 0 && i < n; i++)
            marks[i] = broker_reply_mark(r->element[i]);
        freeReplyObject(r);
    }
    broker_batch_clear(&b);
    return rc;
}

int broker_revoked_snapshot(broker_conn *c, const broker_keys *k, double now,
                            char last[BROKER_STREAM_ID_MAX], broker_revoked_fn fn, void *arg,
                            double timeout) {
    broker_batch b = {0};
    broker_cmd_revoked_snapshot(&b, k, now);
    redisReply *r[4] = {0};
    int rc = send_batch(c, &b, r, timeout);
    if (rc == 0) {
        rc = broker_reply_revoked_snapshot(r[3], last, fn, arg);
        for (size_t i = 0; i < 4; i++)
            freeReplyObject(r[i]);
    }
    broker_batch_clear(&b);
    return rc;
}

int broker_control_read(broker_conn *c, const broker_keys *k, char last[BROKER_STREAM_ID_MAX],
                        double block, bool *gap, broker_revoked_fn fn, void *arg) {
    long block_ms = block > 0 ? (long)(block * 1000) : 0;
    broker_batch b = {0};
    broker_cmd_control_read(&b, k, last, block_ms, 1000);
    redisReply *r[2] = {0};
    /* The call waits a little longer than XREAD's own BLOCK. */
    int rc = send_batch(c, &b, r, block + 5.0);
    if (rc == 0) {
        rc = broker_reply_control_read(r[0], r[1], last, gap, fn, arg);
        freeReplyObject(r[0]);
        freeReplyObject(r[1]);
    }
    broker_batch_clear(&b);
    return rc;
}
