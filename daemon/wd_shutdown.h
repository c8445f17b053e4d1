/*
 * wd_shutdown.h - every timing of a shutdown, in one place, with the reason for each value.
 *
 * A warm shutdown (SIGTERM) runs in two phases:
 *
 *   1. the tasks: running tasks get --shutdown-timeout seconds to finish (default
 *      WD_SHUTDOWN_TIMEOUT_DEFAULT); a cold shutdown skips this phase;
 *   2. after the tasks: the unfinished ones are killed, the acker stores the last results,
 *      one script puts every message still held back on its queue, the worker unregisters,
 *      the event publisher sends what it holds and the HTTP endpoint closes. With Redis
 *      away, this phase gives up after WD_SHUTDOWN_WARM_FLUSH (cold: WD_SHUTDOWN_COLD_FLUSH)
 *      and leaves the messages in flight, where another worker recovers them once this
 *      worker's heartbeat has expired; the exit code is then 1.
 *
 * WD_SHUTDOWN_AFTER_TASKS bounds phase 2 whatever Redis does. The worker (and the
 * supervisor) ask systemd for --shutdown-timeout + WD_SHUTDOWN_AFTER_TASKS seconds when a
 * stop begins (EXTEND_TIMEOUT_USEC), and the units' TimeoutStopSec= is derived from these
 * values when CMake configures the build (systemd/CMakeLists.txt reads this file), so
 * that a unit stopped with the default settings is never killed in the middle of putting
 * its messages back. tests/daemon/test_systemd.c checks both, and that phase 2's steps fit
 * in WD_SHUTDOWN_AFTER_TASKS.
 *
 * systemd/CMakeLists.txt parses the three integer constants WD_SHUTDOWN_TIMEOUT_DEFAULT,
 * WD_SHUTDOWN_AFTER_TASKS and WD_SHUTDOWN_UNIT_MARGIN: keep each on one line of the form
 * "#define NAME <digits>".
 *
 * Plain constants: no code, nothing to call.
 */
#ifndef WORKERD_WD_SHUTDOWN_H
#define WORKERD_WD_SHUTDOWN_H

/* ---- phase 1 ------------------------------------------------------------------------- */

/* --shutdown-timeout's default, in seconds (the option table, settings_table.c, takes its
 * default text from here; test_systemd.c checks that `workerd --help` says the same). Long enough
 * for an http.get at its default 30 s request time-out to finish. */
#define WD_SHUTDOWN_TIMEOUT_DEFAULT 30

/* ---- phase 2: each step's bound ------------------------------------------------------ */

/* Seconds Redis gets, after the tasks stopped, to take the last results and the
 * put-back: long enough to ride out a Redis restart or a Sentinel fail-over (a few
 * seconds), short enough that a stop during a long outage still ends. */
#define WD_SHUTDOWN_WARM_FLUSH 15.0

/* The same for a cold shutdown (SIGQUIT, a second SIGINT), which asks for a quick exit. */
#define WD_SHUTDOWN_COLD_FLUSH 5.0

/* The most one acker round trip may wait for Redis's answer (also outside a shutdown):
 * a batch of 1024 results takes milliseconds, so ten seconds means Redis is stuck, and the
 * acker should try again on a fresh link. Within a shutdown, a call is also cut at the
 * flush deadline. */
#define WD_SHUTDOWN_ACK_CALL 10.0

/* The least a call may get when the deadline is (nearly) past: there is always one
 * attempt, so that a Redis that is up gets the results even when the flush ran late. The
 * acker and the event publisher use it (wd_batch.h). */
#define WD_SHUTDOWN_LAST_CALL 0.5

/* How long the acker and the event publisher wait for a link that is down before they
 * look at the deadline again: so also the most they overrun it by (a wait, or a
 * LAST_CALL, whichever is longer). */
#define WD_SHUTDOWN_LINK_POLL 1.0

/* One put-back attempt (requeue.lua): at most this long, at least WD_SHUTDOWN_PUT_BACK_MIN
 * even past the deadline (the script is what keeps messages from waiting for recovery:
 * it deserves a real try). */
#define WD_SHUTDOWN_PUT_BACK_CALL 5.0
#define WD_SHUTDOWN_PUT_BACK_MIN 1.0

/* Removing the worker's registration (only after a successful put-back, so Redis is up):
 * a round trip, with room for a busy server. */
#define WD_SHUTDOWN_UNREGISTER_CALL 5.0

/* Seconds the event publisher may keep trying once the stop has begun: events are best
 * effort, and the last tasks' events are worth a round trip or two, not more. */
#define WD_SHUTDOWN_EVENTS_GRACE 2.0

/* Seconds the HTTP endpoint gives requests being answered before it closes. */
#define WD_SHUTDOWN_HTTP_GRACE 1.0

/* ---- the totals ------------------------------------------------------------------------ */

/* The bound on phase 2, in seconds: the steps above add up to 26 s in the worst case
 * (WARM_FLUSH and the acker's LINK_POLL past it, PUT_BACK_MIN, UNREGISTER_CALL,
 * EVENTS_GRACE and its LINK_POLL, HTTP_GRACE); the other 9 s are for a loaded machine and
 * the process's exit. */
#define WD_SHUTDOWN_AFTER_TASKS 35

/* What the units' TimeoutStopSec= adds to WD_SHUTDOWN_TIMEOUT_DEFAULT +
 * WD_SHUTDOWN_AFTER_TASKS, in seconds. workerd's EXTEND_TIMEOUT_USEC counts from the
 * moment it handles SIGTERM, which may be a little after systemd sent it (a loop busy with
 * tasks), and a systemd that ignores the message (older than 236) has only the unit's own
 * value: with the default settings that alone must be enough, with room to spare. */
#define WD_SHUTDOWN_UNIT_MARGIN 10

#endif
