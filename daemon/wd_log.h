/*
 * wd_log.h - workerd's log: one line per event on stderr (journald adds the rest).
 *
 * A line looks like
 *
 *     2026-11-26T03:40:01.123Z INFO  [task job-1] fetched 12 messages
 *
 * that is: the time in ISO-8601 UTC with milliseconds, the level padded to five columns
 * (DEBUG, INFO, WARN, ERROR), the task id in brackets when the event belongs to a task,
 * and the message. One event is always exactly one line: newlines, carriage returns and
 * other control characters in the message or the task id (both may come from a task
 * message, that is from anyone who can LPUSH) are written as \n, \r and \xHH. Each line
 * is written with a single write(2), so lines of concurrent processes or threads sharing
 * the descriptor never interleave (for pipes POSIX guarantees this up to PIPE_BUF bytes,
 * which is why a line is capped at WD_LOG_LINE_MAX and a longer one is cut, ending "...").
 *
 * Contract shared by every function here unless it says otherwise:
 *   - never yields and never blocks on anything but the write itself, so it may be called
 *     from a greenlet, from the hub (libev, curl and hiredis callbacks) and from any
 *     thread, including the thread pool's;
 *   - thread-safe;
 *   - never fails visibly: a line that cannot be written is dropped (a log must not take
 *     the worker down with it).
 */
#ifndef WORKERD_WD_LOG_H
#define WORKERD_WD_LOG_H

#include <stdarg.h>
#include <stdbool.h>

/* Levels, lowest first; a threshold lets through its own level and those above it. */
enum wd_log_level {
    WD_LOG_DEBUG = 0,
    WD_LOG_INFO = 1,
    WD_LOG_WARNING = 2,
    WD_LOG_ERROR = 3,
};

/* The longest line written, newline included; see the essay above. */
#define WD_LOG_LINE_MAX 4096

/* Parse "debug", "info", "warning" (or "warn"), "error", in any case, into *out.
 * Returns 0, or -EINVAL (and leaves *out alone) for anything else. */
int wd_log_level_parse(const char *text, enum wd_log_level *out);

/* The lower-case name of a level ("debug", "info", "warning", "error"); a static string. */
const char *wd_log_level_name(enum wd_log_level level);

/* Set or read the threshold (default: info). Safe to change at any time (a reload): a
 * line being written concurrently uses either the old or the new threshold. */
void wd_log_set_level(enum wd_log_level level);
enum wd_log_level wd_log_get_level(void);

/* True when a line of this level would be written (to skip costly formatting). */
bool wd_log_enabled(enum wd_log_level level);

/* Log one event. task_id may be NULL (no task field). */
void wd_log(enum wd_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void wd_log_task(enum wd_log_level level, const char *task_id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void wd_logv(enum wd_log_level level, const char *task_id, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

/* Log only when something changes state: the first call for a key, and then each call
 * whose state differs from the last one recorded for that key, writes the line; calls
 * repeating the current state write nothing. Meant for "broker disconnected" (logged once,
 * not at every reconnect attempt) and "broker connected again". The state is recorded even
 * when the level is below the threshold, so raising the threshold never causes a late
 * duplicate. Keys are compared as strings (at most 63 bytes are significant) and at most
 * 64 distinct keys are tracked; beyond that every call logs (noisy, never silent).
 * Returns true when the state changed (whether or not the line passed the threshold). */
bool wd_log_state(const char *key, int state, enum wd_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Forget every recorded state (the next wd_log_state call for any key logs). */
void wd_log_state_reset(void);

/* Send the log to a file instead of stderr: opened for appending (created 0640) and kept
 * open. Returns 0, or a negative errno and the log stays where it was. Not thread-safe
 * against itself or wd_log_reopen, but safe against concurrent logging. Call it at start-up. */
int wd_log_open_file(const char *path);

/* Reopen the log file by name (after logrotate moved it; for SIGHUP). The new file takes
 * over the same descriptor number with dup2(2), so a concurrent writer never writes to a
 * closed or reused descriptor. Without a log file this does nothing and returns 0. Returns
 * 0 or a negative errno (the old file stays in use). Uses only async-signal-safe calls, but
 * call it from the loop (an ev_signal watcher) rather than from a signal handler anyway. */
int wd_log_reopen(void);

/* Stop using the log file and go back to stderr. */
void wd_log_close_file(void);

#endif
