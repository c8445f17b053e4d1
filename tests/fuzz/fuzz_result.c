/*
 * fuzz_result.c - libFuzzer target for the result and dead-letter encoders
 * (broker_result_encode, broker_dead_encode): whatever bytes a task or a producer hands
 * them, the output must be valid JSON that says exactly what went in.
 *
 * Input layout (so that seeds are easy to write by hand):
 *
 *   byte 0      status (low 6 bits % 6, so 5 is outside the enum and must encode
 *               "UNKNOWN"); bit 7 makes the id NULL, bit 6 the reason (refusal paths)
 *   byte 1      bit i set: optional string field i below is present (else NULL)
 *   bytes 2-3   the dead letter's max_message_bytes, little endian (0: the default)
 *   byte 4      retries (as a signed byte); bit 2 clear: the timestamps are one of four
 *               fixed pairs (low 2 bits); bit 2 set: the two doubles of bytes 5-20
 *   bytes 5-20  started_at and finished_at (the dead letter's time is finished_at)
 *   then        NUL-terminated strings, in order: id, task, error_type, error_message,
 *               worker, reason, queue, result (JSON text, parsed with jansson)
 *   the rest    the dead letter's raw message bytes (any bytes, NULs included)
 *
 * Missing strings at the end of a short input are empty. Invariants checked: both
 * encoders return text (never NULL for a non-NULL id / reason), that text parses back
 * with json_loads, every string field decodes to the input when the input is valid UTF-8
 * and to an independently computed U+FFFD replacement when it is not, the result value
 * round-trips (json_equal), and the dead letter's message_bytes, truncated and message
 * agree with the raw bytes and the cut. broker_result_encode writes its text by hand (for
 * speed); it must mean exactly what json_dumps(broker_result_json(r)) means (json_equal
 * of the two decoded documents, reals compared exactly), including refusing the same
 * inputs (timestamps that are no finite number of microseconds; the hand-written text
 * once said "inf.0" for 1e303: corpus/result/regress_huge_timestamp.bin).
 */
#include "broker_result.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_result: invariant broken at %s:%d: %s\n", __FILE__, __LINE__,    \
                    #cond);                                                                        \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define HEADER 21

enum { F_ID, F_TASK, F_ERROR_TYPE, F_ERROR_MESSAGE, F_WORKER, F_REASON, F_QUEUE, F_RESULT, NF };

/* Written from the Unicode definition (Table 3-7, well-formed byte sequences), apart from
 * the encoder's own checker on purpose: length of the well-formed sequence at p, or 0. */
