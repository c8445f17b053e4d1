/*
 * broker_stats.c - the per-minute and total task counters of broker_stats.h: their
 * commands and the parser of their replies.
 */
#include "broker_stats.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

int broker_cmd_stats_add(broker_batch *b, const broker_keys *k, long long minute,
                         long long processed, long long failed) {
    char key[BROKER_KEY_MAX], total[BROKER_KEY_MAX];
    if (processed == 0 && failed == 0)
        return b->err;
    int kl = broker_key_stats_minute(k, minute, key), tl = broker_key_stats_total(k, total);
    if (kl < 0 || tl < 0)
        return broker_batch_fail(b, -EINVAL);
    static const char *const fields[] = {"processed", "failed"};
    const long long counts[] = {processed, failed};
    for (int i = 0; i < 2; i++) {
        broker_batch_cmd(b);
        broker_batch_str(b, "HINCRBY");
        broker_batch_copy(b, key, (size_t)kl);
        broker_batch_str(b, fields[i]);
        broker_batch_num(b, counts[i]);
    }
    broker_batch_cmd(b);
    broker_batch_str(b, "EXPIRE");
    broker_batch_copy(b, key, (size_t)kl);
    broker_batch_num(b, BROKER_STATS_MINUTE_TTL);
    for (int i = 0; i < 2; i++) {
        broker_batch_cmd(b);
        broker_batch_str(b, "HINCRBY");
        broker_batch_copy(b, total, (size_t)tl);
        broker_batch_str(b, fields[i]);
        broker_batch_num(b, counts[i]);
    }
    return b->err;
}

static void hmget(broker_batch *b, const char *key, int len) {
    broker_batch_cmd(b);
    broker_batch_str(b, "HMGET");
    broker_batch_copy(b, key, (size_t)len);
    broker_batch_str(b, "processed");
    broker_batch_str(b, "failed");
}

int broker_cmd_stats_read(broker_batch *b, const broker_keys *k, long long first, int n) {
    char key[BROKER_KEY_MAX];
    for (int i = 0; i < n; i++) {
        int len = broker_key_stats_minute(k, first + i, key);
        if (len < 0)
            return broker_batch_fail(b, -EINVAL);
        hmget(b, key, len);
    }
    int len = broker_key_stats_total(k, key);
    if (len < 0)
        return broker_batch_fail(b, -EINVAL);
    hmget(b, key, len);
    return b->err;
}

static long long field(const redisReply *r) {
    if (r == NULL || r->type != REDIS_REPLY_STRING)
        return 0;
    return strtoll(r->str, NULL, 10);
}

void broker_reply_stats(const redisReply *r, long long *processed, long long *failed) {
    bool ok = r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 2;
    *processed = ok ? field(r->element[0]) : 0;
    *failed = ok ? field(r->element[1]) : 0;
}
