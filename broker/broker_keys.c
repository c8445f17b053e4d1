/*
 * broker_keys.c - Redis key names from a prefix, and the checks on the names put in them.
 *
 * Keys are formatted with snprintf into a caller's BROKER_KEY_MAX buffer. The limits on
 * every part (broker_keys.h) guarantee that the buffer is large enough, so truncation is
 * impossible for validated parts; it is still checked, in every build (GREEN_CHECK, not
 * assert), because a truncated key would silently address some other key.
 *
 * Pure functions: no I/O, never yield; safe on any stack and any thread. Only
 * broker_queue_list_join allocates.
 */
#include "broker_keys.h"

#include "green_check.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* True when s has a space, tab, newline or any other ASCII control byte (or DEL). Bytes
 * >= 0x80 (UTF-8) are allowed: queue "élevée" is a fine name. */
static bool has_space_or_control(const char *s) {
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p <= 0x20 || *p == 0x7f)
            return true;
    }
    return false;
}

/* The limits in the messages, from the same macros as the checks. */
#define STR_(x) #x
#define STR(x) STR_(x)

/* The only prefix and queue-name checks: workerd's and workerctl's settings (the settings
 * module) and workerctl's commands all call these, so a name one of them accepts fits
 * every key, and all of them say the same sentence about one that does not. */
const char *broker_check_prefix(const char *prefix) {
    if (prefix == NULL || prefix[0] == '\0')
        return "key prefix is empty";
    if (strlen(prefix) > BROKER_PREFIX_MAX)
        return "key prefix is longer than " STR(BROKER_PREFIX_MAX) " bytes";
    if (has_space_or_control(prefix))
        return "key prefix contains whitespace or a control character";
    return NULL;
}

const char *broker_check_queue_name(const char *name) {
    if (name == NULL || name[0] == '\0')
        return "queue name is empty";
    if (strlen(name) > BROKER_QUEUE_NAME_MAX)
        return "queue name is longer than " STR(BROKER_QUEUE_NAME_MAX) " bytes";
    if (has_space_or_control(name))
        return "queue name contains whitespace or a control character";
    /* The workers hash stores a worker's queues comma-separated. */
    if (strchr(name, ',') != NULL)
        return "queue name contains a comma";
    if (name[0] == BROKER_CELERY_MARK)
        return "queue name starts with '=', which marks a Celery queue inside workerd";
    return NULL;
}

bool broker_queue_is_celery(const char *queue) {
    return queue != NULL && queue[0] == BROKER_CELERY_MARK;
}

const char *broker_check_queue_ref(const char *queue) {
    if (broker_queue_is_celery(queue))
        return broker_check_queue_name(queue + 1);
    return broker_check_queue_name(queue);
}

const char *broker_check_worker_id(const char *wid) {
    if (wid == NULL || wid[0] == '\0')
        return "worker id is empty";
    if (strlen(wid) > BROKER_WORKER_ID_MAX)
        return "worker id is longer than 128 bytes";
    if (has_space_or_control(wid))
        return "worker id contains whitespace or a control character";
    return NULL;
}

const char *broker_check_task_id(const char *id) {
    if (id == NULL || id[0] == '\0')
        return "task id is empty";
    if (strlen(id) > BROKER_ID_MAX)
        return "task id is longer than 255 bytes";
    return NULL;
}

int broker_keys_init(broker_keys *k, const char *prefix) {
    if (prefix == NULL)
        prefix = BROKER_PREFIX_DEFAULT;
    if (broker_check_prefix(prefix) != NULL)
        return -EINVAL;
    snprintf(k->prefix, sizeof k->prefix, "%s", prefix);
    return 0;
}

static int format_key(char *buf, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int format_key(char *buf, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, BROKER_KEY_MAX, fmt, ap);
    va_end(ap);
    GREEN_CHECK(n >= 0 && n < BROKER_KEY_MAX, "a key cut to BROKER_KEY_MAX names another key");
    return n;
}

static int reject(char *buf) {
    buf[0] = '\0';
    return -EINVAL;
}

int broker_key_queue(const broker_keys *k, const char *queue, char buf[BROKER_KEY_MAX]) {
    if (broker_check_queue_ref(queue) != NULL)
        return reject(buf);
    if (broker_queue_is_celery(queue))
        return format_key(buf, "%s", queue + 1);
    return format_key(buf, "%s:queue:%s", k->prefix, queue);
}

int broker_key_celery_queue(const char *queue, int priority, char buf[BROKER_KEY_MAX]) {
    if (broker_check_queue_ref(queue) != NULL)
        return reject(buf);
    const char *name = broker_queue_is_celery(queue) ? queue + 1 : queue;
    /* kombu's priority steps 0, 3, 6, 9: a priority goes to the highest step not above
     * it; step 0 is the plain list. */
    int step = priority >= 9 ? 9 : priority >= 6 ? 6 : priority >= 3 ? 3 : 0;
    if (step == 0)
        return format_key(buf, "%s", name);
    return format_key(buf, "%s\x06\x16%d", name, step);
}

int broker_key_celery_result(const char *id, char buf[BROKER_KEY_MAX]) {
    if (broker_check_task_id(id) != NULL)
        return reject(buf);
    return format_key(buf, "celery-task-meta-%s", id);
}

int broker_key_celery_group(const char *gid, char buf[BROKER_KEY_MAX]) {
    if (broker_check_task_id(gid) != NULL)
        return reject(buf);
    return format_key(buf, "celery-taskset-meta-%s", gid);
}

int broker_key_scheduled(const broker_keys *k, char buf[BROKER_KEY_MAX]) {
    return format_key(buf, "%s:scheduled", k->prefix);
}

