/*
 * wd_http.h - the worker's own small HTTP endpoint (--http ADDR:PORT), for Prometheus and
 * for health checks:
 *
 *   GET /metrics   the Prometheus text exposition (wd_metrics.h), with each consumed
 *                  queue's depth read from Redis at scrape time (one pipelined LLEN, at
 *                  most QUEUE_DEPTH_TIMEOUT; omitted while Redis is unreachable)
 *   GET /healthz   200 "ok" while the worker consumes and its broker link is up; 503
 *                  with the reason otherwise ("starting", "shutting down", "broker
 *                  unreachable")
 *   GET /workers   JSON: an array holding this worker's description (id, host, pid,
 *                  queues, concurrency, in flight, counters, broker up); an array so that
 *                  one shape can later list several
 *
 * HEAD is answered like GET without the body; any other method gets 405 (404 for an
 * unknown path), and a malformed request 400, as soon as its request line has arrived. A
 * head holding a control character (a NUL byte, say) or a CR without LF gets 400 as soon
 * as that byte arrives; one over 8 KiB gets 400 without being read further; one cut off
 * by the client 400; one that has not fully arrived 2 s after the connection opened, 408.
 * Every answer closes the connection (HTTP/1.1 "Connection: close"): a scraper makes one
 * request every few seconds.
 *
 * The server is the runtime's green_server on the worker's hub (one greenlet per
 * connection), so a scrape never blocks the tasks. It keeps at most 1024 connections
 * (fewer when the descriptor limit is under 4096: a quarter of it); when more arrive,
 * each new one pushes out the oldest connection still waiting for its head, so clients
 * that connect and send nothing, or a head one byte at a time, cannot starve a probe.
 * There is no authentication: bind it to loopback or a private network.
 */
#ifndef WORKERD_WD_HTTP_H
#define WORKERD_WD_HTTP_H

struct wd_worker;
struct wd_http;

/* Listen on host:port (numeric host; port 0 picks a free one) and start serving w's
 * numbers; logs the address it listens on. Call from a greenlet of w's hub. Returns the
 * server, or NULL after logging why it could not listen (the caller should not start
 * without the endpoint it was asked for). */
struct wd_http *wd_http_start(struct wd_worker *w, const char *host, int port);

/* Stop accepting, give requests being answered a second, close. MAY YIELD; call from a
 * greenlet before the worker's broker connection is closed. NULL is a no-op. */
void wd_http_stop(struct wd_http *h);

#endif
