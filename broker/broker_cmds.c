/*
 * broker_cmds.c - the shared commands of broker_cmds.h and the parsers of their replies.
 *
 * Each builder formats its keys with broker_keys.h (so a bad name is -EINVAL here, before
 * anything is sent) and copies them, and the names a script builds keys from, into the
 * batch; it borrows the documents (results, entries, messages), which can be large.
 *
 * Pure computation; never yields.
 */
#include "broker_cmds.h"

#include "broker_scripts.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Add a key made by a broker_key_* function (len < 0: it refused the name). */
static int add_key(broker_batch *b, const char *key, int len) {
    if (len < 0)
        return broker_batch_fail(b, -EINVAL);
    return broker_batch_copy(b, key, (size_t)len);
}

/* " EX <ttl>" when the value expires. */
static int add_ttl(broker_batch *b, long ttl) {
    if (ttl <= 0)
        return b->err;
    broker_batch_arg(b, "EX", 2);
    return broker_batch_num(b, ttl);
}

int broker_cmd_enqueue(broker_batch *b, const broker_keys *k, const char *queue, const char *msg,
                       size_t len) {
    char key[BROKER_KEY_MAX];
    broker_batch_cmd(b);
    broker_batch_arg(b, "LPUSH", 5);
    add_key(b, key, broker_key_queue(k, queue, key));
    return broker_batch_arg(b, msg, len);
}

int broker_cmd_queue_depths(broker_batch *b, const broker_keys *k, const char *const *queues,
                            size_t n) {
    char key[BROKER_KEY_MAX];
    for (size_t i = 0; i < n && b->err == 0; i++) {
        broker_batch_cmd(b);
        broker_batch_arg(b, "LLEN", 4);
        add_key(b, key, broker_key_queue(k, queues[i], key));
    }
    return b->err;
}

long long broker_reply_queue_depth(const redisReply *r) {
    return r != NULL && r->type == REDIS_REPLY_INTEGER && r->integer >= 0 ? r->integer : -1;
}

int broker_cmd_scan_queues(broker_batch *b, const broker_keys *k, const char *cursor) {
    char pattern[BROKER_KEY_MAX];
    int len = broker_key_queue_pattern(k, pattern);
    broker_batch_cmd(b);
    broker_batch_arg(b, "SCAN", 4);
    broker_batch_copy(b, cursor, strlen(cursor));
    broker_batch_arg(b, "MATCH", 5);
    add_key(b, pattern, len);
    broker_batch_arg(b, "COUNT", 5);
    return broker_batch_arg(b, "1000", 4);
}

int broker_reply_scan(const redisReply *r, char cursor[BROKER_SCAN_CURSOR_MAX],
                      const redisReply **keys) {
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_STRING || r->element[0]->len == 0 ||
        r->element[0]->len >= BROKER_SCAN_CURSOR_MAX || r->element[1]->type != REDIS_REPLY_ARRAY)
        return -EPROTO;
    memcpy(cursor, r->element[0]->str, r->element[0]->len + 1);
    *keys = r->element[1];
    return 0;
}

int broker_cmd_result_store(broker_batch *b, const broker_keys *k, const char *id, const char *json,
                            size_t len, long ttl) {
    return broker_cmd_result_store_at(b, k, id, false, json, len, ttl);
}

int broker_cmd_result_store_at(broker_batch *b, const broker_keys *k, const char *id, bool celery,
                               const char *json, size_t len, long ttl) {
    char key[BROKER_KEY_MAX];
    int klen = celery ? broker_key_celery_result(id, key) : broker_key_result(k, id, key);
    broker_batch_cmd(b);
    broker_batch_arg(b, "SET", 3);
    add_key(b, key, klen);
    broker_batch_arg(b, json, len);
    add_ttl(b, ttl);
    broker_batch_cmd(b);
    broker_batch_arg(b, "PUBLISH", 7);
    add_key(b, key, klen);
    return broker_batch_arg(b, json, len);
}

int broker_cmd_revoke_mark(broker_batch *b, const broker_keys *k, const char *id, long ttl) {
    char key[BROKER_KEY_MAX];
    broker_batch_cmd(b);
    broker_batch_arg(b, "SET", 3);
    add_key(b, key, broker_key_revoked(k, id, key));
    broker_batch_arg(b, "1", 1);
    return add_ttl(b, ttl);
}

