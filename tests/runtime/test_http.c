/*
 * test_http.c - green_http against a real nginx on loopback: transfers park only their own
 * greenlet, many run at once, deadlines and kills abandon a transfer and leave its easy
 * handle reusable, failed connects are finished transfers, and the hub's loop neither spins
 * nor blocks (curl issue 3371) while transfers wait.
 *
 * Every test runs its body as the main greenlet of a fresh hub (green_run) and starts its
 * own nginx. URLs are numeric (127.0.0.1) so no test depends on a resolver, except the one
 * test that interposes getaddrinfo below to make one fake name resolve slowly.
 */
#include "green.h"
#include "green_http.h"
#include "green_io.h"
#include "testlib.h"

#include <dlfcn.h>
#include <errno.h>
#include <ev.h>
#include <netdb.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static test_nginx nginx;

static void nginx_start(void) {
    test_nginx_start(&nginx);
}

/* SIGTERM first: nginx's graceful stop (SIGQUIT, in test_nginx_stop) waits for in-flight
 * requests, and a /never request whose client has gone still sleeps for an hour. */
static void nginx_stop(void) {
    kill(nginx.pid, SIGTERM);
    test_nginx_stop(&nginx);
}

static void url_of(char *out, size_t size, const char *path) {
    snprintf(out, size, "http://127.0.0.1:%d%s", nginx.port, path);
}

typedef struct body {
    char *data;
    size_t len;
} body;

/* Runs on the hub stack (see green_http.h): only appends. */
static size_t body_write(char *ptr, size_t size, size_t nmemb, void *userdata) {
    body *b = userdata;
    size_t n = size * nmemb;
    char *data = realloc(b->data, b->len + n + 1);
    if (!data)
        return 0;
    memcpy(data + b->len, ptr, n);
    b->data = data;
    b->len += n;
    b->data[b->len] = '\0';
    return n;
}

static size_t discard_write(char *ptr, size_t size, size_t nmemb, void *userdata) {
    (void)ptr;
    (void)userdata;
    return size * nmemb;
}

/* An easy handle for GET path, its body going to b (or nowhere when b is NULL). */
static CURL *easy_for(const char *path, body *b) {
    CURL *easy = curl_easy_init();
    ASSERT(easy != NULL);
    char url[256];
    url_of(url, sizeof url, path);
    curl_easy_setopt(easy, CURLOPT_URL, url);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, b ? body_write : discard_write);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, b);
    return easy;
}

static long status_of(CURL *easy) {
    long status = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    return status;
}

static void run_in_hub(green_fn fn, void *arg, size_t stack_size) {
    green_config cfg = {.stack_size = stack_size};
    ASSERT_EQ(green_run(NULL, &cfg, fn, arg, NULL), 0);
}

/* Start nginx, run fn as the main greenlet of a new hub, stop nginx. */
static void with_nginx(green_fn fn) {
    ASSERT_EQ(green_http_global_init(), 0);
    nginx_start();
    run_in_hub(fn, NULL, 0);
    nginx_stop();
    green_http_global_cleanup();
}

/* ---- one transfer ----------------------------------------------------------------- */

static void *get_fast_main(void *arg) {
    (void)arg;
    body b = {0};
    CURL *easy = easy_for("/fast", &b);
    CURLcode res = CURLE_FAILED_INIT;
    ASSERT_EQ(green_http_perform(easy, &res, 10.0), 0);
    ASSERT_EQ(res, CURLE_OK);
    ASSERT_EQ(status_of(easy), 200);
    ASSERT_STREQ(b.data, "ok\n");
    curl_easy_cleanup(easy);
    free(b.data);
    return NULL;
}

TEST(test_http_get_fast_returns_200_and_body) {
    with_nginx(get_fast_main);
}

static void *big_body_main(void *arg) {
    (void)arg;
    body b = {0};
    CURL *easy = easy_for("/big", &b);
    CURLcode res = CURLE_FAILED_INIT;
    ASSERT_EQ(green_http_perform(easy, &res, 20.0), 0);
    ASSERT_EQ(res, CURLE_OK);
    ASSERT_EQ(b.len, 2u << 20);
    for (size_t i = 0; i < b.len; i++)
        if (b.data[i] != 'x')
            ASSERT_EQ(i, -1); /* reports the first wrong offset */
    curl_easy_cleanup(easy);
    free(b.data);
    return NULL;
}

TEST(test_http_big_body_arrives_whole) {
    with_nginx(big_body_main);
}

