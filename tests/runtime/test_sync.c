/*
 * test_sync.c - green_event and green_result behave like gevent's Event and AsyncResult:
 * who wakes, what they get, and what a greenlet sees when it is killed or times out while
 * parked in them. (green_queue has test_queue.c.)
 *
 * Each TEST runs a main greenlet under green_run and asserts on what the greenlets
 * recorded. "Let the waiters park" is one green_yield: every spawned greenlet runs until
 * it parks before the main greenlet continues.
 */
#include "green_sync.h"
#include "testlib.h"

#include <ev.h>

/* A greenlet that performs one operation on a shared object and records the outcome. */
typedef struct waiter {
    green_event *event;
    green_result *result;
    double timeout;
    int rc;
    bool done;
    void *item;
} waiter;

static void run_main(green_fn fn, void *arg) {
    ASSERT_EQ(green_run(NULL, NULL, fn, arg, NULL), 0);
}

/* ---- green_event ------------------------------------------------------------------- */

static void *event_waiter_main(void *arg) {
    waiter *w = arg;
    w->rc = green_event_wait(w->event, w->timeout);
    w->done = true;
    return NULL;
}

static void *event_wakes_every_waiter(void *arg) {
    (void)arg;
    green_event e;
    green_event_init(&e);
    waiter w[5];
    green_t g[5];
    for (int i = 0; i < 5; i++) {
        w[i] = (waiter){.event = &e, .timeout = -1, .rc = 99};
        ASSERT_EQ(green_spawn(&g[i], event_waiter_main, &w[i]), 0);
    }
    green_yield();
    for (int i = 0; i < 5; i++)
        ASSERT(!w[i].done);
    green_event_set(&e);
    for (int i = 0; i < 5; i++) {
        ASSERT_EQ(green_join(g[i], NULL), 0);
        ASSERT_EQ(w[i].rc, 0);
    }
    green_event_destroy(&e);
    return NULL;
}

TEST(event_set_wakes_every_waiter) {
    run_main(event_wakes_every_waiter, NULL);
}

static void *event_already_set(void *arg) {
    (void)arg;
    green_event e;
    green_event_init(&e);
    green_event_set(&e);
    ASSERT(green_event_is_set(&e));
    double t0 = test_now();
    ASSERT_EQ(green_event_wait(&e, TEST_NEVER), 0);
    ASSERT_EQ(green_event_wait(&e, 0), 0);
    ASSERT_RANGE(test_now() - t0, 0, TEST_SOON);
    green_event_destroy(&e);
    return NULL;
}

TEST(event_wait_returns_at_once_when_set) {
    run_main(event_already_set, NULL);
}

static void *event_clear_blocks(void *arg) {
    (void)arg;
    green_event e;
    green_event_init(&e);
    green_event_set(&e);
    green_event_clear(&e);
    ASSERT(!green_event_is_set(&e));
    ASSERT_EQ(green_event_wait(&e, 0.05), -ETIMEDOUT);
    green_event_destroy(&e);
    return NULL;
}

TEST(event_clear_makes_wait_block_again) {
    run_main(event_clear_blocks, NULL);
}

static void *event_times_out(void *arg) {
    (void)arg;
    green_event e;
    green_event_init(&e);
    double t0 = test_now();
    ASSERT_EQ(green_event_wait(&e, 0.1), -ETIMEDOUT);
    ASSERT_RANGE(test_now() - t0, 0.09, TEST_SOON);
    green_event_destroy(&e);
    return NULL;
}

TEST(event_wait_times_out) {
    run_main(event_times_out, NULL);
}

static void *event_killed(void *arg) {
    (void)arg;
    green_event e;
    green_event_init(&e);
    waiter w = {.event = &e, .timeout = -1, .rc = 99};
    green_t g;
    ASSERT_EQ(green_spawn(&g, event_waiter_main, &w), 0);
    green_yield();
    ASSERT(!w.done);
    ASSERT_EQ(green_kill(g), 0);
    ASSERT_EQ(green_join(g, NULL), 0);
    ASSERT_EQ(w.rc, -ECANCELED);
    /* The killed waiter unlinked itself: destroy's assertion would catch a leftover. */
    green_event_set(&e);
    green_event_destroy(&e);
    return NULL;
}

TEST(event_wait_killed_returns_ecanceled) {
    run_main(event_killed, NULL);
}

