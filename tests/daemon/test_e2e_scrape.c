/*
 * test_e2e_scrape.c - http.scrape's crawls end to end: two workerd processes on one Redis
 * crawl a generated site on loopback (tests/lib/scrape_site.py, which counts the GETs of
 * every path), and workerctl crawl shows the progress.
 *
 * What a user sees: every page of the site fetched exactly once however many workers
 * follow its links; a crawl never enqueues more than its max_pages; the crawl's counts.
 * The 1,000-page crawl at -c 100 is bench/scrape_crawl.sh.
 */
#include "ctlrun.h"
#include "e2e.h"
#include "scrape_site.h"
#include "testlib.h"

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
    ASSERT_STREQ(r.out,
                 "crawl crawl-all: 200 done, 0 pending, 200 enqueued, max 1000 (finished)\n");
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
