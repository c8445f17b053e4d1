/*
 * test_http_policy.c - the address policy of the http.* tasks (task_http_policy.h) as pure
 * functions: the built-in deny list (the cloud metadata address above all, in its IPv4,
 * IPv4-mapped IPv6 and IPv6 forms, and inside the IPv6 forms that carry an IPv4 address:
 * IPv4-compatible, NAT64, 6to4, Teredo), user deny and allow lists over IPv4 and IPv6, longest
 * prefix wins, host-name rules with wildcards, and the messages for bad entries.
 *
 * No packet is sent: addresses are only compared. This is where the built-in deny list is
 * tested; test_http_task.c tests the policy through curl with loopback addresses only.
 */
#include "task_http_policy.h"
#include "testlib.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>

static task_http_policy *make(const char *deny, const char *allow) {
    task_http_policy *p = NULL;
    char why[256];
    int rc = task_http_policy_new(deny, allow, &p, why, sizeof why);
    if (rc != 0)
        test__fail(__FILE__, __LINE__, "policy deny=%s allow=%s: %d %s", deny ? deny : "-",
                   allow ? allow : "-", rc, why);
    return p;
}

/* Check host/addr with both entry points (a sockaddr and the text form) and require that
 * they agree. */
static bool allows(const task_http_policy *p, const char *host, const char *addr,
                   task_http_verdict *v) {
    struct sockaddr_storage ss = {0};
    socklen_t len;
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, addr, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        len = sizeof *sin;
    } else {
        ASSERT_EQ(inet_pton(AF_INET6, addr, &sin6->sin6_addr), 1);
        sin6->sin6_family = AF_INET6;
        len = sizeof *sin6;
    }
    task_http_verdict text;
    bool a = task_http_policy_check(p, host, (struct sockaddr *)&ss, len, v);
    bool b = task_http_policy_check_text(p, host, addr, &text);
    if (a != b || strcmp(v->rule, text.rule) != 0 || v->form != text.form ||
        strcmp(v->ipv4, text.ipv4) != 0)
        test__fail(__FILE__, __LINE__, "%s: sockaddr and text checks disagree", addr);
    ASSERT_EQ(a, v->allowed);
    return a;
}

static void expect(const task_http_policy *p, const char *host, const char *addr, bool allowed,
                   enum task_http_rule_origin origin, const char *rule) {
    task_http_verdict v;
    allows(p, host, addr, &v);
    if (v.allowed != allowed || v.origin != origin || strcmp(v.rule, rule) != 0)
        test__fail(__FILE__, __LINE__, "%s %s: got %s by %s '%s', want %s by %s '%s'",
                   host ? host : "-", addr, v.allowed ? "allowed" : "denied",
                   task_http_rule_origin_name(v.origin), v.rule, allowed ? "allowed" : "denied",
                   task_http_rule_origin_name(origin), rule);
}

/* The same for a verdict on the IPv4 address inside an IPv6 form: also the form and that
 * address. */
static void expect_inside(const task_http_policy *p, const char *addr, bool allowed,
                          enum task_http_rule_origin origin, const char *rule, const char *form,
                          const char *ipv4) {
    task_http_verdict v;
    expect(p, NULL, addr, allowed, origin, rule);
    allows(p, NULL, addr, &v);
    if (v.form == NULL || strcmp(v.form, form) != 0 || strcmp(v.ipv4, ipv4) != 0)
        test__fail(__FILE__, __LINE__, "%s: decided for %s '%s', want %s '%s'", addr,
                   v.form ? v.form : "(no form)", v.ipv4, form, ipv4);
}

static void expect_bad(const char *list, const char *message) {
    char why[256] = "";
    ASSERT_EQ(task_http_policy_validate(list, why, sizeof why), -EINVAL);
    ASSERT_STREQ(why, message);
    task_http_policy *p = NULL;
    why[0] = '\0';
    ASSERT_EQ(task_http_policy_new(NULL, list, &p, why, sizeof why), -EINVAL);
    ASSERT(p == NULL);
    ASSERT_STREQ(why, message);
}

