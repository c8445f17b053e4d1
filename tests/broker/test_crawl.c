/*
 * test_crawl.c - the Redis side of http.scrape's crawls (broker_crawl.h) on a real
 * redis-server: crawl_step.lua pushes each unseen URL once and never past max_pages,
 * counts the root enqueued once, leaves done to the page's final ack, keeps the first
 * max, sees the final URL, sets the TTLs; the status read; the builders' checks. (A
 * page's final ack, ack.lua's "crawl" operation, is proved end to end in
 * test_e2e_scrape.)
 */
#include "broker_crawl.h"
#include "broker_scripts.h"
#include "brokerfix.h"

#include <errno.h>
#include <string.h>

#include "testlib.h"

static broker_keys keys;

/* Send a one-command batch as the task does (EVALSHA, then EVAL on NOSCRIPT). */
static redisReply *send_batch(broker_batch *b) {
    ASSERT_EQ(b->err, 0);
    redisReply *r = redisCommandArgv(bfix_rc, b->argcs[0], b->argvs[0], b->argvlens[0]);
    ASSERT(r != NULL);
    if (broker_script_retry(b, 0, r)) {
        freeReplyObject(r);
        r = redisCommandArgv(bfix_rc, b->argcs[0], b->argvs[0], b->argvlens[0]);
        ASSERT(r != NULL);
    }
    if (r->type == REDIS_REPLY_ERROR)
        test__fail(__FILE__, __LINE__, "error reply: %s", r->str);
    return r;
}

static broker_crawl_counts step(const char *crawl, long long max, const char *self,
                                const char *final, const char *const *urls, size_t n) {
    const char *msgs[16];
    char text[16][64];
    for (size_t i = 0; i < n; i++) {
        snprintf(text[i], sizeof text[i], "{\"task\":\"http.scrape\",\"args\":[\"%s\"]}", urls[i]);
        msgs[i] = text[i];
    }
    broker_crawl_step s = {.crawl = crawl,
                           .max_pages = max,
                           .ttl = 600,
                           .queue = "crawlq",
                           .self = self,
                           .final = final,
                           .urls = urls,
                           .msgs = msgs,
                           .n = n};
    broker_batch b = {0};
    broker_cmd_crawl_step(&b, &keys, &s);
    redisReply *r = send_batch(&b);
    broker_crawl_counts c;
    ASSERT_EQ(broker_crawl_step_parse(r, &c), 0);
    freeReplyObject(r);
    broker_batch_clear(&b);
    return c;
}

static void start(void) {
    ASSERT_EQ(broker_keys_init(&keys, NULL), 0);
    bfix_start();
}

TEST(step_pushes_each_unseen_url_once_and_never_past_max_pages) {
    start();
    const char *first[] = {"u1", "u2", "u1", "u3", "u4", "u5"};
    broker_crawl_counts c = step("c1", 4, "u0", NULL, first, 6);
    ASSERT_EQ(c.pushed, 3); /* u1, u2, u3: with the root, 4 */
    ASSERT_EQ(c.known, 1);  /* u1 again */
    ASSERT_EQ(c.over, 2);   /* u4, u5 */
    ASSERT_EQ(c.enqueued, 4);
    ASSERT_EQ(c.done, 0); /* the final ack counts it */
    ASSERT_EQ(c.max, 4);
    ASSERT_EQ(bfix_cmd_int("LLEN workerd:queue:crawlq"), 3);
    ASSERT_STREQ(bfix_cmd_str("RPOP workerd:queue:crawlq"),
                 "{\"task\":\"http.scrape\",\"args\":[\"u1\"]}");

    const char *second[] = {"u0", "u4"};
    c = step("c1", 4, "u1", NULL, second, 2);
    ASSERT_EQ(c.pushed, 0);
    ASSERT_EQ(c.known, 1);
    ASSERT_EQ(c.over, 1);
    ASSERT_EQ(c.enqueued, 4);
    ASSERT_EQ(c.done, 0);
    ASSERT_EQ(bfix_cmd_int("SCARD workerd:crawl:c1:seen"), 4);
    bfix_stop();
}

