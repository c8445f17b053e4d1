/*
 * ctl_pause.c - `workerctl pause`, `resume` and `paused`: stop and restart every worker's
 * taking from a queue (the set PREFIX:paused; docs/design.md "Fetching").
 *
 *   pause QUEUE    SADD: from their next fetch no worker takes the queue's messages; they
 *                  stay queued (producers may go on adding), the running ones finish
 *   resume QUEUE   SREM: the workers take from it again within about two seconds
 *   paused         SMEMBERS, sorted; --json: an array of names
 *
 * QUEUE is a queue's name as -Q gives it, or "=NAME" for the Celery queue NAME (as
 * --celery-queues gives it). A queue need not exist to be paused: pausing it first keeps
 * the first message pushed from running.
 *
 * Runs on the main thread; blocking Redis commands.
 */
#include "ctl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker_cmds.h"

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int ctl_cmd_paused(ctl *c, int argc, char **argv) {
    ctl_args a;
    int code = ctl_parse(c, argc, argv, NULL, &a);
    if (code != CTL_OK)
        return code;
    if (a.npos != 0)
        return ctl_usage(c, "paused takes no arguments");
    broker_batch b = {0};
    broker_cmd_paused(&b, &c->keys);
    redisReply *r = ctl_broker_one(c, &b, &code);
    if (r == NULL)
        return code;
    if (r->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(r);
        return ctl_error(CTL_FAIL, "unexpected reply reading the paused queues");
    }
    const char **names = calloc(r->elements ? r->elements : 1, sizeof *names);
    if (names == NULL) {
        freeReplyObject(r);
        return ctl_error(CTL_FAIL, "out of memory");
    }
    size_t n = 0;
    for (size_t i = 0; i < r->elements; i++)
        if (r->element[i]->type == REDIS_REPLY_STRING)
            names[n++] = r->element[i]->str;
    qsort(names, n, sizeof *names, cmp_str);
    if (c->json) {
        json_t *all = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(all, json_string(names[i]));
        ctl_print_json(all);
    } else if (n == 0) {
        printf("no queue is paused\n");
    } else {
        for (size_t i = 0; i < n; i++) {
            ctl_put_escaped(names[i], strlen(names[i]));
            putchar('\n');
        }
    }
    free(names);
    freeReplyObject(r);
    return CTL_OK;
}

/* pause (resume false) or resume QUEUE. */
static int pause_resume(ctl *c, int argc, char **argv, bool resume) {
    const char *verb = resume ? "resume" : "pause";
    ctl_args a;
    int code = ctl_parse(c, argc, argv, NULL, &a);
    if (code != CTL_OK)
        return code;
    if (a.npos != 1)
        return ctl_usage(c, "%s needs exactly one queue name", verb);
    const char *queue = a.pos[0], *why = broker_check_queue_ref(queue);
    if (why != NULL)
        return ctl_usage(c, "%s", why);
    broker_batch b = {0};
    if (resume)
        broker_cmd_resume(&b, &c->keys, queue);
    else
        broker_cmd_pause(&b, &c->keys, queue);
    redisReply *r = ctl_broker_one(c, &b, &code);
    if (r == NULL)
        return code;
    long long changed = 0;
    int rc = broker_reply_integer(r, &changed);
    freeReplyObject(r);
    if (rc != 0)
        return ctl_error(CTL_FAIL, "%s: unexpected reply from Redis", verb);
    if (c->json)
        ctl_print_json(json_pack("{s:s, s:b, s:b}", "queue", queue, "paused", !resume, "changed",
                                 changed != 0));
    else if (resume)
        printf(changed ? "resumed queue '%s': the workers take from it again\n"
                       : "queue '%s' was not paused\n",
               queue);
    else
        printf(changed ? "paused queue '%s': no worker takes from it until `workerctl resume`\n"
                       : "queue '%s' was paused already\n",
               queue);
    return CTL_OK;
}

int ctl_cmd_pause(ctl *c, int argc, char **argv) {
    return pause_resume(c, argc, argv, false);
}

int ctl_cmd_resume(ctl *c, int argc, char **argv) {
    return pause_resume(c, argc, argv, true);
}
