/*
 * ctl_dead.c - `workerctl dead list | requeue | drop`: the dead-letter list.
 *
 * Entries are JSON documents (broker_result.h): {message, truncated, message_bytes, reason,
 * worker, time, id, queue}, LPUSHed by workers, so index 0 is the newest; the indices are
 * the ones `dead list` shows (LRANGE's).
 *
 * requeue puts an entry's original message back on its queue ("queue", else "default") and
 * removes the entry, both in one Lua script (broker/dead_requeue.lua): two workerctls
 * requeueing the same entry at once requeue it once. broker_dead_parse reads the entry:
 * a message that was cut when it was dead-lettered cannot be requeued, and a poison pill's
 * redelivery count starts over. drop removes entries by their exact text.
 *
 * Indices are resolved to entries before anything is changed (a removal shifts the indices
 * after it), and an index with no entry fails the whole command before it does anything.
 *
 * Runs on the main thread; blocking Redis commands.
 */
#include "ctl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker_cmds.h"
#include "broker_result.h"

enum { O_LIMIT = 1, O_ALL };

static const ctl_opt list_opts[] = {
    {"limit", 'n', CTL_ARG, O_LIMIT},
    {NULL, 0, CTL_NOARG, 0},
};

static const ctl_opt pick_opts[] = {
    {"all", 'a', CTL_NOARG, O_ALL},
    {NULL, 0, CTL_NOARG, 0},
};

/* ---- list ---------------------------------------------------------------------------- */

static int dead_list(ctl *c, int argc, char **argv) {
    ctl_args a;
    char key[BROKER_KEY_MAX];
    redisContext *rc;
    int code = ctl_parse(c, argc, argv, list_opts, &a);
    if (code != CTL_OK)
        return code;
    broker_key_dead(&c->keys, key);
    long limit = 50;
    if (a.nopt > 0 && (ctl_parse_index(a.opt[a.nopt - 1].value, &limit) < 0 || limit < 1))
        return ctl_usage(c, "--limit: '%s' is not a number above 0", a.opt[a.nopt - 1].value);
    if (a.npos > 0)
        return ctl_usage(c, "unexpected argument '%s'", a.pos[0]);
    if ((rc = ctl_broker(c)) == NULL)
        return CTL_UNREACHABLE;
    if (!c->json)
        ctl_clock_sync(rc); /* AGE */
    redisReply *total = ctl_cmd(rc, &code, "LLEN %s", key);
    if (total == NULL)
        return code;
    redisReply *r = ctl_cmd(rc, &code, "LRANGE %s 0 %ld", key, limit - 1);
    if (r == NULL) {
        freeReplyObject(total);
        return code;
    }
    json_t *list = json_array();
    for (size_t i = 0; i < r->elements; i++) {
        json_t *e = json_loadb(r->element[i]->str, r->element[i]->len, 0, NULL);
        if (!json_is_object(e)) { /* a hand-pushed entry: show its bytes */
            json_decref(e);
            e = json_object();
            if (e == NULL || ctl_json_set_raw(e, r->element[i]->str, r->element[i]->len) != 0) {
                json_decref(e);
                json_decref(list);
                freeReplyObject(r);
                freeReplyObject(total);
                return ctl_error(CTL_FAIL, "out of memory");
            }
        }
        json_object_set_new(e, "index", json_integer((json_int_t)i));
        json_array_append_new(list, e);
    }
    if (c->json) {
        ctl_print_json(json_pack("{s:I, s:o}", "total", (json_int_t)total->integer, "entries",
                                 json_incref(list)));
    } else if (json_array_size(list) == 0) {
        printf("no dead letters\n");
    } else {
        ctl_table t;
        ctl_table_init(&t, 5, "INDEX", "AGE", "QUEUE", "ID", "REASON");
        size_t i;
        json_t *e;
        json_array_foreach(list, i, e) {
            char index[32], age[32];
            snprintf(index, sizeof index, "%zu", i);
            json_t *time = json_object_get(e, "time");
            ctl_table_row(&t, index,
                          time ? ctl_age(json_number_value(time), age, sizeof age) : NULL,
                          json_string_value(json_object_get(e, "queue")),
                          json_string_value(json_object_get(e, "id")),
                          json_string_value(json_object_get(e, "reason")));
        }
        ctl_table_print(&t);
        if (total->integer > (long long)r->elements)
            printf("(%lld more; --limit N shows more)\n", total->integer - (long long)r->elements);
    }
    json_decref(list);
    freeReplyObject(r);
    freeReplyObject(total);
    return CTL_OK;
}

