/*
 * test_unique.c - unique tasks' fields and key text (broker_unique.h): the canonical JSON
 * a message without unique_key is unique by, its hash and lock key, and every bad value
 * of unique_for and unique_key refused naming the field. Pure tests: no servers.
 */
#include "broker_keys.h"
#include "broker_msg.h"
#include "broker_scripts.h"
#include "broker_unique.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "testlib.h"

static void must_parse(const char *text, broker_msg *m) {
    broker_msg_error e;
    int rc = broker_msg_parse(text, strlen(text), NULL, 1000.0, m, &e);
    if (rc != 0)
        test__fail(__FILE__, __LINE__, "%s: rc %d: %s", text, rc, e.reason);
}

/* The key text of the message `text`, compared with `want`. */
static void expect_text(const char *text, const char *want) {
    broker_msg m;
    must_parse(text, &m);
    size_t len = 0;
    char *got = broker_unique_text(&m, &len);
    ASSERT(got != NULL);
    if (strcmp(got, want) != 0 || len != strlen(want))
        test__fail(__FILE__, __LINE__, "%s: key text %s, wanted %s", text, got, want);
    free(got);
    broker_msg_free(&m);
}

static void expect_rejected(const char *text, const char *want_reason) {
    broker_msg m;
    broker_msg_error e;
    int rc = broker_msg_parse(text, strlen(text), NULL, 1000.0, &m, &e);
    if (rc != -EINVAL || strncmp(e.reason, want_reason, strlen(want_reason)) != 0)
        test__fail(__FILE__, __LINE__, "%s: rc %d, reason \"%s\", wanted \"%s...\"", text, rc,
                   e.reason, want_reason);
    ASSERT(e.has_id);
}

TEST(default_key_is_task_args_kwargs_in_canonical_json) {
    expect_text("{\"task\":\"echo\",\"unique_for\":60,\"args\":[1,\"x\"],"
                "\"kwargs\":{\"z\":null,\"a\":[true]}}",
                "[\"echo\",[1,\"x\"],{\"a\":[true],\"z\":null}]");
}

TEST(default_key_sorts_nested_keys_and_drops_whitespace) {
    expect_text("{ \"task\" : \"t\", \"unique_for\" : 1, \"args\" : [ { \"b\" : 1 , \"a\" : "
                "{ \"d\" : 2, \"c\" : 3 } } ], \"kwargs\" : { \"y\" : 1, \"x\" : 2 } }",
                "[\"t\",[{\"a\":{\"c\":3,\"d\":2},\"b\":1}],{\"x\":2,\"y\":1}]");
}

TEST(default_key_ignores_every_other_field_and_the_id) {
    expect_text("{\"id\":\"a\",\"task\":\"t\",\"unique_for\":5,\"countdown\":3,\"queue\":\"q\"}",
                "[\"t\",[],{}]");
    expect_text("{\"id\":\"b\",\"task\":\"t\",\"unique_for\":9,\"retries\":2}", "[\"t\",[],{}]");
}

TEST(default_key_writes_numbers_as_jansson_does) {
    /* An integer and a real are different keys; reals keep 17 digits; strings keep UTF-8
     * and '/', escape quotes, backslashes and control characters. */
    expect_text("{\"task\":\"t\",\"unique_for\":1,\"args\":[1,1.0,0.1,-2,1e300]}",
                "[\"t\",[1,1.0,0.10000000000000001,-2,1.0000000000000001e300],{}]");
    expect_text("{\"task\":\"t\",\"unique_for\":1,\"args\":[\"a/b\",\"\\u00e9\",\"q\\\"\\n\"]}",
                "[\"t\",[\"a/b\",\"\xc3\xa9\",\"q\\\"\\n\"],{}]");
}

TEST(unique_key_is_the_key_text_byte_for_byte) {
    expect_text("{\"task\":\"t\",\"unique_for\":1,\"args\":[1],\"unique_key\":\"user:42\"}",
                "user:42");
}

TEST(hash_is_sha1_of_the_text_and_names_the_lock) {
    broker_msg m;
    must_parse("{\"task\":\"t\",\"unique_for\":1,\"unique_key\":\"abc\"}", &m);
    char hash[41];
    ASSERT_EQ(broker_unique_hash(&m, hash), 0);
    ASSERT_STREQ(hash, "a9993e364706816aba3e25717850c26c9cd0d89d"); /* SHA-1("abc") */
    broker_keys k;
    ASSERT_EQ(broker_keys_init(&k, "workerd"), 0);
    char key[BROKER_KEY_MAX];
    ASSERT(broker_key_unique(&k, hash, key) > 0);
    ASSERT_STREQ(key, "workerd:unique:a9993e364706816aba3e25717850c26c9cd0d89d");
    ASSERT(broker_key_unique(&k, "not-a-hash", key) < 0);
    broker_msg_free(&m);
}

TEST(unique_for_is_read_and_defaults_to_none) {
    broker_msg m;
    must_parse("{\"task\":\"t\",\"unique_for\":2.5}", &m);
    ASSERT(m.unique_for == 2.5 && m.unique_key == NULL);
    broker_msg_free(&m);
    must_parse("{\"task\":\"t\",\"unique_for\":null,\"unique_key\":null}", &m);
    ASSERT(m.unique_for == 0 && m.unique_key == NULL);
    broker_msg_free(&m);
    must_parse("{\"task\":\"t\",\"unique_for\":2592000,\"unique_key\":\"k\"}", &m);
    ASSERT(m.unique_for == 2592000 && m.unique_key_len == 1);
    broker_msg_free(&m);
}

TEST(bad_unique_for_and_unique_key_are_refused_naming_the_field) {
    const char *bad_for[] = {"\"60\"", "true", "[1]", "0", "-1", "2592001", "1e12", "1e308", "{}"};
    for (size_t i = 0; i < sizeof bad_for / sizeof *bad_for; i++) {
        char text[256];
        snprintf(text, sizeof text, "{\"id\":\"x\",\"task\":\"t\",\"unique_for\":%s}", bad_for[i]);
        expect_rejected(text, "field \"unique_for\"");
    }
    expect_rejected("{\"id\":\"x\",\"task\":\"t\",\"unique_for\":1,\"unique_key\":5}",
                    "field \"unique_key\"");
    expect_rejected("{\"id\":\"x\",\"task\":\"t\",\"unique_for\":1,\"unique_key\":\"\"}",
                    "field \"unique_key\"");
    expect_rejected("{\"id\":\"x\",\"task\":\"t\",\"unique_key\":\"k\"}",
                    "field \"unique_key\" needs \"unique_for\"");
}
