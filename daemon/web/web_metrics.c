/*
 * web_metrics.c - the dashboard's GET /metrics: the fleet in Prometheus text, summed from
 * Redis (web_fleet.c), not from any one worker: the tasks processed and failed by every
 * worker (the heartbeats' counters), workers alive and dead, messages in flight, queue
 * depths, dead letters, scheduled messages, Redis's memory and whether it answered.
 */
#include "web.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void metrics_line(FILE *f, const char *name, const char *help, const char *type,
                         long long v) {
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n%s %lld\n", name, help, name, type, name, v);
}

/* A label value as the exposition format wants it: \, " and newline escaped. */
static void label(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '\\' || *s == '"')
            fputc('\\', f), fputc(*s, f);
        else if (*s == '\n')
            fputs("\\n", f);
        else
            fputc(*s, f);
    }
}

void web_metrics_page(struct web *w, struct web_answer *ans) {
    struct fleet f;
    struct counts c;
    int rc = web_fleet_load(w, &f);
    if (rc == 0)
        rc = web_counts_load(w, &c);
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    if (!out) {
        web_fleet_free(&f);
        if (rc == 0)
            web_counts_free(&c);
        web_error(ans, 500, "out of memory");
        return;
    }
    metrics_line(out, "workerd_fleet_redis_up", "1 when the dashboard could read Redis.", "gauge",
                 rc == 0);
    if (rc == 0) {
        metrics_line(out, "workerd_fleet_tasks_processed_total",
                     "Tasks that ended, summed over every worker (their heartbeats add them).",
                     "counter", c.processed);
        metrics_line(out, "workerd_fleet_tasks_failed_total",
                     "Tasks that did not end in SUCCESS, summed over every worker.", "counter",
                     c.failed);
        metrics_line(out, "workerd_fleet_workers_alive", "Workers with a live heartbeat.", "gauge",
                     f.alive);
        metrics_line(out, "workerd_fleet_workers_dead",
                     "Registered workers whose heartbeat expired (not yet recovered).", "gauge",
                     f.dead);
        metrics_line(out, "workerd_fleet_tasks_in_flight", "Messages workers hold.", "gauge",
                     f.in_flight);
        metrics_line(out, "workerd_fleet_dead_letters", "Entries on the dead-letter list.", "gauge",
                     c.dead);
        metrics_line(out, "workerd_fleet_scheduled",
                     "Messages waiting for a countdown, eta or "
                     "retry.",
                     "gauge", c.scheduled);
        metrics_line(out, "workerd_fleet_redis_used_memory_bytes", "Redis's used_memory.", "gauge",
                     json_integer_value(json_object_get(c.redis, "used_memory")));
        fputs("# HELP workerd_fleet_queue_depth Messages pending per queue.\n"
              "# TYPE workerd_fleet_queue_depth gauge\n",
              out);
        size_t i;
        json_t *q;
        json_array_foreach(f.queues, i, q) {
            fputs("workerd_fleet_queue_depth{queue=\"", out);
            label(out, json_string_value(json_object_get(q, "name")));
            fprintf(out, "\"} %lld\n", (long long)json_integer_value(json_object_get(q, "depth")));
        }
        web_counts_free(&c);
    }
    web_fleet_free(&f);
    fclose(out);
    ans->status = 200;
    ans->type = "text/plain; version=0.0.4; charset=utf-8";
    ans->body = buf;
    ans->len = len;
}
