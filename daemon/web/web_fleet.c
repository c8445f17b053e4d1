/*
 * web_fleet.c - what the dashboard reads about the fleet (web.h "web_fleet.c"): every
 * registered worker with its heartbeat and in-flight count, every queue with its depth
 * and latency, and the counters (dead letters, scheduled, revoked, events, the per-minute
 * and total task counts, Redis's memory), each set in one or two pipelines.
 *
 * Nothing here is a snapshot: keys are read in a few pipelines while workers keep
 * working, so totals may be off by what moved meanwhile (as workerctl's).
 *
 * Latency: messages carry no enqueue time, so a queue's latency is how long the message
 * now oldest in it has been oldest as this dashboard saw it (it remembers the SHA-1 of
 * the oldest message of each queue and when it first saw it there): exact to the poll
 * interval for a message that became oldest while the dashboard ran, a lower bound for
 * one that was there when it started.
 */
#include "web.h"

#include "broker_beat.h"
#include "broker_cmds.h"
#include "broker_scripts.h"
#include "broker_stats.h"
#include "green_check.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void web_fleet_free(struct fleet *f) {
    json_decref(f->workers);
    json_decref(f->queues);
}

static json_t *num_or_null(const char *s, bool integer) {
    char *end;
    double v = s ? strtod(s, &end) : 0;
    if (!s || end == s || *end)
        return json_null();
    return integer ? json_integer((json_int_t)v) : json_real(v);
}

static int cmp_by(const void *a, const void *b, const char *field) {
    const char *x = json_string_value(json_object_get(*(json_t *const *)a, field));
    const char *y = json_string_value(json_object_get(*(json_t *const *)b, field));
    return strcmp(x ? x : "", y ? y : "");
}
static int cmp_id(const void *a, const void *b) {
    return cmp_by(a, b, "id");
}
static int cmp_name(const void *a, const void *b) {
    return cmp_by(a, b, "name");
}

static void sort_array(json_t *arr, int (*cmp)(const void *, const void *)) {
    size_t n = json_array_size(arr);
    json_t **v = calloc(n + 1, sizeof *v);
    if (!v)
        return;
    for (size_t i = 0; i < n; i++)
        v[i] = json_incref(json_array_get(arr, i));
    qsort(v, n, sizeof *v, cmp);
    json_array_clear(arr);
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, v[i]);
    free(v);
}

/* Every registered worker: HGETALL <prefix>:workers, then each one's heartbeat and
 * in-flight count in one pipeline, with the server's TIME: a beat is on the Redis clock
 * (docs/design.md "Delivery"), and so is its age, whatever this host's clock says. */
int web_workers_load(struct web *w, struct fleet *f) {
    char key[BROKER_KEY_MAX];
    broker_key_workers(&w->keys, key);
    const char *argv[] = {"HGETALL", key};
    redisReply *all = NULL;
    int rc = broker_conn_call(w->conn, &all, WEB_REDIS_TIMEOUT, 2, argv, NULL);
    if (rc)
        return rc;
    f->workers = json_array();
    size_t n = all->type == REDIS_REPLY_ARRAY ? all->elements / 2 : 0;
    if (n > WEB_LIST_MAX) {
        n = WEB_LIST_MAX;
        f->workers_cut = true;
    }
    broker_batch b = {0};
    bool *ok = calloc(n + 1, sizeof *ok);
    redisReply **r = calloc(2 * n + 2, sizeof *r);
    if (!ok || !r)
        rc = -ENOMEM;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const char *wid = all->element[2 * i]->str;
        ok[i] = broker_key_worker(&w->keys, wid, key) > 0;
        broker_batch_cmd(&b);
        broker_batch_str(&b, "HGETALL");
        broker_batch_copy(&b, ok[i] ? key : "", ok[i] ? strlen(key) : 0);
        if (ok[i])
            broker_key_inflight(&w->keys, wid, key);
        broker_batch_cmd(&b);
        broker_batch_str(&b, "HLEN");
        broker_batch_copy(&b, ok[i] ? key : "", ok[i] ? strlen(key) : 0);
    }
    if (rc == 0 && n) {
        broker_batch_cmd(&b);
        broker_batch_str(&b, "TIME");
        rc = web_send(w->conn, &b, r);
    }
    double now = 0;
    if (rc == 0 && n && broker_reply_time(r[2 * n], &now) != 0)
        now = green_wallclock();
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const redisReply *beat = r[2 * i], *held = r[2 * i + 1];
        json_t *fields = json_object();
        for (size_t j = 0; beat->type == REDIS_REPLY_ARRAY && j + 1 < beat->elements; j += 2)
            json_object_set_new(
                fields, beat->element[j]->str,
                web_jstr(beat->element[j + 1]->str, beat->element[j + 1]->len, WEB_PREVIEW_MAX));
        bool alive = json_object_size(fields) > 0;
        long long inflight = held->type == REDIS_REPLY_INTEGER ? held->integer : 0;
        const redisReply *wid = all->element[2 * i], *ql = all->element[2 * i + 1];
        json_t *queues = json_array();
        char *list = strndup(ql->str ? ql->str : "", ql->len), *cursor = list;
        for (char *q; list && (q = broker_queue_list_next(&cursor)) != NULL;)
            json_array_append_new(queues, web_jstr(q, strlen(q), WEB_PREVIEW_MAX));
        free(list);
        const char *bs = json_string_value(json_object_get(fields, "beat"));
        json_t *o = json_pack("{s:o, s:b, s:o, s:I}", "id", web_jstr(wid->str, wid->len, 256),
                              "alive", alive, "queues", queues, "in_flight", (json_int_t)inflight);
        static const char *const texts[] = {"host", "pool", "version", "broker"};
        for (size_t k = 0; k < 4; k++) {
            json_t *v = json_object_get(fields, texts[k]);
            json_object_set(o, texts[k], v ? v : json_null());
        }
        json_object_set_new(o, "pid",
                            num_or_null(json_string_value(json_object_get(fields, "pid")), true));
        json_object_set_new(
            o, "concurrency",
            num_or_null(json_string_value(json_object_get(fields, "concurrency")), true));
        json_object_set_new(
            o, "started",
            num_or_null(json_string_value(json_object_get(fields, "started")), false));
        json_object_set_new(o, "beat_age", bs ? json_real(now - atof(bs)) : json_null());
        json_array_append_new(f->workers, o);
        json_decref(fields);
        f->alive += alive;
        f->dead += !alive;
        f->in_flight += inflight;
    }
    sort_array(f->workers, cmp_id);
    web_replies_free(r, b.n);
    free(r);
    free(ok);
    broker_batch_clear(&b);
    freeReplyObject(all);
    return rc;
}

