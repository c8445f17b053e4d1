/*
 * web_http.c - workerd-web's HTTP/1.1 server (web.h "web_http.c") on the runtime's
 * green_server: one greenlet per connection, one request per connection ("Connection:
 * close"; the page polls every two seconds, which costs a connection each time and holds
 * none in between).
 *
 * A request is read whole before anything is answered: the head (at most WEB_HEAD_MAX
 * bytes, ending with an empty line) and, for a POST, a body of Content-Length bytes (at
 * most WEB_BODY_MAX; no chunked bodies), all within READ_DEADLINE of the connection's
 * start, so a client that trickles bytes holds a connection for seconds, not for ever.
 * At most WEB_MAX_CONNS connections are kept; past that green_server pushes out the
 * oldest one still being read (green_server.h "Shedding").
 *
 * Every answer carries the same security headers: a Content-Security-Policy that allows
 * only this origin's own script, style and fetches (no 'unsafe-inline', no third party),
 * no framing, nosniff, no referrer, and no caching.
 */
#include "web.h"

#include "green_io.h"
#include "green_server.h"
#include "green_sync.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#define READ_DEADLINE 5.0
#define ANSWER_DEADLINE 15.0

/* The page's files (web_assets.c, generated from daemon/web/assets/). */
struct web_asset {
    const char *path, *type;
    const unsigned char *data;
    size_t len;
};
extern const struct web_asset web__assets[];
extern const size_t web__nassets;

static const char SECURITY_HEADERS[] =
    "Content-Security-Policy: default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'\r\n"
    "X-Content-Type-Options: nosniff\r\nX-Frame-Options: DENY\r\nReferrer-Policy: no-referrer\r\n"
    "Cache-Control: no-store\r\n";

static const char *reason(int status) {
    switch (status) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 413:
        return "Content Too Large";
    case 503:
        return "Service Unavailable";
    default:
        return status < 500 ? "Error" : "Internal Server Error";
    }
}

struct conn {
    char head[WEB_HEAD_MAX + 1];
    size_t len;  /* bytes in head (head and the start of the body) */
    size_t hend; /* where the head ends (after the empty line) */
    char *body;
};

/* The value of header name in the head (NUL-terminated in place by parse), or NULL. */
static const char *header(char **names, char **values, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (strcasecmp(names[i], name) == 0)
            return values[i];
    return NULL;
}

/* Read the head, then the body; fill rq. 0, or an HTTP status to refuse with, or -1 when
 * the client went away. */
static int read_request(int fd, struct conn *c, struct web_request *rq) {
    for (;;) {
        char *end = c->len ? strstr(c->head, "\r\n\r\n") : NULL;
        if (end) {
            c->hend = (size_t)(end - c->head) + 4;
            break;
        }
        if (c->len == WEB_HEAD_MAX)
            return 400;
        ssize_t n = green_read(fd, c->head + c->len, WEB_HEAD_MAX - c->len, -1);
        if (n == -ETIMEDOUT)
            return 408;
        if (n <= 0)
            return c->len ? 400 : -1;
        if (memchr(c->head + c->len, '\0', (size_t)n))
            return 400;
        c->len += (size_t)n;
        c->head[c->len] = '\0';
    }
    /* Request line. */
    char *line = c->head, *eol = strstr(line, "\r\n");
    *eol = '\0';
    char *sp1 = strchr(line, ' '), *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
    if (!sp1 || !sp2 || (strcmp(sp2 + 1, "HTTP/1.1") != 0 && strcmp(sp2 + 1, "HTTP/1.0") != 0))
        return 400;
    *sp1 = *sp2 = '\0';
    rq->method = line;
    char *target = sp1 + 1, *q = strchr(target, '?');
    if (target[0] != '/')
        return 400;
    if (q)
        *q = '\0';
    rq->path = target;
    rq->query = q ? q + 1 : "";
    /* Headers. */
    char *names[64], *values[64];
    int nh = 0;
    for (char *p = eol + 2; p < c->head + c->hend - 2;) {
        char *e = strstr(p, "\r\n");
        *e = '\0';
        char *colon = strchr(p, ':');
        if (!colon || nh == 64)
            return 400;
        *colon = '\0';
        char *v = colon + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        names[nh] = p, values[nh] = v, nh++;
        p = e + 2;
    }
    int hosts = 0;
    for (int i = 0; i < nh; i++)
        hosts += strcasecmp(names[i], "Host") == 0;
    if (hosts > 1)
        return 400;
    rq->host = header(names, values, nh, "Host");
    rq->origin = header(names, values, nh, "Origin");
    rq->cookie = header(names, values, nh, "Cookie");
    rq->authorization = header(names, values, nh, "Authorization");
    rq->csrf = header(names, values, nh, "X-CSRF-Token");
    rq->content_type = header(names, values, nh, "Content-Type");
    if (strcmp(rq->method, "POST") != 0)
        return 0;
    if (header(names, values, nh, "Transfer-Encoding"))
        return 400;
    const char *cl = header(names, values, nh, "Content-Length");
    char *cend;
    long want = cl ? strtol(cl, &cend, 10) : 0;
    if (!cl || cend == cl || *cend || want < 0)
        return 400;
    if (want > WEB_BODY_MAX)
        return 413;
    if (!(c->body = malloc((size_t)want + 1)))
        return 503;
    size_t have = c->len - c->hend;
    if (have > (size_t)want)
        have = (size_t)want;
    memcpy(c->body, c->head + c->hend, have);
    while (have < (size_t)want) {
        ssize_t n = green_read(fd, c->body + have, (size_t)want - have, -1);
        if (n == -ETIMEDOUT)
            return 408;
        if (n <= 0)
            return -1;
        have += (size_t)n;
    }
    c->body[want] = '\0';
    rq->body = c->body;
    rq->body_len = (size_t)want;
    return 0;
}

