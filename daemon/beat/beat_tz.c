/*
 * beat_tz.c - a TZif reader and a POSIX TZ rule evaluator (beat_tz.h).
 *
 * A zone is its transition table (instants, each with the offset that starts there) and a
 * rule for the time after the table (the TZif footer). An instant before the first
 * transition takes the first local time type, as RFC 8536 says; one at or after the last
 * takes the rule when there is one (a "slim" file, as zic writes by default, stops its
 * table early and relies on it), else the last transition's offset.
 *
 * The rule: std offset [dst [offset] [,start[/time],end[/time]]], the offsets west-positive
 * as POSIX writes them (CET-1 is one hour east), names alphabetic or <quoted>; a date is
 * Jn (1..365, no Feb 29), n (0..365) or Mm.w.d (weekday d of week w, 5 = the last, of month
 * m); a time is [+-]h[h][:mm[:ss]] and may lie outside 0..24 h (TZif v3). The start time is
 * local standard time, the end time local daylight time; a start later in the year than the
 * end is a southern-hemisphere zone, daylight time spanning the new year.
 */
#include "beat_tz.h"

#include "broker_time.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TZ_FILE_MAX (1 << 20) /* real zone files are a few KiB */

struct rule_date {
    char kind; /* 'J' Julian without leap day, 'D' zero-based day, 'M' month.week.day */
    int a, b, c;
    int32_t time; /* seconds after local midnight */
};

struct posix_rule {
    bool have;       /* a footer was there and parsed */
    int32_t std_off; /* seconds east */
    bool has_dst;    /* a dst name was given */
    bool dst_rules;  /* start and end are set (a dst name without them gets the US
                        rules, M3.2.0,M11.1.0, as glibc gives it) */
    int32_t dst_off; /* seconds east */
    struct rule_date start, end;
};

struct beat_tz {
    size_t n;          /* transitions */
    int64_t *at;       /* instants, ascending */
    int32_t *off;      /* the offset from each instant on */
    int32_t first_off; /* before the first (the first local time type) */
    struct posix_rule rule;
};

/* ---- calendar ---------------------------------------------------------------------- */

