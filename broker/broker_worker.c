/*
 * broker_worker.c - the worker side of the delivery protocol, on broker_conn and the Lua
 * scripts (fetch.lua, ack.lua, recover.lua, requeue.lua: each file says its contract).
 *
 * Argument vectors are built on the heap per call: a batch can hold thousands of entries
 * and greenlet stacks are small. Every call is one round trip; link errors go back to the
 * caller, who retries once broker_conn is up again (each call is safe to repeat).
 */
#include "broker_worker.h"

#include "broker_cmds.h"
#include "broker_control.h"
#include "green.h"
#include "green_check.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct broker_worker {
    broker_keys keys;
    char *wid;
    char **queues;
    size_t nqueues;
    char *queue_list; /* "a,b,c" */
    long result_expires;
    int heartbeat_ttl;
    int max_redeliveries;
    broker_conn *main;
    broker_conn *results;
    char refusal[BROKER_REFUSAL_MAX];        /* the last error reply of an ack (its first line) */
    char control_tail[BROKER_STREAM_ID_MAX]; /* as the last fetch that took anything saw it */
    unsigned long long max_tag; /* the highest delivery tag fetched: fetch.lua's floor */
};

/* A growable argument vector. Strings are borrowed unless added with argv_addf. */
typedef struct argv_buf {
    const char **v;
    size_t *len;
    int n, cap;
    char **owned;
    int nowned;
} argv_buf;

static int argv_add(argv_buf *a, const char *s, size_t len) {
    if (a->n == a->cap) {
        int cap = a->cap ? a->cap * 2 : 16;
        const char **v = realloc(a->v, sizeof *v * (size_t)cap);
        if (!v)
            return -ENOMEM;
        a->v = v;
        size_t *l = realloc(a->len, sizeof *l * (size_t)cap);
        if (!l)
            return -ENOMEM;
        a->len = l;
        char **o = realloc(a->owned, sizeof *o * (size_t)cap);
        if (!o)
            return -ENOMEM;
        a->owned = o;
        a->cap = cap;
    }
    a->v[a->n] = s;
    a->len[a->n] = len;
    a->n++;
    return 0;
}

static int argv_str(argv_buf *a, const char *s) {
    return argv_add(a, s, strlen(s));
}

/* An argument formatted like printf, owned by a (freed by argv_free). */
__attribute__((format(printf, 2, 3))) static int argv_printf(argv_buf *a, const char *fmt, ...) {
    char *s;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -ENOMEM;
    if (argv_add(a, s, (size_t)n) != 0) {
        free(s);
        return -ENOMEM;
    }
    a->owned[a->nowned++] = s;
    return 0;
}

/* "?<tag>": ack.lua's conditional store; "!<tag>": its ack that keeps the message for
 * later (see its header). */
static int argv_marked(argv_buf *a, char mark, const char *tag) {
    return argv_printf(a, "%c%s", mark, tag);
}

static int argv_num(argv_buf *a, long long x) {
    return argv_printf(a, "%lld", x);
}

/* A due time as the sorted set's score: every digit a double has, so that the score and
 * the "eta" in the kept message (jansson's "%.17g" too) are the same number. */
static int argv_time(argv_buf *a, double t) {
    return argv_printf(a, "%.17g", t);
}

static void argv_free(argv_buf *a) {
    for (int i = 0; i < a->nowned; i++)
        free(a->owned[i]);
    free(a->owned);
    free(a->v);
    free(a->len);
    *a = (argv_buf){0};
}

/* Run script id with the arguments built in a (build: 0 when building them succeeded),
 * then free a. *r is the caller's on 0. */
static int eval_args(broker_worker *w, broker_script_id id, argv_buf *a, int build, double timeout,
                     redisReply **r) {
    int rc = build ? -ENOMEM : broker_conn_eval(w->main, r, timeout, id, a->n, a->v, a->len);
    argv_free(a);
    return rc;
}

