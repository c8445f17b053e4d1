/*
 * task_http.c - the http.get and http.request tasks: one HTTP request per task, made with
 * libcurl through green_http_perform, so the task's greenlet parks while thousands of
 * others run.
 *
 *   http.get(url, headers={}, timeout=30, follow_redirects=true, max_redirects=5,
 *            max_size=10 MiB, raise_for_status=false, retry_on=[], retry_on_errors=false)
 *   http.request(method, url, body=None, ...the same keyword arguments)
 *
 * Result, like requests' Response: {"status": 200, "headers": {"content-type": "..."},
 * "body": "text" (when the body is valid UTF-8, and escaping it for JSON costs no more than
 * base64 would: see response_object) or "body_base64": "..." (otherwise), "url": final
 * URL after redirects, "elapsed_ms": 12.5}. Response header names are
 * lowercased; repeated headers are joined with ", ". A 4xx/5xx status is a success
 * unless raise_for_status is true. Transport failures (refused, DNS, TLS, too many
 * redirects, body or headers too large, unsupported protocol) are TASK_EFAIL "HTTPError"
 * with curl's reason; the request's own timeout (curl's clock, CURLOPT_TIMEOUT_MS) is
 * TASK_EFAIL "Timeout"; an enclosing time limit or a kill (-ETIMEDOUT / -ECANCELED from
 * green_http_perform) is returned as is. With retry_on and retry_on_errors, a listed
 * status or a failure that may pass asks for a retry instead (TASK_ERETRY, with the delay
 * of a Retry-After header: task_http_retry.h).
 *
 * Limits: every size and time a message may ask for is capped by task_http_limits, so a
 * message cannot make the worker hold a gigabyte or a connection for a week. The result's
 * own limit (max_result, the worker's --max-result-size) caps what is read too: a body's
 * JSON is never shorter than the body, so a body longer than a result may be could only
 * end as a result too large to store; the transfer stops there, TASK_EFAIL
 * "ResultTooLarge", and the worker never holds more of it than the limit. Only http
 * and https are allowed, for the first URL and for every redirect (no file://, no
 * gopher:// to reach internal services). Request headers are validated (token names, no
 * CR/LF in values: no header injection). http.request sends the standard methods and those
 * the administrator lists (task_http_methods.h), nothing else.
 *
 * The address policy (task_http_policy.h) keeps a message from turning the worker against
 * its own neighbourhood, the cloud metadata service first. It is checked on the address
 * curl is about to connect to, after DNS, in CURLOPT_OPENSOCKETFUNCTION: a refused
 * address gets no socket, so not one packet goes to it, and a name that resolves to a
 * public address and then to 169.254.169.254 (DNS rebinding) is caught on the second
 * connection as on the first. Every redirect's connection passes the same check, with
 * that redirect's host for the host-name rules. CURLOPT_PREREQFUNCTION checks again,
 * before each request is sent, the address of the connection it uses: a connection taken
 * from the shared cache skips the open-socket callback. A refusal is TASK_EFAIL
 * "HTTPError" naming the policy rule. Proxies from the environment (http_proxy, ...) are
 * ignored: with a proxy, the policy would see only the proxy's address.
 *
 * Credentials and redirects: libcurl (since 7.83, CVE-2022-27776) drops a custom
 * Authorization or Cookie header when a redirect leads to another host, port or scheme,
 * and CURLOPT_UNRESTRICTED_AUTH stays off; test_http_guard.c holds it to that. Credentials
 * in the URL itself ("http://user:pass@host/") are sent, but never reported: the result's
 * url, its Location header and error messages carry them redacted (task_http_redact.h).
 *
 * Per-host limits (--http-host-concurrency, --http-host-rate): the worker takes the URL's
 * host's slot and turn before the call starts (task_ctx_gate, task_host.h), reading the
 * URL and timeout with the same argument parser (task__http_destination). Redirects keep
 * that slot and turn: curl follows them inside the one transfer, so their hosts are not
 * limited (docs/design.md "Rate limits" says why).
 *
 * Stacks: the task functions run on a task's greenlet and yield inside
 * green_http_perform. The write and header callbacks run on the hub's stack
 * (green_http.h): they only append to buffers and set flags, never yield or call curl.
 *
 * Easy handles are kept in a per-thread free list and reset before reuse; the connection
 * and DNS caches live in the hub's multi handles, so they are shared anyway, and the list
 * saves the creation of a handle per task (curl_easy_init allocates some 20 KB, and it
 * and its cleanup were a tenth of the worker's time per http.get with a list of 16 at
 * -c 100). The list keeps every handle given back, so it holds as many as the most
 * transfers this thread has had at once (bounded by the worker's concurrency): after a
 * burst, their memory stays for the next one. task_http_cleanup frees the list.
 */
