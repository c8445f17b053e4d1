/*
 * test_web.c - workerd-web's JSON API against a real redis-server and, where the counts
 * come from workers, a real workerd: the shapes and counts a script reads, what a request
 * without credentials or CSRF token gets, that GET never changes anything, that an
 * address beyond loopback needs --auth, and that what Redis holds comes back as JSON
 * text, never as markup.
 */
#include "e2e.h"
#include "httpc.h"
#include "testlib.h"

#include <crypt.h>
#include <signal.h>
#include <stdio.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define XSS "<script>alert(1)</script><img src=x onerror=alert(2)>"

typedef struct web {
    e2e_worker p; /* the workerd-web process */
    int port;
} web;

/* Start workerd-web on a free port against Redis redis_port, with extra arguments (NULL
 * terminated), and wait until it serves. */
static void web_start(web *w, int redis_port, const char *auth) {
    char listen[64];
    w->port = test_free_port();
    snprintf(listen, sizeof listen, "127.0.0.1:%d", w->port);
    const char *args[] = {"--listen", listen, auth ? "--auth" : NULL, auth, NULL};
    e2e__worker_start(WORKERD_WEB_BIN, &w->p, redis_port, args);
    if (!e2e_log_wait(&w->p, "serving http://", TEST_SOON * 2)) {
        e2e_log_dump(&w->p);
        ASSERT(!"workerd-web did not start");
    }
}

static void web_stop(web *w) {
    e2e_worker_signal(&w->p, SIGTERM);
    ASSERT_EQ(e2e_worker_wait(&w->p, TEST_NEVER), 0);
    e2e_worker_stop(&w->p);
}

/* A request as raw text with extra header lines ("" for none) and a body (NULL: GET). */
static int req(web *w, const char *method, const char *path, const char *headers, const char *body,
               httpc_response *r) {
    char raw[8192];
    int n = snprintf(raw, sizeof raw, "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n%s", method, path,
                     w->port, headers);
    if (body)
        n += snprintf(raw + n, sizeof raw - (size_t)n, "Content-Length: %zu\r\n", strlen(body));
    n += snprintf(raw + n, sizeof raw - (size_t)n, "\r\n%s", body ? body : "");
    return httpc_raw(w->port, raw, (size_t)n, TEST_NEVER, r);
}

/* GET path, ASSERT 200, and the body parsed. */
static json_t *get_json(web *w, const char *path) {
    httpc_response r;
    req(w, "GET", path, "", NULL, &r);
    if (r.status != 200)
        fprintf(stderr, "GET %s: %d %s\n", path, r.status, r.body ? r.body : "");
    ASSERT_EQ(r.status, 200);
    char *type = httpc_header(&r, "Content-Type");
    ASSERT(type && strstr(type, "application/json"));
    free(type);
    json_t *v = json_loads(r.body, 0, NULL);
    ASSERT(v != NULL);
    httpc_free(&r);
    return v;
}

/* The CSRF token and the Cookie header line that goes with it. */
static void session(web *w, char token[64], char cookie[160]) {
    json_t *s = get_json(w, "/api/session");
    snprintf(token, 64, "%s", e2e_jstr(s, "csrf"));
    ASSERT_EQ(strlen(token), 32);
    snprintf(cookie, 160, "Cookie: wd_csrf=%s\r\n", token);
    json_decref(s);
}

/* POST body as the page does: JSON, the token in X-CSRF-Token and in the cookie. */
static int post(web *w, const char *path, const char *body, httpc_response *r) {
    char token[64], cookie[160], headers[512];
    session(w, token, cookie);
    snprintf(headers, sizeof headers, "%sX-CSRF-Token: %s\r\nContent-Type: application/json\r\n",
             cookie, token);
    return req(w, "POST", path, headers, body, r);
}

static long long queue_depth(json_t *queues, const char *name) {
    size_t i;
    json_t *q;
    json_array_foreach(queues, i, q) {
        if (strcmp(e2e_jstr(q, "name"), name) == 0)
            return (long long)e2e_jnum(q, "depth");
    }
    return -1;
}

