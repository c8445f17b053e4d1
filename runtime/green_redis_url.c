/*
 * green_redis_url.c - Redis URLs: parsing, with libcurl's URL parser (curl_url), and
 * redaction for logs. Connecting as a URL says (AUTH, SELECT) is in green_redis.c.
 * green_redis.h lists the accepted forms.
 *
 * The one rule here is that a password never reaches a message or a log. Every error
 * message quotes the URL only through green_redis_url_redact, and names the part that is
 * wrong without its value when that part could hold the password. Redaction must hold
 * even for URLs the parser rejects, so it is our own and as cautious as can be about where
 * the password is: the user information runs from "://" to the LAST '@' of the URL (a
 * password may contain an unencoded '/', '?' or '@'), and the password is everything
 * after the first ':' in it.
 *
 * curl_url splits the rest (host, IPv6 literals, port, path, query) and the user and
 * password. Three things are prepared for it, so that it reads our URLs as we document
 * them:
 *   - The user information is the same span redaction uses. Its bytes that RFC 3986 does
 *     not allow there (the '/', '?', '@' of an unencoded password, blanks) are
 *     percent-encoded before curl sees them, and decoded back with the user's own escapes.
 *   - A unix:// URL has no host; curl_url wants one, so "localhost" stands in for it, and
 *     the socket path is encoded the same way ('#' and blanks are part of the path).
 *   - Only our schemes are passed on (curl accepts unknown ones with
 *     CURLU_NON_SUPPORT_SCHEME), and a redis:// URL must name its host (curl would read
 *     "redis:///3" as host 3).
 * A '%' that starts no %XX escape, or an escaped NUL, is refused in the user information
 * and the socket path (curl would keep it as is).
 *
 * Everything here is a pure function of its arguments: any stack, any thread, no
 * yielding (curl_url needs no curl_global_init).
 */
#include "green_redis.h"

#include <errno.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#define DEFAULT_PORT 6379
#define DEFAULT_SENTINEL_PORT 26379
#define MAX_UNIX_PATH 107 /* sizeof(sockaddr_un.sun_path) - 1 */

/* The user information of url, from "://" to the last '@': true and [*start, *end). */
static bool userinfo(const char *url, const char **start, const char **end) {
    const char *sep = strstr(url, "://");
    const char *at = strrchr(url, '@');
    if (sep == NULL || at == NULL || at < sep + 3)
        return false;
    *start = sep + 3;
    *end = at;
    return true;
}

/* The value of a sentinel_password= parameter in url: its start, and its length in *len
 * (up to the next '&' or '#', or the end); NULL when there is none. Looked for anywhere
 * after a '?' or '&', so that even a malformed URL never shows it. */
static const char *sentinel_param(const char *url, size_t *len) {
    static const char key[] = "sentinel_password=";
    for (const char *p = url; (p = strstr(p, key)) != NULL; p++) {
        if (p > url && (p[-1] == '?' || p[-1] == '&')) {
            p += sizeof key - 1;
            *len = strcspn(p, "&#");
            return p;
        }
    }
    return NULL;
}

/* url with the value of its sentinel_password= parameter replaced by `with`, in a new
 * string (free it); NULL on ENOMEM. url itself (copied) when it has no such parameter. */
static char *without_sentinel_password(const char *url, const char *with) {
    size_t vlen = 0;
    const char *v = sentinel_param(url, &vlen);
    char *out = NULL;
    if (v == NULL)
        return strdup(url);
    if (asprintf(&out, "%.*s%s%s", (int)(v - url), url, with, v + vlen) < 0)
        return NULL;
    return out;
}

char *green_redis_url_redact(const char *url, char *buf, size_t len) {
    if (len == 0)
        return buf;
    /* The sentinels' password first, so that what is left has at most the data nodes'. */
    char *text = without_sentinel_password(url, "***");
    if (text == NULL) {
        snprintf(buf, len, "(a Redis URL)"); /* out of memory: show nothing rather than it */
        return buf;
    }
    const char *start, *end, *colon = NULL;
    if (userinfo(text, &start, &end))
        colon = memchr(start, ':', (size_t)(end - start));
    if (colon == NULL)
        snprintf(buf, len, "%s", text);
    else
        snprintf(buf, len, "%.*s***%s", (int)(colon + 1 - text), text, end);
    free(text);
    return buf;
}

