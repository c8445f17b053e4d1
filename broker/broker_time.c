/*
 * broker_time.c - RFC 3339 timestamps to Unix seconds, by hand: strptime depends on the
 * locale and knows no fractions or numeric offsets, and timegm is not in C11. The days
 * since the epoch come from the civil calendar by Howard Hinnant's days_from_civil, exact
 * for every proleptic Gregorian date.
 *
 * Pure computation; no global state.
 */
#include "broker_time.h"

#include <stdint.h>

/* Reads exactly n decimal digits at s into *v. */
static bool digits(const char *s, int n, int *v) {
    int x = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        x = x * 10 + (s[i] - '0');
    }
    *v = x;
    return true;
}

static bool leap(int y) {
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int month_days(int y, int m) {
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && leap(y) ? 29 : days[m - 1];
}

int64_t broker_time_days_from_civil(int64_t y, int m, int d) {
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

bool broker_time_parse_rfc3339(const char *s, size_t len, double *out) {
    /* "YYYY-MM-DDThh:mm:ss" is 19 bytes, and at least a 'Z' follows. */
    if (len < 20)
        return false;
    int y, mo, d, h, mi, sec;
    if (!digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) || s[7] != '-' ||
        !digits(s + 8, 2, &d) || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
        !digits(s + 11, 2, &h) || s[13] != ':' || !digits(s + 14, 2, &mi) || s[16] != ':' ||
        !digits(s + 17, 2, &sec))
        return false;
    if (mo < 1 || mo > 12 || d < 1 || d > month_days(y, mo) || h > 23 || mi > 59 || sec > 60)
        return false;
    size_t i = 19;
    double frac = 0, scale = 0.1;
    if (s[i] == '.') {
        i++;
        size_t first = i;
        for (; i < len && s[i] >= '0' && s[i] <= '9'; i++, scale /= 10)
            frac += (s[i] - '0') * scale;
        if (i == first)
            return false;
    }
    if (i >= len)
        return false;
    int offset = 0;
    if (s[i] == 'Z' || s[i] == 'z') {
        i++;
    } else if (s[i] == '+' || s[i] == '-') {
        int oh, om;
        if (len - i < 6 || !digits(s + i + 1, 2, &oh) || s[i + 3] != ':' ||
            !digits(s + i + 4, 2, &om) || oh > 23 || om > 59)
            return false;
        offset = (oh * 60 + om) * 60 * (s[i] == '-' ? -1 : 1);
        i += 6;
    } else {
        return false;
    }
    if (i != len)
        return false;
    int64_t t = broker_time_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - offset;
    *out = (double)t + frac;
    return true;
}
