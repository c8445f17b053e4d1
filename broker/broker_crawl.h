/*
 * broker_crawl.h - the Redis side of http.scrape's crawls (docs/design.md "Crawls"): the
 * keys of a crawl, the step that records a page as done and enqueues the new pages it
 * found (crawl_step.lua, one atomic script), and the read of a crawl's counts for
 * workerctl crawl. A page is counted done or failed by its final ack (ack.lua's "crawl"
 * operation, broker_canvas_crawl), or by recover.lua when it dead-letters the page.
 *
 *   <prefix>:crawl:<id>         hash {max, enqueued, done, failed}
 *   <prefix>:crawl:<id>:seen    set, the URLs enqueued (or fetched) in the crawl
 *   <prefix>:crawl:<id>:done    set, the URLs whose page succeeded
 *   <prefix>:crawl:<id>:failed  set, the URLs whose page ended otherwise (a FAILURE, a
 *                               time limit, a revocation, an expiry, a dead letter)
 *
 * Every key of a crawl expires ttl seconds after its latest step. The seen set is what
 * keeps a URL from being enqueued twice by any worker: a URL enters it only in the same
 * script that LPUSHes its message, and only while enqueued < max.
 *
 * The builders and the parsers are pure computation (no I/O, never yield, any stack,
 * thread-safe on distinct batches); the caller sends the batch on its client (a task's
 * lent green_redis, or workerctl's redisContext), and on a NOSCRIPT reply retries it with
 * broker_script_retry (broker_scripts.h).
 */
#ifndef WORKERD_BROKER_CRAWL_H
#define WORKERD_BROKER_CRAWL_H

#include "broker_batch.h"
#include "broker_keys.h"

#include <hiredis/hiredis.h>
#include <stddef.h>

/* NULL when id may name a crawl (a task id: broker_check_task_id), else a static
 * sentence. */
const char *broker_check_crawl_id(const char *id);

/* <prefix>:crawl:<id> into buf; its length, or -EINVAL for a bad id. */
int broker_key_crawl(const broker_keys *k, const char *id, char buf[BROKER_KEY_MAX]);

/* One step (crawl_step.lua's ARGV): urls[i] and msgs[i] for i < n are the new pages and
 * their messages (borrowed: keep them alive until the batch is sent). final may be NULL
 * or "". The queue name and the crawl id are checked (-EINVAL fails the batch). */
typedef struct broker_crawl_step {
    const char *crawl;
    long long max_pages;
    long long ttl; /* seconds */
    const char *queue;
    const char *self;
    const char *final;
    const char *const *urls;
    const char *const *msgs;
    size_t n;
} broker_crawl_step;

int broker_cmd_crawl_step(broker_batch *b, const broker_keys *k, const broker_crawl_step *s);

/* The counts of a crawl. pending = enqueued - done - failed. */
typedef struct broker_crawl_counts {
    long long pushed, known, over;         /* this step's (step replies only) */
    long long enqueued, done, max, failed; /* the crawl's, after it (failed: status only) */
} broker_crawl_counts;

/* crawl_step.lua's reply: 0 with *out filled, or -EPROTO. */
int broker_crawl_step_parse(const redisReply *r, broker_crawl_counts *out);

/* HMGET <prefix>:crawl:<id> max enqueued done failed. */
int broker_cmd_crawl_status(broker_batch *b, const broker_keys *k, const char *id);

/* Its reply: 1 with *out filled (pushed, known, over 0); 0 when the crawl is unknown (it
 * never was, or its keys expired); -EPROTO. */
int broker_crawl_status_parse(const redisReply *r, broker_crawl_counts *out);

#endif
