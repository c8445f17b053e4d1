/*
 * broker_unique.c - the key text of a unique message, its hash, and the call of
 * unique_acquire.lua (broker_unique.h has the contract; docs/design.md "Unique tasks"
 * the why).
 *
 * The canonical JSON is jansson's own compact dump with sorted keys: the worker and any
 * producer that wants to compute a lock key need agree only on that one documented form.
 * The hash is computed here, not in Lua, so that only 40 hex digits travel with every
 * final ack, however large the key text.
 */
#include "broker_unique.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *broker_unique_text(const broker_msg *msg, size_t *len) {
    if (msg->unique_key != NULL) {
        char *s = malloc(msg->unique_key_len + 1);
        if (s == NULL)
            return NULL;
        memcpy(s, msg->unique_key, msg->unique_key_len);
        s[msg->unique_key_len] = '\0';
        *len = msg->unique_key_len;
        return s;
    }
    json_t *all = json_pack("[sOO]", msg->task, msg->args, msg->kwargs);
    if (all == NULL)
        return NULL;
    char *s = json_dumps(all, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(all);
    if (s != NULL)
        *len = strlen(s);
    return s;
}

int broker_unique_hash(const broker_msg *msg, char out[41]) {
    size_t len = 0;
    char *text = broker_unique_text(msg, &len);
    if (text == NULL)
        return -ENOMEM;
    broker_sha1_hex(text, len, out);
    free(text);
    return 0;
}

int broker_unique_acquire(broker_conn *conn, const broker_keys *keys, const char *wid,
                          const char *tag, const char *queue, const broker_msg *msg,
                          const char *hash, broker_unique_verdict *verdict,
                          char holder[BROKER_ID_MAX + 1], double timeout) {
    char ttl[32];
    snprintf(ttl, sizeof ttl, "%.0f", ceil(msg->unique_for * 1000));
    /* A generated id exists only in this worker's memory: the in-flight copy must carry
     * it, or a recovered copy would get another id and be refused by its own lock. */
    char *fixed = msg->id_generated ? json_dumps(msg->root, JSON_COMPACT) : NULL;
    if (msg->id_generated && fixed == NULL)
        return -ENOMEM;
    const char *argv[] = {keys->prefix, wid, tag, queue, msg->id, hash, ttl, fixed ? fixed : ""};
    size_t lens[8];
    for (int i = 0; i < 8; i++)
        lens[i] = strlen(argv[i]);
    redisReply *r = NULL;
    int rc = broker_conn_eval(conn, &r, timeout, BROKER_SCRIPT_UNIQUE_ACQUIRE, 8, argv, lens);
    free(fixed);
    if (rc != 0)
        return rc;
    rc = -EPROTO;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[0]->type == REDIS_REPLY_STRING && r->element[1]->type == REDIS_REPLY_STRING) {
        const char *v = r->element[0]->str;
        rc = 0;
        if (strcmp(v, "owner") == 0) {
            *verdict = BROKER_UNIQUE_OWNER;
        } else if (strcmp(v, "gone") == 0) {
            *verdict = BROKER_UNIQUE_GONE;
        } else if (strcmp(v, "duplicate") == 0) {
            *verdict = BROKER_UNIQUE_DUPLICATE;
            snprintf(holder, BROKER_ID_MAX + 1, "%.*s", (int)r->element[1]->len,
                     r->element[1]->str);
        } else {
            rc = -EPROTO;
        }
    }
    freeReplyObject(r);
    return rc;
}
