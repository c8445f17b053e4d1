/*
 * task_http_policy.h - which addresses and host names an http.* task may connect to: the
 * defence against a task message that points the worker at the host's own neighbourhood
 * (server-side request forgery), above all the cloud metadata service at 169.254.169.254
 * that hands out the machine's credentials.
 *
 * A policy is a set of rules, each allow or deny, each an address network or a host name:
 *
 *   - addresses: "10.0.0.0/8", "127.0.0.1" (a /32), "fc00::/7", "::1" (a /128). An IPv4
 *     network is also the IPv4-mapped IPv6 network (::ffff:10.0.0.0/104), and a mapped
 *     address is checked as the IPv4 address it carries, so ::ffff:169.254.169.254 is
 *     169.254.169.254 (other IPv6 forms that carry an IPv4 address: below). A network
 *     with host bits set ("10.0.0.1/8") is refused as a typo.
 *   - host names: "api.example.com" (exactly that name) or "*.example.com" (any name
 *     under it, not the name itself); case-insensitive; a trailing dot on the URL's host
 *     is ignored. Matched against the host of the URL being fetched (each redirect's own).
 *
 * The decision for a connection to address A made for a URL with host H:
 *
 *   1. If a host-name rule matches H, the most specific one decides: an exact name before
 *      any wildcard, a longer wildcard before a shorter one, deny before allow on a tie.
 *      A host-name allow therefore also admits a name whose addresses a network rule
 *      denies (for "--http-deny 10.0.0.0/8 --http-allow internal.example.com").
 *   2. Otherwise the network rule with the longest prefix containing A decides ("longest
 *      prefix wins", as in a routing table): "--http-deny 127.0.0.0/8 --http-allow
 *      127.0.0.1" admits 127.0.0.1 only. On a tie a user's deny beats a user's allow, and
 *      a user's allow beats a built-in deny (so "--http-allow 169.254.0.0/16" undoes that
 *      default).
 *   3. No rule matches: allowed.
 *
 * IPv6 addresses that carry an IPv4 address. A translator or a tunnel may deliver a
 * connection to one of these IPv6 addresses to the IPv4 address inside it, so
 * [64:ff9b::169.254.169.254] could reach the metadata service. Each of these forms is
 * judged twice by the network rules (step 2): as the IPv6 address it is, and as the IPv4
 * address it carries, taken as if connected to directly. The connection is allowed only
 * when both views allow it; a refusal names the view that refused (the address itself
 * first) and, for the IPv4 view, the form and the IPv4 address. The forms:
 *
 *   - IPv4-compatible ::a.b.c.d (::/96, except ::/104: :: and ::1 are IPv6's own, and
 *     0.0.0.0/8 holds no address to reach);
 *   - IPv4-mapped ::ffff:a.b.c.d: stored as the IPv4 address itself (above), so its two
 *     views are one;
 *   - IPv4-translated ::ffff:0:a.b.c.d (::ffff:0:0/96, SIIT);
 *   - NAT64 64:ff9b::a.b.c.d (64:ff9b::/96, the well-known prefix, RFC 6052), and NAT64
 *     in the local-use 64:ff9b:1::/48 (RFC 8215), read with RFC 6052's layout for a /48
 *     prefix: the IPv4 address in bits 48-63 and 72-87, around the u-octet (bits 64-71).
 *     A translator that uses a longer prefix inside 64:ff9b:1::/48 puts the address
 *     elsewhere: deny that prefix explicitly (--http-deny 64:ff9b:1:2::/96);
 *   - 6to4 2002:AABB:CCDD::/48 (2002::/16): the address in bits 16-47;
 *   - Teredo (2001::/32): the client's address, the last 32 bits inverted (XOR
 *     0xffffffff).
 *
 * Allow exceptions lift a deny only in their own view: "--http-allow 2002::/16" does not
 * admit 2002:a9fe:a9fe::1, whose IPv4 view 169.254.169.254 the built-in list denies. To
 * reach an embedded IPv4 address that an IPv4 rule denies, allow the IPv4 address
 * ("--http-allow 10.1.2.3" beside "--http-deny 10.0.0.0/8"): it is then allowed in every
 * form, unless an IPv6 rule denies the form's own address. A host-name rule (step 1)
 * still decides alone.
 *
 * Built-in deny rules, always present below the user's: 0.0.0.0/8 and :: (unspecified:
 * Linux connects them to the local host), 169.254.0.0/16 and fe80::/10 (link-local, where
 * cloud metadata services live), 224.0.0.0/4, 240.0.0.0/4 and ff00::/8 (multicast,
 * reserved, broadcast), and the metadata addresses outside link-local: fd00:ec2::254
 * (AWS over IPv6) and 100.100.100.200 (Alibaba Cloud). Loopback and private ranges are
 * allowed unless denied.
 *
 * Host-name rules are a convenience, not the boundary: a denied name can be reached by
 * another name for the same address. The boundary is the network rules, which the caller
 * applies to the address actually connected to, after DNS, so that DNS rebinding cannot
 * slip past them.
 *
 * Pure functions: no I/O, never yield, callable from any stack (the curl callbacks of
 * task_http.c call task_http_policy_check on the hub's). A policy is immutable once built
 * and may be read by any number of threads.
 */
