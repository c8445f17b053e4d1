/*
 * ctl_call.c - `workerctl call` (send a task, optionally wait for its result) and
 * `workerctl result` (show or wait for a stored result).
 *
 * A message is what README.md's producers push, {"id", "task", "args", "kwargs"}, sent
 * with broker_cmd_enqueue. Each word after the task name is one argument, read as JSON
 * when it is valid JSON (1, true, null, "text", [1,2], {"a":1}) and as a string otherwise,
 * so `call echo 1 two` sends [1,"two"]; --args gives the whole array at once.
 *
 * Waiting. Workers SET the result at its key (broker_key_result) and PUBLISH it on a
 * channel of the same name. The waiter SUBSCRIBEs on a connection of its own BEFORE the message is
 * pushed (a result published between a push and a late subscribe would be missed), then
 * GETs the key once (the result may be stored already: `result --wait` of a finished task)
 * and again every second (a fallback should a publication be lost, e.g. a worker that
 * reconnected and stored its kept results while we were subscribing). STARTED and RETRY
 * are not final; SUCCESS, FAILURE and REVOKED are, and anything else a worker might write
 * counts as final too (waiting for it would never end).
 *
 * The subscribed connection is read with poll() and redisBufferRead rather than with a
 * socket time-out: a time-out on a synchronous hiredis context is a sticky error that ends
 * the connection, and here a quiet second is normal.
 *
 * Runs on the main thread; blocks for the --wait time at most (forever without a number).
 */
#include "ctl.h"

#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker_cmds.h"
#include "broker_msg.h"
#include "green_check.h"
#include "settings.h"

/* ---- Results ------------------------------------------------------------------------- */

static bool is_final(const char *status) {
    return status == NULL || (strcmp(status, "STARTED") != 0 && strcmp(status, "RETRY") != 0);
}

/* The exit code a result document stands for. */
static int result_code(json_t *doc) {
    const char *status = json_string_value(json_object_get(doc, "status"));
    if (status == NULL)
        return CTL_FAIL;
    return strcmp(status, "SUCCESS") == 0 || !is_final(status) ? CTL_OK : CTL_FAIL;
}

/* One "name  value" line; the value comes from Redis, so it is escaped (ctl.h). */
static void print_field(const char *name, const char *value) {
    printf("%-9s ", name);
    ctl_put_escaped(value, strlen(value));
    putchar('\n');
}

/* A stored value that is not a result document (someone else's key, a hand-made value):
 * for people, a line saying so and the text, escaped; for --json, still one JSON document,
 * {"id", "error": "not a JSON object", "raw" or "raw_base64"} (ctl_json_set_raw). */
static int print_not_a_result(ctl *c, const char *id, const char *raw, size_t len) {
    if (!c->json) {
        print_field("result", "(not a JSON object; the stored text follows)");
        ctl_put_escaped(raw, len);
        putchar('\n');
        return CTL_FAIL;
    }
    json_t *doc = json_pack("{s:s, s:s}", "id", id, "error", "not a JSON object");
    if (doc == NULL || ctl_json_set_raw(doc, raw, len) != 0) {
        json_decref(doc);
        return ctl_error(CTL_FAIL, "out of memory");
    }
    ctl_print_json(doc);
    return CTL_FAIL;
}

/* Print the result of id for people, or as it is stored for --json. Returns its exit
 * code. */
