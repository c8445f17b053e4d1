/*
 * test_workerctl.c - the real workerctl binary against a real redis-server, and a real
 * workerd where a worker must run the task: call, result, workers, inspect, queues, stats,
 * purge, revoke, the settings, and the exit codes (0 ok, 1 failed / not found, 2 usage,
 * 3 Redis unreachable, 4 --wait timed out). The dead-letter commands are in
 * test_workerctl_dead.c.
 *
 * Most tests build the Redis state by hand (the keys README.md documents), run one command
 * and look at what a user sees: the exit code, stdout (parsed with jansson for --json),
 * stderr, and the keys afterwards.
 */
#include "ctlrun.h"
#include "e2e.h"
#include "testlib.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- call and result, with a real worker --------------------------------------------- */

TEST(call_wait_prints_the_success_result) {
    ctlrun_env e;
    ctlrun_env_start(&e);
    E2E_START_READY(&e.w, e.redis.port);
    ctlrun r;
    CTL_RUN(&r, "-b", e.url, "call", "echo", "1", "two", "--wait", "20");
    ASSERT_EQ(r.code, 0);
    ASSERT(strstr(r.out, "SUCCESS") != NULL);
    ASSERT(strstr(r.out, "[1,\"two\"]") != NULL);
    ctlrun_free(&r);
    ctlrun_env_end(&e);
}

TEST(call_wait_json_is_the_result_document) {
    ctlrun_env e;
    ctlrun_env_start(&e);
    E2E_START_READY(&e.w, e.redis.port);
    ctlrun r;
    CTL_RUN(&r, "call", "echo", "-5", "{\"a\":[true,null]}", "x y", "--id", "job-7", "-b", e.url,
            "--json", "--wait=20");
    ASSERT_EQ(r.code, 0);
    json_t *doc = ctlrun_json(&r);
    ASSERT_STREQ(e2e_jstr(doc, "id"), "job-7");
    ASSERT_STREQ(e2e_jstr(doc, "status"), "SUCCESS");
    json_t *want = json_loads("[-5,{\"a\":[true,null]},\"x y\"]", 0, NULL);
    ASSERT(json_equal(json_object_get(doc, "result"), want));
    json_decref(want);
    json_decref(doc);
    ctlrun_free(&r);
    ctlrun_env_end(&e);
}

TEST(call_wait_failure_exits_1) {
    ctlrun_env e;
    ctlrun_env_start(&e);
    E2E_START_READY(&e.w, e.redis.port);
    ctlrun r;
    CTL_RUN(&r, "-b", e.url, "--json", "call", "fail", "boom", "--wait", "20");
    ASSERT_EQ(r.code, 1);
    json_t *doc = ctlrun_json(&r);
    ASSERT_STREQ(e2e_jstr(doc, "status"), "FAILURE");
    ASSERT_STREQ(e2e_jerror(doc), "boom");
    json_decref(doc);
    ctlrun_free(&r);
    ctlrun_env_end(&e);
}

TEST(result_of_a_finished_task_and_its_wait) {
    ctlrun_env e;
    ctlrun_env_start(&e);
    E2E_START_READY(&e.w, e.redis.port);
    ctlrun r;
    CTL_RUN(&r, "-b", e.url, "call", "echo", "3", "--id", "done-1", "--wait", "20");
    ASSERT_EQ(r.code, 0);
    ctlrun_free(&r);
    CTL_RUN(&r, "-b", e.url, "result", "done-1", "--json");
    ASSERT_EQ(r.code, 0);
    json_t *doc = ctlrun_json(&r);
    ASSERT_STREQ(e2e_jstr(doc, "status"), "SUCCESS");
    json_decref(doc);
    ctlrun_free(&r);
    /* Waiting for a result that is already stored returns at once (the GET). */
    double t0 = test_now();
    CTL_RUN(&r, "-b", e.url, "result", "done-1", "--wait", "20");
    ASSERT_EQ(r.code, 0);
    ASSERT(test_now() - t0 < 10.0);
    ASSERT(strstr(r.out, "SUCCESS") != NULL);
    ctlrun_free(&r);
    ctlrun_env_end(&e);
}

