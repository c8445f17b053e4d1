/*
 * test_threadpool.c - green_threadpool: blocking calls on OS threads that park only
 * their caller; cancellation and timeouts of parked callers, abandoned jobs released
 * exactly once, and a hub that ends with its pool idle.
 *
 * No test measures speed: jobs hold at a gate the test opens, or meet each other, so what
 * is running when a caller gives up never depends on how busy the machine is.
 */
#include "green.h"
#include "green_internal.h"
#include "green_threadpool.h"
#include "testlib.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

static void run(green_fn fn) {
    ASSERT_EQ(green_run(NULL, NULL, fn, NULL, NULL), 0);
}

/* A job's record, on the heap so that it can outlive a caller who gives up. The job waits
 * at its gate until the test opens it (then sleeps `after` seconds), so whether it is
 * still running never depends on how busy the machine is. The test may touch the record
 * until it opens the gate; after that the release hook may free it. */
typedef struct gated {
    atomic_int open;    /* set by the test: fn may finish */
    atomic_int started; /* set by fn */
    atomic_int ran;     /* set by fn when it finished: 1, or 2 if the gate never opened */
    double after;
} gated;

static void *gated_fn(void *arg) {
    gated *j = arg;
    atomic_store(&j->started, 1);
    double end = test_now() + TEST_NEVER;
    while (!atomic_load(&j->open) && test_now() < end)
        test_pause();
    bool opened = atomic_load(&j->open);
    if (j->after > 0) {
        struct timespec ts = {(time_t)j->after, (long)((j->after - (time_t)j->after) * 1e9)};
        nanosleep(&ts, NULL);
    }
    atomic_store(&j->ran, opened ? 1 : 2);
    return (void *)(uintptr_t)0x5eed;
}

static gated *gated_new(void) {
    return calloc(1, sizeof(gated));
}

static void gate_open(gated *j) {
    atomic_store(&j->open, 1);
}

/* The release hook: counts calls, remembers what fn had done, frees the record. */
static int releases, released_ran;
static void *released_ret;

static void release_gated(void *arg, void *ret) {
    gated *j = arg;
    releases++;
    released_ran = atomic_load(&j->ran);
    released_ret = ret;
    free(j);
}

static void reset_releases(void) {
    releases = released_ran = 0;
    released_ret = NULL;
}

static void *usleep_100ms(void *arg) {
    (void)arg;
    usleep(100000);
    return NULL;
}

/* Four jobs that each wait until all four are running at once: one after another, the
 * first would wait in vain (and return 1 when TEST_NEVER has passed). */
static atomic_int arrived;

static void *rendezvous_fn(void *arg) {
    (void)arg;
    atomic_fetch_add(&arrived, 1);
    double end = test_now() + TEST_NEVER;
    while (atomic_load(&arrived) < 4)
        if (test_now() > end)
            return (void *)1;
        else
            test_pause();
    return NULL;
}

static void *call_rendezvous(void *arg) {
    (void)arg;
    void *ret = (void *)2;
    int rc = green_threadpool_call(rendezvous_fn, NULL, &ret, -1);
    return rc == 0 ? ret : (void *)(intptr_t)rc;
}

static void *four_in_parallel_main(void *arg) {
    (void)arg;
    green_t g[4];
    atomic_store(&arrived, 0);
    for (int i = 0; i < 4; i++)
        ASSERT_EQ(green_spawn(&g[i], call_rendezvous, NULL), 0);
    for (int i = 0; i < 4; i++) {
        void *rc = (void *)1;
        ASSERT_EQ(green_join(g[i], &rc), 0);
        ASSERT(rc == NULL);
    }
    green_threadpool_stats st;
    green_threadpool_get_stats(&st);
    ASSERT_EQ(st.threads, 4);
    return NULL;
}

TEST(test_threadpool_runs_four_blocking_calls_in_parallel) {
    ASSERT_EQ(green_threadpool_set_size(4), 0);
    run(four_in_parallel_main);
}

static void *add_one(void *arg) {
    return (void *)((uintptr_t)arg + 1);
}

static void *result_main(void *arg) {
    (void)arg;
    for (uintptr_t i = 0; i < 5; i++) {
        void *ret = NULL;
        ASSERT_EQ(green_threadpool_call(add_one, (void *)i, &ret, 5), 0);
        ASSERT_EQ((uintptr_t)ret, i + 1);
    }
    /* Calls one after another reuse the one thread they needed. */
    green_threadpool_stats st;
    green_threadpool_get_stats(&st);
    ASSERT_EQ(st.threads, 1);
    ASSERT_EQ(st.running + st.queued + st.abandoned, 0);
    return NULL;
}

TEST(test_threadpool_returns_the_function_result) {
    run(result_main);
}

static atomic_int ticks;

static void *ticker(void *arg) {
    (void)arg;
    while (green_sleep(0.01) == 0)
        atomic_fetch_add(&ticks, 1);
    return NULL;
}

/* On a pool thread: waits until the hub's ticker has ticked five times, which it can only
 * do if the hub keeps running other greenlets while this call's caller is parked. */
