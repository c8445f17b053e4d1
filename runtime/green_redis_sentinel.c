/*
 * green_redis_sentinel.c - finding the master through Redis Sentinel, for a
 * redis+sentinel:// URL (green_redis.h, green_redis_connect_url).
 *
 * Sentinels are asked in the URL's order, each on a short connection of its own (AUTH
 * with sentinel_password first when the URL has one): SENTINEL get-master-addr-by-name
 * answers the address it believes is the master. That belief may be stale (a sentinel
 * cut off from the others during a failover still names the old master, which may have
 * come back as a replica) or plainly wrong, so the address is not trusted: the node is
 * connected to, logged in (AUTH, SELECT as the URL says) and asked ROLE, and only a node
 * that answers "master" is returned. Anything else moves on to the next sentinel.
 *
 * Each sentinel gets SENTINEL_BUDGET seconds for its answer and the named node as much
 * again, inside whatever deadline the caller set: one dead or black-holed sentinel never
 * costs the whole connect. Failure after every sentinel is -EHOSTUNREACH with a message
 * that lists what happened at each (no password ever appears in it), so an operator sees
 * "connection refused" from all three, or "names 10.0.0.5:6379, which is a slave".
 *
 * A login refused by the named master (-EACCES) or a refused SELECT (-EINVAL) ends the
 * search at once: every node of the set shares that configuration, and retrying the
 * next sentinel would only repeat it.
 *
 * Runs on a greenlet (every call here may yield); no state survives a call.
 */
#include "green_internal.h"
#include "green_redis.h"

#include <errno.h>
#include <hiredis/adapters/libev.h>
#include <hiredis/async.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SENTINEL_BUDGET 1.0 /* seconds per sentinel, and again per named node */
#define STORY_LEN 480

/* Append one sentinel's outcome to the story. */
static void tell(char *story, const green_redis_addr *a, const char *what) {
    size_t n = strlen(story);
    if (n + 8 < STORY_LEN)
        snprintf(story + n, STORY_LEN - n, "%ssentinel %s:%d %s", n ? "; " : "", a->host, a->port,
                 what);
}

/* Ask sentinel a for the master's address: 0 and host/port, or an error with *why set. */
static int ask(const green_redis_addr *a, const green_redis_url *u, char *host, size_t hostlen,
               int *port, char *why, size_t whylen) {
    int rc = 0;
    redisReply *r = NULL;
    green_redis *s = green_redis_connect_tcp(a->host, a->port, -1, &rc);
    if (s == NULL) {
        snprintf(why, whylen, "unreachable (%s)", strerror(-rc));
        return rc;
    }
    if (u->sentinel_password != NULL) {
        rc = green_redis_command(s, &r, -1, "AUTH %s", u->sentinel_password);
        if (rc == 0 && r->type == REDIS_REPLY_ERROR) {
            snprintf(why, whylen, "refused sentinel_password (%.80s)", r->str);
            rc = -EACCES;
        }
        if (r != NULL)
            freeReplyObject(r);
        r = NULL;
    }
    if (rc == 0)
        rc = green_redis_command(s, &r, -1, "SENTINEL get-master-addr-by-name %s", u->master);
    if (rc == 0) {
        if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
            r->element[0]->type == REDIS_REPLY_STRING &&
            r->element[1]->type == REDIS_REPLY_STRING) {
            snprintf(host, hostlen, "%s", r->element[0]->str);
            *port = atoi(r->element[1]->str);
        } else if (r->type == REDIS_REPLY_ERROR) {
            snprintf(why, whylen, "refused: %.100s", r->str);
            rc = -EPROTO;
        } else {
            snprintf(why, whylen, "knows no master '%.100s'", u->master);
            rc = -ENOENT;
        }
    } else if (why[0] == '\0') {
        snprintf(why, whylen, "did not answer (%s)", strerror(-rc));
    }
    if (r != NULL)
        freeReplyObject(r);
    green_redis_free(s);
    return rc;
}

