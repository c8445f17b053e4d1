/*
 * conc_http.h - a small HTTP/1.1 server for the per-host concurrency tests: it counts, per
 * Host header (its name, without the port), how many requests it holds at once, the most
 * it ever held, and how many it answered.
 *
 *     GET /any/path?ms=N
 *
 * is answered 200 "ok" N milliseconds after its head arrived (0 without ms=); meanwhile the
 * request counts as in flight for its host. A client that closes its connection first (a
 * worker SIGKILLed mid-request, a timeout) stops counting at once and is not answered.
 *
 * One forked child with a poll loop over every connection, so that requests overlap as
 * they would on a real server; the counters live on a shared page the test reads. Static
 * inline so that each test program takes only what it uses.
 */
#ifndef WORKERD_TESTS_CONC_HTTP_H
#define WORKERD_TESTS_CONC_HTTP_H

#include "testlib.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CONC_HOSTS 8
#define CONC_CONNS 256

/* Shared with the child (a MAP_SHARED page). */
typedef struct conc_counts {
    char host[CONC_HOSTS][64];
    int now[CONC_HOSTS];    /* requests held now */
    int max[CONC_HOSTS];    /* the most held at once */
    int served[CONC_HOSTS]; /* answered */
} conc_counts;

typedef struct conc_http {
    pid_t pid;
    int port;
    conc_counts *counts;
} conc_http;

static inline double conc__now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static inline int conc__slot(conc_counts *c, const char *host) {
    for (int i = 0; i < CONC_HOSTS; i++) {
        if (c->host[i][0] == '\0')
            snprintf(c->host[i], sizeof c->host[i], "%s", host);
        if (strcmp(c->host[i], host) == 0)
            return i;
    }
    return CONC_HOSTS - 1;
}

struct conc__conn {
    int fd;
    char head[4096];
    size_t len;
    int host; /* -1: head not complete yet */
    double due;
};

/* The head is complete: count it in flight for its host until due. */
static inline void conc__counted(conc_counts *c, struct conc__conn *k) {
    char host[64] = "?";
    const char *h = strcasestr(k->head, "\r\nHost:");
    if (h != NULL) {
        h += 7;
        while (*h == ' ')
            h++;
        size_t n = strcspn(h, ":\r\n");
        snprintf(host, sizeof host, "%.*s", (int)(n < sizeof host ? n : sizeof host - 1), h);
    }
    long ms = 0;
    const char *q = strstr(k->head, "ms=");
    const char *eol = strstr(k->head, "\r\n");
    if (q != NULL && q < eol)
        ms = strtol(q + 3, NULL, 10);
    k->host = conc__slot(c, host);
    k->due = conc__now_ms() + (double)ms;
    int now = __atomic_add_fetch(&c->now[k->host], 1, __ATOMIC_SEQ_CST);
    if (now > c->max[k->host])
        __atomic_store_n(&c->max[k->host], now, __ATOMIC_SEQ_CST);
}

static inline void conc__close(conc_counts *c, struct conc__conn *k, bool answer) {
    if (k->host >= 0) {
        if (answer) {
            static const char ok[] =
                "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
            if (write(k->fd, ok, sizeof ok - 1) < 0) {
                /* the client went away: nothing to do */
            }
            __atomic_add_fetch(&c->served[k->host], 1, __ATOMIC_SEQ_CST);
        }
        __atomic_sub_fetch(&c->now[k->host], 1, __ATOMIC_SEQ_CST);
    }
    close(k->fd);
    k->fd = -1;
}