int broker_key_worker(const broker_keys *k, const char *wid, char buf[BROKER_KEY_MAX]) {
    if (broker_check_worker_id(wid) != NULL)
        return reject(buf);
    return format_key(buf, "%s:worker:%s", k->prefix, wid);
}

int broker_key_workers(const broker_keys *k, char buf[BROKER_KEY_MAX]) {
    return format_key(buf, "%s:workers", k->prefix);
}

int broker_key_inflight(const broker_keys *k, const char *wid, char buf[BROKER_KEY_MAX]) {
    if (broker_check_worker_id(wid) != NULL)
        return reject(buf);
    return format_key(buf, "%s:inflight:%s", k->prefix, wid);
}

int broker_key_landing(const broker_keys *k, const char *wid, const char *queue,
                       char buf[BROKER_KEY_MAX]) {
    if (broker_check_worker_id(wid) != NULL || broker_check_queue_ref(queue) != NULL)
        return reject(buf);
    return format_key(buf, "%s:landing:%s:%s", k->prefix, wid, queue);
}

int broker_key_result(const broker_keys *k, const char *id, char buf[BROKER_KEY_MAX]) {
    if (broker_check_task_id(id) != NULL)
        return reject(buf);
    return format_key(buf, "%s:result:%s", k->prefix, id);
}

int broker_key_unique(const broker_keys *k, const char *hash, char buf[BROKER_KEY_MAX]) {
    if (hash == NULL || strlen(hash) != 40 || strspn(hash, "0123456789abcdef") != 40)
        return reject(buf);
    return format_key(buf, "%s:unique:%s", k->prefix, hash);
}

int broker_key_revoked(const broker_keys *k, const char *id, char buf[BROKER_KEY_MAX]) {
    if (broker_check_task_id(id) != NULL)
        return reject(buf);
    return format_key(buf, "%s:revoked:%s", k->prefix, id);
}

int broker_key_revoked_set(const broker_keys *k, char buf[BROKER_KEY_MAX]) {
    return format_key(buf, "%s:revoked", k->prefix);
}

int broker_key_control(const broker_keys *k, char buf[BROKER_KEY_MAX]) {
    return format_key(buf, "%s:control", k->prefix);
}

int broker_key_dead(const broker_keys *k, char buf[BROKER_KEY_MAX]) {
    return format_key(buf, "%s:dead", k->prefix);
}

int broker_key_paused(const broker_keys *k, char buf[BROKER_KEY_MAX]) {
    return format_key(buf, "%s:paused", k->prefix);
}

int broker_key_beat(const broker_keys *k, char buf[BROKER_KEY_MAX]) {
    return format_key(buf, "%s:beat", k->prefix);
}

int broker_key_events(const broker_keys *k, char buf[BROKER_KEY_MAX]) {
    return format_key(buf, "%s:events", k->prefix);
}

int broker_key_seq(const broker_keys *k, char buf[BROKER_KEY_MAX]) {
    return format_key(buf, "%s:seq", k->prefix);
}

int broker_key_stats_minute(const broker_keys *k, long long minute, char buf[BROKER_KEY_MAX]) {
    return format_key(buf, "%s:stats:minute:%lld", k->prefix, minute);
}

int broker_key_stats_total(const broker_keys *k, char buf[BROKER_KEY_MAX]) {
    return format_key(buf, "%s:stats:total", k->prefix);
}

/* ---- Key names read back ------------------------------------------------------------- */

int broker_key_queue_pattern(const broker_keys *k, char buf[BROKER_KEY_MAX]) {
    /* SCAN's MATCH reads the prefix as a glob: escape what it would take as one. At most
     * twice the prefix, well inside the buffer. */
    char escaped[2 * BROKER_PREFIX_MAX + 1];
    size_t n = 0;
    for (const char *p = k->prefix; *p; p++) {
        if (strchr("*?[]\\", *p) != NULL)
            escaped[n++] = '\\';
        escaped[n++] = *p;
    }
    escaped[n] = '\0';
    return format_key(buf, "%s:queue:*", escaped);
}

const char *broker_key_queue_name(const broker_keys *k, const char *key, size_t len) {
    size_t plen = strlen(k->prefix);
    static const char kind[] = ":queue:";
    if (strlen(key) != len || len <= plen + sizeof kind - 1 || memcmp(key, k->prefix, plen) != 0 ||
        memcmp(key + plen, kind, sizeof kind - 1) != 0)
        return NULL;
    const char *name = key + plen + sizeof kind - 1;
    return broker_check_queue_name(name) == NULL ? name : NULL;
}

/* ---- Values -------------------------------------------------------------------------- */

char *broker_queue_list_join(const char *const *queues, size_t n) {
    size_t total = 1;
    for (size_t i = 0; i < n; i++)
        total += strlen(queues[i]) + 1;
    char *list = malloc(total), *p = list;
    if (list == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(queues[i]);
        if (i > 0)
            *p++ = ',';
        memcpy(p, queues[i], len);
        p += len;
    }
    *p = '\0';
    return list;
}

char *broker_queue_list_next(char **cursor) {
    char *p = *cursor;
    while (*p == ',')
        p++;
    if (*p == '\0') {
        *cursor = p;
        return NULL;
    }
    char *name = p;
    p += strcspn(p, ",");
    if (*p == ',')
        *p++ = '\0';
    *cursor = p;
    return name;
}

bool broker_inflight_split(const char *value, size_t len, const char **queue, size_t *qlen,
                           const char **raw, size_t *rawlen) {
    const char *nl = memchr(value, '\n', len);
    *queue = value;
    *qlen = nl ? (size_t)(nl - value) : 0;
    *raw = nl ? nl + 1 : value;
    *rawlen = len - (size_t)(*raw - value);
    return nl != NULL;
}