TEST(inspect_shows_a_running_task) {
    ctlrun_env e;
    ctlrun_env_start(&e);
    E2E_START_READY(&e.w, e.redis.port);
    ctlrun r;
    CTL_RUN(&r, "-b", e.url, "call", "sleep", "3", "--id", "nap-1");
    ASSERT_EQ(r.code, 0);
    ASSERT_STREQ(r.out, "nap-1\n");
    ctlrun_free(&r);
    bool seen = false;
    for (double end = test_now() + 10; !seen && test_now() < end; usleep(50000)) {
        CTL_RUN(&r, "-b", e.url, "inspect");
        ASSERT_EQ(r.code, 0);
        seen = strstr(r.out, "nap-1") != NULL && strstr(r.out, "sleep") != NULL;
        ctlrun_free(&r);
    }
    ASSERT(seen);
    ctlrun_env_end(&e);
}

TEST(workers_lists_a_live_worker_with_its_heartbeat) {
    ctlrun_env e;
    ctlrun_env_start(&e);
    E2E_START_READY(&e.w, e.redis.port, "-c", "3", "-Q", "high,default");
    ctlrun r;
    CTL_RUN(&r, "-b", e.url, "workers", "--json");
    ASSERT_EQ(r.code, 0);
    json_t *list = ctlrun_json(&r);
    ASSERT_EQ(json_array_size(list), 1);
    json_t *w = json_array_get(list, 0);
    ASSERT(json_is_true(json_object_get(w, "alive")));
    ASSERT_EQ(e2e_jnum(w, "pid"), e.w.pid);
    ASSERT_EQ(e2e_jnum(w, "concurrency"), 3);
    ASSERT_EQ(e2e_jnum(w, "held"), 0);
    ASSERT_STREQ(e2e_jstr(w, "pool"), "green");
    ASSERT_STREQ(json_string_value(json_array_get(json_object_get(w, "queues"), 0)), "high");
    ASSERT_STREQ(json_string_value(json_array_get(json_object_get(w, "queues"), 1)), "default");
    json_decref(list);
    ctlrun_free(&r);
    CTL_RUN(&r, "-b", e.url, "workers");
    ASSERT_EQ(r.code, 0);
    ASSERT(strstr(r.out, "alive") != NULL && strstr(r.out, "high,default") != NULL);
    ctlrun_free(&r);
    ctlrun_env_end(&e);
}

/* ---- call and result, against Redis alone -------------------------------------------- */

TEST(call_pushes_the_message_and_prints_its_id) {
    ctlrun_env e;
    ctlrun_env_start(&e);
    ctlrun r;
    CTL_RUN(&r, "-b", e.url, "call", "echo", "1", "true", "word", "-q", "high", "--kwargs",
            "{\"k\":2}");
    ASSERT_EQ(r.code, 0);
    ASSERT_EQ(strlen(r.out), 37); /* a UUID and a newline */
    json_t *m = ctlrun_list(&e, "workerd:queue:high", 0);
    r.out[36] = '\0';
    ASSERT_STREQ(e2e_jstr(m, "id"), r.out);
    ASSERT_STREQ(e2e_jstr(m, "task"), "echo");
    json_t *want = json_loads("[1,true,\"word\"]", 0, NULL);
    ASSERT(json_equal(json_object_get(m, "args"), want));
    json_decref(want);
    ASSERT_EQ(json_integer_value(json_object_get(json_object_get(m, "kwargs"), "k")), 2);
    json_decref(m);
    ctlrun_free(&r);
    ctlrun_env_end(&e);
}

TEST(call_args_option_and_json_output) {
    ctlrun_env e;
    ctlrun_env_start(&e);
    ctlrun r;
    CTL_RUN(&r, "-b", e.url, "--json", "call", "add", "--args", "[1,[2]]", "--id", "a-1");
    ASSERT_EQ(r.code, 0);
    json_t *doc = ctlrun_json(&r);
    ASSERT_STREQ(e2e_jstr(doc, "id"), "a-1");
    ASSERT_STREQ(e2e_jstr(doc, "queue"), "default");
    json_decref(doc);
    json_t *m = ctlrun_list(&e, "workerd:queue:default", 0);
    json_t *want = json_loads("[1,[2]]", 0, NULL);
    ASSERT(json_equal(json_object_get(m, "args"), want));
    json_decref(want);
    json_decref(m);
    ctlrun_free(&r);
    ctlrun_env_end(&e);
}

TEST(call_wait_times_out_with_exit_4) {
    ctlrun_env e;
    ctlrun_env_start(&e);
    ctlrun r;
    double t0 = test_now();
    CTL_RUN(&r, "-b", e.url, "call", "echo", "--wait", "0.5");
    double took = test_now() - t0;
    ASSERT_EQ(r.code, 4);
    ASSERT_RANGE(took, 0.4, 15.0);
    ASSERT(strstr(r.err, "no final result") != NULL);
    ctlrun_free(&r);
    ctlrun_env_end(&e);
}

