/*
 * green_check.h - invariants that stay checked in every build, and the wall clock.
 *
 * assert() vanishes under NDEBUG, which the release and CI builds set. An invariant whose
 * check costs a comparison or two and whose violation would corrupt data (a key name that
 * does not fit its buffer, a count that went negative) is checked with GREEN_CHECK
 * instead: in every build, a failed check prints one line naming the place and the
 * condition to stderr and aborts (a core dump, a clear death; never a silent wrong key).
 * Expensive checks stay asserts.
 *
 * green_check_fail never returns; it is async-signal-unsafe (stdio) and thread-safe.
 * green_wallclock is thread-safe, never yields and may be called from any stack.
 */
#ifndef WORKERD_GREEN_CHECK_H
#define WORKERD_GREEN_CHECK_H

/* Abort with "<file>:<line>: check failed: <cond>: <msg>" when cond is false. msg is a
 * string literal saying what the invariant protects. */
#define GREEN_CHECK(cond, msg)                                                                     \
    ((cond) ? (void)0 : green_check_fail(__FILE__, __LINE__, #cond, (msg)))

void green_check_fail(const char *file, int line, const char *cond, const char *msg)
    __attribute__((noreturn, cold));

/* Unix time now in seconds, with sub-microsecond fractions (CLOCK_REALTIME). For the
 * times users read (results, events, heartbeats, log lines); intervals use the loop's
 * monotonic clock instead. */
double green_wallclock(void);

#endif