broker_worker *broker_worker_new(const broker_worker_cfg *cfg, broker_conn *main,
                                 broker_conn *results) {
    broker_worker *w = calloc(1, sizeof *w);
    if (!w || broker_keys_init(&w->keys, cfg->prefix) != 0)
        goto fail;
    w->wid = strdup(cfg->wid);
    w->queues = calloc(cfg->nqueues, sizeof *w->queues);
    w->queue_list = broker_queue_list_join(cfg->queues, cfg->nqueues);
    if (!w->wid || !w->queues || !w->queue_list)
        goto fail;
    for (size_t i = 0; i < cfg->nqueues; i++) {
        if (!(w->queues[i] = strdup(cfg->queues[i])))
            goto fail;
        w->nqueues++;
    }
    w->result_expires = cfg->result_expires;
    w->heartbeat_ttl = cfg->heartbeat_ttl;
    w->max_redeliveries = cfg->max_redeliveries;
    w->main = main;
    w->results = results ? results : main;
    strcpy(w->control_tail, "0-0");
    return w;
fail:
    broker_worker_free(w);
    return NULL;
}

void broker_worker_free(broker_worker *w) {
    if (!w)
        return;
    for (size_t i = 0; i < w->nqueues; i++)
        free(w->queues[i]);
    free(w->queues);
    free(w->queue_list);
    free(w->wid);
    free(w);
}

static int reply_error(redisReply *r) {
    return r->type == REDIS_REPLY_ERROR ? -EPROTO : 0;
}

/* ---- refusals ------------------------------------------------------------------------- */

const char *broker_worker_refusal(const broker_worker *w) {
    return w->refusal;
}

const char *broker_refusal_state(const char *text) {
    /* The error codes (the reply's first word) of a Redis that refuses writes as a whole,
     * for now: retrying the same later is right, and splitting the batch is not. */
    static const struct {
        const char *code, *state;
    } states[] = {
        {"OOM", "oom"},
        {"READONLY", "readonly"},
        {"MISCONF", "misconf"},
        {"BUSY", "busy"},
        {"LOADING", "loading"},
        {"NOREPLICAS", "noreplicas"},
        {"MASTERDOWN", "masterdown"},
        {"NOPERM", "noperm"},
        {"NOAUTH", "noauth"},
        {"CLUSTERDOWN", "clusterdown"},
        {"TRYAGAIN", "tryagain"},
    };
    size_t n = strcspn(text, " ");
    for (size_t i = 0; i < sizeof states / sizeof *states; i++)
        if (strlen(states[i].code) == n && strncmp(text, states[i].code, n) == 0)
            return states[i].state;
    return NULL;
}

/* An error reply of an ack: keep its words (first line, without the script location
 * Redis appends) and say which kind of refusal it is (broker_ack's contract). */
static int refused(broker_worker *w, const redisReply *r) {
    const char *text = r->str ? r->str : "";
    size_t n = strcspn(text, "\r\n");
    const char *where = strstr(text, " script: ");
    if (where && (size_t)(where - text) < n)
        n = (size_t)(where - text);
    if (n >= sizeof w->refusal)
        n = sizeof w->refusal - 1;
    memcpy(w->refusal, text, n);
    w->refusal[n] = '\0';
    return broker_refusal_state(w->refusal) ? -EAGAIN : -EREMOTEIO;
}

/* ---- fetch ---------------------------------------------------------------------------- */

void broker_deliveries_free(broker_delivery *d, size_t n) {
    for (size_t i = 0; d && i < n; i++) {
        free(d[i].tag);
        free(d[i].queue);
        free(d[i].raw);
    }
    free(d);
}

static char *dup_bytes(const char *s, size_t len) {
    char *p = malloc(len + 1);
    if (p) {
        memcpy(p, s, len);
        p[len] = '\0';
    }
    return p;
}

