/*
 * wd_worker.h - one green worker: consumes its queues from Redis, runs each message as a
 * task on a greenlet from a pool of --concurrency, stores results, and shuts down warm or
 * cold on signals, as docs/design.md "Delivery" describes.
 *
 * wd_worker_run is the main greenlet of the process (green_run's main_fn): it returns when
 * the worker has shut down. Signals (SIGTERM, SIGINT, SIGQUIT) are watched on the hub's
 * libev loop: SIGTERM or a first SIGINT starts a warm shutdown (stop fetching, let running
 * tasks finish for up to --shutdown-timeout seconds, put back the rest); a second SIGINT,
 * or SIGQUIT, a cold one (put back everything now).
 */
#ifndef WORKERD_WD_WORKER_H
#define WORKERD_WD_WORKER_H

#include "wd_options.h"

#include <stdbool.h>

/* Called on SIGHUP, on the hub (it must not yield): re-read the settings and apply what
 * can change while running. Returns true when the new settings need a restart (queues,
 * broker, concurrency, ...): the worker then shuts down warm and wd_worker_run returns
 * WD_WORKER_RESTART, for the caller to start again with the new settings. */
typedef bool (*wd_reload_fn)(void *arg);

/* wd_worker_run's return after a reload that asked for a restart: every message was
 * finished or put back, as in a warm shutdown. */
#define WD_WORKER_RESTART 100

/* Run the worker with opts (borrowed for the whole run). reload (may be NULL) is called
 * on SIGHUP with reload_arg. Returns the process exit code: 0 after a clean shutdown
 * (also one asked for while Redis was still unreachable at start: an unreachable Redis is
 * waited for, not a failure), 1 when it could not put messages back or could not start:
 * each step of the start-up that fails logs one line "start-up failed: <what>: <why>",
 * and the worker never says it is ready. */
int wd_worker_run(const struct wd_options *opts, wd_reload_fn reload, void *reload_arg);

#endif
