/*
 * ctl_crawl.c - `workerctl crawl ID`: the progress of an http.scrape crawl (broker_crawl.h;
 * docs/design.md "Crawls"): pages done, failed, pending, enqueued, and the crawl's
 * max_pages, read in one HMGET of <prefix>:crawl:<ID>, which the crawl's step script keeps
 * up to date in the same atomic step as the pages it enqueues, and each page's final ack
 * in the same atomic step as its result. Finished: nothing pending.
 *
 * Runs on the main thread; blocking Redis commands.
 */
#include "ctl.h"

#include <stdio.h>

#include "broker_crawl.h"

int ctl_cmd_crawl(ctl *c, int argc, char **argv) {
    ctl_args a;
    int code = ctl_parse(c, argc, argv, NULL, &a);
    if (code != CTL_OK)
        return code;
    if (a.npos != 1)
        return ctl_usage(c, "crawl takes one crawl ID");
    const char *id = a.pos[0];
    const char *bad = broker_check_crawl_id(id);
    if (bad)
        return ctl_usage(c, "crawl ID: %s", bad);
    broker_batch b = {0};
    broker_cmd_crawl_status(&b, &c->keys, id);
    redisReply *r = ctl_broker_one(c, &b, &code);
    if (r == NULL)
        return code;
    broker_crawl_counts n;
    int found = broker_crawl_status_parse(r, &n);
    freeReplyObject(r);
    if (found < 0)
        return ctl_error(CTL_FAIL, "unexpected reply reading crawl %s", id);
    if (found == 0)
        return ctl_error(CTL_FAIL, "no crawl %s (it never started, or its keys expired)", id);
    long long ended = n.done + n.failed;
    long long pending = n.enqueued > ended ? n.enqueued - ended : 0;
    if (c->json)
        ctl_print_json(json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:b}", "crawl", id, "done", n.done,
                                 "failed", n.failed, "pending", pending, "enqueued", n.enqueued,
                                 "max", n.max, "finished", pending == 0));
    else
        printf("crawl %s: %lld done, %lld failed, %lld pending, %lld enqueued, max %lld%s\n", id,
               n.done, n.failed, pending, n.enqueued, n.max, pending == 0 ? " (finished)" : "");
    return CTL_OK;
}
