/*
 * ctl_redis.c - workerctl's Redis: synchronous hiredis connections made from workerd's URLs,
 * commands that report their own failures, the sending of broker_cmds.h's batches (with
 * the EVAL fallback for scripts), and the SCAN for the queues.
 *
 * A connection is made on first use, with CTL_CONNECT_TIMEOUT to connect and
 * CTL_COMMAND_TIMEOUT per command; then AUTH (with the ACL user when the URL names one)
 * and SELECT, as green_redis_connect_url does for workerd; a redis+sentinel:// URL asks its
 * sentinels in order for the master and checks its ROLE, as workerd does. Every failure
 * to get there is CTL_UNREACHABLE with one line naming the Redis by its redacted URL: a
 * script can tell "Redis is down or refuses us" (3) from "the task failed" (1).
 *
 * hiredis's synchronous context has a sticky error: after a time-out or a broken link it
 * is unusable, which suits a CLI that gives up on the first broken link anyway.
 *
 * Runs on the main thread; every call blocks for at most the time-outs above.
 */
#include "ctl.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "broker_cmds.h"
#include "broker_scripts.h"
#include "green_redis.h"

static struct timeval tv_of(double seconds) {
    struct timeval tv = {(time_t)seconds, (suseconds_t)((seconds - (double)(time_t)seconds) * 1e6)};
    return tv;
}

/* AUTH and SELECT on a fresh connection as u says; false after printing why. */
static bool login(redisContext *rc, const green_redis_url *u, const char *redacted) {
    redisReply *r = NULL;
    if (u->password != NULL) {
        r = u->user ? redisCommand(rc, "AUTH %s %s", u->user, u->password)
                    : redisCommand(rc, "AUTH %s", u->password);
        if (r == NULL || r->type == REDIS_REPLY_ERROR) {
            ctl_error(CTL_UNREACHABLE, "Redis at %s refused the login: %s", redacted,
                      r ? r->str : rc->errstr);
            goto fail;
        }
        freeReplyObject(r);
    }
    if (u->db != 0) {
        r = redisCommand(rc, "SELECT %d", u->db);
        if (r == NULL || r->type == REDIS_REPLY_ERROR) {
            ctl_error(CTL_UNREACHABLE, "Redis at %s cannot select database %d: %s", redacted, u->db,
                      r ? r->str : rc->errstr);
            goto fail;
        }
        freeReplyObject(r);
    }
    return true;
fail:
    if (r != NULL)
        freeReplyObject(r);
    return false;
}

static redisContext *connect_tcp(const char *host, int port) {
    redisContext *rc = redisConnectWithTimeout(host, port, tv_of(CTL_CONNECT_TIMEOUT));
    if (rc != NULL && rc->err == 0)
        redisSetTimeout(rc, tv_of(CTL_COMMAND_TIMEOUT));
    return rc;
}

/* The address sentinel a names for u's master: true and host/port, or false and *why. */
static bool ask_sentinel(const green_redis_addr *a, const green_redis_url *u, char *host,
                         size_t hostlen, int *port, char *why, size_t whylen) {
    redisReply *r = NULL;
    redisContext *s = connect_tcp(a->host, a->port);
    bool ok = false;
    if (s == NULL || s->err) {
        snprintf(why, whylen, "unreachable (%s)", s ? s->errstr : "out of memory");
        goto out;
    }
    if (u->sentinel_password != NULL) {
        r = redisCommand(s, "AUTH %s", u->sentinel_password);
        if (r == NULL || r->type == REDIS_REPLY_ERROR) {
            snprintf(why, whylen, "refused sentinel_password (%.80s)", r ? r->str : s->errstr);
            goto out;
        }
        freeReplyObject(r);
    }
    r = redisCommand(s, "SENTINEL get-master-addr-by-name %s", u->master);
    if (r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[0]->type == REDIS_REPLY_STRING && r->element[1]->type == REDIS_REPLY_STRING) {
        snprintf(host, hostlen, "%s", r->element[0]->str);
        *port = atoi(r->element[1]->str);
        ok = true;
    } else {
        snprintf(why, whylen, "%s",
                 r == NULL                      ? s->errstr
                 : r->type == REDIS_REPLY_ERROR ? r->str
                                                : "knows no such master");
    }
out:
    if (r != NULL)
        freeReplyObject(r);
    if (s != NULL)
        redisFree(s);
    return ok;
}

/* The master that u's sentinels name, logged in and answering ROLE master (as workerd's
 * green_redis_connect_url finds it); NULL after printing what every sentinel said. */
