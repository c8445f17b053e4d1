/*
 * test_msg.c - the task-message parser: what it accepts, what it fills in, and every bad
 * input a producer can send (each rejected with a reason a user understands, and with the
 * id when it can still be read). Pure parser tests: no servers.
 */
#include "broker_msg.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "testlib.h"

static int parse(const char *text, broker_msg *m, broker_msg_error *e) {
    return broker_msg_parse(text, strlen(text), NULL, 1000.0, m, e);
}

/* Asserts that text is rejected with a reason starting with want_reason. */
static void expect_rejected(const char *text, const char *want_reason, broker_msg_error *e) {
    broker_msg m;
    int rc = parse(text, &m, e);
    if (rc != -EINVAL || strncmp(e->reason, want_reason, strlen(want_reason)) != 0)
        test__fail(__FILE__, __LINE__, "%s: rc %d, reason \"%s\", wanted \"%s...\"", text, rc,
                   e->reason, want_reason);
    ASSERT(m.root == NULL && m.id == NULL);
}

TEST(minimal_message_gets_defaults_and_a_generated_id) {
    broker_msg m;
    broker_msg_error e;
    ASSERT_EQ(parse("{\"task\":\"http.get\"}", &m, &e), 0);
    ASSERT_STREQ(m.task, "http.get");
    ASSERT_EQ(strlen(m.id), 36);
    ASSERT(m.id_generated);
    ASSERT_STREQ(json_string_value(json_object_get(m.root, "id")), m.id);
    ASSERT(json_is_array(m.args) && json_array_size(m.args) == 0);
    ASSERT(json_is_object(m.kwargs) && json_object_size(m.kwargs) == 0);
    ASSERT(m.queue == NULL);
    ASSERT_EQ(m.retries, 0);
    ASSERT_EQ(m.max_retries, 3);
    ASSERT_EQ(m.redelivered, 0);
    ASSERT(m.eta == 0 && m.expires == 0 && m.time_limit == 0 && m.soft_time_limit == 0);
    ASSERT(!m.ignore_result);
    broker_msg_free(&m);
}

TEST(every_field_is_read) {
    broker_msg m;
    broker_msg_error e;
    ASSERT_EQ(parse("{\"id\":\"job-1\",\"task\":\"t\",\"queue\":\"high\",\"args\":[1,\"a\"],"
                    "\"kwargs\":{\"timeout\":5},\"retries\":2,\"max_retries\":7,"
                    "\"eta\":2000.5,\"expires\":3000,\"time_limit\":30,"
                    "\"soft_time_limit\":20.5,\"ignore_result\":true,\"redelivered\":1,"
                    "\"chain\":[{\"task\":\"next\"}]}",
                    &m, &e),
              0);
    ASSERT_STREQ(m.id, "job-1");
    ASSERT(!m.id_generated);
    ASSERT_STREQ(m.queue, "high");
    ASSERT_EQ(json_array_size(m.args), 2);
    ASSERT_EQ(json_integer_value(json_object_get(m.kwargs, "timeout")), 5);
    ASSERT_EQ(m.retries, 2);
    ASSERT_EQ(m.max_retries, 7);
    ASSERT_EQ(m.redelivered, 1);
    ASSERT(m.eta == 2000.5 && m.expires == 4000); /* 3000 s from now: relative */
    ASSERT(m.time_limit == 30 && m.soft_time_limit == 20.5);
    ASSERT(m.ignore_result);
    ASSERT(json_is_array(json_object_get(m.root, "chain"))); /* unknown fields are kept */
    broker_msg_free(&m);
}

TEST(countdown_becomes_an_eta_from_now) {
    broker_msg m;
    ASSERT_EQ(parse("{\"task\":\"t\",\"countdown\":10}", &m, NULL), 0);
    ASSERT(m.countdown == 10 && m.eta == 1010.0);
    broker_msg_free(&m);
    ASSERT_EQ(parse("{\"task\":\"t\",\"countdown\":10,\"eta\":5000}", &m, NULL), 0);
    ASSERT(m.eta == 5000.0);
    broker_msg_free(&m);
}

TEST(null_optional_fields_count_as_absent) {
    broker_msg m;
    ASSERT_EQ(parse("{\"task\":\"t\",\"id\":null,\"args\":null,\"kwargs\":null,"
                    "\"queue\":null,\"max_retries\":null,\"eta\":null}",
                    &m, NULL),
              0);
    ASSERT(m.id_generated && json_is_array(m.args) && json_is_object(m.kwargs));
    ASSERT(m.queue == NULL && m.max_retries == 3 && m.eta == 0);
    broker_msg_free(&m);
}

