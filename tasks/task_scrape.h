/*
 * task_scrape.h - what the three files of http.scrape share: task_scrape.c (the arguments,
 * the task, its registration), task_scrape_page.c (the parse and the result) and
 * task_crawl.c (follow: the crawl's step in Redis). Not installed. Everything runs on the
 * task's greenlet.
 */
#ifndef WORKERD_TASK_SCRAPE_H
#define WORKERD_TASK_SCRAPE_H

#include "task.h"
#include "task_internal.h"

#include <regex.h>
#include <stdbool.h>
#include <stddef.h>

#include <libxml/xmlerror.h>
#include <libxml/xpath.h>

#define SCRAPE_MAX_PAGES 1000000LL
#define SCRAPE_DEFAULT_PAGES 100LL

/* One xpath entry, compiled. */
typedef struct xpath_entry {
    const char *name; /* borrowed from the call's kwargs */
    xmlXPathCompExprPtr comp;
} xpath_entry;

/* An XPath error's text, for the task's message: set an XPath context's error to
 * task__xpath_on_error and its userData to one of these (zeroed); the first error's text
 * lands in text ("invalid predicate at offset 4"). Never writes to stderr. */
typedef struct task__xpath_err {
    char text[256];
} task__xpath_err;

void task__xpath_on_error(void *data, xmlErrorPtr e);

/* Send libxml2's messages of this thread nowhere (its per-thread handlers; the default
 * ones write to stderr). Call before any libxml2 work on a thread; cheap. */
void task__scrape_quiet(void);

/* http.scrape's own keyword arguments, checked and compiled. */
typedef struct scrape_opts {
    struct xpath_entry *xpath; /* compiled expressions, with their names (borrowed) */
    size_t nxpath;
    bool same_host;
    regex_t pattern; /* link_pattern, compiled when has_pattern */
    bool has_pattern;
    long long follow;    /* depth: 0 enqueues nothing */
    long long max_pages; /* the crawl's cap */
    const char *crawl;   /* the crawl id given, or NULL (borrowed from the call) */
    const char *queue;   /* where the pages found go; NULL: the queue the page came from */
} scrape_opts;

/* Check and compile the keyword arguments above: 0, or TASK_EINVAL naming the field (the
 * options are then already freed). Does not yield. */
int task__scrape_args(const task_call *call, scrape_opts *o, task_error *err);
void task__scrape_opts_free(scrape_opts *o);

/* The fetch's wants_body (task_internal.h): true when the response's Content-Type is
 * HTML (text/html or application/xhtml+xml) or absent, so that a non-HTML body (a video
 * behind a link) is not downloaded only to fail NotHTML. Pure computation, any stack. */
bool task__scrape_wants(const char *headers, size_t len);

/* Parse the fetched page (task_scrape_page.c): 0 with *result (the task's result) and *links (the
 * links of the result, a new reference), or TASK_EFAIL (NotHTML, MemoryError) / TASK_EINVAL (an
 * XPath that fails on the page). Does not yield. */
int task__scrape_page(const task_call *call, const scrape_opts *o, const task_http_fetched *f,
                      json_t **result, json_t **links, task_error *err);

/* url as a link to it comes out in "links" (absolute, http or https, no fragment, no
 * credentials, host lower-cased): a curl_free'd string, or NULL when it is not such a
 * URL. Does not yield. */
char *task__scrape_normalize(const char *url);

/* The crawl's step for a page whose task ends with rc (task_crawl.c): when the task
 * crawls (follow > 0, or a crawl id), and rc is an outcome (0, TASK_EFAIL, TASK_EINVAL),
 * record its URL (and where it ended) seen and, on success with follow > 0, enqueue the
 * links not seen in the crawl yet. The page is counted done or failed by its final ack,
 * not here (task_crawl.h). Returns rc, or on a Redis failure TASK_ERETRY (the page runs again; the
 * crawl's seen set keeps its links from being enqueued twice) with *result released.
 * MAY YIELD. */
int task__crawl_step(const task_call *call, const scrape_opts *o, const task_http_fetched *f,
                     const json_t *links, int rc, json_t **result, task_error *err);

#endif
