/*
 * task_scrape.c - the http.scrape task: http.get's fetch (task__http_fetch, the same code
 * path: every option, limit, address policy rule, redirect, retry and --http-host-rate
 * turn of http.get applies), then libxml2's HTML parser on the body.
 *
 *   http.scrape(url, ...http.get's keyword arguments..., xpath={}, same_host=false,
 *               link_pattern=None, follow=0, max_pages=100, crawl=None, queue=None)
 *
 * Result: {"url": the final URL (credentials redacted), "status": 200, "title",
 * "description" (<meta name="description">), "canonical" (<link rel="canonical">,
 * absolute), "lang" (<html lang>): each a string or null, "links": [absolute URLs],
 * "extract": {name: [strings]}}, and "truncated": [the fields cut short] only when a cap
 * below cut one, and "crawl": {"id", "pushed", "enqueued", "max_pages"} only in a crawl.
 *
 * Links are the href of every <a> and <area>, resolved against the <base href> (itself
 * resolved against the final URL) or the final URL, with curl's URL parser; only http and
 * https ones are kept, without their fragment and without credentials, each once, in the
 * order of the document. same_host keeps those whose host is the final URL's (the port
 * may differ); link_pattern, a POSIX extended regular expression, keeps those it matches
 * (compiled once per task, before the fetch: a bad pattern is a ValueError). xpath maps
 * names to XPath 1.0 expressions (compiled before the fetch too: a bad one is a
 * ValueError quoting it); each name gets the string value of every node the expression
 * selects (a text node's text, an attribute's value, an element's text content), trimmed
 * of blanks, or one string for an expression of another type (a count, a boolean).
 *
 * Charset: the Content-Type header's charset when libxml2 knows it; else UTF-8 when the
 * bytes are valid UTF-8; else what a <meta charset> or <meta http-equiv="Content-Type">
 * says (libxml2 reads them); else ISO-8859-1. libxml2 converts to UTF-8 as it parses.
 * A Content-Type other than text/html or application/xhtml+xml is FAILURE NotHTML naming
 * it (no Content-Type at all is parsed as HTML): the transfer stops as soon as the
 * headers show such a type, before the body (a 1 GB video behind a link costs a few
 * packets, not the download). Broken HTML parses: libxml2 recovers, and
 * its errors and warnings are switched off (HTML_PARSE_NOERROR / NOWARNING; XPath errors
 * go to a handler of the task's own context), so nothing of it reaches stderr.
 *
 * Bounds: the body is bounded by max_size (http.get's, default 10 MiB); links by 10,000,
 * the values of each xpath name by 1,000, each value by 16 KiB, all of extract by 1 MiB
 * (the SCRAPE_MAX_ caps of task_scrape_page.c), the names by SCRAPE_MAX_NAMES (64); the
 * result as a whole by --max-result-size like any result.
 *
 * Cost: parsing is CPU work on the worker's loop (libxml2 does not yield): a page of
 * 100 KB takes about 4 ms to parse and free on a 2-CPU VM, during which the process's other tasks
 * wait, as for any task that computes (--blocking-warn names a slow one). Pages of many megabytes
 * belong in a worker of their own (its own queue), or a smaller max_size.
 *
 * libxml2's global state: xmlInitParser runs once, on the first use (task__scrape_quiet,
 * under pthread_once, before any parse or XPath compile), so a worker that never scrapes
 * does not pay for its tables. Each parse has its own parser
 * context, document and XPath context, made and freed inside one call that never yields,
 * so two greenlets never share any of them.
 *
 * The parse and the result are task_scrape_page.c's; follow, max_pages, crawl and queue
 * make a crawl: task_crawl.c.
 *
 * Runs on a task's greenlet; yields only inside the fetch and the crawl's Redis step.
 */
#include "task.h"
#include "task_internal.h"
#include "task_scrape.h"

#include "broker_crawl.h"

#include <errno.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libxml/parser.h>
#include <libxml/xmlerror.h>
#include <libxml/xpath.h>
#include <libxml/xpathInternals.h>

#define SCRAPE_MAX_NAMES 64
#define SCRAPE_MAX_PATTERN 1024
#define SCRAPE_MAX_FOLLOW 100

