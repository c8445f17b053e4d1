/*
 * test_e2e_scrape.c - http.scrape's crawls end to end: two workerd processes on one Redis
 * crawl a generated site on loopback (tests/lib/scrape_site.py, which counts the GETs of
 * every path), and workerctl crawl shows the progress.
 *
 * What a user sees: every page of the site fetched exactly once however many workers
 * follow its links; a crawl never enqueues more than its max_pages; the crawl's counts;
 * a crawl finishes (nothing pending) whatever its pages' final outcomes, each counted
 * once, done or failed, whoever decided it (the task, a time limit, a revocation, a dead
 * letter after a worker died); the pages found inherit the root message's options and
 * queue; a non-HTML response is not downloaded.
 * The 1,000-page crawl at -c 100 is bench/scrape_crawl.sh.
 */
#include "ctlrun.h"
#include "e2e.h"
#include "scrape_site.h"
#include "testlib.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SITE_PAGES 200

typedef struct crawl_env {
    ctlrun_env e;
    e2e_worker w2;
    scrape_site site;
} crawl_env;

static void crawl_start(crawl_env *x) {
    scrape_site_start(&x->site, SITE_PAGES);
    ctlrun_env_start(&x->e);
    E2E_START_READY(&x->e.w, x->e.redis.port, "-c", "20");
    E2E_START_READY(&x->w2, x->e.redis.port, "-c", "20");
}

static void crawl_end(crawl_env *x) {
    e2e_worker_stop(&x->w2);
    ctlrun_env_end(&x->e);
    scrape_site_stop(&x->site);
}

static long long crawl_field(crawl_env *x, const char *id, const char *field) {
    redisReply *r = redisCommand(x->e.c, "HGET workerd:crawl:%s %s", id, field);
    ASSERT(r != NULL);
    long long v = r->type == REDIS_REPLY_STRING ? atoll(r->str) : -1;
    freeReplyObject(r);
    return v;
}

/* Push the crawl's root: http.scrape of /site/0 with kwargs (JSON object text). */
static void push_root(crawl_env *x, const char *id, const char *kwargs) {
    e2e_pushf(x->e.c, "default",
              "{\"id\":\"%s\",\"task\":\"http.scrape\",\"args\":[\"%s\"],"
              "\"kwargs\":%s}",
              id, scrape_site_url(&x->site, "/site/0"), kwargs);
}

/* Whether every page the crawl enqueued has ended: done + failed = enqueued. */
static bool pages_ended(ctlrun_env *e, const char *id, long long enqueued) {
    redisReply *r = redisCommand(e->c, "HMGET workerd:crawl:%s enqueued done failed", id);
    ASSERT(r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 3);
    long long v[3] = {0};
    for (size_t i = 0; i < 3; i++)
        v[i] = r->element[i]->type == REDIS_REPLY_STRING ? atoll(r->element[i]->str) : 0;
    freeReplyObject(r);
    return v[0] == enqueued && v[1] + v[2] == enqueued;
}

/* Wait until every page enqueued is done and no message is left on the queue. */
static void wait_finished(crawl_env *x, const char *id, long long pages) {
    ASSERT_WITHIN(crawl_field(x, id, "done") == pages && crawl_field(x, id, "enqueued") == pages &&
                      e2e_int(x->e.c, "LLEN workerd:queue:default") == 0,
                  TEST_NEVER);
}

/* Sum of the site's hits on /site/ pages, and the most any one had. */
static long long site_hits(crawl_env *x, long long *most) {
    json_t *hits = scrape_site_hits(&x->site);
    const char *path;
    json_t *v;
    long long sum = 0;
    *most = 0;
    json_object_foreach(hits, path, v) {
        if (strncmp(path, "/site/", 6) != 0)
            continue;
        long long n = json_integer_value(v);
        sum += n;
        if (n > *most)
            *most = n;
        if (n != 1)
            fprintf(stderr, "%s: %lld GETs\n", path, n);
    }
    json_decref(hits);
    return sum;
}

