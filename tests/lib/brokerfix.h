/*
 * brokerfix.h - the fixture of the broker tests that talk to a real redis-server: one
 * server per test and one plain synchronous hiredis connection to it, commands whose
 * failure fails the test, and a Lua script run the way the daemon runs it (EVALSHA, then
 * EVAL when Redis answers NOSCRIPT). Uses hiredis and testlib only, never the broker
 * library: a caller passes a script's text and digest (brokerfix_script.h does it for a
 * broker_script_id). Single-threaded test programs; one fixture at a time.
 */
#ifndef WORKERD_TESTS_BROKERFIX_H
#define WORKERD_TESTS_BROKERFIX_H

#include <stddef.h>

#include <hiredis/hiredis.h>

#include "testlib.h"

/* The running server and the connection to it, between bfix_start and bfix_stop. */
extern test_redis bfix_server;
extern redisContext *bfix_rc;

/* Start a redis-server and connect to it. */
void bfix_start(void);

/* Disconnect and stop the server. */
void bfix_stop(void);

/* A command that must not fail; the reply must be freed. */
redisReply *bfix_cmd(const char *fmt, ...);

/* A command whose reply must be an integer. */
long long bfix_cmd_int(const char *fmt, ...);

/* The string reply of a command (or the first element of an array reply) in a static
 * buffer, "(nil)" for nil or an empty array; any other reply fails the test. */
const char *bfix_cmd_str(const char *fmt, ...);

/* The server's clock, unix seconds. */
double bfix_redis_now(void);

/* Run a script (name for the failure message, sha1, text of len bytes) as the daemon
 * does: EVALSHA with no keys and args (ending with NULL), EVAL on NOSCRIPT. An error
 * reply fails the test; the reply must be freed. */
redisReply *bfix_eval(const char *name, const char *sha1, const char *text, size_t len,
                      const char **args);

#endif
