/*
 * test_worker_faults.c - workers that die or freeze under load, with exact accounting
 * (tests/lib/books.h): every enqueued id ends with one result, nothing is left in Redis,
 * and every task that ran twice ran first on the worker that was hit.
 *
 *   - SIGKILL: a random worker of three is killed every second or so under load and a
 *     replacement started; the dead workers' in-flight messages come back through
 *     recovery once their heartbeat (TTL 3 s) expires. Retries and countdowns are in the
 *     mix: tasks that ask for a retry and pass on the next attempt, and messages that
 *     wait in the scheduled set for up to 3 s, whoever is killed meanwhile. Chains and
 *     chords too: each link runs once unless its worker died under it, and each chord's
 *     callback exactly once, with every member's result, whoever was killed.
 *   - SIGSTOP: a worker holding sleep tasks is frozen past its heartbeat TTL; another
 *     worker recovers and runs its tasks; when it wakes, its late acks are refused (it
 *     logs that it was presumed dead) and the results stay those of the other worker.
 *
 * FAULTS_SEED in the environment replays a run's random choices (the seed is printed).
 */
#include "books.h"
#include "e2e.h"
#include "testlib.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static unsigned seed_random(void) {
    const char *env = getenv("FAULTS_SEED");
    unsigned seed = env ? (unsigned)strtoul(env, NULL, 10) : (unsigned)time(NULL) ^ getpid();
    printf("faults: FAULTS_SEED=%u\n", seed);
    srand(seed);
    return seed;
}

/* Uniform in [lo, hi]. */
static double uniform(double lo, double hi) {
    return lo + (hi - lo) * ((double)rand() / RAND_MAX);
}

static void push_sleep(redisContext *c, const char *id, double seconds) {
    char args[32];
    snprintf(args, sizeof args, "[%.3f]", seconds);
    e2e_push_task(c, "default", id, "sleep", args);
}

/* A task that asks for a retry (after 0.1 to 1 s) and passes on its first retry. */
static void push_retry(redisContext *c, const char *id) {
    char msg[256];
    snprintf(msg, sizeof msg,
             "{\"id\":\"%s\",\"task\":\"fail\",\"kwargs\":{\"retry\":true,\"retry_in\":%.3f,"
             "\"succeed_after\":1}}",
             id, uniform(0.1, 1.0));
    e2e_push(c, "default", msg);
}

/* An echo that waits 0.2 to 3 s in the scheduled set first. */
static void push_countdown(redisContext *c, const char *id) {
    char msg[256];
    snprintf(msg, sizeof msg, "{\"id\":\"%s\",\"task\":\"echo\",\"countdown\":%.3f}", id,
             uniform(0.2, 3.0));
    e2e_push(c, "default", msg);
}

/* Chain n: fx-n (sleep) -> fy-n (sleep, immutable) -> fz-n (echo of fy's result). */
static void push_chain(redisContext *c, int n) {
    e2e_pushf(c, "default",
              "{\"id\":\"fx-%d\",\"task\":\"sleep\",\"args\":[%.3f],\"chain\":[{\"id\":"
              "\"fy-%d\",\"task\":\"sleep\",\"args\":[%.3f],\"immutable\":true},{\"id\":"
              "\"fz-%d\",\"task\":\"echo\"}]}",
              n, uniform(0.1, 0.5), n, uniform(0.1, 0.5), n);
}

enum { CHORD_MEMBERS = 8 };

/* Chord n: fco-n with members fco-n.0 .. fco-n.7 (sleeps), callback fcb-n. */
static void push_chord(redisContext *c, int n) {
    char msg[2048];
    int len = snprintf(msg, sizeof msg, "{\"id\":\"fco-%d\",\"task\":\"chord\",\"args\":[[", n);
    for (int i = 0; i < CHORD_MEMBERS; i++)
        len += snprintf(msg + len, sizeof msg - (size_t)len,
                        "%s{\"task\":\"sleep\",\"args\":[%.3f]}", i ? "," : "", uniform(0.1, 0.5));
    snprintf(msg + len, sizeof msg - (size_t)len, "],{\"id\":\"fcb-%d\",\"task\":\"echo\"}]}", n);
    e2e_push(c, "default", msg);
}

static void expect_exit(e2e_worker *w, int want, double timeout) {
    int code = e2e_worker_wait(w, timeout);
    if (code != want)
        e2e_log_dump(w);
    ASSERT_EQ(code, want);
}

