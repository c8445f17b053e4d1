/*
 * test_core.c - the hub and greenlets: spawn/join/kill/yield/sleep, scoped timeouts,
 * misuse detection, teardown, 100,000 parked greenlets, and stack overflow reports.
 */
#include "green.h"
#include "green_internal.h"
#include "testlib.h"

#include <ev.h>
#include <fenv.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void run(green_fn fn, void *arg) {
    ASSERT_EQ(green_run(NULL, NULL, fn, arg, NULL), 0);
}

static void *return_arg(void *arg) {
    return arg;
}

static void *spawn_join_main(void *arg) {
    (void)arg;
    green_t g;
    void *ret = NULL;
    int x;
    ASSERT_EQ(green_spawn(&g, return_arg, &x), 0);
    ASSERT_EQ(green_join(g, &ret), 0);
    ASSERT(ret == &x);
    return NULL;
}

TEST(test_spawn_join_returns_the_value) {
    run(spawn_join_main, NULL);
}

struct order {
    int seen[4];
    int n;
};

struct sleeper {
    struct order *o;
    int id;
    double secs;
};

static void *sleep_and_record(void *arg) {
    struct sleeper *s = arg;
    ASSERT_EQ(green_sleep(s->secs), 0);
    s->o->seen[s->o->n++] = s->id;
    return NULL;
}

static void *sleepers_main(void *arg) {
    struct order *o = arg;
    struct sleeper late = {o, 1, 0.08}, early = {o, 2, 0.02};
    green_t a, b;
    ASSERT_EQ(green_spawn(&a, sleep_and_record, &late), 0);
    ASSERT_EQ(green_spawn(&b, sleep_and_record, &early), 0);
    ASSERT_EQ(green_join(a, NULL), 0);
    ASSERT_EQ(green_join(b, NULL), 0);
    return NULL;
}

TEST(test_two_sleepers_wake_in_deadline_order) {
    struct order o = {0};
    double t0 = test_now();
    run(sleepers_main, &o);
    ASSERT_EQ(o.n, 2);
    ASSERT_EQ(o.seen[0], 2);
    ASSERT_EQ(o.seen[1], 1);
    ASSERT_RANGE(test_now() - t0, 0.075, TEST_SOON);
}

static void *timeout_main(void *arg) {
    double *elapsed = arg;
    green_timeout t;
    double t0 = test_now();
    green_timeout_start(&t, 0.05);
    ASSERT_EQ(green_sleep(TEST_NEVER), -ETIMEDOUT);
    /* Once passed, every further blocking call in the scope fails at once. */
    ASSERT_EQ(green_sleep(TEST_NEVER), -ETIMEDOUT);
    ASSERT(green_timeout_end(&t));
    *elapsed = test_now() - t0;
    ASSERT_EQ(green_sleep(0.001), 0); /* outside the scope, sleeping works again */
    return NULL;
}

TEST(test_timeout_elapses_before_a_longer_sleep) {
    double elapsed = 0;
    run(timeout_main, &elapsed);
    ASSERT_RANGE(elapsed, 0.045, TEST_SOON);
}

static void *nested_main(void *arg) {
    (void)arg;
    green_timeout outer, inner;
    green_timeout_start(&outer, 0.03);
    green_timeout_start(&inner, 10);
    ASSERT_EQ(green_sleep(1), -ETIMEDOUT);
    ASSERT(!green_timeout_end(&inner)); /* not this one: the outer deadline passed */
    ASSERT(green_timeout_end(&outer));

    green_timeout unused;
    green_timeout_start(&unused, 1);
    ASSERT_EQ(green_sleep(0.01), 0); /* a sleep shorter than the scope is not cut */
    ASSERT(!green_timeout_end(&unused));
    return NULL;
}

TEST(test_nested_timeouts_report_which_one_fired) {
    run(nested_main, NULL);
}

struct victim {
    int stage;
    int rc;
};

static void *sleep_long(void *arg) {
    struct victim *v = arg;
    v->stage = 1;
    v->rc = green_sleep(TEST_NEVER);
    v->stage = 2;
    /* Cancellation is delivered once: clean-up code can still block. */
    ASSERT_EQ(green_sleep(0.001), 0);
    v->stage = 3;
    return v;
}