static inline void conc__serve(int ls, conc_counts *c) {
    static struct conc__conn conns[CONC_CONNS];
    for (int i = 0; i < CONC_CONNS; i++)
        conns[i].fd = -1;
    struct pollfd pfd[CONC_CONNS + 1];
    for (;;) {
        int n = 0, map[CONC_CONNS + 1];
        pfd[n++] = (struct pollfd){.fd = ls, .events = POLLIN};
        double now = conc__now_ms(), next = -1;
        for (int i = 0; i < CONC_CONNS; i++) {
            struct conc__conn *k = &conns[i];
            if (k->fd < 0)
                continue;
            if (k->host >= 0 && k->due <= now) {
                conc__close(c, k, true);
                continue;
            }
            if (k->host >= 0 && (next < 0 || k->due < next))
                next = k->due;
            map[n] = i;
            pfd[n++] = (struct pollfd){.fd = k->fd, .events = POLLIN};
        }
        int timeout = next < 0 ? 1000 : (int)(next - now) + 1;
        if (poll(pfd, (nfds_t)n, timeout) < 0 && errno != EINTR)
            _exit(1);
        if (pfd[0].revents & POLLIN) {
            int fd = accept(ls, NULL, NULL);
            for (int i = 0; fd >= 0 && i < CONC_CONNS; i++) {
                if (conns[i].fd < 0) {
                    conns[i] = (struct conc__conn){.fd = fd, .host = -1};
                    fd = -1;
                }
            }
            if (fd >= 0)
                close(fd); /* full: refused */
        }
        for (int p = 1; p < n; p++) {
            if (pfd[p].revents == 0)
                continue;
            struct conc__conn *k = &conns[map[p]];
            char buf[1024];
            ssize_t r = read(k->fd, k->host < 0 ? k->head + k->len : buf,
                             k->host < 0 ? sizeof k->head - 1 - k->len : sizeof buf);
            if (r <= 0) {
                conc__close(c, k, false); /* the client closed it first */
                continue;
            }
            if (k->host >= 0)
                continue; /* a body, or more: ignored */
            k->len += (size_t)r;
            k->head[k->len] = '\0';
            if (strstr(k->head, "\r\n\r\n") != NULL)
                conc__counted(c, k);
            else if (k->len >= sizeof k->head - 1)
                conc__close(c, k, false);
        }
    }
}

static inline void conc_http_start(conc_http *s) {
    s->counts =
        mmap(NULL, sizeof *s->counts, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ASSERT(s->counts != MAP_FAILED);
    memset(s->counts, 0, sizeof *s->counts);
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT(ls >= 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ASSERT_EQ(bind(ls, (struct sockaddr *)&a, sizeof a), 0);
    ASSERT_EQ(listen(ls, 128), 0);
    socklen_t alen = sizeof a;
    ASSERT_EQ(getsockname(ls, (struct sockaddr *)&a, &alen), 0);
    s->port = ntohs(a.sin_port);
    s->pid = fork();
    ASSERT(s->pid >= 0);
    if (s->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        conc__serve(ls, s->counts);
        _exit(0);
    }
    close(ls);
}

static inline void conc_http_stop(conc_http *s) {
    if (s->pid > 0) {
        kill(s->pid, SIGKILL);
        waitpid(s->pid, NULL, 0);
        s->pid = 0;
    }
    munmap(s->counts, sizeof *s->counts);
}

/* What the server saw of host so far: held now, the most at once, answered (0 for a host
 * it never saw). */
static inline void conc_http_seen(const conc_http *s, const char *host, int *now, int *max,
                                  int *served) {
    *now = *max = *served = 0;
    for (int i = 0; i < CONC_HOSTS; i++) {
        if (strcmp(s->counts->host[i], host) == 0) {
            *now = __atomic_load_n(&s->counts->now[i], __ATOMIC_SEQ_CST);
            *max = __atomic_load_n(&s->counts->max[i], __ATOMIC_SEQ_CST);
            *served = __atomic_load_n(&s->counts->served[i], __ATOMIC_SEQ_CST);
        }
    }
}

static inline int conc_http_now(const conc_http *s, const char *host) {
    int now, max, served;
    conc_http_seen(s, host, &now, &max, &served);
    return now;
}

#endif
