/*
 * wd_fleet.c - /metrics/total (wd_fleet.h): the siblings' /metrics fetched at once, one
 * greenlet each, and every sample summed by its series (name and labels).
 *
 * The text format is Prometheus's: "# HELP" and "# TYPE" lines, then "series value"
 * lines. The series keep the order they first appear in (this process's own text first),
 * each comment line is kept once, and a sibling that does not answer within FETCH_TIMEOUT
 * is left out and counted as not answering: a scrape never waits for a wedged child for
 * long, and says that the total is partial.
 */
#include "wd_fleet.h"

#include "green.h"
#include "green_http.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FETCH_TIMEOUT 2.0
#define MAX_PROCESSES 1024

struct series {
    char *key; /* a comment line, or "name{labels}" */
    bool comment;
    double value;
};

struct table {
    struct series *s;
    size_t n, cap;
    bool nomem;
};

/* Two processes' values of the series on line: summed, except where every process
 * reports the same thing (a queue's depth, read from the one Redis: the largest, as -1
 * means unknown) or a summary of the machine's (the start time: the oldest). */
static double combine(const char *line, double a, double b) {
    if (strncmp(line, "workerd_queue_depth", 19) == 0)
        return a > b ? a : b;
    if (strncmp(line, "workerd_start_time_seconds", 26) == 0)
        return a < b ? a : b;
    return a + b;
}

/* Add line[0..len) to the table: a comment once, a sample summed into its series. Linear
 * lookup: a few hundred series and a few processes. */
static void add_line(struct table *t, const char *line, size_t len) {
    if (len == 0)
        return;
    bool comment = line[0] == '#';
    size_t klen = len;
    double v = 0;
    if (!comment) {
        const char *sp = NULL;
        for (size_t i = len; i-- > 0;)
            if (line[i] == ' ') {
                sp = line + i;
                break;
            }
        if (sp == NULL)
            return;
        klen = (size_t)(sp - line);
        v = strtod(sp + 1, NULL);
    }
    for (size_t i = 0; i < t->n; i++)
        if (t->s[i].comment == comment && strlen(t->s[i].key) == klen &&
            memcmp(t->s[i].key, line, klen) == 0) {
            t->s[i].value = combine(line, t->s[i].value, v);
            return;
        }
    if (t->n == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 256;
        struct series *s = realloc(t->s, cap * sizeof *s);
        if (s == NULL) {
            t->nomem = true;
            return;
        }
        t->s = s;
        t->cap = cap;
    }
    char *key = strndup(line, klen);
    if (key == NULL) {
        t->nomem = true;
        return;
    }
    t->s[t->n++] = (struct series){key, comment, v};
}

static void add_text(struct table *t, const char *text) {
    for (const char *p = text; *p;) {
        size_t len = strcspn(p, "\n");
        add_line(t, p, len);
        p += len + (p[len] == '\n');
    }
}

struct fetch {
    char url[300];
    green_http_buf body;
    bool ok;
};

static void *fetch_main(void *arg) {
    struct fetch *f = arg;
    long status = 0;
    f->body.max = 16 << 20;
    f->ok = green_http_get(f->url, FETCH_TIMEOUT, &status, &f->body) == 0 && status == 200;
    return NULL;
}

char *wd_fleet_metrics_total(const char *host, int base, int processes, int self_port,
                             const char *own) {
    if (processes < 1)
        processes = 1;
    if (processes > MAX_PROCESSES)
        processes = MAX_PROCESSES;
    struct fetch *f = calloc((size_t)processes, sizeof *f);
    green_t *g = calloc((size_t)processes, sizeof *g);
    bool *spawned = calloc((size_t)processes, sizeof *spawned);
    struct table t = {0};
    char *out = NULL;
    if (f == NULL || g == NULL || spawned == NULL)
        goto done;
    bool v6 = strchr(host, ':') != NULL;
    for (int k = 0; k < processes; k++) {
        if (base + k == self_port)
            continue;
        snprintf(f[k].url, sizeof f[k].url, "http://%s%s%s:%d/metrics", v6 ? "[" : "", host,
                 v6 ? "]" : "", base + k);
        spawned[k] = green_spawn(&g[k], fetch_main, &f[k]) == 0;
    }
    int answering = 1; /* this process */
    add_text(&t, own);
    for (int k = 0; k < processes; k++) {
        if (!spawned[k])
            continue;
        green_join(g[k], NULL);
        if (f[k].ok) {
            answering++;
            add_text(&t, f[k].body.data);
        }
        green_http_buf_free(&f[k].body);
    }
    if (t.nomem)
        goto done;
    size_t cap = 1024;
    for (size_t i = 0; i < t.n; i++)
        cap += strlen(t.s[i].key) + 40;
    if ((out = malloc(cap)) == NULL)
        goto done;
    size_t len = 0;
    for (size_t i = 0; i < t.n; i++)
        len += (size_t)(t.s[i].comment ? snprintf(out + len, cap - len, "%s\n", t.s[i].key)
                                       : snprintf(out + len, cap - len, "%s %.17g\n", t.s[i].key,
                                                  t.s[i].value));
    snprintf(out + len, cap - len,
             "# HELP workerd_fleet_processes Worker processes of this supervisor.\n"
             "# TYPE workerd_fleet_processes gauge\nworkerd_fleet_processes %d\n"
             "# HELP workerd_fleet_processes_answering Of them, those whose /metrics "
             "is in this total.\n"
             "# TYPE workerd_fleet_processes_answering gauge\n"
             "workerd_fleet_processes_answering %d\n",
             processes, answering);
done:
    for (size_t i = 0; i < t.n; i++)
        free(t.s[i].key);
    free(t.s);
    free(f);
    free(g);
    free(spawned);
    return out;
}
