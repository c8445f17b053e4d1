/*
 * bench_runtime.c - micro-benchmarks of the green runtime.
 *
 *   bench_runtime [--http URL_FAST URL_SLOW] [--transfers N] [--requests N] [--concurrency N]
 *
 * Prints a human table, then one machine-readable line per figure: `name value unit`.
 * Each timing is the median of RUNS repetitions. The HTTP figures need a local HTTP
 * server (bench/runtime.sh starts nginx and passes its URLs); without --http they are
 * skipped.
 *
 *   switch_ns              one context switch, asm (two switches per ping-pong / 2)
 *   switch_ucontext_ns     the same with glibc swapcontext, in the same run
 *   yield_ns               one green_yield between two greenlets (the scheduler's cost)
 *   spawn_join_ns          green_spawn + green_join of an empty greenlet, warm stack cache
 *   rss_per_greenlet_kib   resident memory per parked greenlet, at 100,000 greenlets
 *   http_concurrent_transfers  transfers of URL_SLOW completed without error, N at once
 *   http_reqs_per_s        GETs of URL_FAST per second through green_http_perform
 */
#include "green.h"
#include "green_ctx.h"
#include "green_http.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define RUNS 5

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return v[n / 2];
}

/* ---- raw context switches ---------------------------------------------------------- */

#define SWITCHES 2000000

static green_asm_ctx asm_main, asm_other;
static green_uc_ctx uc_main, uc_other;

#ifdef GREEN_HAVE_ASM
static void asm_bouncer(void *arg) {
    (void)arg;
    for (;;)
        green__asm_switch(&asm_other, &asm_main);
}
#endif

static void uc_bouncer(void *arg) {
    (void)arg;
    for (;;)
        green__uc_switch(&uc_other, &uc_main);
}

static void *stack_for_bench(size_t size) {
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        perror("mmap");
        exit(1);
    }
    return p;
}

static double bench_switch_asm(void) {
#ifdef GREEN_HAVE_ASM
    static void *stack;
    if (!stack) {
        stack = stack_for_bench(65536);
        green__asm_init(&asm_other, stack, 65536, asm_bouncer, NULL);
    }
    double t0 = now();
    for (int i = 0; i < SWITCHES / 2; i++)
        green__asm_switch(&asm_main, &asm_other);
    return (now() - t0) / SWITCHES * 1e9;
#else
    return 0;
#endif
}

static double bench_switch_uc(void) {
    static void *stack;
    if (!stack) {
        stack = stack_for_bench(65536);
        green__uc_init(&uc_other, stack, 65536, uc_bouncer, NULL);
    }
    int n = SWITCHES / 20;
    double t0 = now();
    for (int i = 0; i < n / 2; i++)
        green__uc_switch(&uc_main, &uc_other);
    return (now() - t0) / n * 1e9;
}

/* ---- scheduler --------------------------------------------------------------------- */

#define YIELDS 1000000
#define SPAWNS 1000000

static void *yielder(void *arg) {
    (void)arg;
    for (int i = 0; i < YIELDS; i++)
        green_yield();
    return NULL;
}

static void *empty(void *arg) {
    return arg;
}

struct sched_result {
    double yield_ns, spawn_join_ns;
};

static void *sched_main(void *arg) {
    struct sched_result *r = arg;
    green_t a, b;
    double t0 = now();
    green_spawn(&a, yielder, NULL);
    green_spawn(&b, yielder, NULL);
    green_join(a, NULL);
    green_join(b, NULL);
    r->yield_ns = (now() - t0) / (2.0 * YIELDS) * 1e9;

    for (int i = 0; i < 1000; i++) { /* warm the stack cache */
        green_t g;
        green_spawn(&g, empty, NULL);
        green_join(g, NULL);
    }
    t0 = now();
    for (int i = 0; i < SPAWNS; i++) {
        green_t g;
        green_spawn(&g, empty, NULL);
        green_join(g, NULL);
    }
    r->spawn_join_ns = (now() - t0) / SPAWNS * 1e9;
    return NULL;
}

/* ---- memory per parked greenlet ------------------------------------------------------ */

#define PARKED 100000

static long rss_kib(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, resident = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
            resident = 0;
        fclose(f);
    }
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static void *parked(void *arg) {
    (void)arg;
    green_sleep(3600);
    return NULL;
}

static void *rss_main(void *arg) {
    double *per = arg;
    static green_t handles[PARKED];
    long before = rss_kib();
    for (int i = 0; i < PARKED; i++)
        if (green_spawn(&handles[i], parked, NULL) != 0) {
            fprintf(stderr, "spawn %d failed\n", i);
            exit(1);
        }
    green_yield(); /* every one of them starts and parks */
    long after = rss_kib();
    *per = (double)(after - before) / PARKED;
    for (int i = 0; i < PARKED; i++) {
        green_kill(handles[i]);
        green_join(handles[i], NULL);
    }
    return NULL;
}

/* ---- HTTP -------------------------------------------------------------------------- */

struct http_job {
    const char *url;
    int *ok;
    int *remaining_requests; /* NULL: one request */
};