static void push_dead(redisContext *c, const char *id, const char *queue, const char *extra) {
    char msg[512], entry[1024];
    snprintf(msg, sizeof msg,
             "{\\\"id\\\":\\\"%s\\\",\\\"task\\\":\\\"echo\\\",\\\"args\\\":[\\\"%s\\\"]}", id,
             extra);
    snprintf(entry, sizeof entry,
             "{\"message\":\"%s\",\"reason\":\"NotRegistered: %s\",\"id\":\"%s\",\"queue\":\"%s\","
             "\"time\":1}",
             msg, extra, id, queue);
    redisReply *r = redisCommand(c, "LPUSH workerd:dead %s", entry);
    ASSERT(r && r->type == REDIS_REPLY_INTEGER);
    freeReplyObject(r);
}

static long long dead_count(redisContext *c) {
    return e2e_int(c, "LLEN workerd:dead");
}

/* ---- start-up ---------------------------------------------------------------------------- */

TEST(web_refuses_an_address_beyond_loopback_without_auth) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "%s --listen 0.0.0.0:%d -b redis://127.0.0.1:1/0 2>&1",
             WORKERD_WEB_BIN, test_free_port());
    FILE *f = popen(cmd, "r");
    char out[1024] = "";
    size_t n = fread(out, 1, sizeof out - 1, f);
    out[n] = '\0';
    int st = pclose(f);
    ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 2);
    ASSERT(strstr(out, "refusing to listen on 0.0.0.0 without --auth") != NULL);
}

TEST(web_refuses_an_auth_file_others_can_read) {
    char *dir = test_tmpdir("webauth");
    char path[512], cmd[1024];
    snprintf(path, sizeof path, "%s/auth", dir);
    FILE *f = fopen(path, "w");
    fputs("token:0123456789abcdef0123\n", f);
    fclose(f);
    chmod(path, 0644);
    snprintf(cmd, sizeof cmd, "%s --listen 0.0.0.0:%d --auth %s 2>&1", WORKERD_WEB_BIN,
             test_free_port(), path);
    FILE *p = popen(cmd, "r");
    char out[1024] = "";
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 2);
    ASSERT(strstr(out, "readable by every user") != NULL);
    test_rmtree(dir);
    free(dir);
}

/* ---- what it reads ----------------------------------------------------------------------- */

TEST(web_counts_match_what_was_enqueued_and_run) {
    e2e_env e;
    e2e_env_start(&e);
    for (int i = 0; i < 7; i++)
        e2e_pushf(e.c, "waiting", "{\"id\":\"w%d\",\"task\":\"echo\"}", i);
    for (int i = 0; i < 3; i++)
        e2e_pushf(e.c, "other", "{\"id\":\"o%d\",\"task\":\"echo\"}", i);
    push_dead(e.c, "d1", "waiting", "x");
    push_dead(e.c, "d2", "waiting", "y");
    E2E_START_READY(&e.w, e.redis.port, "-E", "--heartbeat", "1", "-c", "4");
    for (int i = 0; i < 5; i++)
        e2e_pushf(e.c, "default", "{\"id\":\"r%d\",\"task\":\"echo\",\"args\":[%d]}", i, i);
    for (int i = 0; i < 5; i++) {
        char id[16];
        snprintf(id, sizeof id, "r%d", i);
        json_decref(e2e_must_result(&e, id));
    }
    web w;
    web_start(&w, e.redis.port, NULL);

    /* The totals come with the workers' heartbeats (every second here). */
    json_t *o = NULL;
    double end = test_now() + TEST_NEVER;
    for (;;) {
        o = get_json(&w, "/api/overview");
        if (e2e_jnum(json_object_get(o, "totals"), "processed") >= 5 || test_now() > end)
            break;
        json_decref(o);
        test_pause();
    }
    ASSERT_EQ(e2e_jnum(json_object_get(o, "totals"), "processed"), 5);
    ASSERT_EQ(e2e_jnum(json_object_get(o, "totals"), "failed"), 0);
    ASSERT_EQ(e2e_jnum(o, "pending"), 10);
    ASSERT_EQ(queue_depth(json_object_get(o, "queues"), "waiting"), 7);
    ASSERT_EQ(queue_depth(json_object_get(o, "queues"), "other"), 3);
    ASSERT_EQ(queue_depth(json_object_get(o, "queues"), "default"), 0);
    ASSERT_EQ(e2e_jnum(o, "workers_alive"), 1);
    ASSERT_EQ(e2e_jnum(o, "workers_dead"), 0);
    ASSERT_EQ(e2e_jnum(o, "dead_letters"), 2);
    ASSERT(json_is_true(json_object_get(json_object_get(o, "events"), "enabled")));
    ASSERT(json_is_true(json_object_get(json_object_get(o, "redis"), "up")));
    /* The chart: the hour's minutes, the last holding this minute's tasks or the ones
     * before it (a heartbeat near a minute's end). */
    json_t *minutes = json_object_get(o, "minutes");
    ASSERT_EQ(json_array_size(minutes), 60);
    double sum = 0;
    size_t i;
    json_t *m;
    json_array_foreach(minutes, i, m) {
        sum += e2e_jnum(m, "processed");
    }
    ASSERT_EQ(sum, 5);
    json_decref(o);

    json_t *ws = get_json(&w, "/api/workers");
    json_t *w0 = json_array_get(json_object_get(ws, "workers"), 0);
    ASSERT(json_is_true(json_object_get(w0, "alive")));
    ASSERT_EQ(e2e_jnum(w0, "concurrency"), 4);
    ASSERT(json_is_array(json_object_get(w0, "running")));
    ASSERT(json_is_number(json_object_get(w0, "beat_age")));
    json_decref(ws);

    json_t *t = get_json(&w, "/api/task?id=r3");
    ASSERT(json_is_true(json_object_get(t, "found")));
    ASSERT_STREQ(e2e_jstr(json_object_get(t, "result"), "status"), "SUCCESS");
    json_decref(t);
    t = get_json(&w, "/api/task?id=nope");
    ASSERT(json_is_false(json_object_get(t, "found")));
    json_decref(t);

    json_t *ev = get_json(&w, "/api/events?id=r2&type=succeeded");
    ASSERT_EQ(json_array_size(json_object_get(ev, "events")), 1);
    json_decref(ev);

    json_t *d = get_json(&w, "/api/dead?limit=1");
    ASSERT_EQ(e2e_jnum(d, "total"), 2);
    ASSERT_EQ(json_array_size(json_object_get(d, "entries")), 1);
    ASSERT_STREQ(e2e_jstr(json_array_get(json_object_get(d, "entries"), 0), "id"), "d2");
    json_decref(d);

    httpc_response r;
    req(&w, "GET", "/metrics", "", NULL, &r);
    ASSERT_EQ(r.status, 200);
    ASSERT(strstr(r.body, "workerd_fleet_queue_depth{queue=\"waiting\"} 7\n") != NULL);
    ASSERT(strstr(r.body, "workerd_fleet_tasks_processed_total 5\n") != NULL);
    ASSERT(strstr(r.body, "workerd_fleet_workers_alive 1\n") != NULL);
    httpc_free(&r);
    web_stop(&w);
    e2e_env_end(&e);
}

