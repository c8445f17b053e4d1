/*
 * fuzz_msg.c - libFuzzer target for the task-message parser (broker_msg_parse), the one
 * function that reads bytes straight from a producer.
 *
 * Every input is parsed four ways, each with its own invariants:
 *
 *   default limits  what a worker runs with. On success the message must be within every
 *                   documented limit, and its root, re-encoded (as a retry re-encodes it),
 *                   must parse again to the same message: same id, task, queue, counters
 *                   and times. On rejection the reason is a non-empty sentence and the
 *                   msg struct owns nothing.
 *   tight limits    small caps on every field, so that the limit checks (and the gaps
 *                   between the depth scan and the real nesting) are reached by short
 *                   inputs. An accepted message's real nesting must be within max_depth,
 *                   and it too must survive re-encoding under the same limits (an id cap
 *                   below a generated id's 36 bytes once broke that: fixed by raising the
 *                   cap to 36; seed corpus/msg/regress_generated_id_tight_limits.json).
 *   salvage         max_message_bytes = 1 rejects everything before parsing, so the id
 *                   always comes from salvage_id's lexer. Differential check: when jansson
 *                   itself reads the text as an object (and the text is within the 64 KiB
 *                   salvage window), the salvaged id must be the object's "id" exactly
 *                   (present and acceptable) or absent (otherwise).
 *   jansson oracle  when the default-limit parse rejects a text that jansson reads as an
 *                   object, for a reason other than the id itself, the id in the error
 *                   must again be the object's id.
 *
 * A broken invariant aborts (libFuzzer records the input as a crash). Memory errors and
 * undefined behaviour are caught by ASan and UBSan, which this target is built with.
 */
#include "broker_msg.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NOW 1700000000.0
#define SALVAGE_WINDOW (64 * 1024)

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_msg: invariant broken at %s:%d: %s\n", __FILE__, __LINE__,       \
                    #cond);                                                                        \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* Nesting depth of a parsed value: a scalar is 0, [] is 1. jansson caps its own parser at
 * 2048 levels, so the recursion here is bounded. */
static int depth_of(json_t *v) {
    int max = 0;
    if (json_is_array(v)) {
        size_t i;
        json_t *item;
        json_array_foreach(v, i, item) {
            int d = depth_of(item);
            max = d > max ? d : max;
        }
        return max + 1;
    }
    if (json_is_object(v)) {
        const char *k;
        json_t *item;
        json_object_foreach(v, k, item) {
            int d = depth_of(item);
            max = d > max ? d : max;
        }
        return max + 1;
    }
    return 0;
}

/* Whether an id read from an object is one the parser would report: the rules of
 * broker_msg.h ("id": non-empty string, at most max_id_bytes, no NUL). */
static bool acceptable_id(json_t *id, size_t max_id_bytes) {
    return json_is_string(id) && json_string_length(id) > 0 &&
           json_string_length(id) <= max_id_bytes &&
           strlen(json_string_value(id)) == json_string_length(id);
}

/* The error id must be exactly the object's id when it is acceptable, and absent when it
 * is not (or when the object has no id). */
static void check_error_id(const broker_msg_error *err, json_t *obj, size_t max_id_bytes) {
    json_t *id = json_object_get(obj, "id");
    if (acceptable_id(id, max_id_bytes)) {
        CHECK(err->has_id);
        CHECK(strcmp(err->id, json_string_value(id)) == 0);
    } else {
        CHECK(!err->has_id);
    }
}

static void check_rejected(int rc, const broker_msg *msg, const broker_msg_error *err,
                           size_t max_id_bytes) {
    CHECK(rc == -EINVAL);
    CHECK(msg->root == NULL && msg->id == NULL && msg->task == NULL && msg->queue == NULL);
    CHECK(memchr(err->reason, '\0', sizeof err->reason) != NULL);
    CHECK(err->reason[0] != '\0');
    CHECK(memchr(err->id, '\0', sizeof err->id) != NULL);
    if (err->has_id)
        CHECK(strlen(err->id) >= 1 && strlen(err->id) <= max_id_bytes);
    else
        CHECK(err->id[0] == '\0');
}

