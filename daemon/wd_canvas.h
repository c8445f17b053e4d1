/*
 * wd_canvas.h - workflows: chain, group and chord (docs/design.md "Canvas"; README.md
 * "Workflows").
 *
 * A signature is {"task": NAME, "args": [...], "kwargs": {...}} with optional "id",
 * "queue", "immutable" and any message option. This module judges a message's canvas
 * parts before it runs (wd_canvas_check: everything is validated up front, so nothing is
 * ever half-enqueued), and turns a finished message into the canvas operations its final
 * ack performs in the same atomic step (broker_canvas.h, ack.lua):
 *
 *   - a message with "chain" that succeeded: its first signature is enqueued with the rest
 *     as its own "chain" and, unless "immutable", the result prepended to its args; one
 *     that failed for good: every remaining signature with an id gets a FAILURE
 *     ChainAborted result;
 *   - the built-in tasks "group" (args [[sig, ...]]) and "chord" (args [[sig, ...],
 *     callback]) enqueue their members, each carrying "member_of": {"id", "index"};
 *   - a member that finished (any final status) records its outcome; the last one fires
 *     the group's ordered result and the chord's callback, once.
 *
 * Ids the producer left out are made deterministic from the parent's id: "<gid>.<i>" for
 * member i, "<gid>.callback" for a chord's callback, the SHA-1 of the parent's id for the
 * next link of a chain (hex), so that the same parent finishing twice names the same
 * follow-up, which the script then enqueues once.
 *
 * Nesting: a chain's link, a group's member and a chord's member may not be a group or a
 * chord, nor carry a chain of their own; a group or chord message may not carry a chain
 * (its success would come before its members'); a chord's callback may carry a chain.
 * Each is refused with a reason naming the signature.
 *
 * Pure computation on the caller's stack: no I/O, never yields.
 */
#ifndef WORKERD_WD_CANVAS_H
#define WORKERD_WD_CANVAS_H

#include "broker_canvas.h"
#include "broker_msg.h"
#include "broker_result.h"

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

/* The longest chain (links after the first message) and the largest group or chord. */
#define WD_CANVAS_MAX_CHAIN 1000
#define WD_CANVAS_MAX_MEMBERS 100000

/* True for the built-in canvas tasks, "group" and "chord". */
bool wd_canvas_is_builtin(const char *task);

/* True when m has a canvas part: a "chain" or "member_of" field (whatever its value), or
 * it is a group or chord. When false, wd_canvas_check passes and wd_canvas_final adds
 * nothing, so the worker skips both for a plain message (their lookups were a few per
 * cent of the CPU of an echo task). Does not yield. */
bool wd_canvas_involved(const broker_msg *m);

/* What a check knows of the worker. */
typedef struct wd_canvas_env {
    const broker_limits *lim;  /* the message limits (NULL: the defaults) */
    double now;                /* the clock relative times count from */
    const char *const *queues; /* the queues this worker consumes */
    size_t nqueues;
} wd_canvas_env;

/* Judge m's canvas parts: its "chain", its "member_of", and, for a group or chord, its
 * args. Each signature is checked as the message it would become (broker_msg_parse with
 * env's limits and clock) and its task must be registered, unless the signature names a
 * queue this worker does not consume (that queue's workers judge it: an unknown task is
 * then that message's dead letter, which fails the chord or aborts the chain). 0, or
 * -EINVAL with *etype ("InvalidMessage", "NotRegistered", "TypeError") and a reason
 * naming the signature. */
int wd_canvas_check(const broker_msg *m, const wd_canvas_env *env, const char **etype, char *reason,
                    size_t reason_len);

/* The ops of running the group or chord m (checked by wd_canvas_check), taken from queue:
 * its state, its members, its interim result (STARTED, with "children"). 0 or -ENOMEM. */
int wd_canvas_start(const broker_msg *m, const char *queue, const broker_limits *lim,
                    const char *wid, double started_at, broker_canvas *c);

/* The ops of m's final outcome (status, and value for SUCCESS or etype and emsg
 * otherwise), m taken from queue: the chain's next link or its abort, the member's
 * record. Nothing when m has no canvas part. 0 or -ENOMEM. */
int wd_canvas_final(const broker_msg *m, const char *queue, const broker_limits *lim,
                    broker_status status, const json_t *value, const char *etype, const char *emsg,
                    broker_canvas *c);

#endif