/* libfaketime, to run workerd-web on a host whose clock is off (FAKETIME="+30s"). */
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

TEST(web_counts_heartbeat_age_on_the_redis_clock_whatever_its_host_says) {
    const char *lib = libfaketime();
    if (lib == NULL)
        test_skip("libfaketime is not installed (Debian package faketime)");
    e2e_env e;
    e2e_env_start(&e);
    E2E_START(&e.w, e.redis.port, "--heartbeat", "1");
    e2e_wait_ready(&e.w);
    static const char *const offsets[2] = {"+30s", "-30s"};
    for (int k = 0; k < 2; k++) {
        /* AddressSanitizer must be told that a library preloaded before it is intended. */
        const char *asan = getenv("ASAN_OPTIONS");
        char *saved = asan ? strdup(asan) : NULL, opts[1024];
        snprintf(opts, sizeof opts, "%s%sverify_asan_link_order=0", asan ? asan : "",
                 asan ? ":" : "");
        setenv("ASAN_OPTIONS", opts, 1);
        setenv("LD_PRELOAD", lib, 1);
        setenv("FAKETIME", offsets[k], 1);
        web w;
        web_start(&w, e.redis.port, NULL);
        unsetenv("LD_PRELOAD");
        unsetenv("FAKETIME");
        if (saved)
            setenv("ASAN_OPTIONS", saved, 1);
        else
            unsetenv("ASAN_OPTIONS");
        free(saved);
        /* The worker beats every second on the Redis clock: its age is a second or so. */
        json_t *ws = get_json(&w, "/api/workers");
        json_t *w0 = json_array_get(json_object_get(ws, "workers"), 0);
        double age = e2e_jnum(w0, "beat_age");
        if (!(age >= -5 && age <= 5))
            test__fail(__FILE__, __LINE__, "beat_age %.3f with workerd-web's clock %s", age,
                       offsets[k]);
        json_decref(ws);
        web_stop(&w);
    }
    e2e_env_end(&e);
}

