/*
 * task_crawl.c - http.scrape's follow: a crawl over every worker of a Redis
 * (docs/design.md "Crawls").
 *
 * A task with follow > 0 (or with a crawl id) belongs to a crawl: the crawl id is its
 * kwarg crawl, or else its own message id (the root of the crawl). When its page is
 * fetched, one script, crawl_step.lua (broker_crawl.h), records the page's URL (and the
 * one it ended at) in the crawl's seen set and, for each link the page gave, in the same
 * atomic step: skips it when the seen set has it, stops counting at max_pages, else adds
 * it to the seen set and LPUSHes its message. So no URL is enqueued twice by any worker,
 * and a crawl never enqueues more than max_pages pages, its root included. A message
 * found is
 *
 *   {"id": new, "task": "http.scrape", "args": [url], "kwargs": the page's own kwargs
 *    with follow - 1 and crawl = the crawl id, "parent_id": the page's id, "queue": queue,
 *    and the page's message options below}
 *
 * on the queue of kwarg queue, or else the queue the page was taken from; a url given as
 * a kwarg is not passed on (the message's args carry the page's).
 *
 * Message options passed on, when the page's message has them: time_limit,
 * soft_time_limit, max_retries, retry_backoff, retry_backoff_max, retry_jitter,
 * ignore_result, and expires as the page's absolute time (a relative expires counts from
 * when the root was first taken: the whole crawl expires then). Not passed on: id (each
 * page has its own), countdown and eta (the root's wait is not every page's), retries
 * and redelivered (each page counts its own), unique_for and unique_key (every page
 * would share the root's key), chain and member_of (a workflow's step is the root, not
 * each page), queue (the message field is the producer's record; see above).
 *
 * What counts as done and failed: not this step, but the page's final ack, in the same
 * atomic step as its result (ack.lua's "crawl" operation; task_crawl_page_of tells the
 * worker which crawl a message is a page of): done when the task succeeded, failed for
 * any other final outcome (a FAILURE, its retries exhausted, a time limit, a revocation,
 * an expiry, a dead letter; recover.lua counts the poison pills it dead-letters). A page
 * that asks for a retry or waits for its host's turn is not ended yet. A page that runs
 * again (a retry, a redelivery) counts once. The crawl's keys live TASK_CRAWL_TTL after
 * its latest change. A page that succeeds gets "crawl": {"id", "pushed", "enqueued",
 * "max_pages"} in its result.
 *
 * Runs on the task's greenlet; the step yields on the task's lent Redis connection.
 * task_crawl_page_of is pure computation, on any stack.
 */
#include "task_crawl.h"
#include "task_env_internal.h"
#include "task_scrape.h"

#include "broker_crawl.h"
#include "broker_scripts.h"
#include "broker_msg.h"
#include "green.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STEP_TIMEOUT 10.0 /* seconds Redis gets for one step */

/* The options of the page's message m that the pages it finds inherit (see above): those
 * m's text has, with m's parsed values (expires absolute). A new object, or NULL when out
 * of memory. m NULL (no worker ran the call): none. */
