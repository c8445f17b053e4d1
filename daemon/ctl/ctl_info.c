/*
 * ctl_info.c - the read-only commands: `workerctl workers`, `inspect`, `queues`, `stats`.
 *
 * What they read (broker_keys.h names each key and the shape of its value): the workers
 * hash (every worker that may hold messages: a dead one stays until another recovers
 * it), each one's heartbeat (alive while it exists) and in-flight hash, the queues (found
 * with SCAN, never KEYS) and the dead-letter list.
 *
 * Nothing here is a snapshot: each key is read on its own while workers keep working, so
 * totals may be off by the messages that moved meanwhile. An empty queue has no key in
 * Redis; the queues that workers consume are listed anyway, with 0 pending. Messages a
 * blocking fetch just dropped in a landing list (in flight for a few milliseconds) are not
 * shown.
 *
 * Runs on the main thread; blocking Redis commands.
 */
#include "ctl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker_cmds.h"

/* One entry of the workers hash with what its other keys say. */
typedef struct worker {
    char *wid;
    char *queues;   /* the registration's comma list */
    json_t *beat;   /* the heartbeat hash as an object of strings; empty when dead */
    long long held; /* entries in its in-flight hash */
} worker;

static void workers_free(worker *w, size_t n) {
    for (size_t i = 0; w != NULL && i < n; i++) {
        free(w[i].wid);
        free(w[i].queues);
        json_decref(w[i].beat);
    }
    free(w);
}

static int cmp_worker(const void *a, const void *b) {
    return strcmp(((const worker *)a)->wid, ((const worker *)b)->wid);
}

