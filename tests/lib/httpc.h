/*
 * httpc.h - a tiny blocking HTTP/1.1 client for tests of workerd's own endpoint: send a
 * request as raw bytes to 127.0.0.1:port, read the whole answer (the server closes the
 * connection), split it into status, headers and body.
 *
 * For single-threaded test programs; ASSERTs only on what a test cannot go on without
 * (out of memory). Nothing here yields.
 */
#ifndef WORKERD_TESTS_HTTPC_H
#define WORKERD_TESTS_HTTPC_H

#include <stddef.h>

typedef struct httpc_response {
    int status;    /* the status code; -errno when the exchange failed */
    char *headers; /* the header block (status line included), NUL-terminated, or NULL */
    char *body;    /* the body, NUL-terminated, or NULL */
} httpc_response;

/* Send raw (e.g. "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n") and read the answer until the
 * server closes, within timeout seconds. Returns r->status. Free with httpc_free. */
int httpc_raw(int port, const char *raw, size_t len, double timeout, httpc_response *r);

/* GET path with HTTP/1.1; the same return. */
int httpc_get(int port, const char *path, httpc_response *r);

/* The value of header name (case-insensitive) as a new string, or NULL. */
char *httpc_header(const httpc_response *r, const char *name);

void httpc_free(httpc_response *r);

#endif