int broker_cmd_dead_requeue(broker_batch *b, const broker_keys *k, const char *entry, size_t elen,
                            const char *queue, const char *msg, size_t mlen) {
    if (broker_check_queue_ref(queue) != NULL)
        return broker_batch_fail(b, -EINVAL);
    broker_batch_script(b, BROKER_SCRIPT_DEAD_REQUEUE);
    broker_batch_copy(b, k->prefix, strlen(k->prefix));
    broker_batch_arg(b, entry, elen);
    broker_batch_copy(b, queue, strlen(queue));
    return broker_batch_arg(b, msg, mlen);
}

int broker_cmd_dead_drop(broker_batch *b, const broker_keys *k, const char *entry, size_t elen) {
    char key[BROKER_KEY_MAX];
    broker_batch_cmd(b);
    broker_batch_arg(b, "LREM", 4);
    add_key(b, key, broker_key_dead(k, key));
    broker_batch_arg(b, "1", 1);
    return broker_batch_arg(b, entry, elen);
}

int broker_reply_integer(const redisReply *r, long long *out) {
    if (r == NULL || r->type != REDIS_REPLY_INTEGER)
        return -EPROTO;
    *out = r->integer;
    return 0;
}

double broker_reply_number(const redisReply *e) {
    if (e->type == REDIS_REPLY_INTEGER)
        return (double)e->integer;
    if (e->type == REDIS_REPLY_STRING && e->len > 0) {
        char *end;
        double v = strtod(e->str, &end);
        return end == e->str + e->len ? v : -1;
    }
    return -1;
}

double broker_reply_clock(redisReply *const *pair) {
    double sec = broker_reply_number(pair[0]), usec = broker_reply_number(pair[1]);
    return sec < 0 || usec < 0 ? -1 : sec + usec / 1e6;
}

double broker_reply_number_or_zero(const redisReply *e) {
    return e->type == REDIS_REPLY_STRING && e->len == 0 ? 0 : broker_reply_number(e);
}

int broker_cmd_purge(broker_batch *b, const broker_keys *k, const char *queue) {
    char key[BROKER_KEY_MAX];
    int len = broker_key_queue(k, queue, key);
    if (len < 0)
        return broker_batch_fail(b, -EINVAL);
    broker_batch_cmd(b);
    broker_batch_str(b, "MULTI");
    broker_batch_cmd(b);
    broker_batch_str(b, "LLEN");
    broker_batch_copy(b, key, (size_t)len);
    broker_batch_cmd(b);
    broker_batch_str(b, "DEL");
    broker_batch_copy(b, key, (size_t)len);
    broker_batch_cmd(b);
    broker_batch_str(b, "EXEC");
    return b->err;
}

static int paused_cmd(broker_batch *b, const broker_keys *k, const char *verb, const char *queue) {
    char key[BROKER_KEY_MAX];
    if (queue != NULL && broker_check_queue_ref(queue) != NULL)
        return broker_batch_fail(b, -EINVAL);
    int len = broker_key_paused(k, key);
    broker_batch_cmd(b);
    broker_batch_str(b, verb);
    broker_batch_copy(b, key, (size_t)len);
    if (queue != NULL)
        broker_batch_copy(b, queue, strlen(queue));
    return b->err;
}

int broker_cmd_pause(broker_batch *b, const broker_keys *k, const char *queue) {
    return queue ? paused_cmd(b, k, "SADD", queue) : broker_batch_fail(b, -EINVAL);
}

int broker_cmd_resume(broker_batch *b, const broker_keys *k, const char *queue) {
    return queue ? paused_cmd(b, k, "SREM", queue) : broker_batch_fail(b, -EINVAL);
}

int broker_cmd_paused(broker_batch *b, const broker_keys *k) {
    return paused_cmd(b, k, "SMEMBERS", NULL);
}

long long broker_reply_purge(const redisReply *exec) {
    if (exec == NULL || exec->type != REDIS_REPLY_ARRAY || exec->elements != 2 ||
        exec->element[0]->type != REDIS_REPLY_INTEGER)
        return -EPROTO;
    return exec->element[0]->integer;
}