enum {
    KILL_N = 600,
    KILL_RETRY = 100,
    KILL_COUNTDOWN = 100,
    KILL_CANVAS = 20, /* chains, and chords */
    KILL_WORKERS = 3,
    KILLS = 5
};

TEST(random_sigkills_under_load_lose_nothing) {
    seed_random();
    test_redis r;
    test_redis_start(&r, NULL);
    redisContext *c = e2e_redis(r.port);
    books *b = books_new();
    books_ids(b, "f-", 1, KILL_N, "SUCCESS");
    books_ids(b, "fr-", 1, KILL_RETRY, "SUCCESS");
    books_ids(b, "fc-", 1, KILL_COUNTDOWN, "SUCCESS");
    books_ids(b, "fx-", 1, KILL_CANVAS, "SUCCESS");
    books_ids(b, "fy-", 1, KILL_CANVAS, "SUCCESS");
    books_ids(b, "fz-", 1, KILL_CANVAS, "SUCCESS");
    books_ids(b, "fco-", 1, KILL_CANVAS, "SUCCESS");
    books_ids(b, "fcb-", 1, KILL_CANVAS, "SUCCESS");
    for (int k = 1; k <= KILL_CANVAS; k++) {
        char prefix[32];
        snprintf(prefix, sizeof prefix, "fco-%d.", k);
        books_ids(b, prefix, 0, CHORD_MEMBERS - 1, "SUCCESS");
    }
    for (int i = 1; i <= KILL_N; i++) {
        char id[32];
        snprintf(id, sizeof id, "f-%d", i);
        push_sleep(c, id, uniform(0.1, 0.5));
        /* Retries and countdowns spread among the sleeps. */
        if (i % 6 == 0) {
            snprintf(id, sizeof id, "fr-%d", i / 6);
            push_retry(c, id);
            snprintf(id, sizeof id, "fc-%d", i / 6);
            push_countdown(c, id);
        }
        /* Chains and chords spread among them too. */
        if (i % 30 == 0) {
            push_chain(c, i / 30);
            push_chord(c, i / 30);
        }
    }

    /* Slots 0..2 are the first workers; each kill starts a replacement in the next. */
    e2e_worker w[KILL_WORKERS + KILLS];
    int logs[KILL_WORKERS + KILLS], live[KILL_WORKERS], started = 0;
    for (int i = 0; i < KILL_WORKERS; i++) {
        E2E_START(&w[started], r.port, "-c", "6", "--heartbeat", "1", "-l", "debug");
        logs[started] = books_log(b, w[started].log);
        live[i] = started++;
    }
    double t0 = test_now();
    for (int k = 0; k < KILLS; k++) {
        usleep((useconds_t)(uniform(0.7, 1.3) * 1e6));
        /* Under load: there is still work queued, so every worker is busy. */
        ASSERT(e2e_int(c, "LLEN workerd:queue:default") > 0);
        int slot = rand() % KILL_WORKERS, victim = live[slot];
        e2e_worker_signal(&w[victim], SIGKILL);
        ASSERT_EQ(e2e_worker_wait(&w[victim], 5.0), 128 + SIGKILL);
        books_log_fault(b, logs[victim], "SIGKILL", books_now());
        printf("faults: %.2f s: SIGKILLed worker %d\n", test_now() - t0, victim);
        E2E_START(&w[started], r.port, "-c", "6", "--heartbeat", "1", "-l", "debug");
        logs[started] = books_log(b, w[started].log);
        live[slot] = started++;
    }
    bool done = books_wait_done(b, c, 40.0);
    printf("faults: all results in %.2f s\n", test_now() - t0);
    if (!done)
        e2e_log_dump(&w[live[0]]);
    ASSERT(done);
    /* Every dead worker was recovered and deregistered: only the live ones are left. */
    double deadline = test_now() + 10.0;
    while (e2e_int(c, "HLEN workerd:workers") != KILL_WORKERS && test_now() < deadline)
        usleep(50000);
    ASSERT_EQ(e2e_int(c, "HLEN workerd:workers"), KILL_WORKERS);
    for (int i = 0; i < KILL_WORKERS; i++)
        e2e_worker_signal(&w[live[i]], SIGTERM);
    for (int i = 0; i < KILL_WORKERS; i++)
        expect_exit(&w[live[i]], 0, 15.0);

    books_check(b, c);
    /* The kills hit running tasks (each worker had 10 in flight): some ran twice. */
    ASSERT(books_get_totals(b).duplicates > 0);
    /* Every chord's callback got all its members' results, in order. */
    for (int k = 1; k <= KILL_CANVAS; k++) {
        char id[32];
        snprintf(id, sizeof id, "fcb-%d", k);
        json_t *res = e2e_result(c, id);
        json_t *list = json_array_get(json_object_get(res, "result"), 0);
        ASSERT_EQ(json_array_size(list), CHORD_MEMBERS);
        for (size_t i = 0; i < CHORD_MEMBERS; i++)
            ASSERT(json_is_real(json_array_get(list, i)));
        json_decref(res);
    }
    /* Every retrying task passed on its first retry, whatever died meanwhile. */
    for (int i = 1; i <= KILL_RETRY; i++) {
        char id[32];
        snprintf(id, sizeof id, "fr-%d", i);
        json_t *res = e2e_result(c, id);
        ASSERT_EQ(e2e_jnum(res, "retries"), 1);
        json_decref(res);
    }
    books_free(b);
    for (int i = 0; i < started; i++)
        e2e_worker_stop(&w[i]);
    redisFree(c);
    test_redis_stop(&r);
}

