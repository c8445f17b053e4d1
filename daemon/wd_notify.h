/*
 * wd_notify.h - tell systemd how workerd is doing: the sd_notify(3) protocol, without
 * libsystemd.
 *
 * Under a Type=notify unit, systemd passes NOTIFY_SOCKET, the address of an AF_UNIX
 * datagram socket; a notification is one datagram of newline-separated VAR=VALUE
 * assignments ("READY=1", "STATUS=...", "STOPPING=1", "RELOADING=1", "WATCHDOG=1",
 * "EXTEND_TIMEOUT_USEC=..."). systemd checks the sender's pid from the kernel's
 * credentials, so any thread of the main process may send. With WatchdogSec= it also
 * passes WATCHDOG_USEC (and WATCHDOG_PID): the process must send WATCHDOG=1 within every
 * such interval or be killed. Outside systemd none of these variables is set and every
 * call here is a successful no-op, so the daemon calls them unconditionally.
 *
 * NOTIFY_SOCKET is a filesystem path ("/run/systemd/notify") or, starting with '@', an
 * abstract socket name. NOTIFY_SOCKET is left in the environment (unlike sd_notify's
 * unset_environment), because the daemon notifies for its whole life.
 *
 * Blocking: a send waits at most 100 ms when the manager's queue is full, then fails with
 * -EAGAIN, so the hub can call these (they never yield) without stalling the loop for long.
 * Thread-safe as long as nobody changes the environment meanwhile (getenv).
 */
#ifndef WORKERD_WD_NOTIFY_H
#define WORKERD_WD_NOTIFY_H

#include <stdint.h>

/* Send state (e.g. "READY=1\nSTATUS=consuming default") as one datagram to
 * $NOTIFY_SOCKET. Returns 0 when it was sent or when NOTIFY_SOCKET is unset or empty;
 * -EINVAL when NOTIFY_SOCKET is neither an absolute path nor '@' + name, or is too long
 * for a socket address, or state is empty; -EAGAIN when the manager did not take it within
 * 100 ms; another -errno from socket/sendto (-ENOENT, -ECONNREFUSED: nobody listens). */
int wd_notify(const char *state);

/* wd_notify with a printf format: wd_notifyf("STATUS=%d tasks running", n). -ENOMEM when
 * the text cannot be formatted. */
int wd_notifyf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The watchdog interval systemd expects WATCHDOG=1 within, in microseconds, from
 * WATCHDOG_USEC: > 0 when the watchdog is on for this process; 0 when it is off
 * (WATCHDOG_USEC unset or empty, or WATCHDOG_PID names another process, e.g. the parent
 * that exec'd us passed its own); -EINVAL when either variable is malformed or 0. Send
 * WATCHDOG=1 at half the interval, as sd_watchdog_enabled(3) advises. */
int64_t wd_notify_watchdog_usec(void);

#endif
