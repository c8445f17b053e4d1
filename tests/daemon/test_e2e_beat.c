/*
 * test_e2e_beat.c - periodic tasks (--beat FILE) through the real workerd and workerctl
 * binaries and a real redis-server: two and then three workers running the same file
 * enqueue each tick exactly once, and go on when one of them is SIGKILLed; catch_up one,
 * all and none after a downtime (made by a mark set in Redis, not by waiting); SIGHUP with
 * a bad file keeps the running schedule, with a good one replaces it; every bad file is
 * refused at start with exit code 2 and the entry and field named; `workerctl beat`.
 *
 * The beat messages go to queues the workers do not consume, so every run stays on its
 * list, where the test counts the ids.
 */
#include "ctlrun.h"
#include "e2e.h"
#include "testlib.h"

#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* 2025-01-01 and 2026-01-01, 00:00 UTC: the ticks of "0 0 1 1 *" after 2024-01-01. */
#define Y2024 1704067200LL
#define Y2025 1735689600LL
#define Y2026 1767225600LL

/* Write text to dir/name (atomically: a reload never reads half a file); the path,
 * malloc'd. */
static char *write_file(const char *dir, const char *name, const char *text) {
    char tmp[512], *path = malloc(512);
    ASSERT(path != NULL);
    snprintf(tmp, sizeof tmp, "%s/.%s.tmp", dir, name);
    snprintf(path, 512, "%s/%s", dir, name);
    FILE *f = fopen(tmp, "w");
    ASSERT(f != NULL);
    ASSERT(fputs(text, f) >= 0);
    ASSERT_EQ(fclose(f), 0);
    ASSERT_EQ(rename(tmp, path), 0);
    return path;
}

static long long llen(redisContext *c, const char *queue) {
    return e2e_int(c, "LLEN workerd:queue:%s", queue);
}

/* The ticks of the beat:<name>:<tick> ids on queue, in the order pushed; *n of them. */
static int64_t *ticks_on(redisContext *c, const char *queue, const char *name, size_t *n) {
    redisReply *r = redisCommand(c, "LRANGE workerd:queue:%s 0 -1", queue);
    ASSERT(r != NULL && r->type == REDIS_REPLY_ARRAY);
    int64_t *ticks = calloc(r->elements + 1, sizeof *ticks);
    ASSERT(ticks != NULL);
    char prefix[128];
    snprintf(prefix, sizeof prefix, "beat:%s:", name);
    for (size_t i = 0; i < r->elements; i++) {
        json_t *m = json_loads(r->element[i]->str, 0, NULL);
        ASSERT(m != NULL);
        const char *id = e2e_jstr(m, "id");
        ASSERT(id != NULL && strncmp(id, prefix, strlen(prefix)) == 0);
        ASSERT_STREQ(e2e_jstr(m, "task"), "echo");
        ticks[r->elements - 1 - i] = strtoll(id + strlen(prefix), NULL, 10); /* LPUSHed */
        json_decref(m);
    }
    *n = r->elements;
    freeReplyObject(r);
    return ticks;
}

/* The mark of entry name (HGET workerd:beat name), -1 when none. */
static long long mark_of(redisContext *c, const char *name) {
    redisReply *r = redisCommand(c, "HGET workerd:beat %s", name);
    ASSERT(r != NULL && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_NIL));
    long long v = r->type == REDIS_REPLY_STRING ? strtoll(r->str, NULL, 10) : -1;
    freeReplyObject(r);
    return v;
}