static int print_result(ctl *c, const char *id, const char *raw, size_t len) {
    json_t *doc = json_loadb(raw, len, 0, NULL);
    if (!json_is_object(doc)) {
        json_decref(doc);
        return print_not_a_result(c, id, raw, len);
    }
    int code = result_code(doc);
    if (c->json) {
        ctl_print_json(doc);
        return code;
    }
    const char *keys[] = {"id", "task", "status", "worker"};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
        const char *v = json_string_value(json_object_get(doc, keys[i]));
        if (v != NULL)
            print_field(keys[i], v);
        if (i == 2) {
            json_t *res = json_object_get(doc, "result");
            char *text = res ? json_dumps(res, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
            if (text != NULL)
                print_field("result", text);
            free(text);
            json_t *err = json_object_get(doc, "error");
            if (json_is_object(err)) {
                const char *type = json_string_value(json_object_get(err, "type"));
                const char *msg = json_string_value(json_object_get(err, "message"));
                char line[2048];
                snprintf(line, sizeof line, "%s%s%s", type ? type : "", type && msg ? ": " : "",
                         msg ? msg : "");
                print_field("error", line);
            }
        }
    }
    json_int_t retries = json_integer_value(json_object_get(doc, "retries"));
    if (retries > 0) {
        char n[32];
        snprintf(n, sizeof n, "%lld", (long long)retries);
        print_field("retries", n);
    }
    double runtime = json_number_value(json_object_get(doc, "runtime"));
    double started = json_number_value(json_object_get(doc, "started_at"));
    char text[64];
    if (json_object_get(doc, "runtime") != NULL) {
        snprintf(text, sizeof text, "%.6f s", runtime);
        print_field("runtime", text);
    } else if (started > 0) {
        char age[32];
        snprintf(text, sizeof text, "%s ago", ctl_age(started, age, sizeof age));
        print_field("started", text);
    }
    json_decref(doc);
    return code;
}

/* GET the result. Returns CTL_OK with *raw (freeReplyObject it via *reply) or NULL when
 * absent; or a failure code. */
static int get_result(ctl *c, const char *key, redisReply **reply) {
    redisContext *rc = ctl_results(c);
    if (rc == NULL)
        return CTL_UNREACHABLE;
    int code = CTL_OK;
    redisReply *r = ctl_cmd(rc, &code, "GET %s", key);
    if (r == NULL)
        return code;
    if (r->type != REDIS_REPLY_STRING) {
        freeReplyObject(r);
        r = NULL;
    }
    *reply = r;
    return CTL_OK;
}

static bool raw_is_final(const char *raw, size_t len) {
    json_t *doc = json_loadb(raw, len, 0, NULL);
    bool final = is_final(json_string_value(json_object_get(doc, "status")));
    json_decref(doc);
    return final;
}

/* Subscribe to the result channel of id on a connection of its own: NULL after printing
 * why. */
static redisContext *subscribe(ctl *c, const char *channel) {
    redisContext *sub = ctl_results_connect_new(c);
    if (sub == NULL)
        return NULL;
    redisReply *r = ctl_cmd(sub, NULL, "SUBSCRIBE %s", channel);
    if (r == NULL) {
        redisFree(sub);
        return NULL;
    }
    freeReplyObject(r);
    return sub;
}

/* Wait on a subscribed connection for a final result of id, for up to seconds (< 0: no
 * limit), and print it. Returns the result's exit code, CTL_TIMEOUT or CTL_UNREACHABLE.
 * Takes sub. */
static int wait_result(ctl *c, redisContext *sub, const char *id, double seconds) {
    char key[BROKER_KEY_MAX];
    broker_key_result(&c->keys, id, key);
    double start = green_wallclock(), next_get = start;
    int code = CTL_TIMEOUT;
    for (;;) {
        void *reply = NULL;
        while (redisGetReplyFromReader(sub, &reply) == REDIS_OK && reply != NULL) {
            redisReply *m = reply;
            if (m->type == REDIS_REPLY_ARRAY && m->elements == 3 &&
                m->element[2]->type == REDIS_REPLY_STRING &&
                raw_is_final(m->element[2]->str, m->element[2]->len)) {
                code = print_result(c, id, m->element[2]->str, m->element[2]->len);
                freeReplyObject(m);
                goto out;
            }
            freeReplyObject(m);
        }
        if (sub->err) {
            code = ctl_error(CTL_UNREACHABLE, "lost the link to Redis: %s", sub->errstr);
            goto out;
        }
        double now = green_wallclock();
        if (now >= next_get) {
            redisReply *r = NULL;
            code = get_result(c, key, &r);
            if (code != CTL_OK)
                goto out;
            if (r != NULL && raw_is_final(r->str, r->len)) {
                code = print_result(c, id, r->str, r->len);
                freeReplyObject(r);
                goto out;
            }
            if (r != NULL)
                freeReplyObject(r);
            code = CTL_TIMEOUT;
            next_get = now + 1.0;
        }
        double wait = next_get - now;
        if (seconds >= 0) {
            double left = start + seconds - now;
            if (left <= 0) {
                ctl_error(CTL_TIMEOUT, "no final result for '%s' within %g s", id, seconds);
                goto out;
            }
            wait = fmin(wait, left);
        }
        struct pollfd pfd = {.fd = sub->fd, .events = POLLIN};
        int n = poll(&pfd, 1, (int)ceil(fmax(wait, 0) * 1000));
        if (n > 0 && redisBufferRead(sub) != REDIS_OK) {
            code = ctl_error(CTL_UNREACHABLE, "lost the link to Redis: %s", sub->errstr);
            goto out;
        }
    }
out:
    redisFree(sub);
    return code;
}

