/*
 * green.c - the hub and the scheduler: spawn, park, wake, join, kill, timeouts.
 *
 * One hub per OS thread (a thread-local pointer). The hub is a pseudo-greenlet that runs
 * on the thread's own stack and drives the libev loop; real greenlets run on stacks from
 * green_stack.c. A greenlet that parks (or yields, or ends) switches straight to the next
 * ready greenlet, without passing through the hub, as long as the current batch lasts:
 * a batch is the set of greenlets that were ready when it began, so greenlets made ready
 * during a batch (a yield, a wake) run in the next one. Between batches the hub polls the
 * loop, without blocking, whenever 0.5 ms have passed since the last poll, and blocks in
 * the loop only when nothing is ready. So a greenlet that yields in a loop cannot starve
 * I/O, and spawn+join costs two switches, not two trips through epoll.
 *
 * States: NEW (spawned, in the ready queue, not started) -> RUNNING <-> PARKED / READY
 * -> DONE. A parked greenlet is woken by green__wake (someone's completion), its own
 * ev_timer (deadline), or green_kill. Whatever woke it, it runs its own clean-up after
 * green__park returns: a callback never touches a greenlet's stack.
 *
 * Which stack: green_run's loop runs on the hub (thread) stack, as do all libev
 * callbacks; everything that may yield runs on a greenlet stack.
 *
 * Greenlet records come from chunks and are only reused, never freed, while the hub
 * runs: a stale handle points at valid memory whose generation no longer matches.
 */
#include "green.h"
#include "green_ctx.h"
#include "green_internal.h"
#include "green_stack.h"

#include <ev.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define GREEN_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define GREEN_ASAN 1
#endif
#endif
#ifdef GREEN_ASAN
#include <sanitizer/common_interface_defs.h>
#endif

enum gstate { G_FREE, G_NEW, G_READY, G_RUNNING, G_PARKED, G_DONE };

struct green {
    green_ctx ctx;
    enum gstate state;
    bool detached;
    int pending; /* 0, or the code the next blocking call returns: -ECANCELED
                    (green_kill) or what green_throw gave */
    int wake_code;
    void *tag; /* green_set_tag's, published to the hub's progress */
    uint64_t gen;
    green_fn fn;
    void *arg;
    void *ret;
    green_stack *stack;
    void *stack_lo; /* for the sanitizer annotations */
    size_t stack_size;
    struct green *next; /* ready queue or free list */
    struct green *prev_alive, *next_alive;
    struct green *joiner;
    green_timeout *scopes; /* innermost green_timeout */
    double scope_min;      /* earliest deadline of the scopes */
    ev_timer timer;
#ifdef GREEN_ASAN
    void *asan_fake;
#endif
};

/* What green_progress_get hands a monitor thread: written by the hub's thread at every
 * switch, read by any thread. */
struct green_progress {
    _Atomic uint64_t switches;
    void *_Atomic tag;
};

#define CHUNK_GREENLETS 1024

struct chunk {
    struct chunk *next;
    struct green g[CHUNK_GREENLETS];
};

struct hub {
    struct ev_loop *loop;
    bool default_loop; /* loop is libev's default loop (green_run was given NULL) */
    struct green self; /* the hub's own context (the thread's stack) */
    struct green *current;
    struct green *ready_head, *ready_tail;
    size_t ready_count;
    size_t batch; /* greenlets left in the running batch */
    double last_poll;
    struct green *free_list;
    struct chunk *chunks;
    struct green *alive_list;
    size_t alive;
    uint64_t switches;
    green_progress progress; /* what a monitor thread may read (green_progress_get) */
    uint64_t next_gen;
    green_config cfg;
    green_stack_pool stacks;
    struct green *main_g;
    bool main_done;
    struct {
        void *value;
        void (*destroy)(void *);
    } slots[GREEN__SLOT_COUNT];
};

static __thread struct hub *hub;
static __thread green_ctx dead_ctx; /* where a finished greenlet's last switch saves */