/* ---- choosing entries ---------------------------------------------------------------- */

/* The entries named by --all or by indices: a reply holding them (an array, oldest LAST
 * for --all; in the order given otherwise), with the indices in idx. */
typedef struct picked {
    redisReply *entries[CTL_MAX_ITEMS]; /* one reply per entry (LINDEX), or */
    redisReply *all;                    /* the whole list (LRANGE 0 -1) */
    long idx[CTL_MAX_ITEMS];
    size_t n;
} picked;

static void picked_free(picked *p) {
    for (size_t i = 0; i < CTL_MAX_ITEMS; i++)
        if (p->entries[i] != NULL)
            freeReplyObject(p->entries[i]);
    if (p->all != NULL)
        freeReplyObject(p->all);
}

static const redisReply *picked_entry(const picked *p, size_t i) {
    return p->all ? p->all->element[i] : p->entries[i];
}

/* Parse the subcommand's words and fetch the entries it names; key receives the list's
 * name (the prefix is known only once the options are parsed). */
static int pick(ctl *c, redisContext **rcp, char *key, int argc, char **argv, picked *p,
                bool *all) {
    ctl_args a;
    memset(p, 0, sizeof *p);
    int code = ctl_parse(c, argc, argv, pick_opts, &a);
    if (code != CTL_OK)
        return code;
    broker_key_dead(&c->keys, key);
    *all = a.nopt > 0;
    if (*all && a.npos > 0)
        return ctl_usage(c, "give --all or indices, not both");
    if (!*all && a.npos == 0)
        return ctl_usage(c, "%s needs --all or the indices of entries (see 'workerctl dead list')",
                         argv[0]);
    for (int i = 0; i < a.npos; i++) {
        if (ctl_parse_index(a.pos[i], &p->idx[p->n]) < 0)
            return ctl_usage(c, "'%s' is not an index (0 is the newest entry)", a.pos[i]);
        bool dup = false;
        for (size_t j = 0; j < p->n; j++)
            dup |= p->idx[j] == p->idx[p->n];
        p->n += !dup;
    }
    redisContext *rc = *rcp = ctl_broker(c);
    if (rc == NULL)
        return CTL_UNREACHABLE;
    if (*all) {
        if ((p->all = ctl_cmd(rc, &code, "LRANGE %s 0 -1", key)) == NULL)
            return code;
        p->n = p->all->elements;
        for (size_t i = 0; i < p->n && i < CTL_MAX_ITEMS; i++)
            p->idx[i] = (long)i;
        return CTL_OK;
    }
    for (size_t i = 0; i < p->n; i++) {
        redisReply *r = ctl_cmd(rc, &code, "LINDEX %s %ld", key, p->idx[i]);
        if (r == NULL)
            return code;
        p->entries[i] = r;
        if (r->type != REDIS_REPLY_STRING)
            return ctl_error(CTL_FAIL, "no dead letter at index %ld; nothing was changed",
                             p->idx[i]);
    }
    return CTL_OK;
}

/* ---- requeue ------------------------------------------------------------------------- */

