/*
 * test_clock_skew.c - two workers whose clocks are 30 s ahead and 30 s behind (libfaketime,
 * preloaded as a test-only tool: namespaces do not virtualise CLOCK_REALTIME) on one Redis. The
 * times that matter are the Redis server's: nobody is presumed dead (heartbeats are TTLs kept by
 * Redis), a countdown runs once it is due on Redis's clock (not 30 s early or late), and results
 * are dated on Redis's clock, and so is everything else another host reads: dead letters, task
 * events, the heartbeat's beat and start (heartbeat age and uptime in workerctl and
 * workerd-web) and the minute the fleet's per-minute counts land in. Skipped where libfaketime
 * is not installed.
 */
#include "ctlrun.h"
#include "e2e.h"
#include "testlib.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* libfaketime, preloaded into the worker alone (FAKETIME="+30s" shifts its clocks). */
static const char *libfaketime(void) {
    static const char *const paths[] = {
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
        "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
    };
    for (size_t i = 0; i < sizeof paths / sizeof *paths; i++)
        if (access(paths[i], R_OK) == 0)
            return paths[i];
    return NULL;
}

enum { N = 20, DEAD = 4 };

/* A time another host reads, within 5 s of Redis's clock between lo and hi. */
#define ASSERT_ON_REDIS_CLOCK(what, t, lo, hi)                                                     \
    do {                                                                                           \
        double t__ = (t);                                                                          \
        if (!(t__ >= (lo)-5 && t__ <= (hi) + 5))                                                   \
            test__fail(__FILE__, __LINE__, "%s: %.3f, not within 5 s of Redis's %.3f .. %.3f",     \
                       what, t__, (double)(lo), (double)(hi));                                     \
    } while (0)

/* Every row of a workerctl table (after its header) shows an age in column col (from 0)
 * of at most max seconds ("12s"; "1m05s" is too old). */
static void ages_at_most(const char *out, int col, long max, const char *what) {
    char *text = strdup(out), *save = NULL;
    int rows = 0;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (rows++ == 0)
            continue; /* the header */
        char *cell = line, *s2 = NULL;
        cell = strtok_r(cell, " ", &s2);
        for (int k = 0; k < col && cell; k++)
            cell = strtok_r(NULL, " ", &s2);
        char unit = 0;
        long secs = -1;
        if (!cell || sscanf(cell, "%ld%c", &secs, &unit) != 2 || unit != 's' || secs > max)
            test__fail(__FILE__, __LINE__, "%s: age '%s', not within %ld s", what,
                       cell ? cell : "(none)", max);
    }
    ASSERT(rows > 1);
    free(text);
}

/* Wait until the fleet's total of processed tasks reaches n (heartbeats carry them). */
static bool wait_processed(redisContext *c, long long n, double timeout) {
    for (double end = e2e_redis_time(c) + timeout; e2e_redis_time(c) < end;) {
        redisReply *r = redisCommand(c, "HGET workerd:stats:total processed");
        long long got = r && r->type == REDIS_REPLY_STRING ? atoll(r->str) : 0;
        freeReplyObject(r);
        if (got >= n)
            return true;
        usleep(20000);
    }
    return false;
}