void green_redis_url_clear(green_redis_url *u) {
    free(u->host);
    free(u->path);
    free(u->user);
    free(u->password);
    for (size_t i = 0; i < u->nsentinels; i++)
        free(u->sentinels[i].host);
    free(u->sentinels);
    free(u->master);
    free(u->sentinel_password);
    memset(u, 0, sizeof *u);
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

/* Append s[0..n) to *p, percent-encoding every byte but RFC 3986's unreserved and
 * sub-delims, '%' (the user's own escapes) and the bytes of keep. */
static void put_encoded(char **p, const char *s, size_t n, const char *keep) {
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c != '\0' && (isalnum(c) || strchr("-._~!$&'()*+,;=%", c) || strchr(keep, c))) {
            *(*p)++ = (char)c;
        } else {
            *(*p)++ = '%';
            *(*p)++ = hex[c >> 4];
            *(*p)++ = hex[c & 15];
        }
    }
}

/* Whether every '%' in s starts a %XX escape of a byte other than NUL. */
static bool escapes_ok(const char *s) {
    for (; (s = strchr(s, '%')) != NULL; s += 3)
        if (!isxdigit((unsigned char)s[1]) || !isxdigit((unsigned char)s[2]) ||
            (s[1] == '0' && s[2] == '0'))
            return false;
    return true;
}

/* A part of the URL, %XX decoded, as a string of our own in *out (NULL when curl says
 * the part is absent). Returns 0, -EINVAL for a bad escape, -ENOMEM. */
static int get_decoded(CURLU *h, CURLUPart part, char **out) {
    char *raw = NULL;
    *out = NULL;
    CURLUcode uc = curl_url_get(h, part, &raw, 0);
    if (uc == CURLUE_OUT_OF_MEMORY)
        return -ENOMEM;
    if (uc != CURLUE_OK)
        return 0;
    int rc = 0, n = 0;
    char *dec = NULL;
    if (!escapes_ok(raw))
        rc = -EINVAL;
    else if ((dec = curl_easy_unescape(NULL, raw, 0, &n)) == NULL ||
             (*out = strndup(dec, (size_t)n)) == NULL)
        rc = -ENOMEM;
    curl_free(dec);
    curl_free(raw);
    return rc;
}

/* A part of the URL as a number after its first skip bytes (all digits, at most max):
 * 1 and *out; 0 when the part is absent; -1 when it is not such a number. */
static int get_number(CURLU *h, CURLUPart part, size_t skip, long max, long *out) {
    char *s = NULL;
    if (curl_url_get(h, part, &s, 0) != CURLUE_OK)
        return 0;
    bool ok = strlen(s) > skip && strlen(s) <= skip + 10 &&
              strspn(s + skip, "0123456789") == strlen(s + skip);
    long v = ok ? strtol(s + skip, NULL, 10) : -1;
    curl_free(s);
    if (!ok || v > max)
        return -1;
    *out = v;
    return 1;
}

/* What curl_url_set refused, in our words (curl's own when we have none). */
static int refused(CURLUcode uc, const char *url, const char *hostpart, char *errbuf,
                   size_t errlen) {
    char msg[128];
    switch (uc) {
    case CURLUE_OUT_OF_MEMORY:
        return -ENOMEM;
    case CURLUE_BAD_PORT_NUMBER:
        return bad(url, errbuf, errlen, "port must be a number from 1 to 65535");
    case CURLUE_BAD_IPV6:
        return bad(url, errbuf, errlen,
                   strchr(hostpart, ']') ? "bad [IPv6] host" : "unterminated [IPv6] host");
    case CURLUE_NO_HOST:
        return bad(url, errbuf, errlen, "missing host");
    default:
        snprintf(msg, sizeof msg, "not a valid URL (%s)", curl_url_strerror(uc));
        return bad(url, errbuf, errlen, msg);
    }
}

/* The host and port curl found (the port defport when absent), into *host (ours) and
 * *port. Returns 0, -ENOMEM, or -EINVAL for a port out of range. */
static int read_host(CURLU *h, int defport, char **host, int *port) {
    char *s = NULL, *zone = NULL;
    long v;
    if (curl_url_get(h, CURLUPART_HOST, &s, 0) != CURLUE_OK)
        return -ENOMEM; /* it was set: only memory can make it absent */
    curl_url_get(h, CURLUPART_ZONEID, &zone, 0);
    bool v6 = s[0] == '['; /* curl keeps the brackets; the zone comes apart, decoded */
    if (asprintf(host, "%.*s%s%s", (int)strlen(s) - 2 * v6, s + v6, zone ? "%" : "",
                 zone ? zone : "") < 0)
        *host = NULL;
    curl_free(s);
    curl_free(zone);
    if (*host == NULL)
        return -ENOMEM;
    *port = defport;
    int rc = get_number(h, CURLUPART_PORT, 0, 65535, &v);
    if (rc < 0 || (rc > 0 && v == 0))
        return -EINVAL;
    if (rc > 0)
        *port = (int)v;
    return 0;
}