#define POLL_INTERVAL 0.0005

/* The wake code of a parked greenlet's own deadline timer. Not an errno and not a code any
 * waker passes (they pass 0, a negative errno or green_io's positive event bits), so that
 * green__park_ex tells its deadline from a green_throw(g, -ETIMEDOUT). */
#define WAKE_DEADLINE INT_MIN

/* ---- switching ------------------------------------------------------------------ */

/* Tell a monitor thread who runs now. Two plain stores on x86_64 (a release store is a
 * mov there) and two stlr on aarch64: the hot path pays nothing else for the monitor. The
 * tag goes first, released, so that a monitor that reads it (acquire) also sees what the
 * greenlet's owner wrote before tagging it. */
static inline void publish(struct green *to) {
    atomic_store_explicit(&hub->progress.tag, to->tag, memory_order_release);
    atomic_store_explicit(&hub->progress.switches, hub->switches, memory_order_relaxed);
}

static void switch_to(struct green *from, struct green *to) {
    if (from == to)
        return;
    hub->current = to == &hub->self ? NULL : to;
    hub->switches++;
    publish(to);
#ifdef GREEN_ASAN
    __sanitizer_start_switch_fiber(&from->asan_fake, to->stack_lo, to->stack_size);
#endif
    green__ctx_switch(&from->ctx, &to->ctx);
#ifdef GREEN_ASAN
    __sanitizer_finish_switch_fiber(from->asan_fake, NULL, NULL);
#endif
}

static void push_ready(struct green *g) {
    g->next = NULL;
    if (hub->ready_tail)
        hub->ready_tail->next = g;
    else
        hub->ready_head = g;
    hub->ready_tail = g;
    hub->ready_count++;
}

static struct green *pop_ready(void) {
    struct green *g = hub->ready_head;
    hub->ready_head = g->next;
    if (!hub->ready_head)
        hub->ready_tail = NULL;
    hub->ready_count--;
    return g;
}

/* Whom the current greenlet hands the CPU to when it stops running. */
static struct green *pick_next(void) {
    if (hub->batch == 0) {
        if (hub->ready_count == 0 || ev_time() - hub->last_poll >= POLL_INTERVAL)
            return &hub->self;
        hub->batch = hub->ready_count;
    }
    hub->batch--;
    return pop_ready();
}

/* ---- greenlet records ------------------------------------------------------------ */

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop;
    (void)revents;
    green__wake(w->data, WAKE_DEADLINE);
}

static struct green *record_get(void) {
    if (!hub->free_list) {
        struct chunk *c = calloc(1, sizeof *c);
        if (!c)
            return NULL;
        c->next = hub->chunks;
        hub->chunks = c;
        for (int i = CHUNK_GREENLETS - 1; i >= 0; i--) {
            c->g[i].next = hub->free_list;
            hub->free_list = &c->g[i];
        }
    }
    struct green *g = hub->free_list;
    hub->free_list = g->next;
    return g;
}

static void record_put(struct green *g) {
    g->state = G_FREE;
    g->gen = 0;
    g->next = hub->free_list;
    hub->free_list = g;
}

static struct green *resolve(green_t h) {
    if (!hub || !h.ptr || h.gen == 0 || h.ptr->gen != h.gen)
        return NULL;
    return h.ptr;
}

static void alive_unlink(struct green *g) {
    if (g->prev_alive)
        g->prev_alive->next_alive = g->next_alive;
    else
        hub->alive_list = g->next_alive;
    if (g->next_alive)
        g->next_alive->prev_alive = g->prev_alive;
    hub->alive--;
}

/* ---- the life of a greenlet ---------------------------------------------------------- */