/* ---- the built-in deny list --------------------------------------------------------- */

TEST(test_metadata_address_is_denied_by_default) {
    task_http_policy *p = make(NULL, NULL);
    expect(p, "169.254.169.254", "169.254.169.254", false, TASK_HTTP_RULE_BUILTIN,
           "169.254.0.0/16");
    expect(p, "metadata.google.internal", "169.254.169.254", false, TASK_HTTP_RULE_BUILTIN,
           "169.254.0.0/16");
    expect(p, NULL, "169.254.0.1", false, TASK_HTTP_RULE_BUILTIN, "169.254.0.0/16");
    task_http_policy_free(p);
}

TEST(test_ipv4_mapped_metadata_address_is_denied_by_default) {
    task_http_policy *p = make(NULL, NULL);
    expect(p, NULL, "::ffff:169.254.169.254", false, TASK_HTTP_RULE_BUILTIN, "169.254.0.0/16");
    expect(p, NULL, "::ffff:a9fe:a9fe", false, TASK_HTTP_RULE_BUILTIN, "169.254.0.0/16");
    expect(p, NULL, "::ffff:0.0.0.0", false, TASK_HTTP_RULE_BUILTIN, "0.0.0.0/8");
    task_http_policy_free(p);
}

TEST(test_ipv6_metadata_and_link_local_are_denied_by_default) {
    task_http_policy *p = make(NULL, NULL);
    expect(p, NULL, "fd00:ec2::254", false, TASK_HTTP_RULE_BUILTIN, "fd00:ec2::254/128");
    expect(p, NULL, "fe80::1", false, TASK_HTTP_RULE_BUILTIN, "fe80::/10");
    expect(p, NULL, "febf:ffff::1", false, TASK_HTTP_RULE_BUILTIN, "fe80::/10");
    expect(p, NULL, "fec0::1", true, TASK_HTTP_RULE_NONE, ""); /* just past fe80::/10 */
    expect(p, NULL, "100.100.100.200", false, TASK_HTTP_RULE_BUILTIN, "100.100.100.200/32");
    task_http_policy_free(p);
}

TEST(test_unspecified_multicast_and_broadcast_are_denied_by_default) {
    task_http_policy *p = make(NULL, NULL);
    expect(p, NULL, "0.0.0.0", false, TASK_HTTP_RULE_BUILTIN, "0.0.0.0/8");
    expect(p, NULL, "0.1.2.3", false, TASK_HTTP_RULE_BUILTIN, "0.0.0.0/8");
    expect(p, NULL, "::", false, TASK_HTTP_RULE_BUILTIN, "::/128");
    expect(p, NULL, "224.0.0.1", false, TASK_HTTP_RULE_BUILTIN, "224.0.0.0/4");
    expect(p, NULL, "239.255.255.250", false, TASK_HTTP_RULE_BUILTIN, "224.0.0.0/4");
    expect(p, NULL, "255.255.255.255", false, TASK_HTTP_RULE_BUILTIN, "240.0.0.0/4");
    expect(p, NULL, "ff02::1", false, TASK_HTTP_RULE_BUILTIN, "ff00::/8");
    task_http_policy_free(p);
}

TEST(test_loopback_private_and_public_are_allowed_by_default) {
    task_http_policy *p = make(NULL, NULL);
    const char *addrs[] = {
        "127.0.0.1",   "::1",     "10.1.2.3",       "172.16.0.1",  "192.168.1.1",
        "100.64.0.1",  "fd12::1", "8.8.8.8",        "2001:db8::1", "169.253.255.255",
        "169.255.0.0", "1.0.0.0", "223.255.255.255"};
    for (size_t i = 0; i < sizeof addrs / sizeof *addrs; i++)
        expect(p, NULL, addrs[i], true, TASK_HTTP_RULE_NONE, "");
    task_http_policy_free(p);
}