static redisContext *connect_sentinel(const green_redis_url *u, const char *redacted) {
    char story[600] = "";
    for (size_t i = 0; i < u->nsentinels; i++) {
        char host[256], why[256] = "";
        int port = 0;
        redisContext *rc = NULL;
        if (ask_sentinel(&u->sentinels[i], u, host, sizeof host, &port, why, sizeof why)) {
            rc = connect_tcp(host, port);
            if (rc == NULL || rc->err) {
                snprintf(why, sizeof why, "names %.100s:%d, unreachable", host, port);
            } else if (!login(rc, u, redacted)) {
                redisFree(rc);
                return NULL;
            } else {
                redisReply *r = redisCommand(rc, "ROLE");
                bool master = r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
                              r->element[0]->type == REDIS_REPLY_STRING &&
                              strcmp(r->element[0]->str, "master") == 0;
                if (r != NULL)
                    freeReplyObject(r);
                if (master)
                    return rc;
                snprintf(why, sizeof why, "names %.100s:%d, which is not a master", host, port);
            }
            if (rc != NULL)
                redisFree(rc);
        }
        size_t n = strlen(story);
        snprintf(story + n, sizeof story - n, "%ssentinel %.100s:%d %s", n ? "; " : "",
                 u->sentinels[i].host, u->sentinels[i].port, why);
    }
    ctl_error(CTL_UNREACHABLE, "cannot reach Redis at %s: no sentinel led to a master: %s",
              redacted, story);
    return NULL;
}

/* Connect to url and log in; NULL after printing why. */
static redisContext *connect_url(const char *url, const char *redacted) {
    green_redis_url u;
    char why[512];
    if (green_redis_url_parse(url, &u, why, sizeof why) < 0) {
        ctl_error(CTL_USAGE, "%s", why); /* ctl_settle checked it: only ENOMEM gets here */
        return NULL;
    }
    if (u.master != NULL) {
        redisContext *rc = connect_sentinel(&u, redacted);
        green_redis_url_clear(&u);
        return rc;
    }
    redisContext *rc = u.path ? redisConnectUnixWithTimeout(u.path, tv_of(CTL_CONNECT_TIMEOUT))
                              : redisConnectWithTimeout(u.host, u.port, tv_of(CTL_CONNECT_TIMEOUT));
    if (rc == NULL || rc->err) {
        ctl_error(CTL_UNREACHABLE, "cannot reach Redis at %s: %s", redacted,
                  rc ? rc->errstr : "out of memory");
        goto fail;
    }
    redisSetTimeout(rc, tv_of(CTL_COMMAND_TIMEOUT));
    if (!login(rc, &u, redacted))
        goto fail;
    green_redis_url_clear(&u);
    return rc;

fail:
    if (rc != NULL)
        redisFree(rc);
    green_redis_url_clear(&u);
    return NULL;
}

redisContext *ctl_broker(ctl *c) {
    if (c->broker_conn == NULL)
        c->broker_conn = connect_url(c->broker, c->broker_redacted);
    return c->broker_conn;
}

redisContext *ctl_results(ctl *c) {
    if (c->result_backend == NULL)
        return ctl_broker(c);
    if (c->results_conn == NULL)
        c->results_conn = connect_url(c->result_backend, c->results_redacted);
    return c->results_conn;
}

redisContext *ctl_results_connect_new(ctl *c) {
    return c->result_backend ? connect_url(c->result_backend, c->results_redacted)
                             : connect_url(c->broker, c->broker_redacted);
}

/* Check a reply: NULL (the link) or an error reply. */
static redisReply *checked(redisContext *rc, redisReply *r, int *code) {
    if (r == NULL) {
        ctl_error(CTL_UNREACHABLE, "lost the link to Redis: %s", rc->errstr);
        if (code)
            *code = CTL_UNREACHABLE;
        return NULL;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        char *e = ctl_escape(r->str, r->len); /* a script's error may quote stored data */
        ctl_error(CTL_FAIL, "Redis error: %s", e ? e : "?");
        free(e);
        freeReplyObject(r);
        if (code)
            *code = CTL_FAIL;
        return NULL;
    }
    return r;
}

redisReply *ctl_cmd(redisContext *rc, int *code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(rc, fmt, ap);
    va_end(ap);
    return checked(rc, r, code);
}

redisReply *ctl_cmd_argv(redisContext *rc, int *code, int argc, const char **argv,
                         const size_t *lens) {
    return checked(rc, redisCommandArgv(rc, argc, argv, lens), code);
}

/* Say that the link broke; returns CTL_UNREACHABLE. */
static int link_lost(redisContext *rc) {
    return ctl_error(CTL_UNREACHABLE, "lost the link to Redis: %s", rc->errstr);
}

