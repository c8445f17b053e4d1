/*
 * green_server.c - the accept loop and per-connection greenlets of green_server.h.
 *
 * Pieces. A heap green_server; one joinable accept-loop greenlet; one heap `conn` record
 * per accepted connection, linked in the server's list, run by a detached greenlet.
 * Two wait queues: `slots`, where the accept loop parks while max_conns handlers run,
 * and `drained`, where green_server_stop parks until the handlers are gone. Every
 * connection greenlet that ends wakes both, so neither waiter ever polls.
 *
 * Lifetime. The server is reference-counted: one reference for the owner (dropped by
 * green_server_stop), one for the accept loop while it may still run, one per live
 * connection. Whoever drops the last one frees it. So even a stop that cannot wait
 * (killed, or under an expired timeout scope) never leaves a handler pointing at freed
 * memory.
 *
 * Greenlets that never started. green_kill on a greenlet that has not run yet means it
 * never runs (green.h). The server relies on that instead of fighting it: a record
 * carries `started`, and stop, after killing such a greenlet, cleans up in its place
 * (closes the fd, unlinks and frees the record, drops its reference). A started greenlet
 * always cleans up after itself, whatever its handler did.
 *
 * Stacks: green_server_start runs anywhere; the accept loop, the connection greenlets
 * and green_server_stop each on their own greenlet's stack. Nothing runs on the hub.
 */
#include "green_server.h"
#include "green_internal.h"
#include "green_io.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct conn {
    struct conn *prev, *next;
    green_server *srv;
    green_t g;
    int fd;
    bool started;
} conn;

struct green_server {
    int listen_fd;
    green_server_handler handler;
    void *arg;
    size_t max_conns; /* 0: no limit */
    size_t active;    /* records in `conns` */
    size_t accepted;
    int last_error;
    bool logged;   /* the current accept error episode was logged */
    bool stopping; /* no more accepts */
    size_t refs;
    green_t acceptor;
    bool acceptor_started;
    conn *conns;
    green__waitq slots;
    green__waitq drained;
};

static void server_unref(green_server *s) {
    if (--s->refs == 0)
        free(s);
}

static void conn_unlink(green_server *s, conn *c) {
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    s->active--;
}

/* A connection is gone: close it, forget it, and tell whoever waits for a slot or for
 * the server to drain. */
static void conn_finish(green_server *s, conn *c) {
    close(c->fd);
    conn_unlink(s, c);
    free(c);
    green__waitq_wake_one(&s->slots, 0);
    green__waitq_wake_all(&s->drained, 0);
    server_unref(s);
}

static void *conn_main(void *p) {
    conn *c = p;
    green_server *s = c->srv;
    c->started = true;
    s->handler(c->fd, s->arg);
    conn_finish(s, c);
    return NULL;
}

/* Remember an accept or spawn error; say it once per episode, since a server out of
 * descriptors would otherwise flood the log every 100 ms. */
static void note_error(green_server *s, const char *what, int err) {
    s->last_error = err;
    if (!s->logged) {
        fprintf(stderr, "green_server: %s failed on fd %d: %s%s; retrying every 100 ms\n", what,
                s->listen_fd, strerror(-err),
                err == -EMFILE ? " (raise RLIMIT_NOFILE, or lower max_conns)" : "");
        s->logged = true;
    }
}

/* Hand fd to a new connection greenlet. Returns 0 or a negative errno (fd closed). */
static int conn_spawn(green_server *s, int fd) {
    conn *c = calloc(1, sizeof *c);
    if (c == NULL) {
        close(fd);
        return -ENOMEM;
    }
    c->srv = s;
    c->fd = fd;
    int rc = green_spawn(&c->g, conn_main, c);
    if (rc < 0) {
        close(fd);
        free(c);
        return rc;
    }
    green_detach(c->g);
    c->next = s->conns;
    if (s->conns != NULL)
        s->conns->prev = c;
    s->conns = c;
    s->active++;
    s->accepted++;
    s->refs++;
    return 0;
}

