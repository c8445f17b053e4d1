/*
 * ctl_rate.c - `workerctl rate-limit`: list, set or remove the rate limits that every
 * worker of the Redis applies (broker_rate.h; docs/design.md "Rate limits").
 *
 *   rate-limit               list PREFIX:rate_limits (task, rate)
 *   rate-limit TASK RATE     HSET: from their next message of TASK, every worker keeps to
 *                            RATE (the check script reads the hash each time)
 *   rate-limit TASK off      HDEL: no limit from the next message on
 *
 * The value is checked with the workers' own parser before it is written, so what
 * workerctl accepts is what the workers apply. A worker started with --rate-limit for the
 * task writes its own value again when it starts.
 *
 * Runs on the main thread; blocking Redis commands.
 */
#include "ctl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "broker_rate.h"

static int list(ctl *c) {
    broker_batch b = {0};
    broker_cmd_rate_list(&b, &c->keys);
    int code;
    redisReply *r = ctl_broker_one(c, &b, &code);
    if (r == NULL)
        return code;
    if (r->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(r);
        return ctl_error(CTL_FAIL, "unexpected reply reading the rate limits");
    }
    json_t *all = c->json ? json_object() : NULL;
    ctl_table t;
    if (!c->json)
        ctl_table_init(&t, 2, "TASK", "RATE");
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        const redisReply *k = r->element[i], *v = r->element[i + 1];
        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            continue;
        char why[160];
        bool ok = broker_rate_parse(v->str, NULL, why, sizeof why) == 0;
        if (c->json) {
            json_object_set_new(all, k->str, json_string(v->str));
        } else {
            char *rate = ctl_escape(v->str, v->len);
            char shown[300];
            snprintf(shown, sizeof shown, "%s%s", rate ? rate : "?",
                     ok ? "" : " (not a rate: ignored)");
            free(rate);
            ctl_table_row(&t, k->str, shown);
        }
    }
    freeReplyObject(r);
    if (c->json)
        ctl_print_json(all);
    else
        ctl_table_print(&t);
    return CTL_OK;
}

int ctl_cmd_rate_limit(ctl *c, int argc, char **argv) {
    ctl_args a;
    int code = ctl_parse(c, argc, argv, NULL, &a);
    if (code != CTL_OK)
        return code;
    if (a.npos == 0)
        return list(c);
    if (a.npos != 2)
        return ctl_usage(c, "rate-limit takes TASK RATE, TASK off, or nothing (to list)");
    const char *task = a.pos[0], *rate = a.pos[1];
    const char *bad = broker_rate_check_name(task);
    if (bad)
        return ctl_usage(c, "task '%s': %s", task, bad);
    bool off = strcasecmp(rate, "off") == 0;
    char why[200];
    if (!off && broker_rate_parse(rate, NULL, why, sizeof why) != 0)
        return ctl_usage(c, "%s", why);
    broker_batch b = {0};
    if (off)
        broker_cmd_rate_off(&b, &c->keys, task);
    else
        broker_cmd_rate_set(&b, &c->keys, task, rate);
    redisReply *r = ctl_broker_one(c, &b, &code);
    if (r == NULL)
        return code;
    freeReplyObject(r);
    if (c->json)
        ctl_print_json(json_pack("{s:s, s:s?}", "task", task, "rate", off ? NULL : rate));
    else if (off)
        printf("rate limit of %s removed: every worker runs it at full speed\n", task);
    else
        printf("rate limit of %s: %s over all workers, from their next message\n", task, rate);
    return CTL_OK;
}