static void finish(struct green *g) {
    g->state = G_DONE;
    alive_unlink(g);
    if (g == hub->main_g)
        hub->main_done = true;
    /* The stack goes back to the cache while we still run on it: nothing can take it
     * before the switch below, since this thread does nothing else in between. */
    green__stack_put(&hub->stacks, g->stack);
    g->stack = NULL;
    if (g->joiner)
        green__wake(g->joiner, 0);
    struct green *next = pick_next();
    if (g->detached)
        record_put(g);
    /* g's record may now be reused: save the dying context into a scratch one. */
    hub->current = next == &hub->self ? NULL : next;
    hub->switches++;
    publish(next);
#ifdef GREEN_ASAN
    __sanitizer_start_switch_fiber(NULL, next->stack_lo, next->stack_size);
#endif
    green__ctx_switch(&dead_ctx, &next->ctx);
    abort(); /* a finished greenlet is never resumed */
}

static void entry(void *arg) {
    struct green *g = arg;
#ifdef GREEN_ASAN
    __sanitizer_finish_switch_fiber(NULL, NULL, NULL);
#endif
    if (g->pending != -ECANCELED)
        g->ret = g->fn(g->arg);
    g->pending = 0;
    finish(g);
}

int green_spawn(green_t *out, green_fn fn, void *arg) {
    if (!hub)
        return -EPERM;
    if (hub->alive >= hub->cfg.max_greenlets)
        return -EAGAIN;
    struct green *g = record_get();
    if (!g)
        return -ENOMEM;
    green_stack *s = green__stack_get(&hub->stacks);
    if (!s) {
        record_put(g);
        return -ENOMEM;
    }
    g->stack = s;
    g->stack_lo = s->lo;
    g->stack_size = s->size;
    g->fn = fn;
    g->arg = arg;
    g->ret = NULL;
    g->gen = ++hub->next_gen;
    g->state = G_NEW;
    g->detached = out == NULL;
    g->pending = hub->main_done ? -ECANCELED : 0; /* spawned during teardown: never runs */
    g->tag = NULL;
    g->joiner = NULL;
    g->scopes = NULL;
    g->scope_min = GREEN_FOREVER;
    g->wake_code = 0;
    ev_init(&g->timer, timer_cb);
    g->timer.data = g;
    green__ctx_init(&g->ctx, s->lo, s->size, entry, g);
    g->prev_alive = NULL;
    g->next_alive = hub->alive_list;
    if (hub->alive_list)
        hub->alive_list->prev_alive = g;
    hub->alive_list = g;
    hub->alive++;
    push_ready(g);
    if (out)
        *out = (green_t){.ptr = g, .gen = g->gen};
    return 0;
}

/* ---- parking and waking ------------------------------------------------------------ */

struct green *green__current(void) {
    return hub ? hub->current : NULL;
}

double green__deadline_in(double seconds) {
    return seconds < 0 ? GREEN_FOREVER : ev_time() + seconds;
}

/* A call that may yield, made outside a greenlet, is a bug in its caller (green.h): a
 * debug build stops at the call, with the stack that made it; a release build returns
 * -EPERM and says so on stderr once per process - not once per call, since a callback
 * that retries would flood the log, and not once per hub: the flag is shared by every
 * thread, hence atomic. */
static atomic_flag said_not_in_greenlet = ATOMIC_FLAG_INIT;

static int not_in_greenlet(const char *what) {
    if (!atomic_flag_test_and_set(&said_not_in_greenlet))
        fprintf(stderr,
                "green: %s called outside a greenlet (from the hub, a callback or a "
                "thread without a hub): it would block the loop; returning EPERM\n",
                what);
    assert(!"green: a call that may yield was made outside a greenlet (from the hub, a "
            "libev, curl or hiredis callback, or a thread without a hub)");
    return -EPERM;
}

/* Mark every scope whose deadline has passed as fired. */
static void fire_scopes(struct green *g, double now) {
    for (green_timeout *t = g->scopes; t; t = t->outer)
        if (t->deadline <= now)
            t->fired = true;
}

