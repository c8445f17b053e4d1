/*
 * test_celery.c - Celery's wire formats (broker_celery.h): an envelope as kombu LPUSHes it
 * read into workerd's message, every refusal (content type, protocol 1, base64, body shape,
 * header types, unmapped names), the result documents AsyncResult reads, the envelope kept
 * for later, the messages a chain, a link and a link_error publish, and the queue and key
 * names (broker_keys.h). Pure tests: no servers.
 */
#include "broker_celery.h"
#include "broker_keys.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testlib.h"

static const char b64chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Standard base64 of s (a test's own encoder, so the codec is not checked against itself). */
static char *b64(const char *s) {
    size_t len = strlen(s), n = 0;
    char *out = malloc(len / 3 * 4 + 8);
    for (size_t i = 0; i < len; i += 3) {
        unsigned v = (unsigned char)s[i] << 16;
        if (i + 1 < len)
            v |= (unsigned char)s[i + 1] << 8;
        if (i + 2 < len)
            v |= (unsigned char)s[i + 2];
        out[n++] = b64chars[v >> 18 & 63];
        out[n++] = b64chars[v >> 12 & 63];
        out[n++] = i + 1 < len ? b64chars[v >> 6 & 63] : '=';
        out[n++] = i + 2 < len ? b64chars[v & 63] : '=';
    }
    out[n] = '\0';
    return out;
}

/* An envelope like kombu's, with body text and extra header fields (",..." or ""). */
static char *envelope(const char *task, const char *body, const char *headers, const char *ctype) {
    char *b = b64(body);
    char *out = malloc(strlen(b) + strlen(headers) + 1024);
    sprintf(out,
            "{\"body\":\"%s\",\"content-encoding\":\"utf-8\",\"content-type\":\"%s\","
            "\"headers\":{\"lang\":\"py\",\"task\":\"%s\",\"id\":\"t-1\",\"root_id\":\"r-1\","
            "\"parent_id\":null,\"group\":null,\"retries\":0,\"eta\":null,\"expires\":null,"
            "\"timelimit\":[null,null]%s},"
            "\"properties\":{\"correlation_id\":\"t-1\",\"reply_to\":\"x\",\"delivery_mode\":2,"
            "\"delivery_info\":{\"exchange\":\"\",\"routing_key\":\"celery\"},\"priority\":0,"
            "\"body_encoding\":\"base64\",\"delivery_tag\":\"d-1\"}}",
            b, ctype, task, headers);
    free(b);
    return out;
}

static int translate(const char *raw, const broker_celery_map *map, broker_celery_info *info,
                     json_t **msg, broker_celery_error *err) {
    char *out = NULL;
    size_t len = 0;
    int rc = broker_celery_translate(raw, strlen(raw), NULL, map, info, &out, &len, err);
    *msg = rc == 0 ? json_loadb(out, len, 0, NULL) : NULL;
    free(out);
    return rc;
}

static void expect_refused(const char *raw, const char *exc_type, const char *reason_part) {
    broker_celery_info info;
    broker_celery_error err;
    json_t *msg;
    int rc = translate(raw, NULL, &info, &msg, &err);
    if (rc != -EINVAL || strcmp(err.exc_type, exc_type) != 0 ||
        strstr(err.reason, reason_part) == NULL)
        test__fail(__FILE__, __LINE__, "%s: rc %d, %s: %s; wanted %s: ...%s...", raw, rc,
                   rc == -EINVAL ? err.exc_type : "-", err.reason, exc_type, reason_part);
    ASSERT(info.envelope == NULL && info.embed == NULL);
}

TEST(envelope_becomes_workerd_message) {
    char *raw = envelope("workerd.http.get", "[[\"http://x/\"],{\"timeout\":5},null]",
                         ",\"eta\":\"2026-12-04T10:00:00.500000+00:00\","
                         "\"expires\":\"2026-12-04T11:00:00\",\"timelimit\":[10,5.5]",
                         "application/json");
    broker_celery_info info;
    broker_celery_error err;
    json_t *msg;
    ASSERT_EQ(translate(raw, NULL, &info, &msg, &err), 0);
    ASSERT_STREQ(json_string_value(json_object_get(msg, "id")), "t-1");
    ASSERT_STREQ(json_string_value(json_object_get(msg, "task")), "http.get");
    ASSERT_STREQ(json_string_value(json_array_get(json_object_get(msg, "args"), 0)), "http://x/");
    ASSERT_EQ(json_integer_value(json_object_get(json_object_get(msg, "kwargs"), "timeout")), 5);
    ASSERT(json_number_value(json_object_get(msg, "eta")) == 1796378400.5);
    ASSERT(json_number_value(json_object_get(msg, "expires")) == 1796382000.0); /* naive: UTC */
    ASSERT(json_number_value(json_object_get(msg, "time_limit")) == 10.0);
    ASSERT(json_number_value(json_object_get(msg, "soft_time_limit")) == 5.5);
    ASSERT_STREQ(info.name, "workerd.http.get");
    ASSERT_STREQ(info.root_id, "r-1");
    ASSERT(info.embed == NULL);
    json_decref(msg);
    broker_celery_info_free(&info);
    free(raw);
}

TEST(mapped_names_and_unmapped_ones) {
    char *entries[] = {"proj.tasks.fetch=http.get", "other=echo"};
    broker_celery_map map = {entries, 2};
    char *raw = envelope("proj.tasks.fetch", "[[],{},{}]", "", "application/json");
    broker_celery_info info;
    broker_celery_error err;
    json_t *msg;
    ASSERT_EQ(translate(raw, &map, &info, &msg, &err), 0);
    ASSERT_STREQ(json_string_value(json_object_get(msg, "task")), "http.get");
    json_decref(msg);
    broker_celery_info_free(&info);
    free(raw);
    /* A prefix of a mapped name is not that name. */
    raw = envelope("proj.tasks", "[[],{},{}]", "", "application/json");
    ASSERT_EQ(translate(raw, &map, &info, &msg, &err), -EINVAL);
    ASSERT_STREQ(err.exc_type, "NotRegistered");
    ASSERT(err.has_id && strcmp(err.id, "t-1") == 0);
    free(raw);
    expect_refused((raw = envelope("workerd.", "[[],{},{}]", "", "application/json")),
                   "NotRegistered", "'workerd.'");
    free(raw);
}

TEST(refusals_say_why_and_never_read_a_pickle) {
    char *raw = envelope("workerd.echo", "\x80\x04garbage", "", "application/x-python-serialize");
    expect_refused(raw, "ContentDisallowed", "application/x-python-serialize");
    free(raw);
    expect_refused((raw = envelope("workerd.echo", "[[],{}]", "", "application/json")),
                   "InvalidMessage", "[args, kwargs, embed]");
    free(raw);
    expect_refused(
        (raw = envelope("workerd.echo", "[[],{},{}]", ",\"retries\":\"1\"", "application/json")),
        "InvalidMessage", "wrong type");
    free(raw);
    expect_refused(
        (raw = envelope("workerd.echo", "[[],{},{}]", ",\"eta\":\"tomorrow\"", "application/json")),
        "InvalidMessage", "ISO 8601");
    free(raw);
    expect_refused("{\"body\":\"e30=\",\"content-type\":\"application/json\",\"headers\":{},"
                   "\"properties\":{\"body_encoding\":\"base64\"}}",
                   "InvalidMessage", "protocol v1");
    expect_refused("{\"body\":\"%%%\",\"content-type\":\"application/json\",\"headers\":{\"task\":"
                   "\"workerd.echo\",\"id\":\"x\"},\"properties\":{\"body_encoding\":\"base64\"}}",
                   "InvalidMessage", "not valid base64");
    expect_refused("[1]", "InvalidMessage", "not a JSON object");
}

TEST(result_documents_read_as_celery_reads_them) {
    json_t *value = json_pack("[i,s]", 1, "two");
    broker_result r = {.id = "t-1",
                       .status = BROKER_SUCCESS,
                       .result = value,
                       .worker = "w",
                       .finished_at = 1796378400.25};
    char *text = broker_celery_result_encode(&r, NULL, NULL, false, "=celery");
    json_t *doc = json_loads(text, 0, NULL);
    ASSERT_STREQ(json_string_value(json_object_get(doc, "status")), "SUCCESS");
    ASSERT(json_equal(json_object_get(doc, "result"), value));
    ASSERT_STREQ(json_string_value(json_object_get(doc, "task_id")), "t-1");
    ASSERT_STREQ(json_string_value(json_object_get(doc, "date_done")),
                 "2026-12-04T10:00:00.250000");
    ASSERT(json_is_null(json_object_get(doc, "traceback")));
    ASSERT(json_is_array(json_object_get(doc, "children")));
    ASSERT(json_object_get(doc, "name") == NULL);
    json_decref(doc);
    free(text);

    const struct {
        const char *type, *want_type, *module, *msg;
        broker_status status;
    } cases[] = {
        {"TaskError", "TaskError", "workerd", "boom", BROKER_FAILURE},
        {"NotRegistered", "NotRegistered", "celery.exceptions", "x", BROKER_FAILURE},
        {"TimeLimitExceeded", "TimeLimitExceeded", "celery.exceptions", "x", BROKER_FAILURE},
        {"TypeError", "TypeError", "builtins", "x", BROKER_FAILURE},
        {"TaskExpired", "TaskRevokedError", "celery.exceptions", "expired", BROKER_REVOKED},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        broker_result f = {.id = "t-2",
                           .status = cases[i].status,
                           .error_type = cases[i].type,
                           .error_message = "x",
                           .finished_at = 1};
        if (strcmp(cases[i].type, "TaskError") == 0)
            f.error_message = "boom";
        text = broker_celery_result_encode(&f, NULL, NULL, false, NULL);
        doc = json_loads(text, 0, NULL);
        json_t *exc = json_object_get(doc, "result");
        ASSERT_STREQ(json_string_value(json_object_get(doc, "status")),
                     broker_status_name(cases[i].status));
        ASSERT_STREQ(json_string_value(json_object_get(exc, "exc_type")), cases[i].want_type);
        ASSERT_STREQ(json_string_value(json_object_get(exc, "exc_module")), cases[i].module);
        ASSERT_STREQ(json_string_value(json_array_get(json_object_get(exc, "exc_message"), 0)),
                     cases[i].msg);
        ASSERT(json_is_string(json_object_get(doc, "traceback")));
        json_decref(doc);
        free(text);
    }
    json_decref(value);
}

TEST(extended_results_name_the_task_and_queue) {
    char *raw = envelope("workerd.echo", "[[7],{},null]", "", "application/json");
    broker_celery_info info;
    broker_celery_error err;
    json_t *msg;
    ASSERT_EQ(translate(raw, NULL, &info, &msg, &err), 0);
    broker_msg m = {.args = json_object_get(msg, "args"), .kwargs = json_object_get(msg, "kwargs")};
    broker_result r = {.id = "t-1", .status = BROKER_SUCCESS, .worker = "w-1", .retries = 2};
    char *text = broker_celery_result_encode(&r, &info, &m, true, "=celery");
    json_t *doc = json_loads(text, 0, NULL);
    ASSERT_STREQ(json_string_value(json_object_get(doc, "name")), "workerd.echo");
    ASSERT_STREQ(json_string_value(json_object_get(doc, "queue")), "celery");
    ASSERT_STREQ(json_string_value(json_object_get(doc, "worker")), "w-1");
    ASSERT_EQ(json_integer_value(json_object_get(doc, "retries")), 2);
    ASSERT_EQ(json_integer_value(json_array_get(json_object_get(doc, "args"), 0)), 7);
    json_decref(doc);
    free(text);
    json_decref(msg);
    broker_celery_info_free(&info);
    free(raw);
}

TEST(kept_envelope_carries_eta_and_retries) {
    char *raw = envelope("workerd.echo", "[[],{},null]", "", "application/json");
    broker_celery_info info;
    broker_celery_error err;
    json_t *msg;
    ASSERT_EQ(translate(raw, NULL, &info, &msg, &err), 0);
    size_t len = 0;
    char *kept = broker_celery_encode_scheduled(&info, 1796378400.5, 2, &len);
    json_t *env = json_loads(kept, 0, NULL);
    json_t *h = json_object_get(env, "headers");
    ASSERT_STREQ(json_string_value(json_object_get(h, "eta")), "2026-12-04T10:00:00.500000+00:00");
    ASSERT_EQ(json_integer_value(json_object_get(h, "retries")), 2);
    ASSERT_STREQ(json_string_value(json_object_get(env, "body")),
                 json_string_value(json_object_get(info.envelope, "body")));
    json_decref(env);
    /* And it reads back as the same message, now due then. */
    broker_celery_info again;
    json_t *msg2;
    ASSERT_EQ(translate(kept, NULL, &again, &msg2, &err), 0);
    ASSERT(json_number_value(json_object_get(msg2, "eta")) == 1796378400.5);
    ASSERT_EQ(json_integer_value(json_object_get(msg2, "retries")), 2);
    json_decref(msg2);
    broker_celery_info_free(&again);
    free(kept);
    json_decref(msg);
    broker_celery_info_free(&info);
    free(raw);
}

/* The body of a published envelope, decoded. */
static json_t *body_of(const char *text) {
    json_t *env = json_loads(text, 0, NULL);
    char *wrapped = NULL;
    const char *b = json_string_value(json_object_get(env, "body"));
    /* Read it back through the translator: it is a Celery message like any other. */
    broker_celery_info info;
    broker_celery_error err;
    json_t *msg = NULL;
    ASSERT(b != NULL);
    ASSERT_EQ(translate(text, NULL, &info, &msg, &err), 0);
    json_t *out = json_pack(
        "{s:O,s:O,s:O,s:O}", "msg", msg, "embed", info.embed ? info.embed : json_null(), "headers",
        json_object_get(env, "headers"), "properties", json_object_get(env, "properties"));
    json_decref(msg);
    broker_celery_info_free(&info);
    json_decref(env);
    free(wrapped);
    return out;
}

/* The callback ack.lua publishes from a chord step's parts, with results (a JSON list) in
 * its body when it takes them. */
static char *chord_callback(json_t *ctl, const char *results) {
    const char *eh = json_string_value(json_object_get(ctl, "env_head"));
    const char *et = json_string_value(json_object_get(ctl, "env_tail"));
    const char *bh = json_string_value(json_object_get(ctl, "body_head"));
    const char *bt = json_string_value(json_object_get(ctl, "body_tail"));
    ASSERT(eh && et && bh && bt);
    bool with = json_is_true(json_object_get(ctl, "results"));
    char body[4096];
    snprintf(body, sizeof body, "%s%s%s", bh, with ? results : "", with ? bt : "");
    char *b = b64(body);
    char *out = malloc(strlen(eh) + strlen(b) + strlen(et) + 1);
    sprintf(out, "%s%s%s", eh, b, et);
    free(b);
    return out;
}

TEST(chord_member_counts_itself_and_carries_the_callback) {
    const char *body = "[[1],{},{\"callbacks\":null,\"errbacks\":null,\"chain\":null,"
                       "\"chord\":{\"task\":\"workerd.echo\",\"args\":[\"done\"],\"kwargs\":{},"
                       "\"options\":{\"task_id\":\"cb-9\",\"queue\":\"sums\"},"
                       "\"immutable\":false}}]";
    char *raw =
        envelope("workerd.echo", body, ",\"group\":\"g-1\",\"group_index\":2", "application/json");
    broker_celery_info info;
    broker_celery_error err;
    json_t *msg;
    ASSERT_EQ(translate(raw, NULL, &info, &msg, &err), 0);
    ASSERT_EQ(info.group_index, 2);
    json_t *result = json_pack("[I]", (json_int_t)1 << 60);
    broker_celery_follow *f = NULL;
    size_t n = 0;
    ASSERT_EQ(broker_celery_follow_up(&info, "t-1", true, result, NULL, "=celery", &f, &n), 0);
    ASSERT_EQ(n, 1);
    ASSERT_EQ(f[0].op, 'J');
    ASSERT_STREQ(f[0].key, "celery-taskset-meta-g-1");
    json_t *ctl = json_loads(f[0].text, 0, NULL);
    ASSERT_EQ(json_integer_value(json_object_get(ctl, "index")), 2);
    ASSERT_STREQ(json_string_value(json_object_get(ctl, "id")), "t-1");
    /* As Celery's backend encodes a member: [1, id, state, result], every digit kept. */
    ASSERT_STREQ(json_string_value(json_object_get(ctl, "member")),
                 "[1,\"t-1\",\"SUCCESS\",[1152921504606846976]]");
    ASSERT_STREQ(json_string_value(json_object_get(ctl, "queue")), "sums");
    ASSERT_STREQ(json_string_value(json_object_get(ctl, "cb_key")), "celery-task-meta-cb-9");
    /* The callback, given the ordered results, is a protocol 2 message taking them first. */
    char *cb = chord_callback(ctl, "[[1],[2]]");
    json_t *b = body_of(cb);
    json_t *m = json_object_get(b, "msg");
    ASSERT_STREQ(json_string_value(json_object_get(m, "id")), "cb-9");
    json_t *want = json_pack("[[[i],[i]],s]", 1, 2, "done");
    ASSERT(json_equal(json_object_get(m, "args"), want));
    json_decref(want);
    ASSERT_STREQ(json_string_value(json_object_get(json_object_get(b, "headers"), "parent_id")),
                 "t-1");
    json_decref(b);
    free(cb);
    json_decref(ctl);
    broker_celery_follow_free(f, n);

    /* A failed member counts too, with its exception as Celery's backend stores it. */
    const char *doc = "{\"status\":\"FAILURE\",\"result\":{\"exc_type\":\"TaskError\","
                      "\"exc_message\":[\"boom\"],\"exc_module\":\"workerd\"},\"task_id\":\"t-1\"}";
    ASSERT_EQ(broker_celery_follow_up(&info, "t-1", false, NULL, doc, "=celery", &f, &n), 0);
    ASSERT_EQ(n, 1);
    ctl = json_loads(f[0].text, 0, NULL);
    ASSERT_STREQ(json_string_value(json_object_get(ctl, "member")),
                 "[1,\"t-1\",\"FAILURE\",{\"exc_type\":\"TaskError\",\"exc_message\":[\"boom\"],"
                 "\"exc_module\":\"workerd\"}]");
    json_decref(ctl);
    broker_celery_follow_free(f, n);
    json_decref(result);
    json_decref(msg);
    broker_celery_info_free(&info);
    free(raw);

    /* group_index must be an integer. */
    raw = envelope("workerd.echo", "[[],{},null]", ",\"group_index\":\"2\"", "application/json");
    expect_refused(raw, "InvalidMessage", "wrong type");
    free(raw);
}

TEST(chain_link_and_link_error_publish_protocol_2_messages) {
    const char *embed =
        "{\"callbacks\":[{\"task\":\"workerd.echo\",\"args\":[9],\"kwargs\":{},\"options\":"
        "{\"task_id\":\"cb-1\"},\"immutable\":false}],"
        "\"errbacks\":[{\"task\":\"workerd.echo\",\"args\":[],\"kwargs\":{},\"options\":"
        "{\"task_id\":\"eb-1\",\"queue\":\"errors\"}}],"
        "\"chain\":[{\"task\":\"workerd.echo\",\"args\":[3],\"kwargs\":{},\"options\":{\"task_id\":"
        "\"c-3\"}},{\"task\":\"workerd.echo\",\"args\":[2],\"kwargs\":{},\"options\":{\"task_id\":"
        "\"c-2\",\"priority\":6},\"immutable\":true}],\"chord\":null}";
    char body[2048];
    snprintf(body, sizeof body, "[[1],{},%s]", embed);
    char *raw = envelope("workerd.echo", body, "", "application/json");
    broker_celery_info info;
    broker_celery_error err;
    json_t *msg;
    ASSERT_EQ(translate(raw, NULL, &info, &msg, &err), 0);
    json_t *result = json_pack("[i]", 1);
    broker_celery_follow *f = NULL;
    size_t n = 0;
    ASSERT_EQ(broker_celery_follow_up(&info, "t-1", true, result, NULL, "=celery", &f, &n), 0);
    ASSERT_EQ(n, 2);
    /* The link: result first, then its own args; the default queue. */
    ASSERT_EQ(f[0].op, 'L');
    ASSERT_STREQ(f[0].key, "celery");
    json_t *b = body_of(f[0].text);
    json_t *m = json_object_get(b, "msg");
    ASSERT_STREQ(json_string_value(json_object_get(m, "id")), "cb-1");
    json_t *want = json_pack("[[i],i]", 1, 9);
    ASSERT(json_equal(json_object_get(m, "args"), want));
    json_decref(want);
    ASSERT_STREQ(json_string_value(json_object_get(json_object_get(b, "headers"), "parent_id")),
                 "t-1");
    ASSERT_STREQ(json_string_value(json_object_get(json_object_get(b, "headers"), "root_id")),
                 "r-1");
    json_decref(b);
    /* The chain's next step is its last entry: immutable (no result passed), priority 6
     * (kombu's list for step 6), the rest of the chain in its embed. */
    ASSERT_EQ(f[1].op, 'L');
    ASSERT_STREQ(f[1].key, "celery\x06\x16"
                           "6");
    b = body_of(f[1].text);
    m = json_object_get(b, "msg");
    ASSERT_STREQ(json_string_value(json_object_get(m, "id")), "c-2");
    want = json_pack("[i]", 2);
    ASSERT(json_equal(json_object_get(m, "args"), want));
    json_decref(want);
    json_t *rest = json_object_get(json_object_get(b, "embed"), "chain");
    ASSERT_EQ(json_array_size(rest), 1);
    ASSERT_STREQ(json_string_value(json_object_get(json_array_get(rest, 0), "task")),
                 "workerd.echo");
    json_decref(b);
    broker_celery_follow_free(f, n);

    /* A failure: the errback (args: the failed id) on its own queue, and every later task
     * of the chain stored as failed. */
    const char *doc = "{\"status\":\"FAILURE\",\"result\":{\"exc_type\":\"TaskError\"},"
                      "\"task_id\":\"t-1\"}";
    ASSERT_EQ(broker_celery_follow_up(&info, "t-1", false, NULL, doc, "=celery", &f, &n), 0);
    ASSERT_EQ(n, 3);
    ASSERT_EQ(f[0].op, 'L');
    ASSERT_STREQ(f[0].key, "errors");
    b = body_of(f[0].text);
    want = json_pack("[s]", "t-1");
    ASSERT(json_equal(json_object_get(json_object_get(b, "msg"), "args"), want));
    json_decref(want);
    json_decref(b);
    for (size_t i = 1; i < 3; i++) {
        ASSERT_EQ(f[i].op, 'R');
        json_t *d = json_loads(f[i].text, 0, NULL);
        ASSERT_STREQ(json_string_value(json_object_get(d, "status")), "FAILURE");
        char key[64];
        snprintf(key, sizeof key, "celery-task-meta-%s",
                 json_string_value(json_object_get(d, "task_id")));
        ASSERT_STREQ(f[i].key, key);
        json_decref(d);
    }
    broker_celery_follow_free(f, n);
    json_decref(result);
    json_decref(msg);
    broker_celery_info_free(&info);
    free(raw);
}

TEST(celery_queue_names_and_keys) {
    broker_keys k;
    ASSERT_EQ(broker_keys_init(&k, NULL), 0);
    char buf[BROKER_KEY_MAX];
    ASSERT(broker_key_queue(&k, "=celery", buf) > 0);
    ASSERT_STREQ(buf, "celery");
    ASSERT(broker_key_queue(&k, "celery", buf) > 0);
    ASSERT_STREQ(buf, "workerd:queue:celery");
    ASSERT(broker_key_celery_queue("=celery", 0, buf) > 0);
    ASSERT_STREQ(buf, "celery");
    ASSERT(broker_key_celery_queue("=celery", 4, buf) > 0);
    ASSERT_STREQ(buf, "celery\x06\x16"
                      "3");
    ASSERT(broker_key_celery_queue("celery", 255, buf) > 0);
    ASSERT_STREQ(buf, "celery\x06\x16"
                      "9");
    ASSERT(broker_key_celery_result("abc", buf) > 0);
    ASSERT_STREQ(buf, "celery-task-meta-abc");
    /* A user's name may not take the mark; the mark alone names nothing. */
    ASSERT(broker_check_queue_name("=celery") != NULL);
    ASSERT(broker_check_queue_ref("=celery") == NULL);
    ASSERT(broker_check_queue_ref("=") != NULL);
    ASSERT(broker_check_queue_ref("==x") != NULL);
    ASSERT(broker_key_landing(&k, "w", "=celery", buf) > 0);
}
