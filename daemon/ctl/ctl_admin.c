/*
 * ctl_admin.c - the commands that change pending work: `workerctl purge` and `revoke`.
 *
 * purge QUEUE deletes the queue's key (LLEN and DEL in one MULTI, so the count is
 * exactly what was deleted); it refuses to do so without --yes, saying how many messages
 * it would delete.
 *
 * revoke ID does what can be done from outside the workers today:
 *   - it marks the id revoked (broker_cmd_revoke_mark), for as long as results are kept.
 *     Workers do NOT check this mark yet; it is there for when they do (and for monitors);
 *   - it takes every pending copy of the message out of the queues: each queue (SCAN) is
 *     read in pages; at a raw element whose "id" is ID, that exact text is LREMed and the
 *     queue read again from its start (a removal shifts the pages). A worker may take a
 *     copy between the read and the LREM; then it runs;
 *   - when it removed a copy, it stores and publishes a REVOKED result, as a worker does
 *     for an expired message, so that waiters see the end;
 *   - it says which workers hold the id in flight: those keep running it.
 * --terminate (interrupt a running task, as Celery's) is refused as a usage error: no
 * worker can act on it yet, and a flag that does nothing must not look accepted.
 *
 * Runs on the main thread; blocking Redis commands. Reading every queue is O(pending
 * messages); fine for an administrator's command, not for a hot path.
 */
#include "ctl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker_cmds.h"
#include "broker_result.h"
#include "green_check.h"

/* ---- purge --------------------------------------------------------------------------- */

enum { O_YES = 1, O_TERMINATE };

static const ctl_opt purge_opts[] = {
    {"yes", 'y', CTL_NOARG, O_YES},
    {NULL, 0, CTL_NOARG, 0},
};

int ctl_cmd_purge(ctl *c, int argc, char **argv) {
    ctl_args a;
    int code = ctl_parse(c, argc, argv, purge_opts, &a);
    if (code != CTL_OK)
        return code;
    if (a.npos != 1)
        return ctl_usage(c, "purge needs exactly one queue name");
    const char *queue = a.pos[0], *why = broker_check_queue_name(queue);
    if (why != NULL)
        return ctl_usage(c, "%s", why);
    char key[BROKER_KEY_MAX];
    broker_key_queue(&c->keys, queue, key);
    redisContext *rc = ctl_broker(c);
    if (rc == NULL)
        return CTL_UNREACHABLE;
    redisReply *r;
    if (a.nopt == 0) {
        if ((r = ctl_cmd(rc, &code, "LLEN %s", key)) == NULL)
            return code;
        long long n = r->integer;
        freeReplyObject(r);
        return ctl_usage(c, "purge would delete %lld message%s from queue '%s': add --yes", n,
                         n == 1 ? "" : "s", queue);
    }
    /* MULTI/EXEC: the count and the deletion see the same list. */
    if ((r = ctl_cmd(rc, &code, "MULTI")) == NULL)
        return code;
    freeReplyObject(r);
    if ((r = ctl_cmd(rc, &code, "LLEN %s", key)) == NULL)
        return code;
    freeReplyObject(r);
    if ((r = ctl_cmd(rc, &code, "DEL %s", key)) == NULL)
        return code;
    freeReplyObject(r);
    if ((r = ctl_cmd(rc, &code, "EXEC")) == NULL)
        return code;
    long long n = r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
                          r->element[0]->type == REDIS_REPLY_INTEGER
                      ? r->element[0]->integer
                      : 0;
    freeReplyObject(r);
    if (c->json)
        ctl_print_json(json_pack("{s:s, s:I}", "queue", queue, "removed", (json_int_t)n));
    else
        printf("purged %lld message%s from queue '%s'\n", n, n == 1 ? "" : "s", queue);
    return CTL_OK;
}

/* ---- revoke -------------------------------------------------------------------------- */

static const ctl_opt revoke_opts[] = {
    {"terminate", 0, CTL_NOARG, O_TERMINATE},
    {NULL, 0, CTL_NOARG, 0},
};

/* Does the raw message carry this id? A substring test first: most messages do not. */
static bool has_id(const char *raw, size_t len, const char *id, char *task, size_t tasklen) {
    if (memmem(raw, len, id, strlen(id)) == NULL)
        return false;
    char got[BROKER_ID_MAX + 1];
    ctl_msg_fields(raw, len, got, sizeof got, task, tasklen);
    return strcmp(got, id) == 0;
}

/* Remove the pending copies of id from one queue; adds to *removed. Pages through the
 * list; at a match, LREMs that raw text (count 0: every identical copy) and starts over,
 * since the removal shifted the pages. So the list is read once per distinct matching
 * text (normally one), plus once to find there is none left. */
static int remove_from(redisContext *rc, const char *key, const char *id, long long *removed,
                       char *task, size_t tasklen) {
    const long page = 1000;
    int code = CTL_OK;
    for (long start = 0;;) {
        redisReply *r = ctl_cmd(rc, &code, "LRANGE %s %ld %ld", key, start, start + page - 1);
        if (r == NULL)
            return code;
        size_t n = r->type == REDIS_REPLY_ARRAY ? r->elements : 0;
        const redisReply *match = NULL;
        for (size_t i = 0; i < n && match == NULL; i++) {
            const redisReply *e = r->element[i];
            if (e->type == REDIS_REPLY_STRING && has_id(e->str, e->len, id, task, tasklen))
                match = e;
        }
        if (match != NULL) {
            const char *argv[] = {"LREM", key, "0", match->str};
            const size_t lens[] = {4, strlen(key), 1, match->len};
            redisReply *d = ctl_cmd_argv(rc, &code, 4, argv, lens);
            freeReplyObject(r);
            if (d == NULL)
                return code;
            *removed += d->integer;
            freeReplyObject(d);
            start = 0;
            continue;
        }
        freeReplyObject(r);
        if ((long)n < page)
            return CTL_OK;
        start += page;
    }
}