static void *accept_loop(void *p) {
    green_server *s = p;
    s->acceptor_started = true;
    while (!s->stopping) {
        if (s->max_conns > 0 && s->active >= s->max_conns) {
            if (green__waitq_wait(&s->slots, GREEN_FOREVER) == -ECANCELED)
                break;
            continue;
        }
        int fd = green_accept(s->listen_fd, -1);
        if (fd == -ECANCELED || s->stopping) {
            if (fd >= 0)
                close(fd);
            break;
        }
        int rc = fd < 0 ? fd : conn_spawn(s, fd);
        if (rc == 0) {
            s->logged = false;
            continue;
        }
        note_error(s, fd < 0 ? "accept" : "spawning a connection greenlet", rc);
        if (green_sleep(0.1) == -ECANCELED)
            break;
    }
    server_unref(s);
    return NULL;
}

int green_server_start(green_server **out, int listen_fd, green_server_handler handler, void *arg,
                       size_t max_conns) {
    if (green_loop() == NULL)
        return -EPERM;
    int rc = green_fd_set_nonblock(listen_fd);
    if (rc < 0)
        return rc;
    green_server *s = calloc(1, sizeof *s);
    if (s == NULL)
        return -ENOMEM;
    s->listen_fd = listen_fd;
    s->handler = handler;
    s->arg = arg;
    s->max_conns = max_conns;
    s->refs = 2; /* the owner and the accept loop */
    rc = green_spawn(&s->acceptor, accept_loop, s);
    if (rc < 0) {
        free(s);
        return rc;
    }
    *out = s;
    return 0;
}

/* Whether the calling greenlet is one of s's connections (a handler stopping its own
 * server), which stop must neither wait for nor kill. */
static bool self_is_conn(green_server *s) {
    green_t me = green_self();
    for (conn *c = s->conns; c != NULL; c = c->next) {
        if (c->g.ptr == me.ptr && c->g.gen == me.gen)
            return true;
    }
    return false;
}

/* Park on `drained` until at most `target` connections are left or the wait fails. */
static int wait_drained(green_server *s, size_t target, double deadline) {
    while (s->active > target) {
        int rc = green__waitq_wait(&s->drained, deadline);
        if (rc < 0)
            return rc;
    }
    return 0;
}

int green_server_stop(green_server *s, double grace) {
    if (!green_in_greenlet()) {
        assert(false && "green_server_stop: must be called from a greenlet");
        return -EPERM;
    }
    int result = 0;
    s->stopping = true;

    /* The accept loop: a kill wakes it from accept or from waiting for a slot. If it
     * never started, it never will, and its reference is ours to drop. */
    green_kill(s->acceptor);
    if (!s->acceptor_started)
        s->refs--;
    int rc = green_join(s->acceptor, NULL);
    if (rc < 0) {
        result = rc;
        green_detach(s->acceptor);
    }

    size_t self = self_is_conn(s) ? 1 : 0;
    if (grace != 0 && result == 0) {
        rc = wait_drained(s, self, green__deadline_in(grace));
        if (rc == -ECANCELED)
            result = rc;
    }

    /* Out of grace: kill the handlers still running; clean up for those not started. */
    green_t me = green_self();
    for (conn *c = s->conns, *next; c != NULL; c = next) {
        next = c->next;
        if (c->g.ptr == me.ptr && c->g.gen == me.gen)
            continue;
        green_kill(c->g);
        if (!c->started)
            conn_finish(s, c);
    }
    /* Killed handlers unwind at their own pace. A failing wait (this greenlet killed, or
     * under an expired scope) gives up waiting; the references keep s alive for them. */
    rc = wait_drained(s, self, GREEN_FOREVER);
    if (rc < 0 && result == 0)
        result = rc;
    server_unref(s);
    return result;
}

void green_server_get_stats(const green_server *s, green_server_stats *out) {
    out->active = s->active;
    out->accepted = s->accepted;
    out->last_error = s->last_error;
}
