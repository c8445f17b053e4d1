/*
 * test_e2e_input.c - the real workerd binary fed bad messages, as anyone who can LPUSH
 * may: each one is dead-lettered with its reason, gets a FAILURE result when its id can
 * be read, is acked (nothing left in flight), and the worker goes on to run the next good
 * message.
 */
#include "e2e.h"
#include "testlib.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct env {
    test_redis redis;
    redisContext *c;
    e2e_worker w;
} env;

/* A worker with extra options (NULL-terminated list, or NULL). */
static void env_start(env *e, const char *const *args) {
    memset(e, 0, sizeof *e);
    test_redis_start(&e->redis, NULL);
    e->c = e2e_redis(e->redis.port);
    e2e_worker_start(&e->w, e->redis.port, args);
    e2e_wait_ready(&e->w);
}

static void env_end(env *e) {
    e2e_worker_signal(&e->w, SIGTERM);
    int code = e2e_worker_wait(&e->w, 10.0);
    if (code != 0)
        e2e_log_dump(&e->w);
    ASSERT_EQ(code, 0);
    e2e_worker_stop(&e->w);
    redisFree(e->c);
    test_redis_stop(&e->redis);
}

/*
 * Push raw[0..len), then a good echo message. The bad one must give exactly one dead
 * letter whose reason contains `reason`, which is returned (decref it); when id is not
 * NULL, also a FAILURE result under that id with the same reason and error type etype;
 * and the good one must still succeed.
 */
static json_t *expect_rejected(env *e, const char *raw, size_t len, const char *id,
                               const char *etype, const char *reason) {
    e2e_push_len(e->c, "default", raw, len);
    e2e_push_task(e->c, "default", "good-after", "echo", "[\"still alive\"]");
    json_t *good = e2e_wait_result(e->c, "good-after", "SUCCESS", 30.0);
    if (!good || !e2e_wait_dead(e->c, 1, 5.0)) {
        e2e_log_dump(&e->w);
        test__fail(__FILE__, __LINE__, "no good result or no dead letter within the deadline");
    }
    json_decref(good);
    ASSERT_EQ(e2e_int(e->c, "LLEN workerd:dead"), 1);
    json_t *dead = e2e_dead_letters(e->c);
    json_t *d = json_incref(json_array_get(dead, 0));
    json_decref(dead);
    const char *why = e2e_jstr(d, "reason");
    if (!why || !strstr(why, reason))
        test__fail(__FILE__, __LINE__, "dead-letter reason \"%s\" lacks \"%s\"",
                   why ? why : "(none)", reason);
    ASSERT_STREQ(e2e_jstr(d, "queue"), "default");
    ASSERT_EQ(e2e_jnum(d, "message_bytes"), len);
    ASSERT(e2e_jstr(d, "worker") != NULL);
    if (id) {
        ASSERT_STREQ(e2e_jstr(d, "id"), id);
        json_t *res = e2e_wait_result(e->c, id, NULL, 5.0);
        ASSERT(res != NULL);
        ASSERT_STREQ(e2e_jstr(res, "status"), "FAILURE");
        ASSERT_STREQ(e2e_jstr(json_object_get(res, "error"), "type"), etype);
        ASSERT(e2e_jerror(res) && strstr(e2e_jerror(res), reason));
        json_decref(res);
    } else {
        ASSERT(json_object_get(d, "id") == NULL);
    }
    /* Acked: nothing in flight; one result at most (the bad one's) besides the good one. */
    ASSERT_EQ(e2e_count_keys(e->c, "workerd:inflight:*"), 0);
    ASSERT_EQ(e2e_count_keys(e->c, "workerd:result:*"), id ? 2 : 1);
    ASSERT_EQ(e2e_log_count(&e->w, "dead-lettered message"), 1);
    return d;
}

#define REJECT(e, text, id, etype, reason)                                                         \
    json_decref(expect_rejected((e), (text), strlen(text), (id), (etype), (reason)))