TEST(generated_ids_are_uuid4_and_differ) {
    char a[37], b[37];
    broker_msg_new_id(a);
    broker_msg_new_id(b);
    ASSERT_EQ(strlen(a), 36);
    ASSERT(a[8] == '-' && a[13] == '-' && a[18] == '-' && a[23] == '-');
    ASSERT(a[14] == '4');
    ASSERT(strchr("89ab", a[19]) != NULL);
    ASSERT(strcmp(a, b) != 0);
}

TEST(invalid_json_is_rejected_with_line_and_column) {
    broker_msg_error e;
    expect_rejected("{\"task\": }", "invalid JSON at line 1 column ", &e);
    expect_rejected("{\"task\":\"t\"} trailing", "invalid JSON at line 1", &e);
    expect_rejected("{\"task\":\"t\",\n \"args\":[1,]}", "invalid JSON at line 2", &e);
    expect_rejected("", "invalid JSON", &e);
    expect_rejected("{\"task\":\"\xff\"}", "invalid JSON", &e);
    expect_rejected("{\"task\":\"a\\u0000b\"}", "invalid JSON", &e);
}

TEST(invalid_json_still_yields_a_readable_id) {
    broker_msg_error e;
    expect_rejected("{\"id\":\"job-7\",\"args\":[1,2", "invalid JSON", &e);
    ASSERT(e.has_id);
    ASSERT_STREQ(e.id, "job-7");
    /* Escapes are undone; values before the id are skipped, nested or not. */
    expect_rejected("{\"args\":[{\"id\":\"inner\"},\"]\"],\"id\":\"a\\\"b\",\"task\":", "invalid",
                    &e);
    ASSERT(e.has_id);
    ASSERT_STREQ(e.id, "a\"b");
    expect_rejected("this is not json", "invalid JSON", &e);
    ASSERT(!e.has_id);
}

TEST(json_that_is_not_an_object_is_rejected) {
    broker_msg_error e;
    expect_rejected("[1,2]", "message is not a JSON object", &e);
    expect_rejected("42", "message is not a JSON object", &e);
    expect_rejected("\"task\"", "message is not a JSON object", &e);
    expect_rejected("null", "message is not a JSON object", &e);
    ASSERT(!e.has_id);
}

TEST(missing_task_is_rejected_but_the_id_is_kept) {
    broker_msg_error e;
    expect_rejected("{\"id\":\"job-2\",\"args\":[]}", "missing or non-string field \"task\"", &e);
    ASSERT(e.has_id);
    ASSERT_STREQ(e.id, "job-2");
}

TEST(non_string_or_empty_task_is_rejected) {
    broker_msg_error e;
    expect_rejected("{\"task\":5}", "missing or non-string field \"task\"", &e);
    expect_rejected("{\"task\":null}", "missing or non-string field \"task\"", &e);
    expect_rejected("{\"task\":[\"t\"]}", "missing or non-string field \"task\"", &e);
    expect_rejected("{\"task\":\"\"}", "field \"task\" is empty", &e);
}

TEST(args_that_are_not_an_array_are_rejected) {
    broker_msg_error e;
    expect_rejected("{\"id\":\"j\",\"task\":\"t\",\"args\":{\"a\":1}}",
                    "field \"args\" must be an array", &e);
    ASSERT_STREQ(e.id, "j");
    expect_rejected("{\"task\":\"t\",\"args\":\"http://x/\"}", "field \"args\" must be an array",
                    &e);
}

TEST(kwargs_that_are_not_an_object_are_rejected) {
    broker_msg_error e;
    expect_rejected("{\"task\":\"t\",\"kwargs\":[1]}", "field \"kwargs\" must be an object", &e);
    expect_rejected("{\"task\":\"t\",\"kwargs\":3}", "field \"kwargs\" must be an object", &e);
}