/* The fetch script, then XREVRANGE of the control stream (broker_worker_control_tail), in
 * one round trip: *r is the script's reply, the tail goes to w->control_tail. The tail is
 * read after the script ran, so it covers every revocation written before the fetch. */
static int fetch_once(broker_worker *w, size_t n, redisReply **r, double timeout) {
    broker_batch b = {0};
    broker_batch_script(&b, BROKER_SCRIPT_FETCH);
    broker_batch_str(&b, w->keys.prefix);
    broker_batch_str(&b, w->wid);
    broker_batch_num(&b, (long long)n);
    broker_batch_num(&b, (long long)w->max_tag);
    for (size_t i = 0; i < w->nqueues; i++)
        broker_batch_str(&b, w->queues[i]);
    broker_cmd_control_tail(&b, &w->keys);
    int rc = b.err;
    redisReply *rs[2] = {NULL, NULL};
    green_timeout t;
    green_timeout_start(&t, timeout);
    for (int attempt = 0; rc == 0 && attempt < 2; attempt++) {
        rc = broker_conn_pipeline(w->main, 2, b.argcs, (const char **const *)b.argvs,
                                  (const size_t *const *)b.argvlens, rs, -1);
        /* A Redis that forgot the script ran neither: send both again, the script by its
         * text (which caches it). */
        if (rc == 0 && attempt == 0 && broker_script_retry(&b, 0, rs[0])) {
            freeReplyObject(rs[0]);
            freeReplyObject(rs[1]);
            rs[0] = rs[1] = NULL;
            continue;
        }
        break;
    }
    green_timeout_end(&t);
    if (rc == 0) {
        /* Without a readable tail (the key holds something else) the messages are taken
         * all the same: the revocation listener reports that failure itself. */
        char tail[BROKER_STREAM_ID_MAX];
        if (broker_reply_control_tail(rs[1], tail) == 0 && rs[0]->type == REDIS_REPLY_ARRAY &&
            rs[0]->elements > 0)
            memcpy(w->control_tail, tail, sizeof tail);
        freeReplyObject(rs[1]);
        *r = rs[0];
    }
    broker_batch_clear(&b);
    return rc;
}

int broker_fetch(broker_worker *w, size_t n, broker_delivery **out, size_t *count, double timeout) {
    *out = NULL;
    *count = 0;
    redisReply *r = NULL;
    int rc = fetch_once(w, n, &r, timeout);
    if (rc != 0)
        return rc;
    if ((rc = reply_error(r)) != 0 || r->type != REDIS_REPLY_ARRAY || r->elements % 3) {
        freeReplyObject(r);
        return rc ? rc : -EPROTO;
    }
    size_t k = r->elements / 3;
    broker_delivery *d = calloc(k ? k : 1, sizeof *d);
    if (!d) {
        freeReplyObject(r);
        return -ENOMEM;
    }
    for (size_t i = 0; i < k; i++) {
        redisReply **e = &r->element[i * 3];
        d[i].tag = dup_bytes(e[0]->str, e[0]->len);
        d[i].queue = dup_bytes(e[1]->str, e[1]->len);
        d[i].raw = dup_bytes(e[2]->str, e[2]->len);
        d[i].len = e[2]->len;
        unsigned long long tag = d[i].tag ? strtoull(d[i].tag, NULL, 10) : 0;
        if (tag > w->max_tag)
            w->max_tag = tag;
        if (!d[i].tag || !d[i].queue || !d[i].raw) {
            /* Out of memory with the messages already in flight: leave them to the
             * requeue at shutdown or to recovery rather than inventing a state. */
            broker_deliveries_free(d, k);
            freeReplyObject(r);
            return -ENOMEM;
        }
    }
    freeReplyObject(r);
    *out = d;
    *count = k;
    return 0;
}

const char *broker_worker_control_tail(const broker_worker *w) {
    return w->control_tail;
}

