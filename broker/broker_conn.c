/*
 * broker_conn.c - the self-healing connection of broker_conn.h.
 *
 * One greenlet per connection owns the link: it connects, announces "up" by setting the
 * `up` event, then waits until somebody reports the link broken (a call that failed with
 * a link error sets `broken`) or it notices on its own (an idle connection's read watcher
 * sees EOF and green_redis turns sticky-failed; checked every second). Then it frees the
 * green_redis, announces "down" and reconnects with backoff. Callers never connect or
 * free anything themselves: they wait for `up`, use the current green_redis, and report.
 *
 * A caller may still be inside a call on a green_redis that the owner frees: green_redis
 * makes that call return -ECONNABORTED, a link error like the others.
 *
 * Runs on greenlets only; the state callback is called from the owner greenlet.
 */
#include "broker_conn.h"

#include "green.h"
#include "green_redis.h"
#include "green_sync.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CONNECT_TIMEOUT 5.0
#define BACKOFF_FIRST BROKER_CONN_BACKOFF_FIRST
#define BACKOFF_MAX BROKER_CONN_BACKOFF_MAX
#define IDLE_CHECK 1.0

struct broker_conn {
    char *url;
    char *name;
    broker_conn_state_fn on_state;
    void *arg;
    green_redis *r;     /* the live connection, NULL while down */
    green_event up;     /* set while r is usable */
    green_event broken; /* set by a caller that saw the link fail */
    green_t owner;
    bool closing;
    bool sentinel; /* the URL is redis+sentinel://: a -READONLY reply means reconnect */
    unsigned long drops;
    unsigned long readonly; /* -READONLY replies that made it reconnect */
    unsigned long switched; /* +switch-master announcements that made it reconnect */
    unsigned int seed;
};

bool broker_conn_error_is_link(int err) {
    return err == -ECONNRESET || err == -EIO || err == -EPROTO || err == -ECONNABORTED ||
           err == -ECONNREFUSED || err == -EPIPE || err == -ENOTCONN;
}

static double jitter(broker_conn *c, double delay) {
    double r = (double)rand_r(&c->seed) / RAND_MAX; /* 0..1 */
    return delay * (1 - BROKER_CONN_BACKOFF_JITTER + 2 * BROKER_CONN_BACKOFF_JITTER * r);
}

static void report(broker_conn *c, bool up, const char *err) {
    if (c->on_state)
        c->on_state(c->arg, c->name, up, err);
}

/* Connected means Redis answered a PING, not only that the TCP handshake completed: when
 * Redis dies, the immediate first reconnect can land in the backlog of its listening
 * socket in the instant before the kernel closes it (or in a forked child's copy of it),
 * "succeed", and be reset a moment later. Without the PING that would be reported as up,
 * then down again: two outages logged for one. Returns 0 or the error; *why is set. */
static int ping(green_redis *r, char *why, size_t len) {
    redisReply *reply = NULL;
    int rc = green_redis_command(r, &reply, CONNECT_TIMEOUT, "PING");
    if (rc == 0 && reply->type == REDIS_REPLY_ERROR && reply->str &&
        strncmp(reply->str, "LOADING", 7) == 0)
        rc = -EAGAIN; /* a restarted Redis still reading its AOF or RDB */
    if (rc != 0)
        snprintf(why, len, "%s",
                 rc == -EAGAIN          ? "Redis is loading its data"
                 : green_redis_error(r) ? green_redis_last_error(r)
                                        : strerror(-rc));
    if (reply)
        freeReplyObject(reply);
    return rc;
}

/* Connect until it works, backing off between attempts. Returns NULL when cancelled. */
static green_redis *connect_with_backoff(broker_conn *c) {
    double delay = BACKOFF_FIRST;
    for (;;) {
        int err = 0;
        char why[256];
        green_redis *r = green_redis_connect_url(c->url, CONNECT_TIMEOUT, &err);
        bool connected = r != NULL;
        if (connected && (err = ping(r, why, sizeof why)) == 0)
            return r;
        green_redis_free(r);
        if (err == -ECANCELED || c->closing)
            return NULL;
        report(c, false, connected ? why : green_redis_connect_error());
        if (green_sleep(jitter(c, delay)) == -ECANCELED)
            return NULL;
        delay = delay * 2 > BACKOFF_MAX ? BACKOFF_MAX : delay * 2;
    }
}

