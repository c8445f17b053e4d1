/*
 * test_e2e_options.c - the real workerd binary with the settings and message fields that
 * change where things go or how long they may take: --result-backend on another Redis,
 * --prefix, the config file and environment, and a message's time_limit, expires and
 * ignore_result. Also what workerd and workerctl both say of a name too long for Redis
 * keys, and a SIGHUP that turns on an option a running worker is built on.
 */
#include "ctlrun.h"
#include "e2e.h"
#include "testlib.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

TEST(result_backend_on_another_redis_gets_the_results) {
    e2e_env e;
    e2e_env_start(&e);
    test_redis results;
    test_redis_start(&results, NULL);
    redisContext *rc = e2e_redis(results.port);
    char url[64];
    snprintf(url, sizeof url, "%s", e2e_url(results.port));
    E2E_START_READY(&e.w, e.redis.port, "--result-backend", url);
    e2e_push_task(e.c, "default", "rb-1", "echo", "[1]");
    json_t *res = e2e_wait_result(rc, "rb-1", NULL, 10.0);
    ASSERT(res != NULL);
    ASSERT_STREQ(e2e_jstr(res, "status"), "SUCCESS");
    json_decref(res);
    ASSERT_EQ(e2e_count_keys(e.c, "workerd:result:*"), 0); /* not on the broker */
    ASSERT_RANGE(e2e_int(rc, "TTL workerd:result:rb-1"), 86000, 86400);
    /* Acked on the broker. */
    double deadline = test_now() + 5.0;
    while (e2e_count_keys(e.c, "workerd:inflight:*") > 0 && test_now() < deadline)
        usleep(10000);
    ASSERT_EQ(e2e_count_keys(e.c, "workerd:inflight:*"), 0);
    redisFree(rc);
    test_redis_stop(&results);
    e2e_env_end(&e);
}

TEST(prefix_names_every_key) {
    e2e_env e;
    e2e_env_start(&e);
    E2E_START_READY(&e.w, e.redis.port, "--prefix", "acme");
    const char *msg = "{\"id\":\"p-1\",\"task\":\"echo\",\"args\":[]}";
    redisReply *r = redisCommand(e.c, "LPUSH acme:queue:default %s", msg);
    freeReplyObject(r);
    double deadline = test_now() + 10.0;
    while (e2e_int(e.c, "EXISTS acme:result:p-1") == 0 && test_now() < deadline)
        usleep(10000);
    ASSERT_EQ(e2e_int(e.c, "EXISTS acme:result:p-1"), 1);
    ASSERT_EQ(e2e_count_keys(e.c, "workerd:*"), 0);
    ASSERT_EQ(e2e_int(e.c, "HLEN acme:workers"), 1);
    e2e_env_end(&e);
}

TEST(config_file_and_environment_set_the_queues) {
    e2e_env e;
    e2e_env_start(&e);
    char *dir = test_tmpdir("conf");
    char path[512];
    snprintf(path, sizeof path, "%s/workerd.conf", dir);
    FILE *f = fopen(path, "w");
    ASSERT(f != NULL);
    fprintf(f, "# queues from the file, concurrency from the environment\n"
               "WORKERD_QUEUES=fromfile\nWORKERD_CONCURRENCY=1\n");
    fclose(f);
    setenv("WORKERD_CONCURRENCY", "2", 1); /* the environment overrides the file */
    E2E_START_READY(&e.w, e.redis.port, "--config", path);
    unsetenv("WORKERD_CONCURRENCY");
    ASSERT_EQ(e2e_log_count(&e.w, "concurrency 2, queues fromfile"), 1);
    e2e_push_task(e.c, "fromfile", "cf-1", "echo", "[]");
    json_decref(e2e_must_result(&e, "cf-1"));
    e2e_env_end(&e);
    test_rmtree(dir);
    free(dir);
}

TEST(time_limit_stops_a_long_task_with_a_failure) {
    e2e_env e;
    e2e_env_start(&e);
    E2E_START_READY(&e.w, e.redis.port);
    double t0 = test_now();
    e2e_push(e.c, "default",
             "{\"id\":\"tl-1\",\"task\":\"sleep\",\"args\":[10],\"time_limit\":0.3}");
    json_t *res = e2e_must_result(&e, "tl-1");
    ASSERT_RANGE(test_now() - t0, 0.25, 0.3 + TEST_SOON); /* not the task's 10 s */
    ASSERT_STREQ(e2e_jstr(res, "status"), "FAILURE");
    ASSERT_STREQ(e2e_jstr(json_object_get(res, "error"), "type"), "TimeLimitExceeded");
    json_decref(res);
    ASSERT_EQ(e2e_count_keys(e.c, "workerd:inflight:*"), 0);
    e2e_env_end(&e);
}

