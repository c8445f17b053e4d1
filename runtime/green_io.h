/*
 * green_io.h - file descriptors for greenlets: waiting on an fd, and the socket helpers
 * built on that wait (gevent.socket's cooperative connect/recv/sendall/accept).
 *
 * Every fd these helpers touch must be non-blocking: the helpers try the system call
 * first, and only when it says EAGAIN do they park the greenlet on the hub's libev loop
 * until the fd is ready, then try again. Sockets created here are already non-blocking
 * and close-on-exec; green_fd_set_nonblock prepares one that came from elsewhere.
 *
 * Conventions shared by every call that MAY YIELD (they are green.h's):
 *
 *   - `timeout` is in seconds for the whole call: < 0 waits forever, 0 only does what can
 *     be done now, > 0 is a deadline. Enclosing green_timeout scopes apply as well;
 *     whichever deadline is earliest ends the call with -ETIMEDOUT.
 *   - They must be made from a greenlet: from the hub (a libev, curl or hiredis callback)
 *     or a thread with no hub they return -EPERM (and assert in debug builds).
 *   - They first check for a pending green_kill or an expired scope, even when the fd is
 *     ready: -ECANCELED / -ETIMEDOUT then. Killed while parked, they return -ECANCELED.
 *   - Errors are negative errno values straight from the system call that failed
 *     (-ECONNREFUSED, -ECONNRESET, -EPIPE, ...). EINTR is retried, never returned.
 *     Running out of descriptors is reported as -EMFILE (per process) or -ENFILE (system
 *     wide): the daemon raises RLIMIT_NOFILE at start, these calls only say it ran out.
 *   - Nothing here is thread-safe: an fd is waited on by greenlets of one hub. Several
 *     greenlets may wait on the same fd at once (a reader and a writer, typically).
 *
 * The special problem of disappearing file descriptors (libev's manual): when an fd is
 * closed and its number reused, the kernel's interest set may still describe the old
 * one. green_fd_wait re-initialises its watcher (ev_io_set) on every call, which makes
 * libev re-register the fd, so reconnecting with the same fd number is safe. Closing an
 * fd while another greenlet waits on it is a bug (as in any event loop; Debian's libev
 * even aborts on the assertion "I/O watcher with invalid fd found in epoll_ctl"): kill
 * that greenlet first, or shutdown(2) the socket, which wakes it.
 *
 * Name resolution (green_tcp_connect with a host name) runs getaddrinfo on the hub's
 * thread pool (green_threadpool.h), so it parks only the caller; numeric addresses are
 * parsed in place without touching the pool.
 */
#ifndef WORKERD_GREEN_IO_H
#define WORKERD_GREEN_IO_H

#include "green.h"

#include <stddef.h>
#include <sys/types.h>

/* Event bits for green_fd_wait, the same values as libev's EV_READ and EV_WRITE. */
#define GREEN_READ 0x01
#define GREEN_WRITE 0x02

/* Park the calling greenlet until fd is ready for any of `events` (GREEN_READ,
 * GREEN_WRITE or both). MAY YIELD. Returns the ready events (> 0: a subset of `events`;
 * an error or hang-up on the fd counts as ready, so the next system call reports it),
 * -ETIMEDOUT, -ECANCELED, -EPERM, -EBADF (fd is not open), -EINVAL
 * (no known event bit). The watcher lives on the caller's stack and is stopped before
 * the call returns, whatever ended it. */
int green_fd_wait(int fd, int events, double timeout);

/* Make fd non-blocking / close-on-exec. Do not yield; callable anywhere. 0 or -errno. */
int green_fd_set_nonblock(int fd);
int green_fd_set_cloexec(int fd);

/* Read up to len bytes. MAY YIELD (only when nothing can be read yet). Returns the byte
 * count (> 0), 0 at end of stream, or a negative errno. */
ssize_t green_read(int fd, void *buf, size_t len, double timeout);

/* Read exactly len bytes, waiting as needed; timeout covers the whole call. MAY YIELD.
 * Returns len; a shorter count (possibly 0) if the stream ended first; or a negative
 * errno, in which case some bytes may already have been consumed into buf and the
 * stream's position is unknown (close it). */
ssize_t green_read_full(int fd, void *buf, size_t len, double timeout);

/* Write all len bytes, waiting as needed; timeout covers the whole call. MAY YIELD.
 * Sockets are written with MSG_NOSIGNAL, so a closed peer gives -EPIPE rather than
 * SIGPIPE (other fds rely on SIGPIPE being ignored, as the daemon does). Returns 0, or a
 * negative errno after which an unknown prefix of buf has been written. */
int green_write_all(int fd, const void *buf, size_t len, double timeout);

/* Accept one connection on the non-blocking listening socket listen_fd. MAY YIELD.
 * Returns the new fd (non-blocking, close-on-exec; the caller owns it), or a negative
 * errno: -EMFILE / -ENFILE when out of descriptors (the pending connection stays queued
 * in the kernel; retry later), -ETIMEDOUT, -ECANCELED, -EPERM, ... Connections that
 * broke while queued (ECONNABORTED and Linux's other transient network errors) are
 * skipped, never returned. */
int green_accept(int listen_fd, double timeout);

/* Connect a TCP socket to host:port; host is numeric (IPv4 or IPv6) or a name, resolved
 * on the hub's thread pool (green_threadpool.h), only the caller parks. Each resolved
 * address is tried in turn, within the one timeout. MAY YIELD. Returns the connected fd
 * (non-blocking, close-on-exec; the caller owns it) or a negative errno: the last
 * address's error (-ECONNREFUSED, -ENETUNREACH, ...), -ETIMEDOUT, -ECANCELED, -EPERM,
 * -EMFILE; for names that do not resolve -EHOSTUNREACH (no such host) or -EAGAIN
 * (temporary resolver failure); -EINVAL for a bad port (outside 1..65535). */
int green_tcp_connect(const char *host, int port, double timeout);

/* Connect a stream socket to the Unix-domain socket at path. MAY YIELD (a full backlog is
 * retried with a short backoff until the timeout). Returns the fd (non-blocking,
 * close-on-exec) or a negative errno: -ENOENT (no such socket), -ECONNREFUSED (nobody
 * listens), -ENAMETOOLONG, -ETIMEDOUT, -ECANCELED, -EPERM, -EMFILE. */
int green_unix_connect(const char *path, double timeout);

/* Create a listening TCP socket bound to host:port with SO_REUSEADDR, non-blocking and
 * close-on-exec. host must be numeric ("127.0.0.1", "::1"); NULL means every IPv4
 * interface. port 0 picks a free port (see green_sock_port). Does not yield; callable
 * anywhere. Returns the fd or a negative errno (-EADDRINUSE, -EINVAL for a host name). */
int green_tcp_listen(const char *host, int port, int backlog);

/* Create a listening Unix-domain stream socket at path (which must not exist yet),
 * non-blocking and close-on-exec. Does not yield. Returns the fd or a negative errno. */
int green_unix_listen(const char *path, int backlog);

/* The local port a TCP socket is bound to, or a negative errno. Does not yield. */
int green_sock_port(int fd);

#endif
