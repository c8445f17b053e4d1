/*
 * wd_canvas.c - chain, group and chord: checking signatures and building the operations
 * of a final ack (wd_canvas.h).
 */
#include "wd_canvas.h"

#include "broker_scripts.h"
#include "task.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool wd_canvas_is_builtin(const char *task) {
    return strcmp(task, "group") == 0 || strcmp(task, "chord") == 0;
}

bool wd_canvas_involved(const broker_msg *m) {
    return wd_canvas_is_builtin(m->task) || json_object_get(m->root, "chain") != NULL ||
           json_object_get(m->root, "member_of") != NULL;
}

static int fail(const char **etype, const char *type, char *reason, size_t n, const char *fmt,
                ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, n, fmt, ap);
    va_end(ap);
    *etype = type;
    return -EINVAL;
}

static size_t max_id(const broker_limits *lim) {
    return lim && lim->max_id_bytes ? lim->max_id_bytes : BROKER_ID_MAX;
}

/* The id of the follow-up `what` (".3", ".callback") of parent: "<parent><what>", or the
 * SHA-1 of the parent's id instead of it when that would be too long. */
static void child_id(const char *parent, const char *what, const broker_limits *lim,
                     char out[BROKER_ID_MAX + 1]) {
    if (strlen(parent) + strlen(what) <= max_id(lim)) {
        snprintf(out, BROKER_ID_MAX + 1, "%s%s", parent, what);
        return;
    }
    char hex[41];
    broker_sha1_hex(parent, strlen(parent), hex);
    snprintf(out, BROKER_ID_MAX + 1, "%s%s", hex, what);
}

/* The message signature sig becomes: a copy without "immutable", with id when it has
 * none, and with prepend (when not NULL, and sig not immutable) as its first argument.
 * NULL when out of memory. */
static json_t *sig_message(const json_t *sig, const char *id, json_t *prepend) {
    json_t *msg = json_deep_copy(sig);
    if (!msg)
        return NULL;
    bool immutable = json_is_true(json_object_get(sig, "immutable"));
    json_object_del(msg, "immutable");
    if (!json_is_string(json_object_get(msg, "id")) &&
        json_object_set_new(msg, "id", json_string(id)))
        goto fail;
    if (prepend && !immutable) {
        json_t *args = json_array(), *old = json_object_get(sig, "args");
        if (!args || json_array_append(args, prepend) ||
            (json_is_array(old) && json_array_extend(args, old)) ||
            json_object_set_new(msg, "args", args))
            goto fail;
    }
    return msg;
fail:
    json_decref(msg);
    return NULL;
}

/* Whether this worker consumes queue q: only then can it tell that a task is unknown. */
static bool consumes(const wd_canvas_env *env, const char *q) {
    if (!q)
        return true;
    for (size_t i = 0; i < env->nqueues; i++)
        if (strcmp(env->queues[i], q) == 0)
            return true;
    return false;
}

/* Check one signature as `where` ("chain[2]", "args[0][7]", "args[1]"). */
static int check_sig(const json_t *sig, const char *where, bool allow_chain, bool prepended,
                     const wd_canvas_env *env, const char **etype, char *reason, size_t n);

static int check_chain(const json_t *chain, const char *where, const wd_canvas_env *env,
                       const char **etype, char *reason, size_t n) {
    if (!chain || json_is_null(chain))
        return 0;
    if (!json_is_array(chain))
        return fail(etype, "InvalidMessage", reason, n,
                    "%s must be a list of signatures ({\"task\": NAME, ...})", where);
    if (json_array_size(chain) > WD_CANVAS_MAX_CHAIN)
        return fail(etype, "InvalidMessage", reason, n, "%s has %zu links; at most %d are allowed",
                    where, json_array_size(chain), WD_CANVAS_MAX_CHAIN);
    size_t i;
    json_t *sig;
    json_array_foreach(chain, i, sig) {
        char at[64];
        snprintf(at, sizeof at, "%s[%zu]", where, i);
        int rc = check_sig(sig, at, false, true, env, etype, reason, n);
        if (rc)
            return rc;
    }
    return 0;
}