TEST(web_shows_markup_from_redis_as_json_text) {
    e2e_env e;
    e2e_env_start(&e);
    E2E_START_READY(&e.w, e.redis.port);
    e2e_push_task(e.c, "default", "xss1", "echo", "[\"" XSS "\"]");
    json_decref(e2e_must_result(&e, "xss1"));
    push_dead(e.c, "xss2", "default", XSS);
    web w;
    web_start(&w, e.redis.port, NULL);
    const char *paths[] = {"/api/task?id=xss1", "/api/dead", "/api/dead/entry?index=0"};
    for (size_t i = 0; i < 3; i++) {
        httpc_response r;
        req(&w, "GET", paths[i], "", NULL, &r);
        ASSERT_EQ(r.status, 200);
        ASSERT(strstr(r.body, "</script>") == NULL); /* "<\/script>" in JSON */
        ASSERT(strstr(r.body, "<\\/script>") != NULL);
        char *csp = httpc_header(&r, "Content-Security-Policy");
        ASSERT(csp && strstr(csp, "script-src 'self'") && !strstr(csp, "unsafe-inline"));
        free(csp);
        char *nosniff = httpc_header(&r, "X-Content-Type-Options");
        ASSERT(nosniff && strcmp(nosniff, "nosniff") == 0);
        free(nosniff);
        httpc_free(&r);
    }
    json_t *t = get_json(&w, "/api/task?id=xss1");
    ASSERT_STREQ(json_string_value(
                     json_array_get(json_object_get(json_object_get(t, "result"), "result"), 0)),
                 XSS);
    json_decref(t);
    web_stop(&w);
    e2e_env_end(&e);
}

/* ---- what may change state --------------------------------------------------------------- */

TEST(web_changes_state_only_by_post_with_the_csrf_token) {
    e2e_env e;
    e2e_env_start(&e);
    push_dead(e.c, "d1", "q1", "x");
    web w;
    web_start(&w, e.redis.port, NULL);
    json_t *d = get_json(&w, "/api/dead");
    char body[256];
    snprintf(body, sizeof body, "{\"index\":0,\"key\":\"%s\"}",
             e2e_jstr(json_array_get(json_object_get(d, "entries"), 0), "key"));
    json_decref(d);
    httpc_response r;
    /* GET of an action: 405, nothing done. */
    req(&w, "GET", "/api/dead/delete?index=0", "", NULL, &r);
    ASSERT_EQ(r.status, 405);
    httpc_free(&r);
    /* POST without a token, with a token that is not the cookie's, as a form, from
     * another origin: 403, nothing done. */
    req(&w, "POST", "/api/dead/delete", "Content-Type: application/json\r\n", body, &r);
    ASSERT_EQ(r.status, 403);
    httpc_free(&r);
    char token[64], cookie[160], h[512];
    session(&w, token, cookie);
    snprintf(h, sizeof h, "%sX-CSRF-Token: %s\r\nContent-Type: application/json\r\n", cookie,
             "0123456789abcdef0123456789abcdef");
    req(&w, "POST", "/api/dead/delete", h, body, &r);
    ASSERT_EQ(r.status, 403);
    httpc_free(&r);
    snprintf(h, sizeof h, "%sX-CSRF-Token: %s\r\nContent-Type: text/plain\r\n", cookie, token);
    req(&w, "POST", "/api/dead/delete", h, body, &r);
    ASSERT_EQ(r.status, 403);
    httpc_free(&r);
    snprintf(
        h, sizeof h,
        "%sX-CSRF-Token: %s\r\nContent-Type: application/json\r\nOrigin: http://evil.example\r\n",
        cookie, token);
    req(&w, "POST", "/api/dead/delete", h, body, &r);
    ASSERT_EQ(r.status, 403);
    httpc_free(&r);
    ASSERT_EQ(dead_count(e.c), 1);
    /* A page of another name rebound to 127.0.0.1 sends its own Host: refused. */
    const char rebound[] = "GET /api/overview HTTP/1.1\r\nHost: evil.example:5555\r\n\r\n";
    httpc_raw(w.port, rebound, strlen(rebound), TEST_NEVER, &r);
    ASSERT_EQ(r.status, 403);
    httpc_free(&r);
    /* Two Host headers: which one would a proxy have checked? Refused. */
    req(&w, "GET", "/api/overview", "Host: evil.example\r\n", NULL, &r);
    ASSERT_EQ(r.status, 400);
    httpc_free(&r);
    /* With the token: done. */
    post(&w, "/api/dead/delete", body, &r);
    ASSERT_EQ(r.status, 200);
    httpc_free(&r);
    ASSERT_EQ(dead_count(e.c), 0);
    web_stop(&w);
    e2e_env_end(&e);
}