/* ---- arguments ------------------------------------------------------------------------ */

/* libxml2 gives its own handler no text (it would have taken it from a table it does not
 * export): the table, by code from XML_XPATH_EXPRESSION_OK on. */
static const char *const xpath_messages[] = {
    "ok",
    "number encoding",
    "unfinished literal",
    "start of literal",
    "expected $ for a variable",
    "undefined variable",
    "invalid predicate",
    "invalid expression",
    "missing closing curly brace",
    "unregistered function",
    "invalid operand",
    "invalid type",
    "invalid number of arguments",
    "invalid context size",
    "invalid context position",
    "out of memory",
    "syntax error",
    "resource error",
    "sub resource error",
    "undefined namespace prefix",
    "encoding error",
    "character out of XML range",
};

void task__xpath_on_error(void *data, xmlErrorPtr e) {
    task__xpath_err *x = data;
    if (x == NULL || x->text[0] != '\0' || e == NULL)
        return;
    int i = e->code - XML_XPATH_EXPRESSION_OK;
    const char *what = i >= 0 && (size_t)i < sizeof xpath_messages / sizeof *xpath_messages
                           ? xpath_messages[i]
                           : "error";
    snprintf(x->text, sizeof x->text, "%s at offset %d", what, e->int1);
}

void task__scrape_opts_free(scrape_opts *o) {
    for (size_t i = 0; i < o->nxpath; i++)
        xmlXPathFreeCompExpr(o->xpath[i].comp);
    free(o->xpath);
    o->xpath = NULL;
    o->nxpath = 0;
    if (o->has_pattern)
        regfree(&o->pattern);
    o->has_pattern = false;
}

/* Compile every xpath entry; TASK_EINVAL naming the bad one. */
static int compile_xpath(const task_call *call, const json_t *map, scrape_opts *o,
                         task_error *err) {
    if (map == NULL || json_object_size(map) == 0)
        return 0;
    if (json_object_size(map) > SCRAPE_MAX_NAMES)
        return task_error_invalid(err, "ValueError",
                                  "%s: kwarg xpath has %zu names, at most %d are allowed",
                                  call->name, json_object_size(map), SCRAPE_MAX_NAMES);
    o->xpath = calloc(json_object_size(map), sizeof *o->xpath);
    if (o->xpath == NULL)
        return task_error_set(err, "MemoryError", "%s: out of memory", call->name);
    task__scrape_quiet();
    xmlXPathContextPtr ctx = xmlXPathNewContext(NULL);
    if (ctx == NULL)
        return task_error_set(err, "MemoryError", "%s: out of memory", call->name);
    task__xpath_err xe = {""};
    ctx->error = task__xpath_on_error;
    ctx->userData = &xe;
    const char *name;
    json_t *v;
    int rc = 0;
    json_object_foreach((json_t *)map, name, v) {
        if (!json_is_string(v)) {
            rc = task_error_invalid(err, "TypeError",
                                    "%s: kwarg xpath[\"%.64s\"] must be a string (an XPath "
                                    "expression), got %s",
                                    call->name, name, task_json_type_name(v));
            break;
        }
        const char *expr = json_string_value(v);
        xe.text[0] = '\0';
        xmlXPathCompExprPtr comp = expr[0] ? xmlXPathCtxtCompile(ctx, (const xmlChar *)expr) : NULL;
        if (comp == NULL) {
            rc = task_error_invalid(err, "ValueError",
                                    "%s: kwarg xpath[\"%.64s\"]: '%.300s' is not a valid XPath "
                                    "expression: %s",
                                    call->name, name, expr, xe.text[0] ? xe.text : "empty");
            break;
        }
        o->xpath[o->nxpath++] = (xpath_entry){.name = name, .comp = comp};
    }
    xmlXPathFreeContext(ctx);
    return rc;
}

