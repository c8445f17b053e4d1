/*
 * green_redis_url.c - Redis URLs: parsing, and redaction for logs. Connecting as a URL
 * says (AUTH, SELECT) is in green_redis.c. green_redis.h lists the accepted forms.
 *
 * The one rule here is that a password never reaches a message or a log. Every error
 * message quotes the URL only through green_redis_url_redact, and names the part that is
 * wrong without its value when that part could hold the password. Redaction must hold
 * even for URLs the parser rejects, so it uses the same cautious idea of where the
 * password is: the user information runs from "://" to the LAST '@' of the URL (a
 * password may contain an unencoded '/', '?' or '@'), and the password is everything
 * after the first ':' in it.
 *
 * Everything here is a pure function of its arguments: any stack, any thread, no
 * yielding. Connecting as a URL says (green_redis_connect_url) is in green_redis.c.
 */
#include "green_redis.h"

#include <errno.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DEFAULT_PORT 6379
#define MAX_UNIX_PATH 107 /* sizeof(sockaddr_un.sun_path) - 1 */

char *green_redis_url_redact(const char *url, char *buf, size_t len) {
    if (len == 0)
        return buf;
    const char *sep = strstr(url, "://");
    const char *at = strrchr(url, '@');
    const char *colon = NULL;
    if (sep != NULL && at != NULL && at > sep) {
        colon = memchr(sep + 3, ':', (size_t)(at - (sep + 3)));
    }
    if (colon == NULL) {
        snprintf(buf, len, "%s", url);
    } else {
        snprintf(buf, len, "%.*s***%s", (int)(colon + 1 - url), url, at);
    }
    return buf;
}

void green_redis_url_clear(green_redis_url *u) {
    free(u->host);
    free(u->path);
    free(u->user);
    free(u->password);
    memset(u, 0, sizeof *u);
}

static int hexval(int ch) {
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* A heap copy of s[0..n) with %XX decoded, into *out. Returns 0, -EINVAL for a bad
 * escape or an encoded NUL, -ENOMEM. */
static int decode(const char *s, size_t n, char **out) {
    char *d = malloc(n + 1);
    if (d == NULL)
        return -ENOMEM;
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '%') {
            d[j++] = s[i];
            continue;
        }
        int hi = i + 2 < n ? hexval((unsigned char)s[i + 1]) : -1;
        int lo = i + 2 < n ? hexval((unsigned char)s[i + 2]) : -1;
        if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
            free(d);
            return -EINVAL;
        }
        d[j++] = (char)(hi * 16 + lo);
        i += 2;
    }
    d[j] = '\0';
    *out = d;
    return 0;
}

/* A non-negative decimal number of at most max, spanning all of s[0..n). */
static bool parse_num(const char *s, size_t n, long max, long *out) {
    if (n == 0 || n > 10)
        return false;
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return false;
        v = v * 10 + (s[i] - '0');
    }
    if (v > max)
        return false;
    *out = v;
    return true;
}

/* The error of a parse: a message naming the problem and the redacted URL. */
static int bad(const char *url, char *errbuf, size_t errlen, const char *what) {
    if (errbuf != NULL && errlen > 0) {
        char red[512];
        green_redis_url_redact(url, red, sizeof red);
        snprintf(errbuf, errlen, "redis URL '%s': %s", red, what);
    }
    return -EINVAL;
}

/* user[:password], already cut out of the URL. */
static int parse_userinfo(const char *s, size_t n, green_redis_url *u) {
    const char *colon = memchr(s, ':', n);
    size_t ulen = colon ? (size_t)(colon - s) : n;
    int rc = 0;
    if (ulen > 0)
        rc = decode(s, ulen, &u->user);
    if (rc == 0 && colon != NULL)
        rc = decode(colon + 1, n - ulen - 1, &u->password);
    return rc;
}

/* "?db=N" (the only parameter there is), into u->db. */
static int parse_query(const char *q, const char *url, green_redis_url *u, char *errbuf,
                       size_t errlen) {
    long v;
    if (strncmp(q, "db=", 3) != 0) {
        char msg[96];
        size_t n = strcspn(q, "=&");
        snprintf(msg, sizeof msg, "unknown parameter '%.*s' (only db=N is known)",
                 (int)(n < 40 ? n : 40), q);
        return bad(url, errbuf, errlen, msg);
    }
    if (!parse_num(q + 3, strlen(q + 3), 1000000, &v))
        return bad(url, errbuf, errlen, "db must be a non-negative number");
    u->db = (int)v;
    return 0;
}