/* The parts curl found, into *u. */
static int read_parts(CURLU *h, bool is_unix, const char *url, green_redis_url *u, char *errbuf,
                      size_t errlen) {
    char *s = NULL;
    long v;
    int rc = get_decoded(h, CURLUPART_USER, &u->user);
    if (rc == 0)
        rc = get_decoded(h, CURLUPART_PASSWORD, &u->password);
    if (rc == -EINVAL)
        return bad(url, errbuf, errlen, "bad %-escape in the user or password");
    if (rc != 0)
        return rc;
    if (u->user != NULL && *u->user == '\0') {
        free(u->user);
        u->user = NULL;
    }
    if (u->user != NULL && u->password == NULL)
        return bad(url, errbuf, errlen, "a user name needs a password (user:password@)");

    if (curl_url_get(h, CURLUPART_FRAGMENT, &s, 0) == CURLUE_OK) {
        curl_free(s);
        return bad(url, errbuf, errlen, "a '#' fragment has no meaning here (%23 encodes '#')");
    }
    if (is_unix) {
        rc = get_decoded(h, CURLUPART_PATH, &u->path);
        if (rc == -EINVAL)
            return bad(url, errbuf, errlen, "bad %-escape in the socket path");
        if (rc != 0)
            return rc;
        if (strlen(u->path) > MAX_UNIX_PATH)
            return bad(url, errbuf, errlen, "socket path too long");
    } else {
        if ((rc = read_host(h, DEFAULT_PORT, &u->host, &u->port)) == -EINVAL)
            return bad(url, errbuf, errlen, "port must be a number from 1 to 65535");
        if (rc != 0)
            return rc;
        if (curl_url_get(h, CURLUPART_PATH, &s, 0) == CURLUE_OK) { /* "/" or "/db" */
            bool root = strcmp(s, "/") == 0;
            curl_free(s);
            if (!root && get_number(h, CURLUPART_PATH, 1, 1000000, &v) < 0)
                return bad(url, errbuf, errlen, "database (after the '/') must be a number");
            if (!root)
                u->db = (int)v;
        }
    }
    if (curl_url_get(h, CURLUPART_QUERY, &s, 0) == CURLUE_OK) { /* "db=N", the only one */
        char msg[96];
        size_t n = strcspn(s, "=&");
        snprintf(msg, sizeof msg, "unknown parameter '%.*s' (only db=N is known)",
                 (int)(n < 40 ? n : 40), s);
        bool known = strncmp(s, "db=", 3) == 0;
        curl_free(s);
        if (!known)
            return bad(url, errbuf, errlen, msg);
        if (get_number(h, CURLUPART_QUERY, 3, 1000000, &v) < 0)
            return bad(url, errbuf, errlen, "db must be a non-negative number");
        u->db = (int)v;
    }
    return 0;
}

/* ---- redis+sentinel:// ---- */

/* s[0..n) %XX-decoded into a string of our own in *out. Returns 0, -EINVAL for a bad
 * escape (or an empty text when !empty_ok), -ENOMEM. */
static int decode_span(const char *s, size_t n, bool empty_ok, char **out) {
    *out = NULL;
    char *raw = strndup(s, n), *dec = NULL;
    int len = 0, rc = 0;
    if (raw == NULL)
        return -ENOMEM;
    if (!escapes_ok(raw) || (n == 0 && !empty_ok))
        rc = -EINVAL;
    else if ((dec = curl_easy_unescape(NULL, raw, (int)n, &len)) == NULL ||
             (*out = strndup(dec, (size_t)len)) == NULL)
        rc = -ENOMEM;
    curl_free(dec);
    free(raw);
    return rc;
}