TEST(test_crawl_with_two_workers_fetches_every_page_exactly_once) {
    crawl_env x = {0};
    crawl_start(&x);
    push_root(&x, "crawl-all", "{\"follow\": 30, \"max_pages\": 1000, \"same_host\": true}");
    wait_finished(&x, "crawl-all", SITE_PAGES);
    long long most;
    ASSERT_EQ(site_hits(&x, &most), SITE_PAGES);
    ASSERT_EQ(most, 1);

    ctlrun r;
    CTL_RUN(&r, "-b", x.e.url, "crawl", "crawl-all", "--json");
    ASSERT_EQ(r.code, 0);
    json_t *j = ctlrun_json(&r);
    ASSERT_STREQ(e2e_jstr(j, "crawl"), "crawl-all");
    ASSERT_EQ(e2e_jnum(j, "done"), SITE_PAGES);
    ASSERT_EQ(e2e_jnum(j, "pending"), 0);
    ASSERT_EQ(e2e_jnum(j, "enqueued"), SITE_PAGES);
    ASSERT_EQ(e2e_jnum(j, "max"), 1000);
    json_decref(j);
    ctlrun_free(&r);
    CTL_RUN(&r, "-b", x.e.url, "crawl", "crawl-all");
    ASSERT_EQ(r.code, 0);
    ASSERT_STREQ(
        r.out,
        "crawl crawl-all: 200 done, 0 failed, 0 pending, 200 enqueued, max 1000 (finished)\n");
    ctlrun_free(&r);

    /* The root's result says which crawl it started; the keys expire. */
    json_t *root = e2e_wait_result(x.e.c, "crawl-all", "SUCCESS", TEST_SOON);
    const json_t *crawl = json_object_get(json_object_get(root, "result"), "crawl");
    ASSERT_STREQ(e2e_jstr(crawl, "id"), "crawl-all");
    json_decref(root);
    ASSERT_RANGE(e2e_int(x.e.c, "TTL workerd:crawl:crawl-all:seen"), 1, 7 * 86400);
    ASSERT_RANGE(e2e_int(x.e.c, "TTL workerd:crawl:crawl-all"), 1, 7 * 86400);
    crawl_end(&x);
}

TEST(test_crawl_never_enqueues_more_than_max_pages) {
    crawl_env x = {0};
    crawl_start(&x);
    /* The url as a keyword argument: the pages found get theirs positionally. With a
     * fragment: the links back to /site/0 find it seen all the same. */
    e2e_pushf(x.e.c, "default",
              "{\"id\":\"root-1\",\"task\":\"http.scrape\",\"kwargs\":{\"url\":\"%s\","
              "\"follow\": 30, \"max_pages\": 37, \"crawl\": \"capped\"}}",
              scrape_site_url(&x.site, "/site/0#start"));
    wait_finished(&x, "capped", 37);
    long long most;
    ASSERT_EQ(site_hits(&x, &most), 37);
    ASSERT_EQ(most, 1);
    ASSERT_EQ(e2e_int(x.e.c, "SCARD workerd:crawl:capped:seen"), 37);
    ASSERT_EQ(crawl_field(&x, "capped", "max"), 37);

    ctlrun r;
    CTL_RUN(&r, "-b", x.e.url, "crawl", "no-such-crawl");
    ASSERT_EQ(r.code, 1);
    ASSERT(strstr(r.err, "no crawl no-such-crawl") != NULL);
    ctlrun_free(&r);
    crawl_end(&x);
}

/* http.scrape fetches as http.get does: --http-host-rate holds the crawl's requests to the
 * site's host to the rate (12 pages at 10/s cannot take less than 1.05 s: at most
 * rate x (W + 0.05) + 1 starts in any W seconds), and waiting for turns loses no page. */
TEST(test_crawl_keeps_to_http_host_rate) {
    crawl_env x = {0};
    scrape_site_start(&x.site, SITE_PAGES);
    ctlrun_env_start(&x.e);
    E2E_START_READY(&x.e.w, x.e.redis.port, "-c", "20", "--http-host-rate", "10/s");
    double t0 = test_now();
    push_root(&x, "polite", "{\"follow\": 30, \"max_pages\": 12}");
    wait_finished(&x, "polite", 12);
    double took = test_now() - t0;
    fprintf(stderr, "12 pages at --http-host-rate 10/s: %.2f s\n", took);
    ASSERT(took >= 1.05);
    long long most;
    ASSERT_EQ(site_hits(&x, &most), 12);
    ASSERT_EQ(most, 1);
    ASSERT_EQ(e2e_int(x.e.c, "EXISTS workerd:rate:host:127.0.0.1"), 1);
    ctlrun_env_end(&x.e);
    scrape_site_stop(&x.site);
}