TEST(page_stepped_twice_counts_once_and_the_first_max_stays) {
    start();
    step("c2", 5, "u0", NULL, NULL, 0);
    broker_crawl_counts c = step("c2", 50, "u0", NULL, NULL, 0);
    ASSERT_EQ(c.done, 0);
    ASSERT_EQ(c.enqueued, 1);
    ASSERT_EQ(c.max, 5);
    bfix_stop();
}

TEST(final_url_is_seen_without_being_counted) {
    start();
    step("c3", 10, "u0", "u0-moved", NULL, 0);
    const char *urls[] = {"u0-moved", "u7"};
    broker_crawl_counts c = step("c3", 10, "u0", NULL, urls, 2);
    ASSERT_EQ(c.pushed, 1);
    ASSERT_EQ(c.known, 1);
    ASSERT_EQ(c.enqueued, 2);
    bfix_stop();
}

TEST(crawl_keys_expire_and_status_reads_the_counts) {
    start();
    const char *urls[] = {"a", "b"};
    step("c4", 9, "root", NULL, urls, 2);
    ASSERT_RANGE(bfix_cmd_int("TTL workerd:crawl:c4"), 1, 600);
    ASSERT_RANGE(bfix_cmd_int("TTL workerd:crawl:c4:seen"), 1, 600);
    bfix_cmd_int("SADD workerd:crawl:c4:done root");
    bfix_cmd_int("HSET workerd:crawl:c4 done 1 failed 2");

    broker_batch b = {0};
    ASSERT_EQ(broker_cmd_crawl_status(&b, &keys, "c4"), 0);
    redisReply *r = send_batch(&b);
    broker_crawl_counts c;
    ASSERT_EQ(broker_crawl_status_parse(r, &c), 1);
    ASSERT_EQ(c.max, 9);
    ASSERT_EQ(c.enqueued, 3);
    ASSERT_EQ(c.done, 1);
    ASSERT_EQ(c.failed, 2);
    freeReplyObject(r);
    broker_batch_clear(&b);
    step("c4", 9, "a", NULL, NULL, 0); /* a later step refreshes every key's TTL */
    ASSERT_RANGE(bfix_cmd_int("TTL workerd:crawl:c4:done"), 1, 600);
    ASSERT_EQ(broker_cmd_crawl_status(&b, &keys, "c4"), 0);
    r = send_batch(&b);
    ASSERT_EQ(broker_crawl_status_parse(r, &c), 1);
    freeReplyObject(r);
    broker_batch_clear(&b);

    ASSERT_EQ(broker_cmd_crawl_status(&b, &keys, "nope"), 0);
    r = send_batch(&b);
    ASSERT_EQ(broker_crawl_status_parse(r, &c), 0);
    freeReplyObject(r);
    broker_batch_clear(&b);
    bfix_stop();
}

TEST(bad_crawl_id_or_queue_fails_the_batch) {
    ASSERT_EQ(broker_keys_init(&keys, NULL), 0);
    broker_crawl_step s = {.crawl = "", .max_pages = 1, .ttl = 1, .queue = "q", .self = "u"};
    broker_batch b = {0};
    ASSERT_EQ(broker_cmd_crawl_step(&b, &keys, &s), -EINVAL);
    broker_batch_clear(&b);
    s.crawl = "c";
    s.queue = "a,b";
    ASSERT_EQ(broker_cmd_crawl_step(&b, &keys, &s), -EINVAL);
    broker_batch_clear(&b);
    ASSERT_EQ(broker_cmd_crawl_status(&b, &keys, ""), -EINVAL);
    broker_batch_clear(&b);
    char key[BROKER_KEY_MAX];
    ASSERT_EQ(broker_key_crawl(&keys, "x", key), 15);
    ASSERT_STREQ(key, "workerd:crawl:x");
}