TEST(numeric_fields_of_the_wrong_type_are_rejected) {
    broker_msg_error e;
    expect_rejected("{\"task\":\"t\",\"retries\":\"3\"}",
                    "field \"retries\" must be a non-negative integer", &e);
    expect_rejected("{\"task\":\"t\",\"max_retries\":-1}",
                    "field \"max_retries\" must be a non-negative integer", &e);
    expect_rejected("{\"task\":\"t\",\"max_retries\":1.5}",
                    "field \"max_retries\" must be a non-negative integer", &e);
    expect_rejected("{\"task\":\"t\",\"redelivered\":true}",
                    "field \"redelivered\" must be a non-negative integer", &e);
    expect_rejected("{\"task\":\"t\",\"countdown\":\"soon\"}",
                    "field \"countdown\" must be a non-negative number", &e);
    expect_rejected("{\"task\":\"t\",\"eta\":-5}", "field \"eta\" must be a non-negative number",
                    &e);
    expect_rejected("{\"task\":\"t\",\"time_limit\":true}",
                    "field \"time_limit\" must be a non-negative number", &e);
    expect_rejected("{\"task\":\"t\",\"expires\":[1]}",
                    "field \"expires\" must be a non-negative number", &e);
    expect_rejected("{\"task\":\"t\",\"ignore_result\":\"yes\"}",
                    "field \"ignore_result\" must be a boolean", &e);
}

TEST(bad_id_or_queue_is_rejected) {
    broker_msg_error e;
    expect_rejected("{\"task\":\"t\",\"id\":42}", "field \"id\" must be a non-empty string", &e);
    ASSERT(!e.has_id);
    expect_rejected("{\"task\":\"t\",\"id\":\"\"}", "field \"id\" must be a non-empty string", &e);
    char big[400];
    snprintf(big, sizeof big, "{\"task\":\"t\",\"id\":\"%0300d\"}", 0);
    expect_rejected(big, "field \"id\" must be a non-empty string of at most 255 bytes", &e);
    ASSERT(!e.has_id);
    expect_rejected("{\"task\":\"t\",\"queue\":\"a b\"}",
                    "field \"queue\" is not a valid queue name: queue name contains whitespace",
                    &e);
    expect_rejected("{\"task\":\"t\",\"queue\":7}", "field \"queue\" is not a valid queue name",
                    &e);
}

TEST(too_many_args_are_rejected_by_the_limit) {
    broker_limits lim = {.max_args = 2, .max_kwargs = 1};
    broker_msg m;
    broker_msg_error e;
    const char *ok = "{\"task\":\"t\",\"args\":[1,2],\"kwargs\":{\"a\":1}}";
    ASSERT_EQ(broker_msg_parse(ok, strlen(ok), &lim, 0, &m, &e), 0);
    broker_msg_free(&m);
    const char *args = "{\"task\":\"t\",\"args\":[1,2,3]}";
    ASSERT_EQ(broker_msg_parse(args, strlen(args), &lim, 0, &m, &e), -EINVAL);
    ASSERT_STREQ(e.reason, "field \"args\" has 3 items, more than the limit of 2");
    const char *kw = "{\"task\":\"t\",\"kwargs\":{\"a\":1,\"b\":2}}";
    ASSERT_EQ(broker_msg_parse(kw, strlen(kw), &lim, 0, &m, &e), -EINVAL);
    ASSERT_STREQ(e.reason, "field \"kwargs\" has 2 keys, more than the limit of 1");
}

/* Found by tests/fuzz/fuzz_msg: with an id cap below 36 bytes, a message without an id got
 * a 36-byte generated id, and the same message re-encoded for its retry was then rejected.
 * The cap is now never below the length of a generated id. */
TEST(generated_id_survives_re_encoding_under_a_small_id_cap) {
    broker_limits lim = {.max_id_bytes = 8};
    broker_msg m, again;
    const char *raw = "{\"task\":\"t\"}";
    ASSERT_EQ(broker_msg_parse(raw, strlen(raw), &lim, 0, &m, NULL), 0);
    ASSERT(m.id_generated);
    ASSERT_EQ(strlen(m.id), BROKER_GENERATED_ID_BYTES);
    char *text = json_dumps(m.root, JSON_COMPACT);
    ASSERT(text != NULL);
    ASSERT_EQ(broker_msg_parse(text, strlen(text), &lim, 0, &again, NULL), 0);
    ASSERT_STREQ(again.id, m.id);
    free(text);
    broker_msg_free(&again);
    broker_msg_free(&m);
}

/* Found by tests/fuzz/fuzz_msg: the id salvage of an oversized message compared key text
 * byte for byte, so "\u0069d" (the key id to jansson) was missed, or lost to an earlier
 * plain "id". */