/* Howard Hinnant's civil_from_days: the inverse of broker_time_days_from_civil. */
void beat_civil_from_days(int64_t z, int64_t *y, int *m, int *d) {
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

static bool leap(int64_t y) {
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int64_t y, int m) {
    static const int dim[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && leap(y) ? 29 : dim[m - 1];
}

static int64_t floor_div(int64_t a, int64_t b) {
    return a / b - (a % b != 0 && (a < 0) != (b < 0));
}

/* ---- the POSIX rule ---------------------------------------------------------------- */

static const char *parse_name(const char *p) {
    if (*p == '<') {
        const char *q = strchr(p, '>');
        return q && q - p >= 4 ? q + 1 : NULL;
    }
    const char *q = p;
    while ((*q >= 'A' && *q <= 'Z') || (*q >= 'a' && *q <= 'z'))
        q++;
    return q - p >= 3 ? q : NULL;
}

/* [+-]hh[:mm[:ss]] into *secs; hours up to 167. */
static const char *parse_hms(const char *p, int32_t *secs) {
    int sign = 1;
    if (*p == '+' || *p == '-')
        sign = *p++ == '-' ? -1 : 1;
    if (*p < '0' || *p > '9')
        return NULL;
    long v[3] = {0, 0, 0};
    for (int i = 0; i < 3; i++) {
        if (i > 0) {
            if (*p != ':')
                break;
            p++;
        }
        if (*p < '0' || *p > '9')
            return NULL;
        char *end;
        v[i] = strtol(p, &end, 10);
        if (end - p > 3 || v[i] > (i == 0 ? 167 : 59))
            return NULL;
        p = end;
    }
    *secs = (int32_t)(sign * (v[0] * 3600 + v[1] * 60 + v[2]));
    return p;
}

static const char *parse_date(const char *p, struct rule_date *r) {
    char *end;
    r->time = 7200;
    if (*p == 'M') {
        r->kind = 'M';
        r->a = (int)strtol(p + 1, &end, 10);
        if (*end != '.')
            return NULL;
        r->b = (int)strtol(end + 1, &end, 10);
        if (*end != '.')
            return NULL;
        r->c = (int)strtol(end + 1, &end, 10);
        if (r->a < 1 || r->a > 12 || r->b < 1 || r->b > 5 || r->c < 0 || r->c > 6)
            return NULL;
    } else if (*p == 'J') {
        r->kind = 'J';
        r->a = (int)strtol(p + 1, &end, 10);
        if (end == p + 1 || r->a < 1 || r->a > 365)
            return NULL;
    } else if (*p >= '0' && *p <= '9') {
        r->kind = 'D';
        r->a = (int)strtol(p, &end, 10);
        if (r->a > 365)
            return NULL;
    } else {
        return NULL;
    }
    p = end;
    if (*p == '/')
        p = parse_hms(p + 1, &r->time);
    return p;
}

/* "CET-1CEST,M3.5.0,M10.5.0/3" into *r; false when it is not such a string. An empty
 * footer means "no rule". */
static bool parse_rule(const char *s, struct posix_rule *r) {
    memset(r, 0, sizeof *r);
    if (*s == '\0')
        return true;
    int32_t west;
    const char *p = parse_name(s);
    if (!p || !(p = parse_hms(p, &west)))
        return false;
    r->std_off = -west;
    r->have = true;
    if (*p == '\0')
        return true;
    if (!(p = parse_name(p)))
        return false;
    r->has_dst = true;
    r->dst_off = r->std_off + 3600;
    if (*p != ',' && *p != '\0') {
        if (!(p = parse_hms(p, &west)))
            return false;
        r->dst_off = -west;
    }
    if (*p == '\0') {
        /* No rules: the US rules, as glibc assumes. */
        r->start = (struct rule_date){'M', 3, 2, 0, 7200};
        r->end = (struct rule_date){'M', 11, 1, 0, 7200};
        r->dst_rules = true;
        return true;
    }
    if (*p != ',' || !(p = parse_date(p + 1, &r->start)) || *p != ',' ||
        !(p = parse_date(p + 1, &r->end)) || *p != '\0')
        return false;
    r->dst_rules = true;
    return true;
}

/* Local midnight of the rule's day in year y, as days since the epoch. */
static int64_t rule_day(const struct rule_date *r, int64_t y) {
    int64_t jan1 = broker_time_days_from_civil(y, 1, 1);
    if (r->kind == 'J') /* 1..365, Feb 29 never counted */
        return jan1 + r->a - 1 + (leap(y) && r->a >= 60);
    if (r->kind == 'D')
        return jan1 + r->a;
    int64_t first = broker_time_days_from_civil(y, r->a, 1);
    int dow1 = (int)((first % 7 + 7 + 4) % 7); /* 1970-01-01 was a Thursday (4) */
    int day = 1 + (r->c - dow1 + 7) % 7 + (r->b - 1) * 7;
    while (day > days_in_month(y, r->a))
        day -= 7;
    return first + day - 1;
}

static int32_t rule_offset(const struct posix_rule *r, int64_t t) {
    if (!r->has_dst || !r->dst_rules)
        return r->std_off;
    int64_t y;
    int m, d;
    beat_civil_from_days(floor_div(t + r->std_off, 86400), &y, &m, &d);
    int64_t start = rule_day(&r->start, y) * 86400 + r->start.time - r->std_off;
    int64_t end = rule_day(&r->end, y) * 86400 + r->end.time - r->dst_off;
    bool dst = start < end ? t >= start && t < end : !(t >= end && t < start);
    return dst ? r->dst_off : r->std_off;
}

/* ---- TZif -------------------------------------------------------------------------- */

static uint32_t be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int64_t be64(const unsigned char *p) {
    return (int64_t)((uint64_t)be32(p) << 32 | be32(p + 4));
}

static int fail(char *why, size_t whylen, int rc, const char *msg) {
    snprintf(why, whylen, "%s", msg);
    return rc;
}

int beat_tz_parse(const void *data, size_t len, beat_tz **out, char *why, size_t whylen) {
    const unsigned char *p = data, *end = p + len;
    *out = NULL;
    if (len < 44 || memcmp(p, "TZif", 4) != 0)
        return fail(why, whylen, -EINVAL, "not a TZif time zone file");
    int version = p[4] == 0 ? 1 : p[4] - '0';
    int tsize = 4;
    for (int pass = 0;; pass++) {
        if (end - p < 44 || memcmp(p, "TZif", 4) != 0)
            return fail(why, whylen, -EINVAL, "truncated TZif time zone file");
        uint32_t isut = be32(p + 20), isstd = be32(p + 24), leapc = be32(p + 28),
                 timec = be32(p + 32), typec = be32(p + 36), charc = be32(p + 40);
        p += 44;
        uint64_t body = (uint64_t)timec * (tsize + 1) + (uint64_t)typec * 6 + charc +
                        (uint64_t)leapc * (tsize + 4) + isstd + isut;
        if (typec == 0 || body > (uint64_t)(end - p))
            return fail(why, whylen, -EINVAL, "truncated TZif time zone file");
        if (version >= 2 && pass == 0) { /* skip the 32-bit block */
            p += body;
            tsize = 8;
            continue;
        }
        beat_tz *tz = calloc(1, sizeof *tz);
        if (!tz)
            return -ENOMEM;
        tz->n = timec;
        tz->at = calloc(timec ? timec : 1, sizeof *tz->at);
        tz->off = calloc(timec ? timec : 1, sizeof *tz->off);
        if (!tz->at || !tz->off) {
            beat_tz_free(tz);
            return -ENOMEM;
        }
        const unsigned char *times = p, *idx = p + (size_t)timec * tsize, *types = idx + timec;
        for (uint32_t i = 0; i < timec; i++) {
            tz->at[i] = tsize == 8 ? be64(times + 8 * i) : (int32_t)be32(times + 4 * i);
            if (idx[i] >= typec || (i > 0 && tz->at[i] <= tz->at[i - 1])) {
                beat_tz_free(tz);
                return fail(why, whylen, -EINVAL, "malformed TZif time zone file");
            }
            tz->off[i] = (int32_t)be32(types + 6 * idx[i]);
        }
        tz->first_off = (int32_t)be32(types);
        p += body;
        if (version >= 2) {
            /* The footer: "\n" TZ "\n". */
            const unsigned char *nl =
                end - p >= 2 && *p == '\n' ? memchr(p + 1, '\n', (size_t)(end - p - 1)) : NULL;
            char rule[256];
            if (nl && (size_t)(nl - p - 1) < sizeof rule) {
                memcpy(rule, p + 1, (size_t)(nl - p - 1));
                rule[nl - p - 1] = '\0';
                if (!parse_rule(rule, &tz->rule)) {
                    beat_tz_free(tz);
                    return fail(why, whylen, -EINVAL, "TZif footer is not a POSIX TZ rule");
                }
            }
        }
        *out = tz;
        return 0;
    }
}

int32_t beat_tz_offset(const beat_tz *tz, int64_t t) {
    if (tz->n == 0)
        return tz->rule.have ? rule_offset(&tz->rule, t) : tz->first_off;
    if (t < tz->at[0])
        return tz->first_off;
    if (t >= tz->at[tz->n - 1] && tz->rule.have)
        return rule_offset(&tz->rule, t);
    size_t lo = 0, hi = tz->n; /* the last at[i] <= t */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (tz->at[mid] <= t)
            lo = mid;
        else
            hi = mid;
    }
    return tz->off[lo];
}

static bool name_ok(const char *name) {
    size_t len = strlen(name);
    if (len == 0 || len > 255 || name[0] == '/')
        return false;
    const char *c = name;
    for (;;) {
        const char *slash = strchr(c, '/');
        size_t clen = slash ? (size_t)(slash - c) : strlen(c);
        if (clen == 0 || c[0] == '.')
            return false;
        for (size_t i = 0; i < clen; i++) {
            char ch = c[i];
            if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                  (ch >= '0' && ch <= '9') || ch == '_' || ch == '-' || ch == '+'))
                return false;
        }
        if (!slash)
            return true;
        c = slash + 1;
    }
}

