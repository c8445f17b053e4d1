/*
 * green_http.c - libcurl's multi interface driven by the hub's libev loop, in the manner of
 * curl's docs/examples/evhiperfifo.c, with greenlets parked on their transfers.
 *
 * Per hub there is one http_hub (stored in the GREEN__SLOT_HTTP slot, created on first use):
 * a list of shards, each a CURLM with one ev_timer for that multi's single timeout, and one
 * http_sock (an ev_io) per socket a multi asks us to watch, attached to the socket with
 * curl_multi_assign. A transfer goes to the first shard carrying fewer than SHARD_TRANSFERS
 * transfers (a new shard when all are full): libcurl 7.88's connection-cache walks are
 * linear in the cache, so one multi for 10,000 transfers is quadratic (see SHARD_TRANSFERS).
 * Each shard has its own connection cache; transfers in one shard reuse its connections.
 * The flow:
 *
 *   greenlet: green_http_perform   adds the easy handle (libcurl's timer callback asks for a
 *                                  0 ms timeout), parks.
 *   hub: on_timer / on_io          curl_multi_socket_action(...), then drain_done():
 *                                  every CURLMSG_DONE names an easy handle whose
 *                                  CURLOPT_PRIVATE is the parked greenlet's http_waiter;
 *                                  store the CURLcode and green__wake the greenlet.
 *   greenlet: resumes              removes the easy handle from the multi, whatever woke it
 *                                  (done, deadline, kill), then returns.
 *
 * Invariants:
 *   - libcurl is only entered from a greenlet (add/remove handle) or from the hub's libev
 *     callbacks (socket_action, info_read), never from inside one of libcurl's callbacks:
 *     the socket and timer callbacks below only (re)arm watchers (plus curl_multi_assign,
 *     which libcurl documents as allowed there). A 0 ms timeout becomes a 0 s ev_timer
 *     instead of a call to socket_action in place.
 *   - A handle added by green_http_perform stays in the multi exactly as long as the call
 *     runs, so the http_waiter its CURLOPT_PRIVATE points to (on the greenlet's stack) is
 *     alive whenever drain_done can see the handle.
 *   - Every live socket watcher is on hub->socks, so that the destroy hook can free any that
 *     libcurl did not remove. The hook runs curl_multi_cleanup of every shard first, with the
 *     loop and the socket table still alive, because cleanup closes cached connections and
 *     may call the socket callback.
 *   - shard->attached counts the transfers green_http_perform has added to that multi and
 *     not yet removed; a transfer is removed from the shard it was added to.
 *
 * Stacks: green_http_perform and green_http_get run on the calling greenlet; sock_cb and
 * timer_cb run on whichever stack called into libcurl (a greenlet adding or removing a
 * handle, or the hub); on_io, on_timer, drain_done, the caller's write callbacks and the
 * destroy hook run on the hub.
 */
#include "green_http.h"

#include "green_internal.h"

#include <ev.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

typedef struct http_sock http_sock;
typedef struct http_hub http_hub;

/* Transfers one multi handle carries at most; the next transfer goes to another multi.
 * libcurl 7.88 walks every connection to the host when a transfer looks for one to reuse,
 * and every cached connection when a transfer is removed (curl_multi_remove_handle's
 * close_connect_only pass): both linear in the cache, so quadratic with one multi at
 * 10,000 concurrent transfers (80 % of the worker's CPU). Capping each multi bounds both
 * walks; transfers are put in the first multi with room, so the slots a finished round
 * frees are taken by the next round in the same multi, where its idle connections are. */
#define SHARD_TRANSFERS 128

/* One multi handle with its timer. The connection cache is per multi, so idle connections
 * are kept for as many transfers as the multi may carry, plus as many again (libcurl's
 * default keeps 4 per attached transfer at that moment, and closes good connections
 * whenever fewer transfers happen to be attached). */
typedef struct http_shard {
    CURLM *multi;
    http_hub *hub;
    ev_timer timer; /* libcurl's one timeout; stopped when libcurl says -1 */
    int attached;   /* transfers added by green_http_perform and not yet removed */
} http_shard;

struct http_hub {
    struct ev_loop *loop;
    http_sock *socks; /* every live socket watcher, for the destroy hook */
    http_shard **shards;
    size_t nshards, cap;
};

struct http_sock {
    ev_io io;
    http_shard *shard;
    curl_socket_t fd;
    int events; /* EV_READ | EV_WRITE as last armed */
    http_sock *prev, *next;
};