int green__check(void) {
    struct green *g = green__current();
    if (!g)
        return not_in_greenlet("a blocking call");
    if (g->pending) {
        int code = g->pending;
        g->pending = 0;
        return code;
    }
    if (g->scope_min < GREEN_FOREVER) {
        double now = ev_time();
        if (now >= g->scope_min) {
            fire_scopes(g, now);
            return -ETIMEDOUT;
        }
    }
    return 0;
}

int green__park_ex(double deadline, bool *own_deadline) {
    struct green *g = green__current();
    if (own_deadline)
        *own_deadline = false;
    if (!g)
        return not_in_greenlet("a blocking call");
    if (g->pending) {
        int code = g->pending;
        g->pending = 0;
        return code;
    }
    double until = deadline < g->scope_min ? deadline : g->scope_min;
    if (until < GREEN_FOREVER) {
        double now = ev_time();
        if (now >= until)
            goto timed_out;
        ev_timer_set(&g->timer, until - ev_now(hub->loop), 0.);
        ev_timer_start(hub->loop, &g->timer);
    }
    g->state = G_PARKED;
    switch_to(g, pick_next());
    g->state = G_RUNNING;
    if (ev_is_active(&g->timer))
        ev_timer_stop(hub->loop, &g->timer);
    if (g->wake_code != WAKE_DEADLINE)
        return g->wake_code;
timed_out:
    if (deadline <= g->scope_min) {
        if (own_deadline)
            *own_deadline = true;
    } else {
        fire_scopes(g, ev_time() > g->scope_min ? ev_time() : g->scope_min);
    }
    return -ETIMEDOUT;
}

int green__park(double deadline) {
    return green__park_ex(deadline, NULL);
}

bool green__default_loop(void) {
    return hub != NULL && hub->default_loop;
}

int green__park_unscoped(double deadline) {
    struct green *g = green__current();
    if (!g)
        return not_in_greenlet("a blocking call");
    /* Nothing can open or close a scope while the greenlet is parked, so the saved minimum
     * is still the right one afterwards. */
    double scope_min = g->scope_min;
    g->scope_min = GREEN_FOREVER;
    int rc = green__park(deadline);
    g->scope_min = scope_min;
    return rc;
}

bool green__wake(struct green *g, int code) {
    if (g->state != G_PARKED)
        return false;
    g->state = G_READY;
    g->wake_code = code;
    push_ready(g);
    return true;
}

/* ---- the public calls ---------------------------------------------------------------- */

struct ev_loop *green_loop(void) {
    return hub ? hub->loop : NULL;
}

bool green_in_greenlet(void) {
    return green__current() != NULL;
}

green_t green_self(void) {
    struct green *g = green__current();
    return g ? (green_t){.ptr = g, .gen = g->gen} : (green_t){0};
}

int green_yield(void) {
    struct green *g = green__current();
    if (!g)
        return not_in_greenlet("green_yield");
    if (g->pending) {
        int code = g->pending;
        g->pending = 0;
        return code;
    }
    g->state = G_READY;
    g->wake_code = 0;
    push_ready(g);
    switch_to(g, pick_next());
    g->state = G_RUNNING;
    return g->wake_code;
}

int green_sleep(double seconds) {
    if (seconds <= 0)
        return green_yield();
    bool own;
    int rc = green__park_ex(ev_time() + seconds, &own);
    return rc == -ETIMEDOUT && own ? 0 : rc;
}

int green_join(green_t h, void **ret) {
    struct green *g = resolve(h), *self = green__current();
    if (!g || g->detached)
        return -ESRCH;
    if (!self)
        return not_in_greenlet("green_join");
    if (g == self)
        return -EDEADLK;
    if (g->state != G_DONE) {
        if (g->joiner)
            return -EINVAL;
        g->joiner = self;
        int rc = green__park(GREEN_FOREVER);
        g->joiner = NULL;
        if (rc != 0 && g->state != G_DONE)
            return rc;
    }
    if (ret)
        *ret = g->ret;
    record_put(g);
    return 0;
}