enum { STOP_HELD = 5, STOP_OTHERS = 40 };

TEST(stopped_worker_past_its_ttl_does_not_overwrite_results) {
    test_redis r;
    test_redis_start(&r, NULL);
    redisContext *c = e2e_redis(r.port);
    books *b = books_new();
    books_ids(b, "p-", 1, STOP_HELD, "SUCCESS");
    books_ids(b, "q-", 1, STOP_OTHERS, "SUCCESS");

    e2e_worker a, o;
    E2E_START_READY(&a, r.port, "-c", "5", "--heartbeat", "1", "-l", "debug", "-n", "frozen");
    int alog = books_log(b, a.log);
    for (int i = 1; i <= STOP_HELD; i++) {
        char id[32];
        snprintf(id, sizeof id, "p-%d", i);
        push_sleep(c, id, 2.0);
    }
    ASSERT(e2e_log_wait_n(&a, "sleep started (tag", STOP_HELD, 10.0));
    E2E_START_READY(&o, r.port, "-c", "10", "--heartbeat", "1", "-l", "debug", "-n", "other");
    books_log(b, o.log);

    /* Frozen for 5 s, past its 3 s TTL; meanwhile more work arrives for the other. */
    e2e_worker_signal(&a, SIGSTOP);
    for (int i = 1; i <= STOP_OTHERS / 2; i++) {
        char id[32];
        snprintf(id, sizeof id, "q-%d", i);
        push_sleep(c, id, 0.1);
    }
    usleep(5000000);
    e2e_worker_signal(&a, SIGCONT);
    books_log_fault(b, alog, "SIGSTOP", books_now());

    /* It wakes with its sleeps over: its acks are refused and it says why. */
    ASSERT(e2e_log_wait_n(&a, "was presumed dead", STOP_HELD, 10.0));
    /* Awake, it is a worker like any other again. */
    for (int i = STOP_OTHERS / 2 + 1; i <= STOP_OTHERS; i++) {
        char id[32];
        snprintf(id, sizeof id, "q-%d", i);
        push_sleep(c, id, 0.1);
    }
    bool done = books_wait_done(b, c, 20.0);
    if (!done) {
        e2e_log_dump(&a);
        e2e_log_dump(&o);
    }
    ASSERT(done);
    ASSERT_EQ(e2e_worker_wait(&a, 0), -1);
    e2e_worker_signal(&a, SIGTERM);
    e2e_worker_signal(&o, SIGTERM);
    expect_exit(&a, 0, 15.0);
    expect_exit(&o, 0, 15.0);

    books_check(b, c);
    for (int i = 1; i <= STOP_HELD; i++) {
        char id[32];
        snprintf(id, sizeof id, "p-%d", i);
        const char *by = books_result_worker(b, id);
        ASSERT(by && strncmp(by, "other:", 6) == 0);
        ASSERT_EQ(books_runs(b, id), 2);
    }
    ASSERT_EQ(books_get_totals(b).duplicates, STOP_HELD);
    books_free(b);
    e2e_worker_stop(&a);
    e2e_worker_stop(&o);
    redisFree(c);
    test_redis_stop(&r);
}