#include "task.h"
#include "task_http_methods.h"
#include "task_http_policy.h"
#include "task_http_redact.h"
#include "task_http_retry.h"
#include "task_internal.h"

#include "green.h"
#include "green_check.h"
#include "green_http.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define DEFAULT_TIMEOUT 30.0
#define DEFAULT_MAX_SIZE ((long long)10 << 20)
#define DEFAULT_MAX_REDIRECTS 5LL
#define MIN_TIMEOUT 0.001
/* A body stays text while its escaped JSON is at most this much longer than base64. */
#define BODY_TEXT_SLACK 64
#define METHOD_MAX TASK_HTTP_METHOD_MAX

/* The limits before registration (an initializer, not a const object, so that any C11
 * compiler accepts it for the static below). */
#define DEFAULT_LIMITS                                                                             \
    {                                                                                              \
        .max_timeout = TASK_HTTP_DEFAULT_MAX_TIMEOUT, .max_size = TASK_HTTP_DEFAULT_MAX_SIZE,      \
        .max_redirects = TASK_HTTP_DEFAULT_MAX_REDIRECTS,                                          \
        .max_headers = TASK_HTTP_DEFAULT_MAX_HEADERS,                                              \
        .max_header_bytes = TASK_HTTP_DEFAULT_MAX_HEADER_BYTES,                                    \
    }
static const task_http_limits default_limits = DEFAULT_LIMITS;

/* The limits of the process, set at registration; read-only afterwards (so any thread
 * may read them). */
static task_http_limits limits = DEFAULT_LIMITS;

/* The address policy of the process: built at configuration, read-only afterwards; the
 * built-in deny list alone until then. policy_needs_host: it has host-name rules, so the
 * checks need the URL's host (parsing it costs a few allocations per request). */
static task_http_policy *policy;
static bool policy_needs_host;

/* The free list of easy handles of this thread (handles never cross threads); its array
 * grows with handles_live (handles created and not yet freed), so giving a handle back
 * never needs memory. */
static _Thread_local CURL **handle_cache;
static _Thread_local size_t handle_cached, handle_cache_cap;
static _Thread_local size_t handles_live;

/* What one request asks for, after argument checking. Strings borrow from the call. */
typedef struct request {
    char method[METHOD_MAX + 1];
    const char *url;
    const char *body; /* NULL: no body */
    size_t body_len;
    const json_t *headers;
    double timeout;
    bool follow_redirects;
    long long max_redirects;
    long long max_size;
    bool raise_for_status;
    const json_t *retry_on; /* status codes that ask for a retry; NULL: none */
    bool retry_on_errors;   /* transport failures that may pass ask for one too */
    /* NULL, or whether the body is worth reading (on_body) */
    task_http_wants_fn wants_body;
} request;

/* A growable byte buffer, appended to from the hub stack. */
typedef struct buffer {
    char *data;
    size_t len, cap;
} buffer;

/* The state the callbacks share with the task's greenlet. */
typedef struct transfer {
    CURL *easy;
    buffer body;
    buffer headers; /* raw header lines of the last response */
    size_t header_lines;
    size_t max_size;
    size_t max_result; /* limits.max_result; 0: none */
    bool body_too_big;
    bool body_over_result; /* longer than any result may be (max_result) */
    bool headers_too_big;
    bool out_of_memory;
    bool refused;       /* the address policy refused a connection */
    char refusal[1024]; /* the first refusal, for the message */
    /* Asked at the first byte of each response's body (body_asked); when it says no
     * (body_unwanted), the transfer stops there. */
    task_http_wants_fn wants_body;
    bool body_asked;
    bool body_unwanted;
} transfer;

/* ---- limits and the handle cache ---------------------------------------------------- */

static void limits_set(const task_http_limits *in) {
    limits = default_limits;
    /* Parsed into the policy and the method set; the strings are not kept. */
    limits.deny = limits.allow = limits.methods = NULL;
    if (in == NULL)
        return;
    if (in->max_timeout > 0)
        limits.max_timeout = in->max_timeout;
    if (in->max_size > 0)
        limits.max_size = in->max_size;
    if (in->max_redirects > 0)
        limits.max_redirects = in->max_redirects;
    if (in->max_headers > 0)
        limits.max_headers = in->max_headers;
    if (in->max_header_bytes > 0)
        limits.max_header_bytes = in->max_header_bytes;
    limits.max_result = in->max_result;
}

