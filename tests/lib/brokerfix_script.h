/*
 * brokerfix_script.h - bfix_eval for one of the broker's scripts, by its id. Header-only
 * because it needs the broker library, which testlib does not link: include it only from
 * the broker tests.
 */
#ifndef WORKERD_TESTS_BROKERFIX_SCRIPT_H
#define WORKERD_TESTS_BROKERFIX_SCRIPT_H

#include "broker_scripts.h"
#include "brokerfix.h"

/* Run script id on the fixture's connection; args ends with NULL; the reply must be
 * freed. */
static inline redisReply *bfix_run(broker_script_id id, const char **args) {
    const broker_script *s = broker_script_get(id);
    return bfix_eval(s->name, s->sha1, s->text, s->len, args);
}

#endif
