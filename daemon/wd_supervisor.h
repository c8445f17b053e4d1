/*
 * wd_supervisor.h - --processes N: a small supervisor that forks N green workers (like
 * gunicorn's gevent workers) and keeps them running.
 *
 * The parent runs no green runtime and no tasks: a plain libev loop (the default loop, the
 * only one that can watch children) with ev_child, ev_signal and ev_timer watchers. It
 *
 *   - forks N children; each returns from wd_supervisor_run into main's ordinary worker
 *     path, so a child is exactly a single-process workerd with its own loop, its own
 *     worker id (host:pid:random) and its own connections;
 *   - restarts a child that crashed (exit code other than 0, or killed by a signal) after
 *     a backoff: 1 s, doubling up to 30 s, back to 1 s once a child has lived 60 s;
 *   - replaces at once, without counting a crash, a child that exited 0 on its own: that
 *     is a child recycled by --max-tasks-per-child or --max-memory-per-child (or one
 *     stopped by a signal sent to it alone);
 *   - passes SIGTERM, SIGINT, SIGQUIT and SIGHUP on to every child, so a warm or cold
 *     shutdown (or a reload) reaches all of them; after a shutdown request it restarts
 *     nothing, waits for every child, and exits 0 when all of them exited 0, else 1.
 *
 * systemd. The children's sd_notify messages go to the supervisor, not to systemd: each
 * child gets NOTIFY_SOCKET pointing at a datagram socket of the supervisor (the kernel
 * tells it the sender's pid). The supervisor sends READY=1 once every child has said
 * READY=1, and "STATUS=3/3 children running" at every change. With WatchdogSec=, each
 * child gets the same WATCHDOG_USEC and pings the supervisor from its own loop; the
 * supervisor feeds systemd's watchdog from its loop, and kills (SIGKILL, then restarts as
 * a crash) a child that stayed silent for a whole interval: a hung child is replaced
 * alone, instead of systemd restarting the whole service.
 *
 * Time limits. A greenlet cannot be pre-empted: a task that computes without yielding
 * holds its whole process, and no time limit inside the process can stop it. With
 * --time-limit, each child pings the supervisor every quarter of the limit (between 0.25
 * and 1 s), and the supervisor kills (SIGKILL, then restarts as a crash) a child that
 * stayed silent for longer than the limit plus one ping: its loop has then been stuck for
 * longer than --time-limit. Its messages are redelivered by the ordinary recovery once its
 * heartbeat expires. This is the hard limit for CPU-bound tasks (README.md "Time limits").
 *
 * Children run in their own process group (a terminal's Ctrl-C reaches the supervisor
 * only, which passes it on once: a child that got it twice would shut down cold), and get
 * SIGTERM if the supervisor dies (PR_SET_PDEATHSIG).
 *
 * Call from main, single-threaded, before anything else creates a loop or a thread.
 */
#ifndef WORKERD_WD_SUPERVISOR_H
#define WORKERD_WD_SUPERVISOR_H

#include "wd_options.h"

#include <stdbool.h>

/* True when opts ask for the supervisor: --processes above 1, or a recycling limit
 * (--max-tasks-per-child, --max-memory-per-child), which needs someone to start the
 * replacement. */
bool wd_supervisor_wanted(const struct wd_options *opts);

/* Run the supervisor. In the parent, returns its exit code (0 after a clean shutdown of
 * every child, 1 otherwise, 2 for settings it cannot honour) once every child is gone. In
 * each child, returns -1 with *slot set to the child's index (0..N-1): the caller then
 * runs the ordinary worker and exits with its code. Blocks (runs the loop) in the parent. */
int wd_supervisor_run(const struct wd_options *opts, int *slot);

#endif
