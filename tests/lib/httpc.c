/*
 * httpc.c - the test HTTP client of httpc.h: one blocking socket, poll for the deadline.
 */
#include "httpc.h"
#include "testlib.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

static int wait_fd(int fd, short events, double deadline) {
    int ms = (int)((deadline - test_now()) * 1000);
    struct pollfd p = {.fd = fd, .events = events};
    return ms > 0 && poll(&p, 1, ms) == 1 ? 0 : -ETIMEDOUT;
}

int httpc_raw(int port, const char *raw, size_t len, double timeout, httpc_response *r) {
    memset(r, 0, sizeof *r);
    double deadline = test_now() + timeout;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        r->status = -errno;
        close(fd);
        return r->status;
    }
    for (size_t off = 0; off < len;) {
        ssize_t n = send(fd, raw + off, len - off, MSG_NOSIGNAL);
        if (n < 0) {
            /* The server may answer (400) and close before taking everything. */
            break;
        }
        off += (size_t)n;
    }
    size_t cap = 1 << 16, got = 0;
    char *buf = malloc(cap + 1);
    ASSERT(buf != NULL);
    for (;;) {
        if (wait_fd(fd, POLLIN, deadline) < 0) {
            r->status = -ETIMEDOUT;
            break;
        }
        if (got == cap) {
            cap *= 2;
            buf = realloc(buf, cap + 1);
            ASSERT(buf != NULL);
        }
        ssize_t n = recv(fd, buf + got, cap - got, 0);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    buf[got] = '\0';
    char *end = strstr(buf, "\r\n\r\n");
    if (r->status == 0 && end && sscanf(buf, "HTTP/1.%*d %d", &r->status) == 1) {
        r->headers = strndup(buf, (size_t)(end - buf + 2));
        r->body = strdup(end + 4);
    } else if (r->status == 0) {
        r->status = -EPROTO;
    }
    free(buf);
    return r->status;
}

int httpc_get(int port, const char *path, httpc_response *r) {
    char req[1024];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                     "User-Agent: workerd-test\r\n\r\n",
                     path, port);
    return httpc_raw(port, req, (size_t)n, 10.0, r);
}

char *httpc_header(const httpc_response *r, const char *name) {
    size_t nl = strlen(name);
    for (const char *p = r->headers ? strstr(r->headers, "\r\n") : NULL; p && p[2];
         p = strstr(p + 2, "\r\n")) {
        const char *line = p + 2;
        if (strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
            const char *v = line + nl + 1;
            while (*v == ' ')
                v++;
            return strndup(v, strcspn(v, "\r\n"));
        }
    }
    return NULL;
}

void httpc_free(httpc_response *r) {
    free(r->headers);
    free(r->body);
    memset(r, 0, sizeof *r);
}
