/*
 * test_metrics.c - what an operator sees of a running worker: the Prometheus /metrics
 * page (checked as the text exposition format, and against the tasks actually run),
 * /healthz following the broker link, /workers, the HTTP answers to bad requests, and the
 * task event stream with -E (and its absence without).
 *
 * Every test runs the real workerd binary on a real redis-server, with --http on a free
 * loopback port.
 */
#include "e2e.h"
#include "httpc.h"
#include "testlib.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct env {
    test_redis redis;
    redisContext *c;
    e2e_worker w;
    int port;
    char addr[64];
} env;

static void env_start(env *e, const char *extra) {
    memset(e, 0, sizeof *e);
    test_redis_start(&e->redis, NULL);
    e->c = e2e_redis(e->redis.port);
    e->port = test_free_port();
    snprintf(e->addr, sizeof e->addr, "127.0.0.1:%d", e->port);
    if (extra)
        E2E_START_READY(&e->w, e->redis.port, "--http", e->addr, "--heartbeat", "1", extra);
    else
        E2E_START_READY(&e->w, e->redis.port, "--http", e->addr, "--heartbeat", "1");
}

static void env_end(env *e) {
    if (e->w.pid > 0) {
        e2e_worker_signal(&e->w, SIGTERM);
        int code = e2e_worker_wait(&e->w, 20.0);
        if (code != 0)
            e2e_log_dump(&e->w);
        ASSERT_EQ(code, 0);
    }
    e2e_worker_stop(&e->w);
    redisFree(e->c);
    test_redis_stop(&e->redis);
}

static void wait_all(env *e, const char *prefix, int n) {
    for (int i = 0; i < n; i++) {
        char id[64];
        snprintf(id, sizeof id, "%s-%d", prefix, i);
        json_t *res = e2e_wait_result(e->c, id, NULL, 15.0);
        if (!res)
            e2e_log_dump(&e->w);
        ASSERT(res != NULL);
        json_decref(res);
    }
}

static void push_n(env *e, const char *prefix, int n, const char *task, const char *args) {
    for (int i = 0; i < n; i++) {
        char id[64];
        snprintf(id, sizeof id, "%s-%d", prefix, i);
        e2e_push_task(e->c, "default", id, task, args);
    }
}

/* ---- the exposition format --------------------------------------------------------------- */

static bool has_line(const char *text, const char *prefix, const char *name) {
    char want[256];
    snprintf(want, sizeof want, "%s %s ", prefix, name);
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (strncmp(p, want, strlen(want)) == 0)
            return true;
    return false;
}

/* Every line is a comment or a sample `name{labels} value`; every sample's family has a
 * HELP and a TYPE line before it; counter families end in _total. */
