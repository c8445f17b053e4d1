/*
 * test_pool.c - green_pool behaves like gevent.pool.Pool(size): never more than `size`
 * members at once, spawn parks while full (and gives up cleanly on timeout or kill),
 * join waits for every member, kill_all reaches members whether or not they started.
 *
 * Members record what they saw in a shared `tally`; the main greenlet asserts on it.
 */
#include "green_pool.h"
#include "green_sync.h"
#include "testlib.h"

#include <ev.h>
#include <stdint.h>

typedef struct tally {
    green_pool pool;
    green_event gate; /* members that wait for it park here */
    double sleep;     /* members that sleep sleep this long */
    int started;
    int finished;
    int cancelled; /* members whose blocking call returned -ECANCELED */
    int current;
    int max_current;
} tally;

static void run_main(green_fn fn, void *arg) {
    ASSERT_EQ(green_run(NULL, NULL, fn, arg, NULL), 0);
}

static void enter(tally *t) {
    t->started++;
    if (++t->current > t->max_current)
        t->max_current = t->current;
}

static void leave(tally *t, int rc) {
    t->current--;
    if (rc == -ECANCELED)
        t->cancelled++;
    else
        t->finished++;
}

static void *sleeper(void *arg) {
    tally *t = arg;
    enter(t);
    leave(t, green_sleep(t->sleep));
    return NULL;
}

static void *gate_waiter(void *arg) {
    tally *t = arg;
    enter(t);
    leave(t, green_event_wait(&t->gate, -1));
    return NULL;
}

static void tally_init(tally *t, size_t size) {
    memset(t, 0, sizeof(*t));
    green_pool_init(&t->pool, size);
    green_event_init(&t->gate);
}

static void tally_destroy(tally *t) {
    green_pool_destroy(&t->pool);
    green_event_destroy(&t->gate);
}

/* A greenlet that spawns one member into the pool and records the outcome. */
typedef struct spawner {
    tally *t;
    green_fn fn;
    double timeout;
    int rc;
    bool done;
} spawner;

static void *spawner_main(void *arg) {
    spawner *s = arg;
    s->rc = green_pool_spawn(&s->t->pool, s->fn, s->t, s->timeout);
    s->done = true;
    return NULL;
}

/* ------------------------------------------------------------------------------------ */

static void *never_exceeds(void *arg) {
    tally *t = arg;
    t->sleep = 0.01;
    for (int i = 0; i < 10; i++) {
        ASSERT_EQ(green_pool_spawn(&t->pool, sleeper, t, -1), 0);
        ASSERT(green_pool_running(&t->pool) <= 2);
    }
    ASSERT_EQ(green_pool_join(&t->pool, -1), 0);
    return NULL;
}

TEST(pool_of_two_never_runs_a_third_at_once) {
    tally t;
    tally_init(&t, 2);
    run_main(never_exceeds, &t);
    ASSERT_EQ(t.max_current, 2);
    ASSERT_EQ(t.finished, 10);
    ASSERT_EQ(green_pool_running(&t.pool), 0);
    tally_destroy(&t);
}

static void *spawn_blocks(void *arg) {
    tally *t = arg;
    ASSERT_EQ(green_pool_spawn(&t->pool, gate_waiter, t, -1), 0);
    ASSERT_EQ(green_pool_free_slots(&t->pool), 0);
    spawner s = {.t = t, .fn = sleeper, .timeout = -1, .rc = 99};
    green_t g;
    ASSERT_EQ(green_spawn(&g, spawner_main, &s), 0);
    green_yield();
    green_yield();
    ASSERT(!s.done);
    ASSERT_EQ(t->started, 1);
    green_event_set(&t->gate);
    ASSERT_EQ(green_join(g, NULL), 0);
    ASSERT_EQ(s.rc, 0);
    ASSERT_EQ(green_pool_join(&t->pool, -1), 0);
    return NULL;
}

TEST(pool_spawn_parks_while_full_until_a_member_ends) {
    tally t;
    tally_init(&t, 1);
    run_main(spawn_blocks, &t);
    ASSERT_EQ(t.started, 2);
    ASSERT_EQ(t.finished, 2);
    ASSERT_EQ(t.max_current, 1);
    tally_destroy(&t);
}

