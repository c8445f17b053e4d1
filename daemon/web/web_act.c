/*
 * web_act.c - the state-changing half of the dashboard's API (web.h "web_act.c"). Each is
 * a POST with a JSON body, reached only past web_auth_allow and web_auth_csrf_ok, and
 * sends the very commands workerctl sends, built by broker/'s builders:
 *
 *   POST /api/dead/requeue  {"index": N, "key": K} | {"all": true}   (dead_requeue.lua)
 *   POST /api/dead/delete   {"index": N, "key": K} | {"all": true}   (LREM of the entry)
 *   POST /api/queues/purge  {"queue": Q, "confirm": Q}               (MULTI LLEN DEL EXEC)
 *   POST /api/queues/pause  {"queue": Q}                             (SADD <prefix>:paused)
 *   POST /api/queues/resume {"queue": Q}                             (SREM <prefix>:paused)
 *   POST /api/revoke        {"id": ID, "terminate": false}           (broker_cmd_revoke)
 *   POST /api/rate-limit    {"task": T, "rate": "20/s" | "off"}      (broker_cmd_rate_*)
 *
 * A dead letter is named by its index in the list (as GET /api/dead shows it) and by its
 * key, the SHA-1 of the entry's exact text: new dead letters push the others down, so an
 * index alone could name another entry by the time the click arrives; a key that does not
 * match gets 409 and nothing changes. A purge without "confirm" equal to the queue's name
 * changes nothing and answers 409 with how many messages it would delete.
 */
#include "web.h"

#include "broker_cmds.h"
#include "broker_control.h"
#include "broker_rate.h"
#include "broker_result.h"
#include "broker_scripts.h"
#include "green.h"
#include "green_check.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ALL_BATCH 100 /* dead letters handled per round trip by "all" */

static void failed(struct web *w, struct web_answer *ans, int rc) {
    if (rc == -EINVAL)
        web_error(ans, 400, "a name no Redis key of workerd may hold");
    else
        web_error(ans, 503, "Redis (%s): %s", w->broker_redacted, strerror(-rc));
}

/* Requeue (or drop) one entry, its exact text e[0..len). 1 done, 0 gone or refused (why
 * set), or an error. */
static int one_dead(struct web *w, const char *e, size_t len, bool requeue, const char **why) {
    broker_batch b = {0};
    broker_dead_entry d = {0};
    *why = NULL;
    if (requeue) {
        *why = broker_dead_parse(e, len, &d);
        if (*why) {
            broker_dead_entry_clear(&d);
            return 0;
        }
        broker_cmd_dead_requeue(&b, &w->keys, e, len, d.queue, d.message, d.message_len);
    } else {
        broker_cmd_dead_drop(&b, &w->keys, e, len);
    }
    redisReply *r = NULL;
    int rc = web_send(w->conn, &b, &r);
    long long n = 0;
    if (rc == 0 && broker_reply_integer(r, &n) < 0)
        rc = -EPROTO;
    if (r)
        freeReplyObject(r);
    broker_batch_clear(&b);
    broker_dead_entry_clear(&d);
    if (rc == 0 && n == 0)
        *why = "the entry was removed meanwhile";
    return rc ? rc : n > 0;
}