/* The latency of queue name whose oldest message has this digest ("" when empty). */
static json_t *latency(struct web *w, const char *name, const char *digest, double now) {
    struct web_seen *s = NULL;
    for (size_t i = 0; i < w->nseen && !s; i++)
        if (strcmp(w->seen[i].name, name) == 0)
            s = &w->seen[i];
    if (!s) {
        if (w->nseen == WEB_LIST_MAX)
            return json_null();
        s = &w->seen[w->nseen++];
        snprintf(s->name, sizeof s->name, "%s", name);
        s->digest[0] = '\0';
    }
    if (strcmp(s->digest, digest) != 0) {
        snprintf(s->digest, sizeof s->digest, "%s", digest);
        s->since = now;
    }
    return digest[0] ? json_real(now - s->since) : json_real(0);
}

/* Every queue: SCAN over the queue keys, plus the queues workers consume (an empty queue
 * has no key), each with LLEN and LINDEX -1 (the oldest: workers take from the right). */
static int load_queues(struct web *w, struct fleet *f) {
    json_t *names = json_object(); /* name -> workers consuming it */
    size_t i;
    json_t *wk;
    json_array_foreach(f->workers, i, wk) {
        size_t j;
        json_t *q;
        json_array_foreach(json_object_get(wk, "queues"), j, q) {
            const char *name = json_string_value(q);
            json_int_t had = json_integer_value(json_object_get(names, name));
            json_object_set_new(names, name,
                                json_integer(had + json_is_true(json_object_get(wk, "alive"))));
        }
    }
    char cursor[BROKER_SCAN_CURSOR_MAX] = "0";
    int rc = 0;
    for (int steps = 0; rc == 0 && steps < 100; steps++) {
        broker_batch b = {0};
        broker_cmd_scan_queues(&b, &w->keys, cursor);
        redisReply *r = NULL;
        rc = web_send(w->conn, &b, &r);
        broker_batch_clear(&b);
        const redisReply *keys;
        if (rc == 0 && broker_reply_scan(r, cursor, &keys) == 0) {
            for (size_t k = 0; k < keys->elements; k++) {
                const char *name =
                    broker_key_queue_name(&w->keys, keys->element[k]->str, keys->element[k]->len);
                if (name && !json_object_get(names, name) && json_object_size(names) < WEB_LIST_MAX)
                    json_object_set_new(names, name, json_integer(0));
                else if (name && !json_object_get(names, name))
                    f->queues_cut = true;
            }
        }
        if (r)
            freeReplyObject(r);
        if (strcmp(cursor, "0") == 0)
            break;
    }
    size_t n = json_object_size(names);
    const char **list = calloc(n + 1, sizeof *list);
    redisReply **r = calloc(2 * n + 1, sizeof *r);
    broker_batch b = {0};
    f->queues = json_array();
    if (!list || !r)
        rc = rc ? rc : -ENOMEM;
    size_t k = 0;
    const char *name;
    json_t *v;
    json_object_foreach(names, name, v) {
        if (list)
            list[k++] = name;
    }
    char key[BROKER_KEY_MAX];
    for (i = 0; rc == 0 && i < n; i++) {
        broker_cmd_queue_depths(&b, &w->keys, &list[i], 1);
        broker_key_queue(&w->keys, list[i], key);
        broker_batch_cmd(&b);
        broker_batch_str(&b, "LINDEX");
        broker_batch_copy(&b, key, strlen(key));
        broker_batch_str(&b, "-1");
    }
    if (rc == 0 && n)
        rc = web_send(w->conn, &b, r);
    double now = green_wallclock();
    for (i = 0; rc == 0 && i < n; i++) {
        long long depth = broker_reply_queue_depth(r[2 * i]);
        if (depth < 0)
            continue; /* someone else's key */
        char digest[41] = "";
        if (r[2 * i + 1]->type == REDIS_REPLY_STRING)
            broker_sha1_hex(r[2 * i + 1]->str, r[2 * i + 1]->len, digest);
        json_array_append_new(f->queues, json_pack("{s:s, s:I, s:o, s:O}", "name", list[i], "depth",
                                                   (json_int_t)depth, "latency",
                                                   latency(w, list[i], digest, now), "workers",
                                                   json_object_get(names, list[i])));
        f->pending += depth;
    }
    sort_array(f->queues, cmp_name);
    web_replies_free(r, b.n);
    broker_batch_clear(&b);
    free(r);
    free(list);
    json_decref(names);
    return rc;
}