/* One sentinel address, "host[:port]", read by curl as a redis:// URL's host is. */
static int sentinel_addr(const char *item, size_t n, green_redis_addr *a, const char *url,
                         char *errbuf, size_t errlen) {
    char *text = NULL;
    if (n == 0)
        return bad(url, errbuf, errlen, "empty sentinel address (between commas)");
    if (asprintf(&text, "redis://%.*s", (int)n, item) < 0)
        return -ENOMEM;
    int rc = -ENOMEM;
    CURLU *h = curl_url();
    if (h != NULL) {
        CURLUcode uc = curl_url_set(h, CURLUPART_URL, text, CURLU_NON_SUPPORT_SCHEME);
        if (uc != CURLUE_OK)
            rc = refused(uc, url, text + 8, errbuf, errlen);
        else if ((rc = read_host(h, DEFAULT_SENTINEL_PORT, &a->host, &a->port)) == -EINVAL)
            rc = bad(url, errbuf, errlen, "sentinel port must be a number from 1 to 65535");
        curl_url_cleanup(h);
    }
    free(text);
    return rc;
}

/* The user information of a redis+sentinel:// URL (the data nodes' login), decoded by curl
 * as for redis://. */
static int sentinel_login(const char *ui, size_t n, green_redis_url *u, const char *url,
                          char *errbuf, size_t errlen) {
    char *text = malloc(3 * n + 32), *p = text;
    if (text == NULL)
        return -ENOMEM;
    p += sprintf(p, "redis://");
    put_encoded(&p, ui, n, ":");
    strcpy(p, "@h");
    int rc = -ENOMEM;
    CURLU *h = curl_url();
    if (h != NULL) {
        CURLUcode uc = curl_url_set(h, CURLUPART_URL, text, CURLU_NON_SUPPORT_SCHEME);
        rc = uc != CURLUE_OK ? refused(uc, url, "h", errbuf, errlen)
                             : read_parts(h, false, url, u, errbuf, errlen);
        curl_url_cleanup(h);
    }
    free(text);
    free(u->host); /* the stand-in "h" */
    u->host = NULL;
    return rc;
}

/* The query of a redis+sentinel:// URL: db=N and sentinel_password=... (whose value is
 * taken from the original URL by sentinel_param). */
static int sentinel_query(const char *q, green_redis_url *u, const char *url, char *errbuf,
                          size_t errlen) {
    while (*q != '\0') {
        size_t n = strcspn(q, "&");
        if (n > 3 && strncmp(q, "db=", 3) == 0) {
            char digits[12];
            if (n - 3 > 7 || strspn(q + 3, "0123456789") != n - 3)
                return bad(url, errbuf, errlen, "db must be a non-negative number");
            snprintf(digits, sizeof digits, "%.*s", (int)(n - 3), q + 3);
            u->db = atoi(digits);
        } else if (strncmp(q, "sentinel_password=", 18) != 0) {
            char msg[128];
            size_t k = strcspn(q, "=&");
            snprintf(msg, sizeof msg,
                     "unknown parameter '%.*s' (db=N and sentinel_password=... are known)",
                     (int)(k < 40 ? k : 40), q);
            return bad(url, errbuf, errlen, msg);
        }
        q += n + (q[n] == '&');
    }
    return 0;
}

/* redis+sentinel://[login@]addr[,addr...]/master[/db][?query]; url is the original (for
 * messages, and the sentinel password), text the same with that password taken out. */
static int parse_sentinel(const char *url, const char *text, green_redis_url *u, char *errbuf,
                          size_t errlen) {
    const char *ui = NULL, *ui_end = NULL, *p;
    int rc;
    if (strchr(text, '#') != NULL)
        return bad(url, errbuf, errlen, "a '#' fragment has no meaning here (%23 encodes '#')");
    userinfo(text, &ui, &ui_end);
    if (ui != NULL && (rc = sentinel_login(ui, (size_t)(ui_end - ui), u, url, errbuf, errlen)))
        return rc;
    p = ui ? ui_end + 1 : strstr(text, "://") + 3;
    size_t hl = strcspn(p, "/?");
    if (hl == 0)
        return bad(url, errbuf, errlen, "missing host (the sentinels' addresses)");
    for (size_t i = 0; i <= hl; i++)
        if (i == hl || p[i] == ',')
            u->nsentinels++;
    if ((u->sentinels = calloc(u->nsentinels, sizeof *u->sentinels)) == NULL)
        return -ENOMEM;
    for (size_t i = 0, k = 0, start = 0; i <= hl; i++) {
        if (i < hl && p[i] != ',')
            continue;
        if ((rc = sentinel_addr(p + start, i - start, &u->sentinels[k++], url, errbuf, errlen)))
            return rc;
        start = i + 1;
    }
    p += hl;
    if (*p != '/' || strcspn(p + 1, "/?") == 0)
        return bad(url, errbuf, errlen, "missing master name (redis+sentinel://.../MASTER)");
    size_t ml = strcspn(++p, "/?");
    if ((rc = decode_span(p, ml, false, &u->master)) != 0)
        return rc == -EINVAL ? bad(url, errbuf, errlen, "bad %-escape in the master name") : rc;
    p += ml;
    if (*p == '/') {
        size_t dl = strcspn(++p, "?");
        if (dl > 7 || strspn(p, "0123456789") != dl)
            return bad(url, errbuf, errlen, "database (after the master name) must be a number");
        u->db = dl ? atoi(p) : 0;
        p += dl;
    }
    if (*p == '?' && (rc = sentinel_query(p + 1, u, url, errbuf, errlen)) != 0)
        return rc;
    size_t vlen = 0;
    const char *v = sentinel_param(url, &vlen);
    if (v != NULL && (rc = decode_span(v, vlen, false, &u->sentinel_password)) != 0)
        return rc == -EINVAL ? bad(url, errbuf, errlen, "bad or empty sentinel_password") : rc;
    return 0;
}