static CURL *handle_get(void) {
    if (handle_cached > 0)
        return handle_cache[--handle_cached];
    if (green_http_global_init() != 0)
        return NULL;
    if (handles_live == handle_cache_cap) {
        size_t cap = handle_cache_cap ? 2 * handle_cache_cap : 64;
        CURL **grown = realloc(handle_cache, cap * sizeof *grown);
        if (grown == NULL)
            return NULL;
        handle_cache = grown;
        handle_cache_cap = cap;
    }
    CURL *easy = curl_easy_init();
    if (easy != NULL)
        handles_live++;
    return easy;
}

/* green_http_perform has detached the handle from the multi by the time it returns, so a
 * reset handle is as good as new (its connection stays in the multi's cache). */
static void handle_put(CURL *easy) {
    if (handle_cached < handle_cache_cap) {
        curl_easy_reset(easy);
        handle_cache[handle_cached++] = easy;
    } else { /* only after a task_http_cleanup with transfers still running */
        curl_easy_cleanup(easy);
    }
}

void task_http_cleanup(void) {
    while (handle_cached > 0)
        curl_easy_cleanup(handle_cache[--handle_cached]);
    free(handle_cache);
    handle_cache = NULL;
    handle_cache_cap = 0;
    handles_live = 0;
}

void task__http_stats(size_t *live, size_t *cached) {
    *live = handles_live;
    *cached = handle_cached;
}

/* ---- callbacks (hub stack: append only) --------------------------------------------- */

/* The first allocation is small: most responses of API calls are, and glibc serves a
 * request under 1 KiB from its small bins, where 1 KiB or more first consolidates the
 * fast bins (a tenth of a small task's time in malloc_consolidate). */
#define BUFFER_FIRST 256

static bool buffer_append(buffer *b, const char *data, size_t n) {
    if (b->cap - b->len < n + 1) {
        size_t cap = b->cap ? b->cap : BUFFER_FIRST;
        while (cap - b->len < n + 1)
            cap *= 2;
        char *grown = realloc(b->data, cap);
        if (grown == NULL)
            return false;
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, n);
    b->len += n;
    b->data[b->len] = '\0';
    return true;
}

/* Returning less than n makes libcurl stop the transfer with CURLE_WRITE_ERROR; the flags
 * tell the greenlet why. The size cap is checked here, on decoded bytes, because a
 * Content-Length (CURLOPT_MAXFILESIZE_LARGE) may be absent or compressed. */
static size_t on_body(char *data, size_t size, size_t nmemb, void *userdata) {
    transfer *t = userdata;
    size_t n = size * nmemb;
    /* At the first byte of the body the headers are all in (curl skips the bodies of the
     * redirects it follows): a body the caller does not want is never downloaded. */
    if (t->wants_body != NULL && !t->body_asked) {
        t->body_asked = true;
        if (!t->wants_body(t->headers.data, t->headers.len)) {
            t->body_unwanted = true;
            return 0;
        }
    }
    if (n > t->max_size - t->body.len) {
        t->body_too_big = true;
        return 0;
    }
    if (t->max_result > 0 && n > t->max_result - t->body.len) {
        t->body_over_result = true;
        return 0;
    }
    if (!buffer_append(&t->body, data, n)) {
        t->out_of_memory = true;
        return 0;
    }
    return n;
}

/* One header line per call, status lines included. A status line starts a new response
 * (a redirect, or a 100 Continue), whose headers replace the previous ones. */
static size_t on_header(char *data, size_t size, size_t nmemb, void *userdata) {
    transfer *t = userdata;
    size_t n = size * nmemb;
    if (n >= 5 && memcmp(data, "HTTP/", 5) == 0) {
        t->headers.len = 0;
        t->header_lines = 0;
        t->body_asked = false;
        return n;
    }
    if (n <= 2 && (data[0] == '\r' || data[0] == '\n'))
        return n; /* the blank line that ends the headers */
    if (++t->header_lines > limits.max_headers || n > limits.max_header_bytes - t->headers.len) {
        t->headers_too_big = true;
        return 0;
    }
    if (!buffer_append(&t->headers, data, n)) {
        t->out_of_memory = true;
        return 0;
    }
    return n;
}

/* ---- the address policy (hub stack) ------------------------------------------------- */

/* The host of the URL curl is fetching now (the redirect's, after a redirect), lower-cased
 * by curl's parser, into host; "" when unknown. CURLINFO_EFFECTIVE_URL is updated before
 * curl connects for a redirect. curl_easy_getinfo only reads the handle's state and is
 * meant to be called from callbacks (curl's progressfunc.c example does), unlike the multi
 * calls that the no-calls-from-callbacks rule is about; curl_url is a plain parser. */
static void current_host(CURL *easy, char *host, size_t cap) {
    const char *url = NULL;
    char *h = NULL;
    host[0] = '\0';
    curl_easy_getinfo(easy, CURLINFO_EFFECTIVE_URL, &url);
    CURLU *u = url ? curl_url() : NULL;
    if (u != NULL && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &h, 0) == CURLUE_OK)
        snprintf(host, cap, "%s", h);
    curl_free(h);
    curl_url_cleanup(u);
}