/* A waiter subscribed before the push: a STARTED publication does not end the wait, the
 * SUCCESS one does (published only, never stored: the subscription delivered it). */
TEST(call_wait_skips_started_and_takes_the_published_result) {
    ctlrun_env e;
    ctlrun_env_start(&e);
    ctlrun r;
    CTL_START(&r, "-b", e.url, "--json", "call", "echo", "--id", "pub-1", "--wait", "20");
    ASSERT_WITHIN(e2e_int(e.c, "LLEN workerd:queue:default") == 1, 10.0);
    /* A waiter that stopped at STARTED would print it (and the SUCCESS below would reach
     * nobody): the document it prints says which one ended the wait. */
    ctlrun_redis(&e, "PUBLISH %s %s", "workerd:result:pub-1",
                 "{\"id\":\"pub-1\",\"status\":\"STARTED\"}", NULL);
    ctlrun_redis(&e, "PUBLISH %s %s", "workerd:result:pub-1",
                 "{\"id\":\"pub-1\",\"status\":\"SUCCESS\",\"result\":[]}", NULL);
    ctlrun_finish(&r, 10.0);
    ASSERT_EQ(r.code, 0);
    json_t *doc = ctlrun_json(&r);
    ASSERT_STREQ(e2e_jstr(doc, "status"), "SUCCESS");
    json_decref(doc);
    ctlrun_free(&r);
    ctlrun_env_end(&e);
}

/* A result stored without a publication is still found (the GET fallback). */
TEST(result_wait_finds_a_stored_result_without_publication) {
    ctlrun_env e;
    ctlrun_env_start(&e);
    ctlrun r;
    CTL_START(&r, "-b", e.url, "result", "quiet-1", "--wait", "20");
    /* Stored once the waiter has subscribed and made its first GET, so that only the
     * fallback GET can find it. */
    ASSERT_WITHIN(e2e_command_calls(e.c, "get") >= 1, 10.0);
    ctlrun_redis(&e, "SET %s %s", "workerd:result:quiet-1",
                 "{\"id\":\"quiet-1\",\"status\":\"FAILURE\",\"error\":{\"type\":\"X\"}}", NULL);
    ctlrun_finish(&r, 10.0);
    ASSERT_EQ(r.code, 1);
    ASSERT(strstr(r.out, "FAILURE") != NULL);
    ctlrun_free(&r);
    ctlrun_env_end(&e);
}

TEST(result_of_an_unknown_id_exits_1) {
    ctlrun_env e;
    ctlrun_env_start(&e);
    ctlrun r;
    CTL_RUN(&r, "-b", e.url, "result", "nobody");
    ASSERT_EQ(r.code, 1);
    ASSERT_STREQ(r.out, "");
    ASSERT(strstr(r.err, "no result for 'nobody'") != NULL);
    ctlrun_free(&r);
    ctlrun_env_end(&e);
}

/* ---- workers, inspect, queues, stats ------------------------------------------------- */

/* A registered worker without a heartbeat (dead), holding two messages. */
static void fake_dead_worker(ctlrun_env *e) {
    ctlrun_redis(e, "HSET %s %s %s", "workerd:workers", "ghost:1:ab", "default");
    ctlrun_redis(e, "HSET %s %s %s", "workerd:inflight:ghost:1:ab", "12",
                 "default\n{\"id\":\"m-12\",\"task\":\"sleep\"}");
    ctlrun_redis(e, "HSET %s %s %s", "workerd:inflight:ghost:1:ab", "9",
                 "default\n{\"id\":\"m-9\",\"task\":\"echo\"}");
}

TEST(workers_shows_a_dead_worker_and_what_it_holds) {
    ctlrun_env e;
    ctlrun_env_start(&e);
    fake_dead_worker(&e);
    ctlrun r;
    CTL_RUN(&r, "-b", e.url, "workers", "--json");
    ASSERT_EQ(r.code, 0);
    json_t *list = ctlrun_json(&r);
    ASSERT_EQ(json_array_size(list), 1);
    json_t *w = json_array_get(list, 0);
    ASSERT_STREQ(e2e_jstr(w, "id"), "ghost:1:ab");
    ASSERT(json_is_false(json_object_get(w, "alive")));
    ASSERT_EQ(e2e_jnum(w, "held"), 2);
    json_decref(list);
    ctlrun_free(&r);
    ctlrun_env_end(&e);
}