TEST(test_other_address_families_are_denied) {
    task_http_policy *p = make(NULL, NULL);
    struct sockaddr sa = {.sa_family = AF_UNIX};
    task_http_verdict v;
    ASSERT(!task_http_policy_check(p, NULL, &sa, sizeof sa, &v));
    ASSERT_EQ(v.origin, TASK_HTTP_RULE_BUILTIN);
    ASSERT_STREQ(v.rule, "address family");
    /* An AF_INET6 sockaddr too short to hold an address. */
    sa.sa_family = AF_INET6;
    ASSERT(!task_http_policy_check(p, NULL, &sa, sizeof sa, &v));
    ASSERT(!task_http_policy_check_text(p, NULL, "not-an-address", &v));
    task_http_policy_free(p);
}

/* ---- IPv6 forms that carry an IPv4 address ------------------------------------------ */

TEST(test_ipv4_compatible_metadata_address_is_denied_by_default) {
    task_http_policy *p = make(NULL, NULL);
    expect_inside(p, "::169.254.169.254", false, TASK_HTTP_RULE_BUILTIN, "169.254.0.0/16",
                  "IPv4-compatible", "169.254.169.254");
    expect_inside(p, "::a9fe:1", false, TASK_HTTP_RULE_BUILTIN, "169.254.0.0/16", "IPv4-compatible",
                  "169.254.0.1");
    expect_inside(p, "::224.0.0.1", false, TASK_HTTP_RULE_BUILTIN, "224.0.0.0/4", "IPv4-compatible",
                  "224.0.0.1");
    expect_inside(p, "::100.100.100.200", false, TASK_HTTP_RULE_BUILTIN, "100.100.100.200/32",
                  "IPv4-compatible", "100.100.100.200");
    /* :: and ::1 are IPv6's unspecified and loopback addresses, not 0.0.0.0 and 0.0.0.1. */
    expect(p, NULL, "::", false, TASK_HTTP_RULE_BUILTIN, "::/128");
    expect(p, NULL, "::1", true, TASK_HTTP_RULE_NONE, "");
    expect(p, NULL, "::2", true, TASK_HTTP_RULE_NONE, "");
    expect(p, NULL, "::0.255.255.255", true, TASK_HTTP_RULE_NONE, "");
    expect(p, NULL, "::1.0.0.0", true, TASK_HTTP_RULE_NONE, "");
    expect(p, NULL, "::8.8.8.8", true, TASK_HTTP_RULE_NONE, "");
    task_http_policy_free(p);
}

TEST(test_ipv4_translated_metadata_address_is_denied_by_default) {
    task_http_policy *p = make(NULL, NULL);
    expect_inside(p, "::ffff:0:169.254.169.254", false, TASK_HTTP_RULE_BUILTIN, "169.254.0.0/16",
                  "IPv4-translated", "169.254.169.254");
    expect(p, NULL, "::ffff:0:8.8.8.8", true, TASK_HTTP_RULE_NONE, "");
    task_http_policy_free(p);
}

TEST(test_nat64_well_known_prefix_metadata_address_is_denied_by_default) {
    task_http_policy *p = make(NULL, NULL);
    expect_inside(p, "64:ff9b::169.254.169.254", false, TASK_HTTP_RULE_BUILTIN, "169.254.0.0/16",
                  "NAT64", "169.254.169.254");
    expect_inside(p, "64:ff9b::a9fe:a9fe", false, TASK_HTTP_RULE_BUILTIN, "169.254.0.0/16", "NAT64",
                  "169.254.169.254");
    expect(p, NULL, "64:ff9b::8.8.8.8", true, TASK_HTTP_RULE_NONE, "");
    /* Just outside the /96: not NAT64, so the last 32 bits mean nothing. */
    expect(p, NULL, "64:ff9b:0:0:0:1:a9fe:a9fe", true, TASK_HTTP_RULE_NONE, "");
    task_http_policy_free(p);
}

/* 64:ff9b:1::/48 with RFC 6052's /48 layout: a9fe in bits 48-63, the u-octet (bits 64-71)
 * zero, a9fe in bits 72-87. */
