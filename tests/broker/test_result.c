/*
 * test_result.c - the result document and the dead-letter entry, decoded back and
 * checked field by field as a consumer (redis-cli GET, workerctl) would see them; and a
 * dead-letter entry read back for requeueing (broker_dead_parse).
 */
#include "broker_result.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "testlib.h"

static json_t *decode(char *text) {
    ASSERT(text != NULL);
    json_error_t e;
    json_t *j = json_loads(text, JSON_ALLOW_NUL, &e);
    if (j == NULL)
        test__fail(__FILE__, __LINE__, "bad JSON %s: %s", text, e.text);
    free(text);
    return j;
}

static const char *str(json_t *o, const char *key) {
    return json_string_value(json_object_get(o, key));
}

TEST(success_result_has_every_field) {
    json_t *value = json_pack("{s:i}", "status", 200);
    broker_result r = {.id = "job-1",
                       .task = "http.get",
                       .status = BROKER_SUCCESS,
                       .result = value,
                       .retries = 1,
                       .worker = "h:1",
                       .started_at = 1700000000.25,
                       .finished_at = 1700000000.5};
    json_t *j = decode(broker_result_encode(&r));
    ASSERT_STREQ(str(j, "id"), "job-1");
    ASSERT_STREQ(str(j, "task"), "http.get");
    ASSERT_STREQ(str(j, "status"), "SUCCESS");
    ASSERT(json_equal(json_object_get(j, "result"), value));
    ASSERT(json_object_get(j, "error") == NULL);
    ASSERT_EQ(json_integer_value(json_object_get(j, "retries")), 1);
    ASSERT_STREQ(str(j, "worker"), "h:1");
    ASSERT(json_real_value(json_object_get(j, "started_at")) == 1700000000.25);
    ASSERT(json_real_value(json_object_get(j, "finished_at")) == 1700000000.5);
    ASSERT(fabs(json_real_value(json_object_get(j, "runtime")) - 0.25) < 1e-9);
    json_decref(j);
    json_decref(value);
}

TEST(success_without_a_value_stores_null) {
    broker_result r = {.id = "j", .status = BROKER_SUCCESS};
    json_t *j = decode(broker_result_encode(&r));
    ASSERT(json_is_null(json_object_get(j, "result")));
    ASSERT(json_object_get(j, "task") == NULL && json_object_get(j, "runtime") == NULL);
    json_decref(j);
}

TEST(failure_result_has_an_error_and_no_result) {
    broker_result r = {.id = "j",
                       .task = "t",
                       .status = BROKER_FAILURE,
                       .error_type = "InvalidMessage",
                       .error_message = "field \"args\" must be an array"};
    json_t *j = decode(broker_result_encode(&r));
    ASSERT_STREQ(str(j, "status"), "FAILURE");
    ASSERT(json_object_get(j, "result") == NULL);
    json_t *err = json_object_get(j, "error");
    ASSERT_STREQ(str(err, "type"), "InvalidMessage");
    ASSERT_STREQ(str(err, "message"), "field \"args\" must be an array");
    json_decref(j);
}

TEST(started_result_has_no_finish_or_runtime) {
    broker_result r = {.id = "j", .status = BROKER_STARTED, .started_at = 5.0};
    json_t *j = decode(broker_result_encode(&r));
    ASSERT_STREQ(str(j, "status"), "STARTED");
    ASSERT(json_object_get(j, "started_at") != NULL);
    ASSERT(json_object_get(j, "finished_at") == NULL && json_object_get(j, "runtime") == NULL);
    json_decref(j);
}

TEST(status_names) {
    ASSERT_STREQ(broker_status_name(BROKER_RETRY), "RETRY");
    ASSERT_STREQ(broker_status_name(BROKER_REVOKED), "REVOKED");
    ASSERT_STREQ(broker_status_name((broker_status)42), "UNKNOWN");
}

TEST(result_without_id_is_refused) {
    broker_result r = {.status = BROKER_SUCCESS};
    ASSERT(broker_result_encode(&r) == NULL);
}

TEST(dead_letter_keeps_the_raw_text_and_reason) {
    const char *raw = "{\"task\":5}";
    broker_dead d = {.raw = raw,
                     .raw_len = strlen(raw),
                     .reason = "missing task",
                     .worker = "h:1",
                     .time = 12.5,
                     .id = "j",
                     .queue = "default"};
    json_t *j = decode(broker_dead_encode(&d));
    ASSERT_STREQ(str(j, "message"), raw);
    ASSERT(json_is_false(json_object_get(j, "truncated")));
    ASSERT_EQ(json_integer_value(json_object_get(j, "message_bytes")), strlen(raw));
    ASSERT_STREQ(str(j, "reason"), "missing task");
    ASSERT_STREQ(str(j, "worker"), "h:1");
    ASSERT(json_real_value(json_object_get(j, "time")) == 12.5);
    ASSERT_STREQ(str(j, "id"), "j");
    ASSERT_STREQ(str(j, "queue"), "default");
    json_decref(j);
}

