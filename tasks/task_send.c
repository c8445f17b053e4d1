/*
 * task_send.c - a task sends tasks and waits for their results (task_env.h).
 *
 * Sending is what any producer does: encode the message, LPUSH it on the queue's key,
 * with broker_cmd_enqueue, on the connection lent to the task. The message carries
 * "parent_id" (the sending task's id), which workers keep untouched, so that a result's
 * reader can trace where a message came from.
 *
 * Waiting polls the result key on the result backend. The workers also PUBLISH every
 * result, but green_redis has no subscriptions (their replies do not pair with commands),
 * so the waiter GETs the key: at once (the subtask may be done already), then after
 * 50 ms, doubling to 500 ms between reads. STARTED and RETRY are not final; anything else
 * is, as for workerctl's --wait.
 *
 * Runs on greenlets of the worker's hub.
 */
#include "task_env_internal.h"

#include "broker_cmds.h"
#include "broker_msg.h"
#include "green.h"
#include "green_check.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SEND_TIMEOUT 10.0 /* seconds Redis gets to take a message */
#define POLL_FIRST 0.05
#define POLL_MAX 0.5

/* ---- sending ------------------------------------------------------------------------- */

/* Set key to a new value (a NULL value is out of memory): 0 or -1. */
static int set_new(json_t *msg, const char *key, json_t *value) {
    return value != NULL ? json_object_set_new(msg, key, value) : -1;
}

/* Set key to the string s: 0, or TASK_EFAIL (in *rc) with err filled when s is not UTF-8
 * (json_string's only other failure, out of memory, is reported the same way: rare, and
 * the message still names the field). */
static int set_text(json_t *msg, const char *key, const char *s, task_error *err, int *rc) {
    json_t *v = json_string(s);
    if (v == NULL || json_object_set_new(msg, key, v) != 0) {
        *rc = task_error_set(err, "ValueError", "task_send: the %s is not valid UTF-8", key);
        return -1;
    }
    return 0;
}

/* The message, or NULL with err filled (TASK_EFAIL in *rc). */
static json_t *build_message(const task_call *call, const char *name, const json_t *args,
                             const json_t *kwargs, const task_send_opts *o, const char *id,
                             const char *queue, task_error *err, int *rc) {
    json_t *msg = json_object();
    if (msg == NULL) {
        *rc = task_error_set(err, "MemoryError", "out of memory");
        return NULL;
    }
    if (set_text(msg, "id", id, err, rc) != 0 || set_text(msg, "task", name, err, rc) != 0 ||
        set_text(msg, "queue", queue, err, rc) != 0) {
        json_decref(msg);
        return NULL;
    }
    /* args and kwargs are borrowed and const: the message only holds a reference while it
     * is encoded, and nothing changes them. */
    int bad =
        args ? json_object_set(msg, "args", (json_t *)args) : set_new(msg, "args", json_array());
    bad |= kwargs ? json_object_set(msg, "kwargs", (json_t *)kwargs)
                  : set_new(msg, "kwargs", json_object());
    json_t *parent = call->id != NULL ? json_string(call->id) : NULL;
    if (parent != NULL)
        bad |= json_object_set_new(msg, "parent_id", parent);
    if (o->expires > 0)
        bad |= set_new(msg, "expires", json_real(green_wallclock() + o->expires));
    if (o->time_limit > 0)
        bad |= set_new(msg, "time_limit", json_real(o->time_limit));
    if (o->soft_time_limit > 0)
        bad |= set_new(msg, "soft_time_limit", json_real(o->soft_time_limit));
    if (o->ignore_result)
        bad |= set_new(msg, "ignore_result", json_true());
    if (bad) {
        json_decref(msg);
        *rc = task_error_set(err, "MemoryError", "out of memory");
        return NULL;
    }
    return msg;
}

/* The options' checks: 0, or TASK_EFAIL "ValueError" naming what is wrong. */
static int check_send(const char *name, const json_t *args, const json_t *kwargs,
                      const task_send_opts *o, const char *queue, task_error *err) {
    broker_limits lim;
    broker_limits_default(&lim);
    const char *why;
    if (name == NULL || name[0] == '\0' || strlen(name) > lim.max_task_bytes)
        return task_error_set(err, "ValueError", "task_send: the task name must be 1 to %zu bytes",
                              lim.max_task_bytes);
    if (args != NULL && !json_is_array(args))
        return task_error_set(err, "ValueError", "task_send: args must be a JSON array, got %s",
                              task_json_type_name(args));
    if (kwargs != NULL && !json_is_object(kwargs))
        return task_error_set(err, "ValueError", "task_send: kwargs must be a JSON object, got %s",
                              task_json_type_name(kwargs));
    if ((why = broker_check_queue_name(queue)) != NULL)
        return task_error_set(err, "ValueError", "task_send: queue: %s", why);
    if (o->id != NULL && (why = broker_check_task_id(o->id)) != NULL)
        return task_error_set(err, "ValueError", "task_send: id: %s", why);
    if (!(o->expires >= 0 && o->time_limit >= 0 && o->soft_time_limit >= 0))
        return task_error_set(err, "ValueError",
                              "task_send: expires and the time limits must be >= 0");
    return 0;
}