TEST(web_requeues_purges_revokes_and_sets_rates) {
    e2e_env e;
    e2e_env_start(&e);
    push_dead(e.c, "d1", "q1", "x");
    push_dead(e.c, "d2", "q1", "y");
    for (int i = 0; i < 4; i++)
        e2e_pushf(e.c, "doomed", "{\"id\":\"p%d\",\"task\":\"echo\"}", i);
    web w;
    web_start(&w, e.redis.port, NULL);
    httpc_response r;
    /* A stale key names an entry that moved: 409, nothing done. */
    post(&w, "/api/dead/requeue", "{\"index\":0,\"key\":\"00\"}", &r);
    ASSERT_EQ(r.status, 409);
    httpc_free(&r);
    ASSERT_EQ(dead_count(e.c), 2);
    post(&w, "/api/dead/requeue", "{\"all\":true}", &r);
    ASSERT_EQ(r.status, 200);
    json_t *o = json_loads(r.body, 0, NULL);
    ASSERT_EQ(e2e_jnum(o, "requeued"), 2);
    json_decref(o);
    httpc_free(&r);
    ASSERT_EQ(dead_count(e.c), 0);
    ASSERT_EQ(e2e_int(e.c, "LLEN workerd:queue:q1"), 2);
    /* Purge: refused without the confirmation, saying how many would go. */
    post(&w, "/api/queues/purge", "{\"queue\":\"doomed\"}", &r);
    ASSERT_EQ(r.status, 409);
    o = json_loads(r.body, 0, NULL);
    ASSERT_EQ(e2e_jnum(o, "would_delete"), 4);
    json_decref(o);
    httpc_free(&r);
    ASSERT_EQ(e2e_int(e.c, "LLEN workerd:queue:doomed"), 4);
    post(&w, "/api/queues/purge", "{\"queue\":\"doomed\",\"confirm\":\"doomed\"}", &r);
    ASSERT_EQ(r.status, 200);
    o = json_loads(r.body, 0, NULL);
    ASSERT_EQ(e2e_jnum(o, "removed"), 4);
    json_decref(o);
    httpc_free(&r);
    ASSERT_EQ(e2e_int(e.c, "EXISTS workerd:queue:doomed"), 0);
    /* Revoke and terminate write what workerctl writes. */
    post(&w, "/api/revoke", "{\"id\":\"job-7\"}", &r);
    ASSERT_EQ(r.status, 200);
    httpc_free(&r);
    post(&w, "/api/revoke", "{\"id\":\"job-8\",\"terminate\":true}", &r);
    ASSERT_EQ(r.status, 200);
    httpc_free(&r);
    char *mark = e2e_get(e.c, "workerd:revoked:job-7");
    ASSERT_STREQ(mark, "1");
    free(mark);
    mark = e2e_get(e.c, "workerd:revoked:job-8");
    ASSERT_STREQ(mark, "terminate");
    free(mark);
    ASSERT_EQ(e2e_int(e.c, "XLEN workerd:control"), 2);
    /* Rate limits: set, refused when not a rate, removed. */
    post(&w, "/api/rate-limit", "{\"task\":\"echo\",\"rate\":\"5/s\"}", &r);
    ASSERT_EQ(r.status, 200);
    httpc_free(&r);
    char *rate = NULL;
    redisReply *rr = redisCommand(e.c, "HGET workerd:rate_limits echo");
    ASSERT(rr && rr->type == REDIS_REPLY_STRING);
    rate = strdup(rr->str);
    freeReplyObject(rr);
    ASSERT_STREQ(rate, "5/s");
    free(rate);
    post(&w, "/api/rate-limit", "{\"task\":\"echo\",\"rate\":\"5/d\"}", &r);
    ASSERT_EQ(r.status, 400);
    httpc_free(&r);
    post(&w, "/api/rate-limit", "{\"task\":\"echo\",\"rate\":\"off\"}", &r);
    ASSERT_EQ(r.status, 200);
    httpc_free(&r);
    ASSERT_EQ(e2e_int(e.c, "HEXISTS workerd:rate_limits echo"), 0);
    web_stop(&w);
    e2e_env_end(&e);
}

