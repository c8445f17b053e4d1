/*
 * broker_beat.c - firing a beat tick (beat_fire.lua) and reading the marks (broker_beat.h).
 */
#include "broker_beat.h"

#include "broker_cmds.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int broker_beat_fire(broker_conn *conn, const char *prefix, const char *name, int64_t tick,
                     const char *queue, const char *msg, size_t len, broker_beat_status *status,
                     double *redis_now, double timeout) {
    char t[32];
    snprintf(t, sizeof t, "%" PRId64, tick);
    const char *argv[] = {prefix, name, t, queue, msg};
    size_t lens[] = {strlen(prefix), strlen(name), strlen(t), strlen(queue), len};
    redisReply *r = NULL;
    int rc = broker_conn_eval(conn, &r, timeout, BROKER_SCRIPT_BEAT_FIRE, 5, argv, lens);
    if (rc != 0)
        return rc;
    rc = -EPROTO;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
        r->element[0]->type == REDIS_REPLY_INTEGER && r->element[0]->integer >= -1 &&
        r->element[0]->integer <= 1) {
        double now = broker_reply_clock(r->element + 1);
        if (now >= 0) {
            *status = (broker_beat_status)r->element[0]->integer;
            *redis_now = now;
            rc = 0;
        }
    }
    freeReplyObject(r);
    return rc;
}

int broker_cmd_beat_state(broker_batch *b, const broker_keys *k) {
    char key[BROKER_KEY_MAX];
    int len = broker_key_beat(k, key), rc;
    if (len < 0)
        return broker_batch_fail(b, len);
    if ((rc = broker_batch_cmd(b)) != 0 || (rc = broker_batch_str(b, "HGETALL")) != 0 ||
        (rc = broker_batch_copy(b, key, (size_t)len)) != 0)
        return rc;
    if ((rc = broker_batch_cmd(b)) != 0 || (rc = broker_batch_str(b, "TIME")) != 0)
        return rc;
    return 0;
}

int broker_reply_beat_mark(const redisReply *all, const char *name, int64_t *tick) {
    if (all->type != REDIS_REPLY_ARRAY || all->elements % 2 != 0)
        return -EPROTO;
    for (size_t i = 0; i + 1 < all->elements; i += 2) {
        const redisReply *f = all->element[i], *v = all->element[i + 1];
        if (f->type == REDIS_REPLY_STRING && strcmp(f->str, name) == 0) {
            double d = broker_reply_number(v);
            if (d < 0)
                return -EPROTO;
            *tick = (int64_t)d;
            return 1;
        }
    }
    return 0;
}

int broker_reply_time(const redisReply *r, double *now) {
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2)
        return -EPROTO;
    double t = broker_reply_clock(r->element);
    if (t < 0)
        return -EPROTO;
    *now = t;
    return 0;
}
