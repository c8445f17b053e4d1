/*
 * test_beat_cron.c - the beat's calendar without waiting for it: time zone offsets read
 * from the system's zoneinfo (Europe/Berlin's 2026 changes, Australia/Sydney's on the
 * other side of the year, UTC, times past the table that only the footer rule covers), a
 * zone made of the footer rule alone, cron fields, Vixie's day rule, the next fire times
 * across daylight-saving gaps and overlaps, and the cron expressions a beat file must
 * refuse.
 */
#include "testlib.h"

#include "beat_cron.h"
#include "beat_tz.h"
#include "broker_time.h"

#include <errno.h>
#include <stdint.h>

/* "2026-03-29 01:00" as a UTC instant. */
static int64_t utc(int y, int mo, int d, int h, int mi) {
    return broker_time_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60;
}

static beat_tz *zone(const char *name) {
    beat_tz *tz = NULL;
    char why[256] = "";
    int rc = beat_tz_load(name, &tz, why, sizeof why);
    if (rc != 0)
        fprintf(stderr, "%s: %s\n", name, why);
    ASSERT_EQ(rc, 0);
    return tz;
}

static beat_cron cron(const char *expr) {
    beat_cron c;
    char why[256] = "";
    int rc = beat_cron_parse(expr, &c, why, sizeof why);
    if (rc != 0)
        fprintf(stderr, "%s: %s\n", expr, why);
    ASSERT_EQ(rc, 0);
    return c;
}

static void refused(const char *expr, const char *reason) {
    beat_cron c;
    char why[256] = "";
    ASSERT_EQ(beat_cron_parse(expr, &c, why, sizeof why), -EINVAL);
    if (strstr(why, reason) == NULL)
        fprintf(stderr, "'%s' refused with '%s', expected '%s'\n", expr, why, reason);
    ASSERT(strstr(why, reason) != NULL);
}

TEST(berlin_offsets_change_on_the_2026_dates) {
    beat_tz *tz = zone("Europe/Berlin");
    ASSERT_EQ(beat_tz_offset(tz, utc(2026, 1, 15, 12, 0)), 3600);
    ASSERT_EQ(beat_tz_offset(tz, utc(2026, 3, 29, 1, 0) - 1), 3600);
    ASSERT_EQ(beat_tz_offset(tz, utc(2026, 3, 29, 1, 0)), 7200);
    ASSERT_EQ(beat_tz_offset(tz, utc(2026, 10, 25, 1, 0) - 1), 7200);
    ASSERT_EQ(beat_tz_offset(tz, utc(2026, 10, 25, 1, 0)), 3600);
    /* Past any table: the footer's rule (last Sunday of March and of October). */
    ASSERT_EQ(beat_tz_offset(tz, utc(2080, 7, 1, 0, 0)), 7200);
    ASSERT_EQ(beat_tz_offset(tz, utc(2080, 3, 31, 1, 0) - 1), 3600);
    ASSERT_EQ(beat_tz_offset(tz, utc(2080, 3, 31, 1, 0)), 7200);
    ASSERT_EQ(beat_tz_offset(tz, utc(2080, 12, 24, 0, 0)), 3600);
    beat_tz_free(tz);
}

TEST(sydney_has_summer_time_around_the_new_year) {
    beat_tz *tz = zone("Australia/Sydney");
    ASSERT_EQ(beat_tz_offset(tz, utc(2026, 1, 15, 0, 0)), 11 * 3600);
    ASSERT_EQ(beat_tz_offset(tz, utc(2026, 4, 4, 16, 0) - 1), 11 * 3600);
    ASSERT_EQ(beat_tz_offset(tz, utc(2026, 4, 4, 16, 0)), 10 * 3600);
    ASSERT_EQ(beat_tz_offset(tz, utc(2026, 7, 1, 0, 0)), 10 * 3600);
    ASSERT_EQ(beat_tz_offset(tz, utc(2026, 10, 3, 16, 0) - 1), 10 * 3600);
    ASSERT_EQ(beat_tz_offset(tz, utc(2026, 10, 3, 16, 0)), 11 * 3600);
    ASSERT_EQ(beat_tz_offset(tz, utc(2090, 1, 1, 0, 0)), 11 * 3600);
    beat_tz_free(tz);
}

TEST(utc_needs_no_file) {
    beat_tz *tz = zone("UTC");
    ASSERT_EQ(beat_tz_offset(tz, utc(2026, 7, 1, 0, 0)), 0);
    beat_tz_free(tz);
}