int broker_wait_for_work(broker_worker *w, broker_conn *conn, const char *queue,
                         double block_seconds) {
    char src[BROKER_KEY_MAX], dst[BROKER_KEY_MAX], paused[BROKER_KEY_MAX], secs[32];
    if (broker_key_queue(&w->keys, queue, src) < 0 ||
        broker_key_landing(&w->keys, w->wid, queue, dst) < 0)
        return -EINVAL;
    broker_key_paused(&w->keys, paused);
    const char *is_paused[] = {"SISMEMBER", paused, queue};
    redisReply *r = NULL;
    int rc = broker_conn_call(conn, &r, block_seconds + 5, 3, is_paused, NULL);
    if (rc)
        return rc;
    /* An error (the key holds no set: a hand edit) pauses nothing, as in fetch.lua. */
    rc = r->type == REDIS_REPLY_INTEGER && r->integer ? 2 : 0;
    freeReplyObject(r);
    if (rc)
        return rc;
    snprintf(secs, sizeof secs, "%.3f", block_seconds);
    const char *argv[] = {"BLMOVE", src, dst, "RIGHT", "LEFT", secs};
    rc = broker_conn_call(conn, &r, block_seconds + 5, 6, argv, NULL);
    if (rc)
        return rc;
    rc = reply_error(r) ? -EPROTO : r->type == REDIS_REPLY_NIL ? 0 : 1;
    freeReplyObject(r);
    return rc;
}

/* ---- ack ------------------------------------------------------------------------------ */

static long result_ttl(const broker_worker *w) {
    return w->result_expires > 0 ? w->result_expires : -1; /* -1: keep forever */
}

/* The results stored on their own (those without a tag, or everything when the result
 * backend is another Redis): SET (EX ttl) + PUBLISH each, pipelined. */
static int store_results(broker_worker *w, const broker_ack_entry *acks, size_t n, bool all,
                         double timeout) {
    broker_batch b = {0};
    for (size_t i = 0; i < n && b.err == 0; i++)
        if (acks[i].id && (all || !acks[i].tag))
            broker_cmd_result_store_at(&b, &w->keys, acks[i].id, acks[i].celery, acks[i].json,
                                       strlen(acks[i].json), w->result_expires);
    int rc = b.err;
    redisReply **replies = NULL;
    if (rc == 0 && b.n > 0) {
        replies = calloc(b.n, sizeof *replies);
        rc = replies ? broker_conn_pipeline(w->results, b.n, b.argcs, b.argvs, b.argvlens, replies,
                                            timeout)
                     : -ENOMEM;
        for (size_t i = 0; replies && i < b.n; i++) {
            if (rc == 0 && replies[i]->type == REDIS_REPLY_ERROR)
                rc = refused(w, replies[i]);
            if (replies[i])
                freeReplyObject(replies[i]);
        }
    }
    free(replies);
    broker_batch_clear(&b);
    return rc;
}

/* Entry e goes through ack.lua: an ack, or a conditional store of a result in the same
 * Redis as the in-flight hash. */
static bool in_script(const broker_ack_entry *e, bool separate) {
    return e->tag && (!e->if_owned || (e->id && !separate));
}

