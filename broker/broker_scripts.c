/*
 * broker_scripts.c - the embedded Lua scripts and their SHA1 digests.
 *
 * The script texts come from broker_lua_text.c, which the build generates from the .lua
 * files (broker/embed_lua.cmake). The digests are computed once, on first use, with the
 * small SHA1 below (FIPS 180-4; SHA1 is what Redis names scripts by, not a security
 * choice here).
 *
 * Pure computation; pthread_once makes the lazy initialisation thread-safe.
 */
#include "broker_scripts.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

extern const char broker__lua_fetch[], broker__lua_ack[], broker__lua_recover[],
    broker__lua_requeue[], broker__lua_dead_requeue[], broker__lua_move_due[],
    broker__lua_unique_acquire[], broker__lua_rate_limit[], broker__lua_host_slot[],
    broker__lua_crawl_step[], broker__lua_beat_fire[];
extern const size_t broker__lua_fetch_len, broker__lua_ack_len, broker__lua_recover_len,
    broker__lua_requeue_len, broker__lua_dead_requeue_len, broker__lua_move_due_len,
    broker__lua_unique_acquire_len, broker__lua_rate_limit_len, broker__lua_host_slot_len,
    broker__lua_crawl_step_len, broker__lua_beat_fire_len;

static broker_script scripts[BROKER_SCRIPT_COUNT];
static pthread_once_t scripts_once = PTHREAD_ONCE_INIT;

/* ---- SHA1 ---------------------------------------------------------------------------- */

static uint32_t rol(uint32_t x, int n) {
    return x << n | x >> (32 - n);
}

static void sha1_block(uint32_t h[5], const unsigned char *p) {
    uint32_t w[80];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 80; i++)
        w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (int i = 0; i < 80; i++) {
        uint32_t f, k;
        if (i < 20) {
            f = (b & c) | (~b & d);
            k = 0x5a827999;
        } else if (i < 40) {
            f = b ^ c ^ d;
            k = 0x6ed9eba1;
        } else if (i < 60) {
            f = (b & c) | (b & d) | (c & d);
            k = 0x8f1bbcdc;
        } else {
            f = b ^ c ^ d;
            k = 0xca62c1d6;
        }
        uint32_t t = rol(a, 5) + f + e + k + w[i];
        e = d;
        d = c;
        c = rol(b, 30);
        b = a;
        a = t;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
}

void broker_sha1_hex(const void *data, size_t n, char out[41]) {
    uint32_t h[5] = {0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476, 0xc3d2e1f0};
    const unsigned char *p = data;
    size_t left = n;
    for (; left >= 64; left -= 64, p += 64)
        sha1_block(h, p);
    /* The tail, the 0x80 marker and the 64-bit big-endian bit length: one or two blocks. */
    unsigned char tail[128] = {0};
    memcpy(tail, p, left);
    tail[left] = 0x80;
    size_t blocks = left < 56 ? 1 : 2;
    uint64_t bits = (uint64_t)n * 8;
    for (int i = 0; i < 8; i++)
        tail[blocks * 64 - 1 - i] = (unsigned char)(bits >> (8 * i));
    for (size_t b = 0; b < blocks; b++)
        sha1_block(h, tail + 64 * b);
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 20; i++) {
        unsigned char byte = (unsigned char)(h[i / 4] >> (24 - 8 * (i % 4)));
        out[2 * i] = hex[byte >> 4];
        out[2 * i + 1] = hex[byte & 15];
    }
    out[40] = '\0';
}

/* ---- The table ----------------------------------------------------------------------- */

static void set(broker_script_id id, const char *name, const char *text, size_t len) {
    scripts[id].name = name;
    scripts[id].text = text;
    scripts[id].len = len;
    broker_sha1_hex(text, len, scripts[id].sha1);
}

static void init_scripts(void) {
    set(BROKER_SCRIPT_FETCH, "fetch", broker__lua_fetch, broker__lua_fetch_len);
    set(BROKER_SCRIPT_ACK, "ack", broker__lua_ack, broker__lua_ack_len);
    set(BROKER_SCRIPT_RECOVER, "recover", broker__lua_recover, broker__lua_recover_len);
    set(BROKER_SCRIPT_REQUEUE, "requeue", broker__lua_requeue, broker__lua_requeue_len);
    set(BROKER_SCRIPT_DEAD_REQUEUE, "dead_requeue", broker__lua_dead_requeue,
        broker__lua_dead_requeue_len);
    set(BROKER_SCRIPT_MOVE_DUE, "move_due", broker__lua_move_due, broker__lua_move_due_len);
    set(BROKER_SCRIPT_UNIQUE_ACQUIRE, "unique_acquire", broker__lua_unique_acquire,
        broker__lua_unique_acquire_len);
    set(BROKER_SCRIPT_RATE_LIMIT, "rate_limit", broker__lua_rate_limit, broker__lua_rate_limit_len);
    set(BROKER_SCRIPT_HOST_SLOT, "host_slot", broker__lua_host_slot, broker__lua_host_slot_len);
    set(BROKER_SCRIPT_CRAWL_STEP, "crawl_step", broker__lua_crawl_step, broker__lua_crawl_step_len);
    set(BROKER_SCRIPT_BEAT_FIRE, "beat_fire", broker__lua_beat_fire, broker__lua_beat_fire_len);
}

const broker_script *broker_script_get(broker_script_id id) {
    if ((unsigned)id >= BROKER_SCRIPT_COUNT)
        return NULL;
    pthread_once(&scripts_once, init_scripts);
    return &scripts[id];
}

/* ---- Running them -------------------------------------------------------------------- */

int broker_batch_script(broker_batch *b, broker_script_id id) {
    const broker_script *s = broker_script_get(id);
    if (s == NULL)
        return broker_batch_fail(b, -EINVAL);
    broker_batch_cmd(b);
    broker_batch_arg(b, "EVALSHA", 7);
    broker_batch_arg(b, s->sha1, 40);
    return broker_batch_arg(b, "0", 1);
}

bool broker_reply_is_noscript(const redisReply *r) {
    return r != NULL && r->type == REDIS_REPLY_ERROR && r->str != NULL &&
           strncmp(r->str, "NOSCRIPT", 8) == 0;
}

bool broker_script_retry(broker_batch *b, size_t i, const redisReply *r) {
    if (!broker_reply_is_noscript(r) || i >= b->n || b->argcs[i] < 3)
        return false;
    /* broker_batch_script borrowed the digest from the table: compare pointers. */
    const char *const *argv = b->argvs[i];
    if (b->argvlens[i][0] != 7 || memcmp(argv[0], "EVALSHA", 7) != 0)
        return false;
    for (int id = 0; id < BROKER_SCRIPT_COUNT; id++) {
        const broker_script *s = broker_script_get((broker_script_id)id);
        if (argv[1] == s->sha1) {
            broker_batch_set(b, i, 0, "EVAL", 4);
            broker_batch_set(b, i, 1, s->text, s->len);
            return true;
        }
    }
    return false;
}
