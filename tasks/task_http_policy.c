/*
 * task_http_policy.c - the address and host-name rules of task_http_policy.h.
 *
 * Every network rule is kept as a 128-bit IPv6 network: an IPv4 rule a.b.c.d/n becomes
 * ::ffff:a.b.c.d/(96+n), and an IPv4 address being checked becomes ::ffff:a.b.c.d. So an
 * IPv4-mapped IPv6 address meets exactly the rules of the IPv4 address it carries, with no
 * special case that a later change could forget. A check is a linear scan: the lists are
 * a handful of entries written by an administrator, and a scan costs far less than the
 * connection it guards.
 *
 * Host names are stored lower-cased, without the "*." of a wildcard and without a trailing
 * dot, so a check compares bytes only.
 *
 * Pure: no I/O, no global state; runs on whatever stack calls it (curl callbacks run it on
 * the hub's stack).
 */
#include "task_http_policy.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HOST_MAX 253
#define RULE_TEXT_MAX 256 /* "*." and a 253-byte name */

typedef struct rule {
    enum task_http_rule_origin origin;
    bool is_host;
    bool wildcard;            /* host rules: "*.name" */
    unsigned char net[16];    /* network rules: the network, IPv4 as mapped IPv6 */
    int prefix;               /* network rules: 0..128, in IPv6 bits */
    char name[HOST_MAX + 1];  /* host rules: lower-case, no "*.", no trailing dot */
    char text[RULE_TEXT_MAX]; /* as written, for messages */
} rule;

struct task_http_policy {
    rule *rules;
    size_t n;
};

/* Built-in deny rules; see the header for why each is here. */
static const char *const builtin_deny[] = {
    "0.0.0.0/8",   "::/128",   "169.254.0.0/16",    "fe80::/10",          "224.0.0.0/4",
    "240.0.0.0/4", "ff00::/8", "fd00:ec2::254/128", "100.100.100.200/32",
};

bool task_http_policy_has_host_rules(const task_http_policy *p) {
    for (size_t i = 0; p != NULL && i < p->n; i++) {
        if (p->rules[i].is_host)
            return true;
    }
    return false;
}

const char *task_http_rule_origin_name(enum task_http_rule_origin origin) {
    switch (origin) {
    case TASK_HTTP_RULE_BUILTIN:
        return "the built-in deny list";
    case TASK_HTTP_RULE_DENY:
        return "--http-deny";
    case TASK_HTTP_RULE_ALLOW:
        return "--http-allow";
    default:
        return "no rule";
    }
}

/* ---- parsing ------------------------------------------------------------------------ */

static void mapped(const struct in_addr *a4, unsigned char out[16]) {
    memset(out, 0, 10);
    out[10] = out[11] = 0xff;
    memcpy(out + 12, a4, 4);
}

/* Whether the bits of a beyond prefix are all zero. */
static bool host_bits_clear(const unsigned char a[16], int prefix) {
    for (int bit = prefix; bit < 128; bit++)
        if (a[bit / 8] & (0x80 >> (bit % 8)))
            return false;
    return true;
}

/* "a.b.c.d", "a.b.c.d/n", "x::y", "x::y/n" into r; false when text is not one. */
static bool parse_network(const char *text, rule *r) {
    char addr[64];
    const char *slash = strchr(text, '/');
    size_t alen = slash ? (size_t)(slash - text) : strlen(text);
    if (alen == 0 || alen >= sizeof addr)
        return false;
    memcpy(addr, text, alen);
    addr[alen] = '\0';
    struct in_addr a4;
    int bits;
    if (inet_pton(AF_INET, addr, &a4) == 1) {
        mapped(&a4, r->net);
        bits = 32;
    } else if (inet_pton(AF_INET6, addr, r->net) == 1) {
        bits = 128;
    } else {
        return false;
    }
    int prefix = bits;
    if (slash != NULL) {
        const char *p = slash + 1;
        size_t digits = strspn(p, "0123456789");
        if (digits == 0 || digits > 3 || p[digits] != '\0')
            return false;
        prefix = atoi(p);
        if (prefix > bits)
            return false;
    }
    r->prefix = prefix + (128 - bits);
    return true;
}

/* A DNS name, optionally "*." first: labels of letters, digits, '-' and '_', 1..63 bytes,
 * at most 253 in all, the last one not all digits (that would be a malformed address). */
