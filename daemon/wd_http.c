/*
 * wd_http.c - the metrics, health and worker endpoint of wd_http.h: a minimal HTTP/1.x
 * server on the runtime's green_server, built to keep answering probes while clients
 * hold connections open and send nothing, or send a request one byte at a time.
 *
 * Reading a head. A connection costs nothing but its greenlet until its first byte
 * arrives; then a buffer of HEAD_FIRST bytes, doubled as needed up to HEAD_MAX. Every
 * byte is checked as it arrives, so that a head that can never be served is answered at
 * once rather than when its deadline passes: a control character (NUL included) or a CR
 * not followed by LF gives 400; so does a malformed request line, as soon as its line end
 * arrives (method a token, one space, a target of visible characters, one space,
 * HTTP/1.0 or HTTP/1.1); a method other than GET or HEAD gets its 405 (or 404) as soon as
 * the request line is complete; a head that outgrows HEAD_MAX gets 400, and one cut off
 * by the client 400 too. Headers are not interpreted (no request here has a body), but a
 * GET or HEAD is answered only once they have ended ("\r\n\r\n", or "\n\n" from a
 * lenient client).
 *
 * Deadlines. The whole head must arrive within HEAD_DEADLINE of the connection's start,
 * however it trickles in; after that the client gets 408 and the connection is closed.
 * Computing and writing an answer has ANSWER_DEADLINE; then the handler half-closes the
 * socket and reads what the client may still send for at most LINGER seconds, so that
 * closing does not reset the connection under an unread answer.
 *
 * Connection bound. At most max_conns connections are kept (MAX_CONNS, or a quarter of
 * the descriptor limit if that is lower); a connection is "busy" for green_server (not to
 * be shed while others can be) only from a complete head to its answer written. So when
 * the bound is reached, a new connection pushes out the oldest one that is still waiting
 * for its head or lingering, and a fresh probe is answered whatever the other clients do.
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
#include "wd_fleet.h"
#include "wd_metrics.h"
#include "wd_observe.h"
#include "wd_shutdown.h"
#include "wd_worker_internal.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define HEAD_FIRST 1024     /* bytes first allocated for a head */
#define HEAD_MAX 8192       /* the largest head served */
#define HEAD_DEADLINE 2.0   /* seconds for the whole head, from the connection's start */
#define ANSWER_DEADLINE 5.0 /* seconds to compute and write an answer */
#define LINGER 1.0          /* seconds to read what follows an answer before closing */
#define LINGER_MAX 65536    /* bytes read so, at most */
#define QUEUE_DEPTH_TIMEOUT 1.0
#define MAX_CONNS 1024 /* connections kept at once; more push the oldest idle one out */
#define LISTEN_BACKLOG 1024

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
    case 408:
        return "Request Timeout";
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

/* /metrics/total: this process's metrics summed with its siblings' (wd_fleet.h); the
 * same as /metrics without a supervisor, or with --http on port 0 (no known siblings). */
static void page_metrics_total(struct wd_worker *w, struct answer *a) {
    page_metrics(w, a);
    const struct wd_options *o = w->opts;
    bool siblings = o->processes > 1 && o->http_base_port > 0;
    char *total =
        wd_fleet_metrics_total(o->http_host, siblings ? o->http_base_port : o->http_port,
                               siblings ? o->processes : 1, o->http_port, a->body ? a->body : "");
    if (total != NULL) {
        free(a->body);
        a->body = total;
    }
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
        "s:I, s:I, s:I}}",
        "id", w->wid, "host", w->opts->hostname, "pid", (int)getpid(), "queues", queues, "pool",
        wd_pool_name(w->opts->pool), "concurrency", w->opts->concurrency, "in_flight",
        (int)green_pool_running(&w->pool), "prefetch", (json_int_t)w->opts->prefetch, "started",
        w->started_at, "broker_up", broker_conn_is_up(w->conn), "version", wd_version(),
        "consuming", w->consuming && w->stop == WD_RUNNING, "counters", "received",
        (json_int_t)c->received, "succeeded", (json_int_t)c->succeeded, "failed",
        (json_int_t)c->failed, "retried", (json_int_t)c->retried, "dead_letters",
        (json_int_t)c->invalid, "put_back", (json_int_t)c->put_back, "lost_ownership",
        (json_int_t)c->lost_ownership);
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

/* A request being read: the head so far, how far it was checked, and the parts of the
 * request line once it was (offsets into buf). */