static void *kill_main(void *arg) {
    struct victim *v = arg;
    green_t g;
    void *ret;
    ASSERT_EQ(green_spawn(&g, sleep_long, v), 0);
    ASSERT_EQ(green_sleep(0.01), 0);
    ASSERT_EQ(v->stage, 1);
    ASSERT_EQ(green_kill(g), 0);
    ASSERT_EQ(green_join(g, &ret), 0);
    ASSERT(ret == v);
    return NULL;
}

TEST(test_kill_cancels_a_sleep_and_the_victim_unwinds) {
    struct victim v = {0};
    double t0 = test_now();
    run(kill_main, &v);
    ASSERT_EQ(v.rc, -ECANCELED);
    ASSERT_EQ(v.stage, 3);
    ASSERT_RANGE(test_now() - t0, 0, TEST_SOON);
}

static void *never_runs(void *arg) {
    *(int *)arg = 1;
    return arg;
}

static void *kill_unstarted_main(void *arg) {
    green_t g;
    void *ret = arg;
    ASSERT_EQ(green_spawn(&g, never_runs, arg), 0);
    ASSERT_EQ(green_kill(g), 0);
    ASSERT_EQ(green_join(g, &ret), 0);
    ASSERT(ret == NULL);
    return NULL;
}

TEST(test_killed_before_start_never_runs) {
    int ran = 0;
    run(kill_unstarted_main, &ran);
    ASSERT_EQ(ran, 0);
}

/* ---- green_throw: an interruption with a code of the caller's choosing ------------- */

struct thrown {
    int first, second, third;
    double wait; /* the first sleep's length; the others are 1 ms */
};

/* Sleeps three times; records what each sleep returned. */
static void *sleep_thrice(void *arg) {
    struct thrown *t = arg;
    t->first = green_sleep(t->wait);
    t->second = green_sleep(0.001);
    t->third = green_sleep(0.001);
    return NULL;
}

static void *throw_parked_main(void *arg) {
    green_t g;
    ASSERT_EQ(green_spawn(&g, sleep_thrice, arg), 0);
    ASSERT_EQ(green_yield(), 0); /* g is parked in its first sleep */
    ASSERT_EQ(green_throw(g, -ETIMEDOUT), 0);
    ASSERT_EQ(green_join(g, NULL), 0);
    return NULL;
}

/* The parked call returns the code, once: the calls after it work normally. And a thrown
 * -ETIMEDOUT is not mistaken by green_sleep for its own deadline (which is a success). */
TEST(test_throw_interrupts_the_parked_call_once_with_its_code) {
    struct thrown t = {1, 1, 1, TEST_NEVER};
    double t0 = test_now();
    run(throw_parked_main, &t);
    ASSERT_EQ(t.first, -ETIMEDOUT);
    ASSERT_EQ(t.second, 0);
    ASSERT_EQ(t.third, 0);
    ASSERT_RANGE(test_now() - t0, 0, TEST_SOON);
}

/* The same, but first yields: the throw arrives while it is ready, not parked, and is
 * delivered by its first sleep (which, without it, sleeps only 1 ms). */
static void *yield_then_sleep_thrice(void *arg) {
    ASSERT_EQ(green_yield(), 0);
    return sleep_thrice(arg);
}

struct throw_ready {
    struct thrown t;
    int code; /* thrown first */
    int then; /* then this; 1: nothing */
};

static void *throw_ready_main(void *arg) {
    struct throw_ready *r = arg;
    green_t g;
    ASSERT_EQ(green_spawn(&g, yield_then_sleep_thrice, &r->t), 0);
    ASSERT_EQ(green_yield(), 0); /* g ran up to its yield: it is ready, not parked */
    ASSERT_EQ(green_throw(g, r->code), 0);
    if (r->then != 1)
        ASSERT_EQ(green_throw(g, r->then), 0);
    ASSERT_EQ(green_join(g, NULL), 0);
    return NULL;
}

