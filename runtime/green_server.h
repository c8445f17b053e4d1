/*
 * green_server.h - a TCP or Unix-domain stream server that runs one greenlet per
 * connection (gevent.server.StreamServer), and stays reachable under a flood of idle or
 * slow clients.
 *
 * green_server_start spawns an accept loop on the caller's hub. For every connection it
 * accepts, it spawns a detached greenlet that calls handler(conn, fd, arg) and closes fd
 * when the handler returns. After each connection it accepts, the accept loop yields, so
 * the new handler gets to read what its client sent before the next accept.
 *
 * Shedding. With max_conns > 0, at most that many connections are kept. A connection is
 * "idle" until its handler marks it busy (green_server_conn_set_busy), typically once a
 * whole request has arrived, and may mark it idle again once the answer is out. When a
 * new connection arrives at the bound, the server keeps the new one and sheds an old one:
 * the oldest idle connection, or, when every connection is busy, the oldest busy one. So
 * clients that connect and send nothing, or a request one byte at a time, can never keep
 * a fresh client out: at worst each new connection pushes out the one that waited
 * longest. Memory and descriptors stay bounded by max_conns (plus the shed connections
 * still unwinding, at most max_conns more).
 *
 * Shedding a connection shuts its socket down (shutdown(2) both ways: a read returns end
 * of stream, a write -EPIPE) and kills its greenlet (its pending or next blocking call
 * returns -ECANCELED; green_kill is delivered once). A handler should therefore return
 * promptly when its calls fail that way; it must not rely on finishing an answer. A shed
 * connection whose greenlet had not started yet is closed in place: its handler never
 * runs.
 *
 * Accept errors never stop the server: running out of descriptors (-EMFILE, -ENFILE) or
 * memory is logged to stderr once per episode, kept as last_error in the stats, and the
 * loop retries every 100 ms. Out of descriptors, it first sheds the oldest idle
 * connection (if any) to free one, and retries as soon as that one is closed.
 * Only green_server_stop ends it.
 *
 * Ownership: the caller keeps listen_fd (the server makes it non-blocking, never closes
 * it; close it after green_server_stop). The server owns each connection's fd and its
 * green_server_conn (valid until the handler returns); a handler may read, write and
 * shutdown(2) the fd, but must not close it. Everything runs on the hub of the thread
 * that started the server. A server must be stopped before the greenlet that owns it
 * (ultimately green_run's main_fn) returns: connections still waiting to start when the
 * hub ends would otherwise leak their fd.
 */
#ifndef WORKERD_GREEN_SERVER_H
#define WORKERD_GREEN_SERVER_H

#include "green.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct green_server green_server;

/* One accepted connection, as its handler sees it. */
typedef struct green_server_conn green_server_conn;

/* Runs on its connection's own greenlet; may yield, and should return when its blocking
 * calls return -ECANCELED (the connection was shed, or green_server_stop kills handlers
 * that outlive the grace). fd is conn's socket (non-blocking). */
typedef void (*green_server_handler)(green_server_conn *conn, int fd, void *arg);

/* Start serving listen_fd (a listening stream socket, e.g. from green_tcp_listen).
 * max_conns: the most connections kept at once (see "Shedding"), 0 for no limit. *out
 * receives the server, which green_server_stop frees. Does not yield; callable from a
 * greenlet or the hub. Returns 0, -EPERM (no hub), -ENOMEM / -EAGAIN (the accept greenlet
 * could not be spawned), or the error of making listen_fd non-blocking (-EBADF). */
int green_server_start(green_server **out, int listen_fd, green_server_handler handler, void *arg,
                       size_t max_conns);

/* Mark conn busy (true: shed only when every connection is busy) or idle (false: shed
 * first, oldest first). Every connection starts idle. Call from conn's handler. Does not
 * yield. */
void green_server_conn_set_busy(green_server_conn *conn, bool busy);

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
    size_t shed;     /* connections shed since start (see "Shedding") */
    int last_error;  /* the last accept error (e.g. -EMFILE), 0 if none yet */
} green_server_stats;

/* Counters of s. Does not yield; callable from the hub. */
void green_server_get_stats(const green_server *s, green_server_stats *out);

#endif