/* What a parked greenlet waits on; lives on its stack (see the invariants above). */
typedef struct http_waiter {
    struct green *g;
    CURLcode result;
    bool done;
} http_waiter;

/* ---- process-wide initialisation ---------------------------------------------------- */

static pthread_mutex_t global_lock = PTHREAD_MUTEX_INITIALIZER;
static bool global_ready;

int green_http_global_init(void) {
    /* The lock keeps two racing first calls from initialising twice; it cannot make
     * curl_global_init safe against other threads already inside libcurl, hence the
     * advice in the header. */
    int rc = 0;
    pthread_mutex_lock(&global_lock);
    if (!global_ready) {
        CURLcode res = curl_global_init(CURL_GLOBAL_DEFAULT);
        if (res == CURLE_OK)
            global_ready = true;
        else
            rc = res == CURLE_OUT_OF_MEMORY ? -ENOMEM : -EIO;
    }
    pthread_mutex_unlock(&global_lock);
    return rc;
}

void green_http_global_cleanup(void) {
    pthread_mutex_lock(&global_lock);
    if (global_ready) {
        curl_global_cleanup();
        global_ready = false;
    }
    pthread_mutex_unlock(&global_lock);
}

/* ---- libcurl's callbacks: they only arm watchers ------------------------------------ */

static void sock_free(http_sock *s) {
    http_hub *hub = s->shard->hub;
    ev_io_stop(hub->loop, &s->io);
    if (s->prev)
        s->prev->next = s->next;
    else
        hub->socks = s->next;
    if (s->next)
        s->next->prev = s->prev;
    free(s);
}

static void on_io(struct ev_loop *loop, ev_io *w, int revents);

/* CURLMOPT_SOCKETFUNCTION: libcurl wants fd watched for `what`, or no longer (REMOVE,
 * always called before libcurl closes the fd). */
static int sock_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp) {
    (void)easy;
    http_shard *shard = userp;
    http_hub *hub = shard->hub;
    http_sock *s = socketp;

    if (what == CURL_POLL_REMOVE) {
        if (s)
            sock_free(s);
        return 0;
    }
    if (!s) {
        s = calloc(1, sizeof *s);
        /* -1 is libcurl's documented error return: it fails every transfer of this multi
         * (they finish with CURLE_ABORTED_BY_CALLBACK, so no greenlet waits forever) and
         * the multi stays failed until the hub ends. Only out of memory gets here. */
        if (!s)
            return -1;
        s->shard = shard;
        s->fd = CURL_SOCKET_BAD;
        s->next = hub->socks;
        if (hub->socks)
            hub->socks->prev = s;
        hub->socks = s;
        ev_init(&s->io, on_io);
        s->io.data = s;
        curl_multi_assign(shard->multi, fd, s);
    }
    int events = ((what & CURL_POLL_IN) ? EV_READ : 0) | ((what & CURL_POLL_OUT) ? EV_WRITE : 0);
    /* Re-arm only on a change: ev_io_set is only legal on a stopped watcher, and a new fd
     * with a recycled number must be told to libev afresh (the disappearing-fd problem). */
    if (s->fd != fd || s->events != events) {
        ev_io_stop(hub->loop, &s->io);
        s->fd = fd;
        s->events = events;
        if (events) {
            ev_io_set(&s->io, fd, events);
            ev_io_start(hub->loop, &s->io);
        }
    }
    return 0;
}

/* CURLMOPT_TIMERFUNCTION: libcurl's single timeout changed. -1 removes it. */
static int timer_cb(CURLM *multi, long timeout_ms, void *userp) {
    (void)multi;
    http_shard *shard = userp;
    struct ev_loop *loop = shard->hub->loop;
    ev_timer_stop(loop, &shard->timer);
    if (timeout_ms >= 0) {
        /* Floating-point division: timeout_ms / 1000 in integers turns every sub-second
         * timeout into 0 and makes the loop spin. A 0 ms timeout becomes a 0 s timer that
         * fires on the next loop iteration: calling socket_action from here would re-enter
         * libcurl from its own callback. */
        ev_timer_set(&shard->timer, (double)timeout_ms / 1000.0, 0.0);
        ev_timer_start(loop, &shard->timer);
    }
    return 0;
}

/* ---- hub side: run libcurl, wake the finished ---------------------------------------- */

/* Wake the greenlet of every finished transfer. A drop in running handles does not say
 * which transfer ended, so the message queue is always read to the end. */