int ctl_send(redisContext *rc, broker_batch *b, redisReply **replies) {
    for (size_t i = 0; i < b->n; i++)
        replies[i] = NULL;
    if (b->err != 0)
        return ctl_error(CTL_FAIL, "%s",
                         b->err == -ENOMEM ? "out of memory" : "a name no Redis key may hold");
    for (size_t i = 0; i < b->n; i++)
        if (redisAppendCommandArgv(rc, b->argcs[i], b->argvs[i], b->argvlens[i]) != REDIS_OK)
            return ctl_error(CTL_FAIL, "out of memory");
    for (size_t i = 0; i < b->n; i++) {
        void *reply = NULL;
        if (redisGetReply(rc, &reply) != REDIS_OK || reply == NULL)
            goto lost;
        replies[i] = reply;
    }
    /* Scripts Redis has not seen yet (or forgot): run them by their text, which also
     * caches them. The rest of the batch has run by then; the batches that hold a script
     * hold nothing else. */
    for (size_t i = 0; i < b->n; i++) {
        if (broker_script_retry(b, i, replies[i])) {
            freeReplyObject(replies[i]);
            replies[i] = redisCommandArgv(rc, b->argcs[i], b->argvs[i], b->argvlens[i]);
            if (replies[i] == NULL)
                goto lost;
        }
    }
    return CTL_OK;
lost:
    for (size_t i = 0; i < b->n; i++) {
        if (replies[i] != NULL)
            freeReplyObject(replies[i]);
        replies[i] = NULL;
    }
    return link_lost(rc);
}

redisReply *ctl_send_one(redisContext *rc, broker_batch *b, int *code) {
    redisReply *r = NULL;
    int sent = b->n == 1 ? ctl_send(rc, b, &r) : ctl_error(CTL_FAIL, "not one command");
    if (sent != CTL_OK) {
        if (code)
            *code = sent;
        return NULL;
    }
    return checked(rc, r, code);
}

redisReply *ctl_broker_one(ctl *c, broker_batch *b, int *code) {
    redisContext *rc = ctl_broker(c);
    redisReply *r = NULL;
    if (rc == NULL) {
        if (code)
            *code = CTL_UNREACHABLE;
    } else {
        r = ctl_send_one(rc, b, code);
    }
    broker_batch_clear(b);
    return r;
}

void ctl_strv_free(char **v) {
    for (size_t i = 0; v != NULL && v[i] != NULL; i++)
        free(v[i]);
    free(v);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Add a copy of name to the NULL-terminated *v of *len names (room for *cap). */
static int strv_add(char ***v, size_t *len, size_t *cap, const char *name) {
    if (*len + 1 >= *cap) {
        char **more = realloc(*v, 2 * *cap * sizeof **v);
        if (more == NULL)
            return -1;
        *v = more;
        *cap *= 2;
    }
    if (((*v)[*len] = strdup(name)) == NULL)
        return -1;
    (*v)[++*len] = NULL;
    return 0;
}

char **ctl_queue_names(ctl *c, redisContext *rc, int *code) {
    size_t len = 0, cap = 16;
    char **names = calloc(cap, sizeof *names);
    char cursor[BROKER_SCAN_CURSOR_MAX] = "0";
    if (names == NULL)
        goto oom;
    do {
        broker_batch b = {0};
        broker_cmd_scan_queues(&b, &c->keys, cursor);
        redisReply *r = ctl_send_one(rc, &b, code);
        broker_batch_clear(&b);
        if (r == NULL) {
            ctl_strv_free(names);
            return NULL;
        }
        const redisReply *keys;
        if (broker_reply_scan(r, cursor, &keys) < 0) {
            freeReplyObject(r);
            ctl_strv_free(names);
            *code = ctl_error(CTL_FAIL, "unexpected reply to SCAN");
            return NULL;
        }
        for (size_t i = 0; i < keys->elements; i++) {
            const redisReply *k = keys->element[i];
            const char *name = k->type == REDIS_REPLY_STRING
                                   ? broker_key_queue_name(&c->keys, k->str, k->len)
                                   : NULL;
            if (name != NULL && strv_add(&names, &len, &cap, name) < 0) {
                freeReplyObject(r);
                goto oom;
            }
        }
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0);
    /* SCAN may return a key twice (when the table is rehashed): keep one of each. */
    qsort(names, len, sizeof *names, cmp_str);
    size_t kept = 0;
    for (size_t i = 0; i < len; i++) {
        if (kept > 0 && strcmp(names[kept - 1], names[i]) == 0)
            free(names[i]);
        else
            names[kept++] = names[i];
    }
    names[kept] = NULL;
    return names;
oom:
    ctl_strv_free(names);
    *code = ctl_error(CTL_FAIL, "out of memory");
    return NULL;
}

void ctl_msg_fields(const char *raw, size_t len, char *id, size_t idlen, char *task,
                    size_t tasklen) {
    id[0] = task[0] = '\0';
    json_t *m = json_loadb(raw, len, JSON_DECODE_ANY, NULL);
    const char *s = json_string_value(json_object_get(m, "id"));
    if (s != NULL)
        snprintf(id, idlen, "%s", s);
    s = json_string_value(json_object_get(m, "task"));
    if (s != NULL)
        snprintf(task, tasklen, "%s", s);
    json_decref(m);
}