static size_t wellformed(const unsigned char *p, size_t n) {
    unsigned char b0 = p[0];
    unsigned char lo = 0x80, hi = 0xbf;
    size_t len;
    if (b0 <= 0x7f)
        return 1;
    if (b0 >= 0xc2 && b0 <= 0xdf) {
        len = 2;
    } else if (b0 >= 0xe0 && b0 <= 0xef) {
        len = 3;
        if (b0 == 0xe0)
            lo = 0xa0;
        if (b0 == 0xed)
            hi = 0x9f;
    } else if (b0 >= 0xf0 && b0 <= 0xf4) {
        len = 4;
        if (b0 == 0xf0)
            lo = 0x90;
        if (b0 == 0xf4)
            hi = 0x8f;
    } else {
        return 0;
    }
    if (n < len || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (p[i] < 0x80 || p[i] > 0xbf)
            return 0;
    return len;
}

static bool valid_utf8(const char *s, size_t n) {
    size_t i = 0, k;
    while (i < n && (k = wellformed((const unsigned char *)s + i, n - i)) != 0)
        i += k;
    return i == n;
}

/* The expected text of a string field: s itself when valid, else each byte that does not
 * start a well-formed sequence replaced by U+FFFD. Writes to out (3n+1 bytes). */
static size_t expected_text(const char *s, size_t n, char *out) {
    size_t i = 0, o = 0;
    while (i < n) {
        size_t k = wellformed((const unsigned char *)s + i, n - i);
        if (k == 0) {
            memcpy(out + o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
        } else {
            memcpy(out + o, s + i, k);
            o += k;
            i += k;
        }
    }
    return o;
}

/* Checks that obj[key] is the string the encoder should have made of s (absent when s is
 * NULL). */
static void check_text(json_t *obj, const char *key, const char *s, size_t n) {
    json_t *v = json_object_get(obj, key);
    if (s == NULL) {
        CHECK(v == NULL);
        return;
    }
    CHECK(json_is_string(v));
    if (valid_utf8(s, n)) {
        CHECK(json_string_length(v) == n && memcmp(json_string_value(v), s, n) == 0);
        return;
    }
    char *want = malloc(3 * n + 1);
    CHECK(want != NULL);
    size_t wn = expected_text(s, n, want);
    CHECK(json_string_length(v) == wn && memcmp(json_string_value(v), want, wn) == 0);
    free(want);
}

static json_t *decode(char *text) {
    CHECK(text != NULL);
    json_error_t e;
    json_t *j = json_loads(text, JSON_ALLOW_NUL, &e);
    if (j == NULL)
        fprintf(stderr, "undecodable output (%s): %s\n", e.text, text);
    CHECK(json_is_object(j));
    free(text);
    return j;
}

static void check_result(const char **f, broker_status status, int retries, double started,
                         double finished) {
    json_t *value = NULL;
    if (f[F_RESULT] != NULL)
        value = json_loads(f[F_RESULT], JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    broker_result r = {.id = f[F_ID],
                       .task = f[F_TASK],
                       .status = status,
                       .result = value,
                       .error_type = f[F_ERROR_TYPE],
                       .error_message = f[F_ERROR_MESSAGE],
                       .retries = retries,
                       .worker = f[F_WORKER],
                       .started_at = started,
                       .finished_at = finished};
    if (r.id == NULL) {
        CHECK(broker_result_encode(&r) == NULL);
        json_decref(value);
        return;
    }
    char *text = broker_result_encode(&r);
    json_t *built = broker_result_json(&r);
    /* seconds() and json_real refuse a timestamp that is no finite number of microseconds
     * (a clock never gives one); both encoders must refuse it alike, never write "inf". */
    bool refused =
        (started > 0 && !isfinite(started * 1e6)) || (finished > 0 && !isfinite(finished * 1e6));
    CHECK((text == NULL) == refused && (built == NULL) == refused);
    if (refused) {
        json_decref(value);
        return;
    }
    CHECK(built != NULL);
    json_t *j = decode(text);
    if (!json_equal(j, built)) {
        char *want = json_dumps(built, JSON_COMPACT | JSON_ENCODE_ANY);
        fprintf(stderr, "hand-written result differs from jansson's:\nwant %s\n", want);
        free(want);
        CHECK(!"broker_result_encode means what broker_result_json says");
    }
    json_decref(built);
    check_text(j, "id", r.id, strlen(r.id));
    check_text(j, "task", r.task, r.task ? strlen(r.task) : 0);
    check_text(j, "worker", r.worker, r.worker ? strlen(r.worker) : 0);
    CHECK(strcmp(json_string_value(json_object_get(j, "status")), broker_status_name(status)) == 0);
    json_t *res = json_object_get(j, "result");
    if (status == BROKER_SUCCESS)
        CHECK(res != NULL && json_equal(res, value != NULL ? value : json_null()));
    else
        CHECK(res == NULL);
    json_t *err = json_object_get(j, "error");
    if (r.error_type != NULL || r.error_message != NULL) {
        CHECK(json_is_object(err));
        check_text(err, "type", r.error_type, r.error_type ? strlen(r.error_type) : 0);
        check_text(err, "message", r.error_message, r.error_message ? strlen(r.error_message) : 0);
    } else {
        CHECK(err == NULL);
    }
    CHECK(json_integer_value(json_object_get(j, "retries")) == retries);
    CHECK((json_object_get(j, "started_at") != NULL) == (started > 0));
    CHECK((json_object_get(j, "finished_at") != NULL) == (finished > 0));
    json_t *runtime = json_object_get(j, "runtime");
    CHECK((runtime != NULL) == (started > 0 && finished > 0));
    CHECK(runtime == NULL || json_real_value(runtime) >= 0);
    json_decref(j);
    json_decref(value);
}

static void check_dead(const char **f, const char *raw, size_t raw_len, size_t max, double time) {
    broker_dead d = {.raw = raw,
                     .raw_len = raw_len,
                     .reason = f[F_REASON],
                     .worker = f[F_WORKER],
                     .time = time,
                     .id = f[F_ID],
                     .queue = f[F_QUEUE],
                     .max_message_bytes = max};
    if (d.reason == NULL) {
        CHECK(broker_dead_encode(&d) == NULL);
        return;
    }
    char *text = broker_dead_encode(&d);
    if (text == NULL) {
        /* Only a time that is no number of microseconds (json_real refuses it) may fail. */
        CHECK(!isfinite(time * 1e6));
        return;
    }
    json_t *j = decode(text);
    size_t cap = max ? max : BROKER_DEAD_MESSAGE_MAX_DEFAULT;
    CHECK(json_integer_value(json_object_get(j, "message_bytes")) == (json_int_t)raw_len);
    CHECK(json_is_boolean(json_object_get(j, "truncated")));
    CHECK(json_is_true(json_object_get(j, "truncated")) == (raw_len > cap));

    /* The cut: all of raw when it fits; otherwise at most cap bytes, at least cap - 3, and
     * never inside a UTF-8 character of valid text. */
    size_t cut = raw_len;
    if (raw_len > cap) {
        cut = cap;
        while (cut > 0 && cap - cut < 3 && ((unsigned char)raw[cut] & 0xc0) == 0x80)
            cut--;
        CHECK(cut + 3 >= cap);
    }
    check_text(j, "message", raw, cut);
    if (valid_utf8(raw, raw_len) && cut < raw_len)
        CHECK(((unsigned char)raw[cut] & 0xc0) != 0x80);
    check_text(j, "reason", d.reason, strlen(d.reason));
    check_text(j, "worker", d.worker, d.worker ? strlen(d.worker) : 0);
    check_text(j, "id", d.id, d.id ? strlen(d.id) : 0);
    check_text(j, "queue", d.queue, d.queue ? strlen(d.queue) : 0);
    CHECK(json_is_number(json_object_get(j, "time")));
    json_decref(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const double stamps[4][2] = {
        {0, 0}, {1700000000.25, 1700000000.5}, {1700000001.0, 1700000000.0}, {1e-7, 4e9}};
    if (size < HEADER)
        return 0;
    broker_status status = (broker_status)((data[0] & 0x3f) % 6);
    unsigned present = data[1];
    size_t max = (size_t)data[2] | (size_t)data[3] << 8;
    int retries = (int8_t)data[4];
    double ts[2] = {stamps[data[4] & 3][0], stamps[data[4] & 3][1]};
    if (data[4] & 4)
        memcpy(ts, data + 5, sizeof ts);

    /* Copy so the strings can be NUL-terminated in place; the rest is the raw message. */
    char *buf = malloc(size + 1);
    CHECK(buf != NULL);
    memcpy(buf, data, size);
    buf[size] = '\0';
    const char *f[NF];
    size_t at = HEADER;
    for (int i = 0; i < NF; i++) {
        const char *s = buf + at;
        size_t n = strnlen(s, size - at);
        at = at + n < size ? at + n + 1 : size;
        f[i] = (present >> i & 1) || i == F_ID || i == F_REASON ? s : NULL;
    }
    /* The required id and reason are NULL only when byte 0 says so (the refusal paths). */
    if (data[0] & 0x80)
        f[F_ID] = NULL;
    if (data[0] & 0x40)
        f[F_REASON] = NULL;

    check_result(f, status, retries, ts[0], ts[1]);
    check_dead(f, buf + at, size - at, max, ts[1]);
    free(buf);
    return 0;
}
