/*
 * wd_http.c - the metrics, health and worker endpoint of wd_http.h: a minimal HTTP/1.x
 * server on the runtime's green_server.
 *
 * The request parser reads until the end of the headers ("\r\n\r\n", or "\n\n" from a
 * lenient client) into a fixed REQUEST_MAX buffer; a request that does not fit is refused
 * with 400 rather than buffered further. It looks only at the request line - method,
 * target (the query string is ignored), version HTTP/1.0 or HTTP/1.1 - and ignores the
 * headers: no request here has a body, and the answer always closes the connection.
 * After answering, the handler half-closes the socket and reads what the client may still
 * send (briefly), so that closing does not reset the connection under an unread answer.
 *
 * Each connection runs on its own greenlet with a REQUEST_DEADLINE scope, so a client that
 * sends half a request and waits cannot hold a slot for long; at most MAX_CONNS are served
 * at once (more wait in the kernel's backlog).
 *
 * Runs on greenlets of the worker's hub. Reads the worker's state directly, and its
 * counters from wd_observe: plain fields written by greenlets of the same hub, so a
 * handler sees a consistent snapshot (nothing else runs until it yields).
 */
#include "wd_http.h"

#include "broker_keys.h"
#include "green_io.h"
#include "green_server.h"
#include "wd_log.h"
#include "wd_metrics.h"
#include "wd_observe.h"
#include "wd_shutdown.h"
#include "wd_worker_internal.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define REQUEST_MAX 8192
#define REQUEST_DEADLINE 5.0
#define QUEUE_DEPTH_TIMEOUT 1.0
#define MAX_CONNS 16

struct wd_http {
    struct wd_worker *w;
    green_server *server;
    int fd;
};

struct answer {
    int status;
    const char *type;
    char *body; /* owned */
    const char *allow;
};

static const char *reason(int status) {
    switch (status) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 503:
        return "Service Unavailable";
    default:
        return "Internal Server Error";
    }
}

static void set_text(struct answer *a, int status, const char *text) {
    a->status = status;
    a->type = "text/plain; charset=utf-8";
    a->body = strdup(text);
}

/* ---- the pages -------------------------------------------------------------------------- */

/* LLEN of every consumed queue in one round trip; depths[i] = -1 where unknown. A scrape
 * while Redis is away does not wait for it. */
static void queue_depths(struct wd_worker *w, long long *depths) {
    for (size_t i = 0; i < w->opts->nqueues; i++)
        depths[i] = -1;
    if (broker_conn_is_up(w->conn))
        (void)broker_queue_depths(w->bw, depths, QUEUE_DEPTH_TIMEOUT);
}

static void page_metrics(struct wd_worker *w, struct answer *a) {
    long long *depths = calloc(w->opts->nqueues, sizeof *depths);
    if (depths)
        queue_depths(w, depths);
    green_stats st;
    green_get_stats(&st);
    const struct wd_counters *c = wd_observe_counters(w->obs);
    struct wd_metrics_gauges g = {
        .received = c->received,
        .dead_letters = c->invalid,
        .put_back = c->put_back,
        .lost_ownership = c->lost_ownership,
        .reconnects = broker_conn_drops(w->conn),
        .events_dropped = wd_observe_events_dropped(w->obs),
        .in_flight = green_pool_running(&w->pool),
        .pool_size = (size_t)w->opts->concurrency,
        .greenlets_alive = st.alive,
        .broker_up = broker_conn_is_up(w->conn),
        .rss_bytes = wd_metrics_rss_bytes(),
        .start_time = w->started_at,
        .nqueues = w->opts->nqueues,
        .queues = (const char *const *)w->opts->queues,
        .depths = depths,
    };
    a->status = 200;
    a->type = "text/plain; version=0.0.4; charset=utf-8";
    a->body = wd_metrics_render(wd_observe_metrics(w->obs), &g);
    free(depths);
}

