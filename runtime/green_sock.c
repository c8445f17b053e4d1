/*
 * green_sock.c - making sockets: cooperative TCP and Unix-domain connects, listening
 * sockets, and name resolution on the thread pool (green_io.h).
 *
 * A connect is gevent's create_connection: resolve, then for each address make a
 * non-blocking, close-on-exec socket, connect(2), and on EINPROGRESS park in
 * green_fd_wait until the socket is writable, when SO_ERROR tells how the handshake
 * ended. One absolute deadline, fixed at the start, covers resolution and every address,
 * so a host with many unreachable addresses cannot multiply the caller's timeout.
 *
 * Resolution. Numeric hosts are parsed in place (getaddrinfo with AI_NUMERICHOST never
 * touches the network). Names go to getaddrinfo on a pool thread, since it blocks (files,
 * DNS). Its record lives on the heap and is owned by the pool once the caller gives up
 * (killed or out of time): the release hook frees it, with whatever the resolver found,
 * when getaddrinfo finally returns (green_threadpool.h, "abandoned jobs").
 *
 * Listening sockets are made without yielding, so they can be created before green_run.
 * Their hosts must be numeric: binding is configuration, and a resolver round trip there
 * would hide a typo behind a DNS answer.
 *
 * Stacks: connects run on the calling greenlet's stack (and getaddrinfo on a pool
 * thread); the rest runs wherever it is called.
 */
#include "green_io.h"
#include "green_internal.h"
#include "green_threadpool.h"

#include <ev.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* The remaining seconds until an absolute deadline, as the public timeouts take them. */
static double remaining(double deadline) {
    if (deadline >= GREEN_FOREVER)
        return -1;
    double left = deadline - ev_time();
    return left > 0 ? left : 0;
}

/* getaddrinfo's EAI_* codes as the negative errno values green_io.h promises. err_no is
 * errno as getaddrinfo left it (only meaningful for EAI_SYSTEM). */
static int gai_to_errno(int gai, int err_no) {
    switch (gai) {
    case 0:
        return 0;
    case EAI_NONAME:
    case EAI_NODATA:
    case EAI_FAIL:
    case EAI_ADDRFAMILY:
        return -EHOSTUNREACH;
    case EAI_AGAIN:
        return -EAGAIN;
    case EAI_MEMORY:
        return -ENOMEM;
    case EAI_SYSTEM:
        return err_no > 0 ? -err_no : -EIO;
    default:
        return -EINVAL;
    }
}

/* A resolution handed to a pool thread. Owned by the pool while the call is abandoned. */
typedef struct resolve_job {
    struct addrinfo *res;
    int gai;
    int err_no;
    char port[8];
    char host[];
} resolve_job;

static const struct addrinfo stream_hints = {
    .ai_family = AF_UNSPEC,
    .ai_socktype = SOCK_STREAM,
    .ai_protocol = IPPROTO_TCP,
};

/* On a pool thread: the blocking resolver call, nothing else. */
static void *resolve_on_thread(void *arg) {
    resolve_job *r = arg;
    struct addrinfo hints = stream_hints;
    hints.ai_flags = AI_NUMERICSERV;
    r->gai = getaddrinfo(r->host, r->port, &hints, &r->res);
    r->err_no = errno;
    return NULL;
}

/* On the hub, for a resolution whose caller gave up. */
static void resolve_release(void *arg, void *ret) {
    (void)ret;
    resolve_job *r = arg;
    if (r->res != NULL)
        freeaddrinfo(r->res);
    free(r);
}

/* Resolve host:port into *res (freeaddrinfo it). Numeric hosts in place; names on the
 * thread pool, parking the caller until deadline. */
static int resolve(const char *host, int port, double deadline, struct addrinfo **res) {
    char portstr[8];
    snprintf(portstr, sizeof portstr, "%d", port);
    struct addrinfo hints = stream_hints;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    int gai = getaddrinfo(host, portstr, &hints, res);
    if (gai != EAI_NONAME)
        return gai_to_errno(gai, errno);

    size_t hostlen = strlen(host);
    resolve_job *r = calloc(1, sizeof *r + hostlen + 1);
    if (r == NULL)
        return -ENOMEM;
    memcpy(r->port, portstr, sizeof portstr);
    memcpy(r->host, host, hostlen + 1);
    int rc =
        green_threadpool_call_ex(resolve_on_thread, r, NULL, remaining(deadline), resolve_release);
    if (rc < 0)
        return rc; /* r belongs to the pool now, which releases it */
    rc = gai_to_errno(r->gai, r->err_no);
    *res = r->res;
    free(r);
    return rc;
}