TEST(test_nat64_local_use_prefix_reads_the_48_bit_layout) {
    task_http_policy *p = make(NULL, NULL);
    expect_inside(p, "64:ff9b:1:a9fe:a9:fe00::", false, TASK_HTTP_RULE_BUILTIN, "169.254.0.0/16",
                  "NAT64", "169.254.169.254");
    expect_inside(p, "64:ff9b:1:a9fe:00a9:fe00:1234:5678", false, TASK_HTTP_RULE_BUILTIN,
                  "169.254.0.0/16", "NAT64", "169.254.169.254");
    /* 8.8.8.8 in the same layout is fine; the same bits read as a /96 would not matter. */
    expect(p, NULL, "64:ff9b:1:808:8:800::", true, TASK_HTTP_RULE_NONE, "");
    task_http_policy_free(p);
}

TEST(test_6to4_metadata_address_is_denied_by_default) {
    task_http_policy *p = make(NULL, NULL);
    expect_inside(p, "2002:a9fe:a9fe::1", false, TASK_HTTP_RULE_BUILTIN, "169.254.0.0/16", "6to4",
                  "169.254.169.254");
    expect_inside(p, "2002:a9fe:a9fe:ffff:1:2:3:4", false, TASK_HTTP_RULE_BUILTIN, "169.254.0.0/16",
                  "6to4", "169.254.169.254");
    expect_inside(p, "2002:e000:1::", false, TASK_HTTP_RULE_BUILTIN, "224.0.0.0/4", "6to4",
                  "224.0.0.1");
    expect(p, NULL, "2002:808:808::1", true, TASK_HTTP_RULE_NONE, "");
    expect(p, NULL, "2003:a9fe:a9fe::1", true, TASK_HTTP_RULE_NONE, "");
    task_http_policy_free(p);
}

/* Teredo: server 65.54.227.120 (4136:e378), flags 8000, port 63bf; the client's address
 * 169.254.169.254 is stored inverted, 5601:5601. */
TEST(test_teredo_client_metadata_address_is_denied_by_default) {
    task_http_policy *p = make(NULL, NULL);
    expect_inside(p, "2001:0:4136:e378:8000:63bf:5601:5601", false, TASK_HTTP_RULE_BUILTIN,
                  "169.254.0.0/16", "Teredo", "169.254.169.254");
    /* Not inverted, the same bits are 86.1.86.1: allowed. */
    expect(p, NULL, "2001:0:4136:e378:8000:63bf:a9fe:a9fe", true, TASK_HTTP_RULE_NONE, "");
    /* 2001:db8::/32 (documentation) is not Teredo. */
    expect(p, NULL, "2001:db8::5601:5601", true, TASK_HTTP_RULE_NONE, "");
    task_http_policy_free(p);
}

TEST(test_user_ipv4_deny_applies_inside_every_form) {
    task_http_policy *p = make("10.0.0.0/8", NULL);
    expect(p, NULL, "::ffff:10.1.2.3", false, TASK_HTTP_RULE_DENY, "10.0.0.0/8");
    expect_inside(p, "::10.1.2.3", false, TASK_HTTP_RULE_DENY, "10.0.0.0/8", "IPv4-compatible",
                  "10.1.2.3");
    expect_inside(p, "::ffff:0:10.1.2.3", false, TASK_HTTP_RULE_DENY, "10.0.0.0/8",
                  "IPv4-translated", "10.1.2.3");
    expect_inside(p, "64:ff9b::10.1.2.3", false, TASK_HTTP_RULE_DENY, "10.0.0.0/8", "NAT64",
                  "10.1.2.3");
    expect_inside(p, "64:ff9b:1:a01:2:300::", false, TASK_HTTP_RULE_DENY, "10.0.0.0/8", "NAT64",
                  "10.1.2.3");
    expect_inside(p, "2002:a01:203::1", false, TASK_HTTP_RULE_DENY, "10.0.0.0/8", "6to4",
                  "10.1.2.3");
    expect_inside(p, "2001:0:4136:e378:8000:63bf:f5fe:fdfc", false, TASK_HTTP_RULE_DENY,
                  "10.0.0.0/8", "Teredo", "10.1.2.3");
    expect(p, NULL, "2002:b01:203::1", true, TASK_HTTP_RULE_NONE, "");
    task_http_policy_free(p);
}

