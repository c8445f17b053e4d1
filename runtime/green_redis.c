/*
 * green_redis.c - hiredis 0.14 async connections driven by the hub's libev loop, with
 * calls that park only their greenlet (green_redis.h). URLs live in green_redis_url.c.
 *
 * The pieces, and the stack each runs on:
 *
 *   - Connect (greenlet): redisAsyncConnect starts a non-blocking connect, the libev
 *     adapter is attached, and the greenlet parks until on_connect (hub) reports the
 *     outcome or the deadline passes. hiredis 0.14 has no connect timeout: the deadline is
 *     green__park's. On a timeout the context is still ours and is freed with
 *     redisAsyncFree; after a failed connect hiredis has already freed it
 *     (docs/pitfalls.md "hiredis 0.14"), so on_connect forgets the pointer and nothing
 *     touches it again.
 *
 *   - Calls (greenlet): each call puts one `call` record on the heap, formats its
 *     commands itself (so subscribe commands can be refused), queues them with
 *     redisAsyncFormattedCommand and parks. on_reply (hub) deep-copies each reply into
 *     the record and, after the last one, wakes the greenlet. hiredis 0.14 cannot cancel a
 *     queued callback, so a greenlet that stops waiting (timeout, kill) only marks the
 *     record abandoned (call.g = NULL) and drops its reference: the last of the record's
 *     callbacks frees it. No callback ever points into a greenlet's stack.
 *
 *   - Record lifetime: call.refs counts the callbacks still queued plus one for the
 *     waiting greenlet. Whoever drops it to zero frees the record. Replies are matched to
 *     commands by arrival order (call.got), which is hiredis's FIFO order.
 *
 *   - Loss (hub): when the connection breaks, hiredis runs every queued callback with a
 *     NULL reply while the context is still valid, then on_disconnect, then frees the
 *     context. The first of these marks the connection sticky-failed with the reason;
 *     waiting greenlets get that error. green_redis_free (greenlet) does the same through
 *     redisAsyncFree, with -ECONNABORTED, before freeing the object.
 *
 * Invariants: c->ac is NULL exactly when hiredis no longer has a context for c (freed by
 * hiredis after a failure, or by us); c->err != 0 from the first sign of failure on.
 * Callbacks only record results and call green__wake; they never call into hiredis.
 */
#include "green_redis.h"
#include "green_internal.h"

#include <ev.h>
#include <hiredis/adapters/libev.h>
#include <hiredis/async.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ERRSTR_LEN 256

struct green_redis {
    redisAsyncContext *ac;    /* NULL once hiredis or we freed it */
    struct green *connecting; /* the greenlet parked in connect, or NULL */
    bool connect_done;        /* on_connect has run */
    bool freeing;             /* green_redis_free is tearing the context down */
    int connect_errno;        /* errno of a failed connect, from on_connect */
    int err;                  /* sticky error, 0 while healthy */
    size_t inflight;          /* commands queued and not yet answered */
    char where[128];          /* "127.0.0.1:6379" or "unix:/path", for messages */
    char errstr[ERRSTR_LEN];  /* sticky error message, "" while healthy */
};

/* One waiting call: a command or a pipeline. Lives on the heap (see the essay). */
typedef struct call {
    struct green *g;     /* the waiting greenlet; NULL once it stopped waiting */
    size_t n;            /* replies expected */
    size_t got;          /* callbacks run so far */
    size_t refs;         /* callbacks still queued, + 1 while the greenlet holds it */
    int err;             /* first failure seen by a callback */
    redisReply *reply[]; /* n slots of copied replies */
} call;

static _Thread_local char connect_errstr[ERRSTR_LEN];

const char *green_redis_connect_error(void) {
    return connect_errstr;
}

void green__redis_connect_error_set(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(connect_errstr, sizeof connect_errstr, fmt, ap);
    va_end(ap);
}

#define set_connect_error green__redis_connect_error_set

/* Record the first failure of c; later ones keep the original reason. */
static void set_failed(green_redis *c, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_failed(green_redis *c, int err, const char *fmt, ...) {
    if (c->err != 0)
        return;
    c->err = err;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->errstr, sizeof c->errstr, fmt, ap);
    va_end(ap);
}