TEST(invalid_json_is_dead_lettered) {
    env e;
    env_start(&e, NULL);
    json_t *d = expect_rejected(&e, "{\"id\":\"j-1\",\"task\":", 19, "j-1", "InvalidMessage",
                                "invalid JSON");
    /* The raw text is kept as it was, for whoever looks at the dead letters. */
    ASSERT_STREQ(e2e_jstr(d, "message"), "{\"id\":\"j-1\",\"task\":");
    json_decref(d);
    env_end(&e);
}

TEST(json_that_is_not_an_object_is_dead_lettered) {
    env e;
    env_start(&e, NULL);
    REJECT(&e, "[1,2]", NULL, NULL, "message is not a JSON object");
    env_end(&e);
}

TEST(empty_message_is_dead_lettered) {
    env e;
    env_start(&e, NULL);
    json_decref(expect_rejected(&e, "", 0, NULL, NULL, "invalid JSON"));
    env_end(&e);
}

TEST(binary_garbage_is_dead_lettered) {
    env e;
    env_start(&e, NULL);
    static const char garbage[] = {'\xff', '\xfe', '\0', '{', '\x80', '}'};
    json_decref(expect_rejected(&e, garbage, sizeof garbage, NULL, NULL, "invalid JSON"));
    env_end(&e);
}

TEST(missing_task_is_dead_lettered_with_a_failure_result) {
    env e;
    env_start(&e, NULL);
    REJECT(&e, "{\"id\":\"m-1\",\"args\":[]}", "m-1", "InvalidMessage",
           "missing or non-string field \"task\"");
    env_end(&e);
}

TEST(non_string_task_is_dead_lettered) {
    env e;
    env_start(&e, NULL);
    REJECT(&e, "{\"id\":\"m-2\",\"task\":5}", "m-2", "InvalidMessage",
           "missing or non-string field \"task\"");
    env_end(&e);
}

TEST(args_that_are_not_an_array_are_dead_lettered) {
    env e;
    env_start(&e, NULL);
    REJECT(&e, "{\"id\":\"m-3\",\"task\":\"echo\",\"args\":\"x\"}", "m-3", "InvalidMessage",
           "field \"args\" must be an array");
    env_end(&e);
}

TEST(unknown_task_is_dead_lettered) {
    env e;
    env_start(&e, NULL);
    REJECT(&e, "{\"id\":\"m-4\",\"task\":\"no.such.task\"}", "m-4", "NotRegistered",
           "unknown task \"no.such.task\"");
    env_end(&e);
}

TEST(sleep_with_a_string_is_dead_lettered) {
    env e;
    env_start(&e, NULL);
    REJECT(&e, "{\"id\":\"m-5\",\"task\":\"sleep\",\"args\":[\"abc\"]}", "m-5", "TypeError",
           "sleep: argument 1 (seconds) must be a number");
    env_end(&e);
}

TEST(http_get_with_a_number_is_dead_lettered) {
    env e;
    env_start(&e, NULL);
    REJECT(&e, "{\"id\":\"m-6\",\"task\":\"http.get\",\"args\":[42]}", "m-6", "TypeError",
           "http.get: argument 1 (url) must be a string");
    env_end(&e);
}

/* A message of n bytes: a valid echo message with id padded by spaces after the object
 * opens, so its id is readable by the cheap top-level scan. */
static char *big_message(size_t n, const char *id) {
    char head[128];
    int h = snprintf(head, sizeof head, "{\"id\":\"%s\",\"task\":\"echo\",\"args\":[\"", id);
    char *m = malloc(n + 1);
    memcpy(m, head, (size_t)h);
    memset(m + h, 'x', n - (size_t)h - 3);
    memcpy(m + n - 3, "\"]}", 3);
    m[n] = '\0';
    return m;
}

