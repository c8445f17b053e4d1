/*
 * green_server.h - a TCP or Unix-domain stream server that runs one greenlet per
 * connection (gevent.server.StreamServer).
 *
 * green_server_start spawns an accept loop on the caller's hub. For every connection it
 * accepts, it spawns a detached greenlet that calls handler(fd, arg) and closes fd when
 * the handler returns. With max_conns > 0, at most that many handlers run at once: when
 * the limit is reached the accept loop stops accepting (connections wait in the kernel's
 * backlog) until a handler returns, which is how a server bounds its memory and
 * descriptors under a flood of clients.
 *
 * Accept errors never stop the server: running out of descriptors (-EMFILE, -ENFILE) or
 * memory is logged to stderr once per episode, kept as last_error in the stats, and the
 * loop retries every 100 ms. Only green_server_stop ends it.
 *
 * Ownership: the caller keeps listen_fd (the server makes it non-blocking, never closes
 * it; close it after green_server_stop). The server owns each connection's fd; a handler
 * may read, write and shutdown(2) it, but must not close it. Everything runs on the
 * hub of the thread that started the server. A server must be stopped before the
 * greenlet that owns it (ultimately green_run's main_fn) returns: connections still
 * waiting to start when the hub ends would otherwise leak their fd.
 */
#ifndef WORKERD_GREEN_SERVER_H
#define WORKERD_GREEN_SERVER_H

#include "green.h"

#include <stddef.h>

typedef struct green_server green_server;

/* Runs on its connection's own greenlet; may yield, and should return when its blocking
 * calls return -ECANCELED (green_server_stop kills handlers that outlive the grace). */
typedef void (*green_server_handler)(int fd, void *arg);

/* Start serving listen_fd (a listening stream socket, e.g. from green_tcp_listen).
 * max_conns: the most handlers running at once, 0 for no limit. *out receives the
 * server, which green_server_stop frees. Does not yield; callable from a greenlet or
 * the hub. Returns 0, -EPERM (no hub), -ENOMEM / -EAGAIN (the accept greenlet could not
 * be spawned), or the error of making listen_fd non-blocking (-EBADF). */
int green_server_start(green_server **out, int listen_fd, green_server_handler handler, void *arg,
                       size_t max_conns);

/* Stop accepting at once, then give running handlers `grace` seconds to return on their
 * own (< 0: wait as long as they take; 0: none), then kill the rest (their blocking
 * calls return -ECANCELED) and wait for them to unwind; handlers that had not started
 * yet never run, and their connections are closed. Frees s: it must not be used again.
 * MAY YIELD; must be called from a greenlet (a handler of s may stop its own server: it
 * is neither waited for nor killed). Returns 0, or -ECANCELED / -ETIMEDOUT if the calling
 * greenlet was killed or an enclosing green_timeout expired meanwhile; the server is
 * stopped and freed either way (handlers still unwinding then free it when the last one
 * returns). -EPERM outside a greenlet (s is then untouched). */
int green_server_stop(green_server *s, double grace);

typedef struct green_server_stats {
    size_t active;   /* connections accepted and not yet closed */
    size_t accepted; /* connections accepted since start */
    int last_error;  /* the last accept error (e.g. -EMFILE), 0 if none yet */
} green_server_stats;

/* Counters of s. Does not yield; callable from the hub. */
void green_server_get_stats(const green_server *s, green_server_stats *out);

#endif