/* The id cap broker_msg.h documents for a limits struct: never below the length of a
 * generated id, never above BROKER_ID_MAX. */
static size_t id_cap(const broker_limits *lim) {
    size_t cap = lim->max_id_bytes ? lim->max_id_bytes : BROKER_ID_MAX;
    cap = cap > BROKER_ID_MAX ? BROKER_ID_MAX : cap;
    return cap < BROKER_GENERATED_ID_BYTES ? BROKER_GENERATED_ID_BYTES : cap;
}

/* Everything broker_msg.h promises about an accepted message. */
static void check_accepted(const broker_msg *m, const broker_limits *lim) {
    CHECK(m->root != NULL && json_is_object(m->root));
    CHECK(m->id != NULL && m->task != NULL);
    CHECK(strlen(m->id) >= 1 && strlen(m->id) <= id_cap(lim));
    if (m->id_generated)
        CHECK(strlen(m->id) == BROKER_GENERATED_ID_BYTES);
    CHECK(strcmp(json_string_value(json_object_get(m->root, "id")), m->id) == 0);
    CHECK(strlen(m->task) >= 1 && strlen(m->task) <= lim->max_task_bytes);
    CHECK(json_string_length(json_object_get(m->root, "task")) == strlen(m->task));
    if (m->queue != NULL)
        CHECK(broker_check_queue_name(m->queue) == NULL);
    CHECK(json_is_array(m->args) && json_array_size(m->args) <= lim->max_args);
    CHECK(json_object_get(m->root, "args") == m->args);
    CHECK(json_is_object(m->kwargs) && json_object_size(m->kwargs) <= lim->max_kwargs);
    CHECK(json_object_get(m->root, "kwargs") == m->kwargs);
    CHECK(m->retries >= 0 && m->max_retries >= 0 && m->redelivered >= 0);
    CHECK(m->countdown >= 0 && m->eta >= 0 && m->expires >= 0);
    CHECK(m->time_limit >= 0 && m->soft_time_limit >= 0);
    if (m->eta == 0)
        CHECK(m->countdown == 0);
}

/* Re-encodes an accepted message and parses it again: a retry or a move from the
 * scheduled set re-encodes, and must not change what the message means. The size and
 * depth limits are relaxed (the defaults added [] and {} and a generated id; reals may
 * print longer), the others kept. */
static void check_round_trip(const broker_msg *m, const broker_limits *lim) {
    char *text = json_dumps(m->root, JSON_COMPACT);
    CHECK(text != NULL);
    broker_limits relaxed = *lim;
    relaxed.max_message_bytes = strlen(text) + 1;
    relaxed.max_depth = lim->max_depth > 2 ? lim->max_depth : 2;
    broker_msg again;
    broker_msg_error err;
    int rc = broker_msg_parse(text, strlen(text), &relaxed, NOW, &again, &err);
    if (rc != 0)
        fprintf(stderr, "re-encoded message rejected: %s\n%s\n", err.reason, text);
    CHECK(rc == 0);
    CHECK(strcmp(again.id, m->id) == 0 && !again.id_generated);
    CHECK(strcmp(again.task, m->task) == 0);
    CHECK((again.queue == NULL) == (m->queue == NULL));
    CHECK(m->queue == NULL || strcmp(again.queue, m->queue) == 0);
    CHECK(again.retries == m->retries && again.max_retries == m->max_retries);
    CHECK(again.redelivered == m->redelivered);
    CHECK(again.countdown == m->countdown && again.eta == m->eta);
    CHECK(again.expires == m->expires && again.time_limit == m->time_limit);
    CHECK(again.soft_time_limit == m->soft_time_limit);
    CHECK(again.ignore_result == m->ignore_result);
    CHECK(json_equal(again.root, m->root));
    broker_msg_free(&again);
    free(text);

    /* The copy kept in the scheduled set: the same message, due at the eta given, with
     * the retries given and every relative time made absolute, whenever it is read. */
    size_t len = 0;
    double eta = NOW + 1.5;
    int retries = m->retries < INT_MAX ? m->retries + 1 : m->retries;
    text = broker_msg_encode_scheduled(m, eta, retries, &len);
    CHECK(text != NULL && len == strlen(text));
    relaxed.max_message_bytes = len + 1;
    rc = broker_msg_parse(text, len, &relaxed, NOW + 100, &again, &err);
    if (rc != 0)
        fprintf(stderr, "scheduled copy rejected: %s\n%s\n", err.reason, text);
    CHECK(rc == 0);
    CHECK(strcmp(again.id, m->id) == 0 && strcmp(again.task, m->task) == 0);
    CHECK(again.eta == eta && again.countdown == 0 && again.expires == m->expires);
    CHECK(again.retries == retries);
    CHECK(again.max_retries == m->max_retries && again.retry_jitter == m->retry_jitter);
    CHECK(again.retry_backoff == m->retry_backoff);
    CHECK(again.retry_backoff_max == m->retry_backoff_max);
    broker_msg_free(&again);
    free(text);
}

