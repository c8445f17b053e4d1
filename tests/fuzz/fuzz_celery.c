/*
 * fuzz_celery.c - libFuzzer target for the Celery envelope reader (broker_celery_translate),
 * which reads what any Celery producer, or anyone else, LPUSHed onto a Celery queue, and
 * for what the worker then builds from an accepted envelope: the result documents, the
 * copy kept in the scheduled set, and the messages its callbacks, errbacks and chain
 * publish (their signatures come from the same untrusted body).
 *
 * Input: the envelope's JSON text; or, when the input holds a NUL byte, the envelope before
 * it and the body's plain JSON after it ([args, kwargs, embed]), which the target base64-
 * encodes into the envelope's "body" (when the envelope is an object), so that mutations
 * reach the body and the signatures in its embed instead of breaking the base64.
 *
 * Invariants (a broken one aborts; ASan and UBSan catch memory errors and undefined
 * behaviour):
 *   refused   rc -EINVAL, a non-empty reason, one of the three exception types, *info
 *             empty; the id reported is exactly headers.id, and present whenever
 *             headers.id is an acceptable id (the FAILURE must land where the producer
 *             waits).
 *   accepted  the translated text is a JSON object whose "id" is exactly headers.id and
 *             whose "task" is the mapped name; broker_msg_parse either accepts it under
 *             the same id or rejects it reporting that id.
 *   after     the result documents (SUCCESS, FAILURE, extended) are JSON objects for that
 *             task_id; the scheduled copy reads back as the same message due at the time
 *             given (to the microsecond) with the retries given; every message a follow-up
 *             publishes reads back as a protocol 2 message (refused at most as
 *             NotRegistered), a chord's callback too once given its list of results,
 *             every result it stores is a document for its key's id.
 */
#include "broker_celery.h"
#include "broker_keys.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NOW 1700000000.0

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_celery: invariant broken at %s:%d: %s\n", __FILE__, __LINE__,    \
                    #cond);                                                                        \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static char *const map_entries[] = {"proj.tasks.fetch=http.get", "proj.echo=echo", "empty="};
static const broker_celery_map map = {map_entries, 3};

static const char b64chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static char *b64(const uint8_t *s, size_t len) {
    char *out = malloc(len / 3 * 4 + 8);
    size_t n = 0;
    CHECK(out != NULL);
    for (size_t i = 0; i < len; i += 3) {
        unsigned v = (unsigned)s[i] << 16;
        if (i + 1 < len)
            v |= (unsigned)s[i + 1] << 8;
        if (i + 2 < len)
            v |= s[i + 2];
        out[n++] = b64chars[v >> 18 & 63];
        out[n++] = b64chars[v >> 12 & 63];
        out[n++] = i + 1 < len ? b64chars[v >> 6 & 63] : '=';
        out[n++] = i + 2 < len ? b64chars[v & 63] : '=';
    }
    out[n] = '\0';
    return out;
}

/* An id the reader must report: a string broker_check_task_id accepts, without a NUL. */
static const char *acceptable_id(json_t *env) {
    json_t *headers = json_object_get(env, "headers");
    json_t *id = json_is_object(headers) ? json_object_get(headers, "id") : NULL;
    if (!json_is_string(id) || strlen(json_string_value(id)) != json_string_length(id) ||
        broker_check_task_id(json_string_value(id)) != NULL)
        return NULL;
    return json_string_value(id);
}

static bool is_exc_type(const char *t) {
    return t && (strcmp(t, "InvalidMessage") == 0 || strcmp(t, "ContentDisallowed") == 0 ||
                 strcmp(t, "NotRegistered") == 0);
}

static void check_result_doc(char *text, const char *id, const char *status) {
    CHECK(text != NULL);
    json_t *doc = json_loads(text, 0, NULL);
    CHECK(json_is_object(doc));
    CHECK(strcmp(json_string_value(json_object_get(doc, "task_id")), id) == 0);
    CHECK(strcmp(json_string_value(json_object_get(doc, "status")), status) == 0);
    json_decref(doc);
    free(text);
}

/* Re-reads a message this side wrote: it must be a protocol 2 message. */
static void check_written(const char *text, size_t len, broker_celery_info *info) {
    broker_limits lim;
    broker_limits_default(&lim);
    lim.max_message_bytes = len + 1;
    char *out = NULL;
    size_t outlen = 0;
    broker_celery_error err;
    int rc = broker_celery_translate(text, len, &lim, &map, info, &out, &outlen, &err);
    if (rc != 0 && (rc != -EINVAL || strcmp(err.exc_type, "NotRegistered") != 0))
        fprintf(stderr, "written message refused: %s\n%.*s\n", rc == -EINVAL ? err.reason : "?",
                (int)len, text);
    CHECK(rc == 0 || (rc == -EINVAL && strcmp(err.exc_type, "NotRegistered") == 0));
    free(out);
}

