/*
 * test_queue.c - green_queue behaves like gevent's Queue: FIFO order, get parks while
 * empty and put while full, and a greenlet killed or timed out while parked takes or adds
 * nothing and strands nobody: the item (or free slot) reaches the next waiter or stays
 * queued, even when the waiter's deadline fires in the same loop iteration as the put.
 *
 * Each TEST runs a main greenlet under green_run and asserts on what the greenlets
 * recorded. "Let the waiters park" is one green_yield: every spawned greenlet runs until
 * it parks before the main greenlet continues.
 */
#include "green_sync.h"
#include "testlib.h"

#include <ev.h>
#include <stdint.h>

/* A greenlet that performs one queue operation and records the outcome. */
typedef struct waiter {
    green_queue *queue;
    double timeout;
    int rc;
    bool done;
    void *item;
} waiter;

static void run_main(green_fn fn, void *arg) {
    ASSERT_EQ(green_run(NULL, NULL, fn, arg, NULL), 0);
}

/* Hog the CPU without yielding, so that the loop's timers pile up. */
static void spin_cpu(double seconds) {
    double t0 = test_now();
    while (test_now() - t0 < seconds) {
    }
}

#define ITEM(n) ((void *)(intptr_t)(n))
#define NUM(p) ((int)(intptr_t)(p))

static void *queue_getter_main(void *arg) {
    waiter *w = arg;
    w->rc = green_queue_get(w->queue, &w->item, w->timeout);
    w->done = true;
    return NULL;
}

static void *queue_putter_main(void *arg) {
    waiter *w = arg;
    w->rc = green_queue_put(w->queue, w->item, w->timeout);
    w->done = true;
    return NULL;
}

static void *queue_fifo(void *arg) {
    (void)arg;
    green_queue q;
    green_queue_init(&q, 0);
    /* Interleave puts and gets so the ring wraps and grows with items straddling the
     * end: the order must survive both. */
    int next_put = 1, next_get = 1;
    for (int round = 0; round < 50; round++) {
        for (int i = 0; i < round % 7 + 3; i++)
            ASSERT_EQ(green_queue_put(&q, ITEM(next_put++), 0), 0);
        for (int i = 0; i < round % 5 + 1; i++) {
            void *item = NULL;
            ASSERT_EQ(green_queue_get(&q, &item, 0), 0);
            ASSERT_EQ(NUM(item), next_get++);
        }
    }
    ASSERT_EQ(green_queue_size(&q), (size_t)(next_put - next_get));
    void *item;
    while (green_queue_try_get(&q, &item) == 0)
        ASSERT_EQ(NUM(item), next_get++);
    ASSERT_EQ(next_get, next_put);
    green_queue_destroy(&q);
    return NULL;
}

TEST(queue_is_fifo_across_growth_and_wrap) {
    run_main(queue_fifo, NULL);
}

static void *queue_get_blocks(void *arg) {
    (void)arg;
    green_queue q;
    green_queue_init(&q, 0);
    waiter w = {.queue = &q, .timeout = -1, .rc = 99};
    green_t g;
    ASSERT_EQ(green_spawn(&g, queue_getter_main, &w), 0);
    green_yield();
    green_yield();
    ASSERT(!w.done);
    ASSERT_EQ(green_queue_put(&q, ITEM(5), -1), 0);
    ASSERT_EQ(green_join(g, NULL), 0);
    ASSERT_EQ(w.rc, 0);
    ASSERT_EQ(NUM(w.item), 5);
    ASSERT_EQ(green_queue_size(&q), 0);
    green_queue_destroy(&q);
    return NULL;
}

TEST(queue_get_blocks_until_put) {
    run_main(queue_get_blocks, NULL);
}