/* A TZif v2 image with no transitions and this footer: the rule alone decides. */
static beat_tz *footer_only(const char *rule) {
    unsigned char buf[256] = {0};
    size_t n = 0;
    for (int pass = 0; pass < 2; pass++) {
        memcpy(buf + n, "TZif2", 5);
        buf[n + 39] = 1; /* typecnt */
        buf[n + 43] = 4; /* charcnt */
        n += 44;
        n += 6 + 4; /* one ttinfo (offset 0) and "UTC\0" */
    }
    buf[n++] = '\n';
    memcpy(buf + n, rule, strlen(rule));
    n += strlen(rule);
    buf[n++] = '\n';
    beat_tz *tz = NULL;
    char why[128];
    ASSERT_EQ(beat_tz_parse(buf, n, &tz, why, sizeof why), 0);
    return tz;
}

TEST(a_footer_rule_alone_gives_the_southern_changes) {
    beat_tz *tz = footer_only("AEST-10AEDT,M10.1.0,M4.1.0/3");
    ASSERT_EQ(beat_tz_offset(tz, utc(2026, 4, 4, 16, 0) - 1), 11 * 3600);
    ASSERT_EQ(beat_tz_offset(tz, utc(2026, 4, 4, 16, 0)), 10 * 3600);
    ASSERT_EQ(beat_tz_offset(tz, utc(2026, 10, 3, 16, 0) - 1), 10 * 3600);
    ASSERT_EQ(beat_tz_offset(tz, utc(2026, 10, 3, 16, 0)), 11 * 3600);
    beat_tz_free(tz);
    tz = footer_only("<-03>3");
    ASSERT_EQ(beat_tz_offset(tz, utc(2026, 7, 1, 0, 0)), -3 * 3600);
    beat_tz_free(tz);
}

TEST(unknown_and_malformed_zones_are_refused) {
    beat_tz *tz = NULL;
    char why[256];
    ASSERT_EQ(beat_tz_load("Mars/Olympus_Mons", &tz, why, sizeof why), -ENOENT);
    ASSERT(strstr(why, "no such time zone") != NULL);
    ASSERT_EQ(beat_tz_load("../../etc/passwd", &tz, why, sizeof why), -EINVAL);
    ASSERT_EQ(beat_tz_load("/etc/passwd", &tz, why, sizeof why), -EINVAL);
    ASSERT_EQ(beat_tz_parse("not a zone at all, really not at all, no no no no", 50, &tz, why,
                            sizeof why),
              -EINVAL);
    ASSERT(tz == NULL);
}

TEST(fields_ranges_steps_lists_and_names) {
    beat_cron c = cron("*/15 9-17/4 1,15 jan,Jul-AUG mon-fri");
    ASSERT_EQ(c.minute, (1ULL << 0) | (1ULL << 15) | (1ULL << 30) | (1ULL << 45));
    ASSERT_EQ(c.hour, (1u << 9) | (1u << 13) | (1u << 17));
    ASSERT_EQ(c.dom, (1u << 1) | (1u << 15));
    ASSERT_EQ(c.month, (1u << 1) | (1u << 7) | (1u << 8));
    ASSERT_EQ(c.dow, 0x3e);
    c = cron("5/20 0 * * 7");
    ASSERT_EQ(c.minute, (1ULL << 5) | (1ULL << 25) | (1ULL << 45));
    ASSERT_EQ(c.dow, 1); /* 7 is Sunday */
}

TEST(bad_expressions_name_the_field) {
    refused("61 * * * *", "minute: 61 is out of range 0-59");
    refused("* 24 * * *", "hour: 24 is out of range 0-23");
    refused("* * 0 * *", "day of month: 0 is out of range 1-31");
    refused("* * * 13 *", "month: 13 is out of range 1-12");
    refused("* * * foo *", "month: 'foo' is not a number or a name");
    refused("* * * * 8", "day of week: 8 is out of range 0-7");
    refused("* * * *", "4 fields, expected 5");
    refused("* * * * * *", "more than 5 fields");
    refused("5-1 * * * *", "runs backwards");
    refused("*/0 * * * *", "step 0 is out of range");
    refused("0 0 30 2 *", "never fires");
}