static void check_follow_up(const broker_celery_info *info, const broker_msg *m, bool success) {
    broker_result r = {.id = m->id,
                       .status = success ? BROKER_SUCCESS : BROKER_FAILURE,
                       .result = json_array_get(m->args, 0),
                       .error_type = "TaskError",
                       .error_message = "boom",
                       .worker = "w",
                       .finished_at = NOW};
    char *doc = success ? NULL : broker_celery_result_encode(&r, info, m, false, "=celery");
    broker_celery_follow *f = NULL;
    size_t n = 0;
    CHECK(broker_celery_follow_up(info, m->id, success, r.result, doc, "=celery", &f, &n) == 0);
    for (size_t i = 0; i < n; i++) {
        CHECK(f[i].key != NULL && f[i].text != NULL);
        if (f[i].op == 'L') {
            broker_celery_info again;
            check_written(f[i].text, strlen(f[i].text), &again);
            broker_celery_info_free(&again);
        } else if (f[i].op == 'J') {
            /* A chord member's step: the callback ack.lua would publish, with a list of
             * results in its body, must read back as a protocol 2 message. */
            json_t *c = json_loads(f[i].text, 0, NULL);
            CHECK(json_is_object(c));
            const char *parts[4] = {json_string_value(json_object_get(c, "env_head")),
                                    json_string_value(json_object_get(c, "env_tail")),
                                    json_string_value(json_object_get(c, "body_head")),
                                    json_string_value(json_object_get(c, "body_tail"))};
            for (int k = 0; k < 4; k++)
                CHECK(parts[k] != NULL);
            bool results = json_is_true(json_object_get(c, "results"));
            size_t blen = strlen(parts[2]) + strlen(parts[3]) + 16;
            char *body = malloc(blen);
            CHECK(body != NULL);
            snprintf(body, blen, "%s%s%s", parts[2], results ? "[1,\"x\"]" : "",
                     results ? parts[3] : "");
            char *b = b64((const uint8_t *)body, strlen(body));
            size_t elen = strlen(parts[0]) + strlen(b) + strlen(parts[1]) + 1;
            char *env = malloc(elen);
            CHECK(env != NULL);
            snprintf(env, elen, "%s%s%s", parts[0], b, parts[1]);
            broker_celery_info again;
            check_written(env, strlen(env), &again);
            broker_celery_info_free(&again);
            free(env);
            free(b);
            free(body);
            json_decref(c);
        } else {
            CHECK(f[i].op == 'R');
            json_t *d = json_loads(f[i].text, 0, NULL);
            CHECK(json_is_object(d));
            const char *tid = json_string_value(json_object_get(d, "task_id"));
            char key[BROKER_KEY_MAX];
            CHECK(tid != NULL && broker_key_celery_result(tid, key) >= 0);
            CHECK(strcmp(key, f[i].key) == 0);
            json_decref(d);
        }
    }
    broker_celery_follow_free(f, n);
    free(doc);
}

static void check_accepted(broker_celery_info *info, const broker_msg *m) {
    broker_result r = {.id = m->id,
                       .status = BROKER_SUCCESS,
                       .result = m->args,
                       .retries = m->retries,
                       .worker = "w",
                       .finished_at = NOW};
    check_result_doc(broker_celery_result_encode(&r, info, m, true, "=celery"), m->id, "SUCCESS");
    r.status = BROKER_FAILURE;
    r.error_type = "TimeLimitExceeded";
    r.error_message = "x";
    check_result_doc(broker_celery_result_encode(&r, info, m, false, "=celery"), m->id, "FAILURE");

    /* The copy kept until due: as the worker keeps it for its eta, or for a retry. */
    double due = m->eta > 0 ? m->eta : NOW + 1.5;
    int retries = m->retries < 1000000 ? m->retries + 1 : m->retries;
    size_t len = 0;
    char *text = broker_celery_encode_scheduled(info, due, retries, &len);
    CHECK(text != NULL && len == strlen(text));
    broker_celery_info again;
    broker_celery_error err;
    broker_limits lim;
    broker_limits_default(&lim);
    lim.max_message_bytes = len + 1;
    char *out = NULL;
    size_t outlen = 0;
    int rc = broker_celery_translate(text, len, &lim, &map, &again, &out, &outlen, &err);
    if (rc != 0)
        fprintf(stderr, "scheduled copy refused: %s\n%s\n", err.reason, text);
    CHECK(rc == 0);
    json_t *msg = json_loadb(out, outlen, 0, NULL);
    CHECK(strcmp(json_string_value(json_object_get(msg, "id")), m->id) == 0);
    CHECK(json_integer_value(json_object_get(msg, "retries")) == retries);
    double eta = json_number_value(json_object_get(msg, "eta"));
    CHECK(fabs(eta - due) < 2e-6);
    json_decref(msg);
    free(out);
    broker_celery_info_free(&again);
    free(text);

    check_follow_up(info, m, true);
    check_follow_up(info, m, false);
}