/* The node's ROLE: 0 when it is a master, -EAGAIN (and *why) when it is something else. */
static int check_role(green_redis *c, const char *host, int port, char *why, size_t whylen) {
    redisReply *r = NULL;
    int rc = green_redis_command(c, &r, -1, "ROLE");
    if (rc != 0) {
        snprintf(why, whylen, "names %.100s:%d, which did not answer ROLE (%.100s)", host, port,
                 green_redis_error(c) ? green_redis_last_error(c) : strerror(-rc));
        return rc;
    }
    bool master = r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
                  r->element[0]->type == REDIS_REPLY_STRING &&
                  strcmp(r->element[0]->str, "master") == 0;
    if (!master) {
        const char *role = r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
                                   r->element[0]->type == REDIS_REPLY_STRING
                               ? r->element[0]->str
                           : r->type == REDIS_REPLY_ERROR ? r->str
                                                          : "?";
        snprintf(why, whylen, "names %.100s:%d, which is a %.60s, not the master", host, port,
                 role);
        rc = -EAGAIN;
    }
    freeReplyObject(r);
    return rc;
}

/* Connect to the node a sentinel named, log in, check it. NULL with *err (and *why, or the
 * connect error for a refused login) on failure. */
static green_redis *try_node(const green_redis_url *u, const char *host, int port, int *err,
                             char *why, size_t whylen) {
    green_redis *c = green_redis_connect_tcp(host, port, -1, err);
    if (c == NULL) {
        snprintf(why, whylen, "names %.100s:%d, which is unreachable (%.100s)", host, port,
                 strerror(-*err));
        return NULL;
    }
    *err = green__redis_setup(c, u);
    if (*err == 0)
        *err = check_role(c, host, port, why, whylen);
    if (*err != 0) {
        green_redis_free(c);
        return NULL;
    }
    return c;
}

struct green_redis *green__redis_connect_sentinel(const struct green_redis_url *u, int *err) {
    char story[STORY_LEN] = "";
    for (size_t i = 0; i < u->nsentinels; i++) {
        char host[256], why[256] = "";
        int port = 0;
        green_timeout t;
        green_timeout_start(&t, SENTINEL_BUDGET);
        *err = ask(&u->sentinels[i], u, host, sizeof host, &port, why, sizeof why);
        green_timeout_end(&t);
        if (*err == -ECANCELED)
            return NULL;
        if (*err == 0) {
            green_timeout_start(&t, SENTINEL_BUDGET);
            green_redis *c = try_node(u, host, port, err, why, sizeof why);
            green_timeout_end(&t);
            if (c != NULL)
                return c;
            if (*err == -ECANCELED || *err == -EACCES || (*err == -EINVAL && why[0] == '\0'))
                return NULL; /* the login or the SELECT: the connect error says which */
        }
        tell(story, &u->sentinels[i], why);
    }
    *err = -EHOSTUNREACH;
    green__redis_connect_error_set("redis+sentinel: no sentinel led to a master '%.100s': %s",
                                   u->master, story);
    return NULL;
}

/* ---- watching for +switch-master ---- */

/* The state of one watch: on the heap, because hiredis's callbacks may still run after
 * the greenlet stopped waiting (redisAsyncFree runs them with NULL replies). */
typedef struct watch {
    struct green *g; /* the parked greenlet, NULL once it stopped waiting */
    const char *master;
    const char *current; /* "host:port" of the node the owner is on, or NULL */
    bool connected, failed, switched;
    bool freed_by_hiredis; /* a failed connect: hiredis frees the context itself */
} watch;

static void watch_on_connect(const redisAsyncContext *ac, int status) {
    watch *w = ac->data;
    if (status != REDIS_OK) {
        w->failed = true;
        w->freed_by_hiredis = true;
    } else {
        w->connected = true;
    }
    if (w->g != NULL)
        green__wake(w->g, 0);
}

static void watch_on_disconnect(const redisAsyncContext *ac, int status) {
    watch *w = ac->data;
    (void)status;
    w->failed = true;
    w->freed_by_hiredis = true; /* hiredis frees the context after this callback */
    if (w->g != NULL)
        green__wake(w->g, 0);
}