TEST(inspect_lists_in_flight_messages_in_tag_order) {
    ctlrun_env e;
    ctlrun_env_start(&e);
    fake_dead_worker(&e);
    ctlrun r;
    CTL_RUN(&r, "-b", e.url, "inspect", "--json");
    ASSERT_EQ(r.code, 0);
    json_t *list = ctlrun_json(&r);
    ASSERT_EQ(json_array_size(list), 2);
    json_t *first = json_array_get(list, 0);
    ASSERT_EQ(e2e_jnum(first, "tag"), 9);
    ASSERT_STREQ(e2e_jstr(first, "id"), "m-9");
    ASSERT_STREQ(e2e_jstr(first, "task"), "echo");
    ASSERT_STREQ(e2e_jstr(first, "queue"), "default");
    ASSERT_STREQ(e2e_jstr(first, "worker"), "ghost:1:ab");
    ASSERT_STREQ(e2e_jstr(json_array_get(list, 1), "id"), "m-12");
    json_decref(list);
    ctlrun_free(&r);
    CTL_RUN(&r, "-b", e.url, "inspect");
    ASSERT(strstr(r.out, "m-12") != NULL && strstr(r.out, "(dead)") != NULL);
    ctlrun_free(&r);
    ctlrun_env_end(&e);
}

/* Pending messages in two queues, one in another prefix, a non-list key, two dead letters. */
static void fill_queues(ctlrun_env *e) {
    for (int i = 0; i < 3; i++)
        e2e_push_task(e->c, "alpha", "q-a", "echo", "[]");
    e2e_push_task(e->c, "beta", "q-b", "echo", "[]");
    ctlrun_redis(e, "LPUSH %s %s", "other:queue:alpha", "{}", NULL);
    ctlrun_redis(e, "SET %s %s", "workerd:queue:notalist", "x", NULL);
    ctlrun_redis(e, "LPUSH %s %s %s", "workerd:dead", "{}", "{}");
}

TEST(queues_counts_pending_and_dead_letters) {
    ctlrun_env e;
    ctlrun_env_start(&e);
    fill_queues(&e);
    ctlrun r;
    CTL_RUN(&r, "-b", e.url, "queues", "--json");
    ASSERT_EQ(r.code, 0);
    json_t *doc = ctlrun_json(&r);
    json_t *qs = json_object_get(doc, "queues");
    ASSERT_EQ(json_array_size(qs), 2);
    ASSERT_STREQ(e2e_jstr(json_array_get(qs, 0), "name"), "alpha");
    ASSERT_EQ(e2e_jnum(json_array_get(qs, 0), "pending"), 3);
    ASSERT_STREQ(e2e_jstr(json_array_get(qs, 1), "name"), "beta");
    ASSERT_EQ(e2e_jnum(json_array_get(qs, 1), "pending"), 1);
    ASSERT_EQ(e2e_jnum(doc, "dead"), 2);
    json_decref(doc);
    ctlrun_free(&r);
    /* Another prefix sees its own keys only. */
    CTL_RUN(&r, "-b", e.url, "--prefix", "other", "queues");
    ASSERT_EQ(r.code, 0);
    ASSERT(strstr(r.out, "alpha") != NULL && strstr(r.out, "beta") == NULL);
    ctlrun_free(&r);
    ctlrun_env_end(&e);
}

TEST(stats_totals) {
    ctlrun_env e;
    ctlrun_env_start(&e);
    fill_queues(&e);
    fake_dead_worker(&e);
    ctlrun r;
    CTL_RUN(&r, "-b", e.url, "stats", "--json");
    ASSERT_EQ(r.code, 0);
    json_t *doc = ctlrun_json(&r);
    ASSERT_EQ(e2e_jnum(doc, "queues"), 3); /* alpha, beta and the dead worker's default */
    ASSERT_EQ(e2e_jnum(doc, "pending"), 4);
    ASSERT_EQ(e2e_jnum(doc, "in_flight"), 2);
    ASSERT_EQ(e2e_jnum(doc, "workers_alive"), 0);
    ASSERT_EQ(e2e_jnum(doc, "workers_dead"), 1);
    ASSERT_EQ(e2e_jnum(doc, "dead_letters"), 2);
    json_decref(doc);
    ctlrun_free(&r);
    CTL_RUN(&r, "-b", e.url, "stats");
    ASSERT(strstr(r.out, "in flight") != NULL);
    ctlrun_free(&r);
    ctlrun_env_end(&e);
}

/* ---- purge and revoke ---------------------------------------------------------------- */