static void *event_scope(void *arg) {
    (void)arg;
    green_event e;
    green_event_init(&e);
    green_timeout t;
    green_timeout_start(&t, 0.05);
    ASSERT_EQ(green_event_wait(&e, -1), -ETIMEDOUT);
    ASSERT(green_timeout_end(&t));
    green_event_destroy(&e);
    return NULL;
}

TEST(event_wait_honours_timeout_scope) {
    run_main(event_scope, NULL);
}

static void set_event_cb(struct ev_loop *loop, ev_timer *t, int revents) {
    (void)loop;
    (void)revents;
    green_event_set(t->data);
}

static void *event_from_hub(void *arg) {
    (void)arg;
    green_event e;
    green_event_init(&e);
    ev_timer t;
    ev_timer_init(&t, set_event_cb, 0.02, 0);
    t.data = &e;
    ev_timer_start(green_loop(), &t);
    double t0 = test_now();
    ASSERT_EQ(green_event_wait(&e, TEST_NEVER), 0);
    ASSERT_RANGE(test_now() - t0, 0.01, TEST_SOON);
    ev_timer_stop(green_loop(), &t);
    green_event_destroy(&e);
    return NULL;
}

TEST(event_set_from_hub_callback_wakes_waiter) {
    run_main(event_from_hub, NULL);
}

static void *event_set_then_cleared(void *arg) {
    (void)arg;
    green_event e;
    green_event_init(&e);
    waiter w = {.event = &e, .timeout = -1, .rc = 99};
    green_t g;
    ASSERT_EQ(green_spawn(&g, event_waiter_main, &w), 0);
    green_yield();
    green_event_set(&e);
    green_event_clear(&e);
    ASSERT_EQ(green_join(g, NULL), 0);
    ASSERT_EQ(w.rc, 0);
    green_event_destroy(&e);
    return NULL;
}

TEST(event_waiter_woken_by_set_returns_zero_even_if_cleared_before_it_runs) {
    run_main(event_set_then_cleared, NULL);
}

/* ---- green_result ------------------------------------------------------------------ */

static void *result_getter_main(void *arg) {
    waiter *w = arg;
    w->rc = green_result_get(w->result, w->timeout, &w->item);
    w->done = true;
    return NULL;
}

static void *result_before_and_after(void *arg) {
    (void)arg;
    green_result r;
    green_result_init(&r);
    int payload = 42;
    waiter w[5];
    green_t g[5];
    for (int i = 0; i < 3; i++) {
        w[i] = (waiter){.result = &r, .timeout = -1, .rc = 99};
        ASSERT_EQ(green_spawn(&g[i], result_getter_main, &w[i]), 0);
    }
    green_yield();
    ASSERT(!w[0].done && !green_result_ready(&r));
    ASSERT_EQ(green_result_set_value(&r, &payload), 0);
    for (int i = 3; i < 5; i++) {
        w[i] = (waiter){.result = &r, .timeout = -1, .rc = 99};
        ASSERT_EQ(green_spawn(&g[i], result_getter_main, &w[i]), 0);
    }
    for (int i = 0; i < 5; i++) {
        ASSERT_EQ(green_join(g[i], NULL), 0);
        ASSERT_EQ(w[i].rc, 0);
        ASSERT(w[i].item == &payload);
    }
    ASSERT(green_result_message(&r) == NULL);
    green_result_destroy(&r);
    return NULL;
}

TEST(result_value_reaches_waiters_before_and_after_set) {
    run_main(result_before_and_after, NULL);
}

static void *result_error(void *arg) {
    (void)arg;
    green_result r;
    green_result_init(&r);
    waiter before = {.result = &r, .timeout = -1, .rc = 99};
    green_t g;
    ASSERT_EQ(green_spawn(&g, result_getter_main, &before), 0);
    green_yield();
    char msg[16] = "boom";
    ASSERT_EQ(green_result_set_error(&r, -EPROTO, msg), 0);
    strcpy(msg, "changed"); /* the result keeps its own copy */
    ASSERT_EQ(green_join(g, NULL), 0);
    ASSERT_EQ(before.rc, -EPROTO);
    ASSERT(before.item == NULL);
    void *v = &v;
    ASSERT_EQ(green_result_get(&r, 0, &v), -EPROTO);
    ASSERT(v == &v);
    ASSERT_STREQ(green_result_message(&r), "boom");
    green_result_destroy(&r);
    return NULL;
}