int task__scrape_args(const task_call *call, scrape_opts *o, task_error *err) {
    *o = (scrape_opts){0};
    const json_t *xpath = NULL;
    const char *pattern = NULL;
    int rc = task_opt_object(call, TASK_ARG_KWONLY, "xpath", &xpath, err);
    if (rc == 0)
        rc = task_opt_bool(call, TASK_ARG_KWONLY, "same_host", false, &o->same_host, err);
    if (rc == 0)
        rc = task_opt_string(call, TASK_ARG_KWONLY, "link_pattern", NULL, &pattern, NULL, err);
    if (rc == 0)
        rc = task_opt_integer(call, TASK_ARG_KWONLY, "follow", 0, 0, SCRAPE_MAX_FOLLOW, &o->follow,
                              err);
    if (rc == 0)
        rc = task_opt_integer(call, TASK_ARG_KWONLY, "max_pages", SCRAPE_DEFAULT_PAGES, 1,
                              SCRAPE_MAX_PAGES, &o->max_pages, err);
    if (rc == 0)
        rc = task_opt_string(call, TASK_ARG_KWONLY, "crawl", NULL, &o->crawl, NULL, err);
    if (rc == 0)
        rc = task_opt_string(call, TASK_ARG_KWONLY, "queue", NULL, &o->queue, NULL, err);
    if (rc != 0)
        return rc;
    const char *why;
    if (o->crawl != NULL && (why = broker_check_crawl_id(o->crawl)) != NULL)
        return task_error_invalid(err, "ValueError", "%s: kwarg crawl: %s", call->name, why);
    if (o->queue != NULL && (why = broker_check_queue_name(o->queue)) != NULL)
        return task_error_invalid(err, "ValueError", "%s: kwarg queue: %s", call->name, why);
    if (pattern != NULL) {
        if (strlen(pattern) > SCRAPE_MAX_PATTERN)
            return task_error_invalid(err, "ValueError", "%s: kwarg link_pattern is over %d bytes",
                                      call->name, SCRAPE_MAX_PATTERN);
        int bad = regcomp(&o->pattern, pattern, REG_EXTENDED | REG_NOSUB);
        if (bad != 0) {
            char why_re[128];
            regerror(bad, &o->pattern, why_re, sizeof why_re);
            return task_error_invalid(err, "ValueError",
                                      "%s: kwarg link_pattern: '%.300s' is not a POSIX extended "
                                      "regular expression: %s",
                                      call->name, pattern, why_re);
        }
        o->has_pattern = true;
    }
    rc = compile_xpath(call, xpath, o, err);
    if (rc != 0)
        task__scrape_opts_free(o);
    return rc;
}

/* The keyword arguments: http.get's, then http.scrape's own. */
static const char *const scrape_kwargs[] = {"xpath",     "same_host", "link_pattern", "follow",
                                            "max_pages", "crawl",     "queue",        NULL};

static const char *const *all_kwargs(void) {
    static const char *all[32];
    if (all[0] == NULL) {
        size_t n = 0;
        for (size_t i = 0; task__http_fetch_kwargs[i] != NULL; i++)
            all[n++] = task__http_fetch_kwargs[i];
        for (size_t i = 0; scrape_kwargs[i] != NULL; i++)
            all[n++] = scrape_kwargs[i];
        all[n] = NULL;
    }
    return all;
}

static int task_http_scrape(const task_call *call, json_t **result, task_error *err) {
    scrape_opts o;
    int rc = task_args_check(call, 1, all_kwargs(), err);
    if (rc == 0)
        rc = task__scrape_args(call, &o, err);
    if (rc != 0)
        return rc;
    task_http_fetched f;
    json_t *links = NULL;
    rc = task__http_fetch(call, 0, task__scrape_wants, &f, err);
    if (rc == 0)
        rc = task__scrape_page(call, &o, &f, result, &links, err);
    rc = task__crawl_step(call, &o, &f, links, rc, result, err);
    json_decref(links);
    task__http_fetched_free(&f);
    task__scrape_opts_free(&o);
    return rc;
}

int task__scrape_register(void) {
    /* Once, on the thread that registers (start-up), before any worker thread reads it:
     * the kwargs table. libxml2's tables wait for the first parse (task__scrape_quiet). */
    static bool initialized;
    if (!initialized) {
        (void)all_kwargs();
        initialized = true;
    }
    return task_registry_add("http.scrape", task_http_scrape);
}