TEST(salvaged_id_honours_an_escaped_id_key) {
    broker_limits lim = {.max_message_bytes = 8};
    broker_msg m;
    broker_msg_error e;
    const char *raw = "{\"id\":\"first\",\"task\":\"t\",\"\\u0069d\":\"last\"}";
    ASSERT_EQ(broker_msg_parse(raw, strlen(raw), &lim, 0, &m, &e), -EINVAL);
    ASSERT(e.has_id);
    ASSERT_STREQ(e.id, "last");
    const char *both = "{\"\\u0069\\u0064\":\"esc\",\"task\":\"t\"}";
    ASSERT_EQ(broker_msg_parse(both, strlen(both), &lim, 0, &m, &e), -EINVAL);
    ASSERT(e.has_id);
    ASSERT_STREQ(e.id, "esc");
}

TEST(hundred_megabyte_message_is_rejected_by_size_without_parsing) {
    /* Only the first MiB of the 100 MB is readable: a parser that read the whole message
     * (a JSON parse, a depth scan, a strlen) would fault on the rest, however fast or slow
     * the machine. The size check and the salvage of the id read only the head. */
    size_t len = 100u * 1024 * 1024, readable = 1024 * 1024;
    char *raw = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ASSERT(raw != MAP_FAILED);
    const char *head = "{\"id\":\"big-1\",\"task\":\"t\",\"args\":[\"";
    memset(raw, 'x', readable);
    memcpy(raw, head, strlen(head));
    ASSERT_EQ(mprotect(raw + readable, len - readable, PROT_NONE), 0);
    broker_msg m;
    broker_msg_error e;
    int rc = broker_msg_parse(raw, len, NULL, 0, &m, &e);
    ASSERT_EQ(munmap(raw, len), 0);
    ASSERT_EQ(rc, -EINVAL);
    ASSERT_STREQ(e.reason, "message of 104857600 bytes exceeds the 1048576-byte limit");
    ASSERT(e.has_id);
    ASSERT_STREQ(e.id, "big-1");
}

/* {"id":"deep-1","task":"t","args": then levels of '[' and as many ']' then }. */
static char *nested(int levels) {
    const char *head = "{\"id\":\"deep-1\",\"task\":\"t\",\"args\":";
    size_t hl = strlen(head);
    char *s = malloc(hl + 2 * (size_t)levels + 2);
    memcpy(s, head, hl);
    memset(s + hl, '[', (size_t)levels);
    memset(s + hl + levels, ']', (size_t)levels);
    strcpy(s + hl + 2 * (size_t)levels, "}");
    return s;
}

TEST(hundred_thousand_levels_are_rejected_by_depth) {
    char *s = nested(100000);
    broker_msg m;
    broker_msg_error e;
    ASSERT_EQ(parse(s, &m, &e), -EINVAL);
    free(s);
    ASSERT_STREQ(e.reason, "JSON nested deeper than 64 levels");
    ASSERT(e.has_id);
    ASSERT_STREQ(e.id, "deep-1");
}

TEST(depth_limit_counts_the_message_as_level_one) {
    broker_msg m;
    broker_msg_error e;
    char *ok = nested(63);
    ASSERT_EQ(parse(ok, &m, &e), 0);
    broker_msg_free(&m);
    free(ok);
    char *deep = nested(64);
    ASSERT_EQ(parse(deep, &m, &e), -EINVAL);
    free(deep);
    ASSERT_STREQ(e.reason, "JSON nested deeper than 64 levels");
}

TEST(brackets_inside_strings_do_not_count_as_depth) {
    char s[400];
    snprintf(s, sizeof s, "{\"task\":\"t\",\"args\":[\"%0100d\\\"[[\"]}", 0);
    for (char *p = strchr(s, '0'); p && *p == '0'; p++)
        *p = '[';
    broker_msg m;
    ASSERT_EQ(parse(s, &m, NULL), 0);
    ASSERT_EQ(strlen(json_string_value(json_array_get(m.args, 0))), 103);
    broker_msg_free(&m);
}

TEST(duplicate_keys_resolve_to_the_last_one) {
    broker_msg m;
    /* Recovery appends ,"redelivered":N at the end; the parser must see the new count. */
    ASSERT_EQ(
        parse("{\"task\":\"a\",\"redelivered\":1,\"task\":\"b\",\"redelivered\":2}", &m, NULL), 0);
    ASSERT_STREQ(m.task, "b");
    ASSERT_EQ(m.redelivered, 2);
    broker_msg_free(&m);
}

TEST(message_need_not_be_nul_terminated) {
    const char text[] = "{\"task\":\"t\"}GARBAGE";
    broker_msg m;
    ASSERT_EQ(broker_msg_parse(text, 12, NULL, 0, &m, NULL), 0);
    ASSERT_STREQ(m.task, "t");
    broker_msg_free(&m);
}