static void *binary_body_main(void *arg) {
    (void)arg;
    body b = {0};
    CURL *easy = easy_for("/bin", &b);
    CURLcode res = CURLE_FAILED_INIT;
    ASSERT_EQ(green_http_perform(easy, &res, 10.0), 0);
    ASSERT_EQ(res, CURLE_OK);
    ASSERT_EQ(b.len, 4096);
    for (size_t i = 0; i < b.len; i++)
        ASSERT_EQ((unsigned char)b.data[i], i & 255);
    curl_easy_cleanup(easy);
    free(b.data);
    return NULL;
}

TEST(test_http_binary_body_keeps_every_byte) {
    with_nginx(binary_body_main);
}

static void *refused_main(void *arg) {
    (void)arg;
    CURL *easy = curl_easy_init();
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", test_free_port());
    curl_easy_setopt(easy, CURLOPT_URL, url);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    CURLcode res = CURLE_OK;
    ASSERT_EQ(green_http_perform(easy, &res, 10.0), 0);
    ASSERT_EQ(res, CURLE_COULDNT_CONNECT);
    curl_easy_cleanup(easy);
    return NULL;
}

TEST(test_http_connection_refused_is_a_finished_transfer) {
    ASSERT_EQ(green_http_global_init(), 0);
    run_in_hub(refused_main, NULL, 0);
    green_http_global_cleanup();
}

static bool write_ran_in_greenlet;

static size_t where_write(char *ptr, size_t size, size_t nmemb, void *userdata) {
    (void)ptr;
    (void)userdata;
    write_ran_in_greenlet = green_in_greenlet();
    return size * nmemb;
}

static void *callback_stack_main(void *arg) {
    (void)arg;
    CURL *easy = easy_for("/fast", NULL);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, where_write);
    write_ran_in_greenlet = true;
    CURLcode res = CURLE_FAILED_INIT;
    ASSERT_EQ(green_http_perform(easy, &res, 10.0), 0);
    ASSERT_EQ(res, CURLE_OK);
    ASSERT(!write_ran_in_greenlet);
    curl_easy_cleanup(easy);
    return NULL;
}

TEST(test_http_write_callback_runs_on_the_hub) {
    with_nginx(callback_stack_main);
}

/* ---- deadlines and kills ---------------------------------------------------------- */

static void *scope_timeout_main(void *arg) {
    (void)arg;
    body b = {0};
    CURL *easy = easy_for("/never", &b);
    CURLcode res = CURLE_FAILED_INIT;
    green_timeout t;
    double t0 = test_now();
    green_timeout_start(&t, 0.2);
    ASSERT_EQ(green_http_perform(easy, &res, -1), -ETIMEDOUT);
    ASSERT(green_timeout_end(&t));
    ASSERT_RANGE(test_now() - t0, 0.15, TEST_SOON);
    ASSERT_EQ(res, CURLE_FAILED_INIT); /* untouched on error */

    /* The handle was detached from the multi: it works for the next transfer. */
    char url[256];
    url_of(url, sizeof url, "/fast");
    curl_easy_setopt(easy, CURLOPT_URL, url);
    ASSERT_EQ(green_http_perform(easy, &res, 10.0), 0);
    ASSERT_EQ(res, CURLE_OK);
    ASSERT_EQ(status_of(easy), 200);
    ASSERT_STREQ(b.data, "ok\n");
    curl_easy_cleanup(easy);
    free(b.data);
    return NULL;
}

TEST(test_http_timeout_scope_abandons_transfer_and_handle_is_reusable) {
    with_nginx(scope_timeout_main);
}

static void *own_timeout_main(void *arg) {
    (void)arg;
    CURL *easy = easy_for("/never", NULL);
    CURLcode res = CURLE_FAILED_INIT;
    double t0 = test_now();
    ASSERT_EQ(green_http_perform(easy, &res, 0.2), -ETIMEDOUT);
    ASSERT_RANGE(test_now() - t0, 0.15, TEST_SOON);
    ASSERT_EQ(res, CURLE_FAILED_INIT);
    curl_easy_cleanup(easy); /* right away: nothing refers to it any more */
    return NULL;
}

TEST(test_http_own_timeout_returns_etimedout) {
    with_nginx(own_timeout_main);
}

static void *get_never(void *arg) {
    (void)arg;
    CURL *easy = easy_for("/never", NULL);
    CURLcode res;
    int rc = green_http_perform(easy, &res, -1);
    curl_easy_cleanup(easy);
    return (void *)(intptr_t)rc;
}

