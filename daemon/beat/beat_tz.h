/*
 * beat_tz.h - time zones for cron schedules, read from the system's zoneinfo files without
 * touching the process's TZ (no setenv, no tzset, no localtime_r): the worker's threads and
 * every other part of it keep seeing UTC-based times, and two entries in two zones never
 * race on a global.
 *
 * A zone is read from <dir>/<name>, dir being $TZDIR when set, else /usr/share/zoneinfo
 * (Debian's tzdata). The file is TZif (RFC 8536): version 2 and later carry 64-bit
 * transition times, and a footer, a POSIX TZ string (TZ=CET-1CEST,M3.5.0,M10.5.0/3), that
 * says what happens after the last transition of the table; version 1 files (32-bit times
 * only, no footer) are read too. "UTC" (and "Etc/UTC", "Z") need no file.
 *
 * A name is refused unless it looks like a zone name: letters, digits, '_', '-', '+' and
 * '/' between components, no "." component, no leading '/', at most 255 bytes, so that a
 * beat file cannot make workerd read an arbitrary file.
 *
 * Pure computation after loading: beat_tz_offset never fails, never yields, and is
 * thread-safe on a loaded zone (it only reads). beat_tz_load does blocking file I/O.
 */
#ifndef WORKERD_BEAT_TZ_H
#define WORKERD_BEAT_TZ_H

#include <stddef.h>
#include <stdint.h>

typedef struct beat_tz beat_tz;

/* Load zone name. Returns 0 with *out set (beat_tz_free it), -ENOENT when no such zone
 * exists, -EINVAL for a name that is not a zone name or a file that is not a zone, or
 * -ENOMEM; on error why holds a short reason ("no such time zone in /usr/share/zoneinfo"). */
int beat_tz_load(const char *name, beat_tz **out, char *why, size_t whylen);

/* Parse a TZif image data[0..len) (what beat_tz_load reads from the file). Same returns. */
int beat_tz_parse(const void *data, size_t len, beat_tz **out, char *why, size_t whylen);

/* The zone's offset from UTC at instant t (unix seconds), in seconds east of Greenwich:
 * local time = t + offset. */
int32_t beat_tz_offset(const beat_tz *tz, int64_t t);

/* Free a zone (NULL is fine). */
void beat_tz_free(beat_tz *tz);

/* The date of a number of days since 1970-01-01, in the proleptic Gregorian calendar
 * (month 1..12): the inverse of broker_time_days_from_civil (broker_time.h), which the
 * cron arithmetic uses too. */
void beat_civil_from_days(int64_t days, int64_t *y, int *m, int *d);

#endif