/* host[:port] or [v6][:port], then /db, then ?db=N, from s (after "redis://" and any
 * user information). */
static int parse_tcp(const char *s, const char *url, green_redis_url *u, char *errbuf,
                     size_t errlen) {
    const char *host = s, *p;
    size_t hlen;
    if (*s == '[') {
        p = strchr(s, ']');
        if (p == NULL)
            return bad(url, errbuf, errlen, "unterminated [IPv6] host");
        host = s + 1;
        hlen = (size_t)(p - host);
        p++;
    } else {
        hlen = strcspn(s, ":/?");
        p = s + hlen;
    }
    if (hlen == 0)
        return bad(url, errbuf, errlen, "missing host");
    u->host = strndup(host, hlen);
    if (u->host == NULL)
        return -ENOMEM;
    u->port = DEFAULT_PORT;
    if (*p == ':') {
        long v;
        size_t n = strcspn(p + 1, "/?");
        if (!parse_num(p + 1, n, 65535, &v) || v == 0)
            return bad(url, errbuf, errlen, "port must be a number from 1 to 65535");
        u->port = (int)v;
        p += 1 + n;
    } else if (*p != '\0' && *p != '/' && *p != '?') {
        return bad(url, errbuf, errlen, "unexpected character after the host");
    }
    if (*p == '/') {
        long v;
        size_t n = strcspn(p + 1, "?");
        if (n > 0) {
            if (!parse_num(p + 1, n, 1000000, &v))
                return bad(url, errbuf, errlen, "database (after the '/') must be a number");
            u->db = (int)v;
        }
        p += 1 + n;
    }
    if (*p == '?')
        return parse_query(p + 1, url, u, errbuf, errlen);
    return 0;
}

/* /path[?db=N], after "unix://" and any user information. */
static int parse_unix(const char *s, const char *url, green_redis_url *u, char *errbuf,
                      size_t errlen) {
    if (*s != '/')
        return bad(url, errbuf, errlen, "the socket path must be absolute (unix:///path)");
    size_t n = strcspn(s, "?");
    int rc = decode(s, n, &u->path);
    if (rc == -EINVAL)
        return bad(url, errbuf, errlen, "bad %-escape in the socket path");
    if (rc != 0)
        return rc;
    if (strlen(u->path) > MAX_UNIX_PATH)
        return bad(url, errbuf, errlen, "socket path too long");
    if (s[n] == '?')
        return parse_query(s + n + 1, url, u, errbuf, errlen);
    return 0;
}

int green_redis_url_parse(const char *url, green_redis_url *out, char *errbuf, size_t errlen) {
    memset(out, 0, sizeof *out);
    if (errbuf != NULL && errlen > 0)
        errbuf[0] = '\0';
    if (url == NULL || *url == '\0')
        return bad("", errbuf, errlen, "empty URL");
    bool is_unix;
    const char *rest;
    if (strncasecmp(url, "redis://", 8) == 0) {
        is_unix = false;
        rest = url + 8;
    } else if (strncasecmp(url, "unix://", 7) == 0) {
        is_unix = true;
        rest = url + 7;
    } else if (strncasecmp(url, "rediss://", 9) == 0) {
        return bad(url, errbuf, errlen, "TLS (rediss://) is not supported");
    } else {
        return bad(url, errbuf, errlen, "scheme must be redis:// or unix://");
    }
    /* User information runs to the last '@' (see the essay); for unix:// only when the
     * path does not start right away. */
    const char *at = strrchr(rest, '@');
    int rc = 0;
    if (at != NULL && !(is_unix && rest[0] == '/')) {
        rc = parse_userinfo(rest, (size_t)(at - rest), out);
        if (rc == -EINVAL) {
            rc = bad(url, errbuf, errlen, "bad %-escape in the user or password");
            goto fail;
        }
        if (rc != 0)
            goto fail;
        if (out->user != NULL && out->password == NULL) {
            rc = bad(url, errbuf, errlen, "a user name needs a password (user:password@)");
            goto fail;
        }
        rest = at + 1;
    }
    rc = is_unix ? parse_unix(rest, url, out, errbuf, errlen)
                 : parse_tcp(rest, url, out, errbuf, errlen);
    if (rc != 0)
        goto fail;
    return 0;
fail:
    green_redis_url_clear(out);
    return rc;
}