static int check_sig(const json_t *sig, const char *where, bool allow_chain, bool prepended,
                     const wd_canvas_env *env, const char **etype, char *reason, size_t n) {
    if (!json_is_object(sig))
        return fail(etype, "InvalidMessage", reason, n,
                    "%s is not a signature: it must be an object {\"task\": NAME, \"args\": "
                    "[...], \"kwargs\": {...}}",
                    where);
    const json_t *task = json_object_get(sig, "task");
    if (!json_is_string(task))
        return fail(etype, "InvalidMessage", reason, n, "%s has no string \"task\"", where);
    const char *name = json_string_value(task);
    if (wd_canvas_is_builtin(name))
        return fail(etype, "InvalidMessage", reason, n,
                    "%s is a %s: a group or chord cannot be nested in a chain, a group or a "
                    "chord",
                    where, name);
    /* A task this worker does not have may be another queue's workers': they judge it. */
    if (!task_registry_find(name) &&
        consumes(env, json_string_value(json_object_get(sig, "queue"))))
        return fail(etype, "NotRegistered", reason, n, "%s: unknown task \"%s\"", where, name);
    const json_t *imm = json_object_get(sig, "immutable");
    if (imm && !json_is_null(imm) && !json_is_boolean(imm))
        return fail(etype, "InvalidMessage", reason, n, "%s: \"immutable\" must be true or false",
                    where);
    if (json_object_get(sig, "member_of"))
        return fail(etype, "InvalidMessage", reason, n,
                    "%s: \"member_of\" is set by workerd, not by a producer", where);
    const json_t *chain = json_object_get(sig, "chain");
    if (chain && !json_is_null(chain)) {
        if (!allow_chain)
            return fail(etype, "InvalidMessage", reason, n,
                        "%s has a chain of its own: only a chord's callback may (a chain's "
                        "links are one list; a group's members cannot be chains)",
                        where);
        char at[64];
        snprintf(at, sizeof at, "%s.chain", where);
        int rc = check_chain(chain, at, env, etype, reason, n);
        if (rc)
            return rc;
    }
    /* The message it will become, through the parser that will judge it. */
    json_t *msg = sig_message(sig, "x", prepended ? json_null() : NULL);
    char *text = msg ? json_dumps(msg, JSON_COMPACT) : NULL;
    json_decref(msg);
    if (!text)
        return fail(etype, "MemoryError", reason, n, "out of memory checking %s", where);
    broker_msg parsed;
    broker_msg_error perr;
    int rc = broker_msg_parse(text, strlen(text), env->lim, env->now, &parsed, &perr);
    free(text);
    if (rc == -EINVAL)
        return fail(etype, "InvalidMessage", reason, n, "%s: %s", where, perr.reason);
    if (rc)
        return fail(etype, "MemoryError", reason, n, "out of memory checking %s", where);
    broker_msg_free(&parsed);
    return 0;
}

static int check_members(const json_t *members, const char *where, const wd_canvas_env *env,
                         const char **etype, char *reason, size_t n) {
    if (!json_is_array(members))
        return fail(etype, "TypeError", reason, n,
                    "%s must be the list of member signatures [{\"task\": NAME, ...}, ...]", where);
    if (json_array_size(members) > WD_CANVAS_MAX_MEMBERS)
        return fail(etype, "InvalidMessage", reason, n,
                    "%s has %zu members; at most %d are allowed", where, json_array_size(members),
                    WD_CANVAS_MAX_MEMBERS);
    size_t i;
    json_t *sig;
    json_array_foreach(members, i, sig) {
        char at[64];
        snprintf(at, sizeof at, "%s[%zu]", where, i);
        int rc = check_sig(sig, at, false, false, env, etype, reason, n);
        if (rc)
            return rc;
    }
    return 0;
}

int wd_canvas_check(const broker_msg *m, const wd_canvas_env *env, const char **etype, char *reason,
                    size_t n) {
    const json_t *chain = json_object_get(m->root, "chain");
    const json_t *of = json_object_get(m->root, "member_of");
    if (of && !json_is_null(of) &&
        (!json_is_object(of) || !json_is_string(json_object_get(of, "id")) ||
         !json_is_integer(json_object_get(of, "index")) ||
         json_integer_value(json_object_get(of, "index")) < 0))
        return fail(
            etype, "InvalidMessage", reason, n,
            "field \"member_of\" must be {\"id\": GROUP_ID, \"index\": N} (set by workerd)");
    if (!wd_canvas_is_builtin(m->task))
        return check_chain(chain, "chain", env, etype, reason, n);
    if (chain && !json_is_null(chain))
        return fail(etype, "InvalidMessage", reason, n,
                    "a %s cannot carry a chain (it would go on before its members finished): "
                    "make the chain a chord's callback's",
                    m->task);
    bool chord = strcmp(m->task, "chord") == 0;
    size_t want = chord ? 2 : 1;
    if (json_array_size(m->args) != want)
        return fail(etype, "TypeError", reason, n,
                    chord ? "chord takes args [[signature, ...], callback signature], got %zu "
                            "arguments"
                          : "group takes args [[signature, ...]], got %zu arguments",
                    json_array_size(m->args));
    int rc = check_members(json_array_get(m->args, 0), "args[0]", env, etype, reason, n);
    if (rc == 0 && chord)
        rc = check_sig(json_array_get(m->args, 1), "args[1] (the callback)", true, true, env, etype,
                       reason, n);
    return rc;
}

