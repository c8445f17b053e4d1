/*
 * test_redis_refusals.c - Redis answering, but refusing what the worker stores, with exact
 * accounting (tests/lib/books.h):
 *
 *   - results Redis will not take (over proto-max-bulk-len or client-query-buffer-limit,
 *     lowered to their 1 MiB minimum here) among others: each becomes a small FAILURE
 *     ResultRefused, the others are stored, each message runs once and no other worker
 *     picks it up; before, the worker retried the batch for ever and its successor wedged
 *     the same way;
 *   - Redis out of memory (maxmemory with noeviction) refusing results: the worker backs
 *     off instead of retrying at once (counted in Redis's own INFO commandstats), logs
 *     the state once, says so on /healthz (503) and /metrics, takes no new work, counts
 *     no task as succeeded before its result is stored, and once the limit is lifted
 *     stores every result: nothing lost, nothing run twice.
 *
 * The real workerd binary on a real redis-server, each test with its own.
 */
#include "books.h"
#include "e2e.h"
#include "httpc.h"
#include "testlib.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void config_set(redisContext *c, const char *name, const char *value) {
    redisReply *r = redisCommand(c, "CONFIG SET %s %s", name, value);
    ASSERT(r != NULL && r->type == REDIS_REPLY_STATUS);
    freeReplyObject(r);
}

static void stop_worker(e2e_worker *w) {
    e2e_worker_signal(w, SIGTERM);
    int code = e2e_worker_wait(w, 30.0);
    if (code != 0)
        e2e_log_dump(w);
    ASSERT_EQ(code, 0);
}

/* ---- one result Redis will not take --------------------------------------------------- */

enum { SMALL = 40, WORKERS = 2 };

/* An echo message whose result is about n bytes: one string of n 'x'. */
static char *echo_of(const char *id, size_t n) {
    char *msg = malloc(n + 128);
    ASSERT(msg != NULL);
    int head = snprintf(msg, 128, "{\"id\":\"%s\",\"task\":\"echo\",\"args\":[\"", id);
    memset(msg + head, 'x', n);
    strcpy(msg + head + n, "\"]}");
    return msg;
}

/* Redis refuses the poisons' results once `limit` (its lowest, 1 MiB) is set. */
static void poison_among_others(const char *limit, const char *why) {
    e2e_env e;
    e2e_env_start(&e);
    books *b = books_new();
    books_ids(b, "ok-", 1, SMALL, "SUCCESS");
    books_ids(b, "poison-", 1, 2, "FAILURE");
    /* The poisons in the queue, pushed while Redis still takes them: 2 MiB, which Redis
     * answers with an error before it closes the connection, and 12 MiB, where the
     * worker is still writing when the connection is reset. */
    for (int i = 1; i <= SMALL; i++) {
        char id[32];
        snprintf(id, sizeof id, "ok-%d", i);
        e2e_push_task(e.c, "default", id, "echo", "[1, \"two\"]");
        if (i == SMALL / 2 || i == SMALL * 3 / 4) {
            char *msg = i == SMALL / 2 ? echo_of("poison-1", (size_t)2 << 20)
                                       : echo_of("poison-2", (size_t)12 << 20);
            e2e_push(e.c, "default", msg);
            free(msg);
        }
    }
    config_set(e.c, limit, "1mb");

    e2e_worker w[WORKERS];
    for (int i = 0; i < WORKERS; i++) {
        E2E_START(&w[i], e.redis.port, "-c", "50", "--max-message-size", "16M", "-l", "debug");
        books_log(b, w[i].log);
    }
    for (int k = 1; k <= 2; k++) {
        char id[32];
        snprintf(id, sizeof id, "poison-%d", k);
        json_t *poison = e2e_wait_result(e.c, id, NULL, 30.0);
        if (!poison)
            for (int i = 0; i < WORKERS; i++)
                e2e_log_dump(&w[i]);
        ASSERT(poison != NULL);
        ASSERT_STREQ(e2e_jstr(poison, "status"), "FAILURE");
        json_t *error = json_object_get(poison, "error");
        ASSERT_STREQ(e2e_jstr(error, "type"), "ResultRefused");
        printf("%s: %s\n", id, e2e_jerror(poison));
        ASSERT(strstr(e2e_jerror(poison), "could not be stored") != NULL);
        ASSERT(strstr(e2e_jerror(poison), why) != NULL);
        json_decref(poison);
    }

    /* Both workers go on taking work. */
    books_ids(b, "after-", 1, 100, "SUCCESS");
    for (int i = 1; i <= 100; i++) {
        char id[32];
        snprintf(id, sizeof id, "after-%d", i);
        e2e_push_task(e.c, "default", id, "echo", "[]");
    }
    ASSERT(books_wait_done(b, e.c, 60.0));
    for (int i = 0; i < WORKERS; i++)
        stop_worker(&w[i]);
    books_check(b, e.c);
    ASSERT_EQ(books_runs(b, "poison-1"), 1);
    ASSERT_EQ(books_runs(b, "poison-2"), 1);
    for (int i = 0; i < WORKERS; i++)
        e2e_worker_stop(&w[i]);
    books_free(b);
    e2e_env_end(&e);
}

/* An argument over proto-max-bulk-len: Redis answers with an error, then closes. */
TEST(a_result_over_proto_max_bulk_len_fails_alone_and_the_others_are_stored) {
    poison_among_others("proto-max-bulk-len", "Redis refused it: ERR Protocol error");
}

/* A command over client-query-buffer-limit: Redis closes the connection without a word,
 * so the worker sees a lost link each time it sends the result (and a Redis that
 * answers every reconnect). */