/* Deny if either view denies; an allow lifts a deny only in its own view. */
TEST(test_embedded_forms_are_allowed_only_when_both_views_allow) {
    /* An IPv4 allow inside an IPv4 deny admits that address in every form... */
    task_http_policy *p = make("10.0.0.0/8", "10.1.2.3");
    expect_inside(p, "2002:a01:203::1", true, TASK_HTTP_RULE_ALLOW, "10.1.2.3", "6to4", "10.1.2.3");
    expect(p, NULL, "64:ff9b::10.1.2.3", true, TASK_HTTP_RULE_ALLOW, "10.1.2.3");
    expect_inside(p, "64:ff9b::10.1.2.4", false, TASK_HTTP_RULE_DENY, "10.0.0.0/8", "NAT64",
                  "10.1.2.4");
    task_http_policy_free(p);
    /* ...unless an IPv6 rule denies the form's own address, which is judged first. */
    p = make("2002::/16", "10.1.2.3");
    expect(p, NULL, "2002:a01:203::1", false, TASK_HTTP_RULE_DENY, "2002::/16");
    task_http_policy_free(p);
    /* An IPv6 allow does not undo a deny of the IPv4 address inside. */
    p = make(NULL, "2002::/16,64:ff9b::/96,64:ff9b::a9fe:a9fe");
    expect_inside(p, "2002:a9fe:a9fe::1", false, TASK_HTTP_RULE_BUILTIN, "169.254.0.0/16", "6to4",
                  "169.254.169.254");
    expect_inside(p, "64:ff9b::a9fe:a9fe", false, TASK_HTTP_RULE_BUILTIN, "169.254.0.0/16", "NAT64",
                  "169.254.169.254");
    expect(p, NULL, "2002:808:808::1", true, TASK_HTTP_RULE_ALLOW, "2002::/16");
    task_http_policy_free(p);
    /* An IPv6 deny of the form's prefix denies it whatever it carries. */
    p = make("64:ff9b::/96", NULL);
    expect(p, NULL, "64:ff9b::8.8.8.8", false, TASK_HTTP_RULE_DENY, "64:ff9b::/96");
    task_http_policy_free(p);
    /* A user's allow of the embedded metadata address is the administrator's word. */
    p = make(NULL, "169.254.169.254");
    expect_inside(p, "64:ff9b::169.254.169.254", true, TASK_HTTP_RULE_ALLOW, "169.254.169.254",
                  "NAT64", "169.254.169.254");
    task_http_policy_free(p);
}

TEST(test_host_rule_decides_alone_for_embedded_forms) {
    task_http_policy *p = make("*.corp.example", "nat64.example");
    expect(p, "nat64.example", "64:ff9b::a9fe:a9fe", true, TASK_HTTP_RULE_ALLOW, "nat64.example");
    expect(p, "x.corp.example", "2002:808:808::1", false, TASK_HTTP_RULE_DENY, "*.corp.example");
    expect(p, "other.example", "64:ff9b::a9fe:a9fe", false, TASK_HTTP_RULE_BUILTIN,
           "169.254.0.0/16");
    task_http_policy_free(p);
}

/* ---- user lists --------------------------------------------------------------------- */

TEST(test_deny_list_denies_ipv4_networks) {
    task_http_policy *p = make("10.0.0.0/8, 127.0.0.0/8", NULL);
    expect(p, NULL, "10.255.0.1", false, TASK_HTTP_RULE_DENY, "10.0.0.0/8");
    expect(p, NULL, "127.0.0.1", false, TASK_HTTP_RULE_DENY, "127.0.0.0/8");
    expect(p, NULL, "::ffff:127.0.0.1", false, TASK_HTTP_RULE_DENY, "127.0.0.0/8");
    expect(p, NULL, "11.0.0.0", true, TASK_HTTP_RULE_NONE, "");
    expect(p, NULL, "9.255.255.255", true, TASK_HTTP_RULE_NONE, "");
    task_http_policy_free(p);
}