static void act_dead(struct web *w, json_t *body, struct web_answer *ans, bool requeue) {
    char key[BROKER_KEY_MAX];
    broker_key_dead(&w->keys, key);
    const char *why;
    if (json_is_true(json_object_get(body, "all"))) {
        /* Oldest first, so that a queue gets them back in their order; a pass over
         * the oldest ALL_BATCH at a time until none is left or none could be done. */
        long long done = 0, skipped = 0;
        for (;;) {
            char from[32];
            snprintf(from, sizeof from, "%lld", -(skipped + ALL_BATCH));
            char to[32];
            snprintf(to, sizeof to, "%lld", -(skipped + 1));
            const char *argv[] = {"LRANGE", key, from, to};
            redisReply *r = NULL;
            int rc = broker_conn_call(w->conn, &r, WEB_REDIS_TIMEOUT, 4, argv, NULL);
            if (rc) {
                failed(w, ans, rc);
                return;
            }
            size_t n = r->type == REDIS_REPLY_ARRAY ? r->elements : 0;
            for (size_t i = n; rc >= 0 && i-- > 0;) {
                rc = one_dead(w, r->element[i]->str, r->element[i]->len, requeue, &why);
                if (rc > 0)
                    done++;
                else if (rc == 0)
                    skipped++;
            }
            freeReplyObject(r);
            if (rc < 0) {
                failed(w, ans, rc);
                return;
            }
            if (n == 0)
                break;
        }
        web_json(ans, 200,
                 json_pack("{s:I, s:I}", requeue ? "requeued" : "deleted", (json_int_t)done,
                           "skipped", (json_int_t)skipped));
        w->overview_at = 0;
        return;
    }
    json_t *jidx = json_object_get(body, "index");
    const char *want = json_string_value(json_object_get(body, "key"));
    if (!json_is_integer(jidx) || json_integer_value(jidx) < 0 || !want) {
        web_error(ans, 400,
                  "give {\"index\": N, \"key\": K} (from GET /api/dead) or {\"all\": true}");
        return;
    }
    char index[32];
    snprintf(index, sizeof index, "%lld", (long long)json_integer_value(jidx));
    const char *argv[] = {"LINDEX", key, index};
    redisReply *r = NULL;
    int rc = broker_conn_call(w->conn, &r, WEB_REDIS_TIMEOUT, 3, argv, NULL);
    if (rc) {
        failed(w, ans, rc);
        return;
    }
    char digest[41] = "";
    if (r->type == REDIS_REPLY_STRING)
        broker_sha1_hex(r->str, r->len, digest);
    if (strcmp(digest, want) != 0) {
        freeReplyObject(r);
        web_error(ans, 409, "the dead letters changed: entry %s is not the one shown; reload",
                  index);
        return;
    }
    rc = one_dead(w, r->str, r->len, requeue, &why);
    freeReplyObject(r);
    if (rc < 0)
        failed(w, ans, rc);
    else if (rc == 0)
        web_error(ans, 409, "not %s: %s", requeue ? "requeued" : "deleted", why);
    else
        web_json(ans, 200, json_pack("{s:b}", requeue ? "requeued" : "deleted", 1));
    w->overview_at = 0;
}

static void act_purge(struct web *w, json_t *body, struct web_answer *ans) {
    const char *queue = json_string_value(json_object_get(body, "queue"));
    const char *confirm = json_string_value(json_object_get(body, "confirm"));
    const char *bad = queue ? broker_check_queue_name(queue) : "give {\"queue\": NAME}";
    if (bad) {
        web_error(ans, 400, "%s", bad);
        return;
    }
    broker_batch b = {0};
    redisReply *r[4] = {NULL};
    if (!confirm || strcmp(confirm, queue) != 0) {
        broker_cmd_queue_depths(&b, &w->keys, &queue, 1);
        int rc = web_send(w->conn, &b, r);
        broker_batch_clear(&b);
        if (rc) {
            failed(w, ans, rc);
            return;
        }
        long long n = broker_reply_queue_depth(r[0]);
        web_replies_free(r, 1);
        web_json(ans, 409,
                 json_pack("{s:s, s:I}", "error",
                           "not purged: confirm with {\"confirm\": <the queue's name>}",
                           "would_delete", (json_int_t)n));
        return;
    }
    broker_cmd_purge(&b, &w->keys, queue);
    int rc = web_send(w->conn, &b, r);
    broker_batch_clear(&b);
    if (rc) {
        failed(w, ans, rc);
        return;
    }
    long long n = broker_reply_purge(r[3]);
    web_replies_free(r, 4);
    web_json(ans, 200,
             json_pack("{s:s, s:I}", "queue", queue, "removed", (json_int_t)(n < 0 ? 0 : n)));
    w->overview_at = 0;
}

/* Pause (resume false) or resume a queue: Q is a queue's name, or "=NAME" for a Celery
 * queue. Answers {"queue": Q, "paused": bool, "changed": bool}. */
static void act_pause(struct web *w, json_t *body, struct web_answer *ans, bool resume) {
    const char *queue = json_string_value(json_object_get(body, "queue"));
    const char *bad = queue ? broker_check_queue_ref(queue) : "give {\"queue\": NAME}";
    if (bad) {
        web_error(ans, 400, "%s", bad);
        return;
    }
    broker_batch b = {0};
    if (resume)
        broker_cmd_resume(&b, &w->keys, queue);
    else
        broker_cmd_pause(&b, &w->keys, queue);
    redisReply *r = NULL;
    int rc = web_send(w->conn, &b, &r);
    broker_batch_clear(&b);
    if (rc) {
        failed(w, ans, rc);
        return;
    }
    long long changed = 0;
    rc = broker_reply_integer(r, &changed);
    freeReplyObject(r);
    if (rc)
        web_error(ans, 500, "Redis refused to %s the queue", resume ? "resume" : "pause");
    else
        web_json(ans, 200,
                 json_pack("{s:s, s:b, s:b}", "queue", queue, "paused", !resume, "changed",
                           changed != 0));
}

