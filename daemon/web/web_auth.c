/*
 * web_auth.c - who may use the dashboard, and which requests may change state (web.h
 * "web_auth.c"; README.md "The dashboard", "Security").
 *
 * Without --auth the server listens on loopback only (web_main.c refuses anything else),
 * and every request must name a loopback host in its Host header: a page of another site
 * whose name was rebound to 127.0.0.1 (DNS rebinding) sends its own name and gets 403.
 *
 * With --auth FILE, every request needs credentials: "Authorization: Bearer TOKEN" for
 * a token line of the file (compared in constant time), or HTTP Basic for a user line,
 * checked with crypt(3) from libcrypt (yescrypt "$y$", or sha512-crypt "$6$": the hashes
 * `mkpasswd` and `openssl passwd -6` make). libcrypt is already on every Debian system
 * (it is how /etc/shadow is checked), so no new library and no hand-rolled KDF. A
 * yescrypt check costs milliseconds of CPU on the one thread: after a good password
 * the browser gets a session cookie (random, HttpOnly, SameSite=Strict, 12 hours; at most
 * SESSIONS kept, the oldest replaced), and requests with it skip the hash. A wrong
 * password is refused after the hash, like any other.
 *
 * CSRF: a POST must carry X-CSRF-Token equal to its wd_csrf cookie (the double-submit
 * pattern: another site can neither read the cookie nor send a custom header without a
 * CORS preflight, which this server never grants), a Content-Type of application/json,
 * and, when the browser sends Origin, this server's own origin. GET never changes state.
 */
#include "web.h"

#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SESSIONS 1024
#define SESSION_SECONDS (12 * 3600)
#define USERS_MAX 256
#define LINE_MAX_ 1024

struct entry {
    char *name;   /* NULL for a token */
    char *secret; /* the token, or the crypt hash */
};

struct session {
    char token[33];
    time_t expires;
};

struct web_auth {
    struct entry e[USERS_MAX];
    size_t n;
    struct session s[SESSIONS];
    size_t next; /* the slot a new session takes */
};

void web_auth_token(char out[33]) {
    unsigned char raw[16];
    if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw) {
        /* getrandom cannot fail for 16 bytes once the pool is ready; never a weak token. */
        abort();
    }
    for (size_t i = 0; i < sizeof raw; i++)
        snprintf(out + 2 * i, 3, "%02x", raw[i]);
}

void web_auth_free(struct web_auth *a) {
    if (!a)
        return;
    for (size_t i = 0; i < a->n; i++) {
        free(a->e[i].name);
        if (a->e[i].secret)
            explicit_bzero(a->e[i].secret, strlen(a->e[i].secret));
        free(a->e[i].secret);
    }
    explicit_bzero(a, sizeof *a);
    free(a);
}

struct web_auth *web_auth_load(const char *path, char *why, size_t whylen) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        snprintf(why, whylen, "--auth: cannot read %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    if (st.st_mode & S_IROTH) {
        snprintf(why, whylen, "--auth: %s is readable by every user: chmod o-rwx it", path);
        close(fd);
        return NULL;
    }
    FILE *f = fdopen(fd, "r");
    struct web_auth *a = calloc(1, sizeof *a);
    if (!f || !a) {
        snprintf(why, whylen, "--auth: %s", strerror(ENOMEM));
        goto fail;
    }
    char line[LINE_MAX_];
    for (int no = 1; fgets(line, sizeof line, f); no++) {
        line[strcspn(line, "\r\n")] = '\0';
        char *p = line;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '\0' || *p == '#')
            continue;
        char *colon = strchr(p, ':');
        if (!colon || colon == p || colon[1] == '\0') {
            snprintf(why, whylen, "--auth: %s line %d: not 'token:SECRET' or 'USER:HASH'", path,
                     no);
            goto fail;
        }
        *colon = '\0';
        const char *secret = colon + 1;
        bool token = strcmp(p, "token") == 0;
        if (token && strlen(secret) < 16) {
            snprintf(why, whylen, "--auth: %s line %d: a token needs 16 characters or more", path,
                     no);
            goto fail;
        }
        if (!token && strncmp(secret, "$y$", 3) != 0 && strncmp(secret, "$6$", 3) != 0 &&
            strncmp(secret, "$gy$", 4) != 0 && strncmp(secret, "$7$", 3) != 0) {
            snprintf(why, whylen,
                     "--auth: %s line %d: user '%s' needs a yescrypt ($y$) or sha512-crypt ($6$) "
                     "hash, as `mkpasswd -m yescrypt` prints",
                     path, no, p);
            goto fail;
        }
        if (a->n == USERS_MAX) {
            snprintf(why, whylen, "--auth: %s: more than %d entries", path, USERS_MAX);
            goto fail;
        }
        a->e[a->n].name = token ? NULL : strdup(p);
        a->e[a->n].secret = strdup(secret);
        if (!a->e[a->n].secret || (!token && !a->e[a->n].name)) {
            snprintf(why, whylen, "--auth: %s", strerror(ENOMEM));
            a->n++;
            goto fail;
        }
        a->n++;
    }
    explicit_bzero(line, sizeof line);
    if (a->n == 0) {
        snprintf(why, whylen, "--auth: %s holds no user and no token", path);
        goto fail;
    }
    fclose(f);
    return a;
fail:
    explicit_bzero(line, sizeof line);
    web_auth_free(a);
    if (f)
        fclose(f);
    else
        close(fd);
    return NULL;
}