static void drain_done(http_shard *shard) {
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(shard->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        char *priv = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
        http_waiter *w = (http_waiter *)priv;
        if (w && !w->done) {
            w->done = true;
            w->result = msg->data.result;
            /* False when the greenlet was already woken by its deadline or a kill: that
             * outcome stands, and the greenlet removes the handle either way. */
            green__wake(w->g, 0);
        }
    }
}

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop;
    (void)revents;
    http_shard *shard = w->data;
    int running;
    curl_multi_socket_action(shard->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    drain_done(shard);
}

static void on_io(struct ev_loop *loop, ev_io *w, int revents) {
    (void)loop;
    http_sock *s = w->data;
    http_shard *shard = s->shard;
    curl_socket_t fd = s->fd;
    if (revents & EV_ERROR)
        s->events = 0; /* libev stopped the watcher: let the next sock_cb re-arm it */
    int action = ((revents & EV_READ) ? CURL_CSELECT_IN : 0) |
                 ((revents & EV_WRITE) ? CURL_CSELECT_OUT : 0) |
                 ((revents & EV_ERROR) ? CURL_CSELECT_ERR : 0);
    int running;
    /* s may be freed by sock_cb during this call: nothing below touches it. */
    curl_multi_socket_action(shard->multi, fd, action, &running);
    drain_done(shard);
}

/* The slot's destroy hook: runs on the hub when it ends, after every greenlet has ended, so
 * no transfer is attached any more (each green_http_perform removed its own). */
static void hub_destroy(void *value) {
    http_hub *hub = value;
    /* First, while the loop and the socket table are alive: closing the cached connections
     * may call sock_cb with CURL_POLL_REMOVE. */
    for (size_t i = 0; i < hub->nshards; i++)
        curl_multi_cleanup(hub->shards[i]->multi);
    while (hub->socks)
        sock_free(hub->socks);
    for (size_t i = 0; i < hub->nshards; i++) {
        ev_timer_stop(hub->loop, &hub->shards[i]->timer);
        free(hub->shards[i]);
    }
    free(hub->shards);
    free(hub);
}

/* The hub's http state, created on first use. Returns NULL with *err set on failure. */
static http_hub *hub_get(int *err) {
    http_hub *hub = green__slot_get(GREEN__SLOT_HTTP);
    if (hub)
        return hub;
    int rc = green_http_global_init();
    if (rc < 0) {
        *err = rc;
        return NULL;
    }
    hub = calloc(1, sizeof *hub);
    if (!hub) {
        *err = -ENOMEM;
        return NULL;
    }
    hub->loop = green_loop();
    green__slot_set(GREEN__SLOT_HTTP, hub, hub_destroy);
    return hub;
}

/* The multi a new transfer goes to: the first one with room, or a new one. NULL when out
 * of memory. Runs on the calling greenlet; creating a multi does not yield. */