TEST(expired_message_is_revoked_not_run) {
    e2e_env e;
    e2e_env_start(&e);
    E2E_START_READY(&e.w, e.redis.port);
    /* A Unix time long past (a number below 10^9 would be seconds from now). */
    e2e_push(e.c, "default",
             "{\"id\":\"ex-1\",\"task\":\"sleep\",\"args\":[60],\"expires\":1000000000}");
    double t0 = test_now();
    json_t *res = e2e_must_result(&e, "ex-1");
    ASSERT_RANGE(test_now() - t0, 0, TEST_SOON); /* not slept */
    ASSERT_STREQ(e2e_jstr(res, "status"), "REVOKED");
    ASSERT_STREQ(e2e_jstr(json_object_get(res, "error"), "type"), "TaskExpired");
    json_decref(res);
    e2e_env_end(&e);
}

TEST(ignore_result_stores_nothing_but_acks) {
    e2e_env e;
    e2e_env_start(&e);
    E2E_START_READY(&e.w, e.redis.port, "-c", "1");
    e2e_push(e.c, "default",
             "{\"id\":\"ig-1\",\"task\":\"echo\",\"args\":[],\"ignore_result\":true}");
    e2e_push_task(e.c, "default", "ig-2", "echo", "[]"); /* after it, on one slot */
    json_decref(e2e_must_result(&e, "ig-2"));
    ASSERT(e2e_result(e.c, "ig-1") == NULL);
    ASSERT_EQ(e2e_int(e.c, "LLEN workerd:queue:default"), 0);
    ASSERT_EQ(e2e_count_keys(e.c, "workerd:inflight:*"), 0);
    e2e_env_end(&e);
}

TEST(retries_field_is_reported_in_the_result) {
    e2e_env e;
    e2e_env_start(&e);
    E2E_START_READY(&e.w, e.redis.port);
    e2e_push(e.c, "default", "{\"id\":\"rt-1\",\"task\":\"echo\",\"args\":[],\"retries\":2}");
    json_t *res = e2e_must_result(&e, "rt-1");
    ASSERT_EQ(e2e_jnum(res, "retries"), 2);
    json_decref(res);
    e2e_env_end(&e);
}

/* ---- names: one check for both binaries ------------------------------------------------- */

/* Write text to dir/name; returns the path (static, one at a time). */
static const char *write_file(const char *dir, const char *name, const char *text) {
    static char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    ASSERT(f != NULL);
    fputs(text, f);
    fclose(f);
    return path;
}

/* workerd's exit code and whether its output has the line. */
static int workerd_says(const char *line, const char *const *args) {
    e2e_worker w;
    e2e_worker_start(&w, 0, args);
    int code = e2e_worker_wait(&w, 10.0);
    char *log = e2e_log_read(&w);
    if (strstr(log, line) == NULL) {
        e2e_log_dump(&w);
        test__fail(__FILE__, __LINE__, "workerd did not say: %s", line);
    }
    free(log);
    e2e_worker_stop(&w);
    return code;
}

/* A prefix or queue name longer than the broker's keys allow used to pass workerd's option
 * checks (and fail start-up as "out of memory"), while workerctl refused it. Now both
 * refuse it up front, exit 2, and say the same sentence. */
TEST(names_too_long_for_redis_keys_are_refused_by_workerd_and_workerctl_alike) {
    char prefix[71], queue[141];
    memset(prefix, 'p', 70);
    prefix[70] = '\0';
    memset(queue, 'q', 140);
    queue[140] = '\0';

    const char *const prefix_args[] = {"--prefix", prefix, NULL};
    ASSERT_EQ(workerd_says("workerd: --prefix: key prefix is longer than 64 bytes (from the "
                           "command line)\n",
                           prefix_args),
              2);
    ctlrun r;
    CTL_RUN(&r, "--prefix", prefix, "queues");
    ASSERT_EQ(r.code, 2);
    ASSERT_STREQ(r.err, "workerctl: --prefix: key prefix is longer than 64 bytes (from the "
                        "command line)\n");
    ctlrun_free(&r);

    const char *const queue_args[] = {"-Q", queue, NULL};
    ASSERT_EQ(workerd_says("workerd: --queues: queue name is longer than 128 bytes (from the "
                           "command line)\n",
                           queue_args),
              2);
    CTL_RUN(&r, "call", "echo", "-q", queue);
    ASSERT_EQ(r.code, 2);
    ASSERT(strncmp(r.err, "workerctl: --queue: queue name is longer than 128 bytes\n", 56) == 0);
    ctlrun_free(&r);

    /* One config file read by both: the same message but for the program's name. */
    char *dir = test_tmpdir("names");
    char text[200], conf[4200], want[4400];
    snprintf(text, sizeof text, "WORKERD_CONCURRENCY=5\nWORKERD_PREFIX=%s\n", prefix);
    snprintf(conf, sizeof conf, "%s", write_file(dir, "workerd.conf", text));
    snprintf(want, sizeof want,
             "WORKERD_PREFIX: key prefix is longer than 64 bytes (from %s line 2)\n", conf);
    const char *const conf_args[] = {"--config", conf, NULL};
    char line[4500];
    snprintf(line, sizeof line, "workerd: %s", want);
    ASSERT_EQ(workerd_says(line, conf_args), 2);
    CTL_RUN(&r, "--config", conf, "stats");
    ASSERT_EQ(r.code, 2);
    snprintf(line, sizeof line, "workerctl: %s", want);
    ASSERT_STREQ(r.err, line);
    ctlrun_free(&r);
    test_rmtree(dir);
    free(dir);
}

