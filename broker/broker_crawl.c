/*
 * broker_crawl.c - the keys, the step and the counts of http.scrape's crawls
 * (broker_crawl.h). Pure computation: batches to send and replies to read.
 */
#include "broker_crawl.h"

#include "broker_scripts.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *broker_check_crawl_id(const char *id) {
    return broker_check_task_id(id);
}

int broker_key_crawl(const broker_keys *k, const char *id, char buf[BROKER_KEY_MAX]) {
    buf[0] = '\0';
    if (broker_check_crawl_id(id) != NULL)
        return -EINVAL;
    int n = snprintf(buf, BROKER_KEY_MAX, "%s:crawl:%s", k->prefix, id);
    if (n < 0 || n >= BROKER_KEY_MAX) {
        buf[0] = '\0';
        return -EINVAL;
    }
    return n;
}

int broker_cmd_crawl_step(broker_batch *b, const broker_keys *k, const broker_crawl_step *s) {
    if (broker_check_crawl_id(s->crawl) != NULL || broker_check_queue_name(s->queue) != NULL ||
        s->self == NULL || s->max_pages < 1 || s->ttl < 1)
        return broker_batch_fail(b, -EINVAL);
    broker_batch_script(b, BROKER_SCRIPT_CRAWL_STEP);
    broker_batch_str(b, k->prefix);
    broker_batch_str(b, s->crawl);
    broker_batch_num(b, s->max_pages);
    broker_batch_num(b, s->ttl);
    broker_batch_str(b, s->queue);
    broker_batch_str(b, s->self);
    broker_batch_str(b, s->final ? s->final : "");
    for (size_t i = 0; i < s->n; i++) {
        broker_batch_str(b, s->urls[i]);
        broker_batch_str(b, s->msgs[i]);
    }
    return b->err;
}

static int integer(const redisReply *e, long long *out) {
    if (e->type == REDIS_REPLY_INTEGER) {
        *out = e->integer;
        return 0;
    }
    if (e->type == REDIS_REPLY_STRING) {
        char *end;
        *out = strtoll(e->str, &end, 10);
        return end != e->str && *end == '\0' ? 0 : -EPROTO;
    }
    return -EPROTO;
}

int broker_crawl_step_parse(const redisReply *r, broker_crawl_counts *out) {
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 6)
        return -EPROTO;
    long long *fields[] = {&out->pushed,   &out->known, &out->over,
                           &out->enqueued, &out->done,  &out->max};
    for (size_t i = 0; i < 6; i++)
        if (integer(r->element[i], fields[i]) != 0)
            return -EPROTO;
    return 0;
}

int broker_cmd_crawl_status(broker_batch *b, const broker_keys *k, const char *id) {
    char key[BROKER_KEY_MAX];
    int len = broker_key_crawl(k, id, key);
    if (len < 0)
        return broker_batch_fail(b, -EINVAL);
    broker_batch_cmd(b);
    broker_batch_str(b, "HMGET");
    broker_batch_copy(b, key, (size_t)len);
    broker_batch_str(b, "max");
    broker_batch_str(b, "enqueued");
    broker_batch_str(b, "done");
    return broker_batch_str(b, "failed");
}

int broker_crawl_status_parse(const redisReply *r, broker_crawl_counts *out) {
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 4)
        return -EPROTO;
    *out = (broker_crawl_counts){0};
    if (r->element[0]->type == REDIS_REPLY_NIL)
        return 0;
    long long *fields[] = {&out->max, &out->enqueued, &out->done, &out->failed};
    for (size_t i = 0; i < 4; i++) {
        if (r->element[i]->type == REDIS_REPLY_NIL)
            continue;
        if (integer(r->element[i], fields[i]) != 0)
            return -EPROTO;
    }
    return 1;
}
