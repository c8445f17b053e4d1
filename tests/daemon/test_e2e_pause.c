/*
 * test_e2e_pause.c - pausing a queue through the real workerd and workerctl binaries and a
 * real redis-server: a paused queue's messages stay queued while another queue's run,
 * `workerctl resume` runs every one of them exactly once (the books balance over two
 * workers), a message pushed after the pause to a worker idle-blocked on that queue (its
 * waker's BLMOVE already waiting) does not run, and workerctl's pause, resume and paused
 * say what they did, in text and in --json.
 */
#include "books.h"
#include "ctlrun.h"
#include "e2e.h"
#include "testlib.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { N = 10 };

/* Push echo messages <prefix>1..<prefix>n onto queue. */
static void push_n(redisContext *c, const char *queue, const char *prefix, int n) {
    for (int i = 1; i <= n; i++) {
        char id[32];
        snprintf(id, sizeof id, "%s%d", prefix, i);
        e2e_push_task(c, queue, id, "echo", "[1]");
    }
}

static void ctl_ok(ctlrun_env *e, const char *verb, const char *queue, const char *says) {
    ctlrun cr;
    CTL_RUN(&cr, "-b", e->url, verb, queue);
    ASSERT_EQ(cr.code, 0);
    ASSERT(strstr(cr.out, says) != NULL);
    ctlrun_free(&cr);
}

/* True when some client of the Redis is blocked in a BLMOVE (a worker's idle waker). */
static bool a_blmove_waits(redisContext *c) {
    redisReply *r = redisCommand(c, "CLIENT LIST");
    ASSERT(r != NULL && r->type == REDIS_REPLY_STRING);
    bool found = false;
    for (char *line = r->str; line && *line && !found;) {
        char *end = strchr(line, '\n');
        if (end)
            *end = '\0';
        found = strstr(line, " flags=b ") != NULL && strstr(line, " cmd=blmove ") != NULL;
        line = end ? end + 1 : NULL;
    }
    freeReplyObject(r);
    return found;
}

TEST(a_paused_queue_waits_while_another_runs_and_resume_runs_each_message_once) {
    ctlrun_env e;
    ctlrun_env_start(&e);
    e2e_worker w2;
    /* "slow" first: a worker that took from it regardless would take its messages before
     * any of "fast"'s. */
    E2E_START_READY(&e.w, e.redis.port, "-Q", "slow,fast", "-c", "4", "-l", "debug");
    E2E_START_READY(&w2, e.redis.port, "-Q", "slow,fast", "-c", "4", "-l", "debug");
    ctl_ok(&e, "pause", "slow",
           "paused queue 'slow': no worker takes from it until `workerctl resume`");
    ctl_ok(&e, "pause", "slow", "queue 'slow' was paused already");

    ctlrun cr;
    CTL_RUN(&cr, "-b", e.url, "paused");
    ASSERT_EQ(cr.code, 0);
    ASSERT_STREQ(cr.out, "slow\n");
    ctlrun_free(&cr);
    CTL_RUN(&cr, "-b", e.url, "paused", "--json");
    json_t *list = ctlrun_json(&cr);
    ASSERT(json_is_array(list) && json_array_size(list) == 1);
    ASSERT_STREQ(json_string_value(json_array_get(list, 0)), "slow");
    json_decref(list);
    ctlrun_free(&cr);

    books *b = books_new();
    books_ids(b, "s-", 1, N, "SUCCESS");
    books_ids(b, "f-", 1, N, "SUCCESS");
    books_log(b, e.w.log);
    books_log(b, w2.log);
    push_n(e.c, "slow", "s-", N);
    push_n(e.c, "fast", "f-", N);
    for (int i = 1; i <= N; i++) {
        char id[32];
        snprintf(id, sizeof id, "f-%d", i);
        json_t *res = e2e_wait_result(e.c, id, "SUCCESS", TEST_NEVER);
        ASSERT(res != NULL);
        json_decref(res);
    }
    /* Every message of "fast" ran, none of "slow": all still queued, none held. */
    ASSERT_EQ(e2e_int(e.c, "LLEN workerd:queue:slow"), N);
    ASSERT_EQ(e2e_count_keys(e.c, "workerd:result:s-*"), 0);
    ASSERT_EQ(e2e_count_keys(e.c, "workerd:landing:*"), 0);
    ASSERT_EQ(e2e_count_keys(e.c, "workerd:inflight:*"), 0);

    ctl_ok(&e, "resume", "slow", "resumed queue 'slow': the workers take from it again");
    ctl_ok(&e, "resume", "slow", "queue 'slow' was not paused");
    CTL_RUN(&cr, "-b", e.url, "paused");
    ASSERT_STREQ(cr.out, "no queue is paused\n");
    ctlrun_free(&cr);
    ASSERT(books_wait_done(b, e.c, TEST_NEVER));
    books_check(b, e.c);
    books_totals t = books_get_totals(b);
    ASSERT_EQ(t.executions, 2 * N);
    ASSERT_EQ(t.duplicates, 0);
    books_free(b);
    e2e_worker_signal(&w2, SIGTERM);
    ASSERT_EQ(e2e_worker_wait(&w2, 30.0), 0);
    e2e_worker_stop(&w2);
    ctlrun_env_end(&e);
}