int task_send(const task_call *call, const char *name, const json_t *args, const json_t *kwargs,
              const task_send_opts *opts, char id_out[TASK_ID_MAX + 1], task_error *err) {
    static const task_send_opts defaults = {0};
    const task_send_opts *o = opts ? opts : &defaults;
    const char *queue = o->queue ? o->queue : "default";
    if (id_out != NULL)
        id_out[0] = '\0';
    if (call == NULL || call->ctx == NULL || call->ctx->host == NULL)
        return task__no_worker(call, "task_send", err);
    int rc = check_send(name, args, kwargs, o, queue, err);
    if (rc != 0)
        return rc;
    char fresh[BROKER_GENERATED_ID_BYTES + 1];
    const char *id = o->id;
    if (id == NULL) {
        broker_msg_new_id(fresh);
        id = fresh;
    }
    json_t *msg = build_message(call, name, args, kwargs, o, id, queue, err, &rc);
    if (msg == NULL)
        return rc;
    char *text = json_dumps(msg, JSON_COMPACT);
    json_decref(msg);
    if (text == NULL)
        return task_error_set(err, "MemoryError", "out of memory");

    broker_batch b = {0};
    redisReply *reply = NULL;
    green_redis *c = NULL;
    char what[BROKER_QUEUE_NAME_MAX + 64];
    snprintf(what, sizeof what, "sending %s to queue %s", name, queue);
    if (broker_cmd_enqueue(&b, &call->ctx->host->keys, queue, text, strlen(text)) != 0) {
        rc = task_error_set(err, "MemoryError", "out of memory");
    } else if ((rc = task__lend(call, false, &c, err)) == 0) {
        green_timeout own;
        green_timeout_start(&own, SEND_TIMEOUT);
        rc = green_redis_pipeline(c, b.n, b.argcs, (const char **const *)b.argvs, b.argvlens,
                                  &reply, -1);
        bool fired = green_timeout_end(&own);
        if (rc != 0)
            rc = task__redis_failed(rc, fired, SEND_TIMEOUT, c, what, err);
        else if (reply->type == REDIS_REPLY_ERROR)
            rc = task_error_set(err, "RedisError", "%s: %.*s", what, (int)reply->len, reply->str);
    }
    if (reply != NULL)
        freeReplyObject(reply);
    broker_batch_clear(&b);
    free(text);
    if (rc == 0 && id_out != NULL)
        snprintf(id_out, TASK_ID_MAX + 1, "%s", id);
    return rc;
}

/* ---- waiting ------------------------------------------------------------------------- */

/* A stored result document: 1 when it is final, with the outcome in *rc (and *result or
 * err); 0 when it is not final yet. */
static int read_result(const char *id, const char *raw, size_t len, json_t **result,
                       task_error *err, int *rc) {
    json_t *doc = json_loadb(raw, len, 0, NULL);
    if (!json_is_object(doc)) {
        json_decref(doc);
        *rc = task_error_set(err, "RuntimeError", "the result of %s is not a result document", id);
        return 1;
    }
    const char *status = json_string_value(json_object_get(doc, "status"));
    if (status != NULL && (strcmp(status, "STARTED") == 0 || strcmp(status, "RETRY") == 0)) {
        json_decref(doc);
        return 0;
    }
    if (status != NULL && strcmp(status, "SUCCESS") == 0) {
        json_t *value = json_object_get(doc, "result");
        *result = value != NULL ? json_incref(value) : json_null();
        *rc = 0;
    } else {
        json_t *e = json_object_get(doc, "error");
        const char *type = json_string_value(json_object_get(e, "type"));
        const char *message = json_string_value(json_object_get(e, "message"));
        *rc = task_error_set(err, type ? type : "TaskError", "%s",
                             message ? message : (status ? status : "no status"));
    }
    json_decref(doc);
    return 1;
}

int task_wait(const task_call *call, const char *id, double timeout, json_t **result,
              task_error *err) {
    *result = NULL;
    if (call == NULL || call->ctx == NULL || call->ctx->host == NULL)
        return task__no_worker(call, "task_wait", err);
    const char *why = id ? broker_check_task_id(id) : "no id";
    if (why != NULL)
        return task_error_set(err, "ValueError", "task_wait: id: %s", why);
    char key[BROKER_KEY_MAX];
    broker_key_result(&call->ctx->host->keys, id, key);

    green_timeout own;
    green_timeout_start(&own, timeout);
    int rc = 0;
    double pause = POLL_FIRST;
    for (;;) {
        green_redis *c;
        redisReply *reply = NULL;
        if ((rc = task__lend(call, true, &c, err)) != 0)
            break;
        rc = green_redis_command(c, &reply, -1, "GET %s", key);
        if (rc != 0) {
            char what[BROKER_ID_MAX + 64];
            snprintf(what, sizeof what, "waiting for the result of %s", id);
            /* own deadline: decided below, where green_timeout_end is known */
            if (rc != -ETIMEDOUT)
                rc = task__redis_failed(rc, false, timeout, c, what, err);
            break;
        }
        int final = 0;
        if (reply->type == REDIS_REPLY_STRING)
            final = read_result(id, reply->str, reply->len, result, err, &rc);
        else if (reply->type == REDIS_REPLY_ERROR)
            final = 1, rc = task_error_set(err, "RedisError", "waiting for the result of %s: %.*s",
                                           id, (int)reply->len, reply->str);
        freeReplyObject(reply);
        if (final)
            break;
        if ((rc = green_sleep(pause)) != 0)
            break;
        pause = pause * 2 < POLL_MAX ? pause * 2 : POLL_MAX;
    }
    bool fired = green_timeout_end(&own);
    if (rc == -ETIMEDOUT && fired)
        rc = task_error_set(err, "Timeout", "no result for %s within %g s", id, timeout);
    return rc;
}

int task_send_wait(const task_call *call, const char *name, const json_t *args,
                   const json_t *kwargs, const task_send_opts *opts, double timeout,
                   json_t **result, task_error *err) {
    char id[TASK_ID_MAX + 1];
    *result = NULL;
    int rc = task_send(call, name, args, kwargs, opts, id, err);
    return rc != 0 ? rc : task_wait(call, id, timeout, result, err);
}