static size_t discard(char *p, size_t s, size_t n, void *u) {
    (void)p;
    (void)u;
    return s * n;
}

static void *http_worker(void *arg) {
    struct http_job *j = arg;
    CURL *easy = curl_easy_init();
    curl_easy_setopt(easy, CURLOPT_URL, j->url);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    int once = 1;
    while (j->remaining_requests ? *j->remaining_requests > 0 : once-- > 0) {
        CURLcode code;
        long status = 0;
        if (j->remaining_requests)
            (*j->remaining_requests)--;
        if (green_http_perform(easy, &code, 60) == 0 && code == CURLE_OK &&
            curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status) == CURLE_OK && status == 200)
            (*j->ok)++;
    }
    curl_easy_cleanup(easy);
    return NULL;
}

struct http_bench {
    const char *url;
    int greenlets, requests, ok;
    double seconds;
};

static void *http_main(void *arg) {
    struct http_bench *b = arg;
    green_t *h = calloc((size_t)b->greenlets, sizeof *h);
    struct http_job job = {b->url, &b->ok, b->requests ? &b->requests : NULL};
    double t0 = now();
    for (int i = 0; i < b->greenlets; i++)
        green_spawn(&h[i], http_worker, &job);
    for (int i = 0; i < b->greenlets; i++)
        green_join(h[i], NULL);
    b->seconds = now() - t0;
    free(h);
    return NULL;
}

int main(int argc, char **argv) {
    const char *fast = NULL, *slow = NULL;
    int transfers = 10000, requests = 50000, concurrency = 100;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--http") == 0 && i + 2 < argc) {
            fast = argv[++i];
            slow = argv[++i];
        } else if (strcmp(argv[i], "--transfers") == 0 && i + 1 < argc) {
            transfers = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--requests") == 0 && i + 1 < argc) {
            requests = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--concurrency") == 0 && i + 1 < argc) {
            concurrency = atoi(argv[++i]);
        } else {
            fprintf(stderr,
                    "usage: %s [--http URL_FAST URL_SLOW] [--transfers N] "
                    "[--requests N] [--concurrency N]\n",
                    argv[0]);
            return 2;
        }
    }

    double sw[RUNS], uc[RUNS], yl[RUNS], sj[RUNS];
    for (int r = 0; r < RUNS; r++) {
        sw[r] = bench_switch_asm();
        uc[r] = bench_switch_uc();
        struct sched_result sr;
        green_run(NULL, NULL, sched_main, &sr, NULL);
        yl[r] = sr.yield_ns;
        sj[r] = sr.spawn_join_ns;
    }
    double switch_ns = median(sw, RUNS), uc_ns = median(uc, RUNS);
    double yield_ns = median(yl, RUNS), spawn_ns = median(sj, RUNS);

    double rss = 0;
    green_config small = {.stack_size = 64 * 1024};
    green_run(NULL, &small, rss_main, &rss, NULL);

    struct http_bench conc = {0}, rate = {0};
    if (fast) {
        green_http_global_init();
        conc = (struct http_bench){.url = slow, .greenlets = transfers};
        green_config cfg = {.stack_size = 64 * 1024};
        green_run(NULL, &cfg, http_main, &conc, NULL);
        rate = (struct http_bench){.url = fast, .greenlets = concurrency, .requests = requests};
        int asked = requests;
        green_run(NULL, &cfg, http_main, &rate, NULL);
        rate.requests = asked;
    }

    printf("%-44s %12s\n", "figure (median of 5 runs where timed)", "value");
    printf("%-44s %10.1f ns\n", "context switch, asm", switch_ns);
    printf("%-44s %10.1f ns  (%.0fx slower)\n", "context switch, ucontext (swapcontext)", uc_ns,
           switch_ns > 0 ? uc_ns / switch_ns : 0);
    printf("%-44s %10.1f ns\n", "green_yield between two greenlets", yield_ns);
    printf("%-44s %10.1f ns\n", "spawn + join, empty greenlet", spawn_ns);
    printf("%-44s %10.2f KiB\n", "RSS per parked greenlet at 100,000", rss);
    if (fast) {
        printf("%-44s %6d / %d in %.2f s\n", "concurrent HTTP transfers (slow URL)", conc.ok,
               transfers, conc.seconds);
        printf("%-44s %10.0f req/s (%d ok of %d, %d greenlets)\n", "HTTP GETs (fast URL)",
               rate.ok / rate.seconds, rate.ok, rate.requests, concurrency);
    }
    printf("\nswitch_ns %.2f ns\n", switch_ns);
    printf("switch_ucontext_ns %.2f ns\n", uc_ns);
    printf("yield_ns %.2f ns\n", yield_ns);
    printf("spawn_join_ns %.2f ns\n", spawn_ns);
    printf("rss_per_greenlet_kib %.2f KiB\n", rss);
    if (fast) {
        printf("http_concurrent_transfers %d of %d\n", conc.ok, transfers);
        printf("http_reqs_per_s %.0f req/s\n", rate.ok / rate.seconds);
    }
    return 0;
}
