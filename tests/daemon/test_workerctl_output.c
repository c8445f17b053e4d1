/*
 * test_workerctl_output.c - what workerctl prints when Redis holds hostile values: the
 * real binary against a real redis-server whose keys hold terminal escape sequences
 * ("\e]0;owned\a\e[2J" retitles and clears a terminal), C1 controls, bidirectional
 * overrides and bytes that are not UTF-8. Human output shows them escaped (\x1b, \u009b)
 * and never writes a control character; --json output is always one JSON document, also
 * for a result that is not JSON.
 */
#include "ctlrun.h"
#include "e2e.h"
#include "testlib.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ESC ] 0 ; owned BEL ESC [ 2 J: sets the terminal's title and clears the screen. */
#define HOSTILE "\x1b]0;owned\x07\x1b[2J"
#define HOSTILE_JSON "\\u001b]0;owned\\u0007\\u001b[2J"
#define HOSTILE_SHOWN "\\x1b]0;owned\\x07\\x1b[2J"

/* Fail when s holds a byte a terminal acts on: a C0 control other than the line ends
 * workerctl writes itself, DEL, a C1 control in UTF-8 (C2 80..C2 9F) or a lone byte
 * 0x80..0x9f, or a bidirectional override or isolate. */
static void assert_terminal_safe(const char *what, const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; p[i] != '\0'; i++) {
        bool bad = (p[i] < 0x20 && p[i] != '\n') || p[i] == 0x7f ||
                   (p[i] == 0xc2 && p[i + 1] >= 0x80 && p[i + 1] <= 0x9f) ||
                   (p[i] >= 0x80 && p[i] <= 0x9f && (i == 0 || p[i - 1] != 0xc2)) ||
                   (p[i] == 0xe2 && p[i + 1] == 0x80 && p[i + 2] >= 0xaa && p[i + 2] <= 0xae) ||
                   (p[i] == 0xe2 && p[i + 1] == 0x81 && p[i + 2] >= 0xa6 && p[i + 2] <= 0xa9);
        if (bad)
            test__fail(__FILE__, __LINE__, "%s: byte 0x%02x at offset %zu of:\n%s", what, p[i], i,
                       s);
    }
}

static void assert_safe_run(const ctlrun *r) {
    assert_terminal_safe("stdout", r->out);
    assert_terminal_safe("stderr", r->err);
}

static void set_key(ctlrun_env *e, const char *key, const char *value) {
    ctlrun_redis(e, "SET %s %s", key, value, NULL);
}

/* ---- results ------------------------------------------------------------------------- */

/* A FAILURE whose every field a person sees is hostile. */
static const char evil_result[] =
    "{\"id\":\"evil\",\"task\":\"t" HOSTILE_JSON "\",\"status\":\"FAILURE\","
    "\"worker\":\"w" HOSTILE_JSON "\",\"result\":\"r\\u009b2J\\u007f\","
    "\"error\":{\"type\":\"E" HOSTILE_JSON "\",\"message\":\"m\\r" HOSTILE_JSON
    "\\u202egnp.exe\"},\"runtime\":0.5}";

TEST(result_shows_control_characters_escaped) {
    ctlrun_env e;
    ctlrun_env_start(&e);
    set_key(&e, "workerd:result:evil", evil_result);
    ctlrun r;
    CTL_RUN(&r, "-b", e.url, "result", "evil");
    ASSERT_EQ(r.code, 1);
    assert_safe_run(&r);
    ASSERT(strstr(r.out, "task      t" HOSTILE_SHOWN "\n") != NULL);
    ASSERT(strstr(r.out, "worker    w" HOSTILE_SHOWN "\n") != NULL);
    ASSERT(strstr(r.out, "error     E" HOSTILE_SHOWN ": m\\r" HOSTILE_SHOWN "\\u202egnp.exe\n") !=
           NULL);
    /* The result line is JSON text: C0 controls are JSON escapes already; DEL and C1 are
     * escaped on top. */
    ASSERT(strstr(r.out, "result    \"r\\u009b2J\\x7f\"\n") != NULL);
    ctlrun_free(&r);
    /* --json is the stored document, exact. */
    CTL_RUN(&r, "-b", e.url, "--json", "result", "evil");
    ASSERT_EQ(r.code, 1);
    json_t *doc = ctlrun_json(&r);
    ASSERT_STREQ(e2e_jstr(doc, "task"), "t" HOSTILE);
    json_decref(doc);
    ctlrun_free(&r);
    ctlrun_env_end(&e);
}

