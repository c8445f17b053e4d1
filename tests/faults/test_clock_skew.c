/*
 * test_clock_skew.c - two workers whose clocks are 30 s ahead and 30 s behind (libfaketime,
 * preloaded as a test-only tool: namespaces do not virtualise CLOCK_REALTIME) on one Redis. The
 * times that matter are the Redis server's: nobody is presumed dead (heartbeats are TTLs kept by
 * Redis), a countdown runs once it is due on Redis's clock (not 30 s early or late), and results
 * are dated on Redis's clock. Skipped where libfaketime is not installed.
 */
#include "e2e.h"
#include "testlib.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* libfaketime, preloaded into the worker alone (FAKETIME="+30s" shifts its clocks). */
static const char *libfaketime(void) {
    static const char *const paths[] = {
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
        "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
    };
    for (size_t i = 0; i < sizeof paths / sizeof *paths; i++)
        if (access(paths[i], R_OK) == 0)
            return paths[i];
    return NULL;
}

enum { N = 20 };

TEST(workers_thirty_seconds_off_keep_to_the_redis_clock) {
    const char *lib = libfaketime();
    if (lib == NULL)
        test_skip("libfaketime is not installed (Debian package faketime)");
    e2e_env e;
    e2e_env_start(&e);
    static const char *const offsets[2] = {"+30s", "-30s"};
    e2e_worker w[2];
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/0", e.redis.port);
    for (int k = 0; k < 2; k++) {
        /* An AddressSanitizer build must be told that a preloaded library before its
         * runtime is intended. */
        const char *asan = getenv("ASAN_OPTIONS");
        char *saved = asan ? strdup(asan) : NULL, opts[1024];
        snprintf(opts, sizeof opts, "%s%sverify_asan_link_order=0", asan ? asan : "",
                 asan ? ":" : "");
        setenv("ASAN_OPTIONS", opts, 1);
        setenv("LD_PRELOAD", lib, 1);
        setenv("FAKETIME", offsets[k], 1);
        E2E_START(&w[k], 0, "-b", url, "-c", "4", "--heartbeat", "1", "-n", k ? "behind" : "ahead");
        unsetenv("LD_PRELOAD");
        unsetenv("FAKETIME");
        if (saved)
            setenv("ASAN_OPTIONS", saved, 1);
        else
            unsetenv("ASAN_OPTIONS");
        free(saved);
        e2e_wait_ready(&w[k]);
    }
    double pushed = e2e_redis_time(e.c);
    int by_ahead = 0;
    for (int i = 1; i <= N; i++)
        e2e_pushf(e.c, "default", "{\"id\":\"cs-%d\",\"task\":\"echo\",\"countdown\":2}", i);
    for (int i = 1; i <= N; i++) {
        char id[32];
        snprintf(id, sizeof id, "cs-%d", i);
        json_t *r = e2e_wait_result(e.c, id, "SUCCESS", 20.0);
        ASSERT(r != NULL);
        double now = e2e_redis_time(e.c);
        double started = e2e_jnum(r, "started_at"), finished = e2e_jnum(r, "finished_at");
        /* Never before its due time on Redis's clock; dated on Redis's clock. */
        if (!(started >= pushed + 2 - 0.01 && finished <= now + 1 && finished >= pushed))
            test__fail(__FILE__, __LINE__,
                       "%s by %s: pushed %.3f, started %.3f, finished %.3f, now %.3f", id,
                       e2e_jstr(r, "worker"), pushed, started, finished, now);
        by_ahead += strncmp(e2e_jstr(r, "worker"), "ahead:", 6) == 0;
        json_decref(r);
    }
    printf("skew: %d tasks ran on the worker 30 s ahead, %d on the one 30 s behind\n", by_ahead,
           N - by_ahead);
    for (int k = 0; k < 2; k++) {
        ASSERT_EQ(e2e_log_count(&w[k], "recovered the messages of dead workers"), 0);
        e2e_worker_signal(&w[k], SIGTERM);
        ASSERT_EQ(e2e_worker_wait(&w[k], 15.0), 0);
        e2e_worker_stop(&w[k]);
    }
    e2e_env_end(&e);
}
