/*
 * test_e2e_revoke.c - revocations end to end, through the real workerd and workerctl
 * against a real redis-server: a revoked message is skipped when a worker takes it (its
 * result REVOKED "revoked", acked, counted, announced), several ids at once, across worker
 * restarts and after a SIGKILLed worker's message is recovered; --terminate stops a
 * running task wherever it runs (REVOKED "terminated"), also when the mark is set just as
 * the task starts, when the worker missed the broadcast while Redis restarted, and from
 * the mark alone (the redis-cli forms of README.md).
 */
#include "ctlrun.h"
#include "e2e.h"
#include "httpc.h"
#include "testlib.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void expect_exit(e2e_worker *w, int want, double timeout) {
    int code = e2e_worker_wait(w, timeout);
    if (code != want)
        e2e_log_dump(w);
    ASSERT_EQ(code, want);
}

/* The result of id with the given status, within timeout, or the test fails with w's log. */
static json_t *must_status(redisContext *c, e2e_worker *w, const char *id, const char *status,
                           double timeout) {
    json_t *res = e2e_wait_result(c, id, status, timeout);
    if (!res) {
        e2e_log_dump(w);
        json_t *got = e2e_result(c, id);
        test__fail(__FILE__, __LINE__, "%s: no %s result within %g s (it is %s)", id, status,
                   timeout, got ? e2e_jstr(got, "status") : "absent");
    }
    return res;
}

/* The result is REVOKED with TaskRevokedError and this reason. */
static void assert_revoked(const json_t *res, const char *reason) {
    ASSERT_STREQ(e2e_jstr(res, "status"), "REVOKED");
    ASSERT_STREQ(e2e_jstr(json_object_get(res, "error"), "type"), "TaskRevokedError");
    ASSERT_STREQ(e2e_jerror(res), reason);
}

/* The worker logged that the task started (-l debug): it ran. */
static bool ran(const e2e_worker *w, const char *id, const char *task) {
    char line[256];
    snprintf(line, sizeof line, "[task %s] %s started", id, task);
    return e2e_log_count(w, line) > 0;
}

static void ctl_ok(ctlrun *r, int port, const char *const *args) {
    const char *argv[16] = {"-b", e2e_url(port)};
    int n = 2;
    for (; *args && n < 15; args++)
        argv[n++] = *args;
    argv[n] = NULL;
    CTL_RUN_ENV(r, NULL, argv);
    ASSERT_EQ(r->code, 0);
}
#define CTL_OK(r, port, ...)                                                                       \
    do {                                                                                           \
        const char *a__[] = {__VA_ARGS__, NULL};                                                   \
        ctl_ok((r), (port), a__);                                                                  \
    } while (0)

/* Entries of workerd:events of this type about task id. */
static int events(redisContext *c, const char *type, const char *id) {
    redisReply *r = redisCommand(c, "XRANGE workerd:events - +");
    ASSERT(r != NULL && r->type == REDIS_REPLY_ARRAY);
    int n = 0;
    for (size_t i = 0; i < r->elements; i++) {
        redisReply *fields = r->element[i]->element[1];
        bool is_type = false, is_id = false;
        for (size_t k = 0; k + 1 < fields->elements; k += 2) {
            const char *f = fields->element[k]->str, *v = fields->element[k + 1]->str;
            is_type |= strcmp(f, "type") == 0 && strcmp(v, type) == 0;
            is_id |= strcmp(f, "id") == 0 && strcmp(v, id) == 0;
        }
        n += is_type && is_id;
    }
    freeReplyObject(r);
    return n;
}