/* Map a hiredis context error (REDIS_ERR_*) to the errno a caller sees. */
static int map_redis_err(int redis_err) {
    switch (redis_err) {
    case REDIS_ERR_EOF:
        return -ECONNRESET;
    case REDIS_ERR_PROTOCOL:
        return -EPROTO;
    case REDIS_ERR_OOM:
        return -ENOMEM;
    default:
        return -EIO;
    }
}

/* Called by hiredis (hub) with a NULL reply: the context is going away. The context is
 * still valid here, so its error says why. */
static void note_lost(green_redis *c, const redisAsyncContext *ac) {
    if (c->freeing)
        set_failed(c, -ECONNABORTED, "redis: connection to %s closed by its owner", c->where);
    else if (ac->err != 0)
        set_failed(c, map_redis_err(ac->err), "redis: connection lost: %s",
                   ac->errstr ? ac->errstr : "unknown error");
    else
        set_failed(c, -ECONNRESET, "redis: connection lost: closed");
}

/* ---- reply copies ---- */

/* Deep-copy r with malloc/calloc, the allocators freeReplyObject frees with in hiredis
 * 0.14 (its hi_malloc is malloc that aborts on failure; we return NULL instead). Strings
 * keep hiredis's trailing NUL. Depth is bounded by hiredis's reader (a few levels). */
static redisReply *copy_reply(const redisReply *r) {
    redisReply *out = calloc(1, sizeof *out);
    if (out == NULL)
        return NULL;
    out->type = r->type;
    out->integer = r->integer;
    switch (r->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
    case REDIS_REPLY_ERROR:
        out->str = malloc(r->len + 1);
        if (out->str == NULL)
            goto fail;
        memcpy(out->str, r->str, r->len);
        out->str[r->len] = '\0';
        out->len = r->len;
        break;
    case REDIS_REPLY_ARRAY:
        if (r->elements == 0)
            break;
        out->element = calloc(r->elements, sizeof *out->element);
        if (out->element == NULL)
            goto fail;
        out->elements = r->elements;
        for (size_t i = 0; i < r->elements; i++) {
            if (r->element[i] != NULL && (out->element[i] = copy_reply(r->element[i])) == NULL)
                goto fail;
        }
        break;
    default:
        break;
    }
    return out;
fail:
    freeReplyObject(out);
    return NULL;
}

/* ---- hiredis callbacks (hub stack) ---- */

static void call_unref(call *k) {
    if (--k->refs > 0)
        return;
    for (size_t i = 0; i < k->n; i++)
        freeReplyObject(k->reply[i]);
    free(k);
}

static void on_reply(redisAsyncContext *ac, void *r, void *privdata) {
    call *k = privdata;
    green_redis *c = ac->data;
    size_t i = k->got++;
    assert(i < k->n && "green_redis: more replies than commands");
    c->inflight--;
    if (r == NULL) {
        note_lost(c, ac);
        if (k->err == 0)
            k->err = c->err;
    } else if (k->g != NULL && k->err == 0) {
        k->reply[i] = copy_reply(r);
        if (k->reply[i] == NULL)
            k->err = -ENOMEM;
    }
    if (k->got == k->n && k->g != NULL)
        green__wake(k->g, 0);
    call_unref(k);
}

static void on_connect(const redisAsyncContext *ac, int status) {
    int e = errno; /* the failed connect's errno, set by redisCheckSocketError */
    green_redis *c = ac->data;
    c->connect_done = true;
    if (status != REDIS_OK) {
        /* hiredis frees the context right after this callback returns. */
        c->connect_errno = e != 0 ? e : EIO;
        set_failed(c, -c->connect_errno, "%s", ac->errstr ? ac->errstr : strerror(e));
        c->ac = NULL;
    }
    if (c->connecting != NULL)
        green__wake(c->connecting, 0);
}

static void on_disconnect(const redisAsyncContext *ac, int status) {
    green_redis *c = ac->data;
    (void)status;
    /* Reply callbacks ran first (with NULL) if any were queued; an idle connection learns
     * of the loss only here. */
    note_lost(c, ac);
    c->ac = NULL;
}

/* ---- connecting (greenlet stack) ---- */

