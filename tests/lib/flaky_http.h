/*
 * flaky_http.h - a small HTTP/1.1 server for the retry tests: it fails a path's first
 * requests the way an overloaded API does, then answers it.
 *
 *     GET /any/path?fail=N&status=503&after=SPEC
 *
 * The first N requests of that exact target answer `status` (default 503) with a
 * Retry-After header when SPEC is given: "7" sends "Retry-After: 7"; "date:K" sends an
 * HTTP-date K seconds after the server's whole second now, with "Date:" of that second
 * (so the delay they mean is exactly K). Later requests, and targets without fail=,
 * answer 200 "ok". Every request's arrival time (unix seconds) is kept per target;
 * flaky_http_count reads back how many came.
 *
 * One forked child, plain blocking calls, one request per connection: no runtime needed.
 * Static inline so that each test program takes only what it uses.
 */
#ifndef WORKERD_TESTS_FLAKY_HTTP_H
#define WORKERD_TESTS_FLAKY_HTTP_H

#include "testlib.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define FLAKY_TARGETS 64

/* Shared with the child (a MAP_SHARED page): how many requests each target had. */
typedef struct flaky_counts {
    char target[FLAKY_TARGETS][256];
    int count[FLAKY_TARGETS];
} flaky_counts;

typedef struct flaky_http {
    pid_t pid;
    int port;
    flaky_counts *counts;
} flaky_http;

static inline int flaky__slot(flaky_counts *c, const char *target) {
    for (int i = 0; i < FLAKY_TARGETS; i++) {
        if (c->target[i][0] == '\0')
            snprintf(c->target[i], sizeof c->target[i], "%s", target);
        if (strcmp(c->target[i], target) == 0)
            return i;
    }
    return FLAKY_TARGETS - 1;
}

/* The value of query parameter name in target, or NULL; copied into out. */
static inline const char *flaky__param(const char *target, const char *name, char *out,
                                       size_t cap) {
    const char *q = strchr(target, '?');
    size_t n = strlen(name);
    for (const char *p = q; p != NULL; p = strchr(p + 1, '&')) {
        if (strncmp(p + 1, name, n) == 0 && p[1 + n] == '=') {
            size_t len = strcspn(p + 2 + n, "&");
            snprintf(out, cap, "%.*s", (int)(len < cap ? len : cap - 1), p + 2 + n);
            return out;
        }
    }
    return NULL;
}

static inline void flaky__http_date(time_t t, char *out, size_t cap) {
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, cap, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

static inline void flaky__answer(flaky_counts *c, int fd) {
    char req[4096];
    test_read_head(fd, req, sizeof req);
    char target[256] = "/";
    sscanf(req, "%*s %255s", target);
    int slot = flaky__slot(c, target);
    int seen = c->count[slot]++;
    char v[64], extra[256] = "";
    int fail = flaky__param(target, "fail", v, sizeof v) ? atoi(v) : 0;
    int status = flaky__param(target, "status", v, sizeof v) ? atoi(v) : 503;
    if (seen >= fail)
        status = 200;
    else if (flaky__param(target, "after", v, sizeof v)) {
        if (strncmp(v, "date:", 5) == 0) {
            time_t now = time(NULL);
            char date[64], when[64];
            flaky__http_date(now, date, sizeof date);
            flaky__http_date(now + atoi(v + 5), when, sizeof when);
            snprintf(extra, sizeof extra, "Date: %s\r\nRetry-After: %s\r\n", date, when);
        } else {
            snprintf(extra, sizeof extra, "Retry-After: %s\r\n", v);
        }
    }
    char resp[1024];
    snprintf(resp, sizeof resp,
             "HTTP/1.1 %d %s\r\n%sContent-Type: text/plain\r\nContent-Length: 3\r\n"
             "Connection: close\r\n\r\n%s",
             status, status == 200 ? "OK" : "Unavailable", extra, status == 200 ? "ok\n" : "no\n");
    size_t len = strlen(resp), off = 0;
    while (off < len) {
        ssize_t w = write(fd, resp + off, len - off);
        if (w <= 0)
            break;
        off += (size_t)w;
    }
}

static inline void flaky_http_start(flaky_http *s) {
    s->counts =
        mmap(NULL, sizeof *s->counts, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ASSERT(s->counts != MAP_FAILED);
    memset(s->counts, 0, sizeof *s->counts);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT(lfd >= 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sin;
    ASSERT_EQ(bind(lfd, (struct sockaddr *)&sin, sizeof sin), 0);
    ASSERT_EQ(listen(lfd, 64), 0);
    ASSERT_EQ(getsockname(lfd, (struct sockaddr *)&sin, &len), 0);
    s->port = ntohs(sin.sin_port);
    s->pid = fork();
    ASSERT(s->pid >= 0);
    if (s->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* a failed ASSERT must not leave it behind */
        for (;;) {
            int fd = accept(lfd, NULL, NULL);
            if (fd >= 0) {
                flaky__answer(s->counts, fd);
                close(fd);
            }
        }
    }
    close(lfd);
}

/* How many requests target (path and query, exactly as requested) has had. */
static inline int flaky_http_count(const flaky_http *s, const char *target) {
    for (int i = 0; i < FLAKY_TARGETS; i++)
        if (strcmp(s->counts->target[i], target) == 0)
            return s->counts->count[i];
    return 0;
}

static inline void flaky_http_stop(flaky_http *s) {
    kill(s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0);
    munmap(s->counts, sizeof *s->counts);
}

#endif