/* ---- call ---------------------------------------------------------------------------- */

enum { O_ARGS = 1, O_KWARGS, O_QUEUE, O_ID, O_WAIT };

static const ctl_opt call_opts[] = {
    {"args", 0, CTL_ARG, O_ARGS},      {"kwargs", 0, CTL_ARG, O_KWARGS},
    {"queue", 'q', CTL_ARG, O_QUEUE},  {"id", 0, CTL_ARG, O_ID},
    {"wait", 'w', CTL_OPTNUM, O_WAIT}, {NULL, 0, CTL_NOARG, 0},
};

/* --wait's value: seconds, or -1 for no limit. */
static int wait_seconds(ctl *c, const char *value, double *out) {
    *out = -1;
    if (value != NULL && settings_parse_seconds(value, CTL_WAIT_MAX, out, NULL, 0) < 0)
        return ctl_usage(c, "--wait: '%s' is not a number of seconds", value);
    return CTL_OK;
}

/* The message for call's arguments, or NULL after a usage message (*code set). */
static json_t *build_message(ctl *c, const ctl_args *a, const char *id, const char *args_json,
                             const char *kwargs_json, int *code) {
    json_error_t jerr;
    json_t *args = NULL, *kwargs = NULL, *msg = NULL;
    *code = CTL_USAGE;
    if (args_json != NULL) {
        if (a->npos > 1) {
            ctl_usage(c, "give the arguments as words or with --args, not both");
            return NULL;
        }
        args = json_loads(args_json, 0, &jerr);
        if (!json_is_array(args)) {
            ctl_usage(c, "--args: not a JSON array: %s", args ? "another type" : jerr.text);
            goto fail;
        }
    } else {
        args = json_array();
        for (int i = 1; args != NULL && i < a->npos; i++) {
            json_t *v = json_loads(a->pos[i], JSON_DECODE_ANY, NULL);
            if (v == NULL)
                v = json_string(a->pos[i]);
            if (v == NULL) {
                ctl_usage(c, "argument %d is not valid UTF-8", i);
                goto fail;
            }
            json_array_append_new(args, v);
        }
    }
    if (kwargs_json != NULL) {
        kwargs = json_loads(kwargs_json, 0, &jerr);
        if (!json_is_object(kwargs)) {
            ctl_usage(c, "--kwargs: not a JSON object: %s", kwargs ? "another type" : jerr.text);
            goto fail;
        }
    }
    msg = json_pack("{s:s, s:s, s:O}", "id", id, "task", a->pos[0], "args", args);
    if (msg == NULL) {
        ctl_usage(c, "the task name or id is not valid UTF-8");
        goto fail;
    }
    if (kwargs != NULL)
        json_object_set(msg, "kwargs", kwargs);
    *code = CTL_OK;
fail:
    json_decref(args);
    json_decref(kwargs);
    return msg;
}