static void page_healthz(struct wd_worker *w, struct answer *a) {
    /* Redis refusing results (out of memory, ...): its reason, "oom: OOM command ...". */
    const char *refusal = wd_observe_refusal(w->obs);
    char text[400];
    snprintf(text, sizeof text, "broker refusing to store results: %s\n", refusal ? refusal : "");
    if (w->stop != WD_RUNNING)
        set_text(a, 503, "shutting down\n");
    else if (!w->consuming)
        set_text(a, 503, "starting\n");
    else if (!broker_conn_is_up(w->conn))
        set_text(a, 503, "broker unreachable\n");
    else if (refusal)
        set_text(a, 503, text);
    else
        set_text(a, 200, "ok\n");
}

static void page_workers(struct wd_worker *w, struct answer *a) {
    const struct wd_counters *c = wd_observe_counters(w->obs);
    json_t *queues = json_array();
    for (size_t i = 0; queues && i < w->opts->nqueues; i++)
        json_array_append_new(queues, json_string(w->opts->queues[i]));
    json_t *me = json_pack(
        "{s:s, s:s, s:i, s:o, s:s, s:i, s:i, s:I, s:f, s:b, s:s, s:b, s:{s:I, s:I, s:I, s:I, "
        "s:I, s:I}}",
        "id", w->wid, "host", w->opts->hostname, "pid", (int)getpid(), "queues", queues, "pool",
        wd_pool_name(w->opts->pool), "concurrency", w->opts->concurrency, "in_flight",
        (int)green_pool_running(&w->pool), "prefetch", (json_int_t)w->opts->prefetch, "started",
        w->started_at, "broker_up", broker_conn_is_up(w->conn), "version", wd_version(),
        "consuming", w->consuming && w->stop == WD_RUNNING, "counters", "received",
        (json_int_t)c->received, "succeeded", (json_int_t)c->succeeded, "failed",
        (json_int_t)c->failed, "dead_letters", (json_int_t)c->invalid, "put_back",
        (json_int_t)c->put_back, "lost_ownership", (json_int_t)c->lost_ownership);
    json_t *all = me ? json_pack("[o]", me) : NULL;
    char *text = all ? json_dumps(all, JSON_COMPACT) : NULL;
    json_decref(all);
    a->status = 200;
    a->type = "application/json";
    if (text) {
        /* A newline, for curl users; the text came from jansson's malloc. */
        size_t len = strlen(text);
        a->body = malloc(len + 2);
        if (a->body)
            memcpy(a->body, text, len), memcpy(a->body + len, "\n", 2);
        free(text);
    }
}

/* ---- the protocol ----------------------------------------------------------------------- */

/* Parse the request line of req (NUL-terminated headers) and pick the page. */
static void route(struct wd_worker *w, char *req, struct answer *a, bool *head) {
    char *eol = req + strcspn(req, "\r\n");
    *eol = '\0';
    char *method = req, *target = strchr(req, ' ');
    char *version = target ? strchr(target + 1, ' ') : NULL;
    if (!target || !version || strchr(version + 1, ' ') || target + 1 == version ||
        (strcmp(version + 1, "HTTP/1.1") != 0 && strcmp(version + 1, "HTTP/1.0") != 0)) {
        set_text(a, 400, "malformed request line\n");
        return;
    }
    *target++ = '\0';
    *version = '\0';
    target[strcspn(target, "?#")] = '\0';
    *head = strcmp(method, "HEAD") == 0;
    bool known = strcmp(target, "/metrics") == 0 || strcmp(target, "/healthz") == 0 ||
                 strcmp(target, "/workers") == 0;
    if (!known) {
        set_text(a, 404, "not found: try /metrics, /healthz or /workers\n");
    } else if (strcmp(method, "GET") != 0 && !*head) {
        set_text(a, 405, "only GET (and HEAD) here\n");
        a->allow = "GET, HEAD";
    } else if (strcmp(target, "/metrics") == 0) {
        page_metrics(w, a);
    } else if (strcmp(target, "/healthz") == 0) {
        page_healthz(w, a);
    } else {
        page_workers(w, a);
    }
}

