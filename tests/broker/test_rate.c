/*
 * test_rate.c - the rate limits in the broker: the parser of a rate (which rate_limit.lua
 * must read the same way), the rate-limit hash's commands, and rate_limit.lua against a
 * real redis-server: a turn when there is one, a message over the rate moved from the
 * in-flight hash to the scheduled set in the same step (ack.lua's member format, due at its
 * turn, turns handed out one period apart and never beyond the horizon), the rate read
 * from the hash at every call, nothing touched for a tag that is no longer the worker's.
 */
#include "broker_rate.h"
#include "broker_scripts.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "brokerfix.h"
#include "testlib.h"

/* ---- the parser ----------------------------------------------------------------------- */

static double rate_of(const char *text) {
    double r = -1;
    char why[200];
    if (broker_rate_parse(text, &r, why, sizeof why) != 0)
        test__fail(__FILE__, __LINE__, "'%s' refused: %s", text, why);
    return r;
}

TEST(rate_parse_reads_per_second_minute_and_hour_with_fractions) {
    ASSERT(rate_of("100/s") == 100);
    ASSERT(fabs(rate_of("10/m") - 10.0 / 60) < 1e-12);
    ASSERT(fabs(rate_of("500/h") - 500.0 / 3600) < 1e-12);
    ASSERT(rate_of("0.5/s") == 0.5);
    ASSERT(rate_of(".5/s") == 0.5);
    ASSERT(rate_of("2./s") == 2);
    ASSERT(rate_of("1000000/s") == 1e6);
    ASSERT(fabs(rate_of("1/h") - 1.0 / 3600) < 1e-12);
}

TEST(rate_parse_refuses_what_is_not_a_rate_saying_why) {
    const char *bad[] = {"",      "20",    "/s",        "20/",     "20/d",     "20/sec", "-1/s",
                         "+1/s",  "0/s",   "0.0/m",     "1e3/s",   "nan/s",    "inf/s",  " 20/s",
                         "20/s ", "20 /s", "2000000/s", "0.5/h/s", "1/86401h", "0.01/h", "1,5/s"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char why[200] = "";
        double r = 7;
        if (broker_rate_parse(bad[i], &r, why, sizeof why) == 0)
            test__fail(__FILE__, __LINE__, "'%s' accepted", bad[i]);
        ASSERT(r == 7);
        ASSERT(strstr(why, bad[i]) != NULL);
    }
    char why[200];
    broker_rate_parse("20/d", NULL, why, sizeof why);
    ASSERT(strstr(why, "unit must be s, m or h") != NULL);
    broker_rate_parse("0/s", NULL, why, sizeof why);
    ASSERT(strstr(why, "more than 0") != NULL);
    broker_rate_parse("2000000/s", NULL, why, sizeof why);
    ASSERT(strstr(why, "out of range") != NULL);
}

TEST(rate_names_and_commands_are_checked) {
    ASSERT(broker_rate_check_name("http.get") == NULL);
    ASSERT(broker_rate_check_name("") != NULL);
    ASSERT(broker_rate_check_name("a b") != NULL);
    ASSERT(broker_rate_check_name("a=b") != NULL);
    ASSERT(broker_rate_check_name("a,b") != NULL);
    broker_keys k;
    ASSERT_EQ(broker_keys_init(&k, "wt"), 0);
    broker_batch b = {0};
    ASSERT_EQ(broker_cmd_rate_set(&b, &k, "echo", "20/s"), 0);
    ASSERT_EQ(b.argcs[0], 4);
    ASSERT_STREQ(b.argvs[0][0], "HSET");
    ASSERT_STREQ(b.argvs[0][1], "wt:rate_limits");
    ASSERT_STREQ(b.argvs[0][3], "20/s");
    ASSERT_EQ(broker_cmd_rate_off(&b, &k, "echo"), 0);
    ASSERT_STREQ(b.argvs[1][0], "HDEL");
    ASSERT_EQ(broker_cmd_rate_list(&b, &k), 0);
    ASSERT_STREQ(b.argvs[2][0], "HGETALL");
    broker_batch_clear(&b);
    ASSERT_EQ(broker_cmd_rate_set(&b, &k, "echo", "fast"), -EINVAL);
    broker_batch_clear(&b);
}