/* Every registered worker, sorted by id. Returns CTL_OK or a failure code (printed). */
static int load_workers(ctl *c, redisContext *rc, worker **out, size_t *nout) {
    char key[BROKER_KEY_MAX];
    int code = CTL_OK;
    *out = NULL;
    *nout = 0;
    broker_key_workers(&c->keys, key);
    redisReply *all = ctl_cmd(rc, &code, "HGETALL %s", key);
    if (all == NULL)
        return code;
    size_t n = all->elements / 2;
    worker *w = calloc(n + 1, sizeof *w);
    if (w == NULL) {
        freeReplyObject(all);
        return ctl_error(CTL_FAIL, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        w[i].wid = strdup(all->element[2 * i]->str);
        w[i].queues = strdup(all->element[2 * i + 1]->str);
        w[i].beat = json_object();
        if (!w[i].wid || !w[i].queues || !w[i].beat) {
            code = ctl_error(CTL_FAIL, "out of memory");
            goto fail;
        }
        if (broker_key_worker(&c->keys, w[i].wid, key) < 0)
            continue; /* a hand-made entry with a bad id: no keys to read */
        redisReply *r = ctl_cmd(rc, &code, "HGETALL %s", key);
        if (r == NULL)
            goto fail;
        for (size_t j = 0; j + 1 < r->elements; j += 2)
            json_object_set_new(w[i].beat, r->element[j]->str,
                                json_stringn(r->element[j + 1]->str, r->element[j + 1]->len));
        freeReplyObject(r);
        broker_key_inflight(&c->keys, w[i].wid, key);
        if ((r = ctl_cmd(rc, &code, "HLEN %s", key)) == NULL)
            goto fail;
        w[i].held = r->integer;
        freeReplyObject(r);
    }
    freeReplyObject(all);
    qsort(w, n, sizeof *w, cmp_worker);
    *out = w;
    *nout = n;
    return CTL_OK;
fail:
    freeReplyObject(all);
    workers_free(w, n);
    return code;
}

static bool alive(const worker *w) {
    return json_object_size(w->beat) > 0;
}

static const char *beat(const worker *w, const char *field) {
    return json_string_value(json_object_get(w->beat, field));
}

/* A heartbeat field as JSON (null when absent). */
static json_t *beat_string(const worker *w, const char *field) {
    const char *s = beat(w, field);
    return s ? json_string(s) : json_null();
}

/* A number from a heartbeat field, as JSON (null when absent or not a number). */
static json_t *beat_number(const worker *w, const char *field, bool integer) {
    const char *s = beat(w, field);
    char *end;
    double v = s ? strtod(s, &end) : 0;
    if (s == NULL || end == s || *end != '\0')
        return json_null();
    return integer ? json_integer((json_int_t)v) : json_real(v);
}

/* ---- workers ------------------------------------------------------------------------- */

/* The start of `workers` and `inspect`: no arguments but options, then the broker and
 * every registered worker. */
static int begin_workers(ctl *c, int argc, char **argv, redisContext **rc, worker **w, size_t *n) {
    ctl_args a;
    int code = ctl_parse(c, argc, argv, NULL, &a);
    if (code != CTL_OK)
        return code;
    if (a.npos > 0)
        return ctl_usage(c, "unexpected argument '%s'", a.pos[0]);
    if ((*rc = ctl_broker(c)) == NULL)
        return CTL_UNREACHABLE;
    if (!c->json)
        ctl_clock_sync(*rc); /* UP */
    return load_workers(c, *rc, w, n);
}

int ctl_cmd_workers(ctl *c, int argc, char **argv) {
    redisContext *rc;
    worker *w;
    size_t n;
    int code = begin_workers(c, argc, argv, &rc, &w, &n);
    if (code != CTL_OK)
        return code;
    if (c->json) {
        json_t *list = json_array();
        for (size_t i = 0; i < n; i++) {
            json_t *queues = json_array();
            char *cursor = w[i].queues;
            for (char *q; (q = broker_queue_list_next(&cursor)) != NULL;)
                json_array_append_new(queues, json_string(q));
            json_t *o = json_pack("{s:s, s:b, s:o, s:I}", "id", w[i].wid, "alive", alive(&w[i]),
                                  "queues", queues, "held", (json_int_t)w[i].held);
            json_object_set_new(o, "host", beat_string(&w[i], "host"));
            json_object_set_new(o, "pid", beat_number(&w[i], "pid", true));
            json_object_set_new(o, "concurrency", beat_number(&w[i], "concurrency", true));
            json_object_set_new(o, "pool", beat_string(&w[i], "pool"));
            json_object_set_new(o, "started", beat_number(&w[i], "started", false));
            json_object_set_new(o, "version", beat_string(&w[i], "version"));
            json_object_set_new(o, "broker", beat_string(&w[i], "broker"));
            json_array_append_new(list, o);
        }
        ctl_print_json(list);
    } else if (n == 0) {
        printf("no workers\n");
    } else {
        ctl_table t;
        ctl_table_init(&t, 8, "WORKER", "STATE", "POOL", "CONC", "HELD", "UP", "VERSION", "QUEUES");
        for (size_t i = 0; i < n; i++) {
            char held[32], age[32];
            snprintf(held, sizeof held, "%lld", w[i].held);
            const char *started = beat(&w[i], "started");
            ctl_table_row(&t, w[i].wid, alive(&w[i]) ? "alive" : "dead", beat(&w[i], "pool"),
                          beat(&w[i], "concurrency"), held,
                          started ? ctl_age(atof(started), age, sizeof age) : NULL,
                          beat(&w[i], "version"), w[i].queues);
        }
        ctl_table_print(&t);
    }
    workers_free(w, n);
    return CTL_OK;
}

/* ---- inspect ------------------------------------------------------------------------- */

static int cmp_tag(const void *a, const void *b) {
    const json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
    json_int_t p = json_integer_value(json_object_get(x, "tag"));
    json_int_t q = json_integer_value(json_object_get(y, "tag"));
    return (p > q) - (p < q);
}

/* Append the in-flight entries of worker w to list, in delivery order. */
static int inspect_one(ctl *c, redisContext *rc, const worker *w, json_t *list) {
    char key[BROKER_KEY_MAX];
    int code = CTL_OK;
    if (broker_key_inflight(&c->keys, w->wid, key) < 0)
        return CTL_OK;
    redisReply *r = ctl_cmd(rc, &code, "HGETALL %s", key);
    if (r == NULL)
        return code;
    size_t n = r->elements / 2;
    json_t **items = calloc(n + 1, sizeof *items);
    for (size_t i = 0; items != NULL && i < n; i++) {
        const redisReply *v = r->element[2 * i + 1];
        const char *queue, *raw;
        size_t qlen, rawlen;
        broker_inflight_split(v->str, v->len, &queue, &qlen, &raw, &rawlen);
        char id[BROKER_ID_MAX + 1], task[256];
        ctl_msg_fields(raw, rawlen, id, sizeof id, task, sizeof task);
        items[i] = json_pack("{s:s, s:b, s:I, s:s%, s:s, s:s}", "worker", w->wid, "alive", alive(w),
                             "tag", (json_int_t)atoll(r->element[2 * i]->str), "queue", queue, qlen,
                             "id", id, "task", task);
    }
    if (items != NULL) {
        qsort(items, n, sizeof *items, cmp_tag);
        for (size_t i = 0; i < n; i++)
            json_array_append_new(list, items[i]);
    }
    free(items);
    freeReplyObject(r);
    return items ? CTL_OK : ctl_error(CTL_FAIL, "out of memory");
}

int ctl_cmd_inspect(ctl *c, int argc, char **argv) {
    redisContext *rc;
    worker *w;
    size_t n;
    int code = begin_workers(c, argc, argv, &rc, &w, &n);
    if (code != CTL_OK)
        return code;
    json_t *list = json_array();
    for (size_t i = 0; i < n && code == CTL_OK; i++)
        code = inspect_one(c, rc, &w[i], list);
    workers_free(w, n);
    if (code != CTL_OK) {
        json_decref(list);
        return code;
    }
    if (c->json) {
        ctl_print_json(list);
        return CTL_OK;
    }
    if (json_array_size(list) == 0) {
        printf("no messages in flight\n");
    } else {
        ctl_table t;
        ctl_table_init(&t, 5, "WORKER", "TAG", "QUEUE", "ID", "TASK");
        size_t i;
        json_t *e;
        json_array_foreach(list, i, e) {
            char tag[32];
            snprintf(tag, sizeof tag, "%lld",
                     (long long)json_integer_value(json_object_get(e, "tag")));
            const char *wid = json_string_value(json_object_get(e, "worker"));
            char shown[BROKER_WORKER_ID_MAX + 16];
            snprintf(shown, sizeof shown, "%s%s", wid,
                     json_is_true(json_object_get(e, "alive")) ? "" : " (dead)");
            ctl_table_row(&t, shown, tag, json_string_value(json_object_get(e, "queue")),
                          json_string_value(json_object_get(e, "id")),
                          json_string_value(json_object_get(e, "task")));
        }
        ctl_table_print(&t);
    }
    json_decref(list);
    return CTL_OK;
}

/* ---- queues and stats ---------------------------------------------------------------- */

/* {"queues": [{name, pending, workers}], "dead": N, "in_flight": N, "workers_alive": N,
 * "workers_dead": N} from Redis, or NULL (*code set, printed). */
static json_t *overview(ctl *c, int *code) {
    redisContext *rc = ctl_broker(c);
    if (rc == NULL) {
        *code = CTL_UNREACHABLE;
        return NULL;
    }
    worker *w = NULL;
    size_t n = 0, nnames = 0;
    char **names = NULL;
    broker_batch b = {0};
    redisReply **depths = NULL;
    json_t *queues = json_object(), *out = NULL;
    if ((*code = load_workers(c, rc, &w, &n)) != CTL_OK ||
        (names = ctl_queue_names(c, rc, code)) == NULL)
        goto done;
    while (names[nnames] != NULL)
        nnames++;
    /* Every depth in one round trip. */
    broker_cmd_queue_depths(&b, &c->keys, (const char *const *)names, nnames);
    if ((depths = calloc(nnames + 1, sizeof *depths)) == NULL) {
        *code = ctl_error(CTL_FAIL, "out of memory");
        goto done;
    }
    if ((*code = ctl_send(rc, &b, depths)) != CTL_OK)
        goto done;
    for (size_t i = 0; i < nnames; i++) {
        long long pending = broker_reply_queue_depth(depths[i]);
        if (pending < 0) /* not a list: someone else's key */
            continue;
        json_object_set_new(queues, names[i],
                            json_pack("{s:I, s:i}", "pending", (json_int_t)pending, "workers", 0));
    }
    long long in_flight = 0, nalive = 0;
    for (size_t i = 0; i < n; i++) {
        in_flight += w[i].held;
        nalive += alive(&w[i]);
        char *cursor = w[i].queues;
        for (char *q; (q = broker_queue_list_next(&cursor)) != NULL;) {
            json_t *e = json_object_get(queues, q);
            if (e == NULL)
                json_object_set_new(queues, q,
                                    e = json_pack("{s:i, s:i}", "pending", 0, "workers", 0));
            if (alive(&w[i]))
                json_object_set_new(
                    e, "workers",
                    json_integer(json_integer_value(json_object_get(e, "workers")) + 1));
        }
    }
    char dead[BROKER_KEY_MAX];
    broker_key_dead(&c->keys, dead);
    redisReply *r = ctl_cmd(rc, code, "LLEN %s", dead);
    if (r == NULL)
        goto done;
    json_t *list = json_array();
    const char *name;
    json_t *e;
    json_object_foreach(queues, name, e) {
        json_object_set_new(e, "name", json_string(name));
        json_array_append(list, e);
    }
    out = json_pack("{s:o, s:I, s:I, s:I, s:I}", "queues", list, "dead", (json_int_t)r->integer,
                    "in_flight", (json_int_t)in_flight, "workers_alive", (json_int_t)nalive,
                    "workers_dead", (json_int_t)(n - (size_t)nalive));
    freeReplyObject(r);
done:
    for (size_t i = 0; depths != NULL && i < b.n; i++)
        if (depths[i] != NULL)
            freeReplyObject(depths[i]);
    free(depths);
    broker_batch_clear(&b);
    json_decref(queues);
    ctl_strv_free(names);
    workers_free(w, n);
    return out;
}

static int cmp_queue(const void *a, const void *b) {
    return strcmp(json_string_value(json_object_get(*(json_t *const *)a, "name")),
                  json_string_value(json_object_get(*(json_t *const *)b, "name")));
}

/* The queues of an overview, sorted by name (jansson keeps object keys in insertion
 * order, and SCAN's order is the hash table's). */
static void sort_queues(json_t *ov) {
    json_t *list = json_object_get(ov, "queues");
    size_t n = json_array_size(list);
    json_t **v = calloc(n + 1, sizeof *v);
    if (v == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        v[i] = json_incref(json_array_get(list, i));
    qsort(v, n, sizeof *v, cmp_queue);
    json_array_clear(list);
    for (size_t i = 0; i < n; i++)
        json_array_append_new(list, v[i]);
    free(v);
}

/* The prologue of the commands that show the overview and take no operand: parse the
 * options, refuse operands, read the overview. NULL with *code set when that failed. */
static json_t *begin_overview(ctl *c, int argc, char **argv, int *code) {
    ctl_args a;
    *code = ctl_parse(c, argc, argv, NULL, &a);
    if (*code != CTL_OK)
        return NULL;
    if (a.npos > 0) {
        *code = ctl_usage(c, "unexpected argument '%s'", a.pos[0]);
        return NULL;
    }
    return overview(c, code);
}

int ctl_cmd_queues(ctl *c, int argc, char **argv) {
    int code;
    json_t *ov = begin_overview(c, argc, argv, &code);
    if (ov == NULL)
        return code;
    sort_queues(ov);
    if (c->json) {
        ctl_print_json(json_pack("{s:O, s:O}", "queues", json_object_get(ov, "queues"), "dead",
                                 json_object_get(ov, "dead")));
    } else {
        ctl_table t;
        ctl_table_init(&t, 3, "QUEUE", "PENDING", "WORKERS");
        size_t i;
        json_t *e;
        json_array_foreach(json_object_get(ov, "queues"), i, e) {
            char pending[32], workers[32];
            snprintf(pending, sizeof pending, "%lld",
                     (long long)json_integer_value(json_object_get(e, "pending")));
            snprintf(workers, sizeof workers, "%lld",
                     (long long)json_integer_value(json_object_get(e, "workers")));
            ctl_table_row(&t, json_string_value(json_object_get(e, "name")), pending, workers);
        }
        ctl_table_print(&t);
        printf("\ndead letters: %lld\n",
               (long long)json_integer_value(json_object_get(ov, "dead")));
    }
    json_decref(ov);
    return CTL_OK;
}

int ctl_cmd_stats(ctl *c, int argc, char **argv) {
    int code;
    json_t *ov = begin_overview(c, argc, argv, &code);
    if (ov == NULL)
        return code;
    json_int_t pending = 0;
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(ov, "queues"), i, e) {
        pending += json_integer_value(json_object_get(e, "pending"));
    }
    json_t *st =
        json_pack("{s:I, s:I, s:O, s:O, s:O, s:O}", "queues",
                  (json_int_t)json_array_size(json_object_get(ov, "queues")), "pending", pending,
                  "in_flight", json_object_get(ov, "in_flight"), "workers_alive",
                  json_object_get(ov, "workers_alive"), "workers_dead",
                  json_object_get(ov, "workers_dead"), "dead_letters", json_object_get(ov, "dead"));
    json_decref(ov);
    if (c->json) {
        ctl_print_json(st);
        return CTL_OK;
    }
    static const char *const rows[][2] = {
        {"queues", "queues"},
        {"pending", "pending"},
        {"in flight", "in_flight"},
        {"workers alive", "workers_alive"},
        {"workers dead", "workers_dead"},
        {"dead letters", "dead_letters"},
    };
    for (size_t r = 0; r < sizeof rows / sizeof *rows; r++)
        printf("%-14s %lld\n", rows[r][0],
               (long long)json_integer_value(json_object_get(st, rows[r][1])));
    json_decref(st);
    return CTL_OK;
}