TEST(purge_without_yes_changes_nothing) {
    ctlrun_env e;
    ctlrun_env_start(&e);
    fill_queues(&e);
    ctlrun r;
    CTL_RUN(&r, "-b", e.url, "purge", "alpha");
    ASSERT_EQ(r.code, 2);
    ASSERT(strstr(r.err, "3 messages") != NULL);
    ASSERT_EQ(e2e_int(e.c, "LLEN workerd:queue:alpha"), 3);
    ctlrun_free(&r);
    ctlrun_env_end(&e);
}

TEST(purge_yes_deletes_the_queue_and_counts) {
    ctlrun_env e;
    ctlrun_env_start(&e);
    fill_queues(&e);
    ctlrun r;
    CTL_RUN(&r, "-b", e.url, "purge", "alpha", "--yes", "--json");
    ASSERT_EQ(r.code, 0);
    json_t *doc = ctlrun_json(&r);
    ASSERT_EQ(e2e_jnum(doc, "removed"), 3);
    json_decref(doc);
    ASSERT_EQ(e2e_int(e.c, "EXISTS workerd:queue:alpha"), 0);
    ASSERT_EQ(e2e_int(e.c, "LLEN workerd:queue:beta"), 1);
    ctlrun_free(&r);
    ctlrun_env_end(&e);
}

TEST(revoke_removes_the_pending_message_and_stores_revoked) {
    ctlrun_env e;
    ctlrun_env_start(&e);
    e2e_push_task(e.c, "default", "keep", "echo", "[]");
    e2e_push_task(e.c, "default", "gone", "echo", "[\"gone\"]");
    e2e_push_task(e.c, "low", "gone", "echo", "[]");
    ctlrun r;
    CTL_RUN(&r, "-b", e.url, "revoke", "gone", "--json");
    ASSERT_EQ(r.code, 0);
    json_t *doc = ctlrun_json(&r);
    ASSERT_EQ(e2e_jnum(doc, "removed"), 2);
    ASSERT(json_is_true(json_object_get(doc, "result")));
    json_decref(doc);
    ASSERT_EQ(e2e_int(e.c, "LLEN workerd:queue:default"), 1);
    ASSERT_EQ(e2e_int(e.c, "EXISTS workerd:queue:low"), 0);
    ASSERT_RANGE(e2e_int(e.c, "TTL workerd:revoked:gone"), 86000, 86400);
    json_t *res = e2e_result(e.c, "gone");
    ASSERT_STREQ(e2e_jstr(res, "status"), "REVOKED");
    ASSERT_STREQ(e2e_jstr(res, "task"), "echo");
    json_decref(res);
    ctlrun_free(&r);
    ctlrun_env_end(&e);
}

/* The REVOKED result is published: a waiter ends with exit 1. */
TEST(revoke_ends_a_waiting_call) {
    ctlrun_env e;
    ctlrun_env_start(&e);
    ctlrun w, r;
    CTL_START(&w, "-b", e.url, "call", "echo", "--id", "wait-1", "--wait", "20");
    ASSERT_WITHIN(e2e_int(e.c, "LLEN workerd:queue:default") == 1, 10.0);
    CTL_RUN(&r, "-b", e.url, "revoke", "wait-1");
    ASSERT_EQ(r.code, 0);
    ctlrun_finish(&w, 10.0);
    ASSERT_EQ(w.code, 1);
    ASSERT(strstr(w.out, "REVOKED") != NULL);
    ctlrun_free(&r);
    ctlrun_free(&w);
    ctlrun_env_end(&e);
}

TEST(revoke_of_a_held_message_names_the_worker) {
    ctlrun_env e;
    ctlrun_env_start(&e);
    fake_dead_worker(&e);
    ctlrun r;
    CTL_RUN(&r, "-b", e.url, "--json", "revoke", "m-12");
    ASSERT_EQ(r.code, 0);
    json_t *doc = ctlrun_json(&r);
    ASSERT_EQ(e2e_jnum(doc, "removed"), 0);
    ASSERT_STREQ(json_string_value(json_array_get(json_object_get(doc, "running_on"), 0)),
                 "ghost:1:ab");
    json_decref(doc);
    ASSERT_EQ(e2e_int(e.c, "EXISTS workerd:result:m-12"), 0);
    ASSERT_EQ(e2e_int(e.c, "EXISTS workerd:revoked:m-12"), 1);
    ctlrun_free(&r);
    ctlrun_env_end(&e);
}

/* ---- settings, errors, usage --------------------------------------------------------- */