/* ---- rate_limit.lua ------------------------------------------------------------------- */

/* What one call said. */
struct verdict {
    long long v;
    double due;
    double now; /* Redis's clock when the script ran (its TIME) */
};

/* A number of the script's reply, sent as an integer or as text. */
static double reply_num(const redisReply *e) {
    return e->type == REDIS_REPLY_INTEGER ? (double)e->integer : e->str ? atof(e->str) : 0;
}

/* rate_limit.lua as the worker runs it (EVAL: the test does not care for the cache). */
static struct verdict check(const char *kind, const char *name, const char *rate, const char *tag,
                            const char *text) {
    const broker_script *s = broker_script_get(BROKER_SCRIPT_RATE_LIMIT);
    const char *argv[] = {"EVAL", s->text, "0", "wt", "w1", kind, name, rate, tag, "q", text};
    size_t lens[11];
    for (int i = 0; i < 11; i++)
        lens[i] = strlen(argv[i]);
    redisReply *r = redisCommandArgv(bfix_rc, 11, argv, lens);
    ASSERT(r != NULL);
    if (r->type == REDIS_REPLY_ERROR)
        test__fail(__FILE__, __LINE__, "rate_limit: %s", r->str);
    ASSERT(r->type == REDIS_REPLY_ARRAY && r->elements == 4);
    struct verdict out = {r->element[0]->integer, r->element[1]->len ? atof(r->element[1]->str) : 0,
                          reply_num(r->element[2]) + reply_num(r->element[3]) / 1e6};
    freeReplyObject(r);
    return out;
}

static void in_flight(const char *tag, const char *raw) {
    freeReplyObject(bfix_cmd("HSET wt:inflight:w1 %s q\n%s", tag, raw));
}

TEST(rate_limit_gives_turns_and_moves_the_rest_to_the_scheduled_set_one_period_apart) {
    bfix_start();
    freeReplyObject(bfix_cmd("HSET wt:rate_limits echo 10/s"));
    for (int i = 1; i <= 4; i++) {
        char tag[8], raw[64];
        snprintf(tag, sizeof tag, "%d", i);
        snprintf(raw, sizeof raw, "{\"id\":\"m%d\",\"task\":\"echo\"}", i);
        in_flight(tag, raw);
    }
    double t0 = bfix_redis_now();
    struct verdict v = check("task", "echo", "", "1", "{\"id\":\"m1\"}");
    ASSERT_EQ(v.v, BROKER_RATE_RUN);
    ASSERT_EQ(bfix_cmd_int("HEXISTS wt:inflight:w1 1"), 1); /* it runs: still in flight */
    double due[5];
    for (int i = 2; i <= 4; i++) {
        char tag[8], text[64];
        snprintf(tag, sizeof tag, "%d", i);
        snprintf(text, sizeof text, "{\"id\":\"m%d\",\"eta\":1}", i);
        v = check("task", "echo", "", tag, text);
        ASSERT_EQ(v.v, BROKER_RATE_KEPT);
        due[i] = v.due;
        /* Moved in the same step: out of the in-flight hash, into the scheduled set with
         * ack.lua's member and the due time as its score. */
        ASSERT_EQ(bfix_cmd_int("HEXISTS wt:inflight:w1 %s", tag), 0);
        char member[128];
        snprintf(member, sizeof member, "%s@w1\nq\n%s", tag, text);
        redisReply *r = bfix_cmd("ZSCORE wt:scheduled %s", member);
        ASSERT(r->type == REDIS_REPLY_STRING);
        ASSERT(fabs(atof(r->str) - v.due) < 1e-6);
        freeReplyObject(r);
    }
    /* Never before its turn: the second start is due a period (less the tolerance) after
     * the first, and each next one at least a period later (exactly, unless the machine
     * paused between two checks for longer than the turns ran ahead). */
    ASSERT(due[2] >= t0 + 0.1 - 0.05 - 1e-6);
    ASSERT(due[3] - due[2] >= 0.1 - 1e-5);
    ASSERT(due[4] - due[3] >= 0.1 - 1e-5);
    ASSERT_EQ(bfix_cmd_int("ZCARD wt:scheduled"), 3);
    /* The state expires on its own. */
    ASSERT(bfix_cmd_int("TTL wt:rate:task:echo") > 0);
    bfix_stop();
}