struct request {
    char *buf;
    size_t len, cap;
    size_t scanned;    /* bytes checked; a trailing CR waits for its LF */
    size_t line_start; /* where the line being read begins */
    bool have_line;    /* the request line was parsed */
    bool done;         /* the head is complete, or the request line decides the answer */
    size_t method, method_len, path, path_len;
};

static bool span_is(const struct request *rq, size_t off, size_t len, const char *lit) {
    return len == strlen(lit) && memcmp(rq->buf + off, lit, len) == 0;
}

static bool is_get_or_head(const struct request *rq) {
    return span_is(rq, rq->method, rq->method_len, "GET") ||
           span_is(rq, rq->method, rq->method_len, "HEAD");
}

/* RFC 9110's tchar: the characters of a method token. */
static bool is_tchar(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* Parse the request line buf[start, start + n) (its line end removed). false if it is
 * not `method SP origin-or-other-target SP HTTP/1.x`. */
static bool parse_request_line(struct request *rq, size_t start, size_t n) {
    const unsigned char *line = (const unsigned char *)rq->buf + start;
    size_t i = 0;
    while (i < n && is_tchar(line[i]))
        i++;
    if (i == 0 || i == n || line[i] != ' ')
        return false;
    rq->method = start;
    rq->method_len = i;
    size_t target = ++i;
    while (i < n && line[i] > ' ' && line[i] < 0x7f)
        i++;
    if (i == target || i == n || line[i] != ' ')
        return false;
    const char *version = (const char *)line + i + 1;
    if (n - i - 1 != 8 ||
        (memcmp(version, "HTTP/1.1", 8) != 0 && memcmp(version, "HTTP/1.0", 8) != 0))
        return false;
    /* The path: the target without its query string or fragment. */
    size_t end = target;
    while (end < i && line[end] != '?' && line[end] != '#')
        end++;
    rq->path = start + target;
    rq->path_len = end - target;
    return true;
}

/* Check the bytes that arrived since the last call. Returns NULL while the head goes on,
 * and sets rq->done once it is complete (or once the request line decides the answer);
 * returns why (a 400 body) when the head cannot be served. */
static const char *scan_head(struct request *rq) {
    for (size_t i = rq->scanned; i < rq->len; i++) {
        unsigned char c = (unsigned char)rq->buf[i];
        if ((c < ' ' && c != '\t' && c != '\r' && c != '\n') || c == 0x7f)
            return "control character in the request head\n";
        if (c == '\r') {
            if (i + 1 == rq->len) {
                rq->scanned = i; /* decide when the next byte arrives */
                return NULL;
            }
            if (rq->buf[i + 1] != '\n')
                return "CR without LF in the request head\n";
            continue;
        }
        if (c != '\n')
            continue;
        size_t start = rq->line_start, end = i;
        if (end > start && rq->buf[end - 1] == '\r')
            end--;
        rq->line_start = i + 1;
        if (!rq->have_line) {
            if (!parse_request_line(rq, start, end - start))
                return "malformed request line\n";
            rq->have_line = true;
            if (!is_get_or_head(rq)) { /* refused whatever follows */
                rq->done = true;
                return NULL;
            }
        } else if (end == start) {
            rq->done = true;
            return NULL;
        }
    }
    rq->scanned = rq->len;
    return NULL;
}

/* Read a head into rq, within HEAD_DEADLINE. Returns 0 when there is something to answer:
 * rq->done, or a refusal already set in a (400, 408). Returns a negative errno when the
 * connection went away, sent nothing, or was shed: nothing to answer then. MAY YIELD. */
static int read_head(int fd, struct request *rq, struct answer *a) {
    green_timeout deadline;
    green_timeout_start(&deadline, HEAD_DEADLINE);
    /* An idle connection costs no buffer. */
    int rc = green_fd_wait(fd, GREEN_READ, -1);
    while (rc >= 0 && !rq->done && !a->status) {
        if (rq->len == HEAD_MAX) {
            set_text(a, 400, "request too large\n");
            break;
        }
        if (rq->len == rq->cap) {
            size_t cap = rq->cap ? rq->cap * 2 : HEAD_FIRST;
            char *buf = realloc(rq->buf, cap);
            if (!buf) {
                rc = -ENOMEM;
                break;
            }
            rq->buf = buf;
            rq->cap = cap;
        }
        ssize_t n = green_read(fd, rq->buf + rq->len, rq->cap - rq->len, -1);
        if (n > 0) {
            rq->len += (size_t)n;
            const char *bad = scan_head(rq);
            if (bad)
                set_text(a, 400, bad);
        } else if (n == 0 && rq->len > 0) {
            set_text(a, 400, "incomplete request head\n");
        } else {
            rc = n == 0 ? -ECONNRESET : (int)n;
        }
    }
    bool late = green_timeout_end(&deadline);
    if (rc == -ETIMEDOUT && late) {
        set_text(a, 408, "request head not received in time\n");
        rc = 0;
    }
    return a->status ? 0 : rc < 0 ? rc : 0;
}

/* Pick the page for a parsed request line; *head when the method is HEAD. */
static void route(struct wd_worker *w, const struct request *rq, struct answer *a, bool *head) {
    *head = span_is(rq, rq->method, rq->method_len, "HEAD");
    size_t p = rq->path, n = rq->path_len;
    bool metrics = span_is(rq, p, n, "/metrics"), healthz = span_is(rq, p, n, "/healthz");
    bool workers = span_is(rq, p, n, "/workers"), total = span_is(rq, p, n, "/metrics/total");
    if (!metrics && !healthz && !workers && !total) {
        set_text(a, 404, "not found: try /metrics, /metrics/total, /healthz or /workers\n");
    } else if (!is_get_or_head(rq)) {
        set_text(a, 405, "only GET (and HEAD) here\n");
        a->allow = "GET, HEAD";
    } else if (metrics) {
        page_metrics(w, a);
    } else if (total) {
        page_metrics_total(w, a);
    } else if (healthz) {
        page_healthz(w, a);
    } else {
        page_workers(w, a);
    }
}

static void write_answer(int fd, struct answer *a, bool head) {
    if (!a->body) { /* out of memory rendering a page */
        a->status = 500;
        a->type = "text/plain; charset=utf-8";
    }
    const char *body = a->body ? a->body : "";
    char hdr[512];
    int hl = snprintf(hdr, sizeof hdr,
                      "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                      "Cache-Control: no-store\r\nConnection: close\r\n%s%s%s\r\n",
                      a->status, reason(a->status), a->type, strlen(body),
                      a->allow ? "Allow: " : "", a->allow ? a->allow : "", a->allow ? "\r\n" : "");
    if (green_write_all(fd, hdr, (size_t)hl, -1) == 0 && !head)
        green_write_all(fd, body, strlen(body), -1);
}

/* Half-close, then swallow what the client still sends for a moment: closing a socket
 * with unread input resets it, and the client could lose the answer. */
static void linger(int fd) {
    shutdown(fd, SHUT_WR);
    green_timeout t;
    green_timeout_start(&t, LINGER);
    char sink[4096];
    ssize_t n;
    for (size_t total = 0; total < LINGER_MAX; total += (size_t)n) {
        n = green_read(fd, sink, sizeof sink, -1);
        if (n <= 0)
            break;
    }
    green_timeout_end(&t);
}

static void handle(green_server_conn *conn, int fd, void *arg) {
    struct wd_http *h = arg;
    struct request rq = {0};
    struct answer a = {0};
    bool head = false;
    if (read_head(fd, &rq, &a) == 0) {
        /* Answering: pushed out only if every other connection is answering too. */
        green_server_conn_set_busy(conn, true);
        green_timeout deadline;
        green_timeout_start(&deadline, ANSWER_DEADLINE);
        if (!a.status)
            route(h->w, &rq, &a, &head);
        write_answer(fd, &a, head);
        green_timeout_end(&deadline);
        green_server_conn_set_busy(conn, false);
        linger(fd);
    }
    free(a.body);
    free(rq.buf);
}

/* MAX_CONNS, or a quarter of the descriptor limit when that is lower: the worker's tasks
 * and Redis links need descriptors too. */
static size_t max_conns(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        rl.rlim_cur / 4 < MAX_CONNS)
        return rl.rlim_cur / 4 > 0 ? (size_t)(rl.rlim_cur / 4) : 1;
    return MAX_CONNS;
}

struct wd_http *wd_http_start(struct wd_worker *w, const char *host, int port) {
    struct wd_http *h = calloc(1, sizeof *h);
    if (!h) {
        wd_log(WD_LOG_ERROR, "start-up failed: --http: %s", strerror(ENOMEM));
        return NULL;
    }
    h->w = w;
    h->fd = green_tcp_listen(host, port, LISTEN_BACKLOG);
    if (h->fd < 0) {
        wd_log(WD_LOG_ERROR, "start-up failed: --http: cannot listen on %s:%d: %s", host, port,
               strerror(-h->fd));
        free(h);
        return NULL;
    }
    int rc = green_server_start(&h->server, h->fd, handle, h, max_conns());
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