/* Hits on path so far. */
static long long hits_of(const scrape_site *site, const char *path) {
    json_t *hits = scrape_site_hits(site);
    long long n = json_integer_value(json_object_get(hits, path));
    json_decref(hits);
    return n;
}

/* Every final outcome decided by the task, or by the worker at the end of a time limit,
 * ends a page: the crawl finishes with each page counted done or failed once. The pages
 * found inherit the root's time_limit (the page that hangs is stopped at 2 s, not left to
 * its request's timeout of 100 s), max_retries (the 503 is fetched twice, not 4 times as by
 * default) and queue (the worker consumes only crawlq: a page sent to "default" would never run).
 */
TEST(test_crawl_finishes_with_every_failed_page_counted_once) {
    ctlrun_env e = {0};
    scrape_site site;
    scrape_site_start(&site, 8);
    ctlrun_env_start(&e);
    E2E_START_READY(&e.w, e.redis.port, "-c", "10", "-Q", "crawlq");
    e2e_pushf(
        e.c, "crawlq",
        "{\"id\":\"fails\",\"task\":\"http.scrape\",\"args\":[\"%s\"],"
        "\"kwargs\":{\"follow\":1,\"raise_for_status\":true,\"retry_on\":[503],\"timeout\":100},"
        "\"time_limit\":2,\"max_retries\":1,\"retry_backoff\":0.05,\"retry_jitter\":false}",
        scrape_site_url(&site, "/crawl-fail"));
    ASSERT_WITHIN(pages_ended(&e, "fails", 6), TEST_NEVER);
    ctlrun r;
    CTL_RUN(&r, "-b", e.url, "crawl", "fails");
    ASSERT_EQ(r.code, 0);
    ASSERT_STREQ(r.out,
                 "crawl fails: 2 done, 4 failed, 0 pending, 6 enqueued, max 100 (finished)\n");
    ctlrun_free(&r);
    CTL_RUN(&r, "-b", e.url, "crawl", "fails", "--json");
    ASSERT_EQ(r.code, 0);
    json_t *j = ctlrun_json(&r);
    ASSERT_EQ(e2e_jnum(j, "done"), 2);
    ASSERT_EQ(e2e_jnum(j, "failed"), 4);
    ASSERT_EQ(e2e_jnum(j, "pending"), 0);
    ASSERT(json_is_true(json_object_get(j, "finished")));
    json_decref(j);
    ctlrun_free(&r);

    /* Which failed: the 404, NotHTML, the time limit, the 503 after its one retry. */
    const char *failed[] = {"/missing", "/json", "/hang/1", "/unavailable"};
    for (size_t i = 0; i < 4; i++)
        ASSERT_EQ(e2e_int(e.c, "SISMEMBER workerd:crawl:fails:failed %s",
                          scrape_site_url(&site, failed[i])),
                  1);
    ASSERT_EQ(
        e2e_int(e.c, "SISMEMBER workerd:crawl:fails:done %s", scrape_site_url(&site, "/site/1")),
        1);
    ASSERT_EQ(hits_of(&site, "/unavailable"), 2);
    ASSERT_EQ(hits_of(&site, "/hang/1"), 1);
    ASSERT_EQ(hits_of(&site, "/site/2"), 0); /* depth 1: the pages found follow nothing */
    ASSERT_EQ(e2e_int(e.c, "LLEN workerd:queue:default"), 0);
    ctlrun_env_end(&e);
    scrape_site_stop(&site);
}

/* The id of the message in flight (on any worker) whose URL ends with suffix; malloc'd. */
static char *inflight_id(redisContext *c, const char *suffix) {
    redisReply *keys = redisCommand(c, "KEYS workerd:inflight:*");
    ASSERT(keys != NULL && keys->type == REDIS_REPLY_ARRAY);
    char *id = NULL;
    for (size_t k = 0; k < keys->elements && id == NULL; k++) {
        redisReply *vals = redisCommand(c, "HVALS %s", keys->element[k]->str);
        ASSERT(vals != NULL && vals->type == REDIS_REPLY_ARRAY);
        for (size_t i = 0; i < vals->elements && id == NULL; i++) {
            const char *nl = strchr(vals->element[i]->str, '\n');
            json_t *m = nl ? json_loads(nl + 1, 0, NULL) : NULL;
            const char *url = json_string_value(json_array_get(json_object_get(m, "args"), 0));
            size_t n = url ? strlen(url) : 0;
            if (n >= strlen(suffix) && strcmp(url + n - strlen(suffix), suffix) == 0)
                id = strdup(e2e_jstr(m, "id"));
            json_decref(m);
        }
        freeReplyObject(vals);
    }
    freeReplyObject(keys);
    return id;
}