#define HOST_BUF 256

/* The URL's host for the policy checks, in host; NULL when no rule uses it (the checks take
 * NULL as unknown), which saves parsing the URL on every request. */
static const char *checked_host(transfer *t, char host[HOST_BUF]) {
    if (!policy_needs_host)
        return NULL;
    current_host(t->easy, host, HOST_BUF);
    return host;
}

/* Record a refusal (the first one: with several addresses, curl tries each). host is what
 * the check was given; NULL: looked up here, for the message. */
static void refuse(transfer *t, const char *host, const char *addr, const task_http_verdict *v) {
    if (t->refused)
        return;
    t->refused = true;
    char looked_up[HOST_BUF];
    if (host == NULL) {
        current_host(t->easy, looked_up, sizeof looked_up);
        host = looked_up;
    }
    /* The host is worth naming unless it is the address itself ("[::1]" for "::1"). */
    size_t alen = strlen(addr);
    bool literal =
        strcmp(host, addr) == 0 ||
        (host[0] == '[' && strncmp(host + 1, addr, alen) == 0 && strcmp(host + 1 + alen, "]") == 0);
    char who[320];
    if (host[0] == '\0' || literal)
        snprintf(who, sizeof who, "%s", addr);
    else
        snprintf(who, sizeof who, "%.255s (%s)", host, addr);
    /* An IPv6 address refused for the IPv4 address it carries says which and why. */
    char inside[96] = "";
    if (v->form != NULL)
        snprintf(inside, sizeof inside, ", for %s inside this %s address", v->ipv4, v->form);
    snprintf(t->refusal, sizeof t->refusal,
             "connection to %s refused by the HTTP address policy (%s%s%s%s)", who,
             task_http_rule_origin_name(v->origin),
             v->origin == TASK_HTTP_RULE_BUILTIN ? ": " : " ", v->rule, inside);
}

/* CURLOPT_OPENSOCKETFUNCTION: the policy check before connect. A refused address gets no
 * socket (CURL_SOCKET_BAD), so curl moves on to the next address or fails the transfer
 * with CURLE_COULDNT_CONNECT. SOCK_CLOEXEC: a forked child must not hold transfers. */
static curl_socket_t on_open_socket(void *clientp, curlsocktype purpose,
                                    struct curl_sockaddr *address) {
    transfer *t = clientp;
    (void)purpose;
    char buf[HOST_BUF];
    const char *host = checked_host(t, buf);
    task_http_verdict v;
    if (!task_http_policy_check(policy, host, &address->addr, address->addrlen, &v)) {
        char addr[INET6_ADDRSTRLEN] = "?";
        const void *bytes = NULL;
        if (address->family == AF_INET)
            bytes = &((const struct sockaddr_in *)(const void *)&address->addr)->sin_addr;
        else if (address->family == AF_INET6)
            bytes = &((const struct sockaddr_in6 *)(const void *)&address->addr)->sin6_addr;
        if (bytes != NULL)
            inet_ntop(address->family, bytes, addr, sizeof addr);
        refuse(t, host, addr, &v);
        return CURL_SOCKET_BAD;
    }
    return socket(address->family, address->socktype | SOCK_CLOEXEC, address->protocol);
}

/* CURLOPT_PREREQFUNCTION: the same check on the connection a request is about to use,
 * new or reused, just before it is sent. */
static int on_prereq(void *clientp, char *primary_ip, char *local_ip, int primary_port,
                     int local_port) {
    transfer *t = clientp;
    (void)local_ip, (void)primary_port, (void)local_port;
    char buf[HOST_BUF];
    const char *host = checked_host(t, buf);
    task_http_verdict v;
    if (!task_http_policy_check_text(policy, host, primary_ip, &v)) {
        refuse(t, host, primary_ip, &v);
        return CURL_PREREQFUNC_ABORT;
    }
    return CURL_PREREQFUNC_OK;
}

/* ---- request set-up ----------------------------------------------------------------- */

static void set_method(CURL *easy, const request *req) {
    if (req->body != NULL) {
        curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
        curl_easy_setopt(easy, CURLOPT_POSTFIELDS, req->body);
        if (strcmp(req->method, "POST") != 0)
            curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, req->method);
    } else if (strcmp(req->method, "GET") == 0) {
        curl_easy_setopt(easy, CURLOPT_HTTPGET, 1L);
    } else if (strcmp(req->method, "HEAD") == 0) {
        curl_easy_setopt(easy, CURLOPT_NOBODY, 1L);
    } else if (strcmp(req->method, "POST") == 0) {
        curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
        curl_easy_setopt(easy, CURLOPT_POSTFIELDS, "");
    } else {
        curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, req->method);
    }
}

