/*
 * green_http.h - HTTP (any libcurl transfer, really) from greenlets: a libcurl multi handle
 * per hub, driven by the hub's libev loop, so that one OS thread keeps thousands of
 * transfers in flight while each greenlet writes plain sequential code:
 *
 *     CURL *easy = curl_easy_init();
 *     curl_easy_setopt(easy, CURLOPT_URL, "http://127.0.0.1:8080/");
 *     curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
 *     CURLcode res;
 *     int rc = green_http_perform(easy, &res, 10.0);   // parks this greenlet only
 *     if (rc == 0 && res == CURLE_OK) ... CURLINFO_RESPONSE_CODE, the body you collected ...
 *     curl_easy_cleanup(easy);                         // or reuse it for the next transfer
 *
 * A hub's multi handles are created on first use and destroyed when the hub ends; each
 * carries up to 128 transfers at once, with its own connection and DNS caches (libcurl
 * 7.88 walks the whole cache when a transfer starts and when it is removed, so one multi
 * for 10,000 transfers is quadratic), so a later transfer to the same host reuses an idle
 * connection of its shard even from another easy handle. The number of connections is not
 * limited (CURLMOPT_MAX_TOTAL_CONNECTIONS stays 0): the caller bounds concurrency, e.g.
 * with a green_pool.
 *
 * THE SPECIAL PROBLEM OF CALLBACKS ON THE HUB STACK. The easy handle's own callbacks
 * (CURLOPT_WRITEFUNCTION, CURLOPT_HEADERFUNCTION, CURLOPT_READFUNCTION, progress, debug...)
 * are called by libcurl from inside the hub's event callbacks, on the hub's stack, not on
 * the greenlet that called green_http_perform. They must not yield or block (any "may
 * yield" call returns -EPERM there and asserts in debug builds), must not call libcurl on
 * the same multi handle, and should only copy data out (append to a buffer). They may make
 * greenlets ready (green_spawn, green_kill, setting an event).
 *
 * Signals: libcurl's own SIGPIPE dance costs two sigaction calls per transfer step unless
 * CURLOPT_NOSIGNAL is set; set it, and ignore SIGPIPE process-wide (the daemon does).
 *
 * Nothing here is thread-safe except as noted: each hub has its own multi handle, and an
 * easy handle must stay on the thread of the hub that performs it.
 */
#ifndef WORKERD_GREEN_HTTP_H
#define WORKERD_GREEN_HTTP_H

#include <curl/curl.h>
#include <stddef.h>

/* Initialise libcurl (curl_global_init with CURL_GLOBAL_DEFAULT) once per process.
 * Idempotent: only the first successful call does the work, and the first
 * green_http_perform of each hub calls it too, so calling it is optional. It is NOT
 * thread-safe with respect to libcurl calls made by other threads at the same moment
 * (libcurl 7.88's global init is not, and it may initialise the TLS library): call it at
 * program start, before any thread is created. Does not yield. Returns 0, or -ENOMEM /
 * -EIO when libcurl could not initialise (a later call tries again). */
int green_http_global_init(void);

/* Undo green_http_global_init (curl_global_cleanup), for programs and tests that want a
 * clean exit under valgrind. Call it at program end, after every hub has ended and with
 * no other thread using libcurl (green_http_global_init may be called again afterwards).
 * A no-op if init never succeeded. Not thread-safe, like the init. */
void green_http_global_cleanup(void);

/* Perform the transfer configured on easy, parking only the calling greenlet until it ends.
 *
 * Returns 0 when libcurl finished the transfer, with *result set to libcurl's code for it
 * (CURLE_OK, or e.g. CURLE_COULDNT_CONNECT: a failed transfer is still a finished one;
 * an HTTP 404 is CURLE_OK unless CURLOPT_FAILONERROR is set). Otherwise *result is left
 * untouched and the call returns
 *   -ETIMEDOUT  timeout seconds (< 0: no limit of its own) or an enclosing green_timeout
 *               scope passed first;
 *   -ECANCELED  the greenlet was killed (green_kill) before or while it waited;
 *   -EPERM      not called from a greenlet (e.g. from a libcurl or libev callback);
 *   -EBUSY      easy is already being performed (by another greenlet or another multi);
 *   -EINVAL     easy is not a valid easy handle;
 *   -ENOMEM     out of memory (the multi handle or its bookkeeping could not be created);
 *   -EIO        libcurl could not initialise or refused the handle for another reason.
 *
 * The first outcome wins: a transfer that ends in the same loop iteration as its deadline
 * (or a kill) but after it reports -ETIMEDOUT (-ECANCELED), never both.
 *
 * In every case, when the call returns, easy is no longer attached to the multi handle:
 * an abandoned transfer (timeout, kill) is stopped by the caller's greenlet itself on its
 * own stack, and its connection closed. So easy may be reused for another transfer or
 * freed with curl_easy_cleanup right away. The body received so far has gone through the
 * write callback; nothing more will.
 *
 * Ownership: easy stays the caller's. While the call runs, green_http_perform uses the
 * handle's CURLOPT_PRIVATE (the caller's value is restored before it returns, so do not
 * read CURLINFO_PRIVATE from the handle's own callbacks). When it abandons a transfer it
 * sets CURLOPT_QUICK_EXIT on the handle, so that stopping a transfer still resolving a
 * host name does not wait for the resolver thread's getaddrinfo (curl issue 3371): the
 * thread is detached and frees its own memory when getaddrinfo returns.
 *
 * MAY YIELD. Must be called from a greenlet. The handle's callbacks run on the hub stack
 * (see above). Not thread-safe: use the handle only on this hub's thread. */
int green_http_perform(CURL *easy, CURLcode *result, double timeout);

/* A growable byte buffer for green_http_get. Zero-initialise it; data is NUL-terminated
 * (the terminator is not counted in len) and owned by the buffer until
 * green_http_buf_free. */
typedef struct green_http_buf {
    char *data;
    size_t len;
    size_t cap;
    size_t max; /* stop the transfer (CURLE_WRITE_ERROR) past this many bytes; 0: no cap */
} green_http_buf;

void green_http_buf_free(green_http_buf *buf);

/* A convenience for tests and simple callers: GET url with a fresh easy handle (which
 * follows no redirects, sets CURLOPT_NOSIGNAL, and uses the hub's shared connections),
 * appending the body to body (if not NULL) and storing the HTTP status in *status (if
 * not NULL; 0 when no response arrived).
 * Returns 0 when a response was received (whatever its status), the errors of
 * green_http_perform, or for a transfer that libcurl failed: -ECONNREFUSED (could not
 * connect), -EHOSTUNREACH (could not resolve the host), -EMSGSIZE (body larger than
 * body->max), -ENOMEM (the body did not fit in memory), -EIO (anything else).
 * MAY YIELD; must be called from a greenlet. */
int green_http_get(const char *url, double timeout, long *status, green_http_buf *body);

#endif