/* The queue a follow-up goes to: its own "queue", else the parent's. */
static const char *sig_queue(const json_t *sig, const char *parent_queue) {
    const char *q = json_string_value(json_object_get(sig, "queue"));
    return q ? q : parent_queue;
}

static int push_text(broker_canvas *c, const char *queue, json_t *msg) {
    char *text = json_dumps(msg, JSON_COMPACT);
    if (!text)
        return -ENOMEM;
    int rc = broker_canvas_item(c, queue, text, strlen(text));
    free(text);
    return rc;
}

int wd_canvas_start(const broker_msg *m, const char *queue, const broker_limits *lim,
                    const char *wid, double started_at, broker_canvas *c) {
    bool chord = strcmp(m->task, "chord") == 0;
    const json_t *members = json_array_get(m->args, 0);
    size_t n = json_array_size(members);
    json_t *children = json_array();
    json_t **msgs = calloc(n ? n : 1, sizeof *msgs);
    char *kids = NULL, *interim = NULL, *cb_text = NULL;
    json_t *cb = NULL, *doc = NULL;
    int rc = -ENOMEM;
    if (!children || !msgs)
        goto out;
    for (size_t i = 0; i < n; i++) {
        const json_t *sig = json_array_get(members, i);
        char id[BROKER_ID_MAX + 1], what[32];
        snprintf(what, sizeof what, ".%zu", i);
        child_id(m->id, what, lim, id);
        msgs[i] = sig_message(sig, id, NULL);
        json_t *of = json_pack("{s:s, s:I}", "id", m->id, "index", (json_int_t)i);
        if (!msgs[i] || !of || json_object_set_new(msgs[i], "member_of", of) ||
            json_array_append(children, json_object_get(msgs[i], "id")))
            goto out;
    }
    kids = json_dumps(children, JSON_COMPACT);
    broker_canvas_group g = {.gid = m->id, .task = m->task, .n = n, .children = kids};
    char cb_id[BROKER_ID_MAX + 1], sentinel[64], uuid[37];
    if (chord) {
        const json_t *sig = json_array_get(m->args, 1);
        child_id(m->id, ".callback", lim, cb_id);
        broker_msg_new_id(uuid);
        snprintf(sentinel, sizeof sentinel, "workerd-chord-results-%s", uuid);
        json_t *mark = json_string(sentinel);
        cb = mark ? sig_message(sig, cb_id, mark) : NULL;
        json_decref(mark);
        cb_text = cb ? json_dumps(cb, JSON_COMPACT) : NULL;
        if (!cb_text)
            goto out;
        g.mode = json_is_true(json_object_get(sig, "immutable")) ? 'i' : 'm';
        g.cb_queue = sig_queue(sig, queue);
        g.cb_id = json_string_value(json_object_get(cb, "id"));
        g.cb_task = json_string_value(json_object_get(cb, "task"));
        g.cb_head = cb_text;
        g.cb_tail = "";
        if (g.mode == 'm') {
            char quoted[80];
            snprintf(quoted, sizeof quoted, "\"%s\"", sentinel);
            char *at = strstr(cb_text, quoted);
            if (!at) { /* cannot happen: the sentinel is the first argument */
                rc = -EPROTO;
                goto out;
            }
            *at = '\0';
            g.cb_tail = at + strlen(quoted);
        }
    }
    doc = json_pack("{s:s, s:s, s:s, s:O, s:s, s:f}", "id", m->id, "task", m->task, "status",
                    "STARTED", "children", children, "worker", wid, "started_at", started_at);
    if (doc && chord && json_object_set_new(doc, "callback", json_string(g.cb_id)))
        goto out;
    interim = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    if (!kids || !interim)
        goto out;
    g.interim = interim;
    rc = broker_canvas_group_start(c, &g);
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = push_text(c, sig_queue(json_array_get(members, i), queue), msgs[i]);
out:
    for (size_t i = 0; msgs && i < n; i++)
        json_decref(msgs[i]);
    free(msgs);
    json_decref(children);
    json_decref(cb);
    json_decref(doc);
    free(kids);
    free(interim);
    free(cb_text);
    return rc;
}