TEST(message_over_max_message_size_is_dead_lettered) {
    env e;
    env_start(&e, (const char *const[]){"--max-message-size", "1K", NULL});
    size_t n = 2u << 20;
    char *m = big_message(n, "big-1");
    json_t *d = expect_rejected(&e, m, n, "big-1", "InvalidMessage",
                                "message of 2097152 bytes exceeds the 1024-byte limit");
    free(m);
    ASSERT(json_is_true(json_object_get(d, "truncated")));
    ASSERT(strlen(e2e_jstr(d, "message")) < n);
    json_decref(d);
    /* A message under the limit still runs. */
    char *small = big_message(1000, "small-1");
    e2e_push(e.c, "default", small);
    free(small);
    json_t *res = e2e_wait_result(e.c, "small-1", "SUCCESS", 10.0);
    ASSERT(res != NULL);
    json_decref(res);
    env_end(&e);
}

/* Under AddressSanitizer a huge reply is quadratic: hiredis 0.14's reader grows its buffer
 * by realloc in 1 MiB steps, which glibc does with mremap but ASan by copying, so 100 MB
 * means gigabytes of copies (minutes). The sanitizer build checks the same path at 16 MB. */
#if defined(__SANITIZE_ADDRESS__)
#define HUGE_MB 16
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HUGE_MB 16
#endif
#endif
#ifndef HUGE_MB
#define HUGE_MB 100
#endif

TEST(message_of_100mb_is_dead_lettered_at_the_default_limit) {
    env e;
    env_start(&e, NULL);
    size_t n = (size_t)HUGE_MB << 20;
    char *m = big_message(n, "huge-1");
    char reason[128];
    snprintf(reason, sizeof reason, "message of %zu bytes exceeds the 1048576-byte limit", n);
    double t0 = test_now();
    json_t *d = expect_rejected(&e, m, n, "huge-1", "InvalidMessage", reason);
    free(m);
    ASSERT_RANGE(test_now() - t0, 0, 20.0);
    ASSERT(json_is_true(json_object_get(d, "truncated")));
    json_decref(d);
    env_end(&e);
}

TEST(deeply_nested_json_is_dead_lettered) {
    env e;
    env_start(&e, NULL);
    size_t n = 100000;
    char *m = malloc(n + 1);
    memset(m, '[', n);
    m[n] = '\0';
    json_decref(expect_rejected(&e, m, n, NULL, NULL, "JSON nested deeper than 64 levels"));
    free(m);
    env_end(&e);
}

TEST(deeply_nested_args_with_an_id_get_a_failure_result) {
    env e;
    env_start(&e, NULL);
    size_t depth = 100000;
    char *m = malloc(2 * depth + 64);
    int h = sprintf(m, "{\"id\":\"deep-1\",\"task\":\"echo\",\"args\":");
    memset(m + h, '[', depth);
    memset(m + h + depth, ']', depth);
    strcpy(m + h + 2 * depth, "}");
    REJECT(&e, m, "deep-1", "InvalidMessage", "JSON nested deeper than 64 levels");
    free(m);
    env_end(&e);
}

TEST(many_bad_messages_do_not_stop_the_worker) {
    env e;
    env_start(&e, NULL);
    static const char *const bad[] = {
        "nope",
        "[]",
        "{}",
        "{\"task\":null}",
        "{\"task\":\"\"}",
        "{\"task\":\"echo\",\"kwargs\":[]}",
        "{\"task\":\"sleep\"}",
        "{\"task\":\"fail\",\"args\":[1]}",
        "{\"task\":\"echo\",\"retries\":-1}",
        "{\"id\":7,\"task\":\"echo\"}",
    };
    size_t nbad = sizeof bad / sizeof *bad;
    for (size_t i = 0; i < nbad; i++)
        e2e_push(e.c, "default", bad[i]);
    e2e_push_task(e.c, "default", "good-1", "echo", "[]");
    json_t *res = e2e_wait_result(e.c, "good-1", "SUCCESS", 10.0);
    ASSERT(res != NULL);
    json_decref(res);
    ASSERT(e2e_wait_dead(e.c, (long long)nbad, 5.0));
    ASSERT_EQ(e2e_int(e.c, "LLEN workerd:dead"), nbad);
    ASSERT_EQ(e2e_count_keys(e.c, "workerd:inflight:*"), 0);
    env_end(&e);
}
