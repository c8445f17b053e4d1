/*
 * test_fleet_scale.c - a worker among 500 registered workers (simulated: their registry
 * entries and heartbeat keys, as live workers leave them) on one Redis. Looking for dead
 * workers every heartbeat must cost scripts only for the dead ones: one EXISTS per
 * registered worker in one round trip, no KEYS or SCAN, and recover.lua for the dead. The
 * dead ones' messages must still come back and run. Commands are counted with INFO
 * commandstats.
 */
#include "e2e.h"
#include "testlib.h"

#include <stdio.h>

enum { FLEET = 500, DEAD = 10 };

TEST(five_hundred_workers_cost_one_exists_each_and_scripts_only_for_the_dead) {
    e2e_env e;
    e2e_env_start(&e);
    for (int i = 1; i <= FLEET; i++) {
        char wid[64];
        snprintf(wid, sizeof wid, "host%d:%d:0123abcd", i, 1000 + i);
        freeReplyObject(redisCommand(e.c, "HSET workerd:workers %s default", wid));
        if (i > DEAD) {
            freeReplyObject(redisCommand(e.c, "HSET workerd:worker:%s host host%d", wid, i));
            freeReplyObject(redisCommand(e.c, "EXPIRE workerd:worker:%s 600", wid));
        } else {
            /* A dead worker holding one message. */
            char entry[256];
            snprintf(entry, sizeof entry,
                     "default\n{\"id\":\"d-%d\",\"task\":\"echo\",\"args\":[%d]}", i, i);
            freeReplyObject(redisCommand(e.c, "HSET workerd:inflight:%s 7 %s", wid, entry));
        }
    }
    freeReplyObject(redisCommand(e.c, "CONFIG RESETSTAT"));
    E2E_START_READY(&e.w, e.redis.port, "-c", "4", "--heartbeat", "1");
    for (int i = 1; i <= DEAD; i++) {
        char id[32];
        snprintf(id, sizeof id, "d-%d", i);
        json_decref(e2e_must_result(&e, id));
    }
    /* Three more looks at the fleet, counted from here. */
    freeReplyObject(redisCommand(e.c, "CONFIG RESETSTAT"));
    ASSERT_WITHIN(e2e_command_calls(e.c, "exists") >= 3 * FLEET, 20.0);
    long long scripts = e2e_command_calls(e.c, "evalsha") + e2e_command_calls(e.c, "eval");
    printf("fleet: %lld EXISTS, %lld script calls over three looks at %d workers\n",
           e2e_command_calls(e.c, "exists"), scripts, FLEET);
    ASSERT(scripts < FLEET); /* one recover.lua per registered worker would be >= 1470 */
    ASSERT_EQ(e2e_command_calls(e.c, "keys"), 0);
    ASSERT_EQ(e2e_command_calls(e.c, "scan"), 0);
    ASSERT_EQ(e2e_int(e.c, "HLEN workerd:workers"), FLEET - DEAD + 1);
    e2e_env_end(&e);
}