static void check_exposition(const char *text) {
    int samples = 0;
    for (const char *p = text; *p;) {
        const char *eol = strchr(p, '\n');
        ASSERT(eol != NULL); /* every line ends with a newline */
        char line[1024];
        snprintf(line, sizeof line, "%.*s", (int)(eol - p), p);
        if (line[0] == '#') {
            char kw[16], name[128], rest[512];
            ASSERT(sscanf(line, "# %15s %127s %511[^\n]", kw, name, rest) == 3);
            ASSERT(strcmp(kw, "HELP") == 0 || strcmp(kw, "TYPE") == 0);
            if (strcmp(kw, "TYPE") == 0) {
                ASSERT(strcmp(rest, "counter") == 0 || strcmp(rest, "gauge") == 0 ||
                       strcmp(rest, "histogram") == 0);
                if (strcmp(rest, "counter") == 0) {
                    size_t n = strlen(name);
                    ASSERT(n > 6 && strcmp(name + n - 6, "_total") == 0);
                }
            }
        } else {
            const char *q = line;
            ASSERT(isalpha((unsigned char)*q) || *q == '_');
            while (isalnum((unsigned char)*q) || *q == '_' || *q == ':')
                q++;
            char name[128];
            snprintf(name, sizeof name, "%.*s", (int)(q - line), line);
            if (*q == '{') {
                /* label="value" pairs, values with \\ \" \n escapes */
                q++;
                while (*q != '}') {
                    while (isalnum((unsigned char)*q) || *q == '_')
                        q++;
                    ASSERT(q[0] == '=' && q[1] == '"');
                    q += 2;
                    while (*q != '"') {
                        ASSERT(*q != '\0');
                        q += *q == '\\' ? 2 : 1;
                    }
                    q++;
                    if (*q == ',')
                        q++;
                    else
                        ASSERT(*q == '}');
                }
                q++;
            }
            ASSERT(*q == ' ');
            char *end;
            double v = strtod(q + 1, &end);
            ASSERT(end != q + 1 && *end == '\0' && !isnan(v));
            /* Its family: the name, or for a histogram the name without its suffix. */
            char fam[128];
            snprintf(fam, sizeof fam, "%s", name);
            if (!has_line(text, "# TYPE", fam)) {
                char *suffix = strrchr(fam, '_');
                ASSERT(suffix != NULL);
                *suffix = '\0';
                ASSERT(strcmp(suffix + 1, "bucket") == 0 || strcmp(suffix + 1, "sum") == 0 ||
                       strcmp(suffix + 1, "count") == 0);
            }
            if (!has_line(text, "# TYPE", fam) || !has_line(text, "# HELP", fam))
                test__fail(__FILE__, __LINE__, "no HELP/TYPE for the family of %s", line);
            samples++;
        }
        p = eol + 1;
    }
    ASSERT(samples > 10);
}

/* The value of the sample written exactly as `series` (name with its labels); NaN when
 * absent. */
