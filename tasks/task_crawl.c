/*
 * task_crawl.c - http.scrape's follow: a crawl over every worker of a Redis
 * (docs/design.md "Crawls").
 *
 * A task with follow > 0 (or with a crawl id) belongs to a crawl: the crawl id is its
 * kwarg crawl, or else its own message id (the root of the crawl). When its page is done,
 * one script, crawl_step.lua (broker_crawl.h), records the page in the crawl's done set
 * and, for each link the page gave, in the same atomic step: skips it when the crawl's
 * seen set has it, stops counting at max_pages, else adds it to the seen set and LPUSHes
 * its message. So no URL is enqueued twice by any worker, and a crawl never enqueues more
 * than max_pages pages, its root included. A message found is
 *
 *   {"id": new, "task": "http.scrape", "args": [url], "kwargs": the page's own kwargs
 *    with follow - 1 and crawl = the crawl id, "parent_id": the page's id, "queue": queue}
 *
 * on the queue of kwarg queue (default "default"); a url given as a kwarg is not passed
 * on (the message's args carry the page's). Message fields (time_limit,
 * max_retries, ...) are not passed on: kwargs are. A page whose depth is spent (follow 0,
 * with the crawl id) is still recorded as done.
 *
 * What counts as done: a page whose task ends with a result, SUCCESS or FAILURE (an
 * HTTP error, NotHTML, ...). A page that asks for a retry (retry_on, Redis down), waits
 * for its host's turn (--http-host-rate) or is stopped by a time limit is not done yet,
 * and one whose retries run out stays pending. A page that runs again (a retry, a
 * redelivery) counts once. The crawl's keys live CRAWL_TTL after its latest step. A page
 * that succeeds gets "crawl": {"id", "pushed", "enqueued", "max_pages"} in its result.
 *
 * Runs on the task's greenlet; the step yields on the task's lent Redis connection.
 */
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

#define CRAWL_TTL (7LL * 86400) /* seconds */
#define STEP_TIMEOUT 10.0       /* seconds Redis gets for one step */

/* The message that scrapes url in the crawl, as JSON text (malloc'd), or NULL when out of
 * memory. kwargs: the child's, shared by every message of the step. */
static char *child_message(const task_call *call, const char *url, const json_t *kwargs,
                           const char *queue) {
    char id[BROKER_GENERATED_ID_BYTES + 1];
    broker_msg_new_id(id);
    json_t *msg = json_pack("{s:s, s:s, s:[s], s:O, s:s, s:s}", "id", id, "task", call->name,
                            "args", url, "kwargs", kwargs, "parent_id", call->id, "queue", queue);
    char *text = msg ? json_dumps(msg, JSON_COMPACT) : NULL;
    json_decref(msg);
    return text;
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
    task_error mine = {.long_message = NULL};
    int step = 0;
    if (n && (urls == NULL || msgs == NULL || kwargs == NULL ||
              json_object_set_new(kwargs, "follow", json_integer(o->follow - 1)) != 0 ||
              json_object_set_new(kwargs, "crawl", json_string(crawl)) != 0 ||
              (json_object_get(kwargs, "url") != NULL && json_object_del(kwargs, "url") != 0)))
        step = task_error_set(&mine, "MemoryError", "%s: out of memory", call->name);
    for (size_t i = 0; step == 0 && i < n; i++) {
        urls[i] = json_string_value(json_array_get(links, i));
        if ((msgs[i] = child_message(call, urls[i], kwargs, o->queue)) == NULL)
            step = task_error_set(&mine, "MemoryError", "%s: out of memory", call->name);
    }
    broker_crawl_counts counts = {0};
    if (step == 0 && call->ctx != NULL && call->ctx->host != NULL) {
        broker_batch b = {0};
        broker_crawl_step s = {.crawl = crawl,
                               .max_pages = o->max_pages,
                               .ttl = CRAWL_TTL,
                               .queue = o->queue,
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