static void *wait_for_ticks(void *arg) {
    (void)arg;
    double end = test_now() + TEST_NEVER;
    while (atomic_load(&ticks) < 5)
        if (test_now() > end)
            return (void *)0;
        else
            test_pause();
    return (void *)1;
}

static void *responsive_main(void *arg) {
    (void)arg;
    green_t t;
    atomic_store(&ticks, 0);
    ASSERT_EQ(green_spawn(&t, ticker, NULL), 0);
    void *ticked = NULL;
    ASSERT_EQ(green_threadpool_call(wait_for_ticks, NULL, &ticked, -1), 0);
    ASSERT(ticked == (void *)1);
    ASSERT_EQ(green_kill(t), 0);
    ASSERT_EQ(green_join(t, NULL), 0);
    return NULL;
}

TEST(test_threadpool_call_keeps_other_greenlets_running) {
    run(responsive_main);
}

static void *call_gated_ex(void *arg) {
    return (void *)(intptr_t)green_threadpool_call_ex(gated_fn, arg, NULL, -1, release_gated);
}

/* Start the pool's thread and let it go idle, so that the next job can start without
 * waiting for a thread to be created. */
static void warm_up(void) {
    ASSERT_EQ(green_threadpool_call(add_one, NULL, NULL, 5), 0);
}

/* Wait (on the hub's time) until a pool job runs. */
static void wait_for_running(void) {
    green_threadpool_stats st;
    double end = test_now() + TEST_NEVER;
    for (;;) {
        green_threadpool_get_stats(&st);
        if (st.running > 0)
            return;
        ASSERT(test_now() < end);
        ASSERT_EQ(green_sleep(0.01), 0);
    }
}

/* Wait (on the hub's time) until the release hook has run. */
static void wait_for_release(void) {
    double end = test_now() + TEST_NEVER;
    while (releases == 0) {
        ASSERT(test_now() < end);
        ASSERT_EQ(green_sleep(0.01), 0);
    }
}

/* Gives up on a gated job while it runs: by the call's own timeout, or by an enclosing
 * green_timeout scope when `scope`. The timeout must fire after a pool thread has taken
 * the job, and a busy machine can be slow to wake the thread: if the job was still queued
 * (withdrawn, released unrun), try again with a longer timeout. Returns the job, running
 * behind its closed gate and now the pool's, with releases reset. */
static gated *give_up_on_running_job(bool scope, double after) {
    for (double timeout = 0.05;; timeout *= 2) {
        ASSERT(timeout < TEST_SOON);
        reset_releases();
        gated *j = gated_new();
        j->after = after;
        int rc;
        if (scope) {
            green_timeout t;
            green_timeout_start(&t, timeout);
            rc = green_threadpool_call_ex(gated_fn, j, NULL, -1, release_gated);
            ASSERT(green_timeout_end(&t));
        } else {
            rc = green_threadpool_call_ex(gated_fn, j, NULL, timeout, release_gated);
        }
        ASSERT_EQ(rc, -ETIMEDOUT);
        if (releases == 0) {
            ASSERT_EQ(atomic_load(&j->started), 1);
            return j;
        }
        ASSERT_EQ(releases, 1); /* withdrawn from the queue: fn never ran */
        ASSERT_EQ(released_ran, 0);
    }
}

static void *cancel_main(void *arg) {
    (void)arg;
    reset_releases();
    gated *j = gated_new();
    green_t g;
    void *rc = NULL;
    ASSERT_EQ(green_spawn(&g, call_gated_ex, j), 0);
    wait_for_running();
    ASSERT_EQ(green_kill(g), 0);
    ASSERT_EQ(green_join(g, &rc), 0);
    ASSERT_EQ((intptr_t)rc, -ECANCELED);
    /* The job is still running, and the pool, not the caller, owns it now. */
    ASSERT_EQ(releases, 0);
    green_threadpool_stats st;
    green_threadpool_get_stats(&st);
    ASSERT_EQ(st.abandoned, 1);
    ASSERT_EQ(st.running, 1);
    gate_open(j);
    wait_for_release();
    ASSERT_EQ(releases, 1);
    ASSERT_EQ(released_ran, 1);
    ASSERT_EQ((uintptr_t)released_ret, 0x5eed);
    green_threadpool_get_stats(&st);
    ASSERT_EQ(st.abandoned + st.running, 0);
    return NULL;
}

TEST(test_threadpool_call_returns_ecanceled_when_killed_and_job_is_released) {
    run(cancel_main);
}

static void *timeout_main(void *arg) {
    (void)arg;
    warm_up();
    gated *j = give_up_on_running_job(false, 0);
    ASSERT_EQ(atomic_load(&j->ran), 0);
    gate_open(j);
    wait_for_release();
    ASSERT_EQ(releases, 1);
    ASSERT_EQ(released_ran, 1);
    return NULL;
}

TEST(test_threadpool_call_times_out_and_job_still_completes) {
    run(timeout_main);
}

static void *scope_timeout_main(void *arg) {
    (void)arg;
    warm_up();
    gated *j = give_up_on_running_job(true, 0);
    gate_open(j);
    wait_for_release();
    ASSERT_EQ(releases, 1);
    ASSERT_EQ(released_ran, 1);
    return NULL;
}