static void *queue_put_blocks(void *arg) {
    (void)arg;
    green_queue q;
    green_queue_init(&q, 2);
    ASSERT_EQ(green_queue_capacity(&q), 2);
    ASSERT_EQ(green_queue_put(&q, ITEM(1), -1), 0);
    ASSERT_EQ(green_queue_put(&q, ITEM(2), -1), 0);
    waiter w = {.queue = &q, .timeout = -1, .rc = 99, .item = ITEM(3)};
    green_t g;
    ASSERT_EQ(green_spawn(&g, queue_putter_main, &w), 0);
    green_yield();
    green_yield();
    ASSERT(!w.done);
    ASSERT_EQ(green_queue_size(&q), 2);
    void *item = NULL;
    ASSERT_EQ(green_queue_get(&q, &item, -1), 0);
    ASSERT_EQ(NUM(item), 1);
    ASSERT_EQ(green_join(g, NULL), 0);
    ASSERT_EQ(w.rc, 0);
    ASSERT_EQ(green_queue_size(&q), 2);
    ASSERT_EQ(green_queue_get(&q, &item, 0), 0);
    ASSERT_EQ(NUM(item), 2);
    ASSERT_EQ(green_queue_get(&q, &item, 0), 0);
    ASSERT_EQ(NUM(item), 3);
    green_queue_destroy(&q);
    return NULL;
}

TEST(queue_put_blocks_while_full_until_get) {
    run_main(queue_put_blocks, NULL);
}

static void *queue_try_ops(void *arg) {
    (void)arg;
    green_queue q;
    green_queue_init(&q, 1);
    void *item = ITEM(77);
    ASSERT_EQ(green_queue_try_get(&q, &item), -EAGAIN);
    ASSERT_EQ(NUM(item), 77);
    ASSERT_EQ(green_queue_try_put(&q, ITEM(1)), 0);
    ASSERT_EQ(green_queue_try_put(&q, ITEM(2)), -EAGAIN);
    ASSERT_EQ(green_queue_size(&q), 1);
    ASSERT_EQ(green_queue_try_get(&q, &item), 0);
    ASSERT_EQ(NUM(item), 1);
    green_queue_destroy(&q);
    return NULL;
}

TEST(queue_try_put_full_and_try_get_empty_return_eagain) {
    run_main(queue_try_ops, NULL);
}

static void *queue_timeouts(void *arg) {
    (void)arg;
    green_queue q;
    green_queue_init(&q, 1);
    void *item = ITEM(77);
    double t0 = test_now();
    ASSERT_EQ(green_queue_get(&q, &item, 0.1), -ETIMEDOUT);
    ASSERT_RANGE(test_now() - t0, 0.09, TEST_SOON);
    ASSERT_EQ(NUM(item), 77);
    ASSERT_EQ(green_queue_put(&q, ITEM(1), 0), 0);
    t0 = test_now();
    ASSERT_EQ(green_queue_put(&q, ITEM(2), 0.1), -ETIMEDOUT);
    ASSERT_RANGE(test_now() - t0, 0.09, TEST_SOON);
    ASSERT_EQ(green_queue_size(&q), 1);
    ASSERT_EQ(green_queue_get(&q, &item, 0), 0);
    ASSERT_EQ(NUM(item), 1);
    ASSERT_EQ(green_queue_get(&q, &item, 0), -ETIMEDOUT);
    green_queue_destroy(&q);
    return NULL;
}

TEST(queue_get_and_put_time_out_without_taking_or_adding) {
    run_main(queue_timeouts, NULL);
}

static void *queue_killed(void *arg) {
    (void)arg;
    green_queue q;
    green_queue_init(&q, 1);
    waiter gw = {.queue = &q, .timeout = -1, .rc = 99};
    green_t gg;
    ASSERT_EQ(green_spawn(&gg, queue_getter_main, &gw), 0);
    green_yield();
    ASSERT_EQ(green_kill(gg), 0);
    ASSERT_EQ(green_join(gg, NULL), 0);
    ASSERT_EQ(gw.rc, -ECANCELED);

    ASSERT_EQ(green_queue_put(&q, ITEM(1), 0), 0);
    waiter pw = {.queue = &q, .timeout = -1, .rc = 99, .item = ITEM(2)};
    green_t pg;
    ASSERT_EQ(green_spawn(&pg, queue_putter_main, &pw), 0);
    green_yield();
    ASSERT_EQ(green_kill(pg), 0);
    ASSERT_EQ(green_join(pg, NULL), 0);
    ASSERT_EQ(pw.rc, -ECANCELED);

    /* The killed getter took nothing, the killed putter added nothing. */
    ASSERT_EQ(green_queue_size(&q), 1);
    void *item = NULL;
    ASSERT_EQ(green_queue_get(&q, &item, 0), 0);
    ASSERT_EQ(NUM(item), 1);
    green_queue_destroy(&q);
    return NULL;
}

