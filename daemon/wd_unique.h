/*
 * wd_unique.h - the worker's side of unique tasks (broker_unique.h, docs/design.md
 * "Unique tasks"): before a message with unique_for runs or waits in the scheduled set,
 * its job takes the lock of its key, or learns that another message holds it.
 *
 * Runs on a job's greenlet; MAY YIELD (one Redis round trip, retried through outages).
 */
#ifndef WORKERD_WD_UNIQUE_H
#define WORKERD_WD_UNIQUE_H

#include "broker_keys.h"
#include "broker_msg.h"
#include "broker_unique.h"

struct wd_worker;

/* Take the lock for msg, delivered as (tag, queue): retries link errors every 0.5 s
 * until it gets an answer. Returns 0 with *verdict (and, for a duplicate, holder: the
 * original's id) and hash (the lock's, for the final ack's release), or -ECANCELED when
 * a shutdown interrupts, -ENOMEM, or a non-link error from Redis (the message is then
 * left in flight). */
int wd_unique_acquire(struct wd_worker *w, const char *tag, const char *queue,
                      const broker_msg *msg, char hash[41], broker_unique_verdict *verdict,
                      char holder[BROKER_ID_MAX + 1]);

#endif