int broker_ack(broker_worker *w, const broker_ack_entry *acks, size_t n, bool *owned,
               double timeout) {
    bool separate = w->results != w->main;
    green_timeout t;
    green_timeout_start(&t, timeout);
    /* Untagged results first; with a separate result backend, every result (STARTED ones
     * unconditionally), before the ack that releases the message. In the same Redis,
     * STARTED results go through ack.lua in batch order, stored only while still ours. */
    int rc = store_results(w, acks, n, separate, -1);
    if (rc)
        goto out;
    argv_buf a = {0};
    /* The result keys, packed one after another in one block sized for them: a slot of
     * BROKER_KEY_MAX each (600 KB for a batch of 1024) was an mmap, page faults and a
     * malloc_consolidate per batch, 6 % of the worker's CPU on echo tasks. The ttl is the
     * same text for every entry: formatted once, not asprintf'd per entry. */
    size_t space = 0;
    for (size_t i = 0; i < n; i++)
        if (acks[i].id && !separate && in_script(&acks[i], separate))
            space += strlen(w->keys.prefix) + strlen(acks[i].id) + 24;
    char *keys = malloc(space ? space : 1);
    size_t used = 0, acked = 0;
    char ttl[32];
    snprintf(ttl, sizeof ttl, "%ld", separate ? 0L : result_ttl(w));
    rc = keys ? argv_str(&a, w->keys.prefix) || argv_str(&a, w->wid) : -ENOMEM;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (!in_script(&acks[i], separate))
            continue;
        bool store = acks[i].id && !separate;
        const char *key = "";
        if (store) {
            char buf[BROKER_KEY_MAX];
            int len = acks[i].celery ? broker_key_celery_result(acks[i].id, buf)
                                     : broker_key_result(&w->keys, acks[i].id, buf);
            if (len < 0 || used + (size_t)len + 1 > space) {
                rc = -EINVAL;
                break;
            }
            key = memcpy(keys + used, buf, (size_t)len + 1);
            used += (size_t)len + 1;
        }
        const broker_ack_entry *e = &acks[i];
        bool unlock = !e->if_owned && !e->keep && e->unlock_hash && e->unlock_id;
        bool canvas = !e->if_owned && !e->keep && e->canvas && e->canvas->n > 0;
        bool follow = !e->if_owned && !e->keep && !unlock && !canvas && e->nfollow > 0;
        rc = (e->if_owned ? argv_marked(&a, '?', e->tag)
              : e->keep   ? argv_marked(&a, '!', e->tag)
              : canvas    ? argv_marked(&a, '^', e->tag)
              : unlock    ? argv_marked(&a, '~', e->tag)
              : follow    ? argv_marked(&a, '+', e->tag)
                          : argv_str(&a, e->tag)) ||
             argv_str(&a, key) || argv_str(&a, store ? e->json : "") ||
             argv_str(&a, store ? ttl : "0") || argv_str(&a, key);
        if (rc == 0 && e->keep)
            rc = argv_time(&a, e->due) || argv_str(&a, e->queue) ||
                 argv_add(&a, e->keep, e->keep_len);
        if (rc == 0 && canvas) {
            rc = argv_str(&a, unlock ? e->unlock_hash : "") ||
                 argv_str(&a, unlock ? e->unlock_id : "") || argv_num(&a, result_ttl(w)) ||
                 argv_num(&a, (long long)e->canvas->n);
            for (size_t k = 0; rc == 0 && k < e->canvas->n; k++)
                rc = argv_add(&a, e->canvas->v[k], e->canvas->len[k]);
        } else if (rc == 0 && unlock) {
            rc = argv_str(&a, e->unlock_hash) || argv_str(&a, e->unlock_id);
        } else if (rc == 0 && follow) {
            rc = argv_num(&a, (long long)e->nfollow);
            for (size_t f = 0; rc == 0 && f < e->nfollow; f++)
                rc = argv_add(&a, &e->follow[f].op, 1) || argv_str(&a, e->follow[f].key) ||
                     argv_str(&a, e->follow[f].text);
        }
        acked++;
    }
    if (rc == 0 && acked > 0) {
        redisReply *r = NULL;
        rc = broker_conn_eval(w->main, &r, -1, BROKER_SCRIPT_ACK, a.n, a.v, a.len);
        if (rc == 0) {
            if (r->type == REDIS_REPLY_ERROR) {
                rc = refused(w, r);
            } else if (r->type != REDIS_REPLY_ARRAY || r->elements != acked) {
                rc = -EPROTO;
            } else if (owned) {
                for (size_t i = 0, k = 0; i < n; i++)
                    owned[i] = in_script(&acks[i], separate) ? r->element[k++]->integer == 1 : true;
            }
            freeReplyObject(r);
        }
    } else if (rc == 0 && owned) {
        for (size_t i = 0; i < n; i++)
            owned[i] = true;
    }
    argv_free(&a);
    free(keys);