static green_redis *connect_finish(green_redis *c, double timeout, int *err) {
    int rc = 0;
    redisAsyncContext *ac = c->ac;
    struct ev_loop *loop = green_loop();
    if (redisLibevAttach(loop, ac) != REDIS_OK) {
        rc = -ENOMEM;
        set_connect_error("redis: cannot attach %s to the loop", c->where);
        goto fail;
    }
    ac->data = c;
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    /* Setting the connect callback also starts the write watcher that detects the end of
     * the connect, so it comes after the adapter is attached. */
    redisAsyncSetConnectCallback(ac, on_connect);

    double deadline = green__deadline_in(timeout);
    c->connecting = green__current();
    while (rc == 0 && !c->connect_done)
        rc = green__park(deadline);
    c->connecting = NULL;
    if (!c->connect_done) {
        set_connect_error("redis: connect to %s: %s", c->where,
                          rc == -ETIMEDOUT ? "timed out" : strerror(-rc));
        goto fail;
    }
    if (c->connect_errno != 0) {
        rc = -c->connect_errno;
        set_connect_error("redis: cannot connect to %s: %s", c->where, c->errstr);
        goto fail;
    }
    if (rc != 0) {
        /* Connected, but the caller was killed or timed out in the same instant. */
        set_connect_error("redis: connect to %s: %s", c->where, strerror(-rc));
        goto fail;
    }
    /* The connection may already have been lost again (c->ac NULL, c->err set): the
     * caller then gets a connection whose first call reports why. */
    if (c->ac != NULL && c->ac->c.connection_type == REDIS_CONN_TCP)
        redisEnableKeepAlive(&c->ac->c); /* so a vanished peer is noticed while idle */
    return c;
fail:
    *err = rc;
    green_redis_free(c);
    return NULL;
}

/* Common start of both connects: check the caller, then make the context (the connect
 * system call itself runs here, non-blocking). */
static green_redis *connect_start(const char *host, int port, const char *path, double timeout,
                                  int *err) {
    int dummy;
    if (err == NULL)
        err = &dummy;
    *err = 0;
    int rc = green__check();
    if (rc != 0) {
        *err = rc;
        set_connect_error("redis: connect: %s", strerror(-rc));
        return NULL;
    }
    green_redis *c = calloc(1, sizeof *c);
    if (c == NULL) {
        *err = -ENOMEM;
        set_connect_error("redis: connect: out of memory");
        return NULL;
    }
    if (path != NULL)
        snprintf(c->where, sizeof c->where, "unix:%s", path);
    else
        snprintf(c->where, sizeof c->where, "%s:%d", host, port);
    if (timeout == 0) {
        *err = -ETIMEDOUT;
        set_connect_error("redis: connect to %s: timed out", c->where);
        free(c);
        return NULL;
    }
    errno = 0;
    redisAsyncContext *ac = path ? redisAsyncConnectUnix(path) : redisAsyncConnect(host, port);
    int e = errno;
    if (ac == NULL) {
        *err = -ENOMEM;
        set_connect_error("redis: connect to %s: out of memory", c->where);
        free(c);
        return NULL;
    }
    if (ac->err != 0) {
        /* Failed at once (refused, no such socket file, unknown host): hiredis keeps the
         * context for us to read and free. */
        if (ac->err == REDIS_ERR_IO)
            *err = e != 0 ? -e : -EIO;
        else
            *err = ac->err == REDIS_ERR_OTHER ? -EHOSTUNREACH : -EIO; /* e.g. unknown host */
        set_connect_error("redis: cannot connect to %s: %s", c->where, ac->errstr);
        redisAsyncFree(ac);
        free(c);
        return NULL;
    }
    c->ac = ac;
    return connect_finish(c, timeout, err);
}

green_redis *green_redis_connect_tcp(const char *host, int port, double timeout, int *err) {
    return connect_start(host, port, NULL, timeout, err);
}

green_redis *green_redis_connect_unix(const char *path, double timeout, int *err) {
    return connect_start(NULL, 0, path, timeout, err);
}

/* ---- calls (greenlet stack) ---- */

/* True if the RESP-formatted command cmd names a command whose replies do not pair
 * one-to-one with it (hiredis would route them to its pub/sub machinery). */
