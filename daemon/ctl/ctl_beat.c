/*
 * ctl_beat.c - `workerctl beat`: the entries of the beat file (--beat FILE, as workerd
 * reads it; beat_file.h) with the tick each last fired, read from PREFIX:beat, and the next
 * tick after the Redis server's clock (docs/design.md "Periodic tasks").
 *
 * The file is checked by the same loader as workerd's, so a file workerctl refuses is one
 * workerd refuses, with the same message.
 *
 * Runs on the main thread; blocking file I/O and Redis commands.
 */
#include "ctl.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "beat_file.h"
#include "broker_beat.h"

/* "2026-12-04T07:00:00Z", or "-" for a negative t. */
static void iso(int64_t t, char *buf, size_t len) {
    if (t < 0) {
        snprintf(buf, len, "-");
        return;
    }
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static const char *catch_up_name(enum beat_catch_up c) {
    return c == BEAT_CATCH_UP_ALL ? "all" : c == BEAT_CATCH_UP_NONE ? "none" : "one";
}

int ctl_cmd_beat(ctl *c, int argc, char **argv) {
    ctl_args a;
    int code = ctl_parse(c, argc, argv, NULL, &a);
    if (code != CTL_OK)
        return code;
    if (a.npos != 0)
        return ctl_usage(c, "beat takes no operands");
    if (c->beat == NULL)
        return ctl_usage(c, "no beat file: give --beat FILE (or WORKERD_BEAT)");
    beat_schedule *s;
    char err[1024];
    if (beat_schedule_load(c->beat, (double)time(NULL), &s, err, sizeof err) != 0)
        return ctl_error(CTL_USAGE, "--beat: %s", err);
    broker_batch b = {0};
    broker_cmd_beat_state(&b, &c->keys);
    redisContext *rc = ctl_broker(c);
    redisReply *replies[2] = {NULL, NULL};
    code = rc == NULL ? CTL_UNREACHABLE : ctl_send(rc, &b, replies);
    broker_batch_clear(&b);
    double now = 0;
    int64_t probe;
    if (code == CTL_OK && (broker_reply_time(replies[1], &now) != 0 ||
                           broker_reply_beat_mark(replies[0], "", &probe) < 0))
        code = ctl_error(CTL_FAIL, "unexpected reply reading the beat marks and the time");
    json_t *all = c->json ? json_array() : NULL;
    ctl_table t;
    if (code == CTL_OK && !c->json)
        ctl_table_init(&t, 6, "NAME", "SCHEDULE", "CATCH_UP", "QUEUE", "LAST FIRED", "NEXT");
    for (size_t i = 0; code == CTL_OK && i < s->n; i++) {
        const beat_entry *e = &s->entries[i];
        int64_t last = -1;
        bool found = broker_reply_beat_mark(replies[0], e->name, &last) == 1;
        int64_t next = beat_entry_next(e, (int64_t)floor(now));
        char sched[256], last_s[32], next_s[32], id[BEAT_ID_MAX + 1];
        beat_entry_describe(e, sched, sizeof sched);
        if (found)
            beat_entry_id(e, last, id);
        if (c->json) {
            json_array_append_new(
                all, json_pack("{s:s, s:s, s:s, s:s, s:o, s:o, s:o}", "name", e->name, "schedule",
                               sched, "catch_up", catch_up_name(e->catch_up), "queue", e->queue,
                               "last_fired", found ? json_integer(last) : json_null(), "next",
                               next >= 0 ? json_integer(next) : json_null(), "last_id",
                               found ? json_string(id) : json_null()));
        } else {
            iso(found ? last : -1, last_s, sizeof last_s);
            iso(next, next_s, sizeof next_s);
            ctl_table_row(&t, e->name, sched, catch_up_name(e->catch_up), e->queue, last_s, next_s);
        }
    }
    for (size_t i = 0; i < 2; i++)
        if (replies[i])
            freeReplyObject(replies[i]);
    beat_schedule_free(s);
    if (code != CTL_OK) {
        json_decref(all);
        return code;
    }
    if (c->json)
        ctl_print_json(all);
    else
        ctl_table_print(&t);
    return CTL_OK;
}
