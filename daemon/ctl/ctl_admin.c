/*
 * ctl_admin.c - the commands that change pending work: `workerctl purge` and `revoke`.
 *
 * purge QUEUE deletes the queue's key (LLEN and DEL in one MULTI, so the count is
 * exactly what was deleted); it refuses to do so without --yes, saying how many messages
 * it would delete.
 *
 * revoke ID... revokes ids and tidies up what it can reach (docs/design.md
 * "Revocations"):
 *   - it revokes every id in one round trip, for as long as results are kept
 *     (broker_cmd_revoke: the mark <prefix>:revoked:<id>, the set <prefix>:revoked, an
 *     entry on the stream <prefix>:control that every worker reads). From then on a worker
 *     that takes a message with the id does not run it: it stores a REVOKED result
 *     ("revoked") and acks it;
 *   - with --terminate the mark says "terminate" and so does the entry: whichever worker
 *     runs the task kills it, and its result is REVOKED ("terminated");
 *   - it takes every pending copy of the messages out of the queues, so that their
 *     waiters see the end now rather than when a worker reaches them: each queue (SCAN)
 *     is read in pages; at a raw element whose "id" is one of the ids, that exact text is
 *     LREMed and the queue read again from its start (a removal shifts the pages). A
 *     worker may take a copy between the read and the LREM; it skips it then;
 *   - when it removed a copy, it stores and publishes the same REVOKED result a worker
 *     would have stored;
 *   - it says which workers hold each id in flight: with --terminate those about to
 *     stop it (looked up before the entry is written, since it may be acted on at once),
 *     otherwise those that run it on (looked up after).
 *
 * Runs on the main thread; blocking Redis commands. Reading every queue is O(pending
 * messages); fine for an administrator's command, not for a hot path.
 */
#include "ctl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker_cmds.h"
#include "broker_control.h"
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
    /* MULTI/EXEC: the count and the deletion see the same list (broker_cmd_purge). */
    broker_batch b = {0};
    redisReply *replies[4] = {NULL};
    broker_cmd_purge(&b, &c->keys, queue);
    code = ctl_send(rc, &b, replies);
    broker_batch_clear(&b);
    if (code != CTL_OK)
        return code;
    long long n = broker_reply_purge(replies[3]);
    for (size_t i = 0; i < 4; i++)
        freeReplyObject(replies[i]);
    if (n < 0)
        return ctl_error(CTL_FAIL, "purge: unexpected reply from Redis");
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

/* What revoke did for one id. */
struct revoke {
    const char *id;    /* borrowed from argv */
    long long removed; /* pending copies taken out of the queues */
    char task[256];    /* the task name of a removed copy, for its result */
    json_t *queues;    /* the queues they were taken from */
    json_t *holders;   /* the workers holding the id in flight */
};

/* Which of rv[0..n) the raw message carries as its id, or -1. A substring test first:
 * most messages carry none of them. */
static int which_id(const char *raw, size_t len, const struct revoke *rv, int n, char *task,
                    size_t tasklen) {
    bool maybe = false;
    for (int i = 0; i < n && !maybe; i++)
        maybe = memmem(raw, len, rv[i].id, strlen(rv[i].id)) != NULL;
    if (!maybe)
        return -1;
    char got[BROKER_ID_MAX + 1];
    ctl_msg_fields(raw, len, got, sizeof got, task, tasklen);
    for (int i = 0; i < n; i++)
        if (strcmp(got, rv[i].id) == 0)
            return i;
    return -1;
}

/* Remove the pending copies of the ids from one queue. Pages through the list; at a
 * match, LREMs that raw text (count 0: every identical copy) and starts over, since the
 * removal shifted the pages. So the list is read once per distinct matching text
 * (normally one per id found), plus once to find there is none left. */