int beat_tz_load(const char *name, beat_tz **out, char *why, size_t whylen) {
    *out = NULL;
    if (strcmp(name, "UTC") == 0 || strcmp(name, "Etc/UTC") == 0 || strcmp(name, "Z") == 0) {
        beat_tz *tz = calloc(1, sizeof *tz);
        if (!tz)
            return -ENOMEM;
        *out = tz;
        return 0;
    }
    if (!name_ok(name))
        return fail(why, whylen, -EINVAL, "not a time zone name (like Europe/Berlin)");
    const char *dir = getenv("TZDIR");
    if (!dir || !*dir)
        dir = "/usr/share/zoneinfo";
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0)
            close(fd);
        snprintf(why, whylen, "no such time zone in %s", dir);
        return -ENOENT;
    }
    if (st.st_size > TZ_FILE_MAX) {
        close(fd);
        return fail(why, whylen, -EINVAL, "not a TZif time zone file");
    }
    unsigned char *buf = malloc((size_t)st.st_size + 1);
    if (!buf) {
        close(fd);
        return -ENOMEM;
    }
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    int rc = beat_tz_parse(buf, got, out, why, whylen);
    free(buf);
    return rc;
}

void beat_tz_free(beat_tz *tz) {
    if (!tz)
        return;
    free(tz->at);
    free(tz->off);
    free(tz);
}