static void run(const char *raw, size_t len, const broker_limits *lim, bool deep) {
    json_t *env = json_loadb(raw, len, 0, NULL);
    const char *want_id = json_is_object(env) ? acceptable_id(env) : NULL;
    size_t max =
        lim && lim->max_message_bytes ? lim->max_message_bytes : BROKER_MAX_MESSAGE_BYTES_DEFAULT;
    broker_celery_info info;
    broker_celery_error err;
    char *out = NULL;
    size_t outlen = 0;
    int rc = broker_celery_translate(raw, len, lim, &map, &info, &out, &outlen, &err);
    CHECK(rc == 0 || rc == -EINVAL);
    if (rc == -EINVAL) {
        CHECK(out == NULL && info.envelope == NULL && info.embed == NULL && info.name == NULL);
        CHECK(memchr(err.reason, '\0', sizeof err.reason) != NULL && err.reason[0] != '\0');
        CHECK(is_exc_type(err.exc_type));
        CHECK(memchr(err.id, '\0', sizeof err.id) != NULL);
        if (err.has_id)
            CHECK(want_id != NULL && strcmp(err.id, want_id) == 0);
        else if (len <= max)
            CHECK(want_id == NULL);
        json_decref(env);
        return;
    }
    CHECK(want_id != NULL && info.envelope != NULL && info.name != NULL);
    json_t *msg = json_loadb(out, outlen, 0, NULL);
    CHECK(json_is_object(msg) && strlen(out) == outlen);
    const char *tid = json_string_value(json_object_get(msg, "id"));
    CHECK(tid != NULL && strcmp(tid, want_id) == 0);
    CHECK(json_string_value(json_object_get(msg, "task")) != NULL);
    json_t *headers = json_object_get(env, "headers");
    CHECK(strcmp(info.name, json_string_value(json_object_get(headers, "task"))) == 0);
    CHECK(json_string_length(json_object_get(headers, "task")) == strlen(info.name));
    json_decref(msg);

    broker_msg m;
    broker_msg_error perr;
    rc = broker_msg_parse(out, outlen, lim, NOW, &m, &perr);
    if (rc == 0) {
        CHECK(strcmp(m.id, want_id) == 0);
        if (deep)
            check_accepted(&info, &m);
        broker_msg_free(&m);
    } else {
        CHECK(rc == -EINVAL);
        if (!perr.has_id || strcmp(perr.id, want_id) != 0)
            fprintf(stderr, "translated message rejected without its id: %s\n%s\n", perr.reason,
                    out);
        CHECK(perr.has_id && strcmp(perr.id, want_id) == 0);
    }
    free(out);
    broker_celery_info_free(&info);
    json_decref(env);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    broker_limits tight = {.max_message_bytes = 2048,
                           .max_depth = 4,
                           .max_args = 2,
                           .max_kwargs = 2,
                           .max_task_bytes = 8};
    const uint8_t *nul = memchr(data, '\0', size);
    if (nul == NULL) {
        run((const char *)data, size, NULL, true);
        run((const char *)data, size, &tight, false);
        return 0;
    }
    size_t elen = (size_t)(nul - data);
    json_t *env = json_loadb((const char *)data, elen, 0, NULL);
    if (json_is_object(env)) {
        char *body = b64(nul + 1, size - elen - 1);
        json_object_set_new(env, "body", json_string(body));
        free(body);
        char *text = json_dumps(env, JSON_COMPACT);
        if (text) {
            run(text, strlen(text), NULL, true);
            run(text, strlen(text), &tight, false);
            free(text);
        }
    }
    json_decref(env);
    return 0;
}