static void configure(CURL *easy, const request *req, struct curl_slist *headers, transfer *t,
                      char *errbuf) {
    curl_easy_setopt(easy, CURLOPT_URL, req->url);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(easy, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(easy, CURLOPT_PROXY, ""); /* no proxy from the environment */
    curl_easy_setopt(easy, CURLOPT_UNRESTRICTED_AUTH, 0L);
    curl_easy_setopt(easy, CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
    curl_easy_setopt(easy, CURLOPT_OPENSOCKETDATA, t);
    curl_easy_setopt(easy, CURLOPT_PREREQFUNCTION, on_prereq);
    curl_easy_setopt(easy, CURLOPT_PREREQDATA, t);
    curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, req->follow_redirects ? 1L : 0L);
    curl_easy_setopt(easy, CURLOPT_MAXREDIRS, (long)req->max_redirects);
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long)(req->timeout * 1000.0 + 0.5));
    if (req->max_size > 0) /* 0 would mean no limit to curl; on_body enforces it anyway */
        curl_easy_setopt(easy, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)req->max_size);
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(easy, CURLOPT_HEADERDATA, t);
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(easy, CURLOPT_USERAGENT,
                     "workerd/"
                     "0.1");
    curl_easy_setopt(easy, CURLOPT_ACCEPT_ENCODING, ""); /* what curl can decode */
    set_method(easy, req);
}

/* ---- the request -------------------------------------------------------------------- */

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* "curl's reason": its short text for the code, then the specific error buffer. */
static int transport_error(const task_call *call, CURLcode res, const transfer *t,
                           const request *req, const char *errbuf, task_error *err) {
    const char *what = curl_easy_strerror(res);
    if (t->out_of_memory)
        return task_error_set(err, "MemoryError", "%s: out of memory for the response", call->name);
    /* Only when the refusal is why the transfer failed: a name with a refused and an
     * allowed address may fail on the allowed one for reasons of its own. */
    if (t->refused && (res == CURLE_COULDNT_CONNECT || res == CURLE_ABORTED_BY_CALLBACK))
        return task_error_set(err, "HTTPError", "%s", t->refusal);
    if (t->body_over_result) {
        curl_off_t length = -1;
        curl_easy_getinfo(t->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &length);
        char told[64] = "";
        if (length > 0)
            snprintf(told, sizeof told, " (%lld bytes by its Content-Length)", (long long)length);
        return task_error_set(err, "ResultTooLarge",
                              "%s: the response body is over %zu bytes%s, so its result would "
                              "be over --max-result-size (%zu bytes); it was not read further",
                              call->name, t->max_result, told, t->max_result);
    }
    if (t->body_too_big || res == CURLE_FILESIZE_EXCEEDED)
        return task_error_set(err, "HTTPError",
                              "%s: response body larger than max_size (%lld bytes)", what,
                              req->max_size);
    if (t->headers_too_big)
        return task_error_set(err, "HTTPError", "%s: response headers exceed %zu lines / %zu bytes",
                              what, limits.max_headers, limits.max_header_bytes);
    const char *type = res == CURLE_OPERATION_TIMEDOUT ? "Timeout" : "HTTPError";
    if (errbuf[0] == '\0')
        return task_error_set(err, type, "%s", what);
    return task_error_set(err, type, "%s: %s", what, errbuf);
}

/* A JSON string of a URL with its userinfo redacted (task_http_redact.h); NULL when out
 * of memory. whole: text is one URL, not text that may hold some. */
static json_t *redacted_text(const char *text, size_t len, bool whole) {
    if (memchr(text, '@', len) == NULL)
        return task__text(text, len);
    size_t n;
    char *r = task__redact_dup(text, len, whole, &n);
    json_t *j = r ? task__text(r, n) : NULL;
    free(r);
    return j;
}

/* The response headers; the ones that hold a URL (a redirect's target) redacted. */
static json_t *headers_object(const transfer *t) {
    static const char *const url_headers[] = {"location", "content-location"};
    json_t *h = task__headers_object(t->headers.data, t->headers.len);
    for (size_t i = 0; h != NULL && i < sizeof url_headers / sizeof *url_headers; i++) {
        json_t *v = json_object_get(h, url_headers[i]);
        if (v != NULL && json_object_set_new(h, url_headers[i],
                                             redacted_text(json_string_value(v),
                                                           json_string_length(v), true)) != 0) {
            json_decref(h);
            return NULL;
        }
    }
    return h;
}