static int dead_requeue(ctl *c, int argc, char **argv) {
    char key[BROKER_KEY_MAX];
    picked p;
    bool all;
    redisContext *rc = NULL;
    int code = pick(c, &rc, key, argc, argv, &p, &all);
    json_t *done = json_array(), *skipped = json_array();
    if (code != CTL_OK)
        goto out;
    for (size_t k = 0; k < p.n; k++) {
        /* --all goes oldest first, so that the queue keeps the entries' order. */
        size_t i = all ? p.n - 1 - k : k;
        const redisReply *e = picked_entry(&p, i);
        long index = all ? (long)i : p.idx[i];
        broker_dead_entry d;
        const char *why = broker_dead_parse(e->str, e->len, &d);
        const char *id = d.id, *queue = d.queue;
        if (why == NULL) {
            broker_batch b = {0};
            broker_cmd_dead_requeue(&b, &c->keys, e->str, e->len, queue, d.message, d.message_len);
            redisReply *r = ctl_send_one(rc, &b, &code);
            broker_batch_clear(&b);
            broker_dead_entry_clear(&d);
            long long requeued = 0;
            if (r == NULL)
                goto out;
            if (broker_reply_integer(r, &requeued) < 0 || requeued != 1)
                why = "the entry was removed meanwhile";
            freeReplyObject(r);
        }
        if (why == NULL) {
            json_array_append_new(done, json_pack("{s:I, s:s, s:s}", "index", (json_int_t)index,
                                                  "id", id, "queue", queue));
            if (!c->json) {
                fputs("requeued ", stdout);
                ctl_put_escaped(*id ? id : "(no id)", strlen(*id ? id : "(no id)"));
                fputs(" to queue '", stdout);
                ctl_put_escaped(queue, strlen(queue));
                puts("'");
            }
        } else {
            json_array_append_new(skipped, json_pack("{s:I, s:s, s:s}", "index", (json_int_t)index,
                                                     "id", id, "reason", why));
            if (!c->json)
                fprintf(stderr, "workerctl: dead letter %ld not requeued: %s\n", index, why);
        }
    }
    if (c->json)
        ctl_print_json(json_pack("{s:O, s:O}", "requeued", done, "skipped", skipped));
    else if (p.n == 0)
        printf("no dead letters\n");
    code = json_array_size(skipped) > 0 ? CTL_FAIL : CTL_OK;
out:
    json_decref(done);
    json_decref(skipped);
    picked_free(&p);
    return code;
}

/* ---- drop ---------------------------------------------------------------------------- */

static int dead_drop(ctl *c, int argc, char **argv) {
    char key[BROKER_KEY_MAX];
    picked p;
    bool all;
    redisContext *rc = NULL;
    int code = pick(c, &rc, key, argc, argv, &p, &all);
    long long dropped = 0;
    if (code != CTL_OK)
        goto out;
    for (size_t i = 0; i < p.n; i++) {
        const redisReply *e = picked_entry(&p, i);
        broker_batch b = {0};
        broker_cmd_dead_drop(&b, &c->keys, e->str, e->len);
        redisReply *r = ctl_send_one(rc, &b, &code);
        broker_batch_clear(&b);
        long long n = 0;
        if (r == NULL)
            goto out;
        if (broker_reply_integer(r, &n) == 0)
            dropped += n;
        freeReplyObject(r);
    }
    if (c->json)
        ctl_print_json(json_pack("{s:I}", "dropped", (json_int_t)dropped));
    else
        printf("dropped %lld dead letter%s\n", dropped, dropped == 1 ? "" : "s");
out:
    picked_free(&p);
    return code;
}

int ctl_cmd_dead(ctl *c, int argc, char **argv) {
    if (argc < 2)
        return ctl_usage(c, "dead needs a subcommand: list, requeue or drop");
    const char *sub = argv[1];
    if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0) {
        fputs(c->command->help, stdout);
        return CTL_OK;
    }
    if (strcmp(sub, "list") == 0)
        return dead_list(c, argc - 1, argv + 1);
    if (strcmp(sub, "requeue") == 0)
        return dead_requeue(c, argc - 1, argv + 1);
    if (strcmp(sub, "drop") == 0)
        return dead_drop(c, argc - 1, argv + 1);
    return ctl_usage(c, "unknown dead subcommand '%s' (list, requeue or drop)", sub);
}
