/*
 * web_read.c - the read-only half of the dashboard's API (web.h "web_read.c"). Every
 * answer is JSON read from Redis at the time of the request (the overview: at most
 * WEB_CACHE_SECONDS old), with broker/'s key names and builders:
 *
 *   GET /api/session    the CSRF token (and its cookie) the page sends with every POST
 *   GET /api/overview   counts, queue depths, Redis, the last hour per minute
 *   GET /api/workers    every registered worker, alive or dead, and what it runs now
 *   GET /api/queues     depth and latency of every queue, whether it is paused, the
 *                       paused queues, the rate limits
 *   GET /api/task?id=   a result, paged when long (&offset=, &limit=)
 *   GET /api/events     the newest task events (-E), filtered by task, type, queue, id
 *   GET /api/dead       dead letters, paged (&offset=, &limit=), messages cut
 *   GET /api/dead/entry?index=N  one dead letter, its message paged
 *   GET /metrics        the fleet in Prometheus text (summed from Redis, not per worker)
 *   GET /healthz        200 while Redis answers, else 503
 *
 * The fleet's workers, queues and counters are read by web_fleet.c, /metrics is
 * web_metrics.c's.
 */
#include "web.h"

#include "broker_control.h"
#include "broker_cmds.h"
#include "broker_rate.h"
#include "broker_scripts.h"
#include "green.h"
#include "green_check.h"
#include "settings.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- pages ------------------------------------------------------------------------------ */

static void redis_down(struct web *w, struct web_answer *ans, int rc) {
    web_error(ans, 503, "Redis (%s) is unreachable: %s", w->broker_redacted, strerror(-rc));
}

static void api_overview(struct web *w, struct web_answer *ans) {
    double now = green_wallclock();
    if (w->overview && now - w->overview_at < WEB_CACHE_SECONDS) {
        ans->status = 200;
        ans->type = "application/json";
        ans->body = strdup(w->overview);
        ans->len = ans->body ? w->overview_len : 0;
        return;
    }
    struct fleet f;
    struct counts c;
    int rc = web_fleet_load(w, &f);
    if (rc == 0)
        rc = web_counts_load(w, &c);
    else
        memset(&c, 0, sizeof c);
    if (rc) {
        web_fleet_free(&f);
        redis_down(w, ans, rc);
        return;
    }
    json_t *o = json_pack(
        "{s:f, s:I, s:I, s:I, s:I, s:O, s:I, s:I, s:I, s:{s:b, s:I}, s:{s:I, s:I}, s:O, s:O}",
        "time", now, "workers_alive", (json_int_t)f.alive, "workers_dead", (json_int_t)f.dead,
        "in_flight", (json_int_t)f.in_flight, "pending", (json_int_t)f.pending, "queues", f.queues,
        "dead_letters", (json_int_t)c.dead, "scheduled", (json_int_t)c.scheduled, "revoked",
        (json_int_t)c.revoked, "events", "enabled", c.events > 0, "length", (json_int_t)c.events,
        "totals", "processed", (json_int_t)c.processed, "failed", (json_int_t)c.failed, "minutes",
        c.minutes, "redis", c.redis);
    web_fleet_free(&f);
    web_counts_free(&c);
    web_json(ans, 200, o);
    if (ans->status == 200) {
        free(w->overview);
        w->overview = strdup(ans->body);
        w->overview_len = ans->len;
        w->overview_at = now;
    }
}

/* What each worker runs now: up to RUNNING_MAX entries of its in-flight hash (HSCAN), each
 * message's id and task, and the STARTED result's started_at for its runtime so far. */