static http_shard *shard_pick(http_hub *hub) {
    for (size_t i = 0; i < hub->nshards; i++) {
        if (hub->shards[i]->attached < SHARD_TRANSFERS)
            return hub->shards[i];
    }
    if (hub->nshards == hub->cap) {
        size_t cap = hub->cap ? hub->cap * 2 : 4;
        http_shard **grown = realloc(hub->shards, cap * sizeof *grown);
        if (!grown)
            return NULL;
        hub->shards = grown;
        hub->cap = cap;
    }
    http_shard *shard = calloc(1, sizeof *shard);
    if (!shard || !(shard->multi = curl_multi_init())) {
        free(shard);
        return NULL;
    }
    shard->hub = hub;
    ev_init(&shard->timer, on_timer);
    shard->timer.data = shard;
    curl_multi_setopt(shard->multi, CURLMOPT_SOCKETFUNCTION, sock_cb);
    curl_multi_setopt(shard->multi, CURLMOPT_SOCKETDATA, shard);
    curl_multi_setopt(shard->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(shard->multi, CURLMOPT_TIMERDATA, shard);
    curl_multi_setopt(shard->multi, CURLMOPT_MAXCONNECTS, (long)(2 * SHARD_TRANSFERS));
    hub->shards[hub->nshards++] = shard;
    return shard;
}

/* ---- greenlet side ------------------------------------------------------------------- */

static int add_error(CURLMcode mc) {
    switch (mc) {
    case CURLM_ADDED_ALREADY:
        return -EBUSY;
    case CURLM_BAD_EASY_HANDLE:
        return -EINVAL;
    case CURLM_OUT_OF_MEMORY:
        return -ENOMEM;
    case CURLM_RECURSIVE_API_CALL:
        return -EPERM;
    default:
        return -EIO;
    }
}

int green_http_perform(CURL *easy, CURLcode *result, double timeout) {
    int rc = green__check();
    if (rc < 0)
        return rc;
    if (!easy)
        return -EINVAL;
    http_hub *hub = hub_get(&rc);
    if (!hub)
        return rc;
    http_shard *shard = shard_pick(hub);
    if (!shard)
        return -ENOMEM;

    /* Add before touching CURLOPT_PRIVATE: a handle that another greenlet is performing is
     * refused here and must keep pointing at that greenlet's waiter. */
    char *caller_private = NULL;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, &caller_private);
    CURLMcode mc = curl_multi_add_handle(shard->multi, easy);
    if (mc != CURLM_OK)
        return add_error(mc);
    shard->attached++;
    http_waiter w = {.g = green__current(), .result = CURLE_OK, .done = false};
    curl_easy_setopt(easy, CURLOPT_PRIVATE, (void *)&w);

    /* Nothing can finish before we park: libcurl only makes progress from the hub. */
    rc = green__park(green__deadline_in(timeout));

    if (rc != 0 && !w.done) {
        /* Abandoning a transfer that may still be resolving its host name: without this,
         * libcurl 7.88 joins the resolver thread, blocking the whole hub for as long as
         * getaddrinfo takes (curl issue 3371). */
        curl_easy_setopt(easy, CURLOPT_QUICK_EXIT, 1L);
    }
    /* On our own stack, outside any libcurl callback. For an unfinished transfer this
     * closes its connection; for a finished one it only detaches the handle (the
     * connection already went back to the multi's cache). */
    curl_multi_remove_handle(shard->multi, easy);
    shard->attached--;
    curl_easy_setopt(easy, CURLOPT_PRIVATE, (void *)caller_private);
    if (rc == 0)
        *result = w.result;
    return rc;
}

/* ---- the convenience GET ------------------------------------------------------------- */

void green_http_buf_free(green_http_buf *buf) {
    free(buf->data);
    buf->data = NULL;
    buf->len = buf->cap = 0;
}

/* The write target of green_http_get, and why it refused data (both end the transfer with
 * the same CURLE_WRITE_ERROR). */
typedef struct get_sink {
    green_http_buf *buf;
    bool too_big;
} get_sink;

/* CURLOPT_WRITEFUNCTION for green_http_get: runs on the hub stack, only appends. */
static size_t sink_write(char *ptr, size_t size, size_t nmemb, void *userdata) {
    get_sink *sink = userdata;
    green_http_buf *buf = sink->buf;
    size_t n = size * nmemb;
    if (!buf)
        return n;
    if (buf->max && n > buf->max - buf->len) {
        sink->too_big = true;
        return 0; /* libcurl ends the transfer with CURLE_WRITE_ERROR */
    }
    if (buf->len + n + 1 > buf->cap) {
        size_t cap = buf->cap ? buf->cap : 4096;
        while (cap < buf->len + n + 1)
            cap *= 2;
        char *data = realloc(buf->data, cap);
        if (!data)
            return 0;
        buf->data = data;
        buf->cap = cap;
    }
    memcpy(buf->data + buf->len, ptr, n);
    buf->len += n;
    buf->data[buf->len] = '\0';
    return n;
}

int green_http_get(const char *url, double timeout, long *status, green_http_buf *body) {
    if (status)
        *status = 0;
    int rc = green_http_global_init();
    if (rc < 0)
        return rc;
    CURL *easy = curl_easy_init();
    if (!easy)
        return -ENOMEM;
    curl_easy_setopt(easy, CURLOPT_URL, url);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    get_sink sink = {.buf = body, .too_big = false};
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, sink_write);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, &sink);
    CURLcode res = CURLE_OK;
    rc = green_http_perform(easy, &res, timeout);
    if (rc == 0) {
        switch (res) {
        case CURLE_OK:
            break;
        case CURLE_COULDNT_CONNECT:
            rc = -ECONNREFUSED;
            break;
        case CURLE_COULDNT_RESOLVE_HOST:
            rc = -EHOSTUNREACH;
            break;
        case CURLE_WRITE_ERROR:
            rc = sink.too_big ? -EMSGSIZE : -ENOMEM;
            break;
        default:
            rc = -EIO;
            break;
        }
    }
    if (rc == 0 && status)
        curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, status);
    curl_easy_cleanup(easy);
    return rc;
}