/* The "paused" flag of queue name in GET /api/queues; ASSERTs the queue is listed. */
static bool queue_paused(web *w, const char *name) {
    json_t *o = get_json(w, "/api/queues");
    size_t i;
    json_t *q;
    int found = -1;
    json_array_foreach(json_object_get(o, "queues"), i, q) {
        if (strcmp(e2e_jstr(q, "name"), name) == 0)
            found = json_is_true(json_object_get(q, "paused"));
    }
    json_decref(o);
    ASSERT(found >= 0);
    return found == 1;
}

TEST(web_pauses_and_resumes_a_queue_only_with_the_csrf_token) {
    e2e_env e;
    e2e_env_start(&e);
    E2E_START(&e.w, e.redis.port, "-Q", "q");
    e2e_wait_ready(&e.w);
    web w;
    web_start(&w, e.redis.port, NULL);
    httpc_response r;
    /* Without the token: 403, nothing paused. */
    req(&w, "POST", "/api/queues/pause", "Content-Type: application/json\r\n", "{\"queue\":\"q\"}",
        &r);
    ASSERT_EQ(r.status, 403);
    httpc_free(&r);
    ASSERT_EQ(e2e_int(e.c, "EXISTS workerd:paused"), 0);
    ASSERT(!queue_paused(&w, "q"));
    post(&w, "/api/queues/pause", "{\"queue\":\"a b\"}", &r);
    ASSERT_EQ(r.status, 400);
    httpc_free(&r);
    post(&w, "/api/queues/pause", "{\"queue\":\"q\"}", &r);
    ASSERT_EQ(r.status, 200);
    json_t *o = json_loads(r.body, 0, NULL);
    ASSERT(json_is_true(json_object_get(o, "paused")) &&
           json_is_true(json_object_get(o, "changed")));
    json_decref(o);
    httpc_free(&r);
    ASSERT(queue_paused(&w, "q"));
    /* The worker does not take what comes while q is paused: it is still queued after
     * the worker's fetches that followed it. */
    e2e_push_task(e.c, "q", "held", "echo", "[1]");
    long long fetches = e2e_command_calls(e.c, "evalsha");
    ASSERT_WITHIN(e2e_command_calls(e.c, "evalsha") >= fetches + 3, TEST_NEVER);
    ASSERT_EQ(e2e_int(e.c, "LLEN workerd:queue:q"), 1);
    ASSERT_EQ(e2e_count_keys(e.c, "workerd:result:held"), 0);
    o = get_json(&w, "/api/queues");
    ASSERT_EQ(json_array_size(json_object_get(o, "paused")), 1);
    ASSERT_STREQ(json_string_value(json_array_get(json_object_get(o, "paused"), 0)), "q");
    json_decref(o);
    /* Resume, again only with the token. */
    req(&w, "POST", "/api/queues/resume", "Content-Type: application/json\r\n", "{\"queue\":\"q\"}",
        &r);
    ASSERT_EQ(r.status, 403);
    httpc_free(&r);
    ASSERT_EQ(e2e_int(e.c, "SISMEMBER workerd:paused q"), 1);
    post(&w, "/api/queues/resume", "{\"queue\":\"q\"}", &r);
    ASSERT_EQ(r.status, 200);
    httpc_free(&r);
    json_decref(e2e_must_result_within(&e, "held", TEST_NEVER));
    ASSERT(!queue_paused(&w, "q"));
    web_stop(&w);
    e2e_env_end(&e);
}