/* The watcher of a redis+sentinel:// connection, while it is up: when a sentinel
 * announces that the master moved, the link counts as broken at once, so the owner
 * reconnects to the new master rather than waiting for the old one's connection to fail
 * (a killed master's is noticed at once anyway; a master cut off by a partition, or
 * demoted without its clients being dropped, is not). A sentinel that cannot be
 * subscribed to is tried again every second. */
static void *watcher_main(void *arg) {
    broker_conn *c = arg;
    green_redis *r = c->r;
    for (;;) {
        int rc = green_redis_sentinel_watch(c->url, green_redis_peer(r), -1);
        if (rc == 0 && c->r == r) {
            c->switched++;
            green_event_clear(&c->up);
            green_event_set(&c->broken);
            return NULL;
        }
        if (rc == -ECANCELED || green_sleep(1.0) == -ECANCELED)
            return NULL;
    }
}

static void *owner_main(void *arg) {
    broker_conn *c = arg;
    while (!c->closing) {
        green_redis *r = connect_with_backoff(c);
        if (!r)
            break;
        c->r = r;
        unsigned long readonly_before = c->readonly, switched_before = c->switched;
        green_event_clear(&c->broken);
        green_event_set(&c->up);
        report(c, true, NULL);
        green_t watcher;
        bool watching = c->sentinel && green_spawn(&watcher, watcher_main, c) == 0;
        int rc;
        while ((rc = green_event_wait(&c->broken, IDLE_CHECK)) == -ETIMEDOUT &&
               green_redis_is_connected(r))
            ;
        green_event_clear(&c->up);
        if (watching) {
            green_kill(watcher);
            green_join(watcher, NULL);
        }
        c->r = NULL;
        if (rc == -ECANCELED || c->closing) {
            green_redis_free(r);
            break;
        }
        c->drops++;
        const char *why = green_redis_error(r) ? green_redis_last_error(r)
                          : c->readonly != readonly_before
                              ? "the server answered READONLY: no longer the master"
                          : c->switched != switched_before
                              ? "the sentinels announced a new master (+switch-master)"
                              : "connection lost";
        char msg[256];
        snprintf(msg, sizeof msg, "%s", why);
        green_redis_free(r);
        report(c, false, msg);
    }
    return NULL;
}

broker_conn *broker_conn_new(const char *url, const char *name, broker_conn_state_fn on_state,
                             void *arg) {
    broker_conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->url = strdup(url);
    c->name = strdup(name);
    if (!c->url || !c->name)
        goto fail;
    green_redis_url u;
    if (green_redis_url_parse(url, &u, NULL, 0) == 0) {
        c->sentinel = u.master != NULL;
        green_redis_url_clear(&u);
    }
    c->on_state = on_state;
    c->arg = arg;
    c->seed = (unsigned int)time(NULL) ^ (unsigned int)getpid() ^ (unsigned int)(uintptr_t)c;
    green_event_init(&c->up);
    green_event_init(&c->broken);
    if (green_spawn(&c->owner, owner_main, c) != 0) {
        green_event_destroy(&c->up);
        green_event_destroy(&c->broken);
        goto fail;
    }
    return c;
fail:
    free(c->url);
    free(c->name);
    free(c);
    return NULL;
}

int broker_conn_wait_up(broker_conn *c, double timeout) {
    if (c->closing)
        return -ESHUTDOWN;
    int rc = green_event_wait(&c->up, timeout);
    if (rc == 0 && c->closing)
        return -ESHUTDOWN;
    return rc;
}

bool broker_conn_is_up(const broker_conn *c) {
    return c->r != NULL && green_redis_is_connected(c->r);
}

unsigned long broker_conn_drops(const broker_conn *c) {
    return c->drops;
}

/* A call on the current link failed: the link is down from now on, not only once the
 * owner greenlet has run. Clearing `up` here matters because a failed link fails calls
 * without yielding: a caller looping "call, wait_up, retry" (the acker, during an outage)
 * would otherwise find `up` still set, retry at once and never yield, starving the owner
 * (and the whole hub) forever. */
static void saw_error(broker_conn *c, green_redis *r, int rc) {
    if (broker_conn_error_is_link(rc) && c->r == r) {
        green_event_clear(&c->up);
        green_event_set(&c->broken);
    }
}