static void *spawn_times_out(void *arg) {
    tally *t = arg;
    ASSERT_EQ(green_pool_spawn(&t->pool, gate_waiter, t, -1), 0);
    double t0 = test_now();
    ASSERT_EQ(green_pool_spawn(&t->pool, sleeper, t, 0.1), -ETIMEDOUT);
    ASSERT_RANGE(test_now() - t0, 0.09, TEST_SOON);
    ASSERT_EQ(green_pool_running(&t->pool), 1);
    green_timeout scope;
    green_timeout_start(&scope, 0.05);
    ASSERT_EQ(green_pool_spawn(&t->pool, sleeper, t, -1), -ETIMEDOUT);
    ASSERT(green_timeout_end(&scope));
    green_event_set(&t->gate);
    ASSERT_EQ(green_pool_join(&t->pool, -1), 0);
    return NULL;
}

TEST(pool_spawn_times_out_without_spawning) {
    tally t;
    tally_init(&t, 1);
    run_main(spawn_times_out, &t);
    ASSERT_EQ(t.started, 1); /* only the gate waiter ever ran */
    ASSERT_EQ(t.finished, 1);
    tally_destroy(&t);
}

static void *spawn_killed(void *arg) {
    tally *t = arg;
    ASSERT_EQ(green_pool_spawn(&t->pool, gate_waiter, t, -1), 0);
    spawner s = {.t = t, .fn = sleeper, .timeout = -1, .rc = 99};
    green_t g;
    ASSERT_EQ(green_spawn(&g, spawner_main, &s), 0);
    green_yield();
    ASSERT(!s.done);
    ASSERT_EQ(green_kill(g), 0);
    ASSERT_EQ(green_join(g, NULL), 0);
    ASSERT_EQ(s.rc, -ECANCELED);
    ASSERT_EQ(green_pool_running(&t->pool), 1);
    green_event_set(&t->gate);
    ASSERT_EQ(green_pool_join(&t->pool, -1), 0);
    return NULL;
}

TEST(pool_spawn_killed_while_parked_spawns_nothing) {
    tally t;
    tally_init(&t, 1);
    run_main(spawn_killed, &t);
    ASSERT_EQ(t.started, 1);
    ASSERT_EQ(t.finished, 1);
    tally_destroy(&t);
}

static void *stale_spawner(void *arg) {
    tally *t = arg;
    ASSERT_EQ(green_pool_spawn(&t->pool, gate_waiter, t, -1), 0);
    spawner a = {.t = t, .fn = sleeper, .timeout = -1, .rc = 99};
    spawner b = {.t = t, .fn = sleeper, .timeout = -1, .rc = 99};
    green_t ga, gb;
    ASSERT_EQ(green_spawn(&ga, spawner_main, &a), 0);
    ASSERT_EQ(green_spawn(&gb, spawner_main, &b), 0);
    green_yield();
    /* a, first in line, is killed; the slot the gate waiter frees must reach b. */
    ASSERT_EQ(green_kill(ga), 0);
    green_event_set(&t->gate);
    ASSERT_EQ(green_join(ga, NULL), 0);
    ASSERT_EQ(green_join(gb, NULL), 0);
    ASSERT_EQ(a.rc, -ECANCELED);
    ASSERT_EQ(b.rc, 0);
    ASSERT_EQ(green_pool_join(&t->pool, -1), 0);
    return NULL;
}

TEST(pool_slot_skips_a_killed_spawner_and_reaches_the_next) {
    tally t;
    tally_init(&t, 1);
    run_main(stale_spawner, &t);
    ASSERT_EQ(t.started, 2);
    ASSERT_EQ(t.finished, 2);
    tally_destroy(&t);
}

static void *join_waits(void *arg) {
    tally *t = arg;
    t->sleep = 0.05;
    for (int i = 0; i < 5; i++)
        ASSERT_EQ(green_pool_spawn(&t->pool, sleeper, t, -1), 0);
    ASSERT_EQ(green_pool_running(&t->pool), 5);
    double t0 = test_now();
    ASSERT_EQ(green_pool_join(&t->pool, -1), 0);
    ASSERT_RANGE(test_now() - t0, 0.04, TEST_SOON);
    ASSERT_EQ(t->finished, 5);
    ASSERT_EQ(green_pool_running(&t->pool), 0);
    /* Joining an empty pool returns at once. */
    ASSERT_EQ(green_pool_join(&t->pool, 0), 0);
    return NULL;
}

TEST(pool_join_waits_for_every_member) {
    tally t;
    tally_init(&t, 0);
    run_main(join_waits, &t);
    ASSERT_EQ(t.finished, 5);
    tally_destroy(&t);
}