TEST(unreachable_redis_exits_3_without_the_password) {
    char url[128];
    snprintf(url, sizeof url, "redis://admin:s3cret@127.0.0.1:%d/0", test_free_port());
    ctlrun r;
    CTL_RUN(&r, "-b", url, "queues");
    ASSERT_EQ(r.code, 3);
    ASSERT_EQ(ctlrun_lines(r.err), 1);
    ASSERT(strstr(r.err, "cannot reach Redis") != NULL);
    ASSERT(strstr(r.err, "s3cret") == NULL && strstr(r.out, "s3cret") == NULL);
    ctlrun_free(&r);
}

TEST(wrong_password_exits_3_and_right_one_works) {
    test_redis redis;
    const char *const extra[] = {"--requirepass", "s3cret", NULL};
    test_redis_start(&redis, extra);
    char url[128];
    snprintf(url, sizeof url, "redis://:wrong-pw@127.0.0.1:%d/2", redis.port);
    ctlrun r;
    CTL_RUN(&r, "-b", url, "stats");
    ASSERT_EQ(r.code, 3);
    ASSERT_EQ(ctlrun_lines(r.err), 1);
    ASSERT(strstr(r.err, "wrong-pw") == NULL);
    ctlrun_free(&r);
    snprintf(url, sizeof url, "redis://:s3cret@127.0.0.1:%d/2", redis.port);
    CTL_RUN(&r, "-b", url, "stats");
    ASSERT_EQ(r.code, 0);
    ctlrun_free(&r);
    test_redis_stop(&redis);
}

TEST(connects_over_a_unix_socket_and_selects_the_db) {
    char *dir = test_tmpdir("ctlsock");
    char sock[4200], url[4300];
    snprintf(sock, sizeof sock, "%s/redis.sock", dir);
    const char *const extra[] = {"--unixsocket", sock, "--unixsocketperm", "700", NULL};
    test_redis redis;
    test_redis_start(&redis, extra);
    snprintf(url, sizeof url, "unix://%s?db=3", sock);
    ctlrun r;
    CTL_RUN(&r, "-b", url, "call", "echo", "--id", "u-1");
    ASSERT_EQ(r.code, 0);
    ctlrun_free(&r);
    redisContext *c = e2e_redis(redis.port);
    ASSERT_EQ(e2e_int(c, "LLEN workerd:queue:default"), 0); /* not in db 0 */
    redisReply *sel = redisCommand(c, "SELECT 3");
    ASSERT(sel != NULL && sel->type == REDIS_REPLY_STATUS);
    freeReplyObject(sel);
    ASSERT_EQ(e2e_int(c, "LLEN workerd:queue:default"), 1);
    redisFree(c);
    test_redis_stop(&redis);
    test_rmtree(dir);
    free(dir);
}

/* Results in another Redis than the queues: workerctl reads and waits there. */
TEST(result_backend_is_where_results_are_read) {
    ctlrun_env e;
    ctlrun_env_start(&e);
    test_redis results;
    test_redis_start(&results, NULL);
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/0", results.port);
    E2E_START_READY(&e.w, e.redis.port, "--result-backend", url);
    ctlrun r;
    CTL_RUN(&r, "-b", e.url, "--result-backend", url, "call", "echo", "7", "--id", "rb-1", "--wait",
            "20");
    ASSERT_EQ(r.code, 0);
    ASSERT(strstr(r.out, "SUCCESS") != NULL);
    ctlrun_free(&r);
    CTL_RUN(&r, "-b", e.url, "--result-backend", url, "result", "rb-1");
    ASSERT_EQ(r.code, 0);
    ctlrun_free(&r);
    CTL_RUN(&r, "-b", e.url, "result", "rb-1"); /* not in the broker */
    ASSERT_EQ(r.code, 1);
    ctlrun_free(&r);
    ctlrun_env_end(&e);
    test_redis_stop(&results);
}

