/*
 * test_workerctl_dead.c - `workerctl dead list | requeue | drop` against a real
 * redis-server, on dead-letter entries written by hand in the shape broker_result.h
 * documents.
 */
#include "ctlrun.h"
#include "e2e.h"
#include "testlib.h"

#include <stdio.h>
#include <string.h>

/* ---- dead letters -------------------------------------------------------------------- */

/* Three entries, newest first: index 0 "d3" (a poison pill), 1 "d2" (cut), 2 "d1". */
static void fill_dead(ctlrun_env *e) {
    ctlrun_redis(e, "LPUSH %s %s", "workerd:dead",
                 "{\"message\":\"{\\\"id\\\":\\\"d1\\\",\\\"task\\\":\\\"echo\\\"}\",\"reason\":"
                 "\"r1\",\"id\":\"d1\",\"queue\":\"q1\",\"time\":1}",
                 NULL);
    ctlrun_redis(e, "LPUSH %s %s", "workerd:dead",
                 "{\"message\":\"{\\\"id\\\":\\\"d2\",\"truncated\":true,\"reason\":\"r2\",\"id\":"
                 "\"d2\"}",
                 NULL);
    ctlrun_redis(
        e, "LPUSH %s %s", "workerd:dead",
        "{\"message\":\"{\\\"id\\\":\\\"d3\\\",\\\"task\\\":\\\"echo\\\",\\\"redelivered\\\""
        ":6}\",\"reason\":\"poison pill: redelivered 6 times\",\"id\":\"d3\"}",
        NULL);
}

TEST(dead_list_shows_entries_newest_first) {
    ctlrun_env e;
    ctlrun_env_start(&e);
    fill_dead(&e);
    ctlrun r;
    CTL_RUN(&r, "-b", e.url, "dead", "list", "--json", "--limit", "2");
    ASSERT_EQ(r.code, 0);
    json_t *doc = ctlrun_json(&r);
    ASSERT_EQ(e2e_jnum(doc, "total"), 3);
    json_t *entries = json_object_get(doc, "entries");
    ASSERT_EQ(json_array_size(entries), 2);
    ASSERT_EQ(e2e_jnum(json_array_get(entries, 0), "index"), 0);
    ASSERT_STREQ(e2e_jstr(json_array_get(entries, 0), "id"), "d3");
    json_decref(doc);
    ctlrun_free(&r);
    CTL_RUN(&r, "-b", e.url, "--json", "dead", "list"); /* shared option before the command */
    ASSERT_EQ(r.code, 0);
    doc = ctlrun_json(&r);
    ASSERT_EQ(json_array_size(json_object_get(doc, "entries")), 3);
    json_decref(doc);
    ctlrun_free(&r);
    CTL_RUN(&r, "-b", e.url, "dead", "list");
    ASSERT(strstr(r.out, "poison pill") != NULL);
    ctlrun_free(&r);
    ctlrun_env_end(&e);
}

TEST(dead_requeue_pushes_the_message_back_with_a_fresh_count) {
    ctlrun_env e;
    ctlrun_env_start(&e);
    fill_dead(&e);
    ctlrun r;
    CTL_RUN(&r, "-b", e.url, "dead", "requeue", "0", "2");
    ASSERT_EQ(r.code, 0);
    ASSERT_EQ(e2e_int(e.c, "LLEN workerd:dead"), 1);
    json_t *m = ctlrun_list(&e, "workerd:queue:default", 0);
    ASSERT_STREQ(e2e_jstr(m, "id"), "d3");
    ASSERT_EQ(e2e_jnum(m, "redelivered"), 0);
    json_decref(m);
    m = ctlrun_list(&e, "workerd:queue:q1", 0);
    ASSERT_STREQ(e2e_jstr(m, "id"), "d1");
    json_decref(m);
    ctlrun_free(&r);
    ctlrun_env_end(&e);
}

TEST(dead_requeue_refuses_a_cut_message) {
    ctlrun_env e;
    ctlrun_env_start(&e);
    fill_dead(&e);
    ctlrun r;
    CTL_RUN(&r, "-b", e.url, "dead", "requeue", "--all", "--json");
    ASSERT_EQ(r.code, 1);
    json_t *doc = ctlrun_json(&r);
    ASSERT_EQ(json_array_size(json_object_get(doc, "requeued")), 2);
    json_t *skipped = json_object_get(doc, "skipped");
    ASSERT_EQ(json_array_size(skipped), 1);
    ASSERT_STREQ(e2e_jstr(json_array_get(skipped, 0), "id"), "d2");
    json_decref(doc);
    ASSERT_EQ(e2e_int(e.c, "LLEN workerd:dead"), 1);
    ctlrun_free(&r);
    ctlrun_env_end(&e);
}

TEST(dead_drop_by_index_and_all) {
    ctlrun_env e;
    ctlrun_env_start(&e);
    fill_dead(&e);
    ctlrun r;
    CTL_RUN(&r, "-b", e.url, "dead", "drop", "1");
    ASSERT_EQ(r.code, 0);
    ASSERT(strstr(r.out, "dropped 1 dead letter") != NULL);
    ASSERT_EQ(e2e_int(e.c, "LLEN workerd:dead"), 2);
    ctlrun_free(&r);
    CTL_RUN(&r, "-b", e.url, "dead", "drop", "--all", "--json");
    ASSERT_EQ(r.code, 0);
    json_t *doc = ctlrun_json(&r);
    ASSERT_EQ(e2e_jnum(doc, "dropped"), 2);
    json_decref(doc);
    ASSERT_EQ(e2e_int(e.c, "EXISTS workerd:dead"), 0);
    ctlrun_free(&r);
    ctlrun_env_end(&e);
}

TEST(dead_bad_index_changes_nothing) {
    ctlrun_env e;
    ctlrun_env_start(&e);
    fill_dead(&e);
    ctlrun r;
    CTL_RUN(&r, "-b", e.url, "dead", "drop", "0", "7");
    ASSERT_EQ(r.code, 1);
    ASSERT(strstr(r.err, "index 7") != NULL);
    ASSERT_EQ(e2e_int(e.c, "LLEN workerd:dead"), 3);
    ctlrun_free(&r);
    ctlrun_env_end(&e);
}
