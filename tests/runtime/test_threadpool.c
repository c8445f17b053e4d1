/*
 * test_threadpool.c - green_threadpool: blocking calls on OS threads that park only
 * their caller; cancellation and timeouts of parked callers, abandoned jobs released
 * exactly once, and a hub that ends with its pool idle.
 */
#include "green.h"
#include "green_internal.h"
#include "green_threadpool.h"
#include "testlib.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <unistd.h>

static void run(green_fn fn) {
    ASSERT_EQ(green_run(NULL, NULL, fn, NULL, NULL), 0);
}

/* A job's record, on the heap so that it can outlive a caller who gives up. */
typedef struct sleeper {
    unsigned usec;
    atomic_int ran; /* set by fn when its sleep is over */
} sleeper;

static void *sleep_fn(void *arg) {
    sleeper *s = arg;
    usleep(s->usec);
    atomic_store(&s->ran, 1);
    return (void *)(uintptr_t)0x5eed;
}

static sleeper *sleeper_new(unsigned usec) {
    sleeper *s = calloc(1, sizeof *s);
    s->usec = usec;
    return s;
}

/* The release hook: counts calls, remembers what fn had done, frees the record. */
static int releases, released_ran;
static void *released_ret;

static void release_sleeper(void *arg, void *ret) {
    sleeper *s = arg;
    releases++;
    released_ran = atomic_load(&s->ran);
    released_ret = ret;
    free(s);
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

static void *call_usleep_100ms(void *arg) {
    (void)arg;
    return (void *)(intptr_t)green_threadpool_call(usleep_100ms, NULL, NULL, 5);
}

static void *usleep_1ms(void *arg) {
    (void)arg;
    usleep(1000);
    return NULL;
}

static void *call_usleep_1ms(void *arg) {
    (void)arg;
    return (void *)(intptr_t)green_threadpool_call(usleep_1ms, NULL, NULL, 5);
}

static void *four_sleeps_main(void *arg) {
    (void)arg;
    green_t g[4];
    /* Start the four threads first: creating a thread is slow under valgrind on a busy
     * machine, and the claim here is about running, not starting. */
    for (int i = 0; i < 4; i++)
        ASSERT_EQ(green_spawn(&g[i], call_usleep_1ms, NULL), 0);
    for (int i = 0; i < 4; i++)
        ASSERT_EQ(green_join(g[i], NULL), 0);
    double t0 = test_now();
    for (int i = 0; i < 4; i++)
        ASSERT_EQ(green_spawn(&g[i], call_usleep_100ms, NULL), 0);
    for (int i = 0; i < 4; i++) {
        void *rc = (void *)1;
        ASSERT_EQ(green_join(g[i], &rc), 0);
        ASSERT_EQ((intptr_t)rc, 0);
    }
    /* In series they would take 400 ms. */
    ASSERT_RANGE(test_now() - t0, 0.09, 0.3);
    green_threadpool_stats st;
    green_threadpool_get_stats(&st);
    ASSERT_EQ(st.threads, 4);
    return NULL;
}

TEST(test_threadpool_runs_four_blocking_sleeps_in_parallel) {
    ASSERT_EQ(green_threadpool_set_size(4), 0);
    run(four_sleeps_main);
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

static int ticks;

static void *ticker(void *arg) {
    (void)arg;
    while (green_sleep(0.01) == 0)
        ticks++;
    return NULL;
}

static void *responsive_main(void *arg) {
    (void)arg;
    green_t t;
    ticks = 0;
    ASSERT_EQ(green_spawn(&t, ticker, NULL), 0);
    sleeper s = {.usec = 200000};
    ASSERT_EQ(green_threadpool_call(sleep_fn, &s, NULL, 5), 0);
    ASSERT_EQ(atomic_load(&s.ran), 1);
    /* About 20 ticks of 10 ms fit in 200 ms; a blocked hub would manage none. */
    ASSERT(ticks >= 5);
    ASSERT_EQ(green_kill(t), 0);
    ASSERT_EQ(green_join(t, NULL), 0);
    return NULL;
}

TEST(test_threadpool_call_keeps_other_greenlets_running) {
    run(responsive_main);
}

static void *call_sleeper_ex(void *arg) {
    return (void *)(intptr_t)green_threadpool_call_ex(sleep_fn, arg, NULL, -1, release_sleeper);
}

/* Start the pool's thread and let it go idle, so that the next job starts at once
 * rather than after a thread creation (slow under valgrind): a test that gives up on a
 * running job must not see it withdrawn from the queue instead. */
static void warm_up(void) {
    ASSERT_EQ(green_threadpool_call(add_one, NULL, NULL, 5), 0);
}

/* Wait until a pool job runs, at most 3 s. */
static void wait_for_running(void) {
    green_threadpool_stats st;
    for (int i = 0; i < 300; i++) {
        green_threadpool_get_stats(&st);
        if (st.running > 0)
            return;
        ASSERT_EQ(green_sleep(0.01), 0);
    }
    ASSERT(!"no pool job started within 3 s");
}

/* Wait (on the hub's time) until the release hook has run, at most 3 s. */
static void wait_for_release(void) {
    for (int i = 0; i < 300 && releases == 0; i++)
        ASSERT_EQ(green_sleep(0.01), 0);
}

static void *cancel_main(void *arg) {
    (void)arg;
    reset_releases();
    green_t g;
    void *rc = NULL;
    ASSERT_EQ(green_spawn(&g, call_sleeper_ex, sleeper_new(200000)), 0);
    wait_for_running();
    double t0 = test_now();
    ASSERT_EQ(green_kill(g), 0);
    ASSERT_EQ(green_join(g, &rc), 0);
    ASSERT_EQ((intptr_t)rc, -ECANCELED);
    ASSERT_RANGE(test_now() - t0, 0, 0.1);
    /* The job is still running, and the pool, not the caller, owns it now. */
    ASSERT_EQ(releases, 0);
    green_threadpool_stats st;
    green_threadpool_get_stats(&st);
    ASSERT_EQ(st.abandoned, 1);
    ASSERT_EQ(st.running, 1);
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
    reset_releases();
    warm_up();
    sleeper *s = sleeper_new(200000);
    double t0 = test_now();
    ASSERT_EQ(green_threadpool_call_ex(sleep_fn, s, NULL, 0.05, release_sleeper), -ETIMEDOUT);
    ASSERT_RANGE(test_now() - t0, 0.04, 0.15);
    ASSERT_EQ(releases, 0);
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
    reset_releases();
    warm_up();
    green_timeout t;
    green_timeout_start(&t, 0.05);
    int rc = green_threadpool_call_ex(sleep_fn, sleeper_new(200000), NULL, -1, release_sleeper);
    ASSERT(green_timeout_end(&t));
    ASSERT_EQ(rc, -ETIMEDOUT);
    wait_for_release();
    ASSERT_EQ(releases, 1);
    return NULL;
}

TEST(test_threadpool_call_honours_an_enclosing_timeout_scope) {
    run(scope_timeout_main);
}

static void *call_sleeper(void *arg) {
    return (void *)(intptr_t)green_threadpool_call(sleep_fn, arg, NULL, -1);
}

static void *withdraw_main(void *arg) {
    (void)arg;
    reset_releases();
    sleeper busy = {.usec = 200000};
    green_t g;
    void *rc = NULL;
    /* The one thread is busy for 200 ms ... */
    ASSERT_EQ(green_spawn(&g, call_sleeper, &busy), 0);
    ASSERT_EQ(green_yield(), 0);
    /* ... so this job waits in the queue, and is withdrawn when its caller gives up. */
    sleeper *queued = sleeper_new(1000);
    ASSERT_EQ(green_threadpool_call_ex(sleep_fn, queued, NULL, 0.05, release_sleeper), -ETIMEDOUT);
    ASSERT_EQ(releases, 1);
    ASSERT_EQ(released_ran, 0);
    ASSERT(released_ret == NULL);
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
    sleeper *s = sleeper_new(1000);
    ASSERT_EQ(green_kill(green_self()), 0);
    ASSERT_EQ(green_threadpool_call_ex(sleep_fn, s, NULL, 5, release_sleeper), -ECANCELED);
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
    double t0 = test_now();
    run(quick_call_main);
    /* The pool's watcher does not keep the loop alive, and its thread is joined. */
    ASSERT_RANGE(test_now() - t0, 0, 1);
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

static void *abandon_at_exit_main(void *arg) {
    (void)arg;
    reset_releases();
    warm_up();
    ASSERT_EQ(green_threadpool_call_ex(sleep_fn, sleeper_new(200000), NULL, 0.05, release_sleeper),
              -ETIMEDOUT);
    return NULL;
}

TEST(test_green_run_waits_for_an_abandoned_job_and_releases_it) {
    double t0 = test_now();
    run(abandon_at_exit_main);
    ASSERT_RANGE(test_now() - t0, 0.15, 2);
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
