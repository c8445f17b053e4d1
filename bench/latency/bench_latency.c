/*
 * bench_latency.c - enqueue -> start latency of workerd at a steady producer rate.
 *
 *   bench_latency PORT RATE SECONDS [QUEUE=default] [PREFIX=workerd]
 *
 * A producer on one synchronous hiredis connection LPUSHes one echo task every 1/RATE s
 * (absolute deadlines on CLOCK_MONOTONIC, so a late push does not shift the ones after it)
 * for SECONDS. Each message carries its enqueue time, as unix seconds, in its args:
 *   {"id":"lat-<n>","task":"echo","args":[<enqueue time>]}
 * A running workerd echoes the args into its result, whose started_at is the time the job
 * began (both clocks are this machine's wall clock, written to the microsecond). Once the
 * last push is done, the tool waits (up to 30 s) for every result, then prints p50, p99 and
 * max of started_at - enqueue time, and how far the producer fell behind its schedule, as
 * `name value unit` lines. Exit status 1 when results are missing.
 *
 * Single-threaded, blocking; runs beside the worker on the same machine.
 */
#include <hiredis/hiredis.h>
#include <jansson.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static double unix_now(void) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double percentile(const double *sorted, size_t n, double p) {
    size_t i = (size_t)(p / 100.0 * (double)(n - 1) + 0.5);
    return sorted[i < n ? i : n - 1];
}

static void add_ns(struct timespec *t, long long ns) {
    t->tv_nsec += ns;
    while (t->tv_nsec >= 1000000000L) {
        t->tv_nsec -= 1000000000L;
        t->tv_sec++;
    }
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s PORT RATE SECONDS [QUEUE=default] [PREFIX=workerd]\n", argv[0]);
        return 2;
    }
    int port = atoi(argv[1]);
    double rate = atof(argv[2]), seconds = atof(argv[3]);
    const char *queue = argc > 4 ? argv[4] : "default";
    const char *prefix = argc > 5 ? argv[5] : "workerd";
    size_t total = (size_t)(rate * seconds);
    if (port <= 0 || rate <= 0 || total == 0) {
        fprintf(stderr, "bench_latency: bad arguments\n");
        return 2;
    }
    redisContext *c = redisConnect("127.0.0.1", port);
    if (c == NULL || c->err) {
        fprintf(stderr, "bench_latency: cannot connect to 127.0.0.1:%d\n", port);
        return 2;
    }
    char qkey[256];
    snprintf(qkey, sizeof qkey, "%s:queue:%s", prefix, queue);

    /* The producer: one LPUSH per tick, on schedule. */
    long long step = (long long)(1e9 / rate);
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    double max_behind_ms = 0;
    for (size_t i = 0; i < total; i++) {
        add_ns(&next, step);
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL) == EINTR)
            ;
        char msg[160];
        snprintf(msg, sizeof msg, "{\"id\":\"lat-%zu\",\"task\":\"echo\",\"args\":[%.6f]}", i,
                 unix_now());
        redisReply *r = redisCommand(c, "LPUSH %s %s", qkey, msg);
        if (r == NULL) {
            fprintf(stderr, "bench_latency: LPUSH failed: %s\n", c->errstr);
            return 2;
        }
        freeReplyObject(r);
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        double behind =
            (double)(now.tv_sec - next.tv_sec) * 1e3 + (double)(now.tv_nsec - next.tv_nsec) / 1e6;
        if (behind > max_behind_ms)
            max_behind_ms = behind;
    }

    /* Collect: every result, waiting up to 30 s for the last ones. */
    double *lat = malloc(total * sizeof *lat);
    size_t got = 0, bad = 0;
    double give_up = unix_now() + 30;
    for (size_t i = 0; lat && i < total;) {
        char key[320]; /* formatted here: hiredis 0.14's format knows no %zu */
        snprintf(key, sizeof key, "%s:result:lat-%zu", prefix, i);
        redisReply *r = redisCommand(c, "GET %s", key);
        if (r == NULL) {
            fprintf(stderr, "bench_latency: GET failed: %s\n", c->errstr);
            return 2;
        }
        if (r->type != REDIS_REPLY_STRING) {
            freeReplyObject(r);
            if (unix_now() > give_up)
                break;
            struct timespec ms = {0, 1000000};
            nanosleep(&ms, NULL);
            continue;
        }
        json_t *doc = json_loadb(r->str, r->len, 0, NULL);
        json_t *started = json_object_get(doc, "started_at");
        json_t *sent = json_array_get(json_object_get(doc, "result"), 0);
        if (json_is_number(started) && json_is_number(sent))
            lat[got++] = (json_number_value(started) - json_number_value(sent)) * 1e3;
        else
            bad++;
        json_decref(doc);
        freeReplyObject(r);
        i++;
    }
    redisFree(c);
    if (got == 0) {
        fprintf(stderr, "bench_latency: no results (is a worker running?)\n");
        return 1;
    }
    qsort(lat, got, sizeof *lat, cmp_double);
    printf("latency_rate %.0f tasks/s\n", rate);
    printf("latency_tasks %zu tasks\n", got);
    printf("latency_missing %zu tasks\n", total - got - bad);
    printf("latency_p50 %.3f ms\n", percentile(lat, got, 50));
    printf("latency_p90 %.3f ms\n", percentile(lat, got, 90));
    printf("latency_p99 %.3f ms\n", percentile(lat, got, 99));
    printf("latency_max %.3f ms\n", lat[got - 1]);
    printf("latency_producer_max_behind %.3f ms\n", max_behind_ms);
    free(lat);
    return got + bad == total && bad == 0 ? 0 : 1;
}