TEST(a_result_over_client_query_buffer_limit_fails_alone_and_the_others_are_stored) {
    poison_among_others("client-query-buffer-limit",
                        "Redis closed the connection each time it was sent");
}

/* ---- Redis out of memory ------------------------------------------------------------- */

enum { QUEUED = 10 };

static char *scrape(int port, const char *path, int *status) {
    httpc_response r;
    *status = httpc_get(port, path, &r);
    char *body = r.body ? strdup(r.body) : strdup("");
    httpc_free(&r);
    return body;
}

/* The value of the sample line that starts with name (labels included), or -1. */
static double sample(const char *text, const char *name) {
    size_t n = strlen(name);
    for (const char *line = text; *line; line = strchr(line, '\n') + 1) {
        if (strncmp(line, name, n) == 0 && line[n] == ' ')
            return atof(line + n + 1);
        if (!strchr(line, '\n'))
            break;
    }
    return -1;
}

static bool status_is(redisContext *c, const char *id, const char *status) {
    json_t *r = e2e_result(c, id);
    bool yes = r && strcmp(e2e_jstr(r, "status"), status) == 0;
    json_decref(r);
    return yes;
}

TEST(redis_out_of_memory_backs_off_reports_it_and_loses_nothing) {
    e2e_env e;
    e2e_env_start(&e);
    books *b = books_new();
    books_ids(b, "first", 0, 0, "SUCCESS");
    books_ids(b, "q-", 1, QUEUED, "SUCCESS");
    int port = test_free_port();
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    E2E_START_READY(&e.w, e.redis.port, "-c", "1", "--http", addr, "-l", "debug");
    books_log(b, e.w.log);

    /* One task running (its STARTED stored), the rest waiting in the queue. */
    e2e_push_task(e.c, "default", "first0", "sleep", "[1.5]");
    ASSERT_WITHIN(status_is(e.c, "first0", "STARTED"), TEST_SOON);
    for (int i = 1; i <= QUEUED; i++) {
        char id[32];
        snprintf(id, sizeof id, "q-%d", i);
        e2e_push_task(e.c, "default", id, "sleep", "[0.2]");
    }
    /* Out of memory from now on: every write Redis can refuse is refused. The next
     * task's STARTED result is the first thing the worker cannot store. */
    config_set(e.c, "maxmemory-policy", "noeviction");
    config_set(e.c, "maxmemory", "1");

    int status = 0;
    char *health = NULL;
    double deadline = test_now() + 20;
    for (;;) {
        free(health);
        health = scrape(port, "/healthz", &status);
        if (status == 503 || test_now() > deadline)
            break;
        test_pause();
    }
    printf("/healthz: %d %s", status, health);
    ASSERT_EQ(status, 503);
    ASSERT(strstr(health, "broker refusing to store results: oom: OOM command not allowed") !=
           NULL);
    free(health);
    char *metrics = scrape(port, "/metrics", &status);
    ASSERT_EQ(status, 200);
    ASSERT_EQ(sample(metrics, "workerd_broker_refusing{reason=\"oom\"}"), 1);
    ASSERT_EQ(sample(metrics, "workerd_broker_up"), 1);
    /* The running task finished before the limit bit; the next one has not succeeded as
     * long as its result is not stored. */
    ASSERT_EQ(sample(metrics, "workerd_tasks_succeeded_total{task=\"sleep\"}"), 1);
    free(metrics);

    /* Watch the worker retry: a few attempts on the reconnect schedule (0.1 s doubling
     * to 5 s), each refused, one log line for all of them, and no new work taken. The
     * retry at once it used to make was some 2,500 EVALSHA a second. */
    long long calls0 = e2e_command_calls(e.c, "evalsha");
    long long queued0 = e2e_int(e.c, "LLEN workerd:queue:default");
    double t1 = test_now();
    ASSERT_WITHIN(e2e_command_calls(e.c, "evalsha") >= calls0 + 4, TEST_NEVER);
    usleep(2000000); /* a window to count in, not a wait for an event */
    long long calls = e2e_command_calls(e.c, "evalsha") - calls0;
    printf("EVALSHA calls while refusing: %lld in %.1f s\n", calls, test_now() - t1);
    ASSERT(calls <= 50);
    ASSERT_EQ(e2e_log_count(&e.w, "Redis refuses to store results (oom: OOM command"), 1);
    ASSERT_EQ(e2e_int(e.c, "LLEN workerd:queue:default"), queued0);
    ASSERT(queued0 >= QUEUED - 1);

    /* The limit lifted: the next retry gets through, everything is stored. */
    config_set(e.c, "maxmemory", "0");
    ASSERT(e2e_log_wait(&e.w, "Redis stores results again", TEST_NEVER));
    ASSERT(books_wait_done(b, e.c, 60.0));
    health = scrape(port, "/healthz", &status);
    ASSERT_EQ(status, 200);
    free(health);
    metrics = scrape(port, "/metrics", &status);
    ASSERT_EQ(sample(metrics, "workerd_broker_refusing"), 0);
    ASSERT_EQ(sample(metrics, "workerd_tasks_succeeded_total{task=\"sleep\"}"), 1 + QUEUED);
    free(metrics);
    ASSERT_EQ(e2e_log_count(&e.w, "Redis refuses to store results"), 1);
    ASSERT_EQ(e2e_log_count(&e.w, "Redis stores results again"), 1);
    stop_worker(&e.w);
    books_check(b, e.c);
    books_free(b);
    e2e_env_end(&e);
}