/* Every reply of the subscription: ["subscribe", channel, n], then ["message", channel,
 * "<master> <old-ip> <old-port> <new-ip> <new-port>"]. */
static void watch_on_message(redisAsyncContext *ac, void *reply, void *privdata) {
    watch *w = privdata;
    const redisReply *r = reply;
    (void)ac;
    if (r == NULL) {
        w->failed = true;
    } else if (r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
               r->element[0]->type == REDIS_REPLY_STRING &&
               strcmp(r->element[0]->str, "message") == 0 &&
               r->element[2]->type == REDIS_REPLY_STRING) {
        size_t n = strlen(w->master);
        char to[300];
        char ip[256] = "";
        int port = 0;
        /* A switch to the node the owner is already on (it followed the failover through
         * a reconnect before this sentinel announced it) needs nothing. */
        if (strncmp(r->element[2]->str, w->master, n) == 0 && r->element[2]->str[n] == ' ' &&
            sscanf(r->element[2]->str + n, " %*s %*d %255s %d", ip, &port) == 2) {
            snprintf(to, sizeof to, "%s:%d", ip, port);
            if (w->current == NULL || strcmp(to, w->current) != 0)
                w->switched = true;
        }
    } else if (r->type == REDIS_REPLY_ERROR) {
        w->failed = true;
    }
    if ((w->switched || w->failed) && w->g != NULL)
        green__wake(w->g, 0);
}

int green_redis_sentinel_watch(const char *url, const char *current, double timeout) {
    int rc = green__check();
    if (rc != 0)
        return rc;
    green_redis_url u;
    if ((rc = green_redis_url_parse(url, &u, NULL, 0)) != 0)
        return rc;
    if (u.master == NULL) {
        green_redis_url_clear(&u);
        return -EINVAL;
    }
    watch *w = calloc(1, sizeof *w);
    if (w == NULL) {
        green_redis_url_clear(&u);
        return -ENOMEM;
    }
    w->master = u.master;
    double deadline = green__deadline_in(timeout);
    rc = -EHOSTUNREACH;
    /* The first sentinel that takes the subscription; each gets SENTINEL_BUDGET. */
    for (size_t i = 0; i < u.nsentinels && rc == -EHOSTUNREACH; i++) {
        redisAsyncContext *ac = redisAsyncConnect(u.sentinels[i].host, u.sentinels[i].port);
        if (ac == NULL) {
            rc = -ENOMEM;
            break;
        }
        if (ac->err != 0 || redisLibevAttach(green_loop(), ac) != REDIS_OK) {
            redisAsyncFree(ac);
            continue;
        }
        memset(w, 0, sizeof *w);
        w->master = u.master;
        w->current = current;
        ac->data = w;
        redisAsyncSetDisconnectCallback(ac, watch_on_disconnect);
        redisAsyncSetConnectCallback(ac, watch_on_connect);
        w->g = green__current();
        double step = green__deadline_in(SENTINEL_BUDGET);
        int prc = 0;
        while (prc == 0 && !w->connected && !w->failed)
            prc = green__park(step < deadline ? step : deadline);
        if (prc == 0 && w->connected && !w->failed) {
            bool sent = true;
            if (u.sentinel_password != NULL)
                sent =
                    redisAsyncCommand(ac, NULL, NULL, "AUTH %s", u.sentinel_password) == REDIS_OK;
            sent = sent && redisAsyncCommand(ac, watch_on_message, w, "SUBSCRIBE +switch-master") ==
                               REDIS_OK;
            while (sent && prc == 0 && !w->switched && !w->failed)
                prc = green__park(deadline);
            rc = w->switched ? 0 : prc != 0 ? prc : -EHOSTUNREACH;
        } else if (prc == -ECANCELED) {
            rc = -ECANCELED;
        }
        w->g = NULL;
        if (!w->freed_by_hiredis)
            redisAsyncFree(ac); /* runs the subscription's callback with NULL: harmless */
    }
    free(w);
    green_redis_url_clear(&u);
    return rc;
}