#define RUNNING_MAX 100
static void add_running(struct web *w, json_t *worker) {
    char key[BROKER_KEY_MAX];
    const char *wid = json_string_value(json_object_get(worker, "id"));
    json_t *running = json_array();
    json_object_set_new(worker, "running", running);
    if (!wid || broker_key_inflight(&w->keys, wid, key) < 0)
        return;
    const char *argv[] = {"HSCAN", key, "0", "COUNT", "100"};
    redisReply *r = NULL;
    if (broker_conn_call(w->conn, &r, WEB_REDIS_TIMEOUT, 5, argv, NULL) != 0)
        return;
    const redisReply *items =
        r->type == REDIS_REPLY_ARRAY && r->elements == 2 ? r->element[1] : NULL;
    size_t n = items ? items->elements / 2 : 0;
    if (n > RUNNING_MAX)
        n = RUNNING_MAX;
    const char **ids = calloc(n + 1, sizeof *ids);
    for (size_t i = 0; ids && i < n; i++) {
        const redisReply *v = items->element[2 * i + 1];
        const char *queue, *raw;
        size_t qlen, rawlen;
        broker_inflight_split(v->str, v->len, &queue, &qlen, &raw, &rawlen);
        json_t *msg = rawlen <= WEB_BODY_MAX * 16 ? json_loadb(raw, rawlen, 0, NULL) : NULL;
        const char *id = json_string_value(json_object_get(msg, "id"));
        const char *task = json_string_value(json_object_get(msg, "task"));
        json_array_append_new(
            running, json_pack("{s:o, s:o, s:o, s:o, s:n}", "tag",
                               web_jstr(items->element[2 * i]->str, items->element[2 * i]->len, 64),
                               "queue", web_jstr(queue, qlen, WEB_PREVIEW_MAX), "id",
                               id ? web_jstr(id, strlen(id), 256) : json_null(), "task",
                               task ? web_jstr(task, strlen(task), 256) : json_null(), "started"));
        ids[i] = json_string_value(json_object_get(json_array_get(running, i), "id"));
        json_decref(msg);
    }
    /* The STARTED results, where they were written, for the runtime so far. */
    broker_batch b = {0};
    redisReply **res = calloc(n + 1, sizeof *res);
    for (size_t i = 0; ids && res && i < n; i++) {
        char rk[BROKER_KEY_MAX];
        bool ok = ids[i] && broker_key_result(&w->keys, ids[i], rk) > 0;
        broker_batch_cmd(&b);
        broker_batch_str(&b, "GETRANGE");
        broker_batch_copy(&b, ok ? rk : "", ok ? strlen(rk) : 0);
        broker_batch_str(&b, "0");
        broker_batch_str(&b, "4095");
    }
    double now = green_wallclock();
    if (ids && res && n && web_send(w->results, &b, res) == 0) {
        for (size_t i = 0; i < n; i++) {
            json_t *doc = res[i]->type == REDIS_REPLY_STRING
                              ? json_loadb(res[i]->str, res[i]->len, 0, NULL)
                              : NULL;
            json_t *st = json_object_get(doc, "started_at");
            if (json_is_number(st)) {
                json_t *e = json_array_get(running, i);
                json_object_set_new(e, "started", json_real(json_number_value(st)));
                json_object_set_new(e, "runtime", json_real(now - json_number_value(st)));
            }
            json_decref(doc);
        }
        web_replies_free(res, n);
    }
    broker_batch_clear(&b);
    free(res);
    free(ids);
    freeReplyObject(r);
}

static void api_workers(struct web *w, struct web_answer *ans) {
    struct fleet f;
    memset(&f, 0, sizeof f);
    int rc = web_workers_load(w, &f);
    if (rc) {
        web_fleet_free(&f);
        redis_down(w, ans, rc);
        return;
    }
    size_t i;
    json_t *wk;
    json_array_foreach(f.workers, i, wk) {
        add_running(w, wk);
    }
    web_json(ans, 200,
             json_pack("{s:O, s:b, s:I, s:I}", "workers", f.workers, "truncated", f.workers_cut,
                       "alive", (json_int_t)f.alive, "dead", (json_int_t)f.dead));
    web_fleet_free(&f);
}

static void api_queues(struct web *w, struct web_answer *ans) {
    struct fleet f;
    int rc = web_fleet_load(w, &f);
    if (rc) {
        web_fleet_free(&f);
        redis_down(w, ans, rc);
        return;
    }
    /* The rate limits and the paused queues too: the queues page changes them. */
    broker_batch b = {0};
    broker_cmd_rate_list(&b, &w->keys);
    broker_cmd_paused(&b, &w->keys);
    redisReply *r[2] = {NULL};
    json_t *rates = json_object(), *paused = json_array();
    if (web_send(w->conn, &b, r) == 0) {
        for (size_t i = 0; r[0]->type == REDIS_REPLY_ARRAY && i + 1 < r[0]->elements; i += 2)
            json_object_set_new(rates, r[0]->element[i]->str,
                                web_jstr(r[0]->element[i + 1]->str, r[0]->element[i + 1]->len, 64));
        for (size_t i = 0; r[1]->type == REDIS_REPLY_ARRAY && i < r[1]->elements; i++)
            if (r[1]->element[i]->type == REDIS_REPLY_STRING)
                json_array_append_new(paused, web_jstr(r[1]->element[i]->str, r[1]->element[i]->len,
                                                       WEB_PREVIEW_MAX));
        web_replies_free(r, 2);
    }
    broker_batch_clear(&b);
    size_t i, j;
    json_t *q, *p;
    json_array_foreach(f.queues, i, q) {
        bool is = false;
        json_array_foreach(paused, j, p) is |= json_equal(p, json_object_get(q, "name")) != 0;
        json_object_set_new(q, "paused", json_boolean(is));
    }
    web_json(ans, 200,
             json_pack("{s:O, s:b, s:I, s:o, s:o}", "queues", f.queues, "truncated", f.queues_cut,
                       "pending", (json_int_t)f.pending, "rate_limits", rates, "paused", paused));
    web_fleet_free(&f);
}

