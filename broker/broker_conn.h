/*
 * broker_conn.h - a Redis connection that survives Redis: it reconnects by itself, with
 * backoff and jitter, and callers wait (parked, with their own deadline) while it is down.
 *
 * Many greenlets share one broker_conn. When a call finds the link broken, it returns the
 * error to its caller (the command may or may not have run: the caller decides whether a
 * retry is safe) and the connection's own greenlet starts reconnecting: first at once,
 * then after 0.1 s, doubling up to 5 s, each delay jittered by +-20 % so that a fleet of
 * workers does not stampede a restarted Redis. Every change of state (up, down with the
 * reason) is reported once through the state callback, which the daemon logs.
 *
 * Scripts: broker_conn_eval runs one of broker_scripts.h's scripts with EVALSHA and falls
 * back to SCRIPT LOAD + EVALSHA when Redis answers NOSCRIPT (a restarted or flushed
 * Redis has forgotten them).
 *
 * All calls MAY YIELD and must be made from greenlets of the hub that created the
 * connection; none is thread-safe. Errors are green_redis's (-ECONNRESET, -EIO, ...),
 * -ETIMEDOUT, -ECANCELED, or -ESHUTDOWN once broker_conn_close has begun.
 */
#ifndef WORKERD_BROKER_CONN_H
#define WORKERD_BROKER_CONN_H

#include "broker_scripts.h"

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct broker_conn broker_conn;

/* The reconnect backoff above, for callers that wait out other troubles of Redis on the
 * same schedule (the acker, while Redis refuses writes): the first delay, the most, and
 * the jitter (each delay times 1 +- this). */
#define BROKER_CONN_BACKOFF_FIRST 0.1
#define BROKER_CONN_BACKOFF_MAX 5.0
#define BROKER_CONN_BACKOFF_JITTER 0.2

/* Called on the connection's greenlet at every change: up (err NULL) or down (err says
 * why, with no password in it). Must not yield. */
typedef void (*broker_conn_state_fn)(void *arg, const char *name, bool up, const char *err);

/* Create the connection and its reconnecting greenlet; connecting starts at once in the
 * background. name appears in state reports ("broker", "blocking:default"). url is
 * copied. Does not yield. Returns NULL on ENOMEM. */
broker_conn *broker_conn_new(const char *url, const char *name, broker_conn_state_fn on_state,
                             void *arg);

/* Wait until connected or the deadline (timeout seconds, < 0 forever). Returns 0,
 * -ETIMEDOUT, -ECANCELED, -ESHUTDOWN. */
int broker_conn_wait_up(broker_conn *c, double timeout);

bool broker_conn_is_up(const broker_conn *c);

/* How many times the link went down since creation (for metrics). */
unsigned long broker_conn_drops(const broker_conn *c);

/* One command as an argument vector (argvlen NULL: C strings). Waits for the link first
 * (within timeout). On 0, *reply is the caller's (freeReplyObject); a Redis error reply is
 * a success with a REDIS_REPLY_ERROR reply. */
int broker_conn_call(broker_conn *c, redisReply **reply, double timeout, int argc,
                     const char **argv, const size_t *argvlen);

/* n commands in one round trip; see green_redis_pipeline. */
int broker_conn_pipeline(broker_conn *c, size_t n, const int *argcs, const char **const *argvs,
                         const size_t *const *argvlens, redisReply **replies, double timeout);

/* Run a script (no KEYS; the scripts build keys from their ARGV) with EVALSHA, loading it
 * when Redis does not know it. An error raised by the script is a REDIS_REPLY_ERROR. */
int broker_conn_eval(broker_conn *c, redisReply **reply, double timeout, broker_script_id id,
                     int argc, const char **argv, const size_t *argvlen);

/* Stop reconnecting, fail waiters with -ESHUTDOWN, close and free. Does not yield...
 * except that it joins the connection's greenlet, so: MAY YIELD. */
void broker_conn_close(broker_conn *c);

/* True for errors that mean "the link is (or was) down", where retrying after
 * reconnection makes sense. */
bool broker_conn_error_is_link(int err);

#endif