static void act_revoke(struct web *w, json_t *body, struct web_answer *ans) {
    const char *id = json_string_value(json_object_get(body, "id"));
    bool terminate = json_is_true(json_object_get(body, "terminate"));
    const char *bad = id ? broker_check_task_id(id) : "give {\"id\": ID}";
    if (bad) {
        web_error(ans, 400, "%s", bad);
        return;
    }
    broker_batch b = {0};
    broker_cmd_revoke(&b, &w->keys, id, terminate, w->result_expires, green_wallclock());
    redisReply *r[8] = {NULL};
    int rc = b.n <= 8 ? web_send(w->conn, &b, r) : -EPROTO;
    size_t n = b.n;
    broker_batch_clear(&b);
    if (rc) {
        failed(w, ans, rc);
        return;
    }
    bool ok = true;
    for (size_t i = 0; i < n; i++)
        ok &= r[i]->type != REDIS_REPLY_ERROR;
    web_replies_free(r, n);
    if (!ok)
        web_error(ans, 500, "Redis refused the revocation");
    else
        web_json(ans, 200, json_pack("{s:s, s:b}", "revoked", id, "terminate", terminate));
    w->overview_at = 0;
}

static void act_rate(struct web *w, json_t *body, struct web_answer *ans) {
    const char *task = json_string_value(json_object_get(body, "task"));
    const char *rate = json_string_value(json_object_get(body, "rate"));
    const char *bad = task ? broker_rate_check_name(task) : "give {\"task\": T, \"rate\": R}";
    char why[256];
    if (!bad && !rate)
        bad = "give {\"rate\": \"20/s\"} or \"off\"";
    bool off = rate && strcmp(rate, "off") == 0;
    if (!bad && !off && broker_rate_parse(rate, NULL, why, sizeof why) != 0)
        bad = why;
    if (bad) {
        web_error(ans, 400, "%s", bad);
        return;
    }
    broker_batch b = {0};
    if (off)
        broker_cmd_rate_off(&b, &w->keys, task);
    else
        broker_cmd_rate_set(&b, &w->keys, task, rate);
    redisReply *r = NULL;
    int rc = web_send(w->conn, &b, &r);
    broker_batch_clear(&b);
    if (rc) {
        failed(w, ans, rc);
        return;
    }
    freeReplyObject(r);
    web_json(ans, 200, json_pack("{s:s, s:s}", "task", task, "rate", rate));
}

static const char *const ACTIONS[] = {"/api/dead/requeue", "/api/dead/delete", "/api/queues/purge",
                                      "/api/revoke",       "/api/rate-limit",  "/api/queues/pause",
                                      "/api/queues/resume"};

bool web_act_known(const char *path) {
    for (size_t i = 0; i < sizeof ACTIONS / sizeof *ACTIONS; i++)
        if (strcmp(path, ACTIONS[i]) == 0)
            return true;
    return false;
}

bool web_act_route(struct web *w, const struct web_request *rq, struct web_answer *ans) {
    if (!web_act_known(rq->path))
        return false;
    json_error_t err;
    json_t *body = json_loadb(rq->body ? rq->body : "", rq->body_len, 0, &err);
    if (!json_is_object(body)) {
        json_decref(body);
        web_error(ans, 400, "the body must be a JSON object");
        return true;
    }
    const char *p = rq->path;
    if (strcmp(p, ACTIONS[0]) == 0 || strcmp(p, ACTIONS[1]) == 0)
        act_dead(w, body, ans, strcmp(p, ACTIONS[0]) == 0);
    else if (strcmp(p, ACTIONS[2]) == 0)
        act_purge(w, body, ans);
    else if (strcmp(p, ACTIONS[3]) == 0)
        act_revoke(w, body, ans);
    else if (strcmp(p, ACTIONS[5]) == 0 || strcmp(p, ACTIONS[6]) == 0)
        act_pause(w, body, ans, strcmp(p, ACTIONS[6]) == 0);
    else
        act_rate(w, body, ans);
    json_decref(body);
    return true;
}
