/*
 * test_e2e_auth.c - workerd against a Redis that wants a password, and an ACL user: it
 * logs in from the broker URL, runs tasks, and never shows the password anywhere a person
 * or a monitor can read it: logs, its heartbeat hash, /workers, /metrics, STATUS=.
 */
#include "e2e.h"
#include "httpc.h"
#include "testlib.h"

#include <signal.h>
#include <unistd.h>

#define PASSWORD "s3cret-Pa55"
#define ACL_PASSWORD "al1ce-Pa55"

static const char *const auth_args[] = {"--requirepass",  PASSWORD, "--user", "alice", "on",
                                        ">" ACL_PASSWORD, "~*",     "&*",     "+@all", NULL};

static redisContext *login(int port) {
    redisContext *c = e2e_redis(port);
    redisReply *r = redisCommand(c, "AUTH %s", PASSWORD);
    ASSERT(r && r->type == REDIS_REPLY_STATUS);
    freeReplyObject(r);
    return c;
}

static void assert_no_password(const char *what, const char *text) {
    if (text && (strstr(text, PASSWORD) || strstr(text, ACL_PASSWORD)))
        test__fail(__FILE__, __LINE__, "the password shows in %s: %s", what, text);
}

static void run_with(const char *userinfo) {
    test_redis r;
    test_redis_start(&r, auth_args);
    redisContext *c = login(r.port);
    char url[256];
    snprintf(url, sizeof url, "redis://%s@127.0.0.1:%d/0", userinfo, r.port);
    int http = test_free_port();
    char listen[32];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", http);
    e2e_worker w;
    E2E_START_READY(&w, 0, "-b", url, "--http", listen);
    e2e_push_task(c, "default", "auth-1", "echo", "[1]");
    json_t *res = e2e_wait_result(c, "auth-1", "SUCCESS", 10.0);
    ASSERT(res != NULL);
    json_decref(res);

    char *log = e2e_log_read(&w);
    assert_no_password("the log", log);
    ASSERT(strstr(log, ":***@127.0.0.1") != NULL); /* the URL is shown, redacted */
    free(log);
    redisReply *keys = redisCommand(c, "KEYS workerd:worker:*");
    ASSERT(keys && keys->type == REDIS_REPLY_ARRAY && keys->elements == 1);
    redisReply *hb = redisCommand(c, "HGETALL %s", keys->element[0]->str);
    ASSERT(hb && hb->type == REDIS_REPLY_ARRAY && hb->elements > 0);
    for (size_t i = 0; i < hb->elements; i++)
        assert_no_password("the heartbeat hash", hb->element[i]->str);
    freeReplyObject(hb);
    freeReplyObject(keys);
    const char *paths[] = {"/workers", "/metrics", "/healthz"};
    for (int i = 0; i < 3; i++) {
        httpc_response resp;
        ASSERT_EQ(httpc_get(http, paths[i], &resp), 200);
        assert_no_password(paths[i], resp.body);
        httpc_free(&resp);
    }
    e2e_worker_signal(&w, SIGTERM);
    ASSERT_EQ(e2e_worker_wait(&w, 10.0), 0);
    log = e2e_log_read(&w);
    assert_no_password("the log", log);
    free(log);
    e2e_worker_stop(&w);
    redisFree(c);
    test_redis_stop(&r);
}

TEST(password_in_the_broker_url_logs_in_and_is_never_shown) {
    run_with(":" PASSWORD);
}

TEST(acl_user_in_the_broker_url_logs_in_and_is_never_shown) {
    run_with("alice:" ACL_PASSWORD);
}

TEST(wrong_password_is_retried_and_reported_without_the_password) {
    test_redis r;
    test_redis_start(&r, auth_args);
    char url[256];
    snprintf(url, sizeof url, "redis://:wrong-%s@127.0.0.1:%d/0", PASSWORD, r.port);
    e2e_worker w;
    E2E_START(&w, 0, "-b", url);
    ASSERT(e2e_log_wait_n(&w, "Redis unreachable", 1, 10.0));
    char *log = e2e_log_read(&w);
    assert_no_password("the log", log);
    free(log);
    e2e_worker_signal(&w, SIGTERM);
    ASSERT_EQ(e2e_worker_wait(&w, 10.0), 0);
    e2e_worker_stop(&w);
    test_redis_stop(&r);
}