/* Connect the non-blocking socket fd to addr, waiting until deadline. 0 or -errno. */
static int connect_fd(int fd, const struct sockaddr *addr, socklen_t len, double deadline) {
    if (connect(fd, addr, len) == 0)
        return 0;
    /* A connect interrupted by a signal goes on in the background, like EINPROGRESS. */
    if (errno != EINPROGRESS && errno != EINTR)
        return -errno;
    int rc = green_fd_wait(fd, GREEN_WRITE, remaining(deadline));
    if (rc < 0)
        return rc;
    int err = 0;
    socklen_t errlen = sizeof err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &errlen) < 0)
        return -errno;
    return -err;
}

int green_tcp_connect(const char *host, int port, double timeout) {
    if (host == NULL || port <= 0 || port > 65535)
        return -EINVAL;
    int rc = green__check();
    if (rc < 0)
        return rc;
    double deadline = green__deadline_in(timeout);
    struct addrinfo *res = NULL;
    rc = resolve(host, port, deadline, &res);
    if (rc < 0)
        return rc;
    rc = -EHOSTUNREACH;
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        int fd =
            socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            rc = -errno;
            if (rc == -EMFILE || rc == -ENFILE)
                break;
            continue;
        }
        rc = connect_fd(fd, ai->ai_addr, ai->ai_addrlen, deadline);
        if (rc == 0) {
            rc = fd;
            break;
        }
        close(fd);
        /* Out of time or killed: the next address would fail the same way at once. */
        if (rc == -ETIMEDOUT || rc == -ECANCELED || rc == -EPERM)
            break;
    }
    freeaddrinfo(res);
    return rc;
}

/* Fill a sockaddr_un with path. 0 or -ENAMETOOLONG / -EINVAL. */
static int unix_addr(const char *path, struct sockaddr_un *sun) {
    if (path == NULL || path[0] == '\0')
        return -EINVAL;
    memset(sun, 0, sizeof *sun);
    sun->sun_family = AF_UNIX;
    size_t len = strlen(path);
    if (len >= sizeof sun->sun_path)
        return -ENAMETOOLONG;
    memcpy(sun->sun_path, path, len + 1);
    return 0;
}

int green_unix_connect(const char *path, double timeout) {
    struct sockaddr_un sun;
    int rc = unix_addr(path, &sun);
    if (rc < 0)
        return rc;
    rc = green__check();
    if (rc < 0)
        return rc;
    double deadline = green__deadline_in(timeout);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    /* A non-blocking Unix connect to a full backlog fails with EAGAIN, and the socket
     * gives no readiness event for "the backlog has room again" (it polls writable at
     * once), so retry with a short exponential backoff instead of an fd wait. */
    double backoff = 0.001;
    for (;;) {
        rc = connect_fd(fd, (const struct sockaddr *)&sun, sizeof sun, deadline);
        if (rc != -EAGAIN)
            break;
        double left = remaining(deadline);
        if (left == 0) {
            rc = -ETIMEDOUT;
            break;
        }
        rc = green_sleep(left < 0 || backoff < left ? backoff : left);
        if (rc < 0)
            break;
        backoff = backoff * 2 < 0.05 ? backoff * 2 : 0.05;
    }
    if (rc < 0) {
        close(fd);
        return rc;
    }
    return fd;
}

/* socket + bind + listen, shared by the TCP and Unix listeners. */
static int listen_on(int family, const struct sockaddr *addr, socklen_t len, int backlog) {
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    if (family != AF_UNIX && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0)
        goto fail;
    if (bind(fd, addr, len) < 0 || listen(fd, backlog) < 0)
        goto fail;
    return fd;
fail:;
    int err = errno;
    close(fd);
    return -err;
}

int green_tcp_listen(const char *host, int port, int backlog) {
    if (port < 0 || port > 65535)
        return -EINVAL;
    char portstr[8];
    snprintf(portstr, sizeof portstr, "%d", port);
    struct addrinfo hints = stream_hints;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;
    struct addrinfo *res = NULL;
    int gai = getaddrinfo(host != NULL ? host : "0.0.0.0", portstr, &hints, &res);
    if (gai != 0)
        return gai == EAI_NONAME ? -EINVAL : gai_to_errno(gai, errno);
    int fd = listen_on(res->ai_family, res->ai_addr, res->ai_addrlen, backlog);
    freeaddrinfo(res);
    return fd;
}

int green_unix_listen(const char *path, int backlog) {
    struct sockaddr_un sun;
    int rc = unix_addr(path, &sun);
    if (rc < 0)
        return rc;
    return listen_on(AF_UNIX, (const struct sockaddr *)&sun, sizeof sun, backlog);
}

int green_sock_port(int fd) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
        return -errno;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return -EAFNOSUPPORT;
}