TEST(web_with_auth_needs_credentials_for_everything_but_healthz) {
    e2e_env e;
    e2e_env_start(&e);
    char *dir = test_tmpdir("webauth");
    char path[512];
    snprintf(path, sizeof path, "%s/auth", dir);
    struct crypt_data cd = {0};
    char setting[CRYPT_GENSALT_OUTPUT_SIZE];
    ASSERT(crypt_gensalt_rn("$6$", 1000, NULL, 0, setting, sizeof setting) != NULL);
    const char *hash = crypt_r("s3cret pass", setting, &cd);
    ASSERT(hash && hash[0] == '$');
    FILE *f = fopen(path, "w");
    fprintf(f, "# users and tokens\nada:%s\ntoken:tok-0123456789abcdef\n", hash);
    fclose(f);
    chmod(path, 0600);
    web w;
    web_start(&w, e.redis.port, path);
    httpc_response r;
    req(&w, "GET", "/api/overview", "", NULL, &r);
    ASSERT_EQ(r.status, 401);
    char *www = httpc_header(&r, "WWW-Authenticate");
    ASSERT(www && strstr(www, "Basic"));
    free(www);
    httpc_free(&r);
    req(&w, "GET", "/", "", NULL, &r);
    ASSERT_EQ(r.status, 401);
    httpc_free(&r);
    req(&w, "GET", "/healthz", "", NULL, &r);
    ASSERT_EQ(r.status, 200);
    httpc_free(&r);
    req(&w, "GET", "/api/overview", "Authorization: Bearer tok-0123456789abcdeX\r\n", NULL, &r);
    ASSERT_EQ(r.status, 401);
    httpc_free(&r);
    req(&w, "GET", "/api/overview", "Authorization: Bearer tok-0123456789abcdef\r\n", NULL, &r);
    ASSERT_EQ(r.status, 200);
    httpc_free(&r);
    /* "ada:wrong" and "ada:s3cret pass" in base64. */
    req(&w, "GET", "/api/overview", "Authorization: Basic YWRhOndyb25n\r\n", NULL, &r);
    ASSERT_EQ(r.status, 401);
    httpc_free(&r);
    req(&w, "GET", "/api/overview", "Authorization: Basic YWRhOnMzY3JldCBwYXNz\r\n", NULL, &r);
    ASSERT_EQ(r.status, 200);
    char *cookie = httpc_header(&r, "Set-Cookie");
    ASSERT(cookie && strncmp(cookie, "wd_session=", 11) == 0 && strstr(cookie, "HttpOnly"));
    httpc_free(&r);
    /* The session cookie alone is enough. */
    char h[256];
    snprintf(h, sizeof h, "Cookie: %.*s\r\n", (int)strcspn(cookie, ";"), cookie);
    free(cookie);
    req(&w, "GET", "/api/overview", h, NULL, &r);
    ASSERT_EQ(r.status, 200);
    httpc_free(&r);
    /* Credentials do not replace the CSRF token. */
    req(&w, "POST", "/api/revoke",
        "Authorization: Bearer tok-0123456789abcdef\r\nContent-Type: application/json\r\n",
        "{\"id\":\"x\"}", &r);
    ASSERT_EQ(r.status, 403);
    httpc_free(&r);
    ASSERT_EQ(e2e_int(e.c, "EXISTS workerd:revoked:x"), 0);
    web_stop(&w);
    test_rmtree(dir);
    free(dir);
    e2e_env_end(&e);
}

/* ---- the systemd unit -------------------------------------------------------------------- */

/* The unit beside workerd's passes systemd-analyze verify (with the built binary in
 * ExecStart) and its sandbox scores as low as workerd's (at most 2.0 of 10). */
TEST(web_unit_passes_systemd_analyze_with_a_tight_sandbox) {
    if (test_system("command -v systemd-analyze >/dev/null") != 0) {
        printf("skipped: no systemd-analyze\n");
        return;
    }
    char *dir = test_tmpdir("webunit");
    ASSERT_EQ(test_system("sed 's|^ExecStart=%s|ExecStart=%s|' '%s' >'%s/workerd-web.service'",
                          WEB_UNIT_BIN, WORKERD_WEB_BIN, WEB_UNIT, dir),
              0);
    ASSERT_EQ(
        test_system("cd '%s' && systemd-analyze verify --man=no ./workerd-web.service >&2", dir),
        0);
    ASSERT_EQ(test_system("cd '%s' && systemd-analyze security --offline=yes --threshold=20 "
                          "--no-pager ./workerd-web.service >/dev/null",
                          dir),
              0);
    test_rmtree(dir);
    free(dir);
}

/* ---- bounds ------------------------------------------------------------------------------ */

/* 1,100 open connections that send nothing (browsers left open, or a flood) cost at most
 * WEB_MAX_CONNS of the server's connections, and a new request is still answered. */
TEST(web_answers_while_1100_connections_sit_idle) {
    struct rlimit rl;
    ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_max < 1300) {
        printf("skipped: the descriptor limit is %ld\n", (long)rl.rlim_max);
        return;
    }
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    e2e_env e;
    e2e_env_start(&e);
    web w;
    web_start(&w, e.redis.port, NULL);
    enum { IDLE = 1100 };
    static int fds[IDLE];
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)w.port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int i = 0; i < IDLE; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM, 0);
        ASSERT(fds[i] >= 0);
        ASSERT_EQ(connect(fds[i], (struct sockaddr *)&a, sizeof a), 0);
    }
    json_t *o = get_json(&w, "/api/overview");
    ASSERT(json_is_array(json_object_get(o, "queues")));
    json_decref(o);
    for (int i = 0; i < IDLE; i++)
        close(fds[i]);
    web_stop(&w);
    e2e_env_end(&e);
}