static void *join_times_out(void *arg) {
    tally *t = arg;
    ASSERT_EQ(green_pool_spawn(&t->pool, gate_waiter, t, -1), 0);
    double t0 = test_now();
    ASSERT_EQ(green_pool_join(&t->pool, 0.1), -ETIMEDOUT);
    ASSERT_RANGE(test_now() - t0, 0.09, TEST_SOON);
    ASSERT_EQ(green_pool_running(&t->pool), 1);
    green_event_set(&t->gate);
    ASSERT_EQ(green_pool_join(&t->pool, -1), 0);
    return NULL;
}

TEST(pool_join_times_out_while_members_run) {
    tally t;
    tally_init(&t, 0);
    run_main(join_times_out, &t);
    ASSERT_EQ(t.finished, 1);
    tally_destroy(&t);
}

typedef struct joiner {
    green_pool *pool;
    int rc;
} joiner;

static void *joiner_main(void *arg) {
    joiner *j = arg;
    j->rc = green_pool_join(j->pool, -1);
    return NULL;
}

static void *join_killed(void *arg) {
    tally *t = arg;
    ASSERT_EQ(green_pool_spawn(&t->pool, gate_waiter, t, -1), 0);
    joiner j = {.pool = &t->pool, .rc = 99};
    green_t g;
    ASSERT_EQ(green_spawn(&g, joiner_main, &j), 0);
    green_yield();
    ASSERT_EQ(green_kill(g), 0);
    ASSERT_EQ(green_join(g, NULL), 0);
    ASSERT_EQ(j.rc, -ECANCELED);
    green_event_set(&t->gate);
    ASSERT_EQ(green_pool_join(&t->pool, -1), 0);
    return NULL;
}

TEST(pool_join_killed_returns_ecanceled) {
    tally t;
    tally_init(&t, 0);
    run_main(join_killed, &t);
    ASSERT_EQ(t.finished, 1);
    ASSERT_EQ(t.cancelled, 0);
    tally_destroy(&t);
}

static void *kill_all(void *arg) {
    tally *t = arg;
    for (int i = 0; i < 3; i++)
        ASSERT_EQ(green_pool_spawn(&t->pool, gate_waiter, t, -1), 0);
    green_yield(); /* these three start and park on the gate */
    ASSERT_EQ(t->started, 3);
    for (int i = 0; i < 2; i++)
        ASSERT_EQ(green_pool_spawn(&t->pool, gate_waiter, t, -1), 0);
    /* these two have not started yet */
    ASSERT_EQ(green_pool_kill_all(&t->pool), 5);
    ASSERT_EQ(green_pool_join(&t->pool, 5), 0);
    ASSERT_EQ(green_pool_running(&t->pool), 0);
    return NULL;
}

TEST(pool_kill_all_cancels_running_members_and_unstarted_ones_never_run) {
    tally t;
    tally_init(&t, 0);
    run_main(kill_all, &t);
    ASSERT_EQ(t.started, 3);
    ASSERT_EQ(t.cancelled, 3);
    ASSERT_EQ(t.finished, 0);
    tally_destroy(&t);
}

static void *unbounded(void *arg) {
    tally *t = arg;
    ASSERT_EQ(green_pool_free_slots(&t->pool), SIZE_MAX);
    for (int i = 0; i < 100; i++)
        ASSERT_EQ(green_pool_spawn(&t->pool, gate_waiter, t, 0), 0);
    ASSERT_EQ(green_pool_running(&t->pool), 100);
    green_yield();
    green_event_set(&t->gate);
    ASSERT_EQ(green_pool_join(&t->pool, -1), 0);
    return NULL;
}

TEST(pool_size_zero_is_unbounded) {
    tally t;
    tally_init(&t, 0);
    run_main(unbounded, &t);
    ASSERT_EQ(t.max_current, 100);
    ASSERT_EQ(t.finished, 100);
    tally_destroy(&t);
}

static void *try_spawn(void *arg) {
    tally *t = arg;
    ASSERT_EQ(green_pool_free_slots(&t->pool), 2);
    ASSERT_EQ(green_pool_try_spawn(&t->pool, gate_waiter, t), 0);
    ASSERT_EQ(green_pool_free_slots(&t->pool), 1);
    ASSERT_EQ(green_pool_try_spawn(&t->pool, gate_waiter, t), 0);
    ASSERT_EQ(green_pool_free_slots(&t->pool), 0);
    ASSERT_EQ(green_pool_try_spawn(&t->pool, gate_waiter, t), -EAGAIN);
    ASSERT_EQ(green_pool_running(&t->pool), 2);
    green_event_set(&t->gate);
    ASSERT_EQ(green_pool_join(&t->pool, -1), 0);
    ASSERT_EQ(green_pool_free_slots(&t->pool), 2);
    return NULL;
}