TEST(test_deny_list_denies_ipv6_networks_and_single_addresses) {
    task_http_policy *p = make("fc00::/7,::1,192.168.1.7", NULL);
    expect(p, NULL, "fdff::1", false, TASK_HTTP_RULE_DENY, "fc00::/7");
    expect(p, NULL, "fe00::1", true, TASK_HTTP_RULE_NONE, "");
    expect(p, NULL, "::1", false, TASK_HTTP_RULE_DENY, "::1");
    expect(p, NULL, "::2", true, TASK_HTTP_RULE_NONE, "");
    expect(p, NULL, "192.168.1.7", false, TASK_HTTP_RULE_DENY, "192.168.1.7");
    expect(p, NULL, "192.168.1.8", true, TASK_HTTP_RULE_NONE, "");
    task_http_policy_free(p);
}

TEST(test_longest_prefix_wins_allow_inside_deny_inside_allow) {
    task_http_policy *p = make("10.0.0.0/8,10.1.2.0/24", "127.0.0.1/32,10.1.0.0/16");
    expect(p, NULL, "10.0.0.1", false, TASK_HTTP_RULE_DENY, "10.0.0.0/8");
    expect(p, NULL, "10.1.0.1", true, TASK_HTTP_RULE_ALLOW, "10.1.0.0/16");
    expect(p, NULL, "10.1.2.3", false, TASK_HTTP_RULE_DENY, "10.1.2.0/24");
    task_http_policy_free(p);
    p = make("127.0.0.0/8", "127.0.0.1/32");
    expect(p, NULL, "127.0.0.1", true, TASK_HTTP_RULE_ALLOW, "127.0.0.1/32");
    expect(p, NULL, "127.0.0.2", false, TASK_HTTP_RULE_DENY, "127.0.0.0/8");
    task_http_policy_free(p);
}

TEST(test_allow_beats_a_builtin_deny_of_the_same_or_shorter_prefix) {
    task_http_policy *p = make(NULL, "169.254.0.0/16,fd00:ec2::254");
    expect(p, NULL, "169.254.169.254", true, TASK_HTTP_RULE_ALLOW, "169.254.0.0/16");
    expect(p, NULL, "fd00:ec2::254", true, TASK_HTTP_RULE_ALLOW, "fd00:ec2::254");
    expect(p, NULL, "fe80::1", false, TASK_HTTP_RULE_BUILTIN, "fe80::/10");
    task_http_policy_free(p);
    /* A shorter allow does not undo a built-in deny: everything-allowed keeps metadata out. */
    p = make(NULL, "0.0.0.0/0,::/0");
    expect(p, NULL, "169.254.169.254", false, TASK_HTTP_RULE_BUILTIN, "169.254.0.0/16");
    expect(p, NULL, "8.8.8.8", true, TASK_HTTP_RULE_ALLOW, "0.0.0.0/0");
    expect(p, NULL, "2001:db8::1", true, TASK_HTTP_RULE_ALLOW, "::/0");
    task_http_policy_free(p);
}

TEST(test_user_deny_beats_user_allow_on_a_tie) {
    task_http_policy *p = make("127.0.0.1", "127.0.0.1");
    expect(p, NULL, "127.0.0.1", false, TASK_HTTP_RULE_DENY, "127.0.0.1");
    task_http_policy_free(p);
}

TEST(test_ipv6_zero_prefix_covers_mapped_ipv4_but_ipv4_zero_prefix_not_ipv6) {
    task_http_policy *p = make("::/0", NULL);
    expect(p, NULL, "8.8.8.8", false, TASK_HTTP_RULE_DENY, "::/0");
    task_http_policy_free(p);
    p = make("0.0.0.0/0", NULL);
    expect(p, NULL, "8.8.8.8", false, TASK_HTTP_RULE_DENY, "0.0.0.0/0");
    expect(p, NULL, "2001:db8::1", true, TASK_HTTP_RULE_NONE, "");
    task_http_policy_free(p);
}