TEST(config_file_then_environment_then_command_line) {
    ctlrun_env e;
    ctlrun_env_start(&e);
    char *dir = test_tmpdir("ctlconf");
    char path[4200], line[4400];
    snprintf(path, sizeof path, "%s/workerd.conf", dir);
    FILE *f = fopen(path, "w");
    ASSERT(f != NULL);
    fprintf(f,
            "# workerd's keys are ignored\nWORKERD_CONCURRENCY=5\nWORKERD_BROKER=%s\n"
            "WORKERD_PREFIX=fromfile\n",
            e.url);
    fclose(f);
    snprintf(line, sizeof line, "WORKERD_CONFIG=%s", path);
    const char *env1[] = {line, NULL};
    const char *args1[] = {"call", "echo", "--id", "c1", NULL};
    ctlrun r;
    CTL_RUN_ENV(&r, env1, args1);
    ASSERT_EQ(r.code, 0);
    ASSERT_EQ(e2e_int(e.c, "LLEN fromfile:queue:default"), 1);
    ctlrun_free(&r);
    const char *env2[] = {line, "WORKERD_PREFIX=fromenv", NULL};
    CTL_RUN_ENV(&r, env2, args1);
    ASSERT_EQ(e2e_int(e.c, "LLEN fromenv:queue:default"), 1);
    ctlrun_free(&r);
    const char *args3[] = {"call", "echo", "--prefix", "fromcli", NULL};
    CTL_RUN_ENV(&r, env2, args3);
    ASSERT_EQ(e2e_int(e.c, "LLEN fromcli:queue:default"), 1);
    ctlrun_free(&r);
    const char *env4[] = {"WORKERD_CONFIG=/nonexistent/workerd.conf", NULL};
    CTL_RUN_ENV(&r, env4, args1);
    ASSERT_EQ(r.code, 2);
    ASSERT(strstr(r.err, "/nonexistent/workerd.conf") != NULL);
    ctlrun_free(&r);
    test_rmtree(dir);
    free(dir);
    ctlrun_env_end(&e);
}