static bool parse_host(const char *text, rule *r) {
    const char *p = text;
    r->wildcard = strncmp(p, "*.", 2) == 0;
    if (r->wildcard)
        p += 2;
    size_t len = strlen(p);
    if (len > 0 && p[len - 1] == '.')
        len--;
    if (len == 0 || len > HOST_MAX)
        return false;
    size_t label = 0;
    bool digits_only = true;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '.') {
            if (label == 0)
                return false;
            label = 0;
            digits_only = true;
            r->name[i] = '.';
            continue;
        }
        if (!isalnum(c) && c != '-' && c != '_')
            return false;
        digits_only &= isdigit(c) != 0;
        if (++label > 63)
            return false;
        r->name[i] = (char)tolower(c);
    }
    if (label == 0 || digits_only)
        return false;
    r->name[len] = '\0';
    return true;
}

/* The message for a network with host bits set, naming the network it would be. */
static void network_text(const rule *r, char *why, size_t whylen, const char *text) {
    unsigned char net[16];
    char addr[INET6_ADDRSTRLEN];
    for (int i = 0; i < 16; i++) {
        int keep = r->prefix - 8 * i;
        net[i] = keep >= 8   ? r->net[i]
                 : keep <= 0 ? 0
                             : (unsigned char)(r->net[i] & (0xff << (8 - keep)));
    }
    bool v4 = strchr(text, ':') == NULL;
    inet_ntop(v4 ? AF_INET : AF_INET6, v4 ? (const void *)(net + 12) : net, addr, sizeof addr);
    snprintf(why, whylen, "'%s' has host bits set (the network is %s/%d)", text, addr,
             v4 ? r->prefix - 96 : r->prefix);
}

static int parse_rule(const char *text, enum task_http_rule_origin origin, rule *r, char *why,
                      size_t whylen) {
    memset(r, 0, sizeof *r);
    r->origin = origin;
    snprintf(r->text, sizeof r->text, "%s", text);
    if (parse_network(text, r)) {
        if (!host_bits_clear(r->net, r->prefix)) {
            network_text(r, why, whylen, text);
            return -EINVAL;
        }
        return 0;
    }
    if (strchr(text, '/') == NULL && strchr(text, ':') == NULL && parse_host(text, r)) {
        r->is_host = true;
        return 0;
    }
    snprintf(why, whylen, "'%s' is not an address, a CIDR or a host name", text);
    return -EINVAL;
}

/* Parse a comma list; append each rule to p when p is not NULL (else only validate). */
static int parse_list(const char *list, enum task_http_rule_origin origin, task_http_policy *p,
                      char *why, size_t whylen) {
    if (list == NULL || *list == '\0')
        return 0;
    for (const char *s = list;;) {
        size_t len = strcspn(s, ",");
        const char *b = s, *e = s + len;
        while (b < e && isspace((unsigned char)*b))
            b++;
        while (e > b && isspace((unsigned char)e[-1]))
            e--;
        if (b == e) {
            snprintf(why, whylen, "empty entry in '%s'", list);
            return -EINVAL;
        }
        char text[RULE_TEXT_MAX];
        if ((size_t)(e - b) >= sizeof text) {
            snprintf(why, whylen, "'%.40s...' is too long for an address or a host name", b);
            return -EINVAL;
        }
        memcpy(text, b, (size_t)(e - b));
        text[e - b] = '\0';
        rule r;
        int rc = parse_rule(text, origin, &r, why, whylen);
        if (rc != 0)
            return rc;
        if (p != NULL) {
            rule *grown = realloc(p->rules, (p->n + 1) * sizeof *grown);
            if (grown == NULL)
                return -ENOMEM;
            p->rules = grown;
            p->rules[p->n++] = r;
        }
        s += len;
        if (*s == '\0')
            return 0;
        s++;
    }
}

int task_http_policy_validate(const char *list, char *why, size_t whylen) {
    return parse_list(list, TASK_HTTP_RULE_DENY, NULL, why, whylen);
}

int task_http_policy_new(const char *deny, const char *allow, task_http_policy **out, char *why,
                         size_t whylen) {
    *out = NULL;
    why[0] = '\0';
    task_http_policy *p = calloc(1, sizeof *p);
    if (p == NULL)
        return -ENOMEM;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < sizeof builtin_deny / sizeof *builtin_deny; i++)
        rc = parse_list(builtin_deny[i], TASK_HTTP_RULE_BUILTIN, p, why, whylen);
    if (rc == 0)
        rc = parse_list(deny, TASK_HTTP_RULE_DENY, p, why, whylen);
    if (rc == 0)
        rc = parse_list(allow, TASK_HTTP_RULE_ALLOW, p, why, whylen);
    if (rc != 0) {
        if (rc == -ENOMEM)
            snprintf(why, whylen, "out of memory");
        task_http_policy_free(p);
        return rc;
    }
    *out = p;
    return 0;
}

