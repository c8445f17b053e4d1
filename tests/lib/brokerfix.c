/*
 * brokerfix.c - the broker tests' Redis fixture (see brokerfix.h): plain hiredis, every
 * unexpected reply a test failure.
 */
#include "brokerfix.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

test_redis bfix_server;
redisContext *bfix_rc;

void bfix_start(void) {
    test_redis_start(&bfix_server, NULL);
    bfix_rc = redisConnect("127.0.0.1", bfix_server.port);
    ASSERT(bfix_rc != NULL && bfix_rc->err == 0);
}

void bfix_stop(void) {
    redisFree(bfix_rc);
    bfix_rc = NULL;
    test_redis_stop(&bfix_server);
}

redisReply *bfix_cmd(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(bfix_rc, fmt, ap);
    va_end(ap);
    ASSERT(r != NULL && r->type != REDIS_REPLY_ERROR);
    return r;
}

long long bfix_cmd_int(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(bfix_rc, fmt, ap);
    va_end(ap);
    ASSERT(r != NULL && r->type == REDIS_REPLY_INTEGER);
    long long v = r->integer;
    freeReplyObject(r);
    return v;
}

const char *bfix_cmd_str(const char *fmt, ...) {
    static char buf[4096];
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(bfix_rc, fmt, ap);
    va_end(ap);
    ASSERT(r != NULL);
    if (r->type == REDIS_REPLY_NIL || (r->type == REDIS_REPLY_ARRAY && r->elements == 0))
        snprintf(buf, sizeof buf, "(nil)");
    else if (r->type == REDIS_REPLY_ARRAY && r->element[0]->type == REDIS_REPLY_STRING)
        snprintf(buf, sizeof buf, "%s", r->element[0]->str);
    else if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS)
        snprintf(buf, sizeof buf, "%s", r->str);
    else
        test__fail(__FILE__, __LINE__, "unexpected reply type %d", r->type);
    freeReplyObject(r);
    return buf;
}

double bfix_redis_now(void) {
    redisReply *r = bfix_cmd("TIME");
    double t = atof(r->element[0]->str) + atof(r->element[1]->str) / 1e6;
    freeReplyObject(r);
    return t;
}

redisReply *bfix_eval(const char *name, const char *sha1, const char *text, size_t len,
                      const char **args) {
    enum { MAX_ARGS = 256 };
    const char *argv[MAX_ARGS];
    size_t lens[MAX_ARGS];
    int n = 0;
    argv[n++] = "EVALSHA";
    argv[n++] = sha1;
    argv[n++] = "0";
    for (; *args != NULL; args++) {
        ASSERT(n < MAX_ARGS);
        argv[n++] = *args;
    }
    for (int i = 0; i < n; i++)
        lens[i] = strlen(argv[i]);
    redisReply *r = redisCommandArgv(bfix_rc, n, argv, lens);
    ASSERT(r != NULL);
    if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0) {
        freeReplyObject(r);
        argv[0] = "EVAL";
        argv[1] = text;
        lens[0] = 4;
        lens[1] = len;
        r = redisCommandArgv(bfix_rc, n, argv, lens);
        ASSERT(r != NULL);
    }
    if (r->type == REDIS_REPLY_ERROR)
        test__fail(__FILE__, __LINE__, "%s: %s", name, r->str);
    return r;
}