/* The workers whose in-flight hash holds id, as a JSON array of ids. */
static int held_by(ctl *c, redisContext *rc, const char *id, json_t *out) {
    char key[BROKER_KEY_MAX], task[256];
    int code = CTL_OK;
    broker_key_workers(&c->keys, key);
    redisReply *all = ctl_cmd(rc, &code, "HKEYS %s", key);
    if (all == NULL)
        return code;
    for (size_t i = 0; i < all->elements; i++) {
        if (broker_key_inflight(&c->keys, all->element[i]->str, key) < 0)
            continue;
        redisReply *r = ctl_cmd(rc, &code, "HVALS %s", key);
        if (r == NULL)
            break;
        for (size_t j = 0; j < r->elements; j++) {
            const redisReply *v = r->element[j];
            const char *queue, *raw;
            size_t qlen, rawlen;
            broker_inflight_split(v->str, v->len, &queue, &qlen, &raw, &rawlen);
            if (has_id(raw, rawlen, id, task, sizeof task)) {
                json_array_append_new(out, json_string(all->element[i]->str));
                break;
            }
        }
        freeReplyObject(r);
    }
    freeReplyObject(all);
    return code;
}

/* Store and publish the REVOKED result of a message taken out of its queue. */
static int write_revoked(ctl *c, const char *id, const char *task) {
    redisContext *rc = ctl_results(c);
    if (rc == NULL)
        return CTL_UNREACHABLE;
    double now = green_wallclock();
    broker_result res = {.id = id,
                         .task = *task ? task : NULL,
                         .status = BROKER_REVOKED,
                         .error_type = "TaskRevokedError",
                         .error_message = "revoked by workerctl before it ran",
                         .finished_at = now};
    char *doc = broker_result_encode(&res);
    if (doc == NULL)
        return ctl_error(CTL_FAIL, "out of memory");
    broker_batch b = {0};
    redisReply *r[2] = {NULL, NULL};
    broker_cmd_result_store(&b, &c->keys, id, doc, strlen(doc), c->result_expires);
    int code = ctl_send(rc, &b, r);
    for (size_t i = 0; i < b.n && code == CTL_OK; i++)
        if (r[i]->type == REDIS_REPLY_ERROR) {
            char *e = ctl_escape(r[i]->str, r[i]->len);
            code = ctl_error(CTL_FAIL, "Redis error: %s", e ? e : "?");
            free(e);
        }
    for (size_t i = 0; i < b.n && i < 2; i++)
        if (r[i] != NULL)
            freeReplyObject(r[i]);
    broker_batch_clear(&b);
    free(doc);
    return code;
}

int ctl_cmd_revoke(ctl *c, int argc, char **argv) {
    ctl_args a;
    int code = ctl_parse(c, argc, argv, revoke_opts, &a);
    if (code != CTL_OK)
        return code;
    if (a.npos != 1)
        return ctl_usage(c, "revoke needs exactly one task id");
    const char *id = a.pos[0], *why = broker_check_task_id(id);
    if (why != NULL)
        return ctl_usage(c, "%s", why);
    if (a.nopt > 0)
        return ctl_usage(c, "--terminate is not supported yet: workers cannot interrupt a "
                            "running task (without it, revoke removes a pending message)");
    redisContext *rc = ctl_broker(c);
    if (rc == NULL)
        return CTL_UNREACHABLE;

    broker_batch b = {0};
    broker_cmd_revoke_mark(&b, &c->keys, id, c->result_expires);
    redisReply *r = ctl_send_one(rc, &b, &code);
    broker_batch_clear(&b);
    if (r == NULL)
        return code;
    freeReplyObject(r);

    char **queues = ctl_queue_names(c, rc, &code);
    if (queues == NULL)
        return code;
    long long removed = 0;
    char task[256] = "";
    json_t *from = json_array(), *holders = json_array();
    for (size_t i = 0; queues[i] != NULL && code == CTL_OK; i++) {
        long long before = removed;
        char key[BROKER_KEY_MAX];
        broker_key_queue(&c->keys, queues[i], key);
        code = remove_from(rc, key, id, &removed, task, sizeof task);
        if (removed > before)
            json_array_append_new(from, json_string(queues[i]));
    }
    ctl_strv_free(queues);
    if (code == CTL_OK && removed > 0)
        code = write_revoked(c, id, task);
    if (code == CTL_OK)
        code = held_by(c, rc, id, holders);
    if (code != CTL_OK)
        goto out;

    if (c->json) {
        ctl_print_json(json_pack("{s:s, s:b, s:I, s:O, s:b, s:O, s:b}", "id", id, "revoked", 1,
                                 "removed", (json_int_t)removed, "queues", from, "result",
                                 removed > 0, "running_on", holders, "terminated", 0));
    } else {
        printf("revoked %s\n", id);
        if (removed > 0)
            printf("removed %lld pending message%s; stored a REVOKED result\n", removed,
                   removed == 1 ? "" : "s");
        else
            printf("no pending message with this id\n");
        size_t i;
        json_t *w;
        json_array_foreach(holders, i, w) {
            fputs("held by worker ", stdout);
            ctl_put_escaped(json_string_value(w), json_string_length(w));
            puts(": it keeps running (workers do not check revocations yet)");
        }
    }
out:
    json_decref(from);
    json_decref(holders);
    return code;
}
