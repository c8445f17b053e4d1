/*
 * beat_file.h - the beat file (--beat FILE): the periodic tasks every worker running it
 * enqueues, each due time exactly once over all of them (docs/design.md "Periodic tasks").
 *
 * The file is a JSON list of entries:
 *   {"name": "sync", "every": 60, "message": {"task": "http.get", "args": [...]}}
 *   {"name": "report", "cron": "0 7 * * mon-fri", "timezone": "Europe/Berlin",
 *    "message": {"task": "report", "queue": "low"}, "catch_up": "all"}
 * name        1..100 bytes of letters, digits, '.', '_' and '-'; unique in the file
 * every       whole seconds, 1..31536000: ticks at the multiples of it since the epoch
 * cron        five fields (beat_cron.h); exactly one of every and cron
 * timezone    with cron only, a zoneinfo name (beat_tz.h); default UTC
 * message     a task message without "id" (each run's id is beat:<name>:<tick>), checked
 *             as a worker checks a message (broker_msg.h); its "queue" is where it goes
 *             (default "default")
 * catch_up    after a downtime: "one" (default; the newest missed tick runs, once), "all"
 *             (every missed tick runs) or "none" (a tick more than BEAT_LATE_MAX late is
 *             dropped)
 * Anything else (an unknown key, a wrong type, a duplicate name) refuses the whole file,
 * with a message naming the entry and the field.
 *
 * Loading does blocking file I/O (the file, its zones); the rest is pure computation.
 * Never yields; not thread-safe on one schedule while it is being freed.
 */
#ifndef WORKERD_BEAT_FILE_H
#define WORKERD_BEAT_FILE_H

#include "beat_cron.h"
#include "beat_tz.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define BEAT_NAME_MAX 100
#define BEAT_EVERY_MAX 31536000
/* catch_up "none": a tick fired later than this after its time counts as missed. */
#define BEAT_LATE_MAX 60

enum beat_catch_up { BEAT_CATCH_UP_ONE, BEAT_CATCH_UP_ALL, BEAT_CATCH_UP_NONE };

typedef struct beat_entry {
    char *name;
    int64_t every;  /* seconds; 0: a cron entry */
    char *cron;     /* the expression as written, or NULL */
    beat_cron spec; /* parsed cron */
    char *tz_name;  /* "UTC" when none was given */
    beat_tz *tz;
    enum beat_catch_up catch_up;
    char *queue;     /* the message's queue, or "default" */
    json_t *message; /* the message as written (no id) */
} beat_entry;

typedef struct beat_schedule {
    beat_entry *entries;
    size_t n;
} beat_schedule;

/* Read and check the file at path. Returns 0 with *out set (beat_schedule_free it), or
 * -EINVAL / -ENOENT / -ENOMEM with one line in err (no newline) naming the entry and field:
 *     /etc/workerd/beat.json: entry 2 ("hourly"): field "cron": minute: 61 is out of range 0-59
 * now (unix seconds) is what the messages' times are checked against. */
int beat_schedule_load(const char *path, double now, beat_schedule **out, char *err, size_t errlen);

/* The same from text[0..len) (path only names it in messages). */
int beat_schedule_parse(const char *text, size_t len, const char *path, double now,
                        beat_schedule **out, char *err, size_t errlen);

void beat_schedule_free(beat_schedule *s);

/* The entry's first tick strictly after t, or -1 (a cron with no time left). */
int64_t beat_entry_next(const beat_entry *e, int64_t t);

/* The entry's newest tick at or before t and after `after`, or -1 when there is none. */
int64_t beat_entry_newest(const beat_entry *e, int64_t after, int64_t t);

/* "beat:<name>:<tick>" into buf (room for BEAT_ID_MAX + 1). */
#define BEAT_ID_MAX (BEAT_NAME_MAX + 32)
void beat_entry_id(const beat_entry *e, int64_t tick, char *buf);

/* The message of the run due at tick: the entry's message with "id" set. A new string of
 * *len bytes (free it), or NULL when out of memory. */
char *beat_entry_message(const beat_entry *e, int64_t tick, size_t *len);

/* How the entry's schedule reads in messages: "every 60 s", "cron 0 7 * * * (Europe/Berlin)".
 * Into buf. */
void beat_entry_describe(const beat_entry *e, char *buf, size_t len);

#endif
