/*
 * wd_fleet.h - one view of a supervisor's children: /metrics/total on any child's --http
 * endpoint sums the /metrics of every child of the same supervisor (child k serves
 * PORT+k), so that one scrape sees the whole machine's workerd.
 *
 * Every sample line is summed by its name and labels: counters and task totals add up,
 * and so do gauges (running tasks, resident memory, broker_up: the children up). The
 * result adds workerd_fleet_processes (children expected) and
 * workerd_fleet_processes_answering (children whose /metrics came back).
 *
 * Runs on a greenlet of the HTTP endpoint; MAY YIELD (it GETs the siblings, 2 s each at
 * most, all at once).
 */
#ifndef WORKERD_WD_FLEET_H
#define WORKERD_WD_FLEET_H

/* The sum of own (this process's /metrics text) and the /metrics of the processes on
 * ports base .. base + processes - 1 of host other than self_port. A new string (free
 * it), or NULL on ENOMEM. MAY YIELD. */
char *wd_fleet_metrics_total(const char *host, int base, int processes, int self_port,
                             const char *own);

#endif
