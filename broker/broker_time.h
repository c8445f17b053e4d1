/*
 * broker_time.h - the times a task message may carry (docs/design.md "Task messages"):
 * RFC 3339 timestamps as producers write them ("2026-11-26T10:00:00Z",
 * "2026-11-26T11:00:00.250+01:00"), turned into Unix seconds, and the bounds every time
 * field is held to; and the calendar arithmetic under them (days since the epoch of a
 * date), which the beat file's cron and time zones use too.
 *
 * Pure computation: no I/O, never yields, no global state, callable from any stack and
 * any thread.
 */
#ifndef WORKERD_BROKER_TIME_H
#define WORKERD_BROKER_TIME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The farthest into the future any time field of a message may point: ten years (of
 * 365.25 days). Further is a mistake (milliseconds given for seconds, a typo in a year),
 * refused rather than kept for a decade. */
#define BROKER_TIME_MAX_AHEAD (10.0 * 365.25 * 86400.0)

/* Parse s[0..len) (not necessarily NUL-terminated) as an RFC 3339 date-time with its
 * offset: YYYY-MM-DD, 'T' (or 't' or one space), hh:mm:ss, an optional fraction of any
 * length after '.', then 'Z' (or 'z') or +hh:mm / -hh:mm. Nothing may follow. The fields
 * are range-checked (month 1-12, the day within its month, leap years included, hour
 * 0-23, minute 0-59, second 0-60; a leap second counts as the first second of the next
 * minute, as POSIX time has none), the offset within +-23:59.
 * Returns true with *out = the Unix time (negative before 1970), false when s is not such
 * a timestamp (a date alone, no offset, a field out of range, trailing text). */
bool broker_time_parse_rfc3339(const char *s, size_t len, double *out);

/* Days from 1970-01-01 to the date y-m-d of the proleptic Gregorian calendar (month
 * 1..12, day 1..31; negative before 1970), by Howard Hinnant's days_from_civil: exact for
 * every such date. Also the cron and time-zone arithmetic of the beat file. */
int64_t broker_time_days_from_civil(int64_t y, int m, int d);

#endif