/* A long stored text as JSON: parsed when it fits one page, else one page of its text. */
static void page_text(json_t *o, const char *field, const char *s, size_t len, long offset,
                      long limit) {
    json_object_set_new(o, "bytes", json_integer((json_int_t)len));
    if (offset == 0 && len <= (size_t)limit) {
        json_t *v = json_loadb(s, len, 0, NULL);
        if (v) {
            json_object_set_new(o, field, v);
            return;
        }
    }
    size_t start = (size_t)offset < len ? (size_t)offset : len;
    while (start > 0 && start < len && ((unsigned char)s[start] & 0xc0) == 0x80)
        start--; /* begin at a character */
    json_object_set_new(o, "offset", json_integer((json_int_t)start));
    json_object_set_new(o, "text", web_jstr(s + start, len - start, (size_t)limit));
    size_t shown = json_string_length(json_object_get(o, "text"));
    json_object_set_new(o, "next",
                        start + (size_t)limit < len
                            ? json_integer((json_int_t)(start + (size_t)limit))
                            : json_null());
    (void)shown;
}

static void api_task(struct web *w, const struct web_request *rq, struct web_answer *ans) {
    char id[BROKER_ID_MAX + 1], rk[BROKER_KEY_MAX], mk[BROKER_KEY_MAX];
    if (!web_query(rq->query, "id", id, sizeof id) || broker_check_task_id(id)) {
        web_error(ans, 400, "give ?id= a task id");
        return;
    }
    long offset = web_query_long(rq->query, "offset", 0, 0, 1L << 40);
    long limit = web_query_long(rq->query, "limit", WEB_PAGE_MAX, 1, WEB_PAGE_MAX);
    broker_key_result(&w->keys, id, rk);
    broker_key_revoked(&w->keys, id, mk);
    /* The page from offset, read with GETRANGE: a result of 100 MB is never read whole. */
    char from[32], to[32];
    snprintf(from, sizeof from, "%ld", offset);
    snprintf(to, sizeof to, "%ld", offset + limit + 3);
    const char *strlen_[] = {"STRLEN", rk}, *range[] = {"GETRANGE", rk, from, to};
    const char **argvs[] = {strlen_, range};
    int argcs[] = {2, 4};
    redisReply *r[2] = {0}, *mark = NULL;
    int rc = broker_conn_pipeline(w->results, 2, argcs, argvs, NULL, r, WEB_REDIS_TIMEOUT);
    const char *margv[] = {"GET", mk};
    if (rc == 0)
        rc = broker_conn_call(w->conn, &mark, WEB_REDIS_TIMEOUT, 2, margv, NULL);
    if (rc) {
        web_replies_free(r, 2);
        redis_down(w, ans, rc);
        return;
    }
    long long total = r[0]->type == REDIS_REPLY_INTEGER ? r[0]->integer : 0;
    json_t *o = json_pack("{s:s, s:b}", "id", id, "found", total > 0);
    json_object_set_new(
        o, "revoked",
        mark->type == REDIS_REPLY_STRING
            ? json_string(strcmp(mark->str, BROKER_MARK_TERMINATE) == 0 ? "terminate" : "revoke")
            : json_null());
    if (total > 0 && r[1]->type == REDIS_REPLY_STRING) {
        if (offset == 0 && total <= limit) {
            page_text(o, "result", r[1]->str, r[1]->len, 0, limit);
        } else {
            /* Bytes [offset, ...) of the whole: page_text pages within what was read. */
            json_t *p = json_object();
            page_text(p, "result", r[1]->str, r[1]->len, 0, limit);
            json_object_set_new(o, "bytes", json_integer((json_int_t)total));
            json_object_set_new(o, "offset", json_integer((json_int_t)offset));
            json_object_set(o, "text", json_object_get(p, "text"));
            long next = offset + (long)json_string_length(json_object_get(p, "text"));
            json_object_set_new(o, "next", next < total ? json_integer(next) : json_null());
            /* The status, from the start of the document, for the header line. */
            json_decref(p);
        }
    }
    freeReplyObject(mark);
    web_replies_free(r, 2);
    web_json(ans, 200, o);
}