void task_http_policy_free(task_http_policy *p) {
    if (p == NULL)
        return;
    free(p->rules);
    free(p);
}

/* ---- checking ----------------------------------------------------------------------- */

/* On a tie in specificity: a user's deny, then a user's allow, then a built-in deny. */
static int rank(enum task_http_rule_origin origin) {
    return origin == TASK_HTTP_RULE_DENY ? 2 : origin == TASK_HTTP_RULE_ALLOW ? 1 : 0;
}

static bool in_network(const unsigned char a[16], const rule *r) {
    int full = r->prefix / 8, rest = r->prefix % 8;
    if (memcmp(a, r->net, (size_t)full) != 0)
        return false;
    if (rest == 0)
        return true;
    unsigned char mask = (unsigned char)(0xff << (8 - rest));
    return (a[full] & mask) == (r->net[full] & mask);
}

/* How specifically a host rule matches host (lower-case, no trailing dot): -1 for no
 * match, an exact name above every wildcard, a longer wildcard above a shorter one. */
static int host_score(const char *host, size_t hlen, const rule *r) {
    size_t nlen = strlen(r->name);
    if (!r->wildcard)
        return hlen == nlen && memcmp(host, r->name, nlen) == 0 ? HOST_MAX + 1 : -1;
    if (hlen <= nlen + 1 || host[hlen - nlen - 1] != '.')
        return -1;
    return memcmp(host + hlen - nlen, r->name, nlen) == 0 ? (int)nlen : -1;
}

static void decide(task_http_verdict *v, const rule *r) {
    v->allowed = r == NULL || r->origin == TASK_HTTP_RULE_ALLOW;
    v->origin = r ? r->origin : TASK_HTTP_RULE_NONE;
    snprintf(v->rule, sizeof v->rule, "%s", r ? r->text : "");
}

/* The host-name rule that decides for host, or NULL. */
static const rule *host_rule(const task_http_policy *p, const char *host) {
    char name[HOST_MAX + 2];
    size_t hlen = host ? strlen(host) : 0;
    if (hlen > 0 && host[hlen - 1] == '.')
        hlen--;
    if (hlen == 0 || hlen > HOST_MAX)
        return NULL;
    for (size_t i = 0; i < hlen; i++)
        name[i] = (char)tolower((unsigned char)host[i]);
    name[hlen] = '\0';
    const rule *best = NULL;
    int best_score = -1;
    for (size_t i = 0; i < p->n; i++) {
        const rule *r = &p->rules[i];
        int score = r->is_host ? host_score(name, hlen, r) : -1;
        if (score > best_score ||
            (score >= 0 && score == best_score && rank(r->origin) > rank(best->origin))) {
            best = r;
            best_score = score;
        }
    }
    return best;
}

/* The network rule that decides for a, or NULL: the longest prefix, then rank(). */
static const rule *network_rule(const task_http_policy *p, const unsigned char a[16]) {
    const rule *best = NULL;
    for (size_t i = 0; i < p->n; i++) {
        const rule *r = &p->rules[i];
        if (r->is_host || !in_network(a, r))
            continue;
        if (best == NULL || r->prefix > best->prefix ||
            (r->prefix == best->prefix && rank(r->origin) > rank(best->origin)))
            best = r;
    }
    return best;
}

/* The IPv6 forms that carry an IPv4 address a translator or tunnel may deliver to (the
 * header lists them). Returns the form's name and the address in v4, or NULL. An
 * IPv4-mapped address is not among them: it is stored as the IPv4 address itself, so its
 * one check is the IPv4 check already. */