TEST(result_wait_shows_control_characters_escaped) {
    ctlrun_env e;
    ctlrun_env_start(&e);
    set_key(&e, "workerd:result:evil", evil_result);
    ctlrun r;
    CTL_RUN(&r, "-b", e.url, "result", "evil", "--wait", "10");
    ASSERT_EQ(r.code, 1);
    assert_safe_run(&r);
    ASSERT(strstr(r.out, "worker    w" HOSTILE_SHOWN "\n") != NULL);
    ctlrun_free(&r);
    ctlrun_env_end(&e);
}

TEST(result_that_is_not_json_is_shown_escaped) {
    ctlrun_env e;
    ctlrun_env_start(&e);
    set_key(&e, "workerd:result:raw", HOSTILE "plain\r\xff\xc2\x9b!");
    ctlrun r;
    CTL_RUN(&r, "-b", e.url, "result", "raw");
    ASSERT_EQ(r.code, 1);
    assert_safe_run(&r);
    ASSERT(strstr(r.out, "(not a JSON object; the stored text follows)\n" HOSTILE_SHOWN
                         "plain\\r\\xff\\u009b!\n") != NULL);
    ctlrun_free(&r);
    ctlrun_env_end(&e);
}

/* Whatever the stored value, --json prints one JSON document: the bytes as "raw" when
 * they are UTF-8, else as "raw_base64". */
TEST(result_json_of_a_value_that_is_not_json_is_one_document) {
    ctlrun_env e;
    ctlrun_env_start(&e);
    set_key(&e, "workerd:result:text", "not json " HOSTILE);
    set_key(&e, "workerd:result:array", "[1,2]");
    set_key(&e, "workerd:result:bytes", "\xff\xfe\x00\x01");
    ctlrun r;
    CTL_RUN(&r, "-b", e.url, "--json", "result", "text");
    ASSERT_EQ(r.code, 1);
    ASSERT_EQ(ctlrun_lines(r.out), 1);
    json_t *doc = ctlrun_json(&r);
    ASSERT_STREQ(e2e_jstr(doc, "id"), "text");
    ASSERT_STREQ(e2e_jstr(doc, "error"), "not a JSON object");
    ASSERT_STREQ(e2e_jstr(doc, "raw"), "not json " HOSTILE);
    json_decref(doc);
    ctlrun_free(&r);

    CTL_RUN(&r, "-b", e.url, "--json", "result", "array");
    ASSERT_EQ(r.code, 1);
    doc = ctlrun_json(&r);
    ASSERT_STREQ(e2e_jstr(doc, "raw"), "[1,2]");
    json_decref(doc);
    ctlrun_free(&r);

    /* "\xff\xfe" as ctlrun_redis sends it (a C string: the NUL ends it). */
    CTL_RUN(&r, "-b", e.url, "--json", "result", "bytes");
    ASSERT_EQ(r.code, 1);
    doc = ctlrun_json(&r);
    ASSERT(json_object_get(doc, "raw") == NULL);
    ASSERT_STREQ(e2e_jstr(doc, "raw_base64"), "//4=");
    json_decref(doc);
    ctlrun_free(&r);
    ctlrun_env_end(&e);
}

/* ---- dead letters -------------------------------------------------------------------- */

