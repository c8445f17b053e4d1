/*
 * broker_sched.c - the move of due messages from the scheduled set to their queues
 * (move_due.lua says how), and reading its reply.
 *
 * Runs on a greenlet of the connection's hub; every call is one round trip.
 */
#include "broker_sched.h"

#include "broker_cmds.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int broker_sched_move(broker_conn *conn, const char *prefix, const char *wid, size_t n,
                      broker_sched_moved *out, double timeout) {
    char count[32];
    snprintf(count, sizeof count, "%zu", n);
    const char *argv[] = {prefix, count, wid};
    redisReply *r = NULL;
    int rc = broker_conn_eval(conn, &r, timeout, BROKER_SCRIPT_MOVE_DUE, 3, argv, NULL);
    if (rc != 0)
        return rc;
    rc = -EPROTO;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 5 &&
        r->element[0]->type == REDIS_REPLY_INTEGER && r->element[1]->type == REDIS_REPLY_INTEGER) {
        double now = broker_reply_clock(r->element + 3);
        double due = broker_reply_number_or_zero(r->element[2]);
        if (now >= 0 && due >= 0) {
            *out = (broker_sched_moved){
                .moved = (size_t)r->element[0]->integer,
                .dead = (size_t)r->element[1]->integer,
                .next_due = due,
                .redis_now = now,
            };
            rc = 0;
        }
    }
    freeReplyObject(r);
    return rc;
}
