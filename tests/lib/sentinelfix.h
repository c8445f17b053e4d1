/*
 * sentinelfix.h - a Redis Sentinel set on loopback for the failover tests: one master,
 * one replica and three redis-sentinel processes (quorum 2, down-after 500 ms, failover
 * timeout 2 s, so a SIGKILLed master is replaced within a few seconds), plus a fake
 * sentinel that names whatever address it is told (a lying or stale sentinel).
 *
 * Every process is a child of the test with PR_SET_PDEATHSIG(SIGKILL): a failed test
 * leaves none behind. The sentinels' ports can be chosen before they start
 * (sfix_ports), so a worker can be started against sentinels that are not there yet.
 * Single-threaded test programs only; everything ASSERTs.
 */
#ifndef WORKERD_TESTS_SENTINELFIX_H
#define WORKERD_TESTS_SENTINELFIX_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <sys/types.h>

#include "testlib.h"

#define SFIX_MASTER "mymaster"

typedef struct sfix {
    test_redis node[2]; /* node[0] starts as the master, node[1] as its replica */
    int sport[3];       /* the sentinels' ports */
    pid_t spid[3];      /* 0 while not running */
    char *sdir;         /* their config files and logs */
    pid_t liar;         /* the fake sentinel, 0 if none */
    int liar_port;
    char url[512];     /* redis+sentinel://<the three>/mymaster/0 */
    const char *spass; /* the sentinels' requirepass, or NULL: set before they start */
} sfix;

/* Pick the sentinels' ports and write url; start nothing. */
void sfix_ports(sfix *f);

/* Start the master and its replica (waits until the replica is in sync). */
void sfix_start_nodes(sfix *f);

/* Start the three sentinels and wait until each knows the replica and, for_failover,
 * the two other sentinels (their quorum; that takes a few seconds). */
void sfix_start_sentinels(sfix *f, bool for_failover);

/* sfix_ports, sfix_start_nodes, sfix_start_sentinels. */
void sfix_start(sfix *f, bool for_failover);

/* Start a fake sentinel on liar_port (0: any free one) answering every command with
 * host:port as the master, replacing the one running. Returns its port. */
int sfix_start_liar(sfix *f, int liar_port, const char *host, int port);

/* The master the sentinels name now: its port (ASSERTs they answer). */
int sfix_master_port(sfix *f);

/* Wait until the sentinels name a master other than old_port, and it answers ROLE
 * master; returns its port. */
int sfix_wait_failover(sfix *f, int old_port, double timeout);

/* A connection to the node on port (ASSERTs). */
redisContext *sfix_connect(int port);

/* Stop everything and remove the directories. */
void sfix_stop(sfix *f);

#endif