/* The special problem of a master that is no longer one. Behind a redis+sentinel:// URL,
 * a connection can outlive a failover: the old master, demoted (or cut off and come
 * back as a replica), keeps the connection open and answers every write with -READONLY.
 * Waiting that out would wait forever, so such a reply counts as a broken link: the
 * owner reconnects, which asks the sentinels again and lands on the new master. The
 * caller still gets its reply (a refusal it retries: broker_ack's -EAGAIN). For a plain
 * redis:// URL reconnecting would find the same replica, so nothing changes there. */
static void saw_replies(broker_conn *c, green_redis *r, redisReply **replies, size_t n) {
    for (size_t i = 0; c->sentinel && i < n; i++) {
        if (replies[i] != NULL && replies[i]->type == REDIS_REPLY_ERROR && replies[i]->str &&
            strncmp(replies[i]->str, "READONLY", 8) == 0 && c->r == r) {
            c->readonly++;
            green_event_clear(&c->up);
            green_event_set(&c->broken);
            return;
        }
    }
}

int broker_conn_call(broker_conn *c, redisReply **reply, double timeout, int argc,
                     const char **argv, const size_t *argvlen) {
    green_timeout t;
    green_timeout_start(&t, timeout);
    int rc = broker_conn_wait_up(c, -1);
    if (rc == 0) {
        green_redis *r = c->r;
        rc = green_redis_commandargv(r, reply, -1, argc, argv, argvlen);
        saw_error(c, r, rc);
        if (rc == 0)
            saw_replies(c, r, reply, 1);
    }
    green_timeout_end(&t);
    return rc;
}

int broker_conn_pipeline(broker_conn *c, size_t n, const int *argcs, const char **const *argvs,
                         const size_t *const *argvlens, redisReply **replies, double timeout) {
    green_timeout t;
    green_timeout_start(&t, timeout);
    int rc = broker_conn_wait_up(c, -1);
    if (rc == 0) {
        green_redis *r = c->r;
        rc = green_redis_pipeline(r, n, argcs, argvs, argvlens, replies, -1);
        saw_error(c, r, rc);
        if (rc == 0)
            saw_replies(c, r, replies, n);
    }
    green_timeout_end(&t);
    return rc;
}

int broker_conn_eval(broker_conn *c, redisReply **reply, double timeout, broker_script_id id,
                     int argc, const char **argv, const size_t *argvlen) {
    const broker_script *s = broker_script_get(id);
    const char **v = malloc(sizeof *v * (size_t)(argc + 3));
    size_t *l = malloc(sizeof *l * (size_t)(argc + 3));
    if (!v || !l) {
        free(v);
        free(l);
        return -ENOMEM;
    }
    v[0] = "EVALSHA";
    v[1] = s->sha1;
    v[2] = "0";
    for (int i = 0; i < 3; i++)
        l[i] = strlen(v[i]);
    for (int i = 0; i < argc; i++) {
        v[i + 3] = argv[i];
        l[i + 3] = argvlen ? argvlen[i] : strlen(argv[i]);
    }
    green_timeout t;
    green_timeout_start(&t, timeout);
    int rc = broker_conn_call(c, reply, -1, argc + 3, v, l);
    if (rc == 0 && broker_reply_is_noscript(*reply)) {
        freeReplyObject(*reply);
        *reply = NULL;
        const char *load[] = {"SCRIPT", "LOAD", s->text};
        size_t loadlen[] = {6, 4, s->len};
        redisReply *lr = NULL;
        rc = broker_conn_call(c, &lr, -1, 3, load, loadlen);
        if (rc == 0 && lr->type == REDIS_REPLY_ERROR) {
            *reply = lr; /* the load's own error says what is wrong */
            lr = NULL;
        } else if (rc == 0) {
            rc = broker_conn_call(c, reply, -1, argc + 3, v, l);
        }
        if (lr)
            freeReplyObject(lr);
    }
    green_timeout_end(&t);
    free(v);
    free(l);
    return rc;
}

void broker_conn_close(broker_conn *c) {
    if (!c)
        return;
    c->closing = true;
    green_kill(c->owner);
    green_join(c->owner, NULL);
    green_event_destroy(&c->up);
    green_event_destroy(&c->broken);
    free(c->url);
    free(c->name);
    free(c);
}
