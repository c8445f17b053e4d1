/*
 * wd_notify.c - the sd_notify(3) protocol of wd_notify.h: one AF_UNIX datagram per
 * notification, sent to the address in $NOTIFY_SOCKET.
 *
 * Each call opens a socket, sends and closes it, as libsystemd does: there is no state to
 * keep in step with the environment, and a notification is rare (start, stop, reload, a
 * status change, a watchdog ping every few seconds), so the two extra system calls do not
 * matter. The socket is blocking with a 100 ms send timeout: a datagram to a manager whose
 * receive queue is full would otherwise wait without bound, on the hub's stack, stalling
 * every greenlet. Dropping a watchdog ping then is harmless (the next one comes at half
 * the interval); a lost READY=1 would show up as a start timeout, which is why the wait is
 * not zero.
 *
 * No credentials are attached by hand: the kernel adds the sender's pid, uid and gid for a
 * receiver with SO_PASSCRED, which is how systemd matches a notification to its unit.
 *
 * Runs on any stack; never yields; no global state.
 */
#include "wd_notify.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

/* Fill *sa from NOTIFY_SOCKET's value; returns the address length, or -EINVAL. */
static int notify_address(const char *where, struct sockaddr_un *sa) {
    size_t len = strlen(where);
    memset(sa, 0, sizeof *sa);
    sa->sun_family = AF_UNIX;
    if (where[0] == '@') {
        /* Abstract: the leading NUL replaces '@', and the name is exactly the bytes after
         * it, with no terminator (the length says where it ends). */
        if (len < 2 || len > sizeof sa->sun_path)
            return -EINVAL;
        memcpy(sa->sun_path + 1, where + 1, len - 1);
        return (int)(offsetof(struct sockaddr_un, sun_path) + len);
    }
    /* A path must be absolute (systemd's rule: a relative one would depend on our working
     * directory) and fit with its terminating NUL. */
    if (where[0] != '/' || len >= sizeof sa->sun_path)
        return -EINVAL;
    memcpy(sa->sun_path, where, len);
    return (int)(offsetof(struct sockaddr_un, sun_path) + len + 1);
}

int wd_notify(const char *state) {
    const char *where = getenv("NOTIFY_SOCKET");
    if (where == NULL || where[0] == '\0')
        return 0;
    if (state == NULL || state[0] == '\0')
        return -EINVAL;
    struct sockaddr_un sa;
    int salen = notify_address(where, &sa);
    if (salen < 0)
        return salen;

    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    struct timeval tv = {.tv_sec = 0, .tv_usec = 100 * 1000};
    int rc = 0;
    if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0) {
        rc = -errno;
    } else {
        size_t len = strlen(state);
        ssize_t n = sendto(fd, state, len, MSG_NOSIGNAL, (struct sockaddr *)&sa, (socklen_t)salen);
        if (n < 0)
            rc = errno == EWOULDBLOCK ? -EAGAIN : -errno;
        else if ((size_t)n != len) /* a datagram is all or nothing; this is paranoia */
            rc = -EIO;
    }
    close(fd);
    return rc;
}

int wd_notifyf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *text = NULL;
    int n = vasprintf(&text, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -ENOMEM;
    int rc = wd_notify(text);
    free(text);
    return rc;
}

/* A whole positive decimal number; 0 on success, -EINVAL otherwise. */
static int parse_positive(const char *text, unsigned long long *out) {
    if (text[0] < '0' || text[0] > '9') /* strtoull would take blanks and a '-' */
        return -EINVAL;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno != 0 || *end != '\0' || v == 0)
        return -EINVAL;
    *out = v;
    return 0;
}

int64_t wd_notify_watchdog_usec(void) {
    const char *usec_text = getenv("WATCHDOG_USEC");
    if (usec_text == NULL || usec_text[0] == '\0')
        return 0;
    unsigned long long usec;
    if (parse_positive(usec_text, &usec) < 0 || usec > INT64_MAX)
        return -EINVAL;
    /* WATCHDOG_PID says whose watchdog this is; a child that inherited the variables must
     * not think it is being watched. Without it, the interval is ours. */
    const char *pid_text = getenv("WATCHDOG_PID");
    if (pid_text != NULL && pid_text[0] != '\0') {
        unsigned long long pid;
        if (parse_positive(pid_text, &pid) < 0)
            return -EINVAL;
        if (pid != (unsigned long long)getpid())
            return 0;
    }
    return (int64_t)usec;
}