static bool is_unpaired(const char *cmd, size_t len) {
    static const char *const names[] = {"subscribe", "psubscribe", "unsubscribe", "punsubscribe",
                                        "monitor"};
    /* "*<argc>\r\n$<len>\r\n<name>\r\n" */
    const char *p = memchr(cmd, '\n', len);
    if (p == NULL || (p = memchr(p + 1, '\n', len - (size_t)(p + 1 - cmd))) == NULL)
        return false;
    p++;
    size_t rest = len - (size_t)(p - cmd);
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        size_t n = strlen(names[i]);
        if (rest >= n + 2 && strncasecmp(p, names[i], n) == 0 && p[n] == '\r')
            return true;
    }
    return false;
}

static int call_begin(green_redis *c, double timeout) {
    int rc = green__check();
    if (rc != 0)
        return rc;
    if (c->err != 0)
        return c->err;
    if (c->ac == NULL)
        return -ENOTCONN;
    if (timeout == 0)
        return -ETIMEDOUT;
    return 0;
}

static call *call_new(size_t n) {
    call *k = calloc(1, sizeof *k + n * sizeof k->reply[0]);
    if (k == NULL)
        return NULL;
    k->n = n;
    k->refs = 1;
    return k;
}

/* Queue one formatted command for k. The command buffer is copied by hiredis. */
static int call_send(green_redis *c, call *k, const char *cmd, size_t len) {
    if (is_unpaired(cmd, len))
        return -ENOTSUP;
    if (redisAsyncFormattedCommand(c->ac, on_reply, k, cmd, len) != REDIS_OK)
        return -EIO;
    k->refs++;
    c->inflight++;
    return 0;
}

/* Park until k is complete, then hand its replies over (into out[0..n-1], all NULL on
 * error) and drop the greenlet's reference. Touches c only before parking: after it, c
 * may have been freed by another greenlet. */
static int call_wait(call *k, double timeout, redisReply **out) {
    double deadline = green__deadline_in(timeout);
    int rc = 0;
    k->g = green__current();
    while (rc == 0 && k->got < k->n)
        rc = green__park(deadline);
    k->g = NULL;
    if (rc == 0)
        rc = k->err;
    for (size_t i = 0; i < k->n; i++) {
        if (rc == 0) {
            out[i] = k->reply[i];
            k->reply[i] = NULL;
        } else {
            out[i] = NULL;
            freeReplyObject(k->reply[i]);
            k->reply[i] = NULL;
        }
    }
    call_unref(k);
    return rc;
}

/* Abandon a call whose sending failed part-way: the commands already queued keep their
 * references, and their replies will be discarded. */
static int call_abort(call *k, int rc) {
    k->n = k->got + (k->refs - 1); /* only what was queued will ever answer */
    call_unref(k);
    return rc;
}

int green_redis_vcommand(green_redis *c, redisReply **reply, double timeout, const char *fmt,
                         va_list ap) {
    *reply = NULL;
    int rc = call_begin(c, timeout);
    if (rc != 0)
        return rc;
    char *cmd = NULL;
    int len = redisvFormatCommand(&cmd, fmt, ap);
    if (len < 0)
        return len == -2 ? -EINVAL : -ENOMEM; /* hiredis: -2 bad format, -1 no memory */
    call *k = call_new(1);
    if (k == NULL) {
        redisFreeCommand(cmd);
        return -ENOMEM;
    }
    rc = call_send(c, k, cmd, (size_t)len);
    redisFreeCommand(cmd);
    if (rc != 0)
        return call_abort(k, rc);
    return call_wait(k, timeout, reply);
}

int green_redis_command(green_redis *c, redisReply **reply, double timeout, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int rc = green_redis_vcommand(c, reply, timeout, fmt, ap);
    va_end(ap);
    return rc;
}

int green_redis_commandargv(green_redis *c, redisReply **reply, double timeout, int argc,
                            const char **argv, const size_t *argvlen) {
    const int argcs[1] = {argc};
    const char **const argvs[1] = {argv};
    const size_t *const lens[1] = {argvlen};
    return green_redis_pipeline(c, 1, argcs, argvs, lens, reply, timeout);
}