static void *kill_main(void *arg) {
    (void)arg;
    green_t g;
    ASSERT_EQ(green_spawn(&g, get_never, NULL), 0);
    ASSERT_EQ(green_sleep(0.1), 0); /* long enough to be connected and waiting */
    double t0 = test_now();
    ASSERT_EQ(green_kill(g), 0);
    void *ret = NULL;
    ASSERT_EQ(green_join(g, &ret), 0);
    ASSERT_EQ((intptr_t)ret, -ECANCELED);
    ASSERT_RANGE(test_now() - t0, 0.0, TEST_SOON);
    return NULL;
}

TEST(test_http_kill_while_parked_returns_ecanceled) {
    with_nginx(kill_main);
}

/* What a killed (or interrupted) transfer leaves at the server: its connection closed.
 * The server is this test's own listener, which reads the request and never answers. */
struct silent {
    int port;
    int code; /* how the transfer is interrupted: -ECANCELED (green_kill) or another */
};

static void *get_silent(void *arg) {
    struct silent *s = arg;
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", s->port);
    CURL *easy = curl_easy_init();
    curl_easy_setopt(easy, CURLOPT_URL, url);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    CURLcode res;
    int rc = green_http_perform(easy, &res, -1);
    curl_easy_cleanup(easy);
    return (void *)(intptr_t)rc;
}

static void *silent_main(void *arg) {
    struct silent *s = arg;
    int lfd = green_tcp_listen("127.0.0.1", 0, 8);
    ASSERT(lfd >= 0);
    s->port = green_sock_port(lfd);
    green_t g;
    ASSERT_EQ(green_spawn(&g, get_silent, s), 0);
    int fd = green_accept(lfd, TEST_SOON);
    ASSERT(fd >= 0);
    char req[4096];
    size_t got = 0;
    while (got < 4 || memcmp(req + got - 4, "\r\n\r\n", 4) != 0) {
        ssize_t n = green_read(fd, req + got, sizeof req - got, TEST_SOON);
        ASSERT(n > 0);
        got += (size_t)n;
    }
    /* The request is in, the transfer waits for an answer that never comes. */
    ASSERT_EQ(s->code == -ECANCELED ? green_kill(g) : green_throw(g, s->code), 0);
    void *ret = NULL;
    ASSERT_EQ(green_join(g, &ret), 0);
    ASSERT_EQ((intptr_t)ret, s->code);
    /* The connection is closed, not kept for reuse: the server reads its end. */
    char c;
    ASSERT_EQ(green_read(fd, &c, 1, TEST_SOON), 0);
    close(fd);
    close(lfd);
    return NULL;
}

TEST(test_http_kill_closes_the_connection_of_a_transfer_never_answered) {
    struct silent s = {0, -ECANCELED};
    ASSERT_EQ(green_http_global_init(), 0);
    run_in_hub(silent_main, &s, 0);
    green_http_global_cleanup();
}

TEST(test_http_throw_ends_the_transfer_with_its_code_and_closes_the_connection) {
    struct silent s = {0, -ETIMEDOUT};
    ASSERT_EQ(green_http_global_init(), 0);
    run_in_hub(silent_main, &s, 0);
    green_http_global_cleanup();
}

static CURL *shared_easy;

static void *perform_shared(void *arg) {
    (void)arg;
    CURLcode res = CURLE_FAILED_INIT;
    int rc = green_http_perform(shared_easy, &res, 10.0);
    return (void *)(intptr_t)(rc == 0 ? (int)res : rc);
}

static void *busy_main(void *arg) {
    (void)arg;
    shared_easy = easy_for("/slow", NULL);
    green_t first;
    ASSERT_EQ(green_spawn(&first, perform_shared, NULL), 0);
    ASSERT_EQ(green_yield(), 0); /* first is now parked in its transfer */
    CURLcode res = CURLE_FAILED_INIT;
    ASSERT_EQ(green_http_perform(shared_easy, &res, 10.0), -EBUSY);
    void *ret = (void *)-1;
    ASSERT_EQ(green_join(first, &ret), 0);
    ASSERT_EQ((intptr_t)ret, CURLE_OK); /* the refused second call did not disturb it */
    ASSERT_EQ(status_of(shared_easy), 200);
    curl_easy_cleanup(shared_easy);
    return NULL;
}

TEST(test_http_handle_in_use_is_ebusy) {
    with_nginx(busy_main);
}

/* ---- the loop: shared, never spinning, never blocked -------------------------------- */