TEST(rate_limit_reads_the_rate_from_the_hash_at_every_call) {
    bfix_start();
    in_flight("1", "{}");
    ASSERT_EQ(check("task", "echo", "", "1", "{}").v, BROKER_RATE_NONE); /* no limit */
    ASSERT_EQ(bfix_cmd_int("EXISTS wt:rate:task:echo"), 0);
    freeReplyObject(bfix_cmd("HSET wt:rate_limits echo 1/s"));
    double t = bfix_redis_now(); /* before the turn the next one's due counts from */
    ASSERT_EQ(check("task", "echo", "", "1", "{}").v, BROKER_RATE_RUN);
    in_flight("2", "{}");
    struct verdict v = check("task", "echo", "", "2", "{}");
    ASSERT_EQ(v.v, BROKER_RATE_KEPT);
    ASSERT(v.due >= t + 1 - 0.05 - 1e-3);
    /* Removed: the next message runs, however far the old turns went. */
    freeReplyObject(bfix_cmd("HDEL wt:rate_limits echo"));
    in_flight("3", "{}");
    ASSERT_EQ(check("task", "echo", "", "3", "{}").v, BROKER_RATE_NONE);
    /* A hand-written value that is not a rate is no limit, not an error per message. */
    freeReplyObject(bfix_cmd("HSET wt:rate_limits echo fast"));
    ASSERT_EQ(check("task", "echo", "", "3", "{}").v, BROKER_RATE_NONE);
    ASSERT_EQ(bfix_cmd_int("HEXISTS wt:inflight:w1 3"), 1);
    bfix_stop();
}

TEST(rate_limit_touches_nothing_for_a_tag_that_is_not_the_workers) {
    bfix_start();
    freeReplyObject(bfix_cmd("HSET wt:rate_limits echo 1/s"));
    ASSERT_EQ(check("task", "echo", "", "9", "{}").v, BROKER_RATE_GONE);
    ASSERT_EQ(bfix_cmd_int("EXISTS wt:rate:task:echo"), 0);
    ASSERT_EQ(bfix_cmd_int("ZCARD wt:scheduled"), 0);
    bfix_stop();
}

TEST(rate_limit_hands_out_turns_no_further_than_the_horizon) {
    bfix_start();
    freeReplyObject(bfix_cmd("HSET wt:rate_limits echo 20/s"));
    double last = 0, first_now = bfix_redis_now();
    int runs = 0, turns = 0, again = 0;
    for (int i = 1; i <= 60; i++) {
        char tag[8];
        snprintf(tag, sizeof tag, "%d", i);
        in_flight(tag, "{}");
        struct verdict v = check("task", "echo", "", tag, "{}");
        ASSERT(v.now > 0);
        if (v.v == BROKER_RATE_RUN) {
            /* The tolerance (50 ms) is a whole period at 20/s: two may start at once (more
             * only if the machine paused this loop until the turns fell behind the clock). */
            runs++;
            continue;
        }
        ASSERT_EQ(v.v, BROKER_RATE_KEPT);
        if (v.due <= v.now + 1.0 + 1e-6) {
            /* A turn within the horizon (measured on the script's own clock): never sooner
             * than a period after the one before (exactly a period while the turns run ahead
             * of the clock). On a slow run the horizon moves on while the loop goes, so new
             * turns may follow messages sent beyond it. */
            ASSERT(turns == 0 || v.due >= last + 0.05 - 1e-5);
            last = v.due;
            turns++;
        } else {
            /* Beyond it: looked at again within the second after the horizon, spread. */
            ASSERT_RANGE(v.due - v.now, 1.0, 2.0 + 1e-3);
            again++;
        }
    }
    /* A horizon's worth of turns, plus one per period the loop itself took. */
    double took = bfix_redis_now() - first_now;
    ASSERT(runs >= 2);
    ASSERT(turns >= 19 && turns <= 21 + (int)(took / 0.05));
    ASSERT_EQ(runs + turns + again, 60);
    ASSERT_EQ(bfix_cmd_int("ZCARD wt:scheduled"), turns + again);
    /* Spread: the looked-at-again ones do not come back in the same tenth of a second. */
    redisReply *r = bfix_cmd("ZRANGE wt:scheduled -%d -1 WITHSCORES", again);
    ASSERT_EQ(r->elements, 2 * (size_t)again);
    double lo = 1e300, hi = 0;
    for (size_t i = 1; i < r->elements; i += 2) {
        double d = atof(r->element[i]->str);
        lo = d < lo ? d : lo;
        hi = d > hi ? d : hi;
    }
    freeReplyObject(r);
    ASSERT(hi - lo > 0.5);
    bfix_stop();
}

