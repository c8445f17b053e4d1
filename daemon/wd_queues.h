/*
 * wd_queues.h - the worker's queue list as one string: "high,default,low", in priority
 * order, the form the start-up log, systemd's STATUS= and the heartbeat's "queues" field
 * show (queue names never contain a comma: broker_keys.h refuses them).
 *
 * Pure computation; never yields; callable from any stack; thread-safe.
 */
#ifndef WORKERD_WD_QUEUES_H
#define WORKERD_WD_QUEUES_H

#include <stddef.h>

/* The n names joined with commas, as a new string (free it), or NULL when out of memory.
 * n 0 gives "". */
char *wd_queues_join(const char *const *queues, size_t n);

#endif
