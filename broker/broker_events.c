/*
 * broker_events.c - the XADD of one task event (broker_events.h).
 *
 * Pure computation on the caller's stack; never yields; no global state.
 */
#include "broker_events.h"

#include <stdio.h>

int broker_events_xadd(broker_events_cmd *cmd, const char *key, const broker_event *ev) {
    const char **argv = cmd->argv;
    int n = 0;
    argv[n++] = "XADD";
    argv[n++] = key;
    argv[n++] = "MAXLEN";
    argv[n++] = "~";
    snprintf(cmd->maxlen, sizeof cmd->maxlen, "%d", BROKER_EVENTS_MAXLEN);
    argv[n++] = cmd->maxlen;
    argv[n++] = "*";
    argv[n++] = "type";
    argv[n++] = ev->type;
    if (ev->id) {
        argv[n++] = "id";
        argv[n++] = ev->id;
    }
    if (ev->task) {
        argv[n++] = "task";
        argv[n++] = ev->task;
    }
    argv[n++] = "worker";
    argv[n++] = ev->worker;
    snprintf(cmd->time, sizeof cmd->time, "%.6f", ev->time);
    argv[n++] = "time";
    argv[n++] = cmd->time;
    if (ev->queue) {
        argv[n++] = "queue";
        argv[n++] = ev->queue;
    }
    if (ev->runtime >= 0) {
        snprintf(cmd->runtime, sizeof cmd->runtime, "%.6f", ev->runtime);
        argv[n++] = "runtime";
        argv[n++] = cmd->runtime;
    }
    if (ev->error) {
        argv[n++] = "error";
        argv[n++] = ev->error;
    }
    cmd->argc = n;
    return n;
}