static void api_events(struct web *w, const struct web_request *rq, struct web_answer *ans) {
    char key[BROKER_KEY_MAX], f_task[256] = "", f_type[32] = "", f_queue[256] = "",
                              f_id[BROKER_ID_MAX + 1] = "";
    web_query(rq->query, "task", f_task, sizeof f_task);
    web_query(rq->query, "type", f_type, sizeof f_type);
    web_query(rq->query, "queue", f_queue, sizeof f_queue);
    web_query(rq->query, "id", f_id, sizeof f_id);
    long limit = web_query_long(rq->query, "limit", 100, 1, 1000);
    broker_key_events(&w->keys, key);
    const char *argv[] = {"XREVRANGE", key, "+", "-", "COUNT", "2000"};
    const char *xlen[] = {"XLEN", key};
    const char **argvs[] = {xlen, argv};
    int argcs[] = {2, 6};
    redisReply *r[2] = {0};
    int rc = broker_conn_pipeline(w->conn, 2, argcs, argvs, NULL, r, WEB_REDIS_TIMEOUT);
    if (rc) {
        redis_down(w, ans, rc);
        return;
    }
    json_t *list = json_array();
    const redisReply *es = r[1];
    for (size_t i = 0; es->type == REDIS_REPLY_ARRAY && i < es->elements; i++) {
        const redisReply *e = es->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements != 2)
            continue;
        const redisReply *fv = e->element[1];
        json_t *o = json_object();
        json_object_set_new(o, "stream_id", web_jstr(e->element[0]->str, e->element[0]->len, 64));
        for (size_t j = 0; fv->type == REDIS_REPLY_ARRAY && j + 1 < fv->elements; j += 2)
            json_object_set_new(
                o, fv->element[j]->str,
                web_jstr(fv->element[j + 1]->str, fv->element[j + 1]->len, WEB_PREVIEW_MAX));
        const char *filters[][2] = {
            {"task", f_task}, {"type", f_type}, {"queue", f_queue}, {"id", f_id}};
        bool keep = true;
        for (size_t k = 0; k < 4; k++) {
            const char *v = json_string_value(json_object_get(o, filters[k][0]));
            if (filters[k][1][0] && (!v || strcmp(v, filters[k][1]) != 0))
                keep = false;
        }
        if (keep && json_array_size(list) < (size_t)limit)
            json_array_append(list, o);
        json_decref(o);
    }
    long long len = r[0]->type == REDIS_REPLY_INTEGER ? r[0]->integer : 0;
    json_t *o =
        json_pack("{s:b, s:I, s:o}", "enabled", len > 0, "length", (json_int_t)len, "events", list);
    if (len == 0)
        json_object_set_new(o, "note",
                            json_string("no task events in Redis: the workers run "
                                        "without -E (--events)"));
    web_replies_free(r, 2);
    web_json(ans, 200, o);
}

/* A dead-letter entry for a list: its fields, the message cut to WEB_PREVIEW_MAX, and
 * "key", the SHA-1 of the entry's exact text, which the actions check. */
static json_t *dead_item(const redisReply *e, long index, bool whole, long offset, long limit) {
    char digest[41];
    broker_sha1_hex(e->str, e->len, digest);
    json_t *o = json_object();
    json_t *doc = json_loadb(e->str, e->len, 0, NULL);
    if (json_is_object(doc)) {
        const char *k;
        json_t *v;
        json_object_foreach(doc, k, v) {
            if (strcmp(k, "message") == 0)
                continue;
            if (json_is_string(v))
                json_object_set_new(
                    o, k, web_jstr(json_string_value(v), json_string_length(v), WEB_PREVIEW_MAX));
            else
                json_object_set(o, k, v);
        }
        json_t *m = json_object_get(doc, "message");
        const char *ms = json_string_value(m);
        size_t ml = json_string_length(m);
        if (ms && whole) {
            json_t *p = json_object();
            page_text(p, "message", ms, ml, offset, limit);
            json_object_set(o, "message_page", p);
            json_decref(p);
        } else if (ms) {
            json_object_set_new(o, "message", web_jstr(ms, ml, WEB_PREVIEW_MAX));
            json_object_set_new(o, "message_cut", json_boolean(ml > WEB_PREVIEW_MAX));
        }
    } else {
        json_object_set_new(o, "raw", web_jstr(e->str, e->len, WEB_PREVIEW_MAX));
    }
    json_decref(doc);
    json_object_set_new(o, "index", json_integer(index));
    json_object_set_new(o, "key", json_string(digest));
    return o;
}