static double sample(const char *text, const char *series) {
    size_t n = strlen(series);
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (strncmp(p, series, n) == 0 && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    return NAN;
}

static char *scrape(env *e) {
    httpc_response r;
    ASSERT_EQ(httpc_get(e->port, "/metrics", &r), 200);
    char *type = httpc_header(&r, "Content-Type");
    ASSERT(type && strstr(type, "text/plain") && strstr(type, "version=0.0.4"));
    free(type);
    char *body = r.body;
    r.body = NULL;
    httpc_free(&r);
    return body;
}

/* ---- tests ------------------------------------------------------------------------------- */

TEST(metrics_count_the_tasks_that_ran) {
    env e;
    env_start(&e, NULL);
    push_n(&e, "ok", 20, "echo", "[1]");
    push_n(&e, "bad", 3, "fail", "[\"boom\"]");
    wait_all(&e, "ok", 20);
    wait_all(&e, "bad", 3);
    char *m = scrape(&e);
    check_exposition(m);
    ASSERT_EQ(sample(m, "workerd_tasks_received_total"), 23);
    ASSERT_EQ(sample(m, "workerd_tasks_succeeded_total{task=\"echo\"}"), 20);
    ASSERT_EQ(sample(m, "workerd_tasks_failed_total{task=\"fail\"}"), 3);
    ASSERT_EQ(sample(m, "workerd_tasks_failed_total{task=\"echo\"}"), 0);
    ASSERT_EQ(sample(m, "workerd_task_runtime_seconds_count"), 23);
    ASSERT_EQ(sample(m, "workerd_task_runtime_seconds_bucket{le=\"+Inf\"}"), 23);
    ASSERT(sample(m, "workerd_task_runtime_seconds_bucket{le=\"60\"}") == 23);
    ASSERT_EQ(sample(m, "workerd_tasks_in_flight"), 0);
    ASSERT_EQ(sample(m, "workerd_pool_size"), 100);
    ASSERT_EQ(sample(m, "workerd_queue_depth{queue=\"default\"}"), 0);
    ASSERT_EQ(sample(m, "workerd_broker_up"), 1);
    ASSERT_EQ(sample(m, "workerd_broker_reconnects_total"), 0);
    ASSERT_EQ(sample(m, "workerd_dead_letters_total"), 0);
    ASSERT(sample(m, "workerd_greenlets_alive") >= 4);
    ASSERT(sample(m, "workerd_resident_memory_bytes") > 1e6);
    ASSERT_RANGE(sample(m, "workerd_start_time_seconds"), 1.7e9, 1e10);
    free(m);
    env_end(&e);
}

TEST(metrics_show_waiting_messages_and_dead_letters) {
    env e;
    env_start(&e, NULL);
    e2e_push(e.c, "default", "not json");
    ASSERT(e2e_wait_dead(e.c, 1, 10.0));
    /* A queue nobody consumes here keeps its messages: LPUSH to "default" is consumed, so
     * look at the depth while a long task holds the only slot of a -c 1 worker instead. */
    char *m = scrape(&e);
    ASSERT_EQ(sample(m, "workerd_dead_letters_total"), 1);
    free(m);
    env_end(&e);

    env_start(&e, "-c1");
    /* Long enough to hold the slot however slow the machine; a cold shutdown ends it. */
    e2e_push_task(e.c, "default", "long", "sleep", "[60]");
    /* Running, not merely taken: a waker's BLMOVE empties the queue before the fetch
     * makes the message a task. */
    json_t *started = e2e_wait_result(e.c, "long", "STARTED", 10.0);
    ASSERT(started != NULL);
    json_decref(started);
    push_n(&e, "wait", 4, "echo", "[]");
    /* An idle waker may move one into this worker's landing list at any moment: the
     * depth is what the queue holds at scrape time, between what Redis says before and
     * after. */
    long long before = e2e_int(e.c, "LLEN workerd:queue:default");
    m = scrape(&e);
    long long after = e2e_int(e.c, "LLEN workerd:queue:default");
    ASSERT_EQ(sample(m, "workerd_tasks_in_flight"), 1);
    ASSERT_EQ(sample(m, "workerd_pool_size"), 1);
    ASSERT_RANGE(after, 3, 4);
    ASSERT_RANGE(sample(m, "workerd_queue_depth{queue=\"default\"}"), after, before);
    free(m);
    e2e_worker_signal(&e.w, SIGQUIT);
    ASSERT_EQ(e2e_worker_wait(&e.w, 20.0), 0);
    env_end(&e);
}

TEST(healthz_is_ok_then_503_when_redis_is_down) {
    env e;
    env_start(&e, NULL);
    httpc_response r;
    ASSERT_EQ(httpc_get(e.port, "/healthz", &r), 200);
    ASSERT_STREQ(r.body, "ok\n");
    httpc_free(&r);

    test_redis_kill(&e.redis, SIGKILL);
    double deadline = test_now() + 10;
    while (httpc_get(e.port, "/healthz", &r) != 503 && test_now() < deadline) {
        httpc_free(&r);
        usleep(50000);
    }
    ASSERT_EQ(r.status, 503);
    ASSERT(strstr(r.body, "broker unreachable") != NULL);
    httpc_free(&r);
    /* Down: broker_up 0, and no queue depth rather than a made-up one. */
    char *m = scrape(&e);
    check_exposition(m);
    ASSERT_EQ(sample(m, "workerd_broker_up"), 0);
    ASSERT(isnan(sample(m, "workerd_queue_depth{queue=\"default\"}")));
    free(m);

    test_redis_restart(&e.redis);
    deadline = test_now() + 15;
    while (httpc_get(e.port, "/healthz", &r) != 200 && test_now() < deadline) {
        httpc_free(&r);
        usleep(50000);
    }
    ASSERT_EQ(r.status, 200);
    httpc_free(&r);
    m = scrape(&e);
    ASSERT(sample(m, "workerd_broker_reconnects_total") >= 1);
    free(m);
    redisFree(e.c);
    e.c = e2e_redis(e.redis.port);
    env_end(&e);
}

TEST(workers_endpoint_describes_this_worker) {
    env e;
    env_start(&e, "-c7");
    push_n(&e, "ok", 2, "echo", "[]");
    wait_all(&e, "ok", 2);
    httpc_response r;
    ASSERT_EQ(httpc_get(e.port, "/workers", &r), 200);
    char *type = httpc_header(&r, "Content-Type");
    ASSERT_STREQ(type, "application/json");
    free(type);
    json_t *all = json_loads(r.body, 0, NULL);
    ASSERT(json_is_array(all) && json_array_size(all) == 1);
    json_t *me = json_array_get(all, 0);
    char pid[32];
    snprintf(pid, sizeof pid, ":%d:", (int)e.w.pid);
    ASSERT(strstr(e2e_jstr(me, "id"), pid) != NULL);
    ASSERT_EQ(e2e_jnum(me, "pid"), e.w.pid);
    ASSERT_EQ(e2e_jnum(me, "concurrency"), 7);
    ASSERT_EQ(e2e_jnum(me, "in_flight"), 0);
    ASSERT(json_is_true(json_object_get(me, "broker_up")));
    ASSERT_STREQ(json_string_value(json_array_get(json_object_get(me, "queues"), 0)), "default");
    json_t *counters = json_object_get(me, "counters");
    ASSERT_EQ(e2e_jnum(counters, "received"), 2);
    ASSERT_EQ(e2e_jnum(counters, "succeeded"), 2);
    ASSERT_EQ(e2e_jnum(counters, "failed"), 0);
    json_decref(all);
    httpc_free(&r);
    env_end(&e);
}

TEST(bad_requests_get_400_404_and_405) {
    env e;
    env_start(&e, NULL);
    httpc_response r;
    ASSERT_EQ(httpc_get(e.port, "/nothing-here", &r), 404);
    httpc_free(&r);
    const char *post = "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n";
    ASSERT_EQ(httpc_raw(e.port, post, strlen(post), 10, &r), 405);
    char *allow = httpc_header(&r, "Allow");
    ASSERT(allow && strstr(allow, "GET"));
    free(allow);
    httpc_free(&r);
    const char *junk = "HELLO\r\n\r\n";
    ASSERT_EQ(httpc_raw(e.port, junk, strlen(junk), 10, &r), 400);
    httpc_free(&r);
    /* Headers larger than the server's bound: refused, not buffered without end. */
    size_t big = 64 * 1024;
    char *huge = malloc(big + 64);
    ASSERT(huge != NULL);
    int n = snprintf(huge, big, "GET /metrics HTTP/1.1\r\nX-Pad: ");
    memset(huge + n, 'a', big - (size_t)n);
    memcpy(huge + big, "\r\n\r\n", 5);
    ASSERT_EQ(httpc_raw(e.port, huge, big + 4, 10, &r), 400);
    httpc_free(&r);
    free(huge);
    /* A query string is ignored; HEAD has headers only. */
    ASSERT_EQ(httpc_get(e.port, "/healthz?verbose=1", &r), 200);
    httpc_free(&r);
    const char *head = "HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
    ASSERT_EQ(httpc_raw(e.port, head, strlen(head), 10, &r), 200);
    ASSERT_STREQ(r.body, "");
    httpc_free(&r);
    env_end(&e);
}

TEST(http_port_in_use_fails_the_start) {
    test_redis redis;
    test_redis_start(&redis, NULL);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    ASSERT_EQ(listen(fd, 1), 0);
    socklen_t len = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &len);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", ntohs(a.sin_port));
    e2e_worker w;
    E2E_START(&w, redis.port, "--http", addr);
    ASSERT_EQ(e2e_worker_wait(&w, 10.0), 1);
    ASSERT_EQ(e2e_log_count(&w, "--http: cannot listen on"), 1);
    ASSERT_EQ(e2e_log_count(&w, "ready: consuming"), 0);
    e2e_worker_stop(&w);
    close(fd);
    test_redis_stop(&redis);
}

