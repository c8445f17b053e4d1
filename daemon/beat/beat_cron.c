/*
 * beat_cron.c - cron fields into bit sets, and the search for the next fire time
 * (beat_cron.h).
 *
 * The search works on naive local time: seconds since 1970 as if the zone were UTC.
 * next_match finds the first local minute at or after a local time whose fields all match,
 * skipping a whole month, day or hour at a time when that field does not. The instants of
 * a local minute are found from the zone's offsets a day before and a day after it: one
 * instant normally, two in the repeated hour of a fall-back, none in a spring-forward gap
 * (which then maps to the instant the gap ends). beat_cron_next starts 3 hours of local
 * time before t (an instant after t may belong to an earlier local time when the clocks go
 * back) and keeps the earliest instant after t, looking until the local times are 3 hours
 * past the one that gave it.
 */
#include "beat_cron.h"

#include "broker_time.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define SEARCH_YEARS 30
#define MAX_SHIFT (3 * 3600)

struct field {
    const char *name;
    int lo, hi;
    const char *const *names; /* names[i] is value lo + i, or NULL */
};

static const char *const month_names[] = {"jan", "feb", "mar", "apr", "may", "jun", "jul",
                                          "aug", "sep", "oct", "nov", "dec", NULL};
static const char *const dow_names[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat", NULL};

static const struct field fields[5] = {
    {"minute", 0, 59, NULL},          {"hour", 0, 23, NULL},
    {"day of month", 1, 31, NULL},    {"month", 1, 12, month_names},
    {"day of week", 0, 7, dow_names},
};

/* A number or a name at *p; -1 (reason in why) when neither. */
static int value(const struct field *f, const char **p, char *why, size_t whylen) {
    const char *s = *p;
    if (isdigit((unsigned char)*s)) {
        long v = 0;
        while (isdigit((unsigned char)*s) && v < 1000)
            v = v * 10 + (*s++ - '0');
        if (v < f->lo || v > f->hi) {
            snprintf(why, whylen, "%s: %ld is out of range %d-%d", f->name, v, f->lo, f->hi);
            return -1;
        }
        *p = s;
        return (int)v;
    }
    for (int i = 0; f->names && f->names[i]; i++) {
        if (strncasecmp(s, f->names[i], 3) == 0 && !isalpha((unsigned char)s[3])) {
            *p = s + 3;
            return f->lo + i;
        }
    }
    snprintf(why, whylen, "%s: '%.20s' is not a number%s", f->name, s,
             f->names ? " or a name" : "");
    return -1;
}

/* One field's text [s, e) into *bits. */
static int parse_field(const struct field *f, const char *s, const char *e, uint64_t *bits,
                       bool *star, char *why, size_t whylen) {
    char buf[256];
    if ((size_t)(e - s) >= sizeof buf) {
        snprintf(why, whylen, "%s: too long", f->name);
        return -EINVAL;
    }
    memcpy(buf, s, (size_t)(e - s));
    buf[e - s] = '\0';
    *bits = 0;
    *star = buf[0] == '*';
    char *save = NULL;
    for (char *item = strtok_r(buf, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        const char *p = item;
        int a, b, step = 1;
        bool range = false;
        if (*p == '*') {
            a = f->lo;
            b = f->hi;
            p++;
            range = true;
        } else {
            if ((a = value(f, &p, why, whylen)) < 0)
                return -EINVAL;
            b = a;
            if (*p == '-') {
                p++;
                if ((b = value(f, &p, why, whylen)) < 0)
                    return -EINVAL;
                if (b < a) {
                    snprintf(why, whylen, "%s: the range %d-%d runs backwards", f->name, a, b);
                    return -EINVAL;
                }
                range = true;
            }
        }
        if (*p == '/') {
            p++;
            long v = 0;
            if (!isdigit((unsigned char)*p)) {
                snprintf(why, whylen, "%s: a step must be a number", f->name);
                return -EINVAL;
            }
            while (isdigit((unsigned char)*p) && v < 1000)
                v = v * 10 + (*p++ - '0');
            if (v < 1 || v > f->hi) {
                snprintf(why, whylen, "%s: step %ld is out of range 1-%d", f->name, v, f->hi);
                return -EINVAL;
            }
            step = (int)v;
            if (!range)
                b = f->hi; /* "5/15" is "5-max/15" */
        }
        if (*p != '\0') {
            snprintf(why, whylen, "%s: unexpected '%.20s'", f->name, p);
            return -EINVAL;
        }
        for (int v = a; v <= b; v += step)
            *bits |= (uint64_t)1 << v;
    }
    if (*bits == 0) {
        snprintf(why, whylen, "%s: empty", f->name);
        return -EINVAL;
    }
    return 0;
}

static bool day_ok(const beat_cron *c, int64_t days, int64_t y, int m, int d) {
    static const int dim[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (d > dim[m - 1] + (m == 2 && leap))
        return false;
    int dow = (int)(((days % 7) + 7 + 4) % 7);
    bool dm = c->dom >> d & 1, wm = c->dow >> dow & 1;
    if (c->dom_star || c->dow_star)
        return dm && wm;
    return dm || wm;
}

static int64_t floor_div(int64_t a, int64_t b) {
    return a / b - (a % b != 0 && (a < 0) != (b < 0));
}

/* The first naive local minute >= L that matches, or -1 past limit. */
static int64_t next_match(const beat_cron *c, int64_t L, int64_t limit) {
    L = floor_div(L + 59, 60) * 60;
    while (L <= limit) {
        int64_t days = floor_div(L, 86400), y;
        int secs = (int)(L - days * 86400), m, d;
        beat_civil_from_days(days, &y, &m, &d);
        int h = secs / 3600, mi = secs % 3600 / 60;
        if (!(c->month >> m & 1))
            L = broker_time_days_from_civil(m == 12 ? y + 1 : y, m == 12 ? 1 : m + 1, 1) * 86400;
        else if (!day_ok(c, days, y, m, d))
            L = (days + 1) * 86400;
        else if (!(c->hour >> h & 1))
            L = days * 86400 + (int64_t)(h + 1) * 3600;
        else if (!(c->minute >> mi & 1))
            L += 60;
        else
            return L;
    }
    return -1;
}

/* The instants whose local time is L, ascending, into u; how many (1 or 2). A local time
 * in a gap gives the instant the gap ends. */
static int instants(const beat_tz *tz, int64_t L, int64_t u[2]) {
    int32_t a = beat_tz_offset(tz, L - 86400), b = beat_tz_offset(tz, L + 86400);
    int n = 0;
    int32_t offs[2] = {a, b};
    for (int i = 0; i < 2; i++) {
        if (i == 1 && b == a)
            break;
        int64_t x = L - offs[i];
        if (beat_tz_offset(tz, x) == offs[i])
            u[n++] = x;
    }
    if (n == 2 && u[1] < u[0]) {
        int64_t t = u[0];
        u[0] = u[1];
        u[1] = t;
    }
    if (n > 0)
        return n;
    /* A gap (b > a): the transition lies in (L - b, L - a]; find its instant. */
    int64_t lo = L - b, hi = L - a;
    if (lo > hi) {
        int64_t t = lo;
        lo = hi;
        hi = t;
    }
    while (hi - lo > 1) {
        int64_t mid = lo + (hi - lo) / 2;
        if (beat_tz_offset(tz, mid) == beat_tz_offset(tz, lo))
            lo = mid;
        else
            hi = mid;
    }
    u[0] = hi;
    return 1;
}

int64_t beat_cron_next(const beat_cron *c, const beat_tz *tz, int64_t t) {
    int64_t local = t + beat_tz_offset(tz, t);
    int64_t L = local - MAX_SHIFT, limit = local + (int64_t)SEARCH_YEARS * 366 * 86400;
    int64_t best = -1, best_local = 0;
    for (;;) {
        int64_t M = next_match(c, L, limit);
        if (M < 0 || (best >= 0 && M > best_local + MAX_SHIFT))
            break;
        int64_t u[2];
        int n = instants(tz, M, u);
        if (n == 2 && !c->hour_star)
            n = 1; /* a fixed time fires at the first of its two occurrences */
        for (int i = 0; i < n; i++) {
            if (u[i] > t && (best < 0 || u[i] < best)) {
                best = u[i];
                best_local = M;
            }
        }
        L = M + 60;
    }
    return best;
}

int beat_cron_parse(const char *expr, beat_cron *c, char *why, size_t whylen) {
    memset(c, 0, sizeof *c);
    const char *s = expr;
    uint64_t bits[5];
    bool star[5];
    int i = 0;
    for (;;) {
        while (*s == ' ' || *s == '\t')
            s++;
        if (*s == '\0')
            break;
        const char *e = s;
        while (*e && *e != ' ' && *e != '\t')
            e++;
        if (i == 5) {
            snprintf(why, whylen,
                     "more than 5 fields (minute hour day-of-month month "
                     "day-of-week)");
            return -EINVAL;
        }
        if (parse_field(&fields[i], s, e, &bits[i], &star[i], why, whylen) != 0)
            return -EINVAL;
        i++;
        s = e;
    }
    if (i != 5) {
        snprintf(why, whylen,
                 "%d fields, expected 5 (minute hour day-of-month month "
                 "day-of-week)",
                 i);
        return -EINVAL;
    }
    c->minute = bits[0];
    c->hour = (uint32_t)bits[1];
    c->dom = (uint32_t)bits[2];
    c->month = (uint16_t)bits[3];
    c->dow = (uint8_t)((bits[4] | bits[4] >> 7) & 0x7f); /* 7 is Sunday too */
    c->hour_star = star[1];
    c->dom_star = star[2];
    c->dow_star = star[4];
    /* 28 years repeat both the weekdays and the leap years (until 2100). */
    if (next_match(c, 0, (int64_t)SEARCH_YEARS * 366 * 86400) < 0) {
        snprintf(why, whylen, "never fires (no such day: e.g. 30 February)");
        return -EINVAL;
    }
    return 0;
}