/* A greenlet that is not parked gets the code at its next blocking call. */
TEST(test_throw_at_a_ready_greenlet_ends_its_next_call) {
    struct throw_ready r = {{1, 1, 1, 0.001}, -ETIMEDOUT, 1};
    run(throw_ready_main, &r);
    ASSERT_EQ(r.t.first, -ETIMEDOUT);
    ASSERT_EQ(r.t.second, 0);
    ASSERT_EQ(r.t.third, 0);
}

/* A kill is never downgraded by a throw, and replaces one not yet delivered. */
TEST(test_kill_wins_over_a_pending_throw_either_way) {
    struct throw_ready r = {{1, 1, 1, 0.001}, -ETIMEDOUT, -ECANCELED};
    run(throw_ready_main, &r);
    ASSERT_EQ(r.t.first, -ECANCELED);
    ASSERT_EQ(r.t.second, 0);
    struct throw_ready k = {{1, 1, 1, 0.001}, -ECANCELED, -ETIMEDOUT};
    run(throw_ready_main, &k);
    ASSERT_EQ(k.t.first, -ECANCELED);
    ASSERT_EQ(k.t.second, 0);
}

/* green_throw(g, 0) withdraws a throw not delivered yet, but never a kill. */
TEST(test_throw_zero_withdraws_a_throw_but_not_a_kill) {
    struct throw_ready r = {{1, 1, 1, 0.001}, -ETIMEDOUT, 0};
    run(throw_ready_main, &r);
    ASSERT_EQ(r.t.first, 0);
    struct throw_ready k = {{1, 1, 1, 0.001}, -ECANCELED, 0};
    run(throw_ready_main, &k);
    ASSERT_EQ(k.t.first, -ECANCELED);
}

/* ---- the progress a monitor thread sees -------------------------------------------- */

struct watch {
    const green_progress *p;
    int tag;         /* its address is the busy greenlet's tag */
    atomic_int seen; /* the monitor saw the tag with a still count: 1 */
    uint64_t count_seen;
};

/* The monitor: waits until the tagged greenlet runs, checks that the count stands still
 * while it computes, then lets it go on. */
static void *monitor(void *arg) {
    struct watch *w = arg;
    while (green_progress_tag(w->p) != &w->tag)
        test_pause();
    uint64_t n = green_progress_switches(w->p);
    test_pause();
    ASSERT(green_progress_tag(w->p) == &w->tag);
    ASSERT_EQ(green_progress_switches(w->p), n);
    w->count_seen = n;
    atomic_store(&w->seen, 1);
    return NULL;
}

/* Computes, without yielding, until the monitor has seen it. */
static void *busy_tagged(void *arg) {
    struct watch *w = arg;
    green_set_tag(&w->tag);
    while (!atomic_load(&w->seen))
        ;
    return NULL;
}

static void *progress_main(void *arg) {
    struct watch *w = arg;
    w->p = green_progress_get();
    ASSERT(w->p != NULL);
    ASSERT(green_progress_tag(w->p) == NULL); /* the main greenlet has no tag */
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, monitor, w), 0);
    green_t g;
    ASSERT_EQ(green_spawn(&g, busy_tagged, w), 0);
    ASSERT_EQ(green_join(g, NULL), 0);
    /* Back here: the count moved on, and the tag is ours again (none). */
    ASSERT(green_progress_switches(w->p) > w->count_seen);
    ASSERT(green_progress_tag(w->p) == NULL);
    ASSERT_EQ(pthread_join(t, NULL), 0);
    return NULL;
}

/* Another thread sees which tagged greenlet runs and that the hub has not switched since:
 * what --blocking-warn's watchdog relies on. */
TEST(test_progress_shows_a_thread_the_greenlet_that_does_not_yield) {
    struct watch w = {0};
    run(progress_main, &w);
    ASSERT_EQ(atomic_load(&w.seen), 1);
}

static void *sleep_a_bit(void *arg) {
    (void)arg;
    green_sleep(0.01);
    return NULL;
}