TEST(test_prefix_boundaries_inside_a_byte) {
    task_http_policy *p = make("172.16.0.0/12,100.64.0.0/10", NULL);
    expect(p, NULL, "172.31.255.255", false, TASK_HTTP_RULE_DENY, "172.16.0.0/12");
    expect(p, NULL, "172.32.0.0", true, TASK_HTTP_RULE_NONE, "");
    expect(p, NULL, "172.15.255.255", true, TASK_HTTP_RULE_NONE, "");
    expect(p, NULL, "100.127.255.255", false, TASK_HTTP_RULE_DENY, "100.64.0.0/10");
    expect(p, NULL, "100.128.0.0", true, TASK_HTTP_RULE_NONE, "");
    task_http_policy_free(p);
}

/* ---- host names --------------------------------------------------------------------- */

TEST(test_host_name_rules_match_exactly_and_case_insensitively) {
    task_http_policy *p = make("Internal.Example.COM", NULL);
    expect(p, "internal.example.com", "8.8.8.8", false, TASK_HTTP_RULE_DENY,
           "Internal.Example.COM");
    expect(p, "INTERNAL.example.com.", "8.8.8.8", false, TASK_HTTP_RULE_DENY,
           "Internal.Example.COM");
    expect(p, "x.internal.example.com", "8.8.8.8", true, TASK_HTTP_RULE_NONE, "");
    expect(p, "example.com", "8.8.8.8", true, TASK_HTTP_RULE_NONE, "");
    expect(p, "nternal.example.com", "8.8.8.8", true, TASK_HTTP_RULE_NONE, "");
    expect(p, NULL, "8.8.8.8", true, TASK_HTTP_RULE_NONE, "");
    task_http_policy_free(p);
}

TEST(test_wildcard_matches_names_below_but_not_the_name_itself) {
    task_http_policy *p = make("*.corp.example", NULL);
    expect(p, "a.corp.example", "8.8.8.8", false, TASK_HTTP_RULE_DENY, "*.corp.example");
    expect(p, "a.b.CORP.example", "8.8.8.8", false, TASK_HTTP_RULE_DENY, "*.corp.example");
    expect(p, "corp.example", "8.8.8.8", true, TASK_HTTP_RULE_NONE, "");
    expect(p, "evilcorp.example", "8.8.8.8", true, TASK_HTTP_RULE_NONE, "");
    task_http_policy_free(p);
}

TEST(test_host_allow_admits_a_name_in_a_denied_network_and_decides_first) {
    task_http_policy *p = make("10.0.0.0/8", "api.corp.example");
    expect(p, "api.corp.example", "10.0.0.5", true, TASK_HTTP_RULE_ALLOW, "api.corp.example");
    expect(p, "other.corp.example", "10.0.0.5", false, TASK_HTTP_RULE_DENY, "10.0.0.0/8");
    /* An explicit host allow is the administrator's word, even over the built-in list. */
    expect(p, "api.corp.example", "169.254.169.254", true, TASK_HTTP_RULE_ALLOW,
           "api.corp.example");
    task_http_policy_free(p);
}

TEST(test_most_specific_host_rule_wins) {
    task_http_policy *p = make("*.example.com,bad.ok.example.com", "*.ok.example.com");
    expect(p, "x.example.com", "8.8.8.8", false, TASK_HTTP_RULE_DENY, "*.example.com");
    expect(p, "x.ok.example.com", "8.8.8.8", true, TASK_HTTP_RULE_ALLOW, "*.ok.example.com");
    expect(p, "bad.ok.example.com", "8.8.8.8", false, TASK_HTTP_RULE_DENY, "bad.ok.example.com");
    task_http_policy_free(p);
    p = make("*.example.com", "*.example.com");
    expect(p, "x.example.com", "8.8.8.8", false, TASK_HTTP_RULE_DENY, "*.example.com");
    task_http_policy_free(p);
}

TEST(test_address_entries_never_match_as_host_names) {
    task_http_policy *p = make("127.0.0.1", NULL);
    /* The host "127.0.0.1" connecting elsewhere is judged by the address connected to. */
    expect(p, "127.0.0.1", "8.8.8.8", true, TASK_HTTP_RULE_NONE, "");
    expect(p, "localhost", "127.0.0.1", false, TASK_HTTP_RULE_DENY, "127.0.0.1");
    task_http_policy_free(p);
}