/* The value of a metric sample written exactly as series; NaN when absent. */
static double metric(int port, const char *series) {
    httpc_response r;
    ASSERT_EQ(httpc_get(port, "/metrics", &r), 200);
    double v = NAN;
    size_t n = strlen(series);
    for (const char *p = r.body; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (strncmp(p, series, n) == 0 && p[n] == ' ')
            v = strtod(p + n + 1, NULL);
    httpc_free(&r);
    return v;
}

/* ---- revoked before it is taken ------------------------------------------------------- */

/* The id is revoked while nothing with it is pending; the message comes later. The worker
 * takes it and does not run it: REVOKED "revoked", acked (nothing left in flight), the
 * metric and the -E event say so, and the message beside it runs as usual. */
TEST(pending_revoked_message_is_skipped_not_run) {
    e2e_env e;
    e2e_env_start(&e);
    ctlrun r;
    CTL_OK(&r, e.redis.port, "revoke", "r-1");
    ASSERT(strstr(r.out, "no pending message") != NULL);
    ctlrun_free(&r);
    int http = test_free_port();
    char addr[32];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", http);
    E2E_START_READY(&e.w, e.redis.port, "-l", "debug", "-E", "--http", addr);
    e2e_push_task(e.c, "default", "r-1", "echo", "[1]");
    e2e_push_task(e.c, "default", "ok-1", "echo", "[2]");

    json_t *res = must_status(e.c, &e.w, "r-1", "REVOKED", TEST_SOON);
    assert_revoked(res, "revoked");
    ASSERT_STREQ(e2e_jstr(res, "task"), "echo");
    ASSERT(e2e_jstr(res, "worker") != NULL);
    json_decref(res);
    json_decref(must_status(e.c, &e.w, "ok-1", "SUCCESS", TEST_SOON));
    ASSERT(!ran(&e.w, "r-1", "echo"));
    ASSERT(ran(&e.w, "ok-1", "echo"));
    ASSERT_EQ(e2e_int(e.c, "LLEN workerd:queue:default"), 0);
    ASSERT_WITHIN(e2e_count_keys(e.c, "workerd:inflight:*") == 0, TEST_SOON);
    ASSERT_EQ(metric(http, "workerd_tasks_revoked_total{task=\"echo\"}"), 1);
    ASSERT_EQ(metric(http, "workerd_tasks_succeeded_total{task=\"echo\"}"), 1);
    ASSERT_WITHIN(events(e.c, "revoked", "r-1") == 1, TEST_SOON);
    ASSERT_EQ(events(e.c, "started", "r-1"), 0);
    e2e_env_end(&e);
}

/* Append the commands that revoke id by hand (README.md's redis-cli form, in order), for
 * a day; 3 replies to read. */
static void append_revoke(redisContext *c, const char *id, const char *kind) {
    long until = (long)time(NULL) + 86400;
    redisAppendCommand(c, "SET workerd:revoked:%s %s EX 86400", id,
                       strcmp(kind, "terminate") == 0 ? "terminate" : "1");
    redisAppendCommand(c, "ZADD workerd:revoked GT %ld %s", until, id);
    redisAppendCommand(c, "XADD workerd:control MAXLEN ~ 10000 * %s %s until %ld", kind, id, until);
}

/* Read n replies, none an error. */
static void read_replies(redisContext *c, int n) {
    for (int k = 0; k < n; k++) {
        redisReply *rep = NULL;
        ASSERT_EQ(redisGetReply(c, (void **)&rep), REDIS_OK);
        ASSERT(rep != NULL && rep->type != REDIS_REPLY_ERROR);
        freeReplyObject(rep);
    }
}

static void revoke_by_hand(redisContext *c, const char *id, const char *kind) {
    append_revoke(c, id, kind);
    read_replies(c, 3);
}

/* A running worker learns of revocations from the stream; a message pushed right after
 * its id was revoked may be taken before the worker has read the entry: it must never
 * run all the same (the worker waits until it has read as far as its fetch saw). A burst
 * of revoke-then-push pairs, sent in one write, while the worker is busy with the echo
 * tasks pushed between them. */
TEST(message_pushed_right_after_its_revoke_is_never_run) {
    e2e_env e;
    e2e_env_start(&e);
    E2E_START_READY(&e.w, e.redis.port, "-l", "debug", "-c", "20");
    enum { N = 400 };
    for (int i = 0; i < N; i++) {
        char id[32], other[32];
        snprintf(id, sizeof id, "p-%d", i);
        snprintf(other, sizeof other, "q-%d", i);
        append_revoke(e.c, id, "revoke");
        redisAppendCommand(e.c, "LPUSH workerd:queue:default {\"id\":\"%s\",\"task\":\"echo\"}",
                           id);
        redisAppendCommand(e.c, "LPUSH workerd:queue:default {\"id\":\"%s\",\"task\":\"echo\"}",
                           other);
    }
    read_replies(e.c, 5 * N);
    for (int i = 0; i < N; i++) {
        char id[32], other[32];
        snprintf(id, sizeof id, "p-%d", i);
        snprintf(other, sizeof other, "q-%d", i);
        json_t *res = must_status(e.c, &e.w, id, "REVOKED", TEST_SOON);
        assert_revoked(res, "revoked");
        json_decref(res);
        json_decref(must_status(e.c, &e.w, other, "SUCCESS", TEST_SOON));
        ASSERT(!ran(&e.w, id, "echo"));
    }
    e2e_env_end(&e);
}

/* Several ids in one command: the pending ones are taken out of their queues with a
 * REVOKED result each, and an id whose message is pushed afterwards is skipped by the
 * worker. */
TEST(several_ids_are_revoked_at_once) {
    e2e_env e;
    e2e_env_start(&e);
    e2e_push_task(e.c, "default", "m-1", "echo", "[1]");
    e2e_push_task(e.c, "low", "m-2", "echo", "[2]");
    e2e_push_task(e.c, "default", "keep", "echo", "[3]");
    ctlrun r;
    CTL_OK(&r, e.redis.port, "--json", "revoke", "m-1", "m-2", "m-3");
    json_t *doc = ctlrun_json(&r);
    ASSERT(json_is_array(doc));
    ASSERT_EQ(json_array_size(doc), 3);
    static const char *const ids[] = {"m-1", "m-2", "m-3"};
    for (size_t i = 0; i < 3; i++) {
        json_t *one = json_array_get(doc, i);
        ASSERT_STREQ(e2e_jstr(one, "id"), ids[i]);
        ASSERT_EQ(e2e_jnum(one, "removed"), i < 2 ? 1 : 0);
        ASSERT(json_is_false(json_object_get(one, "terminated")));
        ASSERT_EQ(e2e_int(e.c, "EXISTS workerd:revoked:%s", ids[i]), 1);
    }
    json_decref(doc);
    ctlrun_free(&r);
    for (size_t i = 0; i < 2; i++) {
        json_t *res = e2e_result(e.c, ids[i]);
        assert_revoked(res, "revoked");
        json_decref(res);
    }

    E2E_START_READY(&e.w, e.redis.port, "-Q", "default,low", "-l", "debug");
    e2e_push_task(e.c, "low", "m-3", "echo", "[4]");
    json_t *res = must_status(e.c, &e.w, "m-3", "REVOKED", TEST_SOON);
    assert_revoked(res, "revoked");
    json_decref(res);
    json_decref(must_status(e.c, &e.w, "keep", "SUCCESS", TEST_SOON));
    ASSERT(!ran(&e.w, "m-3", "echo"));
    e2e_env_end(&e);
}

/* The marks are in Redis: a worker started after the revoke, and its successor, honour
 * them. */
TEST(revokes_survive_worker_restarts) {
    e2e_env e;
    e2e_env_start(&e);
    E2E_START_READY(&e.w, e.redis.port, "-l", "debug");
    ctlrun r;
    CTL_OK(&r, e.redis.port, "revoke", "later-1");
    ctlrun_free(&r);
    e2e_worker_signal(&e.w, SIGTERM);
    expect_exit(&e.w, 0, 30.0);
    e2e_worker_stop(&e.w);

    E2E_START_READY(&e.w, e.redis.port, "-l", "debug");
    e2e_push_task(e.c, "default", "later-1", "sleep", "[0.1]");
    json_t *res = must_status(e.c, &e.w, "later-1", "REVOKED", TEST_SOON);
    assert_revoked(res, "revoked");
    json_decref(res);
    ASSERT(!ran(&e.w, "later-1", "sleep"));
    e2e_env_end(&e);
}

/* A message held by a worker that is SIGKILLed comes back through recovery; revoked
 * meanwhile, it is skipped by the worker that takes it next. */
TEST(revoked_message_of_a_killed_worker_is_skipped_by_the_next) {
    test_redis rd;
    test_redis_start(&rd, NULL);
    redisContext *c = e2e_redis(rd.port);
    e2e_worker a, b;
    E2E_START_READY(&a, rd.port, "--heartbeat", "1", "-n", "first");
    e2e_push_task(c, "default", "k-1", "sleep", "[60]");
    json_decref(must_status(c, &a, "k-1", "STARTED", TEST_SOON));
    ctlrun r;
    CTL_OK(&r, rd.port, "--json", "revoke", "k-1");
    json_t *doc = ctlrun_json(&r);
    ASSERT(strncmp(json_string_value(json_array_get(json_object_get(doc, "running_on"), 0)),
                   "first:", 6) == 0);
    json_decref(doc);
    ctlrun_free(&r);
    e2e_worker_signal(&a, SIGKILL);
    ASSERT_EQ(e2e_worker_wait(&a, 5.0), 128 + SIGKILL);

    E2E_START(&b, rd.port, "--heartbeat", "1", "-n", "second", "-l", "debug");
    /* Within the dead worker's heartbeat TTL (3 s) and a recovery round. */
    json_t *res = must_status(c, &b, "k-1", "REVOKED", 4 + TEST_SOON);
    assert_revoked(res, "revoked");
    ASSERT(strncmp(e2e_jstr(res, "worker"), "second:", 7) == 0);
    json_decref(res);
    ASSERT(e2e_log_count(&b, "1 back to their queues") == 1);
    ASSERT(!ran(&b, "k-1", "sleep"));
    ASSERT_WITHIN(e2e_count_keys(c, "workerd:inflight:*") == 0, TEST_SOON);
    ASSERT_EQ(e2e_int(c, "LLEN workerd:queue:default"), 0);

    e2e_worker_signal(&b, SIGTERM);
    expect_exit(&b, 0, 10.0);
    e2e_worker_stop(&a);
    e2e_worker_stop(&b);
    redisFree(c);
    test_redis_stop(&rd);
}

/* ---- --terminate ---------------------------------------------------------------------- */

/* A running sleep of 60 s is stopped: its result is REVOKED "terminated" long before the
 * sleep could have ended, its message is acked, and the worker carries on. */
TEST(terminate_stops_a_running_task) {
    e2e_env e;
    e2e_env_start(&e);
    E2E_START_READY(&e.w, e.redis.port, "-n", "runner");
    e2e_push_task(e.c, "default", "t-1", "sleep", "[60]");
    json_decref(must_status(e.c, &e.w, "t-1", "STARTED", TEST_SOON));
    double t0 = test_now();
    ctlrun r;
    CTL_OK(&r, e.redis.port, "--json", "revoke", "--terminate", "t-1");
    json_t *doc = ctlrun_json(&r);
    ASSERT(json_is_true(json_object_get(doc, "terminated")));
    ASSERT(strncmp(json_string_value(json_array_get(json_object_get(doc, "running_on"), 0)),
                   "runner:", 7) == 0);
    json_decref(doc);
    ctlrun_free(&r);
    json_t *res = must_status(e.c, &e.w, "t-1", "REVOKED", TEST_SOON);
    ASSERT(test_now() - t0 < TEST_NEVER); /* not the whole sleep */
    assert_revoked(res, "terminated");
    ASSERT(strncmp(e2e_jstr(res, "worker"), "runner:", 7) == 0);
    json_decref(res);
    ASSERT_WITHIN(e2e_count_keys(e.c, "workerd:inflight:*") == 0, TEST_SOON);
    ASSERT_EQ(e2e_int(e.c, "LLEN workerd:queue:default"), 0);
    ASSERT(e2e_log_wait(&e.w, "[task t-1] revoked with --terminate", TEST_SOON));
    /* Still revoked: a copy pushed again is skipped, and other work runs. */
    e2e_push_task(e.c, "default", "t-1", "sleep", "[60]");
    e2e_push_task(e.c, "default", "after", "echo", "[1]");
    json_decref(must_status(e.c, &e.w, "after", "SUCCESS", TEST_SOON));
    ASSERT_WITHIN(e2e_int(e.c, "LLEN workerd:queue:default") == 0 &&
                      e2e_count_keys(e.c, "workerd:inflight:*") == 0,
                  TEST_SOON);
    res = e2e_result(e.c, "t-1");
    assert_revoked(res, "revoked");
    json_decref(res);
    e2e_env_end(&e);
}

/* An HTTP request that would wait an hour (/never) is aborted: the task ends REVOKED
 * "terminated" and its only slot is free again at once. */
TEST(terminate_aborts_an_http_request_in_flight) {
    e2e_env e;
    e2e_env_start(&e);
    test_nginx n;
    test_nginx_start(&n);
    E2E_START_READY(&e.w, e.redis.port, "-c", "1");
    char msg[256];
    snprintf(msg, sizeof msg,
             "{\"id\":\"h-1\",\"task\":\"http.get\",\"args\":[\"http://127.0.0.1:%d/never\"]}",
             n.port);
    e2e_push(e.c, "default", msg);
    json_decref(must_status(e.c, &e.w, "h-1", "STARTED", TEST_SOON));
    ctlrun r;
    CTL_OK(&r, e.redis.port, "revoke", "--terminate", "h-1");
    ctlrun_free(&r);
    json_t *res = must_status(e.c, &e.w, "h-1", "REVOKED", TEST_SOON);
    assert_revoked(res, "terminated");
    json_decref(res);
    e2e_push_task(e.c, "default", "next", "echo", "[1]");
    json_decref(must_status(e.c, &e.w, "next", "SUCCESS", TEST_SOON));
    e2e_env_end(&e);
    test_nginx_stop(&n);
}

/* Terminate as redis-cli would send it (README.md), with no pause after the push: the
 * mark lands before the fetch, between the fetch and the start, or while the task runs.
 * Whichever it is, the task never ends in SUCCESS after the terminate was answered: it is
 * skipped ("revoked") or stopped ("terminated"). */
TEST(terminate_of_a_task_just_starting_never_succeeds_after_it) {
    e2e_env e;
    e2e_env_start(&e);
    E2E_START_READY(&e.w, e.redis.port, "-c", "4");
    enum { N = 40 };
    double answered[N];
    for (int i = 0; i < N; i++) {
        char id[32];
        snprintf(id, sizeof id, "j-%d", i);
        e2e_push_task(e.c, "default", id, "sleep", "[1]");
        /* From nothing to a few milliseconds after the push. */
        for (double until = test_now() + (i % 8) * 0.0005; test_now() < until;)
            ;
        revoke_by_hand(e.c, id, "terminate");
        answered[i] = test_now();
    }
    int skipped = 0, stopped = 0;
    for (int i = 0; i < N; i++) {
        char id[32];
        snprintf(id, sizeof id, "j-%d", i);
        json_t *res = e2e_wait_result(e.c, id, NULL, 2 * TEST_SOON);
        if (!res)
            e2e_log_dump(&e.w);
        ASSERT(res != NULL);
        if (strcmp(e2e_jstr(res, "status"), "SUCCESS") == 0) {
            /* Only a task that had finished before the terminate was answered may. */
            ASSERT(e2e_jnum(res, "finished_at") <= answered[i]);
        } else {
            ASSERT_STREQ(e2e_jstr(res, "status"), "REVOKED");
            skipped += strcmp(e2e_jerror(res), "revoked") == 0;
            stopped += strcmp(e2e_jerror(res), "terminated") == 0;
        }
        json_decref(res);
    }
    printf("revoke: %d skipped when taken, %d stopped while running\n", skipped, stopped);
    ASSERT_EQ(skipped + stopped, N);
    ASSERT_WITHIN(e2e_count_keys(e.c, "workerd:inflight:*") == 0, TEST_SOON);
    e2e_env_end(&e);
}

/* Restart the test's Redis (SIGKILL, then again from its append-only file) and
 * reconnect c. */
static redisContext *redis_bounce(test_redis *rd, redisContext *c) {
    redisFree(c);
    test_redis_kill(rd, SIGKILL);
    test_redis_restart(rd);
    return e2e_redis(rd->port);
}

/* The worker is stopped (SIGSTOP) while Redis restarts, the terminate is sent to the new
 * Redis and Redis restarts once more (from its append-only file): the worker was away the
 * whole time, with its connections to a Redis that is gone. Once it wakes it reconnects,
 * reads the broadcast it missed (the stream kept it) and the mark, and stops the task:
 * REVOKED "terminated", never SUCCESS. */
TEST(terminate_reaches_a_worker_that_missed_it_while_redis_restarted) {
    static const char *const aof[] = {"--appendonly", "yes", "--appendfsync", "always", NULL};
    test_redis rd;
    test_redis_start(&rd, aof);
    redisContext *c = e2e_redis(rd.port);
    e2e_worker w;
    E2E_START_READY(&w, rd.port);
    e2e_push_task(c, "default", "away-1", "sleep", "[60]");
    json_decref(must_status(c, &w, "away-1", "STARTED", TEST_SOON));
    e2e_worker_signal(&w, SIGSTOP);
    c = redis_bounce(&rd, c);
    ctlrun r;
    CTL_OK(&r, rd.port, "revoke", "--terminate", "away-1");
    ASSERT(strstr(r.out, "it terminates the task") != NULL);
    ctlrun_free(&r);
    c = redis_bounce(&rd, c);
    char *mark = e2e_get(c, "workerd:revoked:away-1");
    ASSERT_STREQ(mark, "terminate"); /* the mark persists */
    free(mark);
    e2e_worker_signal(&w, SIGCONT);
    json_t *res = must_status(c, &w, "away-1", "REVOKED", 2 * TEST_SOON);
    assert_revoked(res, "terminated");
    json_decref(res);
    ASSERT_WITHIN(e2e_count_keys(c, "workerd:inflight:*") == 0, TEST_SOON);
    ASSERT(e2e_log_count(&w, "control: Redis unreachable") == 1);

    e2e_worker_signal(&w, SIGTERM);
    expect_exit(&w, 0, 30.0);
    e2e_worker_stop(&w);
    redisFree(c);
    test_redis_stop(&rd);
}

/* The mark alone, without the broadcast (a producer that only SETs it, or a broadcast
 * that was lost with a Redis that kept its keys but not the stream): the worker looks up
 * the marks of its running tasks every heartbeat TTL (3 s here) and stops the task. */
TEST(terminate_mark_alone_is_found_within_a_heartbeat_ttl) {
    e2e_env e;
    e2e_env_start(&e);
    E2E_START_READY(&e.w, e.redis.port, "--heartbeat", "1");
    e2e_push_task(e.c, "default", "quiet-1", "sleep", "[60]");
    json_decref(must_status(e.c, &e.w, "quiet-1", "STARTED", TEST_SOON));
    redisReply *rep = redisCommand(e.c, "SET workerd:revoked:quiet-1 terminate EX 600");
    ASSERT(rep != NULL && rep->type == REDIS_REPLY_STATUS);
    freeReplyObject(rep);
    json_t *res = must_status(e.c, &e.w, "quiet-1", "REVOKED", 3 + TEST_SOON);
    assert_revoked(res, "terminated");
    json_decref(res);
    e2e_env_end(&e);
}

/* A plain revoke ("1") does not stop a running task: it runs to its end. */
TEST(plain_revoke_lets_a_running_task_finish) {
    e2e_env e;
    e2e_env_start(&e);
    E2E_START_READY(&e.w, e.redis.port, "--heartbeat", "1");
    e2e_push_task(e.c, "default", "runs-on", "sleep", "[4]");
    json_decref(must_status(e.c, &e.w, "runs-on", "STARTED", TEST_SOON));
    ctlrun r;
    CTL_OK(&r, e.redis.port, "revoke", "runs-on");
    ASSERT(strstr(r.out, "runs on (--terminate stops it)") != NULL);
    ctlrun_free(&r);
    /* Past a heartbeat TTL (3 s): the look-up of the running tasks' marks ran, too. */
    json_decref(must_status(e.c, &e.w, "runs-on", "SUCCESS", 4 + TEST_SOON));
    e2e_env_end(&e);
}

/* Revocations that cannot be read (here the control stream's key holds a string) while
 * messages can be taken: the worker does not stop working. After a grace of 10 s it runs
 * tasks unchecked and says so, and checks them again once the key is fixed. */
TEST(unreadable_revocations_do_not_stop_the_worker) {
    e2e_env e;
    e2e_env_start(&e);
    redisReply *rep = redisCommand(e.c, "SET workerd:control not-a-stream");
    ASSERT(rep != NULL && rep->type == REDIS_REPLY_STATUS);
    freeReplyObject(rep);
    E2E_START_READY(&e.w, e.redis.port);
    e2e_push_task(e.c, "default", "u-1", "echo", "[1]");
    json_decref(must_status(e.c, &e.w, "u-1", "SUCCESS", 10 + TEST_SOON));
    ASSERT_EQ(e2e_log_count(&e.w, "cannot read the revocations"), 1);
    rep = redisCommand(e.c, "DEL workerd:control");
    freeReplyObject(rep);
    ASSERT(e2e_log_wait(&e.w, "revocations are read again", TEST_SOON));
    revoke_by_hand(e.c, "u-2", "revoke");
    e2e_push_task(e.c, "default", "u-2", "echo", "[2]");
    json_t *res = must_status(e.c, &e.w, "u-2", "REVOKED", TEST_SOON);
    assert_revoked(res, "revoked");
    json_decref(res);
    e2e_env_end(&e);
}