static int remove_from(redisContext *rc, const char *key, const char *queue, struct revoke *rv,
                       int n) {
    const long page = 1000;
    int code = CTL_OK;
    for (long start = 0;;) {
        redisReply *r = ctl_cmd(rc, &code, "LRANGE %s %ld %ld", key, start, start + page - 1);
        if (r == NULL)
            return code;
        size_t len = r->type == REDIS_REPLY_ARRAY ? r->elements : 0;
        const redisReply *match = NULL;
        int which = -1;
        char task[256];
        for (size_t i = 0; i < len && match == NULL; i++) {
            const redisReply *e = r->element[i];
            if (e->type == REDIS_REPLY_STRING &&
                (which = which_id(e->str, e->len, rv, n, task, sizeof task)) >= 0)
                match = e;
        }
        if (match != NULL) {
            const char *argv[] = {"LREM", key, "0", match->str};
            const size_t lens[] = {4, strlen(key), 1, match->len};
            redisReply *d = ctl_cmd_argv(rc, &code, 4, argv, lens);
            freeReplyObject(r);
            if (d == NULL)
                return code;
            if (d->integer > 0) {
                struct revoke *v = &rv[which];
                if (v->removed == 0)
                    snprintf(v->task, sizeof v->task, "%s", task);
                if (json_array_size(v->queues) == 0 ||
                    strcmp(json_string_value(
                               json_array_get(v->queues, json_array_size(v->queues) - 1)),
                           queue) != 0)
                    json_array_append_new(v->queues, json_string(queue));
                v->removed += d->integer;
            }
            freeReplyObject(d);
            start = 0;
            continue;
        }
        freeReplyObject(r);
        if ((long)len < page)
            return CTL_OK;
        start += page;
    }
}

/* Note in rv[i].holders the workers whose in-flight hash holds rv[i].id. */
static int held_by(ctl *c, redisContext *rc, struct revoke *rv, int n) {
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
        bool seen[CTL_MAX_ITEMS] = {false};
        for (size_t j = 0; j < r->elements; j++) {
            const redisReply *v = r->element[j];
            const char *queue, *raw;
            size_t qlen, rawlen;
            broker_inflight_split(v->str, v->len, &queue, &qlen, &raw, &rawlen);
            int k = which_id(raw, rawlen, rv, n, task, sizeof task);
            if (k >= 0 && !seen[k]) {
                seen[k] = true;
                json_array_append_new(rv[k].holders, json_string(all->element[i]->str));
            }
        }
        freeReplyObject(r);
    }
    freeReplyObject(all);
    return code;
}

/* Store and publish the REVOKED result of a message taken out of its queue: the result a
 * worker stores when it takes a revoked message. */