static bool serve_asset(const struct web_request *rq, struct web_answer *ans) {
    const char *path = strcmp(rq->path, "/") == 0 ? "/index.html" : rq->path;
    for (size_t i = 0; i < web__nassets; i++) {
        if (strcmp(web__assets[i].path, path) != 0)
            continue;
        ans->status = 200;
        ans->type = web__assets[i].type;
        ans->body = (char *)web__assets[i].data;
        ans->len = web__assets[i].len;
        ans->body_static = true;
        return true;
    }
    /* The page's own routes (#/workers is a fragment; these are for bookmarks). */
    static const char *const pages[] = {"/workers", "/queues", "/tasks", "/dead"};
    for (size_t i = 0; i < sizeof pages / sizeof *pages; i++)
        if (strcmp(rq->path, pages[i]) == 0) {
            struct web_request root = *rq;
            root.path = "/";
            return serve_asset(&root, ans);
        }
    return false;
}

static void route(struct web *w, const struct web_request *rq, struct web_answer *ans) {
    bool get = strcmp(rq->method, "GET") == 0 || strcmp(rq->method, "HEAD") == 0;
    bool post = strcmp(rq->method, "POST") == 0;
    if (!get && !post) {
        web_error(ans, 405, "only GET, HEAD and POST");
        return;
    }
    /* A liveness probe needs no credentials and says nothing about the fleet. */
    if (get && strcmp(rq->path, "/healthz") == 0) {
        web_read_route(w, rq, ans);
        return;
    }
    if (!web_auth_allow(w, rq, ans))
        return;
    if (get) {
        if (!serve_asset(rq, ans) && !web_read_route(w, rq, ans)) {
            if (strncmp(rq->path, "/api/", 5) == 0 && web_act_known(rq->path))
                web_error(ans, 405, "%s changes state: POST only", rq->path);
            else
                web_error(ans, 404, "no such page: %s", rq->path);
        }
        return;
    }
    if (!web_auth_csrf_ok(rq, ans))
        return;
    if (!web_act_route(w, rq, ans))
        web_error(ans, 404, "no such action: %s", rq->path);
}

static void write_answer(int fd, struct web_answer *a, bool head) {
    char hdr[2048];
    int n = snprintf(hdr, sizeof hdr,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s%s%s%s%s"
                     "Connection: close\r\n\r\n",
                     a->status, reason(a->status), a->type ? a->type : "text/plain", a->len,
                     SECURITY_HEADERS, a->set_cookie[0] ? "Set-Cookie: " : "", a->set_cookie,
                     a->set_cookie[0] ? "\r\n" : "",
                     a->ask_credentials ? "WWW-Authenticate: Basic realm=\"workerd\", "
                                          "charset=\"UTF-8\"\r\n"
                                        : "");
    if (green_write_all(fd, hdr, (size_t)n, -1) == 0 && !head && a->len)
        green_write_all(fd, a->body, a->len, -1);
}

static void handle(green_server_conn *sc, int fd, void *arg) {
    struct web *w = arg;
    struct conn *c = calloc(1, sizeof *c);
    struct web_request rq = {0};
    struct web_answer ans = {0};
    if (!c)
        return;
    green_timeout t;
    green_timeout_start(&t, READ_DEADLINE);
    int st = read_request(fd, c, &rq);
    green_timeout_end(&t);
    if (st >= 0) {
        green_server_conn_set_busy(sc, true);
        green_timeout_start(&t, ANSWER_DEADLINE);
        if (st > 0)
            web_error(&ans, st, "bad request");
        else
            route(w, &rq, &ans);
        write_answer(fd, &ans, rq.method && strcmp(rq.method, "HEAD") == 0);
        green_timeout_end(&t);
        shutdown(fd, SHUT_WR);
        /* Read what the client may still send for a moment, so that closing does not
         * reset the connection under the answer. */
        char sink[1024];
        green_timeout_start(&t, 1.0);
        for (int i = 0; i < 64 && green_read(fd, sink, sizeof sink, -1) > 0; i++)
            ;
        green_timeout_end(&t);
    }
    if (!ans.body_static)
        free(ans.body);
    free(c->body);
    free(c);
}

int web_http_serve(struct web *w, int listen_fd, struct green_event *stop) {
    green_server *s;
    int rc = green_server_start(&s, listen_fd, handle, w, WEB_MAX_CONNS);
    if (rc)
        return rc;
    green_event_wait(stop, -1);
    green_server_stop(s, 2.0);
    return 0;
}
