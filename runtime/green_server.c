/*
 * green_server.c - the accept loop, per-connection greenlets and shedding of
 * green_server.h.
 *
 * Pieces. A heap green_server; one joinable accept-loop greenlet; one heap record
 * (green_server_conn) per accepted connection, linked in the server's list in accept
 * order (oldest first), run by a detached greenlet. Two wait queues: `slots`, where the
 * accept loop parks while too many shed connections are still unwinding (or while it
 * waits for a descriptor to be freed), and `drained`, where green_server_stop parks until
 * the handlers are gone. Every connection greenlet that ends wakes both, so neither
 * waiter ever polls.
 *
 * Shedding. The accept loop accepts first and makes room after: only a connection that
 * actually arrives pushes an old one out. The victim is the first record, in accept
 * order, that is idle and not already shed, else the first one not shed: a scan that
 * skips busy connections, which are few (a busy connection is answering a request). A
 * shed connection stays counted in `active` until its greenlet has unwound, and in
 * `shedding` meanwhile; the loop keeps (active - shedding) below max_conns and waits only
 * when `shedding` itself reaches max_conns, so a handler slow to unwind never holds up a
 * new client, and the total stays within twice the bound.
 *
 * Lifetime. The server is reference-counted: one reference for the owner (dropped by
 * green_server_stop), one for the accept loop while it may still run, one per live
 * connection. Whoever drops the last one frees it. So even a stop that cannot wait
 * (killed, or under an expired timeout scope) never leaves a handler pointing at freed
 * memory.
 *
 * Greenlets that never started. green_kill on a greenlet that has not run yet means it
 * never runs (green.h). The server relies on that instead of fighting it: a record
 * carries `started`, and stop or shedding, after killing such a greenlet, cleans up in
 * its place (closes the fd, unlinks and frees the record, drops its reference). A started
 * greenlet always cleans up after itself, whatever its handler did.
 *
 * Stacks: green_server_start and green_server_conn_set_busy run anywhere; the accept
 * loop, the connection greenlets and green_server_stop each on their own greenlet's
 * stack. Nothing runs on the hub.
 */
#include "green_server.h"
#include "green_internal.h"
#include "green_io.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct green_server_conn conn;

struct green_server_conn {
    conn *prev, *next; /* accept order: prev is older */
    green_server *srv;
    green_t g;
    int fd;
    bool started;
    bool busy; /* set by the handler; idle connections are shed first */
    bool shed; /* shut down and killed; unwinding */
};

struct green_server {
    int listen_fd;
    green_server_handler handler;
    void *arg;
    size_t max_conns; /* 0: no limit */
    size_t active;    /* records in the list */
    size_t shedding;  /* records shed and not yet closed */
    size_t accepted;
    size_t shed;
    int last_error;
    bool logged;   /* the current accept error episode was logged */
    bool stopping; /* no more accepts */
    size_t refs;
    green_t acceptor;
    bool acceptor_started;
    conn *oldest, *newest;
    green__waitq slots;
    green__waitq drained;
};

static void server_unref(green_server *s) {
    if (--s->refs == 0)
        free(s);
}

static void conn_link(green_server *s, conn *c) {
    c->prev = s->newest;
    c->next = NULL;
    if (s->newest != NULL)
        s->newest->next = c;
    else
        s->oldest = c;
    s->newest = c;
    s->active++;
}

static void conn_unlink(green_server *s, conn *c) {
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        s->oldest = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    else
        s->newest = c->prev;
    s->active--;
}

/* A connection is gone: close it, forget it, and tell whoever waits for a slot or for
 * the server to drain. */
static void conn_finish(green_server *s, conn *c) {
    close(c->fd);
    conn_unlink(s, c);
    if (c->shed)
        s->shedding--;
    free(c);
    green__waitq_wake_one(&s->slots, 0);
    green__waitq_wake_all(&s->drained, 0);
    server_unref(s);
}

static void *conn_main(void *p) {
    conn *c = p;
    green_server *s = c->srv;
    c->started = true;
    s->handler(c, c->fd, s->arg);
    conn_finish(s, c);
    return NULL;
}

void green_server_conn_set_busy(green_server_conn *c, bool busy) {
    c->busy = busy;
}

/* The connection to shed next: the oldest idle one not already shed; else, unless
 * idle_only, the oldest one not shed. NULL when there is none. */
static conn *next_victim(green_server *s, bool idle_only) {
    conn *oldest_busy = NULL;
    for (conn *c = s->oldest; c != NULL; c = c->next) {
        if (c->shed)
            continue;
        if (!c->busy)
            return c;
        if (oldest_busy == NULL)
            oldest_busy = c;
    }
    return idle_only ? NULL : oldest_busy;
}

/* Shut c down and kill its greenlet; one that never started is closed here and now. */
static void shed_conn(green_server *s, conn *c) {
    c->shed = true;
    s->shedding++;
    s->shed++;
    green_kill(c->g);
    if (!c->started)
        conn_finish(s, c);
    else
        shutdown(c->fd, SHUT_RDWR);
}

/* Room for one more connection: shed until fewer than max_conns are kept, then wait while
 * max_conns shed ones are still unwinding. MAY YIELD. 0 or -ECANCELED. */
static int make_room(green_server *s) {
    if (s->max_conns == 0)
        return 0;
    while (s->active - s->shedding >= s->max_conns) {
        conn *victim = next_victim(s, false);
        if (victim == NULL)
            break;
        shed_conn(s, victim);
    }
    while (s->shedding >= s->max_conns) {
        int rc = green__waitq_wait(&s->slots, GREEN_FOREVER);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* Out of descriptors: shed the oldest idle connection and wait (at most 100 ms) until a
 * connection is closed. MAY YIELD. 0 when one was closed; -ENOENT (nothing idle to shed),
 * -ETIMEDOUT, -ECANCELED. */
static int free_a_descriptor(green_server *s) {
    conn *victim = next_victim(s, true);
    if (victim == NULL)
        return -ENOENT;
    size_t before = s->active;
    shed_conn(s, victim);
    double deadline = green__deadline_in(0.1);
    while (s->active >= before) {
        int rc = green__waitq_wait(&s->slots, deadline);
        if (rc < 0)
            return rc;
    }
    return 0;
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
    conn_link(s, c);
    s->accepted++;
    s->refs++;
    return 0;
}

static void *accept_loop(void *p) {
    green_server *s = p;
    s->acceptor_started = true;
    while (!s->stopping) {
        int fd = green_accept(s->listen_fd, -1);
        if (fd == -ECANCELED || s->stopping) {
            if (fd >= 0)
                close(fd);
            break;
        }
        if (fd == -EMFILE || fd == -ENFILE) {
            note_error(s, "accept", fd);
            int rc = free_a_descriptor(s);
            if (rc == -ECANCELED)
                break;
            if (rc == 0)
                continue;
        } else if (fd >= 0) {
            int rc = make_room(s);
            if (rc < 0) {
                close(fd);
                break;
            }
            rc = conn_spawn(s, fd);
            if (rc == 0) {
                s->logged = false;
                /* Let the new handler read what its client sent before the next accept. */
                if (green_yield() == -ECANCELED)
                    break;
                continue;
            }
            note_error(s, "spawning a connection greenlet", rc);
        } else {
            note_error(s, "accept", fd);
        }
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
    for (conn *c = s->oldest; c != NULL; c = c->next) {
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
    for (conn *c = s->oldest, *next; c != NULL; c = next) {
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
    out->shed = s->shed;
    out->last_error = s->last_error;
}