TEST(pool_try_spawn_returns_eagain_when_full_and_slots_come_back) {
    tally t;
    tally_init(&t, 2);
    run_main(try_spawn, &t);
    ASSERT_EQ(t.started, 2);
    ASSERT_EQ(t.finished, 2);
    tally_destroy(&t);
}

static void try_spawn_cb(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop;
    (void)revents;
    tally *t = w->data;
    ASSERT_EQ(green_pool_try_spawn(&t->pool, sleeper, t), 0);
    ASSERT_EQ(green_pool_try_spawn(&t->pool, sleeper, t), -EAGAIN);
}

static void *try_spawn_from_hub(void *arg) {
    tally *t = arg;
    ev_timer w;
    ev_timer_init(&w, try_spawn_cb, 0.02, 0);
    w.data = t;
    ev_timer_start(green_loop(), &w);
    ASSERT_EQ(green_sleep(0.1), 0);
    ASSERT_EQ(green_pool_join(&t->pool, -1), 0);
    ev_timer_stop(green_loop(), &w);
    return NULL;
}

TEST(pool_try_spawn_from_hub_callback_runs_member) {
    tally t;
    tally_init(&t, 1);
    run_main(try_spawn_from_hub, &t);
    ASSERT_EQ(t.finished, 1);
    tally_destroy(&t);
}

static void *wait_available(void *arg) {
    tally *t = arg;
    t->sleep = 0.05;
    ASSERT_EQ(green_pool_spawn(&t->pool, sleeper, t, -1), 0);
    ASSERT_EQ(green_pool_wait_available(&t->pool, 0.01), -ETIMEDOUT);
    double t0 = test_now();
    ASSERT_EQ(green_pool_wait_available(&t->pool, TEST_NEVER), 0);
    ASSERT_RANGE(test_now() - t0, 0.02, TEST_SOON);
    ASSERT_EQ(green_pool_free_slots(&t->pool), 1);
    ASSERT_EQ(green_pool_try_spawn(&t->pool, sleeper, t), 0);
    ASSERT_EQ(green_pool_join(&t->pool, -1), 0);
    return NULL;
}

TEST(pool_wait_available_returns_when_a_member_ends) {
    tally t;
    tally_init(&t, 1);
    run_main(wait_available, &t);
    ASSERT_EQ(t.finished, 2);
    tally_destroy(&t);
}

static void *killed_member_frees_slot(void *arg) {
    tally *t = arg;
    ASSERT_EQ(green_pool_spawn(&t->pool, gate_waiter, t, -1), 0);
    green_yield();
    ASSERT_EQ(green_pool_kill_all(&t->pool), 1);
    /* The killed member unwinds and its slot comes back to a parked spawner. */
    t->sleep = 0;
    ASSERT_EQ(green_pool_spawn(&t->pool, sleeper, t, 5), 0);
    ASSERT_EQ(green_pool_join(&t->pool, -1), 0);
    return NULL;
}

TEST(pool_killed_member_frees_its_slot) {
    tally t;
    tally_init(&t, 1);
    run_main(killed_member_frees_slot, &t);
    ASSERT_EQ(t.cancelled, 1);
    ASSERT_EQ(t.finished, 1);
    tally_destroy(&t);
}

static void *many_spawners(void *arg) {
    tally *t = arg;
    /* Twenty greenlets compete for three slots; every one of them gets in eventually,
     * and never more than three members run at once. */
    t->sleep = 0.005;
    spawner s[20];
    green_t g[20];
    for (int i = 0; i < 20; i++) {
        s[i] = (spawner){.t = t, .fn = sleeper, .timeout = 10, .rc = 99};
        ASSERT_EQ(green_spawn(&g[i], spawner_main, &s[i]), 0);
    }
    for (int i = 0; i < 20; i++) {
        ASSERT_EQ(green_join(g[i], NULL), 0);
        ASSERT_EQ(s[i].rc, 0);
    }
    ASSERT_EQ(green_pool_join(&t->pool, -1), 0);
    return NULL;
}

TEST(pool_serves_every_parked_spawner) {
    tally t;
    tally_init(&t, 3);
    run_main(many_spawners, &t);
    ASSERT_EQ(t.finished, 20);
    ASSERT_EQ(t.max_current, 3);
    tally_destroy(&t);
}