static void *misuse_main(void *arg) {
    (void)arg;
    green_t g, stale;
    ASSERT_EQ(green_join(green_self(), NULL), -EDEADLK);
    ASSERT_EQ(green_spawn(&g, sleep_a_bit, NULL), 0);
    stale = g;
    ASSERT_EQ(green_join(g, NULL), 0);
    ASSERT_EQ(green_join(stale, NULL), -ESRCH);
    ASSERT_EQ(green_kill(stale), -ESRCH);
    ASSERT_EQ(green_detach(stale), -ESRCH);
    ASSERT_EQ(green_join((green_t){0}, NULL), -ESRCH);
    /* A detached greenlet cannot be joined. */
    ASSERT_EQ(green_spawn(&g, sleep_a_bit, NULL), 0);
    ASSERT_EQ(green_detach(g), 0);
    ASSERT_EQ(green_join(g, NULL), -ESRCH);
    return NULL;
}

TEST(test_stale_and_self_handles_are_detected) {
    run(misuse_main, NULL);
}

struct joiner_arg {
    green_t target;
    int rc;
};

static void *second_joiner(void *arg) {
    struct joiner_arg *j = arg;
    j->rc = green_join(j->target, NULL);
    return NULL;
}

static void *double_join_main(void *arg) {
    (void)arg;
    struct joiner_arg j = {0};
    green_t first, target;
    ASSERT_EQ(green_spawn(&target, sleep_a_bit, NULL), 0);
    j.target = target;
    ASSERT_EQ(green_spawn(&first, second_joiner, &j), 0);
    ASSERT_EQ(green_yield(), 0); /* first joiner parks on target */
    ASSERT_EQ(green_join(target, NULL), -EINVAL);
    ASSERT_EQ(green_join(first, NULL), 0);
    ASSERT_EQ(j.rc, 0);
    return NULL;
}

TEST(test_second_concurrent_join_is_refused) {
    run(double_join_main, NULL);
}

struct pingpong {
    char trace[16];
    int n;
};

static void *ping(void *arg) {
    struct pingpong *p = arg;
    for (int i = 0; i < 3; i++) {
        p->trace[p->n++] = 'a';
        ASSERT_EQ(green_yield(), 0);
    }
    return NULL;
}

static void *pong(void *arg) {
    struct pingpong *p = arg;
    for (int i = 0; i < 3; i++) {
        p->trace[p->n++] = 'b';
        ASSERT_EQ(green_yield(), 0);
    }
    return NULL;
}

static void *yield_main(void *arg) {
    green_t a, b;
    ASSERT_EQ(green_spawn(&a, ping, arg), 0);
    ASSERT_EQ(green_spawn(&b, pong, arg), 0);
    ASSERT_EQ(green_join(a, NULL), 0);
    ASSERT_EQ(green_join(b, NULL), 0);
    return NULL;
}

TEST(test_yield_lets_the_others_run) {
    struct pingpong p = {0};
    run(yield_main, &p);
    ASSERT_STREQ(p.trace, "ababab");
}

/* ---- calls made where they must not be, and once-only warnings ------------------------ */