TEST(workers_thirty_seconds_off_keep_to_the_redis_clock) {
    const char *lib = libfaketime();
    if (lib == NULL)
        test_skip("libfaketime is not installed (Debian package faketime)");
    e2e_env e;
    e2e_env_start(&e);
    double begun = e2e_redis_time(e.c);
    static const char *const offsets[2] = {"+30s", "-30s"};
    e2e_worker w[2];
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/0", e.redis.port);
    for (int k = 0; k < 2; k++) {
        /* An AddressSanitizer build must be told that a preloaded library before its
         * runtime is intended. */
        const char *asan = getenv("ASAN_OPTIONS");
        char *saved = asan ? strdup(asan) : NULL, opts[1024];
        snprintf(opts, sizeof opts, "%s%sverify_asan_link_order=0", asan ? asan : "",
                 asan ? ":" : "");
        setenv("ASAN_OPTIONS", opts, 1);
        setenv("LD_PRELOAD", lib, 1);
        setenv("FAKETIME", offsets[k], 1);
        E2E_START(&w[k], 0, "-b", url, "-c", "4", "--heartbeat", "1", "-E", "-n",
                  k ? "behind" : "ahead");
        unsetenv("LD_PRELOAD");
        unsetenv("FAKETIME");
        if (saved)
            setenv("ASAN_OPTIONS", saved, 1);
        else
            unsetenv("ASAN_OPTIONS");
        free(saved);
        e2e_wait_ready(&w[k]);
    }
    double pushed = e2e_redis_time(e.c);
    int by_ahead = 0;
    for (int i = 1; i <= N; i++)
        e2e_pushf(e.c, "default", "{\"id\":\"cs-%d\",\"task\":\"echo\",\"countdown\":2}", i);
    for (int i = 1; i <= DEAD; i++)
        e2e_pushf(e.c, "default", "{\"id\":\"cs-dead-%d\",\"task\":\"no_such_task\"}", i);
    for (int i = 1; i <= N; i++) {
        char id[32];
        snprintf(id, sizeof id, "cs-%d", i);
        json_t *r = e2e_wait_result(e.c, id, "SUCCESS", 20.0);
        ASSERT(r != NULL);
        double now = e2e_redis_time(e.c);
        double started = e2e_jnum(r, "started_at"), finished = e2e_jnum(r, "finished_at");
        /* Never before its due time on Redis's clock; dated on Redis's clock. */
        if (!(started >= pushed + 2 - 0.01 && finished <= now + 1 && finished >= pushed))
            test__fail(__FILE__, __LINE__,
                       "%s by %s: pushed %.3f, started %.3f, finished %.3f, now %.3f", id,
                       e2e_jstr(r, "worker"), pushed, started, finished, now);
        by_ahead += strncmp(e2e_jstr(r, "worker"), "ahead:", 6) == 0;
        json_decref(r);
    }
    ASSERT(e2e_wait_dead(e.c, DEAD, 20.0));
    ASSERT(wait_processed(e.c, N + DEAD, 20.0));
    double now = e2e_redis_time(e.c);

    /* Dead letters, as workerctl lists them. */
    ctlrun r;
    CTL_RUN(&r, "-b", url, "dead", "list", "--json");
    ASSERT_EQ(r.code, 0);
    json_t *doc = ctlrun_json(&r), *list = json_object_get(doc, "entries"), *d;
    size_t i;
    ASSERT_EQ(json_array_size(list), DEAD);
    json_array_foreach(list, i, d) {
        ASSERT_ON_REDIS_CLOCK("a dead letter's time", e2e_jnum(d, "time"), pushed, now);
    }
    json_decref(doc);
    ctlrun_free(&r);

    /* Task events. */
    redisReply *ev = redisCommand(e.c, "XRANGE workerd:events - +");
    ASSERT(ev != NULL && ev->type == REDIS_REPLY_ARRAY && ev->elements >= N);
    for (i = 0; i < ev->elements; i++) {
        const redisReply *f = ev->element[i]->element[1];
        for (size_t j = 0; j + 1 < f->elements; j += 2)
            if (strcmp(f->element[j]->str, "time") == 0)
                ASSERT_ON_REDIS_CLOCK("an event's time", atof(f->element[j + 1]->str), pushed, now);
    }
    freeReplyObject(ev);

    /* Heartbeats: the beat workerd-web's beat_age is counted from (--heartbeat 1), and the
     * start workerctl's UP column is. */
    CTL_RUN(&r, "-b", url, "workers", "--json");
    ASSERT_EQ(r.code, 0);
    list = ctlrun_json(&r);
    ASSERT_EQ(json_array_size(list), 2);
    json_array_foreach(list, i, d) {
        ASSERT_ON_REDIS_CLOCK("a worker's start", e2e_jnum(d, "started"), begun, pushed);
        redisReply *b = redisCommand(e.c, "HGET workerd:worker:%s beat", e2e_jstr(d, "id"));
        ASSERT(b != NULL && b->type == REDIS_REPLY_STRING);
        ASSERT_ON_REDIS_CLOCK("a heartbeat's beat", atof(b->str), now - 1, now);
        freeReplyObject(b);
    }
    json_decref(list);
    ctlrun_free(&r);

    /* Per-minute counts: every one in a minute of Redis's clock between the push and now
     * (counted after the push, carried before now: no slack needed). */
    double after = e2e_redis_time(e.c);
    redisReply *keys = redisCommand(e.c, "KEYS workerd:stats:minute:*");
    ASSERT(keys != NULL && keys->type == REDIS_REPLY_ARRAY && keys->elements > 0);
    for (i = 0; i < keys->elements; i++) {
        long long m = atoll(strrchr(keys->element[i]->str, ':') + 1);
        if (!(m >= (long long)(pushed / 60) && m <= (long long)(after / 60)))
            test__fail(__FILE__, __LINE__, "counts in minute %lld, outside %lld .. %lld", m,
                       (long long)(pushed / 60), (long long)(after / 60));
    }
    freeReplyObject(keys);

    /* workerctl on a host 30 s ahead counts ages on Redis's clock too (a host behind would
     * see negative ages, shown as 0s). Everything here is a few seconds old. */
    const char *asan = getenv("ASAN_OPTIONS");
    char preload[256], asan_opts[1024];
    snprintf(preload, sizeof preload, "LD_PRELOAD=%s", lib);
    snprintf(asan_opts, sizeof asan_opts, "ASAN_OPTIONS=%s%sverify_asan_link_order=0",
             asan ? asan : "", asan ? ":" : "");
    const char *ahead_env[] = {preload, "FAKETIME=+30s", asan_opts, NULL};
    const char *dead_args[] = {"-b", url, "dead", "list", NULL};
    CTL_RUN_ENV(&r, ahead_env, dead_args);
    ASSERT_EQ(r.code, 0);
    ages_at_most(r.out, 1, 10, "workerctl dead list, AGE");
    ctlrun_free(&r);
    const char *workers_args[] = {"-b", url, "workers", NULL};
    CTL_RUN_ENV(&r, ahead_env, workers_args);
    ASSERT_EQ(r.code, 0);
    ages_at_most(r.out, 5, 10, "workerctl workers, UP");
    ctlrun_free(&r);

    printf("skew: %d tasks ran on the worker 30 s ahead, %d on the one 30 s behind\n", by_ahead,
           N - by_ahead);
    for (int k = 0; k < 2; k++) {
        ASSERT_EQ(e2e_log_count(&w[k], "recovered the messages of dead workers"), 0);
        e2e_worker_signal(&w[k], SIGTERM);
        ASSERT_EQ(e2e_worker_wait(&w[k], 15.0), 0);
        e2e_worker_stop(&w[k]);
    }
    e2e_env_end(&e);
}