TEST(dead_letter_without_id_omits_it) {
    broker_dead d = {.raw = "x", .raw_len = 1, .reason = "r"};
    json_t *j = decode(broker_dead_encode(&d));
    ASSERT(json_object_get(j, "id") == NULL && json_object_get(j, "queue") == NULL);
    json_decref(j);
}

TEST(dead_letter_truncates_a_long_message_and_says_so) {
    char raw[100];
    memset(raw, 'a', sizeof raw);
    broker_dead d = {.raw = raw, .raw_len = sizeof raw, .reason = "r", .max_message_bytes = 10};
    json_t *j = decode(broker_dead_encode(&d));
    ASSERT_STREQ(str(j, "message"), "aaaaaaaaaa");
    ASSERT(json_is_true(json_object_get(j, "truncated")));
    ASSERT_EQ(json_integer_value(json_object_get(j, "message_bytes")), 100);
    json_decref(j);
}

TEST(dead_letter_truncation_does_not_split_a_character) {
    const char *raw = "aaaa\xe2\x82\xac"
                      "bbbb"; /* a euro sign at bytes 4..6 */
    broker_dead d = {.raw = raw, .raw_len = strlen(raw), .reason = "r", .max_message_bytes = 6};
    json_t *j = decode(broker_dead_encode(&d));
    ASSERT_STREQ(str(j, "message"), "aaaa");
    json_decref(j);
}

TEST(dead_letter_of_invalid_utf8_uses_replacement_characters) {
    const char raw[] = "{\"task\":\"\xff\xfe\"}\0end";
    broker_dead d = {.raw = raw, .raw_len = sizeof raw - 1, .reason = "bad \xc3"};
    json_t *j = decode(broker_dead_encode(&d));
    json_t *msg = json_object_get(j, "message");
    ASSERT_EQ(json_string_length(msg), sizeof raw - 1 + 4); /* 2 bytes became 2 x 3 bytes */
    ASSERT(memcmp(json_string_value(msg), "{\"task\":\"\xef\xbf\xbd\xef\xbf\xbd\"}\0end",
                  json_string_length(msg)) == 0);
    ASSERT_STREQ(str(j, "reason"), "bad \xef\xbf\xbd");
    json_decref(j);
}

/* broker_result_encode writes the text directly (the hot path); it must decode to exactly
 * what the jansson object broker_result_json builds, escapes and bad bytes included. */
static void assert_text_matches_object(const broker_result *r) {
    json_t *o = broker_result_json(r);
    json_t *j = decode(broker_result_encode(r));
    if (!json_equal(o, j)) {
        char *a = json_dumps(o, JSON_COMPACT), *b = json_dumps(j, JSON_COMPACT);
        test__fail(__FILE__, __LINE__, "object %s != text %s", a, b);
    }
    json_decref(o);
    json_decref(j);
}

TEST(encoded_text_matches_the_object_for_awkward_strings) {
    json_t *value = json_pack("{s:[i,f,s,n,b]}", "k\"\\", 1, 0.5, "\xc3\xa9\n", 1);
    broker_result r = {.id = "a\"b\\c\n\t\x01/\xc3\xa9\xff\xe2\x82",
                       .task = "t\x7f",
                       .status = BROKER_SUCCESS,
                       .result = value,
                       .retries = -3,
                       .worker = "w\xc0\xaf",
                       .started_at = 1700000000.000001,
                       .finished_at = 1700000001.1};
    assert_text_matches_object(&r);
    r.status = BROKER_FAILURE;
    r.error_type = "E\b\f\r";
    r.error_message = NULL;
    assert_text_matches_object(&r);
    r.error_type = NULL;
    r.error_message = "m\xed\xa0\x80"; /* a surrogate: invalid, replaced */
    assert_text_matches_object(&r);
    json_decref(value);
}