/* What jansson alone makes of the text: an object (new reference) or NULL. */
static json_t *jansson_object(const char *raw, size_t len) {
    json_t *v = json_loadb(raw, len, JSON_DECODE_ANY, NULL);
    if (v != NULL && !json_is_object(v)) {
        json_decref(v);
        v = NULL;
    }
    return v;
}

static void run_default(const char *raw, size_t len, json_t *obj) {
    broker_limits lim;
    broker_limits_default(&lim);
    broker_msg m;
    broker_msg_error err;
    int rc = broker_msg_parse(raw, len, NULL, NOW, &m, &err);
    if (rc == 0) {
        check_accepted(&m, &lim);
        check_round_trip(&m, &lim);
        broker_msg_free(&m);
        /* A zeroed msg is fine to free again. */
        broker_msg_free(&m);
        return;
    }
    check_rejected(rc, &m, &err, lim.max_id_bytes);
    /* A text jansson reads as an object and that is rejected for a field other than the
     * id itself (the id check reports no id by design) must report the object's id. */
    if (obj != NULL && strncmp(err.reason, "field \"id\"", 10) != 0 && len <= SALVAGE_WINDOW)
        check_error_id(&err, obj, lim.max_id_bytes);
}

static void run_tight(const char *raw, size_t len) {
    broker_limits lim = {.max_message_bytes = 4096,
                         .max_depth = 3,
                         .max_args = 2,
                         .max_kwargs = 2,
                         .max_id_bytes = 8,
                         .max_task_bytes = 8};
    broker_msg m;
    broker_msg_error err;
    int rc = broker_msg_parse(raw, len, &lim, NOW, &m, &err);
    if (rc == 0) {
        check_accepted(&m, &lim);
        /* The depth scan ran on the raw text; the parsed tree must agree with it. The
         * defaults added by the parser sit at level 2. */
        CHECK(depth_of(m.root) <= (lim.max_depth > 2 ? lim.max_depth : 2));
        check_round_trip(&m, &lim);
        broker_msg_free(&m);
        return;
    }
    check_rejected(rc, &m, &err, id_cap(&lim));
}

static void run_salvage(const char *raw, size_t len, json_t *obj) {
    broker_limits lim = {.max_message_bytes = 1};
    broker_msg m;
    broker_msg_error err;
    if (len <= 1)
        return;
    int rc = broker_msg_parse(raw, len, &lim, NOW, &m, &err);
    check_rejected(rc, &m, &err, BROKER_ID_MAX);
    CHECK(strncmp(err.reason, "message of", 10) == 0);
    if (obj != NULL && len <= SALVAGE_WINDOW)
        check_error_id(&err, obj, BROKER_ID_MAX);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *raw = (const char *)data;
    json_t *obj = jansson_object(raw, size);
    run_default(raw, size, obj);
    run_tight(raw, size);
    run_salvage(raw, size, obj);
    json_decref(obj);
    return 0;
}