/* A huge result is paged in the detail view, never sent whole; a long dead letter is cut
 * in the list and paged in its own view. */
TEST(web_pages_huge_values_and_cuts_them_in_lists) {
    e2e_env e;
    e2e_env_start(&e);
    size_t n = 200000;
    char *big = malloc(n + 64);
    int h = snprintf(big, n + 64, "{\"id\":\"big\",\"status\":\"SUCCESS\",\"result\":\"");
    memset(big + h, 'x', n - (size_t)h - 2);
    memcpy(big + n - 2, "\"}", 3);
    redisReply *r = redisCommand(e.c, "SET workerd:result:big %b", big, n);
    freeReplyObject(r);
    /* A dead letter whose message is 100,000 bytes of text. */
    char *msg = calloc(100001, 1);
    memset(msg, 'y', 100000);
    json_t *entry = json_pack("{s:s, s:s, s:s, s:s}", "message", msg, "reason", "r", "id", "long",
                              "queue", "q");
    char *text = json_dumps(entry, JSON_COMPACT);
    r = redisCommand(e.c, "LPUSH workerd:dead %s", text);
    freeReplyObject(r);
    free(text);
    json_decref(entry);
    free(msg);
    web w;
    web_start(&w, e.redis.port, NULL);
    json_t *t = get_json(&w, "/api/task?id=big");
    ASSERT_EQ(e2e_jnum(t, "bytes"), (double)n);
    ASSERT(json_object_get(t, "result") == NULL);
    ASSERT_EQ(json_string_length(json_object_get(t, "text")), 65536);
    ASSERT_EQ(e2e_jnum(t, "next"), 65536);
    json_decref(t);
    t = get_json(&w, "/api/task?id=big&offset=196608");
    ASSERT_EQ(json_string_length(json_object_get(t, "text")), n - 196608);
    ASSERT(json_is_null(json_object_get(t, "next")));
    json_decref(t);
    json_t *d = get_json(&w, "/api/dead");
    json_t *e0 = json_array_get(json_object_get(d, "entries"), 0);
    ASSERT_EQ(json_string_length(json_object_get(e0, "message")), 512);
    ASSERT(json_is_true(json_object_get(e0, "message_cut")));
    json_decref(d);
    d = get_json(&w, "/api/dead/entry?index=0&offset=65536");
    json_t *page = json_object_get(d, "message_page");
    ASSERT_EQ(e2e_jnum(page, "bytes"), 100000);
    ASSERT_EQ(json_string_length(json_object_get(page, "text")), 100000 - 65536);
    ASSERT(json_is_null(json_object_get(page, "next")));
    json_decref(d);
    web_stop(&w);
    free(big);
    e2e_env_end(&e);
}

/* ---- the counters the dashboard reads ---------------------------------------------------- */

/* A counters key that holds something else (a hand edit) refuses the heartbeat's HINCRBY:
 * the heartbeat and the recovery that follows it must go on regardless, or a dead
 * worker's messages would never come back. */
TEST(a_broken_counters_key_does_not_stop_heartbeats_or_recovery) {
    e2e_env e;
    e2e_env_start(&e);
    redisReply *r = redisCommand(e.c, "SET workerd:stats:total not-a-hash");
    freeReplyObject(r);
    E2E_START_READY(&e.w, e.redis.port, "--heartbeat", "1");
    e2e_push_task(e.c, "default", "first", "echo", "[1]");
    json_decref(e2e_must_result(&e, "first"));
    /* Now the worker has counts to add, and the key refuses them. A dead worker's
     * message: registered, holding it in flight, no heartbeat. */
    r = redisCommand(e.c, "HSET workerd:workers gone:1:dead default");
    freeReplyObject(r);
    r = redisCommand(e.c, "HSET workerd:inflight:gone:1:dead 7 %s",
                     "default\n{\"id\":\"orphan\",\"task\":\"echo\",\"args\":[2]}");
    freeReplyObject(r);
    json_decref(e2e_must_result(&e, "orphan"));
    /* The minute's bucket still counts (the total is the one refusing). */
    ASSERT_WITHIN(e2e_count_keys(e.c, "workerd:stats:minute:*") >= 1, TEST_NEVER);
    e2e_env_end(&e);
}
