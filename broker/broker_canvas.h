/*
 * broker_canvas.h - the canvas operations an ack performs in the same atomic step
 * (ack.lua's "^" entries; docs/design.md "Canvas"): enqueue the next link of a chain,
 * store a ChainAborted result, start a group or chord (its state and all its members),
 * record a member's outcome and, once every member is recorded, fire the group's result
 * and the chord's callback exactly once; and count a crawl's page as done or failed.
 *
 * The daemon decides what a finished message means (wd_canvas.h); this file only writes
 * that down as the script's argument values, in the order ack.lua reads them. Every
 * string is copied. The key names the script builds from the ids (all under
 * <prefix>:canvas:, broker_keys.h) are documented in ack.lua.
 *
 * Builders return 0 or -ENOMEM (the list is then failed: later builders add nothing and
 * return -ENOMEM too; free it). Pure computation: no I/O, never yields, callable from any
 * stack; thread-safe on distinct lists.
 */
#ifndef WORKERD_BROKER_CANVAS_H
#define WORKERD_BROKER_CANVAS_H

#include <stdbool.h>
#include <stddef.h>

typedef struct broker_canvas {
    char **v; /* the argument values, owned */
    size_t *len;
    size_t n, cap;
    int err; /* sticky: -ENOMEM once a copy failed */
} broker_canvas;

/* "push": enqueue the n messages that follow (broker_canvas_item) unless marker's
 * enqueue was done before (<prefix>:canvas:<marker>:sent). */
int broker_canvas_push(broker_canvas *c, const char *marker, size_t n);

/* One message of a "push" or a "group": text[0..len) for queue. */
int broker_canvas_item(broker_canvas *c, const char *queue, const char *text, size_t len);

/* "result": store and publish json as the result of id. */
int broker_canvas_result(broker_canvas *c, const char *id, const char *json);

/* The state of a group or chord, for broker_canvas_group. */
typedef struct broker_canvas_group {
    const char *gid;      /* the group's (chord's) id: its result and its state */
    const char *task;     /* "group" or "chord" */
    size_t n;             /* members; broker_canvas_item n times follows */
    const char *children; /* JSON array of the member ids, in order */
    char mode;            /* 0 a group; 'm' a chord, results prepended; 'i' immutable */
    const char *cb_queue, *cb_id, *cb_task;
    const char *cb_head, *cb_tail; /* the callback's text: head + [results] + tail ('m'),
                                      or head alone ('i') */
    const char *interim;           /* the group's result while its members run */
} broker_canvas_group;

/* "group": start g (once per gid), its n members following as items. */
int broker_canvas_group_start(broker_canvas *c, const broker_canvas_group *g);

/* "member": member `index` of gid finished; record is 'S' + its result's JSON, or 'F' +
 * its error's JSON, record[0..len). */
int broker_canvas_member(broker_canvas *c, const char *gid, size_t index, const char *record,
                         size_t len);

/* "crawl": the final outcome of a page of an http.scrape crawl (docs/design.md "Crawls"):
 * url (as the crawl's seen set spells it) counted in the crawl's done set (done true:
 * it succeeded) or its failed set, once whatever later outcomes say; max_pages kept if the
 * crawl has none yet; the crawl's keys expire ttl seconds later. */
int broker_canvas_crawl(broker_canvas *c, const char *crawl, const char *url, long long max_pages,
                        long long ttl, bool done);

/* Bytes of all the values (to size a batch). */
size_t broker_canvas_bytes(const broker_canvas *c);

/* Releases what c owns and zeroes it. A zeroed list is fine. */
void broker_canvas_free(broker_canvas *c);

#endif