/* ---- events ------------------------------------------------------------------------------ */

/* Entries of workerd:events as an array of {field: value} objects (oldest first). */
static json_t *events(redisContext *c) {
    redisReply *rep = redisCommand(c, "XRANGE workerd:events - +");
    ASSERT(rep && rep->type == REDIS_REPLY_ARRAY);
    json_t *all = json_array();
    for (size_t i = 0; i < rep->elements; i++) {
        redisReply *fields = rep->element[i]->element[1];
        json_t *o = json_object();
        for (size_t k = 0; k + 1 < fields->elements; k += 2)
            json_object_set_new(o, fields->element[k]->str,
                                json_string(fields->element[k + 1]->str));
        json_array_append_new(all, o);
    }
    freeReplyObject(rep);
    return all;
}

static int count_events(json_t *all, const char *type, const char *id_prefix) {
    int n = 0;
    size_t i;
    json_t *o;
    json_array_foreach(all, i, o) {
        const char *id = e2e_jstr(o, "id");
        n += strcmp(e2e_jstr(o, "type"), type) == 0 && id &&
             strncmp(id, id_prefix, strlen(id_prefix)) == 0;
    }
    return n;
}

TEST(events_stream_has_each_task_change_with_events_option) {
    env e;
    env_start(&e, "-E");
    push_n(&e, "ok", 5, "echo", "[]");
    push_n(&e, "bad", 1, "fail", "[\"boom\"]");
    wait_all(&e, "ok", 5);
    wait_all(&e, "bad", 1);
    /* Events go out every 50 ms, apart from the results: wait for them. */
    double deadline = test_now() + 5;
    json_t *all = NULL;
    for (;;) {
        json_decref(all);
        all = events(e.c);
        if (count_events(all, "succeeded", "ok-") == 5 && count_events(all, "failed", "bad-") == 1)
            break;
        ASSERT(test_now() < deadline);
        usleep(20000);
    }
    ASSERT_EQ(count_events(all, "received", "ok-"), 5);
    ASSERT_EQ(count_events(all, "started", "ok-"), 5);
    ASSERT_EQ(count_events(all, "received", "bad-"), 1);
    size_t i;
    json_t *o;
    json_array_foreach(all, i, o) {
        ASSERT(e2e_jstr(o, "task") && e2e_jstr(o, "worker") && e2e_jstr(o, "time"));
        ASSERT(strstr(e2e_jstr(o, "worker"), ":") != NULL);
        const char *type = e2e_jstr(o, "type");
        if (strcmp(type, "received") == 0)
            ASSERT_STREQ(e2e_jstr(o, "queue"), "default");
        if (strcmp(type, "succeeded") == 0)
            ASSERT(e2e_jstr(o, "runtime") != NULL);
        if (strcmp(type, "failed") == 0)
            ASSERT(strstr(e2e_jstr(o, "error"), "boom") != NULL);
    }
    /* Per task, in order: received, started, succeeded. */
    int stage = 0;
    json_array_foreach(all, i, o) {
        if (strcmp(e2e_jstr(o, "id"), "ok-3") != 0)
            continue;
        const char *want[] = {"received", "started", "succeeded"};
        ASSERT(stage < 3);
        ASSERT_STREQ(e2e_jstr(o, "type"), want[stage]);
        stage++;
    }
    ASSERT_EQ(stage, 3);
    json_decref(all);
    env_end(&e);
}

TEST(no_events_stream_without_events_option) {
    env e;
    env_start(&e, NULL);
    push_n(&e, "ok", 5, "echo", "[]");
    wait_all(&e, "ok", 5);
    /* A worker publishing events would have sent every one by the end of its warm
     * shutdown (the publisher drains its queue at stop). */
    e2e_worker_signal(&e.w, SIGTERM);
    ASSERT_EQ(e2e_worker_wait(&e.w, 20.0), 0);
    ASSERT_EQ(e2e_int(e.c, "EXISTS workerd:events"), 0);
    env_end(&e);
}