/* Outcomes the worker decides, not the task: a page revoked with --terminate while it
 * runs, and a page dead-lettered by the recovery of its dead worker (redelivered more
 * than --max-redeliveries) both end as failed, and the crawl finishes. */
TEST(test_crawl_finishes_when_pages_are_revoked_or_dead_lettered) {
    ctlrun_env e = {0};
    scrape_site site;
    scrape_site_start(&site, 8);
    ctlrun_env_start(&e);
    E2E_START_READY(&e.w, e.redis.port, "-c", "4", "--heartbeat", "1");
    e2e_pushf(e.c, "default",
              "{\"id\":\"hangs\",\"task\":\"http.scrape\",\"args\":[\"%s\"],"
              "\"kwargs\":{\"follow\":1}}",
              scrape_site_url(&site, "/hangs"));
    ASSERT_WITHIN(hits_of(&site, "/hang/1") == 1 && hits_of(&site, "/hang/2") == 1, TEST_NEVER);
    char *id = inflight_id(e.c, "/hang/1");
    ASSERT(id != NULL);
    ctlrun r;
    CTL_RUN(&r, "-b", e.url, "revoke", "--terminate", id);
    ASSERT_EQ(r.code, 0);
    ctlrun_free(&r);
    json_decref(e2e_wait_result(e.c, id, "REVOKED", TEST_NEVER));
    free(id);
    /* /hang/2 is still running when its worker dies; recovery by a worker that allows no
     * redelivery dead-letters it. */
    e2e_worker_signal(&e.w, SIGKILL);
    ASSERT_EQ(e2e_worker_wait(&e.w, TEST_SOON), 128 + SIGKILL);
    e2e_worker_stop(&e.w); /* reaped already: its files go */
    E2E_START_READY(&e.w, e.redis.port, "--heartbeat", "1", "--max-redeliveries", "0");
    ASSERT(e2e_wait_dead(e.c, 1, TEST_NEVER));
    ASSERT_WITHIN(pages_ended(&e, "hangs", 3), TEST_NEVER);
    CTL_RUN(&r, "-b", e.url, "crawl", "hangs");
    ASSERT_EQ(r.code, 0);
    ASSERT_STREQ(r.out,
                 "crawl hangs: 1 done, 2 failed, 0 pending, 3 enqueued, max 100 (finished)\n");
    ctlrun_free(&r);
    ASSERT_EQ(hits_of(&site, "/hang/2"), 1); /* not run again */
    ctlrun_env_end(&e);
    scrape_site_stop(&site);
}

/* A link to a large non-HTML resource fails NotHTML as soon as its headers are in: the
 * site wrote a small part of its 64 MiB before the transfer was cut (the site's own
 * count of the bytes it wrote, not a time). */
TEST(test_non_html_response_is_not_downloaded) {
    ctlrun_env e = {0};
    scrape_site site;
    scrape_site_start(&site, 8);
    ctlrun_env_start(&e);
    E2E_START_READY(&e.w, e.redis.port);
    e2e_pushf(e.c, "default",
              "{\"id\":\"video\",\"task\":\"http.scrape\",\"args\":[\"%s\"],"
              "\"kwargs\":{\"max_size\":%lld}}",
              scrape_site_url(&site, "/huge.bin"), 100LL << 20);
    json_t *res = e2e_wait_result(e.c, "video", "FAILURE", TEST_NEVER);
    ASSERT_STREQ(e2e_jstr(json_object_get(res, "error"), "type"), "NotHTML");
    json_decref(res);
    json_t *served = NULL;
    ASSERT_WITHIN((json_decref(served), served = scrape_site_served(&site),
                   json_is_true(json_object_get(json_object_get(served, "/huge.bin"), "ended"))),
                  TEST_NEVER);
    long long bytes =
        json_integer_value(json_object_get(json_object_get(served, "/huge.bin"), "bytes"));
    json_decref(served);
    fprintf(stderr, "/huge.bin: %lld of %lld bytes written\n", bytes, 64LL << 20);
    ASSERT(bytes < (16LL << 20));
    ctlrun_env_end(&e);
    scrape_site_stop(&site);
}