/* ---- SIGHUP ------------------------------------------------------------------------------ */

/* Entries of workerd:events about task id. */
static int events_of(redisContext *c, const char *id) {
    redisReply *r = redisCommand(c, "XRANGE workerd:events - +");
    ASSERT(r != NULL && r->type == REDIS_REPLY_ARRAY);
    int n = 0;
    for (size_t i = 0; i < r->elements; i++) {
        redisReply *fields = r->element[i]->element[1];
        for (size_t k = 0; k + 1 < fields->elements; k += 2)
            if (strcmp(fields->element[k]->str, "id") == 0 &&
                strcmp(fields->element[k + 1]->str, id) == 0)
                n++;
    }
    freeReplyObject(r);
    return n;
}

/* SIGHUP used to compare a hand-written list of options and miss the rest: turning on
 * WORKERD_EVENTS in the config file logged "reloaded" and changed nothing. Every option
 * but the log level needs a restart, and the worker now does one and publishes events. */
TEST(sighup_that_turns_events_on_restarts_the_worker_which_then_publishes_them) {
    e2e_env e;
    e2e_env_start(&e);
    char *dir = test_tmpdir("hupev");
    char conf[4200];
    snprintf(conf, sizeof conf, "%s", write_file(dir, "workerd.conf", "WORKERD_CONCURRENCY=4\n"));
    E2E_START_READY(&e.w, e.redis.port, "--config", conf);
    e2e_push_task(e.c, "default", "before", "echo", "[1]");
    json_decref(e2e_must_result(&e, "before"));
    ASSERT_EQ(e2e_int(e.c, "EXISTS workerd:events"), 0); /* off */

    write_file(dir, "workerd.conf", "WORKERD_CONCURRENCY=4\nWORKERD_EVENTS=on\n");
    e2e_worker_signal(&e.w, SIGHUP);
    if (!e2e_log_wait(&e.w, "the rest needs a restart (--events changed)", 10.0) ||
        !e2e_log_wait_n(&e.w, "ready: consuming", 2, 20.0)) {
        e2e_log_dump(&e.w);
        test__fail(__FILE__, __LINE__, "no restart after SIGHUP turned events on");
    }

    e2e_push_task(e.c, "default", "after", "echo", "[2]");
    json_decref(e2e_must_result(&e, "after"));
    /* Events go out in batches of their own, after the result or not: wait for them. */
    double deadline = test_now() + 10.0;
    while (events_of(e.c, "after") < 3 && test_now() < deadline)
        usleep(10000);
    ASSERT_EQ(events_of(e.c, "after"), 3); /* received, started, succeeded */
    ASSERT_EQ(events_of(e.c, "before"), 0);
    e2e_env_end(&e);
    test_rmtree(dir);
    free(dir);
}

/* --http-methods reaches the http.* tasks: PROPFIND fails before any connection without it
 * and is sent with it. */
TEST(http_methods_option_lets_http_request_send_a_listed_method) {
    test_nginx n;
    test_nginx_start(&n);
    char msg[256];
    snprintf(msg, sizeof msg,
             "{\"id\":\"m-%%s\",\"task\":\"http.request\",\"args\":[\"PROPFIND\","
             "\"http://127.0.0.1:%d/fast\"]}",
             n.port);
    for (int allowed = 0; allowed <= 1; allowed++) {
        e2e_env e;
        e2e_env_start(&e);
        if (allowed)
            E2E_START_READY(&e.w, e.redis.port, "--http-methods", "PROPFIND,REPORT");
        else
            E2E_START_READY(&e.w, e.redis.port);
        char one[300], id[16];
        snprintf(id, sizeof id, "m-%d", allowed);
        snprintf(one, sizeof one, msg, allowed ? "1" : "0");
        e2e_push(e.c, "default", one);
        json_t *res = e2e_must_result(&e, id);
        if (allowed) {
            ASSERT_STREQ(e2e_jstr(res, "status"), "SUCCESS");
        } else {
            ASSERT_STREQ(e2e_jstr(res, "status"), "FAILURE");
            const char *why = e2e_jstr(json_object_get(res, "error"), "message");
            ASSERT(why != NULL && strstr(why, "PROPFIND") && strstr(why, "--http-methods"));
        }
        json_decref(res);
        e2e_env_end(&e);
    }
    test_nginx_stop(&n);
}