TEST(vixie_day_rule_both_restricted_is_or) {
    beat_tz *tz = zone("UTC");
    beat_cron c = cron("0 0 1 * mon");
    /* From Monday 2026-07-27: the next is Saturday the 1st, then Monday the 3rd. */
    int64_t t = beat_cron_next(&c, tz, utc(2026, 7, 27, 0, 0));
    ASSERT_EQ(t, utc(2026, 8, 1, 0, 0));
    ASSERT_EQ(beat_cron_next(&c, tz, t), utc(2026, 8, 3, 0, 0));
    /* One of them '*': the other alone. */
    c = cron("0 0 1 * *");
    ASSERT_EQ(beat_cron_next(&c, tz, utc(2026, 7, 27, 0, 0)), utc(2026, 8, 1, 0, 0));
    c = cron("0 0 * * mon");
    ASSERT_EQ(beat_cron_next(&c, tz, utc(2026, 7, 27, 0, 0)), utc(2026, 8, 3, 0, 0));
    c = cron("0 0 */2 * mon"); /* starts with '*': the weekday alone */
    ASSERT_EQ(beat_cron_next(&c, tz, utc(2026, 7, 27, 0, 0)), utc(2026, 8, 3, 0, 0));
    beat_tz_free(tz);
}

TEST(next_is_strictly_after_and_steps_through_months_and_leap_days) {
    beat_tz *tz = zone("UTC");
    beat_cron c = cron("*/5 * * * *");
    ASSERT_EQ(beat_cron_next(&c, tz, utc(2026, 12, 31, 23, 55)), utc(2027, 1, 1, 0, 0));
    ASSERT_EQ(beat_cron_next(&c, tz, utc(2026, 12, 31, 23, 55) - 1), utc(2026, 12, 31, 23, 55));
    c = cron("0 12 29 feb *");
    ASSERT_EQ(beat_cron_next(&c, tz, utc(2026, 12, 4, 0, 0)), utc(2028, 2, 29, 12, 0));
    beat_tz_free(tz);
}

TEST(a_time_in_the_spring_gap_fires_when_the_gap_ends) {
    beat_tz *tz = zone("Europe/Berlin");
    beat_cron c = cron("30 2 * * *");
    /* 02:30 does not exist on 2026-03-29: it fires at 03:00 CEST = 01:00 UTC, once. */
    int64_t t = beat_cron_next(&c, tz, utc(2026, 3, 28, 12, 0));
    ASSERT_EQ(t, utc(2026, 3, 29, 1, 0));
    ASSERT_EQ(beat_cron_next(&c, tz, t), utc(2026, 3, 30, 0, 30));
    /* Every 15 minutes: the gap's times collapse into one run at its end. */
    c = cron("*/15 * * * *");
    t = beat_cron_next(&c, tz, utc(2026, 3, 29, 0, 45));
    ASSERT_EQ(t, utc(2026, 3, 29, 1, 0));
    ASSERT_EQ(beat_cron_next(&c, tz, t), utc(2026, 3, 29, 1, 15));
    beat_tz_free(tz);
}

TEST(a_fixed_time_in_the_autumn_overlap_fires_once_a_wildcard_hour_twice) {
    beat_tz *tz = zone("Europe/Berlin");
    beat_cron c = cron("0 2 * * *");
    /* 02:00 happens at 00:00 UTC (CEST) and 01:00 UTC (CET) on 2026-10-25: the first. */
    int64_t t = beat_cron_next(&c, tz, utc(2026, 10, 24, 12, 0));
    ASSERT_EQ(t, utc(2026, 10, 25, 0, 0));
    ASSERT_EQ(beat_cron_next(&c, tz, t), utc(2026, 10, 26, 1, 0));
    c = cron("*/30 * * * *");
    t = utc(2026, 10, 25, 0, 0);
    int64_t expect[] = {utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 1, 0), utc(2026, 10, 25, 1, 30),
                        utc(2026, 10, 25, 2, 0)};
    for (int i = 0; i < 4; i++) {
        t = beat_cron_next(&c, tz, t);
        ASSERT_EQ(t, expect[i]);
    }
    beat_tz_free(tz);
}

TEST(sydney_schedules_follow_its_changes) {
    beat_tz *tz = zone("Australia/Sydney");
    beat_cron c = cron("0 3 * * *");
    /* 2026-04-05: 03:00 AEDT never shows (the clocks go 03:00 -> 02:00); 03:00 AEST does. */
    ASSERT_EQ(beat_cron_next(&c, tz, utc(2026, 4, 4, 12, 0)), utc(2026, 4, 4, 17, 0));
    c = cron("30 2 * * *");
    /* 2026-10-04: 02:30 is skipped; it fires at 03:00 AEDT = 16:00 UTC the day before. */
    ASSERT_EQ(beat_cron_next(&c, tz, utc(2026, 10, 3, 12, 0)), utc(2026, 10, 3, 16, 0));
    beat_tz_free(tz);
}