out:
    green_timeout_end(&t);
    return rc ? (rc > 0 ? -ENOMEM : rc) : 0;
}

/* ---- liveness ----------------------------------------------------------------------- */

int broker_heartbeat(broker_worker *w, const char *const *info, size_t ninfo,
                     const broker_batch *extra, int *extra_err, double timeout) {
    char key[BROKER_KEY_MAX], workers[BROKER_KEY_MAX], ttl[32];
    int dummy;
    if (!extra_err)
        extra_err = &dummy;
    *extra_err = extra && extra->err ? extra->err : 0;
    if (broker_key_worker(&w->keys, w->wid, key) < 0 || broker_key_workers(&w->keys, workers) < 0)
        return -EINVAL;
    snprintf(ttl, sizeof ttl, "%d", w->heartbeat_ttl);
    size_t nextra = extra && !extra->err ? extra->n : 0, n = 3 + nextra;
    const char **hset = calloc(ninfo + 2, sizeof *hset);
    const char ***argvs = calloc(n, sizeof *argvs);
    const size_t **lens = calloc(n, sizeof *lens);
    int *argcs = calloc(n, sizeof *argcs);
    redisReply **replies = calloc(n, sizeof *replies);
    int rc = -ENOMEM;
    if (!hset || !argvs || !lens || !argcs || !replies)
        goto out;
    hset[0] = "HSET";
    hset[1] = key;
    for (size_t i = 0; i < ninfo; i++)
        hset[i + 2] = info[i];
    const char *expire[] = {"EXPIRE", key, ttl};
    const char *reg[] = {"HSET", workers, w->wid, w->queue_list};
    argvs[0] = hset, argcs[0] = (int)ninfo + 2;
    argvs[1] = expire, argcs[1] = 3;
    argvs[2] = reg, argcs[2] = 4;
    for (size_t i = 0; i < nextra; i++) {
        argvs[3 + i] = extra->argvs[i];
        argcs[3 + i] = extra->argcs[i];
        lens[3 + i] = extra->argvlens[i];
    }
    rc = broker_conn_pipeline(w->main, n, argcs, (const char **const *)argvs,
                              (const size_t *const *)lens, replies, timeout);
    if (rc && nextra)
        *extra_err = rc;
    for (size_t i = 0; i < n; i++) {
        if (rc == 0 && i < 3 && replies[i]->type == REDIS_REPLY_ERROR)
            rc = -EPROTO;
        if (replies[i] && i >= 3 && replies[i]->type == REDIS_REPLY_ERROR)
            *extra_err = -EPROTO;
        if (replies[i])
            freeReplyObject(replies[i]);
    }
out:
    free(hset);
    free(argvs);
    free(lens);
    free(argcs);
    free(replies);
    return rc;
}

/* The special problem of a large fleet: every worker looks for dead workers every
 * heartbeat. Running recover.lua for every registered worker (it does nothing for a live
 * one) made that a script call per worker per heartbeat per worker: with 500 workers,
 * 50,000 script calls a second for nothing. So the heartbeat keys are first checked with
 * one pipelined EXISTS per registered worker (one round trip, O(1) each, no KEYS or
 * SCAN), and recover.lua runs only for the workers whose key is gone: the scripts are
 * O(dead workers). recover.lua still checks the heartbeat itself (a worker that beats
 * between the EXISTS and the script is never robbed). */