int ctl_cmd_call(ctl *c, int argc, char **argv) {
    ctl_args a;
    int code = ctl_parse(c, argc, argv, call_opts, &a);
    if (code != CTL_OK)
        return code;
    const char *queue = "default", *id = NULL, *args_json = NULL, *kwargs_json = NULL;
    bool wait = false;
    double seconds = -1;
    for (int i = 0; i < a.nopt; i++) {
        const char *v = a.opt[i].value;
        switch (a.opt[i].id) {
        case O_ARGS:
            args_json = v;
            break;
        case O_KWARGS:
            kwargs_json = v;
            break;
        case O_QUEUE:
            queue = v;
            break;
        case O_ID:
            id = v;
            break;
        case O_WAIT:
            wait = true;
            if ((code = wait_seconds(c, v, &seconds)) != CTL_OK)
                return code;
            break;
        }
    }
    if (a.npos < 1)
        return ctl_usage(c, "call needs a task name");
    const char *why = broker_check_queue_name(queue);
    if (why != NULL)
        return ctl_usage(c, "--queue: %s", why);
    char fresh[37];
    if (id == NULL) {
        broker_msg_new_id(fresh);
        id = fresh;
    } else if ((why = broker_check_task_id(id)) != NULL) {
        return ctl_usage(c, "--id: %s", why);
    }
    json_t *msg = build_message(c, &a, id, args_json, kwargs_json, &code);
    if (msg == NULL)
        return code;
    char *text = json_dumps(msg, JSON_COMPACT);
    json_decref(msg);
    if (text == NULL)
        return ctl_error(CTL_FAIL, "out of memory");

    char channel[BROKER_KEY_MAX];
    broker_key_result(&c->keys, id, channel);
    redisContext *sub = NULL;
    redisContext *rc = ctl_broker(c);
    if (rc == NULL || (wait && (sub = subscribe(c, channel)) == NULL)) {
        free(text);
        return CTL_UNREACHABLE;
    }
    broker_batch b = {0};
    broker_cmd_enqueue(&b, &c->keys, queue, text, strlen(text));
    redisReply *r = ctl_send_one(rc, &b, &code);
    broker_batch_clear(&b);
    free(text);
    if (r == NULL) {
        if (sub)
            redisFree(sub);
        return code;
    }
    freeReplyObject(r);
    if (wait)
        return wait_result(c, sub, id, seconds);
    if (c->json)
        ctl_print_json(json_pack("{s:s, s:s, s:s}", "id", id, "task", a.pos[0], "queue", queue));
    else
        printf("%s\n", id);
    return CTL_OK;
}

/* ---- result -------------------------------------------------------------------------- */

static const ctl_opt result_opts[] = {
    {"wait", 'w', CTL_OPTNUM, O_WAIT},
    {NULL, 0, CTL_NOARG, 0},
};

int ctl_cmd_result(ctl *c, int argc, char **argv) {
    ctl_args a;
    int code = ctl_parse(c, argc, argv, result_opts, &a);
    if (code != CTL_OK)
        return code;
    bool wait = false;
    double seconds = -1;
    for (int i = 0; i < a.nopt; i++) {
        wait = true;
        if ((code = wait_seconds(c, a.opt[i].value, &seconds)) != CTL_OK)
            return code;
    }
    if (a.npos != 1)
        return ctl_usage(c, "result needs exactly one task id");
    const char *id = a.pos[0], *why = broker_check_task_id(id);
    if (why != NULL)
        return ctl_usage(c, "%s", why);
    char key[BROKER_KEY_MAX];
    broker_key_result(&c->keys, id, key);
    if (wait) {
        redisContext *sub = subscribe(c, key);
        return sub ? wait_result(c, sub, id, seconds) : CTL_UNREACHABLE;
    }
    redisReply *r = NULL;
    if ((code = get_result(c, key, &r)) != CTL_OK)
        return code;
    if (r == NULL)
        return ctl_error(CTL_FAIL, "no result for '%s' (unknown, not started yet, or expired)", id);
    code = print_result(c, id, r->str, r->len);
    freeReplyObject(r);
    return code;
}