/* ---- bad entries -------------------------------------------------------------------- */

TEST(test_bad_entries_are_refused_with_the_entry_named) {
    expect_bad("10.0.0.0/33", "'10.0.0.0/33' is not an address, a CIDR or a host name");
    expect_bad("::/129", "'::/129' is not an address, a CIDR or a host name");
    expect_bad("10.0.0.0/", "'10.0.0.0/' is not an address, a CIDR or a host name");
    expect_bad("10.0.0.0/-1", "'10.0.0.0/-1' is not an address, a CIDR or a host name");
    expect_bad("10.0.0.0/8x", "'10.0.0.0/8x' is not an address, a CIDR or a host name");
    expect_bad("10.0.0.300", "'10.0.0.300' is not an address, a CIDR or a host name");
    expect_bad("127.1", "'127.1' is not an address, a CIDR or a host name");
    expect_bad("fe80::1%eth0", "'fe80::1%eth0' is not an address, a CIDR or a host name");
    expect_bad("host/8", "'host/8' is not an address, a CIDR or a host name");
    expect_bad("a..b", "'a..b' is not an address, a CIDR or a host name");
    expect_bad("*", "'*' is not an address, a CIDR or a host name");
    expect_bad("*.", "'*.' is not an address, a CIDR or a host name");
    expect_bad("a.*.b", "'a.*.b' is not an address, a CIDR or a host name");
    expect_bad("http://x/", "'http://x/' is not an address, a CIDR or a host name");
    expect_bad("ok.example, bad host", "'bad host' is not an address, a CIDR or a host name");
}

TEST(test_host_bits_set_is_refused_naming_the_network) {
    expect_bad("10.0.0.1/8", "'10.0.0.1/8' has host bits set (the network is 10.0.0.0/8)");
    expect_bad("172.20.0.0/11", "'172.20.0.0/11' has host bits set (the network is 172.0.0.0/11)");
    expect_bad("fe80::1/10", "'fe80::1/10' has host bits set (the network is fe80::/10)");
}

TEST(test_empty_entries_are_refused_but_an_empty_list_is_fine) {
    expect_bad("a,,b", "empty entry in 'a,,b'");
    expect_bad("a,", "empty entry in 'a,'");
    expect_bad(" , ", "empty entry in ' , '");
    char why[64];
    ASSERT_EQ(task_http_policy_validate(NULL, why, sizeof why), 0);
    ASSERT_EQ(task_http_policy_validate("", why, sizeof why), 0);
    ASSERT_EQ(task_http_policy_validate(" 10.0.0.0/8 , ::1,localhost , *.a.b.", why, sizeof why),
              0);
}

TEST(test_an_overlong_entry_is_refused) {
    char list[400];
    memset(list, 'a', sizeof list - 1);
    list[sizeof list - 1] = '\0';
    char why[256];
    ASSERT_EQ(task_http_policy_validate(list, why, sizeof why), -EINVAL);
    ASSERT(strstr(why, "is too long for an address or a host name") != NULL);
    /* A 64-byte label is one too many even when the whole name is short. */
    char label[80];
    memset(label, 'b', 64);
    strcpy(label + 64, ".example");
    ASSERT_EQ(task_http_policy_validate(label, why, sizeof why), -EINVAL);
}

/* Callers skip working out the URL's host when no rule could use it. */
TEST(test_has_host_rules_only_with_a_host_name_rule) {
    task_http_policy *p = make(NULL, NULL);
    ASSERT(!task_http_policy_has_host_rules(p));
    task_http_policy_free(p);
    p = make("10.0.0.0/8", "10.1.0.0/16,::1");
    ASSERT(!task_http_policy_has_host_rules(p));
    task_http_policy_free(p);
    p = make("10.0.0.0/8", "*.example.com");
    ASSERT(task_http_policy_has_host_rules(p));
    task_http_policy_free(p);
    p = make("internal.example.com", NULL);
    ASSERT(task_http_policy_has_host_rules(p));
    task_http_policy_free(p);
    ASSERT(!task_http_policy_has_host_rules(NULL));
}
