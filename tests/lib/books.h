/*
 * books.h - exact accounting for the fault-injection tests (tests/faults/): which task ids
 * were enqueued, how often each one ran and on which worker, where each result came from,
 * and whether Redis is left clean.
 *
 * A scenario registers its ids (books_ids), the log of every worker it started
 * (books_log), and every fault it injected (books_log_fault for a worker that was
 * SIGKILLed or SIGSTOPped, books_window for a Redis outage or pause, books_fault for the
 * count). books_check then reads the logs and the results and prints one line:
 *
 *   books: tasks N, executions E, faults F, lost L, duplicates D (explained X)
 *
 * and ASSERTs lost == 0, wrong == 0 (a result with another status than expected),
 * D == X, and that no message is left in a queue, an in-flight hash, a landing list, the
 * scheduled set or (unless expected) the dead-letter list. A final result is anything
 * but STARTED and RETRY (a retry still waits in the scheduled set). Ids expected REVOKED
 * count as final with their REVOKED result whether or not they ran: a revoked message, an
 * expired one or a Duplicate of a unique task is finished by a worker that never ran it
 * (a terminated one ran).
 *
 * Executions are counted from the workers' debug logs (-l debug): each run of a task logs
 * exactly one line "[task <id>] <task> started (tag <n>)", or "(tag <n>, retry <k>)" for
 * its k-th retry, with one write(2) before the task runs, so a SIGKILLed worker's runs are
 * in its log too. Each retry is an attempt of its own: an attempt that ran E times has
 * E - 1 duplicates; they are explained by as many of its runs being "faulted":
 *   - started on a worker that was SIGKILLed, before the kill (its result died with it);
 *   - started on a worker that was SIGSTOPped, before it was continued (presumed dead
 *     past its heartbeat TTL, its messages were given to another worker);
 *   - interrupted by a shutdown's deadline (the log says "interrupted by shutdown");
 *   - started during (or up to BOOKS_WINDOW_SLACK seconds before) a Redis outage or pause
 *     registered with books_window (heartbeats expired meanwhile, so live workers may
 *     have recovered each other's messages).
 * Any other repeated run is an unexplained duplicate, and the check fails.
 *
 * Times are unix seconds (books_now). Everything is for single-threaded test programs.
 */
#ifndef WORKERD_TESTS_BOOKS_H
#define WORKERD_TESTS_BOOKS_H

#include <stdbool.h>
#include <stddef.h>

#include <hiredis/hiredis.h>

/* A run in flight up to this long before a registered window opened may still be in
 * flight during it (the scenarios' tasks are shorter than this). */
#define BOOKS_WINDOW_SLACK 5.0

typedef struct books books;

/* New, empty books. Free with books_free. */
books *books_new(void);
void books_free(books *b);

/* Unix time now, in seconds (the clock of the workers' log timestamps). */
double books_now(void);

/* Expect the ids <prefix><first>..<prefix><last> to end with a result of `status`
 * ("SUCCESS", "FAILURE"...). */
void books_ids(books *b, const char *prefix, int first, int last, const char *status);

/* A worker's log file (the path is copied). Returns its index for books_log_fault. */
int books_log(books *b, const char *path);

/* The worker of log `index` was hit by `what` ("SIGKILL", "SIGSTOP") and its runs
 * started before `until` (unix seconds) may have been redelivered. Counts one fault. */
void books_log_fault(books *b, int index, const char *what, double until);

/* Redis was away or paused from t0 to t1 (unix seconds). Counts one fault. */
void books_window(books *b, const char *what, double t0, double t1);

/* Count `n` further faults that explain no duplicate (e.g. a warm shutdown, whose
 * interrupted runs the logs explain). */
void books_fault(books *b, int n);

/* Dead letters the scenario meant to cause (default 0). */
void books_expect_dead(books *b, long long n);

/* Poll (every 50 ms) until every id has a final result (not STARTED) and no message is
 * left in a queue, in-flight hash or landing list; true when that happened within
 * timeout seconds. */
bool books_wait_done(books *b, redisContext *c, double timeout);

/* Read the logs and results, print the books line (and one line per duplicate, lost or
 * wrong id), and ASSERT that the books balance (see above). */
void books_check(books *b, redisContext *c);

/* After books_check: the figures of the books line. */
typedef struct books_totals {
    int tasks, executions, faults, lost, wrong, duplicates, explained;
} books_totals;
books_totals books_get_totals(const books *b);

/* After books_check: how many times id ran, and the "worker" field of its result (a
 * pointer into the books; NULL when it has none). */
int books_runs(const books *b, const char *id);
const char *books_result_worker(const books *b, const char *id);

#endif