/* Equal strings, in time that depends on their lengths only. */
static bool same(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    unsigned char d = la != lb;
    for (size_t i = 0; i < la && i < lb; i++)
        d |= (unsigned char)(a[i] ^ b[i]);
    return d == 0;
}

static int b64val(int c) {
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    return c == '+' ? 62 : c == '/' ? 63 : -1;
}

/* Standard base64 into out (NUL-terminated); false when malformed or too long. */
static bool b64decode(const char *in, char *out, size_t cap) {
    size_t n = 0;
    unsigned acc = 0;
    int bits = 0;
    for (; *in && *in != '='; in++) {
        int v = b64val((unsigned char)*in);
        if (v < 0)
            return false;
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (n + 1 >= cap)
                return false;
            out[n++] = (char)((acc >> bits) & 0xff);
        }
    }
    out[n] = '\0';
    return strlen(out) == n; /* no NUL inside */
}

static bool user_ok(struct web_auth *a, const char *user, const char *password) {
    struct crypt_data *cd = calloc(1, sizeof *cd);
    bool ok = false;
    for (size_t i = 0; cd && i < a->n && !ok; i++) {
        if (!a->e[i].name || strcmp(a->e[i].name, user) != 0)
            continue;
        const char *h = crypt_rn(password, a->e[i].secret, cd, sizeof *cd);
        ok = h && h[0] != '*' && same(h, a->e[i].secret);
    }
    if (cd)
        explicit_bzero(cd, sizeof *cd);
    free(cd);
    return ok;
}

static bool session_ok(struct web_auth *a, const char *cookie) {
    char token[64];
    if (!web_cookie(cookie, "wd_session", token, sizeof token))
        return false;
    time_t now = time(NULL);
    for (size_t i = 0; i < SESSIONS; i++)
        if (a->s[i].expires > now && same(a->s[i].token, token))
            return true;
    return false;
}

static void session_new(struct web_auth *a, struct web_answer *ans) {
    struct session *s = &a->s[a->next];
    a->next = (a->next + 1) % SESSIONS;
    web_auth_token(s->token);
    s->expires = time(NULL) + SESSION_SECONDS;
    snprintf(ans->set_cookie, sizeof ans->set_cookie,
             "wd_session=%s; Path=/; HttpOnly; SameSite=Strict; Max-Age=%d", s->token,
             SESSION_SECONDS);
}

/* Host names a loopback address (any port): 127.x.y.z, [::1] or localhost. */
static bool loopback_host(const char *host) {
    if (!host)
        return false;
    char name[256];
    size_t n = strcspn(host, host[0] == '[' ? "]" : ":");
    if (host[0] == '[')
        n++;
    if (n >= sizeof name)
        return false;
    memcpy(name, host, n);
    name[n] = '\0';
    return strcmp(name, "localhost") == 0 || strcmp(name, "[::1]") == 0 ||
           strncmp(name, "127.", 4) == 0;
}

bool web_auth_allow(struct web *w, const struct web_request *rq, struct web_answer *ans) {
    struct web_auth *a = w->auth;
    if (!a) {
        if (loopback_host(rq->host))
            return true;
        web_error(ans, 403, "without --auth only a loopback Host (127.0.0.1, localhost) is served");
        return false;
    }
    if (rq->cookie && session_ok(a, rq->cookie))
        return true;
    const char *h = rq->authorization;
    if (h && strncasecmp(h, "Bearer ", 7) == 0) {
        const char *given = h + 7;
        bool ok = false;
        for (size_t i = 0; i < a->n; i++)
            if (!a->e[i].name)
                ok |= same(a->e[i].secret, given);
        if (ok)
            return true;
    } else if (h && strncasecmp(h, "Basic ", 6) == 0) {
        char pair[512];
        char *colon;
        if (b64decode(h + 6, pair, sizeof pair) && (colon = strchr(pair, ':')) != NULL) {
            *colon = '\0';
            bool ok = user_ok(a, pair, colon + 1);
            explicit_bzero(pair, sizeof pair);
            if (ok) {
                session_new(a, ans);
                return true;
            }
        }
    }
    web_error(ans, 401, "credentials needed (--auth): HTTP Basic or a bearer token");
    ans->ask_credentials = true;
    return false;
}

bool web_auth_csrf_ok(const struct web_request *rq, struct web_answer *ans) {
    char cookie[64];
    const char *why = NULL;
    if (!rq->content_type || strncasecmp(rq->content_type, "application/json", 16) != 0)
        why = "a POST must be application/json";
    else if (!rq->csrf || !rq->cookie ||
             !web_cookie(rq->cookie, "wd_csrf", cookie, sizeof cookie) || strlen(cookie) < 32 ||
             !same(cookie, rq->csrf))
        why = "missing or wrong CSRF token (X-CSRF-Token must equal the wd_csrf cookie; "
              "GET /api/session gives both)";
    if (!why && rq->origin && rq->host) {
        const char *o = rq->origin;
        bool ok = strncmp(o, "http://", 7) == 0 && strcmp(o + 7, rq->host) == 0;
        ok |= strncmp(o, "https://", 8) == 0 && strcmp(o + 8, rq->host) == 0;
        if (!ok)
            why = "cross-origin POST refused";
    }
    if (why) {
        web_error(ans, 403, "%s", why);
        return false;
    }
    return true;
}