static const char *embedded_ipv4(const unsigned char a[16], unsigned char v4[4]) {
    static const unsigned char zero[12];
    static const unsigned char nat64[12] = {0x00, 0x64, 0xff, 0x9b};
    static const unsigned char nat64_local[6] = {0x00, 0x64, 0xff, 0x9b, 0x00, 0x01};
    static const unsigned char translated[12] = {[8] = 0xff, [9] = 0xff};
    if (memcmp(a, zero, 12) == 0) {
        /* ::/96 but not ::/104, where :: (unspecified) and ::1 (loopback) are IPv6's own
         * and 0.0.0.0/8 has no address to embed. */
        if (a[12] == 0)
            return NULL;
        memcpy(v4, a + 12, 4);
        return "IPv4-compatible";
    }
    if (memcmp(a, translated, 12) == 0) { /* ::ffff:0:0/96, SIIT (RFC 2765) */
        memcpy(v4, a + 12, 4);
        return "IPv4-translated";
    }
    if (memcmp(a, nat64, 12) == 0) { /* 64:ff9b::/96, the well-known prefix (RFC 6052) */
        memcpy(v4, a + 12, 4);
        return "NAT64";
    }
    if (memcmp(a, nat64_local, 6) == 0) {
        /* 64:ff9b:1::/48 (RFC 8215), laid out as RFC 6052 does for a /48: the address in
         * bits 48-63 and 72-87, around the u-octet (bits 64-71, always zero). */
        v4[0] = a[6], v4[1] = a[7], v4[2] = a[9], v4[3] = a[10];
        return "NAT64";
    }
    if (a[0] == 0x20 && a[1] == 0x02) { /* 2002::/16, 6to4 (RFC 3056): bits 16-47 */
        memcpy(v4, a + 2, 4);
        return "6to4";
    }
    if (a[0] == 0x20 && a[1] == 0x01 && a[2] == 0 && a[3] == 0) {
        /* 2001::/32, Teredo (RFC 4380): the client's address, the last 32 bits inverted. */
        for (int i = 0; i < 4; i++)
            v4[i] = (unsigned char)~a[12 + i];
        return "Teredo";
    }
    return NULL;
}

/* A host-name rule decides alone. Otherwise the network rules judge the address itself
 * and, for a form that embeds an IPv4 address, that IPv4 address (as ::ffff:a.b.c.d) on
 * its own; the connection is allowed only when both are, and a refusal names the view that
 * refused, the address itself first. */
static bool check_bytes(const task_http_policy *p, const char *host, const unsigned char a[16],
                        task_http_verdict *v) {
    v->form = NULL;
    v->ipv4[0] = '\0';
    const rule *best = host_rule(p, host);
    if (best != NULL) {
        decide(v, best);
        return v->allowed;
    }
    best = network_rule(p, a);
    unsigned char v4[4];
    const char *form = embedded_ipv4(a, v4);
    if (form != NULL && (best == NULL || best->origin == TASK_HTTP_RULE_ALLOW)) {
        struct in_addr in;
        unsigned char m[16];
        memcpy(&in, v4, 4);
        mapped(&in, m);
        const rule *inner = network_rule(p, m);
        if (inner != NULL && (best == NULL || inner->origin != TASK_HTTP_RULE_ALLOW)) {
            best = inner;
            v->form = form;
            inet_ntop(AF_INET, v4, v->ipv4, sizeof v->ipv4);
        }
    }
    decide(v, best);
    return v->allowed;
}

static bool deny_family(task_http_verdict *v) {
    v->form = NULL;
    v->ipv4[0] = '\0';
    v->allowed = false;
    v->origin = TASK_HTTP_RULE_BUILTIN;
    snprintf(v->rule, sizeof v->rule, "address family");
    return false;
}

bool task_http_policy_check(const task_http_policy *p, const char *host,
                            const struct sockaddr *addr, socklen_t len, task_http_verdict *v) {
    unsigned char a[16];
    if (addr->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        struct sockaddr_in sin;
        memcpy(&sin, addr, sizeof sin);
        mapped(&sin.sin_addr, a);
    } else if (addr->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        struct sockaddr_in6 sin6;
        memcpy(&sin6, addr, sizeof sin6);
        memcpy(a, &sin6.sin6_addr, 16);
    } else {
        return deny_family(v);
    }
    return check_bytes(p, host, a, v);
}

bool task_http_policy_check_text(const task_http_policy *p, const char *host, const char *addr,
                                 task_http_verdict *v) {
    unsigned char a[16];
    struct in_addr a4;
    if (inet_pton(AF_INET, addr, &a4) == 1)
        mapped(&a4, a);
    else if (inet_pton(AF_INET6, addr, a) != 1)
        return deny_family(v);
    return check_bytes(p, host, a, v);
}