static void *reuse_main(void *arg) {
    (void)arg;
    for (int i = 0; i < 2; i++) {
        CURL *easy = easy_for("/fast", NULL);
        CURLcode res = CURLE_FAILED_INIT;
        ASSERT_EQ(green_http_perform(easy, &res, 10.0), 0);
        ASSERT_EQ(res, CURLE_OK);
        long new_connections = -1;
        curl_easy_getinfo(easy, CURLINFO_NUM_CONNECTS, &new_connections);
        ASSERT_EQ(new_connections, i == 0 ? 1 : 0);
        curl_easy_cleanup(easy);
    }
    return NULL;
}

TEST(test_http_connection_is_reused_across_easy_handles) {
    with_nginx(reuse_main);
}

static void *no_spin_main(void *arg) {
    (void)arg;
    CURL *easy = easy_for("/slow", NULL);
    CURLcode res = CURLE_FAILED_INIT;
    unsigned before = ev_iteration(green_loop());
    ASSERT_EQ(green_http_perform(easy, &res, 10.0), 0);
    unsigned iterations = ev_iteration(green_loop()) - before;
    ASSERT_EQ(res, CURLE_OK);
    /* A handful of wake-ups for connect, send and receive; a timer computed with integer
     * division (every sub-second timeout becoming 0 s) would spin thousands of times in
     * the 100 ms nginx waits. */
    ASSERT_RANGE(iterations, 1, 100);
    curl_easy_cleanup(easy);
    return NULL;
}

TEST(test_http_waiting_transfer_does_not_spin_the_loop) {
    with_nginx(no_spin_main);
}

/* getaddrinfo, interposed for one fake name: "slow-dns.test" blocks until the test opens
 * slow_dns_gate (TEST_NEVER at most) and then resolves to 127.0.0.1. libcurl's resolver
 * thread calls it; everything else goes to the real one. */
static atomic_int slow_dns_gate, slow_dns_returned;

int getaddrinfo(const char *restrict node, const char *restrict service,
                const struct addrinfo *restrict hints, struct addrinfo **restrict res) {
    typedef int (*gai_fn)(const char *, const char *, const struct addrinfo *, struct addrinfo **);
    gai_fn real = (gai_fn)dlsym(RTLD_NEXT, "getaddrinfo");
    if (node && strcmp(node, "slow-dns.test") == 0) {
        double end = test_now() + TEST_NEVER;
        while (!atomic_load(&slow_dns_gate) && test_now() < end)
            test_pause();
        int rc = real("127.0.0.1", service, hints, res);
        atomic_store(&slow_dns_returned, 1);
        return rc;
    }
    return real(node, service, hints, res);
}

static void *dns_abandon_main(void *arg) {
    (void)arg;
    CURL *easy = curl_easy_init();
    char url[128];
    snprintf(url, sizeof url, "http://slow-dns.test:%d/fast", nginx.port);
    curl_easy_setopt(easy, CURLOPT_URL, url);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    CURLcode res = CURLE_FAILED_INIT;
    double t0 = test_now();
    /* Removing the transfer must not wait for the resolver thread's getaddrinfo, which
     * is still blocked. */
    ASSERT_EQ(green_http_perform(easy, &res, 0.2), -ETIMEDOUT);
    ASSERT_RANGE(test_now() - t0, 0.15, TEST_SOON);
    ASSERT(!atomic_load(&slow_dns_returned));
    atomic_store(&slow_dns_gate, 1);
    curl_easy_cleanup(easy);

    /* Let the detached resolver thread finish and free its memory before the process
     * exits, so valgrind sees no leak from it. */
    double end = test_now() + TEST_NEVER;
    while (!atomic_load(&slow_dns_returned)) {
        ASSERT(test_now() < end);
        ASSERT_EQ(green_sleep(0.05), 0);
    }
    ASSERT_EQ(green_sleep(0.1), 0);
    return NULL;
}

TEST(test_http_abandoning_a_transfer_during_dns_does_not_block_the_hub) {
    with_nginx(dns_abandon_main);
}

static void *one_get(void *arg) {
    (void)arg;
    body b = {0};
    CURL *easy = easy_for("/fast", &b);
    CURLcode res = CURLE_FAILED_INIT;
    ASSERT_EQ(green_http_perform(easy, &res, 10.0), 0);
    ASSERT_EQ(res, CURLE_OK);
    ASSERT_STREQ(b.data, "ok\n");
    curl_easy_cleanup(easy);
    free(b.data);
    return NULL;
}