TEST(queue_get_and_put_killed_return_ecanceled_and_change_nothing) {
    run_main(queue_killed, NULL);
}

static void *queue_scope(void *arg) {
    (void)arg;
    green_queue q;
    green_queue_init(&q, 0);
    green_timeout t;
    green_timeout_start(&t, 0.05);
    void *item;
    ASSERT_EQ(green_queue_get(&q, &item, -1), -ETIMEDOUT);
    ASSERT(green_timeout_end(&t));
    green_queue_destroy(&q);
    return NULL;
}

TEST(queue_get_honours_timeout_scope) {
    run_main(queue_scope, NULL);
}

static void *queue_stale_killed_getter(void *arg) {
    (void)arg;
    green_queue q;
    green_queue_init(&q, 0);
    waiter a = {.queue = &q, .timeout = -1, .rc = 99};
    waiter b = {.queue = &q, .timeout = -1, .rc = 99};
    green_t ga, gb;
    ASSERT_EQ(green_spawn(&ga, queue_getter_main, &a), 0);
    ASSERT_EQ(green_spawn(&gb, queue_getter_main, &b), 0);
    green_yield();
    /* a is first in line but already on its way out when the item arrives: with no
     * yield in between, it is still linked as a waiter, just no longer parked. */
    ASSERT_EQ(green_kill(ga), 0);
    ASSERT_EQ(green_queue_put(&q, ITEM(9), -1), 0);
    ASSERT_EQ(green_join(ga, NULL), 0);
    ASSERT_EQ(green_join(gb, NULL), 0);
    ASSERT_EQ(a.rc, -ECANCELED);
    ASSERT_EQ(b.rc, 0);
    ASSERT_EQ(NUM(b.item), 9);
    ASSERT_EQ(green_queue_size(&q), 0);
    green_queue_destroy(&q);
    return NULL;
}

TEST(queue_item_skips_a_killed_getter_and_reaches_the_next) {
    run_main(queue_stale_killed_getter, NULL);
}

static void put_item_cb(struct ev_loop *loop, ev_timer *t, int revents) {
    (void)loop;
    (void)revents;
    ASSERT_EQ(green_queue_try_put(t->data, ITEM(1)), 0);
}

static void *queue_timeout_races_put(void *arg) {
    (void)arg;
    /* The getter's deadline and the hub's put expire in the same loop iteration (the
     * main greenlet hogs the CPU past both), so whichever libev runs first, the getter
     * either gets the item or times out while the item goes to the second getter. */
    for (int round = 0; round < 20; round++) {
        green_queue q;
        green_queue_init(&q, 0);
        waiter a = {.queue = &q, .timeout = 0.01, .rc = 99};
        waiter b = {.queue = &q, .timeout = 10, .rc = 99};
        green_t ga, gb;
        ASSERT_EQ(green_spawn(&ga, queue_getter_main, &a), 0);
        ASSERT_EQ(green_spawn(&gb, queue_getter_main, &b), 0);
        green_yield();
        ev_timer t;
        ev_timer_init(&t, put_item_cb, 0.01 + (round % 3) * 0.001, 0);
        t.data = &q;
        ev_timer_start(green_loop(), &t);
        spin_cpu(0.03);
        ASSERT_EQ(green_join(ga, NULL), 0);
        if (a.rc == 0) {
            /* a won the item; b still waits: feed it so the round ends. */
            ASSERT_EQ(NUM(a.item), 1);
            ASSERT_EQ(green_queue_put(&q, ITEM(2), -1), 0);
            ASSERT_EQ(green_join(gb, NULL), 0);
            ASSERT_EQ(NUM(b.item), 2);
        } else {
            ASSERT_EQ(a.rc, -ETIMEDOUT);
            ASSERT_EQ(green_join(gb, NULL), 0);
            ASSERT_EQ(b.rc, 0);
            ASSERT_EQ(NUM(b.item), 1);
        }
        ASSERT_EQ(b.rc, 0);
        ASSERT_EQ(green_queue_size(&q), 0);
        ev_timer_stop(green_loop(), &t);
        green_queue_destroy(&q);
    }
    return NULL;
}

TEST(queue_getter_timing_out_as_item_arrives_does_not_lose_it) {
    run_main(queue_timeout_races_put, NULL);
}

