/*
 * task_crawl.h - what the worker needs of http.scrape's crawls when a message ends
 * (docs/design.md "Crawls"): whether the message is a page of a crawl, and which, so that
 * its final ack (whatever the outcome: a result, a time limit, a revocation, an expiry, a
 * dead letter) counts it done or failed in the crawl, once (broker_canvas_crawl).
 *
 * Pure computation: no I/O, never yields, any stack, thread-safe.
 */
#ifndef WORKERD_TASK_CRAWL_H
#define WORKERD_TASK_CRAWL_H

#include <jansson.h>

/* Seconds every key of a crawl lives after its latest change (recover.lua says the same). */
#define TASK_CRAWL_TTL (7LL * 86400)

/* A page of a crawl. */
typedef struct task_crawl_page {
    const char *crawl;   /* the crawl's id: the kwarg crawl, or the message's id (borrowed) */
    char *url;           /* the page's URL as the crawl's seen set spells it (owned) */
    long long max_pages; /* the kwarg max_pages, or its default */
} task_crawl_page;

/* Whether a message (task, id, args, kwargs: all borrowed; args and kwargs may be NULL) is
 * a page of a crawl: the task http.scrape with a usable kwarg crawl, or follow > 0, and a
 * URL (args[0] or the kwarg url). 1 with *page filled (free it with task_crawl_page_free),
 * 0 when it is not (*page zeroed), -ENOMEM. Arguments the task itself would refuse are
 * read as well as they can be: the page still ends, as failed. */
int task_crawl_page_of(const char *task, const char *id, const json_t *args, const json_t *kwargs,
                       task_crawl_page *page);

void task_crawl_page_free(task_crawl_page *page);

#endif