TEST(result_error_reaches_waiters_with_copied_message) {
    run_main(result_error, NULL);
}

static void *result_twice(void *arg) {
    (void)arg;
    green_result r;
    green_result_init(&r);
    int a = 1, b = 2;
    ASSERT_EQ(green_result_set_value(&r, &a), 0);
    ASSERT_EQ(green_result_set_value(&r, &b), -EALREADY);
    ASSERT_EQ(green_result_set_error(&r, -EIO, "late"), -EALREADY);
    void *v = NULL;
    ASSERT_EQ(green_result_get(&r, -1, &v), 0);
    ASSERT(v == &a);
    ASSERT(green_result_message(&r) == NULL);
    green_result_destroy(&r);
    return NULL;
}

TEST(result_second_set_returns_ealready_and_keeps_first) {
    run_main(result_twice, NULL);
}

static void *result_bad_code(void *arg) {
    (void)arg;
    green_result r;
    green_result_init(&r);
    ASSERT_EQ(green_result_set_error(&r, 0, "no"), -EINVAL);
    ASSERT(!green_result_ready(&r));
    ASSERT_EQ(green_result_set_error(&r, 7, NULL), 0);
    ASSERT_EQ(green_result_peek(&r, NULL), 7);
    ASSERT(green_result_message(&r) == NULL);
    green_result_destroy(&r);
    return NULL;
}

TEST(result_error_code_zero_is_einval_and_positive_codes_are_kept) {
    run_main(result_bad_code, NULL);
}

static void *result_times_out(void *arg) {
    (void)arg;
    green_result r;
    green_result_init(&r);
    void *v = &v;
    double t0 = test_now();
    ASSERT_EQ(green_result_get(&r, 0.1, &v), -ETIMEDOUT);
    ASSERT_RANGE(test_now() - t0, 0.09, TEST_SOON);
    ASSERT(v == &v);
    /* A get that timed out never completes later; a new get sees a later set. */
    ASSERT_EQ(green_result_set_value(&r, NULL), 0);
    ASSERT_EQ(green_result_get(&r, 0, &v), 0);
    ASSERT(v == NULL);
    green_result_destroy(&r);
    return NULL;
}

TEST(result_get_times_out) {
    run_main(result_times_out, NULL);
}

static void *result_killed(void *arg) {
    (void)arg;
    green_result r;
    green_result_init(&r);
    waiter w = {.result = &r, .timeout = -1, .rc = 99};
    green_t g;
    ASSERT_EQ(green_spawn(&g, result_getter_main, &w), 0);
    green_yield();
    ASSERT_EQ(green_kill(g), 0);
    ASSERT_EQ(green_join(g, NULL), 0);
    ASSERT_EQ(w.rc, -ECANCELED);
    ASSERT(w.item == NULL);
    ASSERT_EQ(green_result_set_error(&r, -EIO, "after the kill"), 0);
    green_result_destroy(&r);
    return NULL;
}

TEST(result_get_killed_returns_ecanceled) {
    run_main(result_killed, NULL);
}

static void set_result_cb(struct ev_loop *loop, ev_timer *t, int revents) {
    (void)loop;
    (void)revents;
    static int payload = 7;
    ASSERT_EQ(green_result_set_value(t->data, &payload), 0);
}

static void *result_from_hub(void *arg) {
    (void)arg;
    green_result r;
    green_result_init(&r);
    ASSERT_EQ(green_result_peek(&r, NULL), -EAGAIN);
    ev_timer t;
    ev_timer_init(&t, set_result_cb, 0.02, 0);
    t.data = &r;
    ev_timer_start(green_loop(), &t);
    void *v = NULL;
    ASSERT_EQ(green_result_get(&r, 5, &v), 0);
    ASSERT_EQ(*(int *)v, 7);
    void *peeked = NULL;
    ASSERT_EQ(green_result_peek(&r, &peeked), 0);
    ASSERT(peeked == v);
    ev_timer_stop(green_loop(), &t);
    green_result_destroy(&r);
    return NULL;
}

TEST(result_set_from_hub_callback_wakes_getter) {
    run_main(result_from_hub, NULL);
}