int web_fleet_load(struct web *w, struct fleet *f) {
    memset(f, 0, sizeof *f);
    int rc = web_workers_load(w, f);
    if (rc == 0)
        rc = load_queues(w, f);
    return rc;
}

/* ---- the counters: dead letters, scheduled, revoked, events, Redis -------------------- */

static const char *info_field(const char *info, const char *name, char *buf, size_t len) {
    size_t n = strlen(name);
    for (const char *p = info; p && *p;) {
        if (strncmp(p, name, n) == 0 && p[n] == ':') {
            size_t l = strcspn(p + n + 1, "\r\n");
            snprintf(buf, len, "%.*s", (int)l, p + n + 1);
            return buf;
        }
        p = strchr(p, '\n');
        p = p ? p + 1 : NULL;
    }
    return NULL;
}

int web_counts_load(struct web *w, struct counts *c) {
    memset(c, 0, sizeof *c);
    char dead[BROKER_KEY_MAX], sched[BROKER_KEY_MAX], revoked[BROKER_KEY_MAX],
        events[BROKER_KEY_MAX];
    broker_key_dead(&w->keys, dead);
    broker_key_scheduled(&w->keys, sched);
    broker_key_revoked_set(&w->keys, revoked);
    broker_key_events(&w->keys, events);
    broker_batch b = {0};
    const char *cmds[][2] = {{"LLEN", dead},   {"ZCARD", sched},   {"ZCARD", revoked},
                             {"XLEN", events}, {"INFO", "memory"}, {"INFO", "server"}};
    for (size_t i = 0; i < 6; i++) {
        broker_batch_cmd(&b);
        broker_batch_str(&b, cmds[i][0]);
        broker_batch_copy(&b, cmds[i][1], strlen(cmds[i][1]));
    }
    long long first = (long long)(green_wallclock() / 60) - WEB_CHART_MINUTES + 1;
    broker_cmd_stats_read(&b, &w->keys, first, WEB_CHART_MINUTES);
    redisReply **r = calloc(b.n + 1, sizeof *r);
    int rc = r ? web_send(w->conn, &b, r) : -ENOMEM;
    if (rc == 0) {
        long long *out[] = {&c->dead, &c->scheduled, &c->revoked, &c->events};
        for (size_t i = 0; i < 4; i++)
            *out[i] = r[i]->type == REDIS_REPLY_INTEGER ? r[i]->integer : 0;
        char used[64] = "", human[64] = "", version[64] = "";
        const char *mem = r[4]->type == REDIS_REPLY_STRING ? r[4]->str : "";
        const char *srv = r[5]->type == REDIS_REPLY_STRING ? r[5]->str : "";
        info_field(mem, "used_memory", used, sizeof used);
        info_field(mem, "used_memory_human", human, sizeof human);
        info_field(srv, "redis_version", version, sizeof version);
        c->redis =
            json_pack("{s:b, s:I, s:s, s:s}", "up", 1, "used_memory", (json_int_t)atoll(used),
                      "used_memory_human", human, "version", version);
        c->minutes = json_array();
        for (int m = 0; m < WEB_CHART_MINUTES; m++) {
            long long p, fl;
            broker_reply_stats(r[6 + m], &p, &fl);
            json_array_append_new(c->minutes,
                                  json_pack("{s:I, s:I, s:I}", "minute", (json_int_t)(first + m),
                                            "processed", (json_int_t)p, "failed", (json_int_t)fl));
        }
        broker_reply_stats(r[6 + WEB_CHART_MINUTES], &c->processed, &c->failed);
    }
    if (r)
        web_replies_free(r, b.n);
    free(r);
    broker_batch_clear(&b);
    return rc;
}

void web_counts_free(struct counts *c) {
    json_decref(c->minutes);
    json_decref(c->redis);
}