static int write_revoked(ctl *c, const char *id, const char *task) {
    redisContext *rc = ctl_results(c);
    if (rc == NULL)
        return CTL_UNREACHABLE;
    double now = green_wallclock();
    broker_result res = {.id = id,
                         .task = *task ? task : NULL,
                         .status = BROKER_REVOKED,
                         .error_type = "TaskRevokedError",
                         .error_message = "revoked",
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

/* Revoke every id (broker_cmd_revoke: the mark, the revoked set, the stream entry every
 * worker reads), in one round trip. */
static int mark(ctl *c, redisContext *rc, const struct revoke *rv, int n, bool terminate) {
    broker_batch b = {0};
    double now = green_wallclock();
    for (int i = 0; i < n; i++)
        broker_cmd_revoke(&b, &c->keys, rv[i].id, terminate, c->result_expires, now);
    redisReply **r = calloc(b.n ? b.n : 1, sizeof *r);
    int code = r ? ctl_send(rc, &b, r) : ctl_error(CTL_FAIL, "out of memory");
    for (size_t i = 0; r && i < b.n && code == CTL_OK; i++)
        if (r[i]->type == REDIS_REPLY_ERROR)
            code = ctl_error(CTL_FAIL, "Redis error: %s", r[i]->str);
    for (size_t i = 0; r && i < b.n; i++)
        if (r[i] != NULL)
            freeReplyObject(r[i]);
    free(r);
    broker_batch_clear(&b);
    return code;
}

static void print_revoke(const struct revoke *v, bool terminate) {
    printf("revoked %s\n", v->id);
    if (v->removed > 0)
        printf("removed %lld pending message%s; stored a REVOKED result\n", v->removed,
               v->removed == 1 ? "" : "s");
    else
        printf("no pending message with this id\n");
    size_t i;
    json_t *w;
    json_array_foreach(v->holders, i, w) {
        fputs("held by worker ", stdout);
        ctl_put_escaped(json_string_value(w), json_string_length(w));
        puts(terminate ? ": it terminates the task"
                       : ": a running task runs on (--terminate stops it)");
    }
}

static json_t *revoke_json(const struct revoke *v, bool terminate) {
    return json_pack("{s:s, s:b, s:I, s:O, s:b, s:O, s:b}", "id", v->id, "revoked", 1, "removed",
                     (json_int_t)v->removed, "queues", v->queues, "result", v->removed > 0,
                     "running_on", v->holders, "terminated", terminate);
}

int ctl_cmd_revoke(ctl *c, int argc, char **argv) {
    ctl_args a;
    int code = ctl_parse(c, argc, argv, revoke_opts, &a);
    if (code != CTL_OK)
        return code;
    if (a.npos < 1)
        return ctl_usage(c, "revoke needs at least one task id");
    for (int i = 0; i < a.npos; i++) {
        const char *why = broker_check_task_id(a.pos[i]);
        if (why != NULL)
            return ctl_usage(c, "%s", why);
    }
    bool terminate = a.nopt > 0;
    redisContext *rc = ctl_broker(c);
    if (rc == NULL)
        return CTL_UNREACHABLE;

    int n = a.npos;
    struct revoke *rv = calloc((size_t)n, sizeof *rv);
    if (rv == NULL)
        return ctl_error(CTL_FAIL, "out of memory");
    for (int i = 0; i < n; i++) {
        rv[i].id = a.pos[i];
        rv[i].queues = json_array();
        rv[i].holders = json_array();
    }
    /* Who holds the ids: with --terminate, the workers about to stop them, looked up
     * first (they may be done before this command is); otherwise the workers that run
     * them on, looked up last (a worker that takes one after the mark skips it). */
    if (terminate && (code = held_by(c, rc, rv, n)) != CTL_OK)
        goto out;
    if ((code = mark(c, rc, rv, n, terminate)) != CTL_OK)
        goto out;

    char **queues = ctl_queue_names(c, rc, &code);
    if (queues == NULL)
        goto out;
    for (size_t i = 0; queues[i] != NULL && code == CTL_OK; i++) {
        char key[BROKER_KEY_MAX];
        broker_key_queue(&c->keys, queues[i], key);
        code = remove_from(rc, key, queues[i], rv, n);
    }
    ctl_strv_free(queues);
    for (int i = 0; i < n && code == CTL_OK; i++)
        if (rv[i].removed > 0)
            code = write_revoked(c, rv[i].id, rv[i].task);
    if (code == CTL_OK && !terminate)
        code = held_by(c, rc, rv, n);
    if (code != CTL_OK)
        goto out;

    if (c->json && n == 1) {
        ctl_print_json(revoke_json(&rv[0], terminate));
    } else if (c->json) {
        json_t *all = json_array();
        for (int i = 0; i < n; i++)
            json_array_append_new(all, revoke_json(&rv[i], terminate));
        ctl_print_json(all);
    } else {
        for (int i = 0; i < n; i++)
            print_revoke(&rv[i], terminate);
    }
out:
    for (int i = 0; i < n; i++) {
        json_decref(rv[i].queues);
        json_decref(rv[i].holders);
    }
    free(rv);
    return code;
}