/* The result object of a finished transfer, or NULL when out of memory.
 * json_object_set_new consumes its value even when it fails (and fails on NULL), so
 * the failures can be collected and checked once. curl reports the URL with the
 * credentials a task gave in it: "url" carries it redacted. The body is text when as_text
 * and it is valid UTF-8, else base64. */
static json_t *response_object(const char *url, long status, const transfer *t, bool as_text,
                               double elapsed_ms) {
    json_t *res = json_object();
    if (res == NULL)
        return NULL;
    const char *body = t->body.data ? t->body.data : "";
    json_t *text = as_text ? json_stringn(body, t->body.len) : NULL;
    int bad = json_object_set_new(res, "status", json_integer(status));
    bad |= json_object_set_new(res, "headers", headers_object(t));
    if (text != NULL)
        bad |= json_object_set_new(res, "body", text);
    else
        bad |= json_object_set_new(res, "body_base64", task__base64(body, t->body.len));
    bad |= json_object_set_new(res, "url", redacted_text(url, strlen(url), true));
    /* Microsecond resolution is plenty, and keeps the JSON short. */
    double ms = (double)(long long)(elapsed_ms * 1000.0 + 0.5) / 1000.0;
    bad |= json_object_set_new(res, "elapsed_ms", json_real(ms));
    if (bad) {
        json_decref(res);
        return NULL;
    }
    return res;
}

/* The request's transfer, shared by http.get, http.request and http.scrape: the header
 * list, the policy, the limits, the transfer itself and the checks of
 * its status (retry_on, raise_for_status). 0 with *t's body and headers, *status, *url
 * (the final URL as curl reports it, credentials included: malloc'd, the caller frees it)
 * and *elapsed filled; else a task error, with nothing left to free but t's buffers.
 * max_result: the result's cap on the body (0: none, for a task whose result does not
 * carry the body). MAY YIELD. */
static int exchange(const task_call *call, const request *req, size_t max_result, transfer *t,
                    long *status, char **url, double *elapsed, task_error *err) {
    struct curl_slist *headers = NULL;
    *url = NULL;
    int rc = task__http_header_list(call, req->headers, &limits, &headers, err);
    if (rc != 0)
        return rc;
    CURL *easy = handle_get();
    if (easy == NULL) {
        task__http_header_list_free(headers);
        return task_error_set(err, "MemoryError", "%s: could not create a curl handle", call->name);
    }
    *t = (transfer){.easy = easy,
                    .max_size = (size_t)req->max_size,
                    .max_result = max_result,
                    .wants_body = req->wants_body};
    char errbuf[CURL_ERROR_SIZE] = "";
    configure(easy, req, headers, t, errbuf);

    double start = now_ms();
    CURLcode res = CURLE_OK;
    /* No deadline of our own: curl's CURLOPT_TIMEOUT_MS is the request's timeout, so an
     * -ETIMEDOUT here can only come from an enclosing scope (the task's time limit). */
    rc = green_http_perform(easy, &res, -1);
    *elapsed = now_ms() - start;

    if (rc == -ETIMEDOUT || rc == -ECANCELED) {
        /* Propagated unchanged, err untouched (task.h). */
    } else if (rc != 0) {
        rc = task_error_set(err, "InternalError", "%s: green_http_perform: %s", call->name,
                            strerror(-rc));
    } else if (res != CURLE_OK && !(res == CURLE_WRITE_ERROR && t->body_unwanted)) {
        rc = transport_error(call, res, t, req, errbuf, err);
        /* Not when the policy refused: that would fail the same way again. */
        if (rc == TASK_EFAIL && req->retry_on_errors && !t->refused &&
            task__http_retry_error(res)) {
            err->retry_in = -1; /* the message's backoff */
            rc = TASK_ERETRY;
        }
    } else {
        *status = 0;
        curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, status);
        if (task__http_retry_status(req->retry_on, *status)) {
            double wait =
                task__http_retry_after(t->headers.data, t->headers.len, green_wallclock());
            rc = task_retry(err, wait, "HTTPError", "HTTP %ld", *status);
        } else if (req->raise_for_status && *status >= 400) {
            rc = task_error_set(err, "HTTPError", "HTTP %ld", *status);
        } else {
            const char *u = NULL;
            curl_easy_getinfo(easy, CURLINFO_EFFECTIVE_URL, &u);
            *url = strdup(u ? u : "");
            if (*url == NULL)
                rc = task_error_set(err, "MemoryError", "%s: out of memory", call->name);
        }
    }
    t->easy = NULL;
    handle_put(easy);
    task__http_header_list_free(headers);
    /* curl's reasons rarely quote a URL, but one that does must not quote a password. */
    if (rc == TASK_EFAIL || rc == TASK_ERETRY)
        task__redact_in_place(err->message, sizeof err->message);
    return rc;
}

