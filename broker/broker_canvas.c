/*
 * broker_canvas.c - the canvas operations as ack.lua's argument values (broker_canvas.h).
 */
#include "broker_canvas.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int add(broker_canvas *c, const char *s, size_t len) {
    if (c->err)
        return c->err;
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 16;
        char **v = realloc(c->v, cap * sizeof *v);
        if (v)
            c->v = v;
        size_t *l = v ? realloc(c->len, cap * sizeof *l) : NULL;
        if (!l)
            return c->err = -ENOMEM;
        c->len = l;
        c->cap = cap;
    }
    char *copy = malloc(len + 1);
    if (!copy)
        return c->err = -ENOMEM;
    memcpy(copy, s, len);
    copy[len] = '\0';
    c->v[c->n] = copy;
    c->len[c->n++] = len;
    return 0;
}

static int add_str(broker_canvas *c, const char *s) {
    return add(c, s ? s : "", s ? strlen(s) : 0);
}

static int add_num(broker_canvas *c, size_t x) {
    char buf[32];
    int len = snprintf(buf, sizeof buf, "%zu", x);
    return add(c, buf, (size_t)len);
}

int broker_canvas_push(broker_canvas *c, const char *marker, size_t n) {
    add_str(c, "push");
    add_str(c, marker);
    return add_num(c, n);
}

int broker_canvas_item(broker_canvas *c, const char *queue, const char *text, size_t len) {
    add_str(c, queue);
    return add(c, text, len);
}

int broker_canvas_result(broker_canvas *c, const char *id, const char *json) {
    add_str(c, "result");
    add_str(c, id);
    return add_str(c, json);
}

int broker_canvas_group_start(broker_canvas *c, const broker_canvas_group *g) {
    char mode[2] = {g->mode, '\0'};
    add_str(c, "group");
    add_str(c, g->gid);
    add_str(c, g->task);
    add_num(c, g->n);
    add_str(c, g->children);
    add_str(c, mode);
    add_str(c, g->cb_queue);
    add_str(c, g->cb_id);
    add_str(c, g->cb_task);
    add_str(c, g->cb_head);
    add_str(c, g->cb_tail);
    return add_str(c, g->interim);
}

int broker_canvas_member(broker_canvas *c, const char *gid, size_t index, const char *record,
                         size_t len) {
    add_str(c, "member");
    add_str(c, gid);
    add_num(c, index);
    return add(c, record, len);
}

int broker_canvas_crawl(broker_canvas *c, const char *crawl, const char *url, long long max_pages,
                        long long ttl, bool done) {
    char max[32], secs[32];
    snprintf(max, sizeof max, "%lld", max_pages);
    snprintf(secs, sizeof secs, "%lld", ttl);
    add_str(c, "crawl");
    add_str(c, crawl);
    add_str(c, url);
    add_str(c, max);
    add_str(c, secs);
    return add_str(c, done ? "d" : "f");
}

size_t broker_canvas_bytes(const broker_canvas *c) {
    size_t sum = 0;
    for (size_t i = 0; i < c->n; i++)
        sum += c->len[i] + 8;
    return sum;
}

void broker_canvas_free(broker_canvas *c) {
    for (size_t i = 0; i < c->n; i++)
        free(c->v[i]);
    free(c->v);
    free(c->len);
    *c = (broker_canvas){0};
}