/* The lines of text that contain needle. */
static int lines_with(const char *text, const char *needle) {
    int n = 0;
    for (const char *p = text; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

#define NOT_IN_GREENLET_LINE "called outside a greenlet"
#define NOT_IN_GREENLET_ASSERT "a call that may yield was made outside a greenlet"

/* What green.h promises for a call that may yield made outside a greenlet, as seen from a
 * fresh process that made such calls: a release build returned -EPERM each time (the
 * child's ASSERTs) and said so in one line, once; a debug build stopped at the first. */
static void expect_not_in_greenlet_outcome(int st, const char *err) {
#ifdef NDEBUG
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fprintf(stderr, "child:\n%s", err);
    ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    ASSERT_EQ(lines_with(err, NOT_IN_GREENLET_LINE), 1);
#else
    ASSERT(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
    ASSERT(strstr(err, NOT_IN_GREENLET_ASSERT) != NULL);
#endif
}

TEST(test_blocking_outside_a_greenlet_is_an_error) {
    if (test_in_child()) {
        ASSERT(!green_in_greenlet());
        ASSERT_EQ(green_sleep(0.01), -EPERM);
        ASSERT_EQ(green_yield(), -EPERM);
        ASSERT_EQ(green__park(GREEN_FOREVER), -EPERM);
        return;
    }
    char *err = NULL;
    int st = test_child("test_blocking_outside_a_greenlet_is_an_error", &err);
    expect_not_in_greenlet_outcome(st, err);
    free(err);
}

/* Several hubs, one per thread, whose callbacks all make a blocking call at the same
 * moment (a barrier lines them up): still one line in all, not one per hub. */
#define HUBS 8
static pthread_barrier_t hubs_lined_up;

static void block_in_callback(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop;
    (void)revents;
    pthread_barrier_wait(&hubs_lined_up);
    *(int *)w->data = green_sleep(0.01);
}

static void *callback_blocks_main(void *arg) {
    ev_timer t;
    ev_timer_init(&t, block_in_callback, 0, 0);
    t.data = arg;
    ev_timer_start(green_loop(), &t);
    ASSERT_EQ(green_sleep(0.01), 0); /* the hub runs the callback meanwhile */
    return NULL;
}

static void *hub_thread(void *arg) {
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    ASSERT(loop != NULL);
    ASSERT_EQ(green_run(loop, NULL, callback_blocks_main, arg, NULL), 0);
    ev_loop_destroy(loop);
    return NULL;
}

TEST(test_blocking_in_callbacks_of_many_hubs_is_said_once) {
    if (test_in_child()) {
        pthread_t th[HUBS];
        int rc[HUBS];
        pthread_barrier_init(&hubs_lined_up, NULL, HUBS);
        for (int i = 0; i < HUBS; i++)
            ASSERT_EQ(pthread_create(&th[i], NULL, hub_thread, &rc[i]), 0);
        for (int i = 0; i < HUBS; i++) {
            ASSERT_EQ(pthread_join(th[i], NULL), 0);
            ASSERT_EQ(rc[i], -EPERM);
        }
        pthread_barrier_destroy(&hubs_lined_up);
        return;
    }
    char *err = NULL;
    int st = test_child("test_blocking_in_callbacks_of_many_hubs_is_said_once", &err);
    expect_not_in_greenlet_outcome(st, err);
    free(err);
}

/* Hubs on several threads that cannot get a stack at all (a stack size no address space
 * holds): green_run fails with -ENOMEM on each, and the reason is written once. */
static void *needs_no_stack(void *arg) {
    return arg;
}

static void *stackless_hub_thread(void *arg) {
    (void)arg;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    ASSERT(loop != NULL);
    green_config cfg = {.stack_size = (size_t)1 << 42}; /* 4 TiB: a slab is 256 TiB */
    pthread_barrier_wait(&hubs_lined_up);
    ASSERT_EQ(green_run(loop, &cfg, needs_no_stack, NULL, NULL), -ENOMEM);
    ev_loop_destroy(loop);
    return NULL;
}

TEST(test_no_stack_on_many_hubs_is_said_once) {
    if (test_in_child()) {
        pthread_t th[HUBS];
        pthread_barrier_init(&hubs_lined_up, NULL, HUBS);
        for (int i = 0; i < HUBS; i++)
            ASSERT_EQ(pthread_create(&th[i], NULL, stackless_hub_thread, NULL), 0);
        for (int i = 0; i < HUBS; i++)
            ASSERT_EQ(pthread_join(th[i], NULL), 0);
        pthread_barrier_destroy(&hubs_lined_up);
        return;
    }
    char *err = NULL;
    int st = test_child("test_no_stack_on_many_hubs_is_said_once", &err);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fprintf(stderr, "child:\n%s", err);
    ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    ASSERT_EQ(lines_with(err, "cannot make a greenlet stack"), 1);
    free(err);
}

static void *park_forever(void *arg) {
    *(int *)arg = green__park(GREEN_FOREVER);
    return NULL;
}

static void *deadlock_main(void *arg) {
    green_t g;
    ASSERT_EQ(green_spawn(&g, park_forever, arg), 0);
    ASSERT_EQ(green_join(g, NULL), 0);
    return NULL;
}

TEST(test_deadlock_wakes_parked_greenlets_with_edeadlk) {
    int rc = 0;
    run(deadlock_main, &rc);
    ASSERT_EQ(rc, -EDEADLK);
}

struct leftover {
    int cleaned;
};

static void *linger(void *arg) {
    struct leftover *l = arg;
    ASSERT_EQ(green_sleep(60), -ECANCELED);
    l->cleaned++;
    return NULL;
}

static void *leave_greenlets_behind(void *arg) {
    for (int i = 0; i < 10; i++)
        ASSERT_EQ(green_spawn(NULL, linger, arg), 0);
    ASSERT_EQ(green_sleep(0.001), 0);
    return arg;
}

TEST(test_run_kills_what_is_left_when_main_returns) {
    struct leftover l = {0};
    void *ret = NULL;
    double t0 = test_now();
    ASSERT_EQ(green_run(NULL, NULL, leave_greenlets_behind, &l, &ret), 0);
    ASSERT(ret == &l);
    ASSERT_EQ(l.cleaned, 10);
    ASSERT_RANGE(test_now() - t0, 0, TEST_SOON);
}

static void *set_rounding_and_yield(void *arg) {
    (void)arg;
    fesetround(FE_UPWARD);
    green_yield();
    ASSERT_EQ(fegetround(), FE_UPWARD);
    return NULL;
}

static void *fp_main(void *arg) {
    (void)arg;
    green_t g;
    ASSERT_EQ(green_spawn(&g, set_rounding_and_yield, NULL), 0);
    ASSERT_EQ(green_yield(), 0);
    ASSERT_EQ(fegetround(), FE_TONEAREST); /* the other greenlet's mode stays its own */
    ASSERT_EQ(green_join(g, NULL), 0);
    return NULL;
}

TEST(test_fp_rounding_mode_is_per_greenlet) {
    run(fp_main, NULL);
}

#define MANY 100000

struct many {
    green_t *handles;
    size_t stacks_mapped;
};

static void *park_briefly(void *arg) {
    (void)arg;
    ASSERT_EQ(green_sleep(0.2), 0);
    return NULL;
}

static void *many_main(void *arg) {
    struct many *m = arg;
    for (int i = 0; i < MANY; i++)
        ASSERT_EQ(green_spawn(&m->handles[i], park_briefly, NULL), 0);
    ASSERT_EQ(green_yield(), 0); /* all of them start and park */
    green_stats st;
    green_get_stats(&st);
    ASSERT(st.alive >= MANY);
    m->stacks_mapped = st.stacks_mapped;
    for (int i = 0; i < MANY; i++)
        ASSERT_EQ(green_join(m->handles[i], NULL), 0);
    return NULL;
}

/* One mmap plus an mprotect'd guard per stack would stop near 32k greenlets under the
 * default vm.max_map_count of 65530; this needs 100,000 at once. */
TEST(test_100k_greenlets_spawned_parked_and_joined) {
    struct many m = {calloc(MANY, sizeof(green_t)), 0};
    green_config cfg = {.stack_size = 64 * 1024};
    ASSERT_EQ(green_run(NULL, &cfg, many_main, &m, NULL), 0);
    ASSERT(m.stacks_mapped >= MANY);
    free(m.handles);
}

static int recurse(int depth) {
    volatile char pad[1024];
    pad[0] = (char)depth;
    return depth > 1000000 ? pad[0] : recurse(depth + 1) + pad[0];
}

static void *overflow(void *arg) {
    (void)arg;
    return (void *)(intptr_t)recurse(0);
}

TEST(test_stack_overflow_is_reported_not_silent) {
    char path[] = "/tmp/workerd-overflow-XXXXXX";
    int fd = mkstemp(path);
    ASSERT(fd >= 0);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fd, 2);
        green_config cfg = {.stack_size = 64 * 1024};
        green_run(NULL, &cfg, overflow, NULL, NULL);
        _exit(0);
    }
    int st;
    ASSERT_EQ(waitpid(pid, &st, 0), pid);
    char buf[4096] = {0};
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    close(fd);
    unlink(path);
    ASSERT(n > 0);
    ASSERT(!(WIFEXITED(st) && WEXITSTATUS(st) == 0));
    ASSERT(strstr(buf, "stack overflow") || strstr(buf, "stack-overflow"));
}