int green_detach(green_t h) {
    struct green *g = resolve(h);
    if (!g || g->detached)
        return -ESRCH;
    if (g->state == G_DONE)
        record_put(g);
    else
        g->detached = true;
    return 0;
}

int green_kill(green_t h) {
    return green_throw(h, -ECANCELED);
}

int green_throw(green_t h, int code) {
    struct green *g = resolve(h);
    if (!g)
        return -ESRCH;
    assert(code <= 0 && "green_throw: the code must be a negative errno (or 0 to withdraw)");
    if (code == 0) {
        if (g->pending != -ECANCELED)
            g->pending = 0;
    } else if (g->state == G_PARKED) {
        green__wake(g, code);
    } else if (g->state != G_DONE && g->pending != -ECANCELED) {
        g->pending = code; /* a kill is never replaced by a lesser interruption */
    }
    return 0;
}

void green_set_tag(void *tag) {
    struct green *g = green__current();
    assert(g != NULL && "green_set_tag: must be called from a greenlet");
    if (!g)
        return;
    g->tag = tag;
    atomic_store_explicit(&hub->progress.tag, tag, memory_order_release);
}

const green_progress *green_progress_get(void) {
    return hub ? &hub->progress : NULL;
}

uint64_t green_progress_switches(const green_progress *p) {
    return atomic_load_explicit(&p->switches, memory_order_relaxed);
}

void *green_progress_tag(const green_progress *p) {
    return atomic_load_explicit(&p->tag, memory_order_seq_cst);
}

void green_timeout_start(green_timeout *t, double seconds) {
    struct green *g = green__current();
    assert(g != NULL && "green_timeout_start: must be called from a greenlet");
    t->deadline = green__deadline_in(seconds);
    t->outer_min = g->scope_min;
    t->fired = false;
    t->outer = g->scopes;
    g->scopes = t;
    if (t->deadline < g->scope_min)
        g->scope_min = t->deadline;
}

bool green_timeout_end(green_timeout *t) {
    struct green *g = green__current();
    assert(g && g->scopes == t && "green_timeout_end: scopes must end innermost first");
    g->scopes = t->outer;
    g->scope_min = t->outer_min;
    return t->fired;
}

void green_get_stats(green_stats *out) {
    *out = (green_stats){0};
    if (!hub)
        return;
    out->alive = hub->alive;
    out->stacks_mapped = hub->stacks.mapped;
    out->stacks_cached = hub->stacks.warm + hub->stacks.cold;
    out->switches = hub->switches;
}

void *green__slot_get(enum green__slot slot) {
    return hub ? hub->slots[slot].value : NULL;
}

void green__slot_set(enum green__slot slot, void *value, void (*destroy)(void *value)) {
    hub->slots[slot].value = value;
    hub->slots[slot].destroy = destroy;
}

/* ---- the hub ------------------------------------------------------------------------ */

/* Everyone is parked and the loop has nothing that could wake anyone: gevent raises
 * LoopExit here. Waking them all with EDEADLK lets each unwind instead of hanging. */
static void break_deadlock(void) {
    fprintf(stderr,
            "green: deadlock: %zu greenlets parked and no watcher left to wake "
            "them; their blocking calls return EDEADLK\n",
            hub->alive);
    for (struct green *g = hub->alive_list; g; g = g->next_alive)
        green__wake(g, -EDEADLK);
}

static void kill_all(void) {
    for (struct green *g = hub->alive_list; g; g = g->next_alive)
        green_kill((green_t){.ptr = g, .gen = g->gen});
}

static void hub_loop(void) {
    bool killed = false;
    for (;;) {
        if (hub->main_done && !killed) {
            kill_all();
            killed = true;
        }
        if (hub->main_done && hub->alive == 0)
            break;
        green__stack_trim(&hub->stacks);
        int active = ev_run(hub->loop, hub->ready_count ? EVRUN_NOWAIT : EVRUN_ONCE);
        hub->last_poll = ev_time();
        if (hub->ready_count == 0) {
            if (!active && hub->alive > 0)
                break_deadlock();
            continue;
        }
        hub->batch = hub->ready_count - 1;
        switch_to(&hub->self, pop_ready());
    }
}

