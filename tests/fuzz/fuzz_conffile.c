/*
 * fuzz_conffile.c - libFuzzer target for the KEY=VALUE config-file parser
 * (settings_conffile_parse).
 *
 * Invariants: the parse returns 0 or -1, with a one-line, NUL-terminated message on -1;
 * every key handed to the callback is a valid key (letters, digits, '_', not starting with
 * a digit), line numbers never decrease and never pass the number of lines; and the
 * assignments round-trip: written back as KEY="VALUE" (escaping only \ " ` $, the four
 * escapes of double quotes) they parse to the same keys and values. A callback that
 * refuses (a key named FAIL) must stop the parse with its own message.
 */
#include "settings_conffile.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_conffile: invariant broken at %s:%d: %s\n", __FILE__, __LINE__,  \
                    #cond);                                                                        \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* The assignments of one parse, written back as a file that must mean the same. */
struct seen {
    char *text; /* KEY="VALUE"\n lines */
    size_t len, cap;
    int count;
    int last_line;
    int max_line;
    bool fail_key_stops; /* the callback refuses the key FAIL */
};

static void append(struct seen *s, const char *p, size_t n) {
    if (s->len + n + 1 > s->cap) {
        size_t cap = (s->len + n + 1) * 2;
        char *t = realloc(s->text, cap);
        CHECK(t != NULL);
        s->text = t;
        s->cap = cap;
    }
    memcpy(s->text + s->len, p, n);
    s->len += n;
    s->text[s->len] = '\0';
}

static bool key_valid(const char *k) {
    if (!((k[0] >= 'A' && k[0] <= 'Z') || (k[0] >= 'a' && k[0] <= 'z') || k[0] == '_'))
        return false;
    for (; *k; k++)
        if (!((*k >= 'A' && *k <= 'Z') || (*k >= 'a' && *k <= 'z') || (*k >= '0' && *k <= '9') ||
              *k == '_'))
            return false;
    return true;
}

static int on_assign(void *ud, const char *key, const char *value, int line, char *errbuf,
                     size_t errlen) {
    struct seen *s = ud;
    CHECK(key_valid(key));
    CHECK(line >= s->last_line && line >= 1 && line <= s->max_line);
    s->last_line = line;
    if (s->fail_key_stops && strcmp(key, "FAIL") == 0) {
        snprintf(errbuf, errlen, "refused");
        return -1;
    }
    s->count++;
    append(s, key, strlen(key));
    append(s, "=\"", 2);
    for (const char *p = value; *p; p++) {
        if (strchr("\\\"`$", *p) != NULL)
            append(s, "\\", 1);
        append(s, p, 1);
    }
    append(s, "\"\n", 2);
    return 0;
}

static int parse(const char *text, size_t len, struct seen *s, char *errbuf, size_t errlen) {
    s->max_line = 1;
    for (size_t i = 0; i < len; i++)
        s->max_line += text[i] == '\n';
    errbuf[0] = '\0';
    int rc = settings_conffile_parse(text, len, "fuzz.conf", on_assign, s, errbuf, errlen);
    CHECK(rc == 0 || rc == -1);
    CHECK(memchr(errbuf, '\0', errlen) != NULL);
    if (rc == -1)
        CHECK(errbuf[0] != '\0');
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char errbuf[256];
    struct seen first = {.fail_key_stops = true};
    int rc = parse((const char *)data, size, &first, errbuf, sizeof errbuf);
    if (rc == -1 && strcmp(errbuf, "refused") == 0) {
        free(first.text);
        return 0;
    }
    if (rc == 0) {
        /* Written back, the assignments must parse to exactly the same file again. */
        struct seen again = {0};
        CHECK(parse(first.text ? first.text : "", first.len, &again, errbuf, sizeof errbuf) == 0);
        CHECK(again.count == first.count);
        CHECK(again.len == first.len);
        CHECK(first.len == 0 || memcmp(again.text, first.text, first.len) == 0);
        free(again.text);
    }
    free(first.text);
    /* A small errbuf must still get a terminated (cut) message, and the same outcome. */
    char tiny[8];
    struct seen other = {0};
    CHECK(parse((const char *)data, size, &other, tiny, sizeof tiny) == rc);
    free(other.text);
    return 0;
}