int green_redis_pipeline(green_redis *c, size_t n, const int *argcs, const char **const *argvs,
                         const size_t *const *argvlens, redisReply **replies, double timeout) {
    for (size_t i = 0; i < n; i++)
        replies[i] = NULL;
    int rc = call_begin(c, timeout);
    if (rc != 0 || n == 0)
        return rc;
    call *k = call_new(n);
    if (k == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        if (argcs[i] < 1)
            return call_abort(k, -EINVAL);
        char *cmd = NULL;
        int len =
            redisFormatCommandArgv(&cmd, argcs[i], argvs[i], argvlens != NULL ? argvlens[i] : NULL);
        if (len < 0)
            return call_abort(k, -ENOMEM);
        rc = call_send(c, k, cmd, (size_t)len);
        redisFreeCommand(cmd);
        if (rc != 0)
            return call_abort(k, rc);
    }
    return call_wait(k, timeout, replies);
}

/* ---- state and teardown ---- */

bool green_redis_is_connected(const green_redis *c) {
    return c->ac != NULL && c->err == 0;
}

int green_redis_error(const green_redis *c) {
    return c->err;
}

const char *green_redis_last_error(const green_redis *c) {
    return c->errstr;
}

const char *green_redis_peer(const green_redis *c) {
    return c->where;
}

size_t green_redis_inflight(const green_redis *c) {
    return c->inflight;
}

void green_redis_free(green_redis *c) {
    if (c == NULL)
        return;
    if (c->ac != NULL) {
        assert(!(c->ac->c.flags & REDIS_IN_CALLBACK) &&
               "green_redis_free: not from inside a hiredis callback");
        /* Runs every queued callback with a NULL reply (waking or freeing their calls),
         * then on_disconnect if it was connected, then frees the context. */
        c->freeing = true;
        redisAsyncFree(c->ac);
        c->ac = NULL;
    }
    free(c);
}

/* ---- connecting by URL (greenlet stack) ---- */

/* Send one setup command of connect_url; a Redis error reply becomes err_on_reply, with
 * the server's text in the connect error (Redis never echoes a password back). */
static int setup_command(green_redis *c, int argc, const char **argv, int err_on_reply,
                         const char *what) {
    redisReply *r = NULL;
    int rc = green_redis_commandargv(c, &r, -1, argc, argv, NULL);
    if (rc != 0) {
        set_connect_error("redis: %s: %s", what, c->err != 0 ? c->errstr : strerror(-rc));
        return rc;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        set_connect_error("redis: %s failed: %.200s", what, r->str);
        rc = err_on_reply;
    }
    freeReplyObject(r);
    return rc;
}

/* AUTH and SELECT as u says, on a fresh connection. */
int green__redis_setup(green_redis *c, const green_redis_url *u) {
    int rc = 0;
    if (u->password != NULL) {
        char what[160];
        if (u->user != NULL) {
            snprintf(what, sizeof what, "AUTH as user '%.100s'", u->user);
            const char *argv[] = {"AUTH", u->user, u->password};
            rc = setup_command(c, 3, argv, -EACCES, what);
        } else {
            const char *argv[] = {"AUTH", u->password};
            rc = setup_command(c, 2, argv, -EACCES, "AUTH");
        }
    }
    if (rc == 0 && u->db != 0) {
        char db[16], what[32];
        snprintf(db, sizeof db, "%d", u->db);
        snprintf(what, sizeof what, "SELECT %d", u->db);
        const char *argv[] = {"SELECT", db};
        rc = setup_command(c, 2, argv, -EINVAL, what);
    }
    return rc;
}

green_redis *green_redis_connect_url(const char *url, double timeout, int *err) {
    int dummy;
    if (err == NULL)
        err = &dummy;
    green_redis_url u;
    int rc = green_redis_url_parse(url, &u, connect_errstr, sizeof connect_errstr);
    if (rc != 0) {
        if (rc == -ENOMEM)
            set_connect_error("redis: connect: out of memory");
        *err = rc;
        return NULL;
    }
    /* One deadline for connect, AUTH and SELECT together: a scope around all three. */
    green_timeout scope;
    bool scoped = green_in_greenlet();
    if (scoped)
        green_timeout_start(&scope, timeout);
    green_redis *c = u.master != NULL ? green__redis_connect_sentinel(&u, err)
                     : u.path != NULL ? green_redis_connect_unix(u.path, -1, err)
                                      : green_redis_connect_tcp(u.host, u.port, -1, err);
    if (c != NULL && u.master == NULL && (rc = green__redis_setup(c, &u)) != 0) {
        *err = rc;
        green_redis_free(c);
        c = NULL;
    }
    if (scoped)
        green_timeout_end(&scope);
    green_redis_url_clear(&u);
    return c;
}
