/*
 * ctl_redis.c - workerctl's Redis: synchronous hiredis connections made from workerd's URLs,
 * commands that report their own failures, and SCAN over a kind of key.
 *
 * A connection is made on first use, with CTL_CONNECT_TIMEOUT to connect and
 * CTL_COMMAND_TIMEOUT per command; then AUTH (with the ACL user when the URL names one)
 * and SELECT, as green_redis_connect_url does for workerd. Every failure to get there is
 * CTL_UNREACHABLE with one line naming the Redis by its redacted URL: a script can tell
 * "Redis is down or refuses us" (3) from "the task failed" (1).
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

#include "green_redis.h"

static struct timeval tv_of(double seconds) {
    struct timeval tv = {(time_t)seconds, (suseconds_t)((seconds - (double)(time_t)seconds) * 1e6)};
    return tv;
}

/* Connect to url and log in; NULL after printing why. */
static redisContext *connect_url(const char *url, const char *redacted) {
    green_redis_url u;
    char why[512];
    redisReply *r = NULL;
    if (green_redis_url_parse(url, &u, why, sizeof why) < 0) {
        ctl_error(CTL_USAGE, "%s", why); /* ctl_settle checked it: only ENOMEM gets here */
        return NULL;
    }
    redisContext *rc = u.path ? redisConnectUnixWithTimeout(u.path, tv_of(CTL_CONNECT_TIMEOUT))
                              : redisConnectWithTimeout(u.host, u.port, tv_of(CTL_CONNECT_TIMEOUT));
    if (rc == NULL || rc->err) {
        ctl_error(CTL_UNREACHABLE, "cannot reach Redis at %s: %s", redacted,
                  rc ? rc->errstr : "out of memory");
        goto fail;
    }
    redisSetTimeout(rc, tv_of(CTL_COMMAND_TIMEOUT));
    if (u.password != NULL) {
        r = u.user ? redisCommand(rc, "AUTH %s %s", u.user, u.password)
                   : redisCommand(rc, "AUTH %s", u.password);
        if (r == NULL || r->type == REDIS_REPLY_ERROR) {
            ctl_error(CTL_UNREACHABLE, "Redis at %s refused the login: %s", redacted,
                      r ? r->str : rc->errstr);
            goto fail;
        }
        freeReplyObject(r);
    }
    if (u.db != 0) {
        r = redisCommand(rc, "SELECT %d", u.db);
        if (r == NULL || r->type == REDIS_REPLY_ERROR) {
            ctl_error(CTL_UNREACHABLE, "Redis at %s cannot select database %d: %s", redacted, u.db,
                      r ? r->str : rc->errstr);
            goto fail;
        }
        freeReplyObject(r);
    }
    green_redis_url_clear(&u);
    return rc;

fail:
    if (r != NULL)
        freeReplyObject(r);
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
        ctl_error(CTL_FAIL, "Redis error: %s", r->str);
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

void ctl_strv_free(char **v) {
    for (size_t i = 0; v != NULL && v[i] != NULL; i++)
        free(v[i]);
    free(v);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

char **ctl_scan(ctl *c, redisContext *rc, const char *kind, int *code) {
    /* The prefix is literal text: escape what SCAN's MATCH would read as a pattern. */
    char pattern[2 * BROKER_PREFIX_MAX + 64];
    size_t n = 0;
    for (const char *p = c->keys.prefix; *p; p++) {
        if (strchr("*?[]\\", *p))
            pattern[n++] = '\\';
        pattern[n++] = *p;
    }
    snprintf(pattern + n, sizeof pattern - n, ":%s:*", kind);

    size_t len = 0, cap = 16;
    char **keys = calloc(cap, sizeof *keys);
    char cursor[32] = "0";
    if (keys == NULL)
        goto oom;
    do {
        redisReply *r = ctl_cmd(rc, code, "SCAN %s MATCH %s COUNT 1000", cursor, pattern);
        if (r == NULL) {
            ctl_strv_free(keys);
            return NULL;
        }
        snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
        redisReply *batch = r->element[1];
        for (size_t i = 0; i < batch->elements; i++) {
            if (len + 1 >= cap) {
                char **more = realloc(keys, 2 * cap * sizeof *keys);
                if (more == NULL) {
                    freeReplyObject(r);
                    goto oom;
                }
                keys = more;
                cap *= 2;
            }
            if ((keys[len] = strdup(batch->element[i]->str)) == NULL) {
                freeReplyObject(r);
                goto oom;
            }
            keys[++len] = NULL;
        }
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0);
    /* SCAN may return a key twice (when the table is rehashed): keep one of each. */
    qsort(keys, len, sizeof *keys, cmp_str);
    size_t kept = 0;
    for (size_t i = 0; i < len; i++) {
        if (kept > 0 && strcmp(keys[kept - 1], keys[i]) == 0)
            free(keys[i]);
        else
            keys[kept++] = keys[i];
    }
    keys[kept] = NULL;
    return keys;
oom:
    ctl_strv_free(keys);
    if (code)
        *code = CTL_FAIL;
    ctl_error(CTL_FAIL, "out of memory");
    return NULL;
}

void ctl_key_result(const ctl *c, const char *id, char buf[BROKER_KEY_MAX]) {
    broker_key_result(&c->keys, id, buf);
}

void ctl_key_revoked(const ctl *c, const char *id, char buf[BROKER_KEY_MAX]) {
    /* Not in broker_keys.h yet: workers do not read it. The same shape as the others. */
    snprintf(buf, BROKER_KEY_MAX, "%s:revoked:%s", c->keys.prefix, id);
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
