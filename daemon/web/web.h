/*
 * web.h - the internals of workerd-web, the dashboard: one small binary that reads the
 * Redis every worker writes and serves, on the runtime's green_server, a page (HTML, CSS
 * and JS compiled in: web_assets.c, generated from daemon/web/assets/) and the JSON API
 * that page polls, documented in README.md "The dashboard" for scripts too.
 *
 * Files and what each owns:
 *   web_main.c     options (the shared settings, --listen, --auth), start-up, signals
 *   web_http.c     the HTTP/1.1 server: request heads and small bodies, security headers
 *   web_auth.c     --auth FILE (users with crypt(3) hashes, bearer tokens), sessions,
 *                  the CSRF check of every POST, the Host check on loopback
 *   web_read.c     the read-only API: overview, workers, queues, tasks, events, dead
 *                  letters
 *   web_fleet.c    reading the fleet: workers, queues, counters (for web_read, web_metrics)
 *   web_metrics.c  the fleet's /metrics, summed from Redis
 *   web_act.c      the state-changing API (POST only): dead letters requeued or deleted,
 *                  purge, revoke, rate limits; every command built by broker/'s builders
 *   web_util.c     query strings, JSON answers, sending a broker_batch on the connection
 *
 * Everything runs on greenlets of one hub (one OS thread): handlers park on Redis calls,
 * nothing here is thread-safe, and the cached state (struct web) is read and written only
 * between yields. Errors are negative errnos; an answer that could not be made is a 500
 * or 503 with a one-line JSON {"error": "..."}.
 *
 * Bounds (the "1,000 open browsers"): at most WEB_MAX_CONNS connections, each with
 * at most WEB_HEAD_MAX bytes of head and WEB_BODY_MAX of body; the page polls (no
 * connection is held between polls); the overview, the most polled answer, is computed at
 * most once per WEB_CACHE_SECONDS whatever the number of clients; lists are paged and long
 * values are cut in lists (WEB_PREVIEW_MAX bytes) and paged in detail views.
 */
#ifndef WORKERD_WEB_H
#define WORKERD_WEB_H

#include "broker_batch.h"
#include "broker_conn.h"
#include "broker_keys.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WEB_MAX_CONNS 1024
#define WEB_HEAD_MAX 8192
#define WEB_BODY_MAX 65536
#define WEB_CACHE_SECONDS 1.0
#define WEB_REDIS_TIMEOUT 5.0
#define WEB_PREVIEW_MAX 512  /* bytes of a long string shown in a list */
#define WEB_PAGE_MAX 65536   /* bytes of a long value in one page of a detail view */
#define WEB_LIST_MAX 1000    /* workers, queues, entries read for one answer */
#define WEB_CHART_MINUTES 60 /* the chart's hour */
#define WEB_DEFAULT_LISTEN "127.0.0.1:5555"

struct web_auth;

/* What the first look at a queue's oldest message saw, for its latency (web_read.c). */
struct web_seen {
    char name[BROKER_QUEUE_NAME_MAX + 1];
    char digest[41]; /* SHA-1 of the oldest message's text */
    double since;    /* when this dashboard first saw it oldest */
};

struct web {
    broker_keys keys;
    long result_expires;  /* seconds; revocations last as long */
    broker_conn *conn;    /* the broker */
    broker_conn *results; /* the result backend (== conn unless another Redis) */
    char broker_redacted[1024];
    struct web_auth *auth; /* NULL: no --auth (loopback only) */
    int port;              /* the port listened on */
    double started_at;

    /* The overview's cache (WEB_CACHE_SECONDS). */
    char *overview;
    size_t overview_len;
    double overview_at;

    struct web_seen seen[WEB_LIST_MAX];
    size_t nseen;
};

/* A request as web_http.c read it. Strings point into the connection's buffers and live
 * until the answer is written; absent headers are NULL. */
struct web_request {
    const char *method; /* "GET", "HEAD", "POST" */
    const char *path;   /* without the query */
    const char *query;  /* after '?', or "" */
    const char *host, *origin, *cookie, *authorization, *csrf, *content_type;
    const char *body; /* POST: body_len bytes, NUL-terminated */
    size_t body_len;
};

/* An answer. body is malloc'd (freed by the server) unless body_static. */
struct web_answer {
    int status;
    const char *type;
    char *body;
    size_t len;
    bool body_static;
    char set_cookie[256]; /* a Set-Cookie header value, or "" */
    bool ask_credentials; /* 401: add WWW-Authenticate: Basic */
};

/* ---- web_http.c ---- */