TEST(encoded_timestamps_are_reals_rounded_to_the_microsecond) {
    double times[] = {5.0, 0.25, 1e-7, 1795663852.8612345, 1700000000.9999996, 123456.000010};
    for (size_t i = 0; i < sizeof times / sizeof *times; i++) {
        broker_result r = {.id = "j",
                           .status = BROKER_SUCCESS,
                           .started_at = times[i],
                           .finished_at = times[i] + 0.5};
        assert_text_matches_object(&r);
        json_t *j = decode(broker_result_encode(&r));
        ASSERT(json_is_real(json_object_get(j, "started_at")));
        ASSERT(json_is_real(json_object_get(j, "runtime")));
        ASSERT(json_real_value(json_object_get(j, "started_at")) == round(times[i] * 1e6) / 1e6);
        json_decref(j);
    }
}

TEST(a_non_finite_timestamp_is_refused) {
    broker_result r = {.id = "j", .status = BROKER_SUCCESS, .started_at = INFINITY};
    ASSERT(broker_result_encode(&r) == NULL);
}

/* Found by tests/fuzz/fuzz_result: a finite timestamp beyond 1.8e302 s has no finite number
 * of microseconds; the hand-written encoder wrote "inf.0" (not JSON) where jansson's
 * json_real refuses. Both now refuse it. */
TEST(a_timestamp_too_large_for_microseconds_is_refused_not_garbled) {
    broker_result r = {.id = "j", .status = BROKER_FAILURE, .started_at = 1e303};
    ASSERT(broker_result_json(&r) == NULL);
    ASSERT(broker_result_encode(&r) == NULL);
}

/* What a consumer reads for a task's reals: the shortest text that is the same double
 * (0.1, not jansson's 0.10000000000000001), still a real (100.0, not 100). */
TEST(result_reals_are_the_shortest_text_of_the_same_double) {
    struct {
        double x;
        const char *text;
    } cases[] = {{0.1, "0.1"},
                 {0.707, "0.707"},
                 {100.0, "100.0"},
                 {-0.0, "-0.0"},
                 {1e300, "1e+300"},
                 {1.5e-7, "1.5e-07"},
                 {2.0 / 3.0, "0.6666666666666666"},
                 {0.1 + 0.2, "0.30000000000000004"},
                 {5e-324, "4.94065645841247e-324"}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        json_t *value = json_pack("[f]", cases[i].x);
        broker_result r = {.id = "j", .status = BROKER_SUCCESS, .result = value};
        char *text = broker_result_encode(&r);
        ASSERT(text != NULL);
        char want[80];
        snprintf(want, sizeof want, "\"result\":[%s]", cases[i].text);
        if (strstr(text, want) == NULL)
            test__fail(__FILE__, __LINE__, "%.17g: want %s in %s", cases[i].x, want, text);
        json_t *j = decode(text);
        json_t *back = json_array_get(json_object_get(j, "result"), 0);
        ASSERT(json_is_real(back));
        ASSERT(memcmp(&(double){json_real_value(back)}, &cases[i].x, sizeof(double)) == 0);
        json_decref(j);
        json_decref(value);
    }
}

/* Values as tasks build them: nested containers, non-ASCII and escaped bytes, every scalar
 * type; the text means the same value, keys in insertion order. A key with a NUL (jansson
 * allows one; json_loads does not read it back, Python's json does) is escaped. */
TEST(result_values_of_every_type_round_trip) {
    json_t *value = json_pack("{s:{s:[i,I,f,b,b,n,s,[],{}]},s:s}", "outer", "in", -7,
                              (json_int_t)INT64_MIN, 2.5, 1, 0, "\xe2\x82\xac\"x", "z", "last");
    broker_result r = {.id = "j", .status = BROKER_SUCCESS, .result = value};
    char *text = broker_result_encode(&r);
    ASSERT(strstr(text, "\"result\":{\"outer\":{\"in\":[-7,-9223372036854775808,2.5,true,false,"
                        "null,\"\xe2\x82\xac\\\"x\",[],{}]},\"z\":\"last\"}") != NULL);
    json_t *j = decode(text);
    ASSERT(json_equal(json_object_get(j, "result"), value));
    json_decref(j);
    json_object_setn_new(value, "a\0b", 3, json_string("nul key"));
    text = broker_result_encode(&r);
    ASSERT(strstr(text, ",\"a\\u0000b\":\"nul key\"}") != NULL);
    free(text);
    json_decref(value);
}

/* A result nested deeper than the encoder goes (or a cycle a task made by mistake) is
 * refused, not a crash: the worker stores the failure instead. */
TEST(a_result_nested_too_deep_is_refused) {
    json_t *value = json_array(), *inner = value;
    for (int i = 0; i < 1100; i++) {
        json_t *next = json_array();
        json_array_append_new(inner, next);
        inner = next;
    }
    broker_result r = {.id = "j", .status = BROKER_SUCCESS, .result = value};
    ASSERT(broker_result_encode(&r) == NULL);
    json_decref(value);
}