/* The next link of m's chain, with m's result value. */
static int chain_next(const broker_msg *m, const json_t *chain, const char *queue,
                      const broker_limits *lim, const json_t *value, broker_canvas *c) {
    const json_t *sig = json_array_get(chain, 0);
    char id[BROKER_ID_MAX + 1], hex[41];
    broker_sha1_hex(m->id, strlen(m->id), hex);
    snprintf(id, sizeof id, "%s", hex);
    (void)lim;
    json_t *msg = sig_message(sig, id, (json_t *)value);
    if (!msg)
        return -ENOMEM;
    int rc = 0;
    if (json_array_size(chain) > 1) {
        json_t *rest = json_array();
        for (size_t i = 1; rest && rc == 0 && i < json_array_size(chain); i++)
            rc = json_array_append(rest, json_array_get(chain, i));
        rc = rest && rc == 0 ? json_object_set_new(msg, "chain", rest) : -ENOMEM;
    }
    const char *next = json_string_value(json_object_get(msg, "id"));
    if (rc == 0)
        rc = broker_canvas_push(c, next, 1);
    if (rc == 0)
        rc = push_text(c, sig_queue(sig, queue), msg);
    json_decref(msg);
    return rc ? -ENOMEM : 0;
}

/* Every remaining signature of m's chain with an id: FAILURE ChainAborted. */
static int chain_abort(const broker_msg *m, const json_t *chain, const char *etype,
                       const char *emsg, broker_canvas *c) {
    size_t i;
    json_t *sig;
    char msg[512];
    snprintf(msg, sizeof msg, "the chain was aborted: %s failed (%s: %s)", m->id,
             etype ? etype : "TaskError", emsg ? emsg : "");
    json_array_foreach(chain, i, sig) {
        const char *id = json_string_value(json_object_get(sig, "id"));
        if (!id)
            continue;
        const char *task = json_string_value(json_object_get(sig, "task"));
        json_t *doc =
            json_pack("{s:s, s:s?, s:s, s:{s:s, s:s}, s:i}", "id", id, "task", task, "status",
                      "FAILURE", "error", "type", "ChainAborted", "message", msg, "retries", 0);
        char *json = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
        json_decref(doc);
        int rc = json ? broker_canvas_result(c, id, json) : -ENOMEM;
        free(json);
        if (rc)
            return rc;
    }
    return 0;
}

/* Member index of group gid finished: its record. */
static int member_record(const broker_msg *m, const json_t *of, broker_status status,
                         const json_t *value, const char *etype, const char *emsg,
                         broker_canvas *c) {
    const char *gid = json_string_value(json_object_get(of, "id"));
    json_int_t index = json_integer_value(json_object_get(of, "index"));
    char *json;
    if (status == BROKER_SUCCESS) {
        json = json_dumps(value ? value : json_null(), JSON_COMPACT | JSON_ENCODE_ANY);
    } else {
        json_t *doc = json_pack("{s:I, s:s, s:s, s:s}", "index", index, "id", m->id, "type",
                                etype ? etype : "TaskError", "message", emsg ? emsg : "");
        json = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
        json_decref(doc);
    }
    if (!json)
        return -ENOMEM;
    size_t len = strlen(json);
    char *record = malloc(len + 2);
    int rc = -ENOMEM;
    if (record) {
        record[0] = status == BROKER_SUCCESS ? 'S' : 'F';
        memcpy(record + 1, json, len + 1);
        rc = broker_canvas_member(c, gid, (size_t)index, record, len + 1);
    }
    free(record);
    free(json);
    return rc;
}

int wd_canvas_final(const broker_msg *m, const char *queue, const broker_limits *lim,
                    broker_status status, const json_t *value, const char *etype, const char *emsg,
                    broker_canvas *c) {
    int rc = 0;
    const json_t *chain = json_object_get(m->root, "chain");
    if (json_is_array(chain) && json_array_size(chain) > 0 && !wd_canvas_is_builtin(m->task))
        rc = status == BROKER_SUCCESS ? chain_next(m, chain, queue, lim, value, c)
                                      : chain_abort(m, chain, etype, emsg, c);
    const json_t *of = json_object_get(m->root, "member_of");
    if (rc == 0 && json_is_object(of) && json_is_string(json_object_get(of, "id")) &&
        json_is_integer(json_object_get(of, "index")) &&
        json_integer_value(json_object_get(of, "index")) >= 0)
        rc = member_record(m, of, status, value, etype, emsg, c);
    return rc;
}
