/*
 * green_io.c - waiting on file descriptors, and the read/write/accept helpers built on
 * that wait (green_io.h). Connecting and listening live in green_sock.c.
 *
 * green_fd_wait is the one place a greenlet meets libev's ev_io. Its watcher lives in the
 * waiting greenlet's frame: it is initialised (ev_io_init, which is ev_io_set, so libev
 * re-registers the fd: the "disappearing file descriptors" problem), started, and then
 * the greenlet parks. The callback, on the hub's stack, stops the watcher and wakes the
 * greenlet with the ready events as the wake code. Whatever ends the park (that wake, a
 * deadline, green_kill), the greenlet stops the watcher again before returning (a no-op
 * if the callback already did), so when green_fd_wait returns no watcher points into
 * its frame, and no callback can ever touch a dead greenlet's stack.
 *
 * The helpers follow one pattern: check for a pending kill or expired scope, then loop
 * { try the non-blocking system call; EINTR -> retry; EAGAIN -> green_fd_wait until the
 * call's one absolute deadline; anything else -> return it }. The deadline is fixed at
 * the start so that a slow trickle of data cannot stretch a read_full or write_all past
 * the caller's timeout.
 *
 * Stacks: everything here runs on the calling greenlet's stack, except io_ready (hub).
 */
#include "green_io.h"
#include "green_internal.h"

#include <ev.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

/* Called by libev on the hub's stack when the fd is ready (or libev found it invalid).
 * It only wakes the greenlet; stopping here keeps a level-triggered fd from firing again
 * before the greenlet has run, and the greenlet's own stop afterwards is then a no-op. */
static void io_ready(struct ev_loop *loop, ev_io *w, int revents) {
    ev_io_stop(loop, w);
    int code;
    if (revents & EV_ERROR)
        code = -EBADF;
    else
        code = revents & (EV_READ | EV_WRITE);
    green__wake(w->data, code);
}

/* The wait itself, without green__check: the helpers have already made that check at
 * their start and only come here when the system call said EAGAIN. */
static int wait_fd(int fd, int events, double deadline) {
    struct ev_loop *loop = green_loop();
    if (loop == NULL)
        return -EPERM;
    ev_io w;
    ev_io_init(&w, io_ready, fd, events);
    w.data = green__current();
    ev_io_start(loop, &w);
    int rc = green__park(deadline);
    ev_io_stop(loop, &w);
    return rc;
}

int green_fd_wait(int fd, int events, double timeout) {
    if (fd < 0)
        return -EBADF;
    if ((events & (GREEN_READ | GREEN_WRITE)) == 0 || (events & ~(GREEN_READ | GREEN_WRITE)))
        return -EINVAL;
    /* libev asserts (aborts the process) when epoll_ctl finds an fd invalid, so look
     * before handing it over. The helpers below skip this: their own system call on the
     * fd has just said EAGAIN, which proves it open. */
    if (fcntl(fd, F_GETFD) < 0)
        return -errno;
    int rc = green__check();
    if (rc < 0)
        return rc;
    /* Our bits are libev's (green_io.h says so); the static asserts keep it true. */
    _Static_assert(GREEN_READ == EV_READ && GREEN_WRITE == EV_WRITE, "event bits");
    return wait_fd(fd, events, green__deadline_in(timeout));
}

static int set_flag(int fd, int get, int set, int flag) {
    int flags = fcntl(fd, get);
    if (flags < 0)
        return -errno;
    if (flags & flag)
        return 0;
    if (fcntl(fd, set, flags | flag) < 0)
        return -errno;
    return 0;
}

int green_fd_set_nonblock(int fd) {
    return set_flag(fd, F_GETFL, F_SETFL, O_NONBLOCK);
}

int green_fd_set_cloexec(int fd) {
    return set_flag(fd, F_GETFD, F_SETFD, FD_CLOEXEC);
}

/* One read attempt loop with a fixed absolute deadline; shared by read and read_full. */
static ssize_t read_until(int fd, void *buf, size_t len, double deadline) {
    for (;;) {
        ssize_t n = read(fd, buf, len);
        if (n >= 0)
            return n;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return -errno;
        int rc = wait_fd(fd, GREEN_READ, deadline);
        if (rc < 0)
            return rc;
    }
}

ssize_t green_read(int fd, void *buf, size_t len, double timeout) {
    int rc = green__check();
    if (rc < 0)
        return rc;
    return read_until(fd, buf, len, green__deadline_in(timeout));
}

ssize_t green_read_full(int fd, void *buf, size_t len, double timeout) {
    int rc = green__check();
    if (rc < 0)
        return rc;
    double deadline = green__deadline_in(timeout);
    size_t got = 0;
    while (got < len) {
        ssize_t n = read_until(fd, (char *)buf + got, len - got, deadline);
        if (n < 0)
            return n;
        if (n == 0)
            break;
        got += (size_t)n;
    }
    return (ssize_t)got;
}

/* send with MSG_NOSIGNAL for sockets, so a closed peer is -EPIPE and not a signal; plain
 * write for pipes and the rest. *is_sock starts true and is cleared on ENOTSOCK, so the
 * fallback costs one failed call per write_all, not per chunk. */
static ssize_t write_some(int fd, const void *buf, size_t len, bool *is_sock) {
    if (*is_sock) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
        if (n >= 0 || errno != ENOTSOCK)
            return n;
        *is_sock = false;
    }
    return write(fd, buf, len);
}

int green_write_all(int fd, const void *buf, size_t len, double timeout) {
    int rc = green__check();
    if (rc < 0)
        return rc;
    double deadline = green__deadline_in(timeout);
    bool is_sock = true;
    size_t done = 0;
    while (done < len) {
        ssize_t n = write_some(fd, (const char *)buf + done, len - done, &is_sock);
        if (n >= 0) {
            done += (size_t)n;
            continue;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return -errno;
        rc = wait_fd(fd, GREEN_WRITE, deadline);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* accept4's errors that only concern the one connection that broke while it waited in
 * the queue; Linux passes the new socket's pending network errors up through accept
 * (accept(2), "Error handling"), and the right answer is to accept the next one. */
static bool accept_error_is_transient(int err) {
    switch (err) {
    case ECONNABORTED:
    case EPROTO:
    case ENOPROTOOPT:
    case EHOSTDOWN:
    case ENONET:
    case EHOSTUNREACH:
    case EOPNOTSUPP:
    case ENETDOWN:
    case ENETUNREACH:
        return true;
    default:
        return false;
    }
}

int green_accept(int listen_fd, double timeout) {
    int rc = green__check();
    if (rc < 0)
        return rc;
    double deadline = green__deadline_in(timeout);
    for (;;) {
        int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0)
            return fd;
        if (errno == EINTR || accept_error_is_transient(errno))
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return -errno;
        rc = wait_fd(listen_fd, GREEN_READ, deadline);
        if (rc < 0)
            return rc;
    }
}