TEST(test_http_works_again_in_a_second_hub) {
    ASSERT_EQ(green_http_global_init(), 0);
    nginx_start();
    run_in_hub(one_get, NULL, 0);
    run_in_hub(one_get, NULL, 0); /* the first hub's multi was destroyed with it */
    nginx_stop();
    green_http_global_cleanup();
}

/* ---- the convenience GET ------------------------------------------------------------ */

static void *get_helper_main(void *arg) {
    (void)arg;
    char url[256];
    long status = -1;
    green_http_buf buf = {0};
    url_of(url, sizeof url, "/missing");
    ASSERT_EQ(green_http_get(url, 10.0, &status, &buf), 0);
    ASSERT_EQ(status, 404);
    green_http_buf_free(&buf);

    url_of(url, sizeof url, "/error");
    ASSERT_EQ(green_http_get(url, 10.0, &status, &buf), 0);
    ASSERT_EQ(status, 500);
    ASSERT_STREQ(buf.data, "boom\n");
    green_http_buf_free(&buf);

    buf.max = 1000;
    url_of(url, sizeof url, "/big");
    ASSERT_EQ(green_http_get(url, 10.0, &status, &buf), -EMSGSIZE);
    ASSERT(buf.len <= 1000);
    green_http_buf_free(&buf);

    snprintf(url, sizeof url, "http://127.0.0.1:%d/", test_free_port());
    ASSERT_EQ(green_http_get(url, 10.0, &status, NULL), -ECONNREFUSED);
    ASSERT_EQ(status, 0);
    return NULL;
}

TEST(test_http_get_reports_status_body_and_errors) {
    with_nginx(get_helper_main);
}

/* ---- many at once ------------------------------------------------------------------- */

typedef struct slow_job {
    int failures; /* shared by all jobs of one test */
    int done;
} slow_job;

static void *get_slow(void *arg) {
    slow_job *job = arg;
    CURL *easy = easy_for("/slow", NULL);
    CURLcode res = CURLE_FAILED_INIT;
    int rc = green_http_perform(easy, &res, 40.0);
    if (rc != 0 || res != CURLE_OK || status_of(easy) != 200) {
        if (job->failures++ < 5)
            fprintf(stderr, "transfer failed: rc %d, %s, status %ld\n", rc, curl_easy_strerror(res),
                    status_of(easy));
    }
    job->done++;
    curl_easy_cleanup(easy);
    return NULL;
}

/* n greenlets each GET /slow at once; returns the wall time. */
static double run_concurrent_slow(int n) {
    slow_job job = {0};
    green_t *g = calloc((size_t)n, sizeof *g);
    ASSERT(g != NULL);
    double t0 = test_now();
    for (int i = 0; i < n; i++)
        ASSERT_EQ(green_spawn(&g[i], get_slow, &job), 0);
    for (int i = 0; i < n; i++)
        ASSERT_EQ(green_join(g[i], NULL), 0);
    double elapsed = test_now() - t0;
    free(g);
    ASSERT_EQ(job.failures, 0);
    ASSERT_EQ(job.done, n);
    return elapsed;
}

static void *concurrent_500_main(void *arg) {
    (void)arg;
    double elapsed = run_concurrent_slow(500);
    fprintf(stderr, "500 x /slow (100 ms each) took %.3f s\n", elapsed);
    /* Serially this is 50 s; concurrently a little over 0.1 s (valgrind: a few). */
    ASSERT_RANGE(elapsed, 0.1, 25.0);
    return NULL;
}

TEST(test_http_concurrent_transfers_overlap) {
    with_nginx(concurrent_500_main);
}

static void *concurrent_10k_main(void *arg) {
    (void)arg;
    double elapsed = run_concurrent_slow(10000);
    fprintf(stderr, "10,000 x /slow (100 ms each) took %.3f s\n", elapsed);
    ASSERT_RANGE(elapsed, 0.1, 45.0);
    return NULL;
}

/* One descriptor per transfer, plus the process's own few. */
#define FDS_FOR_10K 10500

TEST(test_http_10k_concurrent_transfers) {
    struct rlimit rl;
    ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &rl), 0);
    rl.rlim_cur = rl.rlim_max;
    ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < FDS_FOR_10K) {
        printf("SKIP: RLIMIT_NOFILE hard limit is %llu, below the %d descriptors 10,000 "
               "transfers need\n",
               (unsigned long long)rl.rlim_max, FDS_FOR_10K);
        return;
    }
    ASSERT_EQ(green_http_global_init(), 0);
    nginx_start();
    run_in_hub(concurrent_10k_main, NULL, 32 * 1024);
    nginx_stop();
    green_http_global_cleanup();
}