/* http.get and http.request: the exchange, and its result with the body. */
static int perform(const task_call *call, const request *req, json_t **result, task_error *err) {
    transfer t = {0};
    long status = 0;
    char *url = NULL;
    double elapsed = 0;
    int rc = exchange(call, req, limits.max_result, &t, &status, &url, &elapsed, err);
    if (rc == 0) {
        /* Text only when escaping it costs no more than base64 (plus a little, so that a
         * short text with a newline stays text): each control byte is six bytes escaped
         * (a body of \x01 bytes was six times its size), a quote or a backslash two. */
        const char *body = t.body.data ? t.body.data : "";
        size_t escaped = task__json_escaped_len(body, t.body.len);
        size_t base64 = (t.body.len + 2) / 3 * 4;
        bool as_text = escaped <= base64 + BODY_TEXT_SLACK;
        size_t body_json = as_text ? escaped : base64;
        if (limits.max_result > 0 && body_json > limits.max_result) {
            /* Not worth building: the result could not be stored. */
            rc = task_error_set(err, "ResultTooLarge",
                                "%s: the response body of %zu bytes is %zu bytes of JSON, over "
                                "--max-result-size (%zu bytes)",
                                call->name, t.body.len, body_json, limits.max_result);
        } else {
            *result = response_object(url, status, &t, as_text, elapsed);
            if (*result == NULL)
                rc = task_error_set(err, "MemoryError", "%s: out of memory", call->name);
        }
    }
    free(url);
    free(t.body.data);
    free(t.headers.data);
    return rc;
}

/* ---- arguments and the tasks -------------------------------------------------------- */

/* The keyword arguments both tasks share; index is where url sits. */
static int common_args(const task_call *call, size_t url_index, request *req, task_error *err) {
    double def_timeout =
        DEFAULT_TIMEOUT < limits.max_timeout ? DEFAULT_TIMEOUT : limits.max_timeout;
    long long max_size = (long long)limits.max_size;
    long long def_size = DEFAULT_MAX_SIZE < max_size ? DEFAULT_MAX_SIZE : max_size;
    long long def_redirs =
        DEFAULT_MAX_REDIRECTS < limits.max_redirects ? DEFAULT_MAX_REDIRECTS : limits.max_redirects;
    int rc = task_arg_string(call, url_index, "url", &req->url, err);
    if (rc == 0)
        rc = task_opt_object(call, TASK_ARG_KWONLY, "headers", &req->headers, err);
    if (rc == 0)
        rc = task_opt_number(call, TASK_ARG_KWONLY, "timeout", def_timeout, MIN_TIMEOUT,
                             limits.max_timeout, &req->timeout, err);
    if (rc == 0)
        rc = task_opt_bool(call, TASK_ARG_KWONLY, "follow_redirects", true, &req->follow_redirects,
                           err);
    if (rc == 0)
        rc = task_opt_integer(call, TASK_ARG_KWONLY, "max_redirects", def_redirs, 0,
                              limits.max_redirects, &req->max_redirects, err);
    if (rc == 0)
        rc = task_opt_integer(call, TASK_ARG_KWONLY, "max_size", def_size, 0, max_size,
                              &req->max_size, err);
    if (rc == 0)
        rc = task_opt_bool(call, TASK_ARG_KWONLY, "raise_for_status", false, &req->raise_for_status,
                           err);
    if (rc == 0)
        rc = task__http_retry_args(call, &req->retry_on, &req->retry_on_errors, err);
    return rc;
}

static int task_http_get(const task_call *call, json_t **result, task_error *err) {
    static const char *const kwargs[] = {
        "url",      "headers",          "timeout",  "follow_redirects", "max_redirects",
        "max_size", "raise_for_status", "retry_on", "retry_on_errors",  NULL};
    request req = {.method = "GET"};
    int rc = task_args_check(call, 1, kwargs, err);
    if (rc == 0)
        rc = common_args(call, 0, &req, err);
    if (rc != 0)
        return rc;
    return perform(call, &req, result, err);
}