#ifndef WORKERD_TASK_HTTP_POLICY_H
#define WORKERD_TASK_HTTP_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

typedef struct task_http_policy task_http_policy;

/* Where the deciding rule came from, for messages. */
enum task_http_rule_origin {
    TASK_HTTP_RULE_NONE,    /* no rule matched: allowed */
    TASK_HTTP_RULE_BUILTIN, /* a built-in deny rule */
    TASK_HTTP_RULE_DENY,    /* the user's deny list (--http-deny) */
    TASK_HTTP_RULE_ALLOW,   /* the user's allow list (--http-allow) */
};

/* The outcome of a check. */
typedef struct task_http_verdict {
    bool allowed;
    enum task_http_rule_origin origin;
    char rule[256]; /* the deciding rule as written ("127.0.0.0/8", "*.example.com"), or "" */
    /* When the rule decided on the IPv4 address an IPv6 address carries (above): the form,
     * a static string ("IPv4-compatible", "IPv4-translated", "NAT64", "6to4", "Teredo"),
     * and that IPv4 address in text; else NULL and "". */
    const char *form;
    char ipv4[16];
} task_http_verdict;

/* Check a comma-separated list of rules (blanks around each are ignored) without building
 * anything: 0 when every entry is valid, else -EINVAL with a message in why such as
 * "'10.0.0.0/33' is not an address, a CIDR or a host name". NULL or "" is an empty list
 * (valid). For option validation at start-up. */
int task_http_policy_validate(const char *list, char *why, size_t whylen);

/* Build a policy from the user's deny and allow lists (each NULL or "" for none) plus the
 * built-in deny rules. Returns 0 and a new policy in *out (free it with
 * task_http_policy_free), -EINVAL with the reason in why (as above), or -ENOMEM. */
int task_http_policy_new(const char *deny, const char *allow, task_http_policy **out, char *why,
                         size_t whylen);

/* Free a policy; NULL is ignored. */
void task_http_policy_free(task_http_policy *p);

/* Decide a connection to the address addr of len bytes (AF_INET or AF_INET6; any other
 * family, or a len too short for its family, is denied, with origin
 * TASK_HTTP_RULE_BUILTIN and rule "address family") made for a URL
 * whose host is host (NULL or "" when unknown: only the network rules apply). Fills *v
 * and returns v->allowed. */
bool task_http_policy_check(const task_http_policy *p, const char *host,
                            const struct sockaddr *addr, socklen_t len, task_http_verdict *v);

/* The same for an address in text form (curl's CURLINFO_PRIMARY_IP, "127.0.0.1" or
 * "::1"); text that is not an address is denied like an unknown family. */
bool task_http_policy_check_text(const task_http_policy *p, const char *host, const char *addr,
                                 task_http_verdict *v);

/* Whether any rule is a host-name rule: without one, the host passed to the checks makes
 * no difference, and a caller may pass NULL rather than work it out. */
bool task_http_policy_has_host_rules(const task_http_policy *p);

/* How origin reads in a message: "--http-deny", "--http-allow", "the built-in deny list",
 * or "no rule". A static string. */
const char *task_http_rule_origin_name(enum task_http_rule_origin origin);

#endif