static void *queue_stale_killed_putter(void *arg) {
    (void)arg;
    green_queue q;
    green_queue_init(&q, 1);
    ASSERT_EQ(green_queue_put(&q, ITEM(1), 0), 0);
    waiter a = {.queue = &q, .timeout = -1, .rc = 99, .item = ITEM(2)};
    waiter b = {.queue = &q, .timeout = -1, .rc = 99, .item = ITEM(3)};
    green_t ga, gb;
    ASSERT_EQ(green_spawn(&ga, queue_putter_main, &a), 0);
    ASSERT_EQ(green_spawn(&gb, queue_putter_main, &b), 0);
    green_yield();
    ASSERT_EQ(green_kill(ga), 0);
    void *item = NULL;
    ASSERT_EQ(green_queue_get(&q, &item, 0), 0);
    ASSERT_EQ(NUM(item), 1);
    ASSERT_EQ(green_join(ga, NULL), 0);
    ASSERT_EQ(green_join(gb, NULL), 0);
    ASSERT_EQ(a.rc, -ECANCELED);
    ASSERT_EQ(b.rc, 0);
    ASSERT_EQ(green_queue_size(&q), 1);
    ASSERT_EQ(green_queue_get(&q, &item, 0), 0);
    ASSERT_EQ(NUM(item), 3);
    green_queue_destroy(&q);
    return NULL;
}

TEST(queue_free_slot_skips_a_killed_putter_and_reaches_the_next) {
    run_main(queue_stale_killed_putter, NULL);
}

static void *queue_stolen_item(void *arg) {
    (void)arg;
    green_queue q;
    green_queue_init(&q, 0);
    waiter w = {.queue = &q, .timeout = -1, .rc = 99};
    green_t g;
    ASSERT_EQ(green_spawn(&g, queue_getter_main, &w), 0);
    green_yield();
    /* Wake the getter, then take the item back before it runs. */
    ASSERT_EQ(green_queue_try_put(&q, ITEM(1)), 0);
    void *item = NULL;
    ASSERT_EQ(green_queue_try_get(&q, &item), 0);
    ASSERT_EQ(NUM(item), 1);
    green_yield();
    green_yield();
    ASSERT(!w.done); /* it looked, found nothing, and parked again */
    ASSERT_EQ(green_queue_put(&q, ITEM(2), -1), 0);
    ASSERT_EQ(green_join(g, NULL), 0);
    ASSERT_EQ(w.rc, 0);
    ASSERT_EQ(NUM(w.item), 2);
    green_queue_destroy(&q);
    return NULL;
}

TEST(queue_woken_getter_parks_again_when_its_item_was_taken) {
    run_main(queue_stolen_item, NULL);
}

static void *queue_from_hub(void *arg) {
    (void)arg;
    green_queue q;
    green_queue_init(&q, 0);
    ev_timer t;
    ev_timer_init(&t, put_item_cb, 0.02, 0);
    t.data = &q;
    ev_timer_start(green_loop(), &t);
    void *item = NULL;
    ASSERT_EQ(green_queue_get(&q, &item, 5), 0);
    ASSERT_EQ(NUM(item), 1);
    ev_timer_stop(green_loop(), &t);
    green_queue_destroy(&q);
    return NULL;
}

TEST(queue_try_put_from_hub_callback_wakes_getter) {
    run_main(queue_from_hub, NULL);
}

static void *queue_many_getters(void *arg) {
    (void)arg;
    /* Ten getters, ten items put one by one with yields in between: each getter gets
     * exactly one item, and they are served in the order they parked. */
    green_queue q;
    green_queue_init(&q, 0);
    waiter w[10];
    green_t g[10];
    for (int i = 0; i < 10; i++) {
        w[i] = (waiter){.queue = &q, .timeout = 10, .rc = 99};
        ASSERT_EQ(green_spawn(&g[i], queue_getter_main, &w[i]), 0);
    }
    green_yield();
    for (int i = 0; i < 10; i++)
        ASSERT_EQ(green_queue_put(&q, ITEM(i), -1), 0);
    for (int i = 0; i < 10; i++) {
        ASSERT_EQ(green_join(g[i], NULL), 0);
        ASSERT_EQ(w[i].rc, 0);
        ASSERT_EQ(NUM(w[i].item), i);
    }
    green_queue_destroy(&q);
    return NULL;
}

TEST(queue_serves_parked_getters_in_order) {
    run_main(queue_many_getters, NULL);
}