static int task_http_request(const task_call *call, json_t **result, task_error *err) {
    static const char *const kwargs[] = {"method",
                                         "url",
                                         "body",
                                         "headers",
                                         "timeout",
                                         "follow_redirects",
                                         "max_redirects",
                                         "max_size",
                                         "raise_for_status",
                                         "retry_on",
                                         "retry_on_errors",
                                         NULL};
    request req = {0};
    const char *method;
    int rc = task_args_check(call, 2, kwargs, err);
    if (rc == 0)
        rc = task_arg_string(call, 0, "method", &method, err);
    if (rc == 0)
        rc = common_args(call, 1, &req, err);
    if (rc == 0 && (strlen(method) > METHOD_MAX || !task__http_token_valid(method))) {
        rc = task_error_invalid(err, "ValueError",
                                "%s: argument 1 (method) is not a valid "
                                "HTTP method: '%.64s'",
                                call->name, method);
    }
    if (rc == 0)
        rc = task_opt_string(call, TASK_ARG_KWONLY, "body", NULL, &req.body, &req.body_len, err);
    if (rc != 0)
        return rc;
    /* Methods are case-sensitive in HTTP, but every producer means the upper-case ones. */
    for (size_t i = 0; method[i] != '\0'; i++)
        req.method[i] = (char)(method[i] >= 'a' && method[i] <= 'z' ? method[i] - 32 : method[i]);
    if (!task__http_method_allowed(req.method))
        return task_error_set(err, "HTTPError",
                              "%s: method '%s' is not allowed: http.request sends %s, and other "
                              "methods only when listed in --http-methods",
                              call->name, req.method, task__http_standard_methods);
    return perform(call, &req, result, err);
}

/* The per-host limits (task_ctx_gate) read the call's arguments the way the task will:
 * those that the task refuses take no turn. */
bool task__http_destination(const task_call *call, char *host, size_t cap, double *timeout) {
    size_t url_index;
    if (strcmp(call->name, "http.get") == 0 || strcmp(call->name, "http.scrape") == 0)
        url_index = 0;
    else if (strcmp(call->name, "http.request") == 0)
        url_index = 1;
    else
        return false;
    request req = {.method = "GET"};
    task_error scratch = {{0}, {0}, -1, NULL};
    int rc = common_args(call, url_index, &req, &scratch);
    task_error_clear(&scratch);
    if (rc != 0)
        return false;
    CURLU *u = curl_url();
    char *h = NULL;
    bool found = u && curl_url_set(u, CURLUPART_URL, req.url, 0) == CURLUE_OK &&
                 curl_url_get(u, CURLUPART_HOST, &h, 0) == CURLUE_OK && h && h[0] &&
                 strlen(h) < cap;
    if (found) {
        for (size_t i = 0; h[i]; i++)
            host[i] = (char)(h[i] >= 'A' && h[i] <= 'Z' ? h[i] + 32 : h[i]);
        host[strlen(h)] = '\0';
        *timeout = req.timeout;
    }
    curl_free(h);
    curl_url_cleanup(u);
    return found;
}

/* ---- the fetch of http.scrape (task_internal.h) --------------------------------------- */

const char *const task__http_fetch_kwargs[] = {
    "url",      "headers",          "timeout",  "follow_redirects", "max_redirects",
    "max_size", "raise_for_status", "retry_on", "retry_on_errors",  NULL};

int task__http_fetch(const task_call *call, size_t url_index, task_http_wants_fn wants_body,
                     task_http_fetched *out, task_error *err) {
    request req = {.method = "GET"};
    *out = (task_http_fetched){0};
    int rc = common_args(call, url_index, &req, err);
    if (rc != 0)
        return rc;
    req.wants_body = wants_body;
    transfer t = {0};
    /* The body is not in http.scrape's result: max_size alone bounds it. */
    rc = exchange(call, &req, 0, &t, &out->status, &out->url, &out->elapsed_ms, err);
    if (rc == 0) {
        out->body = t.body.data;
        out->body_len = t.body.len;
        out->headers = t.headers.data;
        out->headers_len = t.headers.len;
        return 0;
    }
    free(out->url);
    out->url = NULL;
    free(t.body.data);
    free(t.headers.data);
    return rc;
}

void task__http_fetched_free(task_http_fetched *f) {
    free(f->body);
    free(f->headers);
    free(f->url);
    *f = (task_http_fetched){0};
}

json_t *task__http_url_json(const char *url) {
    return redacted_text(url, strlen(url), true);
}

/* The policy is built first, so that a bad list (-EINVAL; the daemon has validated the
 * lists, so only a plugin host can get this) keeps the previous settings and registers
 * neither task. */
int task__http_register(const task_http_limits *in) {
    task_http_policy *fresh;
    char why[256];
    if (task_http_check_methods(in ? in->methods : NULL) != NULL)
        return -EINVAL;
    int rc =
        task_http_policy_new(in ? in->deny : NULL, in ? in->allow : NULL, &fresh, why, sizeof why);
    if (rc != 0)
        return rc;
    task__http_methods_set(in ? in->methods : NULL); /* checked above: cannot fail */
    task_http_policy_free(policy);
    policy = fresh;
    policy_needs_host = task_http_policy_has_host_rules(fresh);
    limits_set(in);
    rc = task_registry_add("http.get", task_http_get);
    if (rc == 0)
        rc = task_registry_add("http.request", task_http_request);
    return rc;
}