TEST(test_threadpool_call_honours_an_enclosing_timeout_scope) {
    run(scope_timeout_main);
}

static void *call_gated(void *arg) {
    return (void *)(intptr_t)green_threadpool_call(gated_fn, arg, NULL, -1);
}

static void *withdraw_main(void *arg) {
    (void)arg;
    reset_releases();
    gated busy = {0};
    green_t g;
    void *rc = NULL;
    /* The one thread is busy until the test opens the gate ... */
    ASSERT_EQ(green_spawn(&g, call_gated, &busy), 0);
    wait_for_running();
    /* ... so this job waits in the queue, and is withdrawn when its caller gives up. */
    gated *queued = gated_new();
    ASSERT_EQ(green_threadpool_call_ex(gated_fn, queued, NULL, 0.05, release_gated), -ETIMEDOUT);
    ASSERT_EQ(releases, 1);
    ASSERT_EQ(released_ran, 0);
    ASSERT(released_ret == NULL);
    gate_open(&busy);
    ASSERT_EQ(green_join(g, &rc), 0);
    ASSERT_EQ((intptr_t)rc, 0);
    ASSERT_EQ(atomic_load(&busy.ran), 1);
    ASSERT_EQ(releases, 1);
    return NULL;
}

TEST(test_threadpool_withdraws_a_queued_job_when_its_caller_gives_up) {
    ASSERT_EQ(green_threadpool_set_size(1), 0);
    run(withdraw_main);
    ASSERT_EQ(green_threadpool_set_size(4), 0);
}

static void *pending_kill_main(void *arg) {
    (void)arg;
    reset_releases();
    gated *j = gated_new();
    gate_open(j);
    ASSERT_EQ(green_kill(green_self()), 0);
    ASSERT_EQ(green_threadpool_call_ex(gated_fn, j, NULL, 5, release_gated), -ECANCELED);
    /* fn never ran, and the hook released the record before the call returned. */
    ASSERT_EQ(releases, 1);
    ASSERT_EQ(released_ran, 0);
    return NULL;
}

TEST(test_threadpool_call_with_pending_kill_never_runs_fn) {
    run(pending_kill_main);
}

static void *quick_call_main(void *arg) {
    (void)arg;
    void *ret = NULL;
    ASSERT_EQ(green_threadpool_call(add_one, NULL, &ret, 5), 0);
    ASSERT_EQ((uintptr_t)ret, 1);
    return NULL;
}

TEST(test_green_run_ends_with_an_idle_pool_alive) {
    /* The pool's watcher does not keep the loop alive (that would hang here until ctest's
     * timeout), and its thread is joined. */
    run(quick_call_main);
    green_threadpool_stats st;
    green_threadpool_get_stats(&st);
    ASSERT_EQ(st.threads, 0); /* the hub's pool is gone with it */
}

static void *no_timeout_main(void *arg) {
    (void)arg;
    /* No deadline, so no timer: only the pool's in-flight reference keeps the hub
     * polling instead of declaring everyone deadlocked. */
    ASSERT_EQ(green_threadpool_call(usleep_100ms, NULL, NULL, -1), 0);
    return NULL;
}

TEST(test_threadpool_call_without_timeout_is_not_a_deadlock) {
    run(no_timeout_main);
}

static void *idle_pool_main(void *arg) {
    (void)arg;
    ASSERT_EQ(green_threadpool_call(add_one, NULL, NULL, 5), 0);
    /* Parked with nothing that could wake us: the hub must see that (EDEADLK) rather
     * than sleep forever on the idle pool's watcher. */
    ASSERT_EQ(green__park(GREEN_FOREVER), -EDEADLK);
    return NULL;
}

TEST(test_idle_pool_does_not_keep_the_loop_alive) {
    run(idle_pool_main);
}

/* When the main greenlet returns, the abandoned job is still behind its gate; opening it
 * there lets fn run for 200 ms more, which green_run must wait for. */
static double main_returned_at;

static void *abandon_at_exit_main(void *arg) {
    (void)arg;
    warm_up();
    gated *j = give_up_on_running_job(false, 0.2);
    main_returned_at = test_now();
    gate_open(j);
    return NULL;
}

TEST(test_green_run_waits_for_an_abandoned_job_and_releases_it) {
    run(abandon_at_exit_main);
    ASSERT(test_now() - main_returned_at >= 0.15);
    ASSERT_EQ(releases, 1);
    ASSERT_EQ(released_ran, 1);
}

static void *busy_size_main(void *arg) {
    (void)arg;
    ASSERT_EQ(green_threadpool_call(add_one, NULL, NULL, 5), 0);
    ASSERT_EQ(green_threadpool_set_size(2), -EBUSY);
    return NULL;
}

TEST(test_threadpool_set_size_checks_its_argument) {
    ASSERT_EQ(green_threadpool_set_size(0), -EINVAL);
    ASSERT_EQ(green_threadpool_set_size(100000), -EINVAL);
    run(busy_size_main);
    ASSERT_EQ(green_threadpool_set_size(4), 0);
}
