/*
 * broker_celery.h - Celery's wire formats (docs/design.md "Celery interop"): reading a
 * Celery message protocol v2 envelope as kombu's Redis transport LPUSHes it, writing
 * results as Celery's Redis result backend stores them, and writing the messages a task's
 * callbacks, errbacks and chain publish.
 *
 * A message on a Celery queue is a JSON envelope:
 *
 *   {"body": "<base64 of [args, kwargs, embed]>", "content-type": "application/json",
 *    "content-encoding": "utf-8",
 *    "headers": {"lang": "py", "task": "workerd.echo", "id": "...", "root_id": ...,
 *                "parent_id": ..., "group": ..., "retries": 0, "eta": "<ISO 8601>",
 *                "expires": "<ISO 8601>", "timelimit": [hard, soft], ...},
 *    "properties": {"correlation_id": "...", "reply_to": "...", "delivery_tag": "...",
 *                   "body_encoding": "base64", "priority": 0,
 *                   "delivery_info": {"exchange": "", "routing_key": "celery"}}}
 *
 * broker_celery_translate reads it into workerd's own message (broker_msg.h), which the
 * worker then parses and runs as any other: id, task (mapped: "workerd.<name>" is
 * <name>, or a --celery-task NAME=TASK entry), args, kwargs, retries, eta, expires,
 * time_limit and soft_time_limit (timelimit [hard, soft]), redelivered (recover.lua's
 * count at the envelope's top level). Only application/json bodies are read: any other
 * content type (pickle, msgpack, yaml) is refused without being deserialised, and so are
 * protocol v1 messages and headers of the wrong types.
 *
 * Everything here is pure computation: no I/O, never yields, callable from any stack.
 */
#ifndef WORKERD_BROKER_CELERY_H
#define WORKERD_BROKER_CELERY_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "broker_msg.h"
#include "broker_result.h"

/* The --celery-task mappings: entries "NAME=TASK", Celery name NAME runs workerd task
 * TASK. */
typedef struct broker_celery_map {
    char *const *entries;
    size_t n;
} broker_celery_map;

/* What a translated message keeps of its envelope, for its results and follow-ups. */
typedef struct broker_celery_info {
    json_t *envelope;                        /* the whole envelope (owned) */
    json_t *embed;                           /* body[2] (owned reference), or NULL */
    const char *name;                        /* headers.task, borrowed from envelope */
    const char *root_id, *parent_id, *group; /* borrowed from envelope, or NULL */
    int priority;                            /* properties.priority, 0 when absent */
    long long group_index;                   /* headers.group_index, -1 when absent */
} broker_celery_info;

/* Why a message was refused: the dead letter's reason and the FAILURE's exception. */
typedef struct broker_celery_error {
    char reason[256];
    const char *exc_type; /* "ContentDisallowed", "NotRegistered", "InvalidMessage" */
    bool has_id;
    char id[BROKER_ID_MAX + 1];
} broker_celery_error;

/* Reads raw[0..len) (at most lim->max_message_bytes; lim may be NULL) as a Celery
 * envelope. 0: *out is workerd's message text (malloc'd, *outlen bytes) and *info is
 * filled (free it with broker_celery_info_free). -EINVAL: refused, err says why. -ENOMEM.
 * On error *info owns nothing. */
int broker_celery_translate(const char *raw, size_t len, const broker_limits *lim,
                            const broker_celery_map *map, broker_celery_info *info, char **out,
                            size_t *outlen, broker_celery_error *err);

void broker_celery_info_free(broker_celery_info *info);

/* The result document of Celery's Redis backend for r (r->id required):
 *   {"status", "result", "traceback", "children": [], "date_done", "task_id",
 *    "parent_id", "group_id"}
 * A FAILURE, RETRY or REVOKED has as result {"exc_type", "exc_message": [text],
 * "exc_module"}, so that AsyncResult.get() raises it: Celery's own exceptions
 * (NotRegistered, TimeLimitExceeded, SoftTimeLimitExceeded, TaskRevokedError; an expired
 * message is TaskRevokedError "expired") from celery.exceptions, TypeError, ValueError,
 * MemoryError from builtins, any other type as an Exception of that name. info may be
 * NULL (a message that could not be read). With extended (Celery's result_extended) also
 * name, args, kwargs (from msg, may be NULL), worker, retries, queue. A new string, or
 * NULL when out of memory. */
char *broker_celery_result_encode(const broker_result *r, const broker_celery_info *info,
                                  const broker_msg *msg, bool extended, const char *queue);

/* The envelope as it waits in the scheduled set until due (a retry, or an eta reached
 * early): headers.eta = due (ISO 8601, UTC), headers.retries = retries. A new string of
 * *len bytes, or NULL when out of memory. */
char *broker_celery_encode_scheduled(const broker_celery_info *info, double due, int retries,
                                     size_t *len);

/* One thing the ack of a Celery task does besides storing its own result (ack.lua's "+"
 * entries): LPUSH text onto the list key (op 'L': a message published), store text as
 * a result at key (op 'R': a chain's later task marked failed with its predecessor), or
 * count a chord member (op 'J': key is the group's key, text a JSON object for ack.lua:
 * "index", "id", "member" (the [1, id, state, result] Celery's backend keeps), "queue" (the
 * callback's list), "cb_id", "cb_key" (its result key), "env_head" and "env_tail" (its
 * envelope around the base64 body), "body_head", "body_tail" (its body around the list of
 * results; "results": false when immutable: body_head is the whole body), "date_done"). */
typedef struct broker_celery_follow {
    char op;
    char *key;
    char *text;
} broker_celery_follow;

/* What the end of task id does (status SUCCESS with result, or FAILURE/REVOKED with
 * failure_json, its encoded result document's "result" reused): on SUCCESS, every
 * callback in embed.callbacks and the chain's next signature (embed.chain's last) as a
 * protocol v2 message, args (result, *sig.args) unless the signature is immutable, the
 * rest of the chain in its embed; on FAILURE, every errback with args (id, *sig.args)
 * and a FAILURE stored for every later task of the chain that has a task_id; and for a
 * chord member (headers.group and embed.chord) on either, its count ('J'): the ack adds
 * it as Celery's Redis backend does, and the member completing the chord publishes the
 * callback with the ordered results, or stores its ChordError when a member failed.
 * default_queue: the queue a signature without one goes to (its inner name, "=celery").
 * *out: a new array of *n (free with broker_celery_follow_free), possibly empty.
 * 0 or -ENOMEM. */
int broker_celery_follow_up(const broker_celery_info *info, const char *id, bool success,
                            json_t *result, const char *failure_doc, const char *default_queue,
                            broker_celery_follow **out, size_t *n);

void broker_celery_follow_free(broker_celery_follow *f, size_t n);

#endif