/* ---- dead letters read back ---------------------------------------------------------- */

/* broker_dead_parse of the entry broker_dead_encode makes of d. */
static const char *parse_encoded(const broker_dead *d, broker_dead_entry *e) {
    char *text = broker_dead_encode(d);
    ASSERT(text != NULL);
    const char *why = broker_dead_parse(text, strlen(text), e);
    free(text);
    return why;
}

TEST(dead_entry_gives_back_the_message_byte_exact_and_where_it_goes) {
    const char *raw = "{ \"id\":\"j-1\", \"task\":\"echo\",\"args\":[1.50] }";
    broker_dead d = {
        .raw = raw, .raw_len = strlen(raw), .reason = "r", .id = "j-1", .queue = "high"};
    broker_dead_entry e;
    ASSERT(parse_encoded(&d, &e) == NULL);
    ASSERT_EQ(e.message_len, strlen(raw));
    ASSERT_STREQ(e.message, raw);
    ASSERT_STREQ(e.queue, "high");
    ASSERT_STREQ(e.id, "j-1");
    broker_dead_entry_clear(&e);
    ASSERT(e.message == NULL);
}

TEST(dead_entry_without_a_queue_goes_to_default) {
    broker_dead d = {.raw = "{}", .raw_len = 2, .reason = "r"};
    broker_dead_entry e;
    ASSERT(parse_encoded(&d, &e) == NULL);
    ASSERT_STREQ(e.message, "{}");
    ASSERT_STREQ(e.queue, "default");
    ASSERT_STREQ(e.id, "");
    broker_dead_entry_clear(&e);
}

/* recover.lua counted the redeliveries in the message; a requeue starts again from 0. */
TEST(dead_entry_of_a_poison_pill_has_its_count_reset) {
    const char *raw = "{\"id\":\"p\",\"task\":\"sleep\",\"redelivered\":6}";
    broker_dead d = {.raw = raw, .raw_len = strlen(raw), .reason = "poison pill"};
    broker_dead_entry e;
    ASSERT(parse_encoded(&d, &e) == NULL);
    ASSERT_STREQ(e.message,
                 "{\"id\":\"p\",\"task\":\"sleep\",\"redelivered\":6,\"redelivered\":0}");
    ASSERT_EQ(e.message_len, strlen(e.message));
    json_t *m = json_loads(e.message, 0, NULL);
    ASSERT_EQ(json_integer_value(json_object_get(m, "redelivered")), 0);
    json_decref(m);
    broker_dead_entry_clear(&e);
    raw = "{\"id\":\"q\",\"redelivered\":0}"; /* nothing counted: left as it is */
    d.raw = raw;
    d.raw_len = strlen(raw);
    ASSERT(parse_encoded(&d, &e) == NULL);
    ASSERT_STREQ(e.message, raw);
    broker_dead_entry_clear(&e);
}

TEST(dead_entry_that_cannot_be_requeued_says_why) {
    broker_dead_entry e;
    ASSERT_STREQ(broker_dead_parse("not json", 8, &e), "the entry has no \"message\"");
    ASSERT(e.message == NULL);
    ASSERT_STREQ(broker_dead_parse("{\"id\":\"x\"}", 10, &e), "the entry has no \"message\"");
    ASSERT_STREQ(e.id, "x"); /* said in the report of what was skipped */
    char raw[100];
    memset(raw, 'a', sizeof raw);
    broker_dead cut = {
        .raw = raw, .raw_len = sizeof raw, .reason = "r", .id = "c", .max_message_bytes = 10};
    ASSERT_STREQ(parse_encoded(&cut, &e), "the message was cut when it was dead-lettered");
    ASSERT(e.message == NULL);
    ASSERT_STREQ(e.id, "c");
    broker_dead bad = {.raw = "{}", .raw_len = 2, .reason = "r", .queue = "a b"};
    ASSERT_STREQ(parse_encoded(&bad, &e), "the entry names an invalid queue");
    /* Too long for a queue name: refused whole, not cut to a valid one. */
    char longq[BROKER_QUEUE_NAME_MAX + 20];
    memset(longq, 'q', sizeof longq - 1);
    longq[sizeof longq - 1] = '\0';
    bad.queue = longq;
    ASSERT_STREQ(parse_encoded(&bad, &e), "the entry names an invalid queue");
    ASSERT(e.message == NULL);
}