int broker_recover(broker_worker *w, size_t *requeued, size_t *dead, double timeout) {
    char workers[BROKER_KEY_MAX];
    broker_key_workers(&w->keys, workers);
    green_timeout t;
    green_timeout_start(&t, timeout);
    const char *hkeys[] = {"HKEYS", workers};
    redisReply *list = NULL, **alive = NULL;
    int *argcs = NULL;
    const char ***argvs = NULL;
    char(*keys)[BROKER_KEY_MAX] = NULL;
    int rc = broker_conn_call(w->main, &list, -1, 2, hkeys, NULL);
    if (rc == 0 && list->type != REDIS_REPLY_ARRAY)
        rc = -EPROTO;
    size_t n = rc == 0 ? list->elements : 0;
    if (n > 0) {
        alive = calloc(n, sizeof *alive);
        argcs = calloc(n, sizeof *argcs);
        argvs = calloc(n, sizeof *argvs);
        keys = calloc(n, sizeof *keys);
        const char **flat = calloc(2 * n, sizeof *flat);
        if (!alive || !argcs || !argvs || !keys || !flat) {
            free(flat);
            rc = -ENOMEM;
            goto out;
        }
        for (size_t i = 0; i < n; i++) {
            const char *wid = list->element[i]->str ? list->element[i]->str : "";
            if (broker_key_worker(&w->keys, wid, keys[i]) < 0)
                snprintf(keys[i], sizeof keys[i], "%s", w->keys.prefix); /* recover.lua judges it */
            flat[2 * i] = "EXISTS";
            flat[2 * i + 1] = keys[i];
            argcs[i] = 2;
            argvs[i] = &flat[2 * i];
        }
        rc = broker_conn_pipeline(w->main, n, argcs, (const char **const *)argvs, NULL, alive, -1);
        free(flat);
    }
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const char *wid = list->element[i]->str;
        if (!wid || strcmp(wid, w->wid) == 0)
            continue;
        if (alive[i]->type == REDIS_REPLY_INTEGER && alive[i]->integer != 0)
            continue; /* its heartbeat is there: alive */
        char maxr[32];
        snprintf(maxr, sizeof maxr, "%d", w->max_redeliveries);
        /* No time of this host's: the script dates dead letters on the server's TIME. */
        const char *args[] = {w->keys.prefix, wid, maxr, "", w->wid};
        redisReply *r = NULL;
        rc = broker_conn_eval(w->main, &r, -1, BROKER_SCRIPT_RECOVER, 5, args, NULL);
        if (rc)
            break;
        if (r->type == REDIS_REPLY_ARRAY && r->elements >= 2) {
            *requeued += (size_t)r->element[0]->integer;
            *dead += (size_t)r->element[1]->integer;
        } else {
            rc = -EPROTO;
        }
        freeReplyObject(r);
    }
out:
    for (size_t i = 0; alive && i < n; i++)
        if (alive[i])
            freeReplyObject(alive[i]);
    free(alive);
    free(argcs);
    free(argvs);
    free(keys);
    if (list)
        freeReplyObject(list);
    green_timeout_end(&t);
    return rc;
}

int broker_requeue(broker_worker *w, const char *const *tags, size_t ntags, size_t *moved,
                   double timeout) {
    argv_buf a = {0};
    int rc = argv_str(&a, w->keys.prefix) || argv_str(&a, w->wid);
    if (rc == 0)
        rc = tags ? argv_num(&a, (long long)ntags) : argv_str(&a, "all");
    for (size_t i = 0; rc == 0 && tags && i < ntags; i++)
        rc = argv_str(&a, tags[i]);
    for (size_t i = 0; rc == 0 && i < w->nqueues; i++)
        rc = argv_str(&a, w->queues[i]);
    *moved = 0;
    redisReply *r = NULL;
    if ((rc = eval_args(w, BROKER_SCRIPT_REQUEUE, &a, rc, timeout, &r)) != 0)
        return rc;
    if (r->type == REDIS_REPLY_INTEGER)
        *moved = (size_t)r->integer;
    else
        rc = -EPROTO;
    freeReplyObject(r);
    return rc;
}