TEST(a_message_pushed_after_the_pause_to_an_idle_blocked_worker_does_not_run) {
    ctlrun_env e;
    ctlrun_env_start(&e);
    E2E_START_READY(&e.w, e.redis.port, "-Q", "q");
    /* The worker is idle: its waker's BLMOVE on q is waiting in Redis. */
    ASSERT_WITHIN(a_blmove_waits(e.c), TEST_SOON);
    ctl_ok(&e, "pause", "q", "paused queue 'q'");
    long long fetches = e2e_command_calls(e.c, "evalsha");
    e2e_push_task(e.c, "q", "late", "echo", "[1]");
    /* The waiting BLMOVE may take it into the worker's landing list; the next fetch puts it
     * back. Two fetches later it is queued, held by nobody, and has not run. */
    ASSERT_WITHIN(e2e_command_calls(e.c, "evalsha") >= fetches + 3, TEST_NEVER);
    ASSERT_WITHIN(e2e_int(e.c, "LLEN workerd:queue:q") == 1, TEST_NEVER);
    fetches = e2e_command_calls(e.c, "evalsha");
    ASSERT_WITHIN(e2e_command_calls(e.c, "evalsha") >= fetches + 2, TEST_NEVER);
    ASSERT_EQ(e2e_int(e.c, "LLEN workerd:queue:q"), 1);
    ASSERT_EQ(e2e_count_keys(e.c, "workerd:landing:*"), 0);
    ASSERT_EQ(e2e_count_keys(e.c, "workerd:result:late"), 0);

    ctlrun cr;
    CTL_RUN(&cr, "-b", e.url, "resume", "q", "--json");
    ASSERT_EQ(cr.code, 0);
    json_t *j = ctlrun_json(&cr);
    ASSERT_STREQ(e2e_jstr(j, "queue"), "q");
    ASSERT(json_is_false(json_object_get(j, "paused")));
    ASSERT(json_is_true(json_object_get(j, "changed")));
    json_decref(j);
    ctlrun_free(&cr);
    json_t *res = e2e_wait_result(e.c, "late", "SUCCESS", TEST_NEVER);
    ASSERT(res != NULL);
    json_decref(res);
    ASSERT_EQ(e2e_int(e.c, "LLEN workerd:queue:q"), 0);
    ctlrun_env_end(&e);
}

TEST(an_idle_worker_does_not_block_on_a_paused_queue) {
    ctlrun_env e;
    ctlrun_env_start(&e);
    E2E_START_READY(&e.w, e.redis.port, "-Q", "q");
    ASSERT_WITHIN(a_blmove_waits(e.c), TEST_SOON);
    ctl_ok(&e, "pause", "q", "paused queue 'q'");
    /* The BLMOVE that was waiting times out, and no other starts: over the next three
     * fetches (the idle fetcher's, one a second; a BLMOVE waits 2 s) none ended. */
    ASSERT_WITHIN(!a_blmove_waits(e.c), TEST_NEVER);
    long long blmoves = e2e_command_calls(e.c, "blmove");
    long long fetches = e2e_command_calls(e.c, "evalsha");
    ASSERT_WITHIN(e2e_command_calls(e.c, "evalsha") >= fetches + 3, TEST_NEVER);
    ASSERT_EQ(e2e_command_calls(e.c, "blmove"), blmoves);
    ASSERT(!a_blmove_waits(e.c));
    /* Resumed, it blocks on q again. */
    ctl_ok(&e, "resume", "q", "resumed queue 'q'");
    ASSERT_WITHIN(a_blmove_waits(e.c), TEST_NEVER);
    ctlrun_env_end(&e);
}

TEST(a_paused_key_that_is_not_a_set_pauses_nothing) {
    ctlrun_env e;
    ctlrun_env_start(&e);
    ctlrun_redis(&e, "SET workerd:paused %s", "q", NULL, NULL);
    E2E_START_READY(&e.w, e.redis.port, "-Q", "q");
    e2e_push_task(e.c, "q", "runs", "echo", "[1]");
    json_t *res = e2e_wait_result(e.c, "runs", "SUCCESS", TEST_NEVER);
    ASSERT(res != NULL);
    json_decref(res);
    ASSERT_EQ(e2e_log_count(&e.w, "fetching messages failed"), 0);
    ctlrun_env_end(&e);
}

TEST(workerctl_pause_refuses_a_bad_name_and_takes_a_celery_queue) {
    ctlrun_env e;
    ctlrun_env_start(&e);
    ctlrun cr;
    CTL_RUN(&cr, "-b", e.url, "pause", "a b");
    ASSERT_EQ(cr.code, 2);
    ASSERT(strstr(cr.err, "whitespace") != NULL);
    ctlrun_free(&cr);
    CTL_RUN(&cr, "-b", e.url, "pause");
    ASSERT_EQ(cr.code, 2);
    ctlrun_free(&cr);
    CTL_RUN(&cr, "-b", e.url, "pause", "=celery", "--json");
    ASSERT_EQ(cr.code, 0);
    json_t *j = ctlrun_json(&cr);
    ASSERT_STREQ(e2e_jstr(j, "queue"), "=celery");
    ASSERT(json_is_true(json_object_get(j, "paused")));
    json_decref(j);
    ctlrun_free(&cr);
    ASSERT_EQ(e2e_int(e.c, "SISMEMBER workerd:paused =celery"), 1);
    ctlrun_env_end(&e);
}
