/*
 * test_events.c - the XADD of a task event (broker_events.h): its exact argument vector,
 * the optional fields left out, and, against a real redis-server, the entry a monitor
 * reads back and the cap on the stream's length.
 */
#include "broker_events.h"
#include "broker_keys.h"

#include <hiredis/hiredis.h>
#include <string.h>

#include "testlib.h"

/* The command as one string, arguments separated by single spaces. */
static const char *joined(const broker_events_cmd *cmd) {
    static char out[4096];
    out[0] = '\0';
    for (int i = 0; i < cmd->argc; i++) {
        if (i)
            strcat(out, " ");
        strcat(out, cmd->argv[i]);
    }
    return out;
}

TEST(xadd_of_a_finished_event_has_every_field_in_order) {
    broker_event ev = {.type = "failed",
                       .id = "job-1",
                       .task = "http.get",
                       .worker = "h:12:ab",
                       .time = 1700000000.25,
                       .queue = "high",
                       .runtime = 0.5,
                       .error = "HTTPError: 500"};
    broker_events_cmd cmd;
    ASSERT_EQ(broker_events_xadd(&cmd, "workerd:events", &ev), 22);
    ASSERT_EQ(cmd.argc, 22);
    ASSERT_STREQ(joined(&cmd), "XADD workerd:events MAXLEN ~ 10000 * type failed id job-1 "
                               "task http.get worker h:12:ab time 1700000000.250000 queue high "
                               "runtime 0.500000 error HTTPError: 500");
}

TEST(xadd_leaves_out_absent_fields) {
    broker_event ev = {.type = "started", .worker = "h:12:ab", .time = 1.5, .runtime = -1};
    broker_events_cmd cmd;
    ASSERT_EQ(broker_events_xadd(&cmd, "app:events", &ev), 12);
    ASSERT_STREQ(joined(&cmd),
                 "XADD app:events MAXLEN ~ 10000 * type started worker h:12:ab time 1.500000");
    /* A runtime of zero is a runtime, not an absent one. */
    ev.runtime = 0;
    broker_events_xadd(&cmd, "app:events", &ev);
    ASSERT(strstr(joined(&cmd), " runtime 0.000000") != NULL);
}

TEST(redis_stores_the_event_as_a_monitor_reads_it) {
    test_redis server;
    test_redis_start(&server, NULL);
    redisContext *c = redisConnect("127.0.0.1", server.port);
    ASSERT(c != NULL && c->err == 0);
    broker_keys keys;
    char key[BROKER_KEY_MAX];
    ASSERT_EQ(broker_keys_init(&keys, NULL), 0);
    ASSERT(broker_key_events(&keys, key) > 0);
    broker_event ev = {.type = "received",
                       .id = "job 1",
                       .task = "echo",
                       .worker = "h:1:x",
                       .time = 1700000000.123456,
                       .queue = "default",
                       .runtime = -1};
    broker_events_cmd cmd;
    broker_events_xadd(&cmd, key, &ev);
    redisReply *r = redisCommandArgv(c, cmd.argc, cmd.argv, NULL);
    ASSERT(r != NULL && r->type == REDIS_REPLY_STRING);
    freeReplyObject(r);

    r = redisCommand(c, "XRANGE workerd:events - +");
    ASSERT(r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 1);
    redisReply *fields = r->element[0]->element[1];
    const char *want[] = {"type",  "received", "id",    "job 1", "task",
                          "echo",  "worker",   "h:1:x", "time",  "1700000000.123456",
                          "queue", "default"};
    ASSERT_EQ(fields->elements, sizeof want / sizeof *want);
    for (size_t i = 0; i < fields->elements; i++)
        ASSERT_STREQ(fields->element[i]->str, want[i]);
    freeReplyObject(r);
    redisFree(c);
    test_redis_stop(&server);
}

TEST(stream_stays_capped_near_maxlen) {
    test_redis server;
    test_redis_start(&server, NULL);
    redisContext *c = redisConnect("127.0.0.1", server.port);
    ASSERT(c != NULL && c->err == 0);
    broker_event ev = {.type = "succeeded",
                       .id = "j",
                       .task = "echo",
                       .worker = "w",
                       .time = 1.0,
                       .runtime = 0.001};
    broker_events_cmd cmd;
    broker_events_xadd(&cmd, "workerd:events", &ev);
    int total = 2 * BROKER_EVENTS_MAXLEN + 500;
    for (int i = 0; i < total; i++)
        ASSERT_EQ(redisAppendCommandArgv(c, cmd.argc, cmd.argv, NULL), REDIS_OK);
    for (int i = 0; i < total; i++) {
        void *reply = NULL;
        ASSERT_EQ(redisGetReply(c, &reply), REDIS_OK);
        ASSERT(((redisReply *)reply)->type == REDIS_REPLY_STRING);
        freeReplyObject(reply);
    }
    redisReply *r = redisCommand(c, "XLEN workerd:events");
    ASSERT(r != NULL && r->type == REDIS_REPLY_INTEGER);
    /* Approximate trimming keeps at least MAXLEN and never lets the stream grow with the
     * number of events written. */
    ASSERT(r->integer >= BROKER_EVENTS_MAXLEN);
    ASSERT(r->integer < total / 2 + BROKER_EVENTS_MAXLEN / 2);
    freeReplyObject(r);
    redisFree(c);
    test_redis_stop(&server);
}
