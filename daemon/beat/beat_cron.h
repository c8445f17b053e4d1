/*
 * beat_cron.h - five-field cron expressions ("m h dom mon dow") and their next fire time in
 * a time zone (beat_tz.h).
 *
 * Each field is a comma list of items: `*`, a number, a range `a-b`, each optionally with
 * a step `/n` (`a/n` means a to the field's maximum, step n, as Vixie cron reads it). Months
 * may be written jan..dec and weekdays sun..sat (any case, also in ranges); weekday 7 is
 * Sunday too. Vixie semantics for the two day fields: when both are restricted (neither
 * starts with `*`), a day matches when EITHER matches ("0 0 1 * mon": the 1st and every
 * Monday); when one of them starts with `*`, the other alone decides.
 *
 * Local times are turned into instants as cronie and ISC cron do across daylight-saving
 * changes: a local time the clocks skip (02:30 on the spring-forward night in Berlin)
 * fires at the instant the gap ends (03:00 local, once however many of its times fell in
 * the gap); a local time that occurs twice (the fall-back hour) fires at its first
 * occurrence only, unless the hour field is `*` (an "every N minutes" schedule), which
 * fires at both, so it keeps its pace through the repeated hour. Offsets are assumed to
 * change by at most 3 hours at a transition (true of every zone in tzdata since 1900).
 *
 * Pure computation: never yields, thread-safe on distinct or read-only structs.
 */
#ifndef WORKERD_BEAT_CRON_H
#define WORKERD_BEAT_CRON_H

#include "beat_tz.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct beat_cron {
    uint64_t minute; /* bit i: minute i (0..59) */
    uint32_t hour;   /* 0..23 */
    uint32_t dom;    /* 1..31 */
    uint16_t month;  /* 1..12 */
    uint8_t dow;     /* 0..6, Sunday 0 */
    bool dom_star;   /* the field started with '*' */
    bool dow_star;
    bool hour_star;
} beat_cron;

/* Parse expr into *c. Returns 0, or -EINVAL with a reason in why naming the field and the
 * value ("minute: 61 is out of range 0-59"), also for an expression that can never fire
 * ("0 0 30 2 *": day 30 of February). */
int beat_cron_parse(const char *expr, beat_cron *c, char *why, size_t whylen);

/* The first instant strictly after t (unix seconds) at which c fires in tz, or -1 when
 * there is none within 30 years. */
int64_t beat_cron_next(const beat_cron *c, const beat_tz *tz, int64_t t);

#endif