int green_redis_url_parse(const char *url, green_redis_url *out, char *errbuf, size_t errlen) {
    memset(out, 0, sizeof *out);
    if (errbuf != NULL && errlen > 0)
        errbuf[0] = '\0';
    if (url == NULL || *url == '\0')
        return bad("", errbuf, errlen, "empty URL");
    const char *sep = strstr(url, "://");
    size_t slen = sep ? (size_t)(sep - url) : 0;
    bool is_unix = slen == 4 && strncasecmp(url, "unix", 4) == 0;
    if (slen == 6 && strncasecmp(url, "rediss", 6) == 0)
        return bad(url, errbuf, errlen, "TLS (rediss://) is not supported");
    if (slen == 14 && strncasecmp(url, "redis+sentinel", 14) == 0) {
        char *text = without_sentinel_password(url, "");
        int rc = text ? parse_sentinel(url, text, out, errbuf, errlen) : -ENOMEM;
        free(text);
        if (rc != 0)
            green_redis_url_clear(out);
        return rc;
    }
    if (!is_unix && !(slen == 5 && strncasecmp(url, "redis", 5) == 0))
        return bad(url, errbuf, errlen, "scheme must be redis://, redis+sentinel:// or unix://");

    /* The user information (see the essay); for unix:// only when the path does not start
     * right away. */
    const char *rest = sep + 3, *ui = NULL, *ui_end = NULL;
    if (!(is_unix && rest[0] == '/'))
        userinfo(url, &ui, &ui_end);
    const char *hostpart = ui ? ui_end + 1 : rest;
    if (is_unix && hostpart[0] != '/')
        return bad(url, errbuf, errlen, "the socket path must be absolute (unix:///path)");
    if (!is_unix && (hostpart[0] == '\0' || strchr("/?#", hostpart[0])))
        return bad(url, errbuf, errlen, "missing host");

    /* What curl parses: the scheme, the user information encoded, the host (for unix://,
     * a stand-in and the encoded path). At most 3 bytes for each byte of the URL. */
    char *text = malloc(3 * strlen(url) + 32), *p = text;
    if (text == NULL)
        return -ENOMEM;
    p += sprintf(p, "%s://", is_unix ? "unix" : "redis");
    if (ui != NULL) {
        put_encoded(&p, ui, (size_t)(ui_end - ui), ":");
        *p++ = '@';
    }
    if (is_unix) {
        p += sprintf(p, "localhost");
        put_encoded(&p, hostpart, strlen(hostpart), ":@/?");
    } else {
        p += sprintf(p, "%s", hostpart);
    }
    *p = '\0';

    int rc = -ENOMEM;
    CURLU *h = curl_url();
    if (h != NULL) {
        CURLUcode uc =
            curl_url_set(h, CURLUPART_URL, text, CURLU_NON_SUPPORT_SCHEME | CURLU_PATH_AS_IS);
        rc = uc != CURLUE_OK ? refused(uc, url, hostpart, errbuf, errlen)
                             : read_parts(h, is_unix, url, out, errbuf, errlen);
        curl_url_cleanup(h);
    }
    free(text);
    if (rc != 0)
        green_redis_url_clear(out);
    return rc;
}