TEST(rate_limit_check_only_waits_without_moving_anything) {
    bfix_start();
    double t = bfix_redis_now(); /* before the first turn, which the second's due counts from */
    struct verdict v = check("host", "example.com", "2/s", "", "");
    ASSERT_EQ(v.v, BROKER_RATE_RUN);
    v = check("host", "example.com", "2/s", "", "");
    ASSERT_EQ(v.v, BROKER_RATE_WAIT);
    ASSERT(v.due >= t + 0.5 - 0.05 - 1e-3);
    ASSERT_EQ(bfix_cmd_int("ZCARD wt:scheduled"), 0);
    ASSERT_EQ(bfix_cmd_int("EXISTS wt:rate:host:example.com"), 1);
    /* Another host has its own turns. */
    ASSERT_EQ(check("host", "example.org", "2/s", "", "").v, BROKER_RATE_RUN);
    bfix_stop();
}

/* ---- host_slot.lua ------------------------------------------------------------------- */

/* host_slot.lua: taken (1/0) and the wait it gave, for an acquire (limit > 0) or a
 * release (limit 0). */
static long long slot(const char *holder, long limit, const char *lease, double *wait) {
    const broker_script *s = broker_script_get(BROKER_SCRIPT_HOST_SLOT);
    char lim[16];
    snprintf(lim, sizeof lim, "%ld", limit);
    const char *argv[] = {"EVAL", s->text, "0", "wt", limit ? "acquire" : "release",
                          "h1",   holder,  lim, lease};
    int argc = limit ? 9 : 7;
    size_t lens[9];
    for (int i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    redisReply *r = redisCommandArgv(bfix_rc, argc, argv, lens);
    ASSERT(r != NULL);
    if (r->type == REDIS_REPLY_ERROR)
        test__fail(__FILE__, __LINE__, "host_slot: %s", r->str);
    ASSERT(r->type == REDIS_REPLY_ARRAY && r->elements == 4);
    long long taken = r->element[0]->integer;
    if (wait)
        *wait = r->element[1]->len ? atof(r->element[1]->str) : 0;
    freeReplyObject(r);
    return taken;
}

TEST(host_slots_are_a_semaphore_whose_leases_free_the_slots_never_given_back) {
    bfix_start();
    double wait = -1;
    ASSERT_EQ(slot("a", 2, "30", NULL), 1);
    ASSERT_EQ(slot("b", 2, "0.3", NULL), 1);
    ASSERT_EQ(slot("c", 2, "30", &wait), 0); /* full: told when the earliest lease ends */
    ASSERT_RANGE(wait, 0.0, 0.3);
    ASSERT_EQ(slot("a", 2, "30", NULL), 1); /* a holder asking again renews its own */
    ASSERT_EQ(bfix_cmd_int("ZCARD wt:slots:host:h1"), 2);
    ASSERT_EQ(slot("a", 0, "", NULL), 1); /* given back */
    ASSERT_EQ(slot("a", 0, "", NULL), 0); /* twice: nothing */
    ASSERT_EQ(slot("c", 2, "30", NULL), 1);
    /* b never gives its slot back: once its lease has run out, d takes it. */
    ASSERT_EQ(slot("d", 2, "30", NULL), 0);
    ASSERT_WITHIN(slot("d", 2, "30", NULL) == 1, TEST_SOON);
    redisReply *gone = bfix_cmd("ZSCORE wt:slots:host:h1 b");
    ASSERT_EQ(gone->type, REDIS_REPLY_NIL);
    freeReplyObject(gone);
    ASSERT(bfix_cmd_int("PTTL wt:slots:host:h1") > 30000); /* the key outlives its leases */
    bfix_stop();
}