static void api_dead(struct web *w, const struct web_request *rq, struct web_answer *ans,
                     bool one) {
    char key[BROKER_KEY_MAX], from[32], to[32];
    broker_key_dead(&w->keys, key);
    long offset = web_query_long(rq->query, one ? "index" : "offset", 0, 0, 1L << 40);
    long limit = one ? 1 : web_query_long(rq->query, "limit", 50, 1, 500);
    snprintf(from, sizeof from, "%ld", offset);
    snprintf(to, sizeof to, "%ld", offset + limit - 1);
    const char *llen[] = {"LLEN", key}, *range[] = {"LRANGE", key, from, to};
    const char **argvs[] = {llen, range};
    int argcs[] = {2, 4};
    redisReply *r[2] = {0};
    int rc = broker_conn_pipeline(w->conn, 2, argcs, argvs, NULL, r, WEB_REDIS_TIMEOUT);
    if (rc) {
        redis_down(w, ans, rc);
        return;
    }
    long long total = r[0]->type == REDIS_REPLY_INTEGER ? r[0]->integer : 0;
    if (one) {
        if (r[1]->type != REDIS_REPLY_ARRAY || r[1]->elements != 1) {
            web_replies_free(r, 2);
            web_error(ans, 404, "no dead letter at index %ld", offset);
            return;
        }
        long moff = web_query_long(rq->query, "offset", 0, 0, 1L << 40);
        long mlim = web_query_long(rq->query, "limit", WEB_PAGE_MAX, 1, WEB_PAGE_MAX);
        json_t *o = dead_item(r[1]->element[0], offset, true, moff, mlim);
        web_replies_free(r, 2);
        web_json(ans, 200, o);
        return;
    }
    json_t *list = json_array();
    for (size_t i = 0; r[1]->type == REDIS_REPLY_ARRAY && i < r[1]->elements; i++)
        json_array_append_new(list, dead_item(r[1]->element[i], offset + (long)i, false, 0, 0));
    web_replies_free(r, 2);
    web_json(ans, 200,
             json_pack("{s:I, s:i, s:o}", "total", (json_int_t)total, "offset", (int)offset,
                       "entries", list));
}

static void api_session(struct web *w, const struct web_request *rq, struct web_answer *ans) {
    char token[64];
    if (!rq->cookie || !web_cookie(rq->cookie, "wd_csrf", token, sizeof token) ||
        strlen(token) != 32) {
        web_auth_token(token);
        if (!ans->set_cookie[0]) /* a new session cookie wins; the next call sets this */
            snprintf(ans->set_cookie, sizeof ans->set_cookie, "wd_csrf=%s; Path=/; SameSite=Strict",
                     token);
    }
    web_json(ans, 200,
             json_pack("{s:s, s:b, s:s, s:s, s:s}", "csrf", token, "auth", w->auth != NULL,
                       "prefix", w->keys.prefix, "broker", w->broker_redacted, "version",
                       settings_version()));
}

bool web_read_route(struct web *w, const struct web_request *rq, struct web_answer *ans) {
    const char *p = rq->path;
    if (strcmp(p, "/healthz") == 0) {
        bool up = broker_conn_is_up(w->conn);
        ans->status = up ? 200 : 503;
        ans->type = "text/plain; charset=utf-8";
        ans->body = (char *)(up ? "ok\n" : "Redis unreachable\n");
        ans->len = strlen(ans->body);
        ans->body_static = true;
    } else if (strcmp(p, "/metrics") == 0) {
        web_metrics_page(w, ans);
    } else if (strcmp(p, "/api/session") == 0) {
        api_session(w, rq, ans);
    } else if (strcmp(p, "/api/overview") == 0) {
        api_overview(w, ans);
    } else if (strcmp(p, "/api/workers") == 0) {
        api_workers(w, ans);
    } else if (strcmp(p, "/api/queues") == 0) {
        api_queues(w, ans);
    } else if (strcmp(p, "/api/task") == 0) {
        api_task(w, rq, ans);
    } else if (strcmp(p, "/api/events") == 0) {
        api_events(w, rq, ans);
    } else if (strcmp(p, "/api/dead") == 0) {
        api_dead(w, rq, ans, false);
    } else if (strcmp(p, "/api/dead/entry") == 0) {
        api_dead(w, rq, ans, true);
    } else {
        return false;
    }
    return true;
}