int broker_inflight_tags(broker_worker *w, char ***tags, size_t *n, double timeout) {
    char key[BROKER_KEY_MAX];
    *tags = NULL;
    *n = 0;
    broker_key_inflight(&w->keys, w->wid, key);
    const char *argv[] = {"HKEYS", key};
    redisReply *r = NULL;
    int rc = broker_conn_call(w->main, &r, timeout, 2, argv, NULL);
    if (rc)
        return rc;
    if (r->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(r);
        return -EPROTO;
    }
    char **out = calloc(r->elements ? r->elements : 1, sizeof *out);
    for (size_t i = 0; out && i < r->elements; i++) {
        if (!(out[i] = dup_bytes(r->element[i]->str, r->element[i]->len))) {
            broker_tags_free(out, i);
            out = NULL;
        }
    }
    if (out) {
        *tags = out;
        *n = r->elements;
    }
    freeReplyObject(r);
    return out ? 0 : -ENOMEM;
}

void broker_tags_free(char **tags, size_t n) {
    for (size_t i = 0; tags && i < n; i++)
        free(tags[i]);
    free(tags);
}

int broker_dead_letter(broker_worker *w, const char *json, double timeout) {
    char key[BROKER_KEY_MAX];
    broker_key_dead(&w->keys, key);
    const char *argv[] = {"LPUSH", key, json};
    redisReply *r = NULL;
    int rc = broker_conn_call(w->main, &r, timeout, 3, argv, NULL);
    if (rc == 0) {
        rc = reply_error(r);
        freeReplyObject(r);
    }
    return rc;
}

int broker_unregister(broker_worker *w, double timeout) {
    char inflight[BROKER_KEY_MAX], key[BROKER_KEY_MAX], workers[BROKER_KEY_MAX];
    broker_key_inflight(&w->keys, w->wid, inflight);
    broker_key_worker(&w->keys, w->wid, key);
    broker_key_workers(&w->keys, workers);
    green_timeout t;
    green_timeout_start(&t, timeout);
    const char *hlen[] = {"HLEN", inflight};
    redisReply *r = NULL;
    int rc = broker_conn_call(w->main, &r, -1, 2, hlen, NULL);
    if (rc == 0) {
        bool empty = r->type == REDIS_REPLY_INTEGER && r->integer == 0;
        freeReplyObject(r);
        if (empty) {
            const char *del[] = {"DEL", key};
            const char *hdel[] = {"HDEL", workers, w->wid};
            const char **argvs[] = {del, hdel};
            int argcs[] = {2, 3};
            redisReply *replies[2] = {0};
            rc = broker_conn_pipeline(w->main, 2, argcs, argvs, NULL, replies, -1);
            for (int i = 0; i < 2; i++)
                if (replies[i])
                    freeReplyObject(replies[i]);
        }
    }
    green_timeout_end(&t);
    return rc;
}

/* ---- what the metrics read ---------------------------------------------------------- */

int broker_queue_depths(broker_worker *w, long long *depths, double timeout) {
    for (size_t i = 0; i < w->nqueues; i++)
        depths[i] = -1;
    broker_batch b = {0};
    redisReply **replies = NULL;
    int rc = broker_cmd_queue_depths(&b, &w->keys, (const char *const *)w->queues, w->nqueues);
    if (rc == 0 && b.n > 0) {
        GREEN_CHECK(b.n == w->nqueues, "one LLEN per queue");
        replies = calloc(b.n, sizeof *replies);
        rc = replies ? broker_conn_pipeline(w->main, b.n, b.argcs, b.argvs, b.argvlens, replies,
                                            timeout)
                     : -ENOMEM;
        for (size_t i = 0; replies && i < b.n; i++) {
            if (rc == 0)
                depths[i] = broker_reply_queue_depth(replies[i]);
            if (replies[i])
                freeReplyObject(replies[i]);
        }
    }
    free(replies);
    broker_batch_clear(&b);
    return rc;
}
