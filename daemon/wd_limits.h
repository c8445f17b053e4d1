/*
 * wd_limits.h - how long a task may run, and the watch for tasks that hold up the loop.
 *
 * Time limits (README.md "Time limits"). Each run of a task gets the message's
 * soft_time_limit and time_limit, or when the message has none (absent or 0) the worker's
 * --soft-time-limit and --time-limit; 0 is no limit. Both count from the moment the task
 * starts:
 *
 *   - soft: a timer on the hub interrupts the task's greenlet once with -ETIMEDOUT
 *     (green_throw) and sets the flag task_soft_limit_reached reads (task.h); the task
 *     may clean up and return what it likes. Returned as is, the -ETIMEDOUT is a FAILURE
 *     SoftTimeLimitExceeded.
 *   - hard: a timer kills the greenlet (green_kill: its blocking call returns -ECANCELED,
 *     a transfer in flight is aborted), and kills it again every second for as long as
 *     the task goes on blocking; whatever the task then returns, the result is FAILURE
 *     TimeLimitExceeded.
 *
 * A task that computes without a blocking call cannot be interrupted at all: a greenlet is
 * never pre-empted. The watch below names it in the log; under --processes the supervisor
 * replaces the process once its loop has been stuck for --time-limit (wd_supervisor.h).
 *
 * The blocking watch (--blocking-warn SECONDS, 0: off). A thread of its own looks at the
 * hub's progress (green.h: its switch count and the tag of the greenlet running) every
 * quarter of --blocking-warn, but at least every 50 ms and at most every 5 ms. A count
 * that stands still for --blocking-warn while a task's greenlet runs is a task that does
 * not yield: one warning per such stall, with the task's name and id, when it ends ("did
 * not yield for about 0.30 s"), or while it lasts once it has lasted a second more than
 * --blocking-warn ("has not yielded for 1.1 s"). Why a thread and not the loop's own
 * timing (ev_prepare / ev_check): greenlets switch to each other without passing through
 * the loop, so the loop sees that something took long but not which greenlet, and only
 * afterwards; a task that never yields again would never be named. The thread costs the
 * hot path two stores per switch (in the runtime) and, per task, a fence where the task's
 * record is released (see wd_limits_run_release), and wakes up 40 times a second at the
 * default 0.1 s.
 *
 * The thread reads the running task's name and id while the hub may go on and free them:
 * the run's record is the greenlet's tag, and the thread announces the record it is
 * about to read in a hazard pointer, then checks that it is still the running one; the hub
 * waits (microseconds, once in a long while) for the thread to be done before a record is
 * released. Nothing else is shared.
 *
 * Everything here runs on the worker's hub (greenlets and, for the timers, libev
 * callbacks) except the watch's thread, which only reads the progress and the running
 * record and writes the log (thread-safe, wd_log.h).
 */
#ifndef WORKERD_WD_LIMITS_H
#define WORKERD_WD_LIMITS_H

#include "broker_msg.h"
#include "green.h"

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>

/* The hard limit's kill is repeated this often while the task goes on blocking. */
#define WD_LIMITS_KILL_AGAIN 1.0

/* The worker's defaults and the blocking watch. */
struct wd_limits;

/* Start with the worker's defaults (seconds, 0: none) and the watch (blocking_warn
 * seconds; 0: no watch and no thread). Call on the hub's thread, from a greenlet. Returns
 * 0, or -ENOMEM / -EAGAIN (no thread could be created) with nothing started. */
int wd_limits_new(struct wd_limits **out, double soft_default, double hard_default,
                  double blocking_warn);

/* Stop the watch (joins its thread) and free. NULL is fine. Call before the hub ends. */
void wd_limits_free(struct wd_limits *l);

/* One run of a task, inside the job that runs it. Zero it before use (a job that never
 * ran a task may release a zeroed one). The fields are wd_limits.c's, but for the two
 * flags the job reads. */
struct wd_limits_run {
    struct wd_limits *l;  /* NULL until wd_limits_run_start */
    const char *id;       /* the message's id and task name, for the log and the watch */
    const char *task;     /* (borrowed from the message; released after the run) */
    green_t g;            /* the task's greenlet */
    double soft, hard;    /* the limits in force, seconds; 0: none */
    bool soft_is_default; /* the limit came from the option, not the message */
    bool hard_is_default;
    bool soft_fired; /* the soft limit ran out: task_soft_limit_reached's flag */
    bool hard_fired; /* the hard limit ran out: the task was killed */
    ev_timer soft_timer, hard_timer;
};

/* Before the task starts, on its greenlet: the limits in force for m (whose id and task
 * must live until wd_limits_run_release), the timers, and the greenlet's tag for the
 * watch. Does not yield. */
void wd_limits_run_start(struct wd_limits_run *r, struct wd_limits *l, const broker_msg *m);

/* After the task returned, on its greenlet: stop the timers, untag the greenlet, and
 * withdraw a soft interruption the task did not block again to receive (so that the
 * job's own blocking calls afterwards are not cut short). Does not yield. */
void wd_limits_run_end(struct wd_limits_run *r);

/* What the limits make of the task's return code rc: NULL when they change nothing, else
 * the error type of the FAILURE ("TimeLimitExceeded", "SoftTimeLimitExceeded") with the
 * message in msg ("the task ran past its time_limit of 2 s"). After wd_limits_run_end. */
const char *wd_limits_outcome(const struct wd_limits_run *r, int rc, char *msg, size_t len);

/* Before the memory of r, or the id and task it points to, is freed: waits until the
 * watch's thread is not reading them (it rarely is, and only for a copy of two strings).
 * A run that never started is fine. Does not yield. */
void wd_limits_run_release(struct wd_limits_run *r);

#endif