/* Serve listen_fd until stop is set; MAY YIELD, runs on the main greenlet. */
struct green_event;
int web_http_serve(struct web *w, int listen_fd, struct green_event *stop);

/* ---- web_auth.c ---- */

/* Load --auth FILE: lines "token:SECRET" (a bearer token for scripts) and
 * "USER:HASH" (HASH from crypt(3): yescrypt "$y$...", sha512 "$6$..."), '#' comments.
 * Refuses a file others may read. Returns NULL with a one-line reason in why. */
struct web_auth *web_auth_load(const char *path, char *why, size_t whylen);
void web_auth_free(struct web_auth *a);

/* May this request see the dashboard? Sets a 401 (or 403) into *ans and returns false
 * when not. On loopback without --auth, checks that Host names a loopback address (a page
 * of another site that a DNS name rebound to 127.0.0.1 gets 403). May set a session
 * cookie into ans->set_cookie. */
bool web_auth_allow(struct web *w, const struct web_request *rq, struct web_answer *ans);

/* May this POST change state? Its X-CSRF-Token header must equal its wd_csrf cookie, its
 * Content-Type must be application/json, and its Origin (when sent) must be this host.
 * false with a 403 in *ans otherwise. */
bool web_auth_csrf_ok(const struct web_request *rq, struct web_answer *ans);

/* A new random token (32 hex digits and a NUL). */
void web_auth_token(char out[33]);

/* ---- web_read.c / web_act.c ---- */

/* Answer a GET (or HEAD) of an API path (/api/..., /metrics, /healthz): true when the
 * path is one of them. MAY YIELD. */
bool web_read_route(struct web *w, const struct web_request *rq, struct web_answer *ans);

/* Answer a POST of an API path: true when the path is one. MAY YIELD. */
bool web_act_route(struct web *w, const struct web_request *rq, struct web_answer *ans);

/* Whether path is one of web_act_route's (a GET of it gets 405). */
bool web_act_known(const char *path);

/* ---- web_fleet.c, web_metrics.c ---- */

/* The fleet as Redis holds it. Every call MAY YIELD and returns 0 or broker_conn's error;
 * free what it filled (also after an error) with the matching _free. */
struct fleet {
    json_t *workers; /* [{id, alive, host, pid, queues, concurrency, pool, started, version,
                        beat_age, in_flight}] sorted by id */
    json_t *queues;  /* [{name, depth, latency, workers}] sorted by name */
    long long alive, dead, in_flight, pending;
    bool workers_cut, queues_cut;
};

struct counts {
    long long dead, scheduled, revoked, events;
    long long processed, failed; /* the fleet's totals (broker_stats.h) */
    json_t *minutes;             /* [{minute, processed, failed}] the last hour */
    json_t *redis;               /* {up, version, used_memory, used_memory_human} */
};

/* Workers only (f->workers, alive, dead, in_flight). */
int web_workers_load(struct web *w, struct fleet *f);
/* Workers and queues. */
int web_fleet_load(struct web *w, struct fleet *f);
void web_fleet_free(struct fleet *f);
int web_counts_load(struct web *w, struct counts *c);
void web_counts_free(struct counts *c);

/* GET /metrics into ans. MAY YIELD. */
void web_metrics_page(struct web *w, struct web_answer *ans);

/* ---- web_util.c ---- */

/* The value of name in a query string, percent-decoded, into buf; false when absent or
 * longer than len - 1. */
bool web_query(const char *query, const char *name, char *buf, size_t len);
long web_query_long(const char *query, const char *name, long deflt, long lo, long hi);

/* The value of cookie name in a Cookie header into buf; false when absent. */
bool web_cookie(const char *cookie, const char *name, char *buf, size_t len);

/* Answer with v as JSON (takes the reference; slashes escaped, so "</script>" never
 * appears in an answer). */
void web_json(struct web_answer *ans, int status, json_t *v);
/* Answer {"error": msg} with status. */
void web_error(struct web_answer *ans, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Send b on c in one round trip (EVALSHA retried as EVAL on NOSCRIPT) into
 * replies[0..b->n). 0, -EINVAL (b failed), or broker_conn's errors (replies all NULL).
 * MAY YIELD. */
int web_send(broker_conn *c, broker_batch *b, redisReply **replies);
void web_replies_free(redisReply **replies, size_t n);

/* A JSON string of s[0..n), at most max bytes of it (cut at a UTF-8 boundary; invalid
 * bytes become U+FFFD). */
json_t *web_jstr(const char *s, size_t n, size_t max);

#endif