static void raise_nofile(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* The special problem of stack overflows: a greenlet that recurses too deep hits the
 * guard page below its stack and gets SIGSEGV. The handler runs on an alternate signal
 * stack (the faulting one is full), says in one line what happened, and lets the signal
 * take its default course (SA_RESETHAND: the faulting access repeats and the process dies
 * with SIGSEGV, leaving a core). It is only installed where nobody else handles SIGSEGV,
 * and not under AddressSanitizer, which reports overflows itself. */
#ifndef GREEN_ASAN
static void overflow_handler(int sig, siginfo_t *si, void *uctx) {
    static const char msg[] = "green: greenlet stack overflow (hit the guard page below its "
                              "stack); raise the stack size (green_config.stack_size)\n";
    struct green *g = hub ? hub->current : NULL;
    (void)sig;
    (void)uctx;
    if (g && g->stack && green__stack_guard_hit(g->stack, si->si_addr)) {
        ssize_t n = write(2, msg, sizeof msg - 1);
        (void)n;
    }
}
#endif

static void install_overflow_handler(void) {
#ifndef GREEN_ASAN
    static __thread void *altstack;
    struct sigaction old;
    if (sigaction(SIGSEGV, NULL, &old) != 0 || (old.sa_flags & SA_SIGINFO) ||
        old.sa_handler != SIG_DFL)
        return;
    if (!altstack) {
        size_t size = 64 * 1024;
        altstack = malloc(size);
        stack_t ss = {.ss_sp = altstack, .ss_size = size};
        if (!altstack || sigaltstack(&ss, NULL) != 0)
            return;
    }
    struct sigaction sa = {.sa_sigaction = overflow_handler,
                           .sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESETHAND};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, NULL);
#endif
}

static void hub_stack_bounds(struct green *self) {
    pthread_attr_t attr;
    void *addr;
    size_t size;
    if (pthread_getattr_np(pthread_self(), &attr) == 0) {
        if (pthread_attr_getstack(&attr, &addr, &size) == 0) {
            self->stack_lo = addr;
            self->stack_size = size;
        }
        pthread_attr_destroy(&attr);
    }
}

int green_run(struct ev_loop *loop, const green_config *cfg, green_fn main_fn, void *arg,
              void **ret) {
    if (hub)
        return -EBUSY;
    hub = calloc(1, sizeof *hub);
    if (!hub)
        return -ENOMEM;
    hub->loop = loop ? loop : ev_default_loop(0);
    hub->default_loop = loop == NULL;
    if (cfg)
        hub->cfg = *cfg;
    if (!hub->cfg.stack_size)
        hub->cfg.stack_size = 256 * 1024;
    if (!hub->cfg.stack_cache)
        hub->cfg.stack_cache = 4096;
    if (!hub->cfg.max_greenlets)
        hub->cfg.max_greenlets = 1000000;
    green__stack_pool_init(&hub->stacks, hub->cfg.stack_size, hub->cfg.stack_cache);
    hub_stack_bounds(&hub->self);
    hub->self.state = G_RUNNING;
    raise_nofile();
    install_overflow_handler();

    green_t main_h;
    int rc = green_spawn(&main_h, main_fn, arg);
    if (rc == 0) {
        hub->main_g = main_h.ptr;
        hub->last_poll = ev_time();
        hub_loop();
        if (ret)
            *ret = main_h.ptr->ret;
    }
    for (int i = 0; i < GREEN__SLOT_COUNT; i++)
        if (hub->slots[i].destroy)
            hub->slots[i].destroy(hub->slots[i].value);
    green__stack_pool_destroy(&hub->stacks);
    while (hub->chunks) {
        struct chunk *next = hub->chunks->next;
        free(hub->chunks);
        hub->chunks = next;
    }
    free(hub);
    hub = NULL;
    return rc;
}