TEST(dead_list_shows_control_characters_escaped) {
    ctlrun_env e;
    ctlrun_env_start(&e);
    ctlrun_redis(&e, "LPUSH %s %s", "workerd:dead",
                 "{\"message\":\"{\\\"id\\\":\\\"d" HOSTILE_JSON
                 "\\\"}\",\"reason\":\"bad " HOSTILE_JSON "\",\"id\":\"d" HOSTILE_JSON
                 "\",\"queue\":\"q\",\"time\":1}",
                 NULL);
    ctlrun_redis(&e, "LPUSH %s %s", "workerd:dead", "hand-pushed " HOSTILE "\xff", NULL);
    ctlrun r;
    CTL_RUN(&r, "-b", e.url, "dead", "list");
    ASSERT_EQ(r.code, 0);
    assert_safe_run(&r);
    ASSERT(strstr(r.out, "d" HOSTILE_SHOWN) != NULL);
    ASSERT(strstr(r.out, "bad " HOSTILE_SHOWN "\n") != NULL);
    ctlrun_free(&r);
    /* --json holds both entries, the one that is not UTF-8 as base64. */
    CTL_RUN(&r, "-b", e.url, "--json", "dead", "list");
    ASSERT_EQ(r.code, 0);
    json_t *doc = ctlrun_json(&r);
    json_t *entries = json_object_get(doc, "entries");
    ASSERT_EQ(json_array_size(entries), 2);
    ASSERT(e2e_jstr(json_array_get(entries, 0), "raw_base64") != NULL);
    ASSERT_STREQ(e2e_jstr(json_array_get(entries, 1), "reason"), "bad " HOSTILE);
    json_decref(doc);
    ctlrun_free(&r);
    ctlrun_env_end(&e);
}

TEST(dead_requeue_shows_the_id_escaped) {
    ctlrun_env e;
    ctlrun_env_start(&e);
    ctlrun_redis(&e, "LPUSH %s %s", "workerd:dead",
                 "{\"message\":\"{\\\"id\\\":\\\"d" HOSTILE_JSON "\\\"}\",\"reason\":\"r\","
                 "\"id\":\"d" HOSTILE_JSON "\",\"queue\":\"q\"}",
                 NULL);
    ctlrun r;
    CTL_RUN(&r, "-b", e.url, "dead", "requeue", "0");
    ASSERT_EQ(r.code, 0);
    assert_safe_run(&r);
    ASSERT(strstr(r.out, "requeued d" HOSTILE_SHOWN " to queue 'q'\n") != NULL);
    ctlrun_free(&r);
    ctlrun_env_end(&e);
}

/* ---- workers, inspect, queues, revoke ------------------------------------------------ */

/* Two worker entries: one whose id is hostile (workerctl reads no keys for an id that is
 * not one), and one with a proper id whose queues, heartbeat and in-flight message are. */
static void fill_workers(ctlrun_env *e) {
    ctlrun_redis(e, "HSET workerd:workers %s %s", "w" HOSTILE, "default", NULL);
    ctlrun_redis(e, "HSET workerd:workers %s %s", "host:1:w1", "default,q" HOSTILE, NULL);
    ctlrun_redis(e, "HSET %s version %s", "workerd:worker:host:1:w1", "1" HOSTILE, NULL);
    ctlrun_redis(e, "HSET %s pool %s", "workerd:worker:host:1:w1", "green\xc2\x9b", NULL);
    ctlrun_redis(e, "HSET %s 7 %s", "workerd:inflight:host:1:w1",
                 "default\n{\"id\":\"job-1\",\"task\":\"t" HOSTILE_JSON "\"}", NULL);
}

TEST(workers_inspect_and_queues_show_control_characters_escaped) {
    ctlrun_env e;
    ctlrun_env_start(&e);
    fill_workers(&e);
    ctlrun r;
    CTL_RUN(&r, "-b", e.url, "workers");
    ASSERT_EQ(r.code, 0);
    assert_safe_run(&r);
    ASSERT(strstr(r.out, "w" HOSTILE_SHOWN) != NULL);
    ASSERT(strstr(r.out, "green\\u009b") != NULL);
    ASSERT(strstr(r.out, "1" HOSTILE_SHOWN) != NULL);
    ASSERT(strstr(r.out, "default,q" HOSTILE_SHOWN "\n") != NULL);
    ctlrun_free(&r);
    CTL_RUN(&r, "-b", e.url, "inspect");
    ASSERT_EQ(r.code, 0);
    assert_safe_run(&r);
    ASSERT(strstr(r.out, "t" HOSTILE_SHOWN "\n") != NULL);
    ctlrun_free(&r);
    CTL_RUN(&r, "-b", e.url, "queues");
    ASSERT_EQ(r.code, 0);
    assert_safe_run(&r);
    ASSERT(strstr(r.out, "q" HOSTILE_SHOWN) != NULL);
    ctlrun_free(&r);
    ctlrun_env_end(&e);
}