static json_t *inherited(const broker_msg *m) {
    json_t *o = json_object();
    if (o == NULL || m == NULL || m->root == NULL)
        return o;
    const json_t *r = m->root;
    int bad = 0;
    if (json_object_get(r, "time_limit") && m->time_limit > 0)
        bad |= json_object_set_new(o, "time_limit", json_real(m->time_limit));
    if (json_object_get(r, "soft_time_limit") && m->soft_time_limit > 0)
        bad |= json_object_set_new(o, "soft_time_limit", json_real(m->soft_time_limit));
    if (json_object_get(r, "max_retries"))
        bad |= json_object_set_new(o, "max_retries", json_integer(m->max_retries));
    if (json_object_get(r, "retry_backoff"))
        bad |= json_object_set_new(o, "retry_backoff", json_real(m->retry_backoff));
    if (json_object_get(r, "retry_backoff_max"))
        bad |= json_object_set_new(o, "retry_backoff_max", json_real(m->retry_backoff_max));
    if (json_object_get(r, "retry_jitter"))
        bad |= json_object_set_new(o, "retry_jitter", json_boolean(m->retry_jitter));
    if (m->ignore_result)
        bad |= json_object_set_new(o, "ignore_result", json_true());
    if (m->expires > 0)
        bad |= json_object_set_new(o, "expires", json_real(m->expires));
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* The message that scrapes url in the crawl, as JSON text (malloc'd), or NULL when out of
 * memory. kwargs and options: the child's, shared by every message of the step. */
static char *child_message(const task_call *call, const char *url, const json_t *kwargs,
                           const json_t *options, const char *queue) {
    char id[BROKER_GENERATED_ID_BYTES + 1];
    broker_msg_new_id(id);
    json_t *msg = json_pack("{s:s, s:s, s:[s], s:O, s:s, s:s}", "id", id, "task", call->name,
                            "args", url, "kwargs", kwargs, "parent_id", call->id, "queue", queue);
    if (msg != NULL && json_object_update(msg, (json_t *)options) != 0) {
        json_decref(msg);
        msg = NULL;
    }
    char *text = msg ? json_dumps(msg, JSON_COMPACT) : NULL;
    json_decref(msg);
    return text;
}

/* Where the pages found go: the kwarg queue, or the queue the page came from (when it is
 * one of workerd's own: not a Celery list), or "default". */
static const char *pages_queue(const task_call *call, const scrape_opts *o) {
    if (o->queue != NULL)
        return o->queue;
    const char *q = call->ctx ? call->ctx->queue : NULL;
    return q != NULL && broker_check_queue_name(q) == NULL ? q : "default";
}

int task_crawl_page_of(const char *task, const char *id, const json_t *args, const json_t *kwargs,
                       task_crawl_page *page) {
    *page = (task_crawl_page){0};
    if (task == NULL || strcmp(task, "http.scrape") != 0 || !json_is_object(kwargs))
        return 0;
    const json_t *crawl = json_object_get(kwargs, "crawl");
    const json_t *follow = json_object_get(kwargs, "follow");
    if (json_is_string(crawl) && broker_check_crawl_id(json_string_value(crawl)) == NULL)
        page->crawl = json_string_value(crawl);
    else if ((crawl == NULL || json_is_null(crawl)) && json_is_integer(follow) &&
             json_integer_value(follow) > 0 && id != NULL && broker_check_crawl_id(id) == NULL)
        page->crawl = id;
    else
        return 0;
    const json_t *url = json_array_get(args, 0);
    if (!json_is_string(url))
        url = json_object_get(kwargs, "url");
    if (!json_is_string(url)) {
        page->crawl = NULL;
        return 0;
    }
    /* Spelled as task__crawl_step spells it in the seen set. */
    char *norm = task__scrape_normalize(json_string_value(url));
    page->url = strdup(norm ? norm : json_string_value(url));
    curl_free(norm);
    if (page->url == NULL) {
        page->crawl = NULL;
        return -ENOMEM;
    }
    const json_t *max = json_object_get(kwargs, "max_pages");
    page->max_pages = json_is_integer(max) && json_integer_value(max) >= 1 &&
                              json_integer_value(max) <= SCRAPE_MAX_PAGES
                          ? json_integer_value(max)
                          : SCRAPE_DEFAULT_PAGES;
    return 1;
}

void task_crawl_page_free(task_crawl_page *page) {
    free(page->url);
    *page = (task_crawl_page){0};
}

/* Send the step's batch on the lent connection, once more as EVAL when Redis has
 * forgotten the script. 0 with *counts, or a task error. */
static int send_step(const task_call *call, broker_batch *b, broker_crawl_counts *counts,
                     task_error *err) {
    green_redis *c = NULL;
    int rc = task__lend(call, false, &c, err);
    for (int attempt = 0; rc == 0 && attempt < 2; attempt++) {
        redisReply *reply = NULL;
        green_timeout own;
        green_timeout_start(&own, STEP_TIMEOUT);
        rc = green_redis_pipeline(c, b->n, b->argcs, (const char **const *)b->argvs, b->argvlens,
                                  &reply, -1);
        bool fired = green_timeout_end(&own);
        if (rc != 0)
            return task__redis_failed(rc, fired, STEP_TIMEOUT, c, "the crawl's step", err);
        if (attempt == 0 && broker_script_retry(b, 0, reply)) {
            freeReplyObject(reply);
            continue;
        }
        if (reply->type == REDIS_REPLY_ERROR)
            rc = task_error_set(err, "RedisError", "the crawl's step: %.*s", (int)reply->len,
                                reply->str);
        else if (broker_crawl_step_parse(reply, counts) != 0)
            rc = task_error_set(err, "RedisError", "the crawl's step: an unexpected reply");
        freeReplyObject(reply);
        return rc;
    }
    return rc;
}

int task__crawl_step(const task_call *call, const scrape_opts *o, const task_http_fetched *f,
                     const json_t *links, int rc, json_t **result, task_error *err) {
    if (o->follow == 0 && o->crawl == NULL)
        return rc;
    if (rc != 0 && rc != TASK_EFAIL && rc != TASK_EINVAL)
        return rc; /* not an outcome yet: the page runs again, or is gone */
    const char *crawl = o->crawl ? o->crawl : call->id;
    const json_t *url = NULL;
    task_error ignored = {.long_message = NULL};
    task_arg_value(call, 0, "url", true, &url, &ignored); /* checked by the fetch already */
    /* The page's own URL and where it ended, spelled as the links that lead to them are
     * (and without the credentials a root's URL may carry), so that those links find them
     * seen. */
    char *self = json_is_string(url) ? task__scrape_normalize(json_string_value(url)) : NULL;
    char *final = f->url ? task__scrape_normalize(f->url) : NULL;
    size_t n = rc == 0 && o->follow > 0 ? json_array_size(links) : 0;
    const char **urls = n ? calloc(n, sizeof *urls) : NULL;
    char **msgs = n ? calloc(n, sizeof *msgs) : NULL;
    json_t *kwargs = n ? json_deep_copy(call->kwargs) : NULL;
    json_t *options = n ? inherited(call->ctx ? call->ctx->msg : NULL) : NULL;
    const char *queue = pages_queue(call, o);
    task_error mine = {.long_message = NULL};
    int step = 0;
    if (n && (urls == NULL || msgs == NULL || kwargs == NULL || options == NULL ||
              json_object_set_new(kwargs, "follow", json_integer(o->follow - 1)) != 0 ||
              json_object_set_new(kwargs, "crawl", json_string(crawl)) != 0 ||
              (json_object_get(kwargs, "url") != NULL && json_object_del(kwargs, "url") != 0)))
        step = task_error_set(&mine, "MemoryError", "%s: out of memory", call->name);
    for (size_t i = 0; step == 0 && i < n; i++) {
        urls[i] = json_string_value(json_array_get(links, i));
        if ((msgs[i] = child_message(call, urls[i], kwargs, options, queue)) == NULL)
            step = task_error_set(&mine, "MemoryError", "%s: out of memory", call->name);
    }
    broker_crawl_counts counts = {0};
    if (step == 0 && call->ctx != NULL && call->ctx->host != NULL) {
        broker_batch b = {0};
        broker_crawl_step s = {.crawl = crawl,
                               .max_pages = o->max_pages,
                               .ttl = TASK_CRAWL_TTL,
                               .queue = queue,
                               .self = self                     ? self
                                       : json_string_value(url) ? json_string_value(url)
                                                                : "",
                               .final = final,
                               .urls = urls,
                               .msgs = (const char *const *)msgs,
                               .n = n};
        if (broker_cmd_crawl_step(&b, &call->ctx->host->keys, &s) != 0)
            step = task_error_set(&mine, "MemoryError", "%s: out of memory", call->name);
        else
            step = send_step(call, &b, &counts, &mine);
        broker_batch_clear(&b);
    } else if (step == 0) {
        step = task__no_worker(call, "http.scrape's follow", &mine);
    }
    for (size_t i = 0; msgs != NULL && i < n; i++)
        free(msgs[i]);
    free(msgs);
    free(urls);
    curl_free(self);
    curl_free(final);
    json_decref(kwargs);
    json_decref(options);

    if (step == -ETIMEDOUT || step == -ECANCELED) {
        if (rc == 0) {
            json_decref(*result);
            *result = NULL;
        }
        return step;
    }
    if (step != 0) {
        /* The page is not recorded: run it again (its links are enqueued at most once). */
        if (rc == 0) {
            json_decref(*result);
            *result = NULL;
        }
        rc = task_retry(err, -1, mine.type, "%s", mine.message);
        task_error_clear(&mine);
        return rc;
    }
    if (rc == 0) {
        json_t *info = json_pack("{s:s, s:I, s:I, s:I}", "id", crawl, "pushed", counts.pushed,
                                 "enqueued", counts.enqueued, "max_pages", counts.max);
        if (info == NULL || json_object_set_new(*result, "crawl", info) != 0) {
            json_decref(*result);
            *result = NULL;
            return task_error_set(err, "MemoryError", "%s: out of memory", call->name);
        }
    }
    return rc;
}