/* Read up to the end of the headers. Returns the length (headers NUL-terminated in buf),
 * 0 when the request is too large, or a negative errno (the client went away or stalled). */
static ssize_t read_request(int fd, char *buf) {
    size_t len = 0;
    for (;;) {
        ssize_t n = green_read(fd, buf + len, REQUEST_MAX - len, -1);
        if (n <= 0)
            return n < 0 ? n : -ECONNRESET;
        len += (size_t)n;
        buf[len] = '\0';
        char *end = strstr(buf, "\r\n\r\n");
        if (!end)
            end = strstr(buf, "\n\n");
        if (end)
            return (ssize_t)len;
        if (len == REQUEST_MAX)
            return 0;
    }
}

static void handle(int fd, void *arg) {
    struct wd_http *h = arg;
    char *buf = malloc(REQUEST_MAX + 1);
    struct answer a = {0};
    bool head = false;
    green_timeout deadline;
    green_timeout_start(&deadline, REQUEST_DEADLINE);
    ssize_t n = buf ? read_request(fd, buf) : -ENOMEM;
    if (n == 0)
        set_text(&a, 400, "request too large\n");
    else if (n > 0)
        route(h->w, buf, &a, &head);
    if (a.status) {
        if (!a.body) { /* out of memory rendering a page */
            a.status = 500;
            a.type = "text/plain; charset=utf-8";
        }
        const char *body = a.body ? a.body : "";
        char hdr[512];
        int hl = snprintf(hdr, sizeof hdr,
                          "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                          "Cache-Control: no-store\r\nConnection: close\r\n%s%s%s\r\n",
                          a.status, reason(a.status), a.type, strlen(body),
                          a.allow ? "Allow: " : "", a.allow ? a.allow : "", a.allow ? "\r\n" : "");
        if (green_write_all(fd, hdr, (size_t)hl, -1) == 0 && !head)
            green_write_all(fd, body, strlen(body), -1);
        /* Half-close, then swallow what the client still sends for a moment: closing a
         * socket with unread input resets it, and the client could lose the answer. */
        shutdown(fd, SHUT_WR);
        char sink[512];
        for (int i = 0; i < 8 && green_read(fd, sink, sizeof sink, 0.5) > 0; i++)
            ;
    }
    green_timeout_end(&deadline);
    free(a.body);
    free(buf);
}

struct wd_http *wd_http_start(struct wd_worker *w, const char *host, int port) {
    struct wd_http *h = calloc(1, sizeof *h);
    if (!h) {
        wd_log(WD_LOG_ERROR, "start-up failed: --http: %s", strerror(ENOMEM));
        return NULL;
    }
    h->w = w;
    h->fd = green_tcp_listen(host, port, 128);
    if (h->fd < 0) {
        wd_log(WD_LOG_ERROR, "start-up failed: --http: cannot listen on %s:%d: %s", host, port,
               strerror(-h->fd));
        free(h);
        return NULL;
    }
    int rc = green_server_start(&h->server, h->fd, handle, h, MAX_CONNS);
    if (rc != 0) {
        wd_log(WD_LOG_ERROR, "start-up failed: --http: cannot start serving: %s", strerror(-rc));
        close(h->fd);
        free(h);
        return NULL;
    }
    bool v6 = strchr(host, ':') != NULL;
    wd_log(WD_LOG_INFO, "serving /metrics, /healthz and /workers on http://%s%s%s:%d/",
           v6 ? "[" : "", host, v6 ? "]" : "", green_sock_port(h->fd));
    return h;
}

void wd_http_stop(struct wd_http *h) {
    if (!h)
        return;
    green_server_stop(h->server, WD_SHUTDOWN_HTTP_GRACE);
    close(h->fd);
    free(h);
}
