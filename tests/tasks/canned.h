/*
 * canned.h - shared by the HTTP tests of tests/tasks: a canned HTTP server that answers
 * what the test nginx cannot (a redirect to any URL, the request head echoed back), a bare
 * loopback listener, and a way to see whether anything connected to it.
 *
 * Static inline so that each test program takes only what it uses.
 */
#ifndef WORKERD_TESTS_CANNED_H
#define WORKERD_TESTS_CANNED_H

#include "testlib.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/* A one-process HTTP/1.1 server on 127.0.0.1 (SO_REUSEADDR, port from the kernel) that
 * answers one request per connection:
 *     /redirect?to=URL   302 with Location: URL
 *     anything else      200 with the request head it received as the body
 * It runs in a forked child with plain blocking calls, so it needs no runtime. */
typedef struct canned {
    pid_t pid;
    int port;
} canned;

static inline void canned_serve(int lfd) {
    for (;;) {
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0)
            continue;
        char req[8192];
        size_t n = test_read_head(fd, req, sizeof req);
        char resp[9000];
        const char *to = strstr(req, " /redirect?to=");
        if (to != NULL && to < strstr(req, "\r\n")) {
            to += strlen(" /redirect?to=");
            snprintf(resp, sizeof resp,
                     "HTTP/1.1 302 Found\r\nLocation: %.*s\r\nContent-Length: 0\r\n"
                     "Connection: close\r\n\r\n",
                     (int)strcspn(to, " "), to);
        } else {
            snprintf(resp, sizeof resp,
                     "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n%s",
                     n, req);
        }
        size_t len = strlen(resp), off = 0;
        while (off < len) {
            ssize_t w = write(fd, resp + off, len - off);
            if (w <= 0)
                break;
            off += (size_t)w;
        }
        close(fd);
    }
}

/* A listening socket on 127.0.0.1 with a kernel-chosen port. */
static inline int listen_loopback(int *port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT(fd >= 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sin;
    ASSERT_EQ(bind(fd, (struct sockaddr *)&sin, sizeof sin), 0);
    ASSERT_EQ(listen(fd, 64), 0);
    ASSERT_EQ(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    *port = ntohs(sin.sin_port);
    return fd;
}

static inline void canned_start(canned *c) {
    int lfd = listen_loopback(&c->port);
    c->pid = fork();
    ASSERT(c->pid >= 0);
    if (c->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* a failed ASSERT must not leave it behind */
        canned_serve(lfd);
        _exit(0);
    }
    close(lfd);
}

static inline void canned_stop(canned *c) {
    kill(c->pid, SIGKILL);
    waitpid(c->pid, NULL, 0);
}

/* Whether a connection is waiting in lfd's backlog (the handshake completes without
 * accept, so a connect that happened shows here). */
static inline bool connection_pending(int lfd) {
    struct pollfd p = {.fd = lfd, .events = POLLIN};
    return poll(&p, 1, 100) == 1;
}

#endif