static int cmp_tick(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

TEST(each_tick_once_over_two_then_three_workers_one_sigkilled) {
    e2e_env e;
    e2e_env_start(&e);
    char *dir = test_tmpdir("beat");
    char *path = write_file(dir, "beat.json",
                            "[{\"name\":\"tick\",\"every\":1,\"catch_up\":\"all\","
                            "\"message\":{\"task\":\"echo\",\"args\":[1],\"queue\":\"beatq\"}}]");
    e2e_worker w2, w3;
    E2E_START_READY(&e.w, e.redis.port, "--beat", path, "-l", "debug");
    E2E_START_READY(&w2, e.redis.port, "--beat", path, "-l", "debug");
    ASSERT_WITHIN(llen(e.c, "beatq") >= 7, TEST_NEVER);
    E2E_START_READY(&w3, e.redis.port, "--beat", path, "-l", "debug");
    ASSERT_WITHIN(llen(e.c, "beatq") >= 14, TEST_NEVER);
    e2e_worker_signal(&w2, SIGKILL);
    ASSERT_EQ(e2e_worker_wait(&w2, TEST_NEVER), 128 + SIGKILL);
    long long at_kill = llen(e.c, "beatq");
    ASSERT_WITHIN(llen(e.c, "beatq") >= at_kill + 6, TEST_NEVER);
    e2e_worker_signal(&w3, SIGTERM);
    e2e_worker_signal(&e.w, SIGTERM);
    ASSERT_EQ(e2e_worker_wait(&w3, TEST_NEVER), 0);
    ASSERT_EQ(e2e_worker_wait(&e.w, TEST_NEVER), 0);
    /* Every tick from the first to the last, each once. */
    size_t n;
    int64_t *ticks = ticks_on(e.c, "beatq", "tick", &n);
    ASSERT(n >= 20);
    qsort(ticks, n, sizeof *ticks, cmp_tick);
    for (size_t i = 1; i < n; i++)
        if (ticks[i] != ticks[0] + (int64_t)i)
            test__fail(__FILE__, __LINE__, "tick %zu is %" PRId64 ", expected %" PRId64, i,
                       ticks[i], ticks[0] + (int64_t)i);
    /* Each was enqueued by one worker, whichever: the workers' logs say so n times. */
    int fired = e2e_log_count(&e.w, "beat: tick: enqueued") +
                e2e_log_count(&w2, "beat: tick: enqueued") +
                e2e_log_count(&w3, "beat: tick: enqueued");
    ASSERT_EQ(fired, n);
    free(ticks);
    e2e_worker_stop(&w2);
    e2e_worker_stop(&w3);
    e2e_env_end(&e);
    test_rmtree(dir);
    free(dir);
    free(path);
}

TEST(catch_up_one_all_and_none_after_a_downtime) {
    e2e_env e;
    e2e_env_start(&e);
    /* Each entry last fired on 2024-01-01: the 2025 and 2026 ticks were missed. */
    e2e_int(e.c, "HSET workerd:beat y_one %lld y_all %lld y_none %lld", Y2024, Y2024, Y2024);
    char *dir = test_tmpdir("beat");
    char *path = write_file(
        dir, "beat.json",
        "[{\"name\":\"y_one\",\"cron\":\"0 0 1 1 *\",\"message\":{\"task\":\"echo\","
        "\"queue\":\"q_one\"}},"
        "{\"name\":\"y_all\",\"cron\":\"0 0 1 1 *\",\"catch_up\":\"all\",\"message\":"
        "{\"task\":\"echo\",\"queue\":\"q_all\"}},"
        "{\"name\":\"y_none\",\"cron\":\"0 0 1 jan *\",\"timezone\":\"UTC\",\"catch_up\":"
        "\"none\",\"message\":{\"task\":\"echo\",\"queue\":\"q_none\"}},"
        "{\"name\":\"probe\",\"every\":1,\"message\":{\"task\":\"echo\",\"queue\":\"probe\"}}]");
    E2E_START_READY(&e.w, e.redis.port, "--beat", path);
    /* The probe fires from the second round on: the catch-up round is over by then. */
    ASSERT_WITHIN(llen(e.c, "probe") >= 3, TEST_NEVER);
    /* One round (one HGETALL of the marks) per tick, no polling in between: the first
     * round, then one per probe tick, and one more that may be under way; the rate limits'
     * list is read once at start-up. */
    long long rounds = e2e_command_calls(e.c, "hgetall");
    ASSERT(rounds <= llen(e.c, "probe") + 3);
    size_t n;
    int64_t *t = ticks_on(e.c, "q_one", "y_one", &n);
    ASSERT_EQ(n, 1);
    ASSERT_EQ(t[0], Y2026);
    free(t);
    t = ticks_on(e.c, "q_all", "y_all", &n);
    ASSERT_EQ(n, 2);
    ASSERT_EQ(t[0], Y2025);
    ASSERT_EQ(t[1], Y2026);
    free(t);
    ASSERT_EQ(llen(e.c, "q_none"), 0);
    ASSERT_EQ(mark_of(e.c, "y_one"), Y2026);
    ASSERT_EQ(mark_of(e.c, "y_all"), Y2026);
    ASSERT_EQ(mark_of(e.c, "y_none"), Y2026);
    ASSERT_EQ(e2e_log_count(&e.w, "beat: y_none: dropped the missed tick beat:y_none:1767225600"),
              1);
    e2e_env_end(&e);
    test_rmtree(dir);
    free(dir);
    free(path);
}

TEST(sighup_with_a_bad_file_keeps_the_schedule_a_good_one_replaces_it) {
    e2e_env e;
    e2e_env_start(&e);
    char *dir = test_tmpdir("beat");
    char *path = write_file(dir, "beat.json",
                            "[{\"name\":\"a\",\"every\":1,\"message\":{\"task\":\"echo\","
                            "\"queue\":\"hq\"}}]");
    E2E_START_READY(&e.w, e.redis.port, "--beat", path);
    ASSERT_WITHIN(llen(e.c, "hq") >= 1, TEST_NEVER);
    free(write_file(dir, "beat.json",
                    "[{\"name\":\"a\",\"cron\":\"61 * * * *\",\"message\":{\"task\":\"echo\","
                    "\"queue\":\"hq\"}}]"));
    e2e_worker_signal(&e.w, SIGHUP);
    ASSERT(e2e_log_wait(&e.w, "beat: reload refused, keeping the running schedule", TEST_NEVER));
    ASSERT_EQ(e2e_log_count(&e.w, "entry 1 (\"a\"): field \"cron\": minute: 61 is out of range "
                                  "0-59"),
              1);
    long long n = llen(e.c, "hq");
    ASSERT_WITHIN(llen(e.c, "hq") >= n + 2, TEST_NEVER); /* the old schedule goes on */
    free(write_file(dir, "beat.json",
                    "[{\"name\":\"b\",\"every\":1,\"message\":{\"task\":\"echo\","
                    "\"queue\":\"hq2\"}}]"));
    e2e_worker_signal(&e.w, SIGHUP);
    ASSERT(e2e_log_wait(&e.w, "beat: reloaded", TEST_NEVER));
    ASSERT_WITHIN(llen(e.c, "hq2") >= 1, TEST_NEVER);
    size_t k;
    free(ticks_on(e.c, "hq2", "b", &k)); /* asserts the ids are beat:b:<tick> */
    ASSERT_EQ(e2e_log_count(&e.w, "restarting"), 0);
    e2e_env_end(&e);
    test_rmtree(dir);
    free(dir);
    free(path);
}

TEST(a_reload_to_another_beat_file_that_does_not_load_is_refused) {
    e2e_env e;
    e2e_env_start(&e);
    char *dir = test_tmpdir("beat");
    char *good = write_file(dir, "good.json",
                            "[{\"name\":\"a\",\"every\":1,\"message\":{\"task\":\"echo\","
                            "\"queue\":\"hq\"}}]");
    char *bad = write_file(dir, "bad.json",
                           "[{\"name\":\"a\",\"every\":1,\"timezone\":\"UTC\",\"message\":"
                           "{\"task\":\"echo\"}}]");
    char text[1200];
    snprintf(text, sizeof text, "WORKERD_BEAT=%s\n", good);
    char *conf = write_file(dir, "workerd.conf", text);
    E2E_START_READY(&e.w, e.redis.port, "--config", conf);
    ASSERT_WITHIN(llen(e.c, "hq") >= 1, TEST_NEVER);
    snprintf(text, sizeof text, "WORKERD_BEAT=%s\n", bad);
    free(write_file(dir, "workerd.conf", text));
    e2e_worker_signal(&e.w, SIGHUP);
    ASSERT(e2e_log_wait(
        &e.w, "reload refused, keeping the running settings: workerd: --beat: ", TEST_NEVER));
    ASSERT_EQ(e2e_log_count(&e.w, "entry 1 (\"a\"): field \"timezone\": only a cron entry"), 1);
    long long n = llen(e.c, "hq");
    ASSERT_WITHIN(llen(e.c, "hq") >= n + 1, TEST_NEVER); /* still running, not restarted */
    ASSERT_EQ(e2e_log_count(&e.w, "restarting"), 0);
    e2e_env_end(&e);
    test_rmtree(dir);
    free(dir);
    free(good);
    free(bad);
    free(conf);
}

/* The file text is refused at start: exit code 2 and `reason` in what workerd printed. */
static void refused_at_start(const char *dir, const char *text, const char *reason) {
    char *path = text ? write_file(dir, "bad.json", text) : strdup("/nonexistent/beat.json");
    e2e_worker w;
    E2E_START(&w, 0, "--beat", path);
    ASSERT_EQ(e2e_worker_wait(&w, TEST_NEVER), 2);
    if (e2e_log_count(&w, reason) != 1) {
        e2e_log_dump(&w);
        test__fail(__FILE__, __LINE__, "expected '%s'", reason);
    }
    ASSERT_EQ(e2e_log_count(&w, "workerd: --beat: "), 1);
    e2e_worker_stop(&w);
    free(path);
}

TEST(bad_files_are_refused_at_start_naming_entry_and_field) {
    char *dir = test_tmpdir("beat");
    refused_at_start(dir,
                     "[{\"name\":\"a\",\"cron\":\"61 * * * *\",\"message\":{\"task\":\"echo\"}}]",
                     "entry 1 (\"a\"): field \"cron\": minute: 61 is out of range 0-59");
    refused_at_start(dir,
                     "[{\"name\":\"a\",\"cron\":\"0 * * * *\",\"timezone\":\"Mars/Olympus\","
                     "\"message\":{\"task\":\"echo\"}}]",
                     "entry 1 (\"a\"): field \"timezone\": 'Mars/Olympus': no such time zone");
    refused_at_start(dir,
                     "[{\"name\":\"a\",\"every\":5,\"message\":{\"task\":\"echo\"}},"
                     "{\"name\":\"a\",\"every\":6,\"message\":{\"task\":\"echo\"}}]",
                     "entry 2 (\"a\"): field \"name\": entry 1 has the same name");
    refused_at_start(dir, "[{\"name\":\"a\",\"every\":5,", "not valid JSON: line 1");
    refused_at_start(dir,
                     "[{\"name\":\"a\",\"every\":5,\"message\":{\"task\":\"echo\",\"args\":3}}]",
                     "entry 1 (\"a\"): field \"message\": field \"args\" must be an array");
    refused_at_start(dir, "[{\"name\":\"a\",\"every\":5,\"evry\":1,\"message\":{\"task\":\"x\"}}]",
                     "entry 1 (\"a\"): field \"evry\": unknown");
    refused_at_start(dir, "[{\"name\":\"a\",\"every\":0.5,\"message\":{\"task\":\"echo\"}}]",
                     "entry 1 (\"a\"): field \"every\": must be a whole number of seconds");
    refused_at_start(dir, "[{\"name\":\"a b\",\"every\":5,\"message\":{\"task\":\"echo\"}}]",
                     "entry 1: field \"name\"");
    refused_at_start(dir, NULL, "/nonexistent/beat.json: cannot read it");
    test_rmtree(dir);
    free(dir);
}

TEST(workerctl_beat_lists_last_and_next_fire_times) {
    ctlrun_env e;
    ctlrun_env_start(&e);
    char *dir = test_tmpdir("beat");
    char *path =
        write_file(dir, "beat.json",
                   "[{\"name\":\"yearly\",\"cron\":\"0 0 1 1 *\",\"timezone\":\"Europe/Berlin\","
                   "\"message\":{\"task\":\"echo\",\"queue\":\"low\"},\"catch_up\":\"all\"},"
                   "{\"name\":\"hourly\",\"every\":3600,\"message\":{\"task\":\"echo\"}}]");
    char mark[32];
    snprintf(mark, sizeof mark, "%lld", Y2026 - 3600); /* midnight in Berlin */
    ctlrun_redis(&e, "HSET workerd:beat yearly %s", mark, NULL, NULL);
    double before = e2e_redis_time(e.c);
    ctlrun r;
    CTL_RUN(&r, "-b", e.url, "--beat", path, "beat");
    double after = e2e_redis_time(e.c);
    ASSERT_EQ(r.code, 0);
    ASSERT(strstr(r.out, "NAME") != NULL && strstr(r.out, "LAST FIRED") != NULL);
    ASSERT(strstr(r.out, "cron 0 0 1 1 * (Europe/Berlin)") != NULL);
    ASSERT(strstr(r.out, "2025-12-31T23:00:00Z") != NULL);
    ctlrun_free(&r);
    CTL_RUN(&r, "-b", e.url, "--beat", path, "beat", "--json");
    ASSERT_EQ(r.code, 0);
    json_t *all = ctlrun_json(&r);
    ASSERT_EQ(json_array_size(all), 2);
    json_t *y = json_array_get(all, 0), *h = json_array_get(all, 1);
    ASSERT_STREQ(e2e_jstr(y, "name"), "yearly");
    ASSERT_STREQ(e2e_jstr(y, "catch_up"), "all");
    ASSERT_STREQ(e2e_jstr(y, "queue"), "low");
    ASSERT_EQ(e2e_jnum(y, "last_fired"), Y2026 - 3600);
    ASSERT_STREQ(e2e_jstr(y, "last_id"), "beat:yearly:1767222000");
    ASSERT(e2e_jnum(y, "next") > before);
    ASSERT_STREQ(e2e_jstr(h, "schedule"), "every 3600 s");
    ASSERT(json_is_null(json_object_get(h, "last_fired")));
    double next = e2e_jnum(h, "next");
    ASSERT(next == (double)(((long long)before / 3600 + 1) * 3600) ||
           next == (double)(((long long)after / 3600 + 1) * 3600));
    json_decref(all);
    ctlrun_free(&r);
    /* Without a file, and with a bad one. */
    CTL_RUN(&r, "-b", e.url, "beat");
    ASSERT_EQ(r.code, 2);
    ASSERT(strstr(r.err, "no beat file") != NULL);
    ctlrun_free(&r);
    free(write_file(dir, "beat.json", "[{\"name\":\"x\",\"cron\":\"61 * * * *\"}]"));
    CTL_RUN(&r, "-b", e.url, "--beat", path, "beat");
    ASSERT_EQ(r.code, 2);
    ASSERT(strstr(r.err, "entry 1 (\"x\"): field \"cron\": minute: 61") != NULL);
    ctlrun_free(&r);
    ctlrun_env_end(&e);
    test_rmtree(dir);
    free(dir);
    free(path);
}
