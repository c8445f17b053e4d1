/*
 * test_e2e_result_size.c - results too large to store: --max-result-size bounds every
 * result, a larger one is a small FAILURE ResultTooLarge saying how large, and the worker
 * goes on with the next messages. The case that used to stop every worker for good: an
 * http.get of 100 MiB of \x01 bytes (allowed with max_size 104857600), whose result was
 * some 600 MB of JSON (each byte escaped to six), over Redis's proto-max-bulk-len.
 *
 * The real workerd binary on a real redis-server, http.* tasks against a private nginx
 * serving files written into its root.
 */
#include "e2e.h"
#include "testlib.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MIB ((size_t)1 << 20)

/* Write n bytes c to <dir>/<name>. */
static void write_fill(const char *dir, const char *name, size_t n, char c) {
    char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    ASSERT(f != NULL);
    char block[65536];
    memset(block, c, sizeof block);
    for (size_t done = 0; done < n; done += sizeof block)
        ASSERT(fwrite(block, 1, n - done < sizeof block ? n - done : sizeof block, f) > 0);
    ASSERT(fclose(f) == 0);
}

static void push_get(e2e_env *e, const char *id, int port, const char *path, const char *kwargs) {
    char msg[512];
    snprintf(msg, sizeof msg,
             "{\"id\":\"%s\",\"task\":\"http.get\",\"args\":[\"http://127.0.0.1:%d/%s\"],"
             "\"kwargs\":%s}",
             id, port, path, kwargs);
    e2e_push(e->c, "default", msg);
}

static json_t *must_result(e2e_env *e, const char *id, double timeout) {
    json_t *r = e2e_wait_result(e->c, id, NULL, timeout);
    if (!r)
        e2e_log_dump(&e->w);
    ASSERT(r != NULL);
    return r;
}

static const char *error_type(const json_t *r) {
    return e2e_jstr(json_object_get(r, "error"), "type");
}

/* The worker carries on: ten more tasks, each stored. */
static void expect_more_work_done(e2e_env *e) {
    for (int i = 0; i < 10; i++) {
        char id[32];
        snprintf(id, sizeof id, "next-%d", i);
        e2e_push_task(e->c, "default", id, "echo", "[1]");
    }
    for (int i = 0; i < 10; i++) {
        char id[32];
        snprintf(id, sizeof id, "next-%d", i);
        json_t *r = must_result(e, id, 20);
        ASSERT_STREQ(e2e_jstr(r, "status"), "SUCCESS");
        json_decref(r);
    }
}

TEST(a_100_mib_body_of_control_bytes_fails_with_result_too_large_and_the_worker_goes_on) {
    e2e_env e;
    e2e_env_start(&e);
    test_nginx n;
    test_nginx_start(&n);
    write_fill(n.dir, "ones", 100 * MIB, '\x01');
    write_fill(n.dir, "quotes", 100 * MIB, '"');
    E2E_START_READY(&e.w, e.redis.port, "-c", "4");
    const char *kwargs = "{\"max_size\":104857600,\"timeout\":120}";
    push_get(&e, "ones", n.port, "ones", kwargs);
    push_get(&e, "quotes", n.port, "quotes", kwargs);

    const char *ids[] = {"ones", "quotes"};
    for (int i = 0; i < 2; i++) {
        json_t *r = must_result(&e, ids[i], 120);
        printf("%s: %s: %s\n", ids[i], error_type(r), e2e_jerror(r));
        ASSERT_STREQ(e2e_jstr(r, "status"), "FAILURE");
        ASSERT_STREQ(error_type(r), "ResultTooLarge");
        ASSERT(strstr(e2e_jerror(r), "--max-result-size (16777216 bytes)") != NULL);
        /* Stored small. */
        char *text = e2e_get(e.c, "workerd:result:ones");
        ASSERT(text != NULL && strlen(text) < 4096);
        free(text);
        json_decref(r);
    }
    expect_more_work_done(&e);
    ASSERT_EQ(e2e_log_count(&e.w, "ResultTooLarge"), 2);
    e2e_env_end(&e);
    test_nginx_stop(&n);
}

/* The limit is on the document as stored: a result just under it is stored whole, one
 * just over fails, and the message says by how much. */
TEST(max_result_size_bounds_the_stored_document_exactly) {
    e2e_env e;
    e2e_env_start(&e);
    E2E_START_READY(&e.w, e.redis.port, "--max-result-size", "64K");
    /* An echo of one string of n 'x': its document is n + the rest. */
    char *msg = malloc(80 * 1024);
    ASSERT(msg != NULL);
    snprintf(msg, 80 * 1024, "{\"id\":\"small\",\"task\":\"echo\",\"args\":[\"x\"]}");
    e2e_push(e.c, "default", msg);
    json_t *r = must_result(&e, "small", 10);
    char *text = e2e_get(e.c, "workerd:result:small");
    size_t rest = strlen(text) - 1; /* the document without its one 'x' */
    free(text);
    json_decref(r);

    /* 40 bytes either way: the timestamps' digits vary (trailing zeros are dropped). */
    size_t fits = 65536 - rest - 40, over = 65536 - rest + 40;
    const char *ids[] = {"fits", "over"};
    size_t sizes[] = {fits, over};
    for (int i = 0; i < 2; i++) {
        int head = snprintf(msg, 128, "{\"id\":\"%s\",\"task\":\"echo\",\"args\":[\"", ids[i]);
        memset(msg + head, 'x', sizes[i]);
        strcpy(msg + head + sizes[i], "\"]}");
        e2e_push(e.c, "default", msg);
    }
    free(msg);
    r = must_result(&e, "fits", 10);
    ASSERT_STREQ(e2e_jstr(r, "status"), "SUCCESS");
    text = e2e_get(e.c, "workerd:result:fits");
    ASSERT_RANGE(strlen(text), 65536 - 80, 65536);
    free(text);
    json_decref(r);
    r = must_result(&e, "over", 10);
    ASSERT_STREQ(e2e_jstr(r, "status"), "FAILURE");
    ASSERT_STREQ(error_type(r), "ResultTooLarge");
    printf("over: %s\n", e2e_jerror(r));
    ASSERT(strstr(e2e_jerror(r), "over --max-result-size (65536 bytes)") != NULL);
    size_t told = 0;
    ASSERT(sscanf(e2e_jerror(r), "the result is %zu bytes", &told) == 1);
    ASSERT_RANGE(told, 65536 + 1, 65536 + 80);
    json_decref(r);
    expect_more_work_done(&e);
    e2e_env_end(&e);
}