TEST(bad_usage_exits_2) {
    static const char *const cases[][6] = {
        {"bogus", NULL},
        {NULL},
        {"call", NULL},
        {"call", "echo", "--nope", NULL},
        {"call", "echo", "--args", "{}", NULL},
        {"call", "echo", "--kwargs", "[1]", NULL},
        {"call", "echo", "--wait=soon", NULL},
        {"call", "echo", "-q", "a,b", NULL},
        {"result", NULL},
        {"purge", NULL},
        {"dead", "list", "--limit", "0", NULL},
        {"dead", "drop", NULL},
        {"dead", "raise", NULL},
        {"queues", "-b", "http://127.0.0.1/", NULL},
        {"queues", "--json=1", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        ctlrun r;
        CTL_RUN_ENV(&r, NULL, cases[i]);
        ASSERT_EQ(r.code, 2);
        ASSERT(strncmp(r.err, "workerctl: ", 11) == 0);
        ASSERT_STREQ(r.out, "");
        ctlrun_free(&r);
    }
}

/* --wait reads seconds with the same parser as workerd's SECONDS options, and says so in
 * the same words whatever is wrong with the value. */
TEST(a_bad_wait_is_not_a_number_of_seconds) {
    static const char *const values[] = {"soon", "5s", "-1", "1e10", "nan", " 5"};
    for (size_t i = 0; i < sizeof values / sizeof *values; i++) {
        char arg[32], says[96];
        snprintf(arg, sizeof arg, "--wait=%s", values[i]);
        snprintf(says, sizeof says, "workerctl: --wait: '%s' is not a number of seconds\n",
                 values[i]);
        const char *const args[] = {"call", "echo", arg, NULL};
        ctlrun r;
        CTL_RUN_ENV(&r, NULL, args);
        ASSERT_EQ(r.code, 2);
        ASSERT(strncmp(r.err, says, strlen(says)) == 0);
        ctlrun_free(&r);
    }
}

TEST(help_and_version) {
    ctlrun r;
    CTL_RUN(&r, "--help");
    ASSERT_EQ(r.code, 0);
    static const char *const names[] = {"call",  "result", "workers", "inspect", "queues",
                                        "stats", "purge",  "revoke",  "dead"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        ASSERT(strstr(r.out, names[i]) != NULL);
    ctlrun_free(&r);
    CTL_RUN(&r, "revoke", "--help");
    ASSERT_EQ(r.code, 0);
    ASSERT(strstr(r.out, "ID...") != NULL && strstr(r.out, "--terminate") != NULL);
    ctlrun_free(&r);
    CTL_RUN(&r, "help", "dead");
    ASSERT_EQ(r.code, 0);
    ASSERT(strstr(r.out, "requeue") != NULL);
    ctlrun_free(&r);
    CTL_RUN(&r, "--version");
    ASSERT_EQ(r.code, 0);
    ASSERT(strncmp(r.out, "workerctl ", 10) == 0);
    ctlrun_free(&r);
}

/* ---- queues under a literal prefix --------------------------------------------------- */

/* The prefix is literal text: its glob characters match only themselves when workerctl
 * looks for the queues, so another prefix's queues are neither listed nor revoked from. */
TEST(queues_of_a_prefix_with_glob_characters_are_its_own) {
    ctlrun_env e;
    ctlrun_env_start(&e);
    ctlrun_redis(&e, "LPUSH %s %s", "a*:queue:mine", "{\"id\":\"g-1\",\"task\":\"echo\"}", NULL);
    ctlrun_redis(&e, "LPUSH %s %s", "ab:queue:theirs", "{\"id\":\"g-1\",\"task\":\"echo\"}", NULL);
    ctlrun r;
    CTL_RUN(&r, "-b", e.url, "--prefix", "a*", "queues", "--json");
    ASSERT_EQ(r.code, 0);
    json_t *doc = ctlrun_json(&r);
    json_t *queues = json_object_get(doc, "queues");
    ASSERT_EQ(json_array_size(queues), 1);
    ASSERT_STREQ(e2e_jstr(json_array_get(queues, 0), "name"), "mine");
    ASSERT_EQ(e2e_jnum(json_array_get(queues, 0), "pending"), 1);
    json_decref(doc);
    ctlrun_free(&r);
    CTL_RUN(&r, "-b", e.url, "--prefix", "a*", "revoke", "g-1", "--json");
    ASSERT_EQ(r.code, 0);
    doc = ctlrun_json(&r);
    ASSERT_EQ(e2e_jnum(doc, "removed"), 1);
    json_decref(doc);
    ASSERT_EQ(e2e_int(e.c, "EXISTS a*:queue:mine"), 0);
    ASSERT_EQ(e2e_int(e.c, "LLEN ab:queue:theirs"), 1);
    ASSERT_EQ(e2e_int(e.c, "EXISTS a*:revoked:g-1"), 1);
    ctlrun_free(&r);
    ctlrun_env_end(&e);
}

/* ---- revoke --terminate -------------------------------------------------------------- */

/* --terminate writes what a worker acts on: the mark "terminate" (as long as results),
 * the id in the revoked set, and an entry on the control stream that every worker reads;
 * a pending copy is taken out of its queue as without it. */
TEST(revoke_terminate_marks_and_announces_the_id) {
    ctlrun_env e;
    ctlrun_env_start(&e);
    e2e_push_task(e.c, "default", "t-1", "echo", "[]");
    ctlrun r;
    CTL_RUN(&r, "-b", e.url, "--json", "revoke", "--terminate", "t-1");
    ASSERT_EQ(r.code, 0);
    json_t *doc = ctlrun_json(&r);
    ASSERT(json_is_true(json_object_get(doc, "terminated")));
    ASSERT_EQ(e2e_jnum(doc, "removed"), 1);
    json_decref(doc);
    ctlrun_free(&r);
    char *mark = e2e_get(e.c, "workerd:revoked:t-1");
    ASSERT_STREQ(mark, "terminate");
    free(mark);
    ASSERT_RANGE(e2e_int(e.c, "TTL workerd:revoked:t-1"), 86000, 86400);
    redisReply *score = redisCommand(e.c, "ZSCORE workerd:revoked t-1");
    ASSERT(score != NULL && score->type == REDIS_REPLY_STRING);
    ASSERT_RANGE(strtod(score->str, NULL) - (double)time(NULL), 86000, 86401);
    freeReplyObject(score);
    redisReply *x = redisCommand(e.c, "XRANGE workerd:control - +");
    ASSERT(x != NULL && x->type == REDIS_REPLY_ARRAY && x->elements == 1);
    redisReply *fields = x->element[0]->element[1];
    ASSERT_STREQ(fields->element[0]->str, "terminate");
    ASSERT_STREQ(fields->element[1]->str, "t-1");
    ASSERT_STREQ(fields->element[2]->str, "until");
    freeReplyObject(x);
    ASSERT_EQ(e2e_int(e.c, "LLEN workerd:queue:default"), 0);
    /* Without --terminate: the mark "1", and the entry says revoke. */
    CTL_RUN(&r, "-b", e.url, "revoke", "t-2", "t-3");
    ASSERT_EQ(r.code, 0);
    ctlrun_free(&r);
    mark = e2e_get(e.c, "workerd:revoked:t-2");
    ASSERT_STREQ(mark, "1");
    free(mark);
    ASSERT_EQ(e2e_int(e.c, "ZCARD workerd:revoked"), 3);
    ASSERT_EQ(e2e_int(e.c, "XLEN workerd:control"), 3);
    ctlrun_env_end(&e);
}
