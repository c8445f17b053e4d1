/*
 * green_proc.h - child processes for greenlets, like gevent.subprocess: start a program
 * with pipes on its stdin, stdout and stderr, feed and drain them while it runs, wait for
 * its exit, signal it - parking only the calling greenlet, never the hub.
 *
 * A child starts in a process group of its own (its pid is the group id), with every
 * standard signal at its default disposition and none blocked (the daemon ignores SIGPIPE
 * and blocks some signals at times; a child must not inherit that; glibc's posix_spawn
 * leaves its own two internal real-time signals ignored), its stdin, stdout and
 * stderr on pipes to the caller, and no other descriptor of the caller open. It runs in
 * the caller's working directory, with exactly the environment it is given.
 *
 * The process group lives no longer than the child: when the child exits, whatever it left
 * in its group (a grandchild it forked, a `sleep &` of a shell script) is sent SIGKILL at
 * once. So a grandchild that holds the child's stdout open cannot keep a caller waiting
 * for an end of file that never comes, and nothing a task started outlives it unnoticed.
 * A program that must leave something running has to put it in a session of its own
 * (setsid) with its own descriptors; green_proc no longer sees it then.
 *
 * Exits are watched with libev's ev_child, which only libev's default loop can run: that
 * loop reaps every child of the process with its own SIGCHLD handler (docs/pitfalls.md
 * "libev"), so the exit status can only be learned through it, and a child is never left a
 * zombie, even one nobody waits for any more (green_proc_free). So green_proc needs a hub
 * on the default loop (green_run with loop NULL), and the process must not reap children
 * with waitpid elsewhere.
 *
 * SIGPIPE must be ignored in the process (the daemon does, green_io.h relies on it too):
 * writing to a child that has closed its stdin is then -EPIPE, which green_proc treats as
 * "the child wants no more input", not as an error.
 *
 * Conventions are green.h's and green_io.h's: 0 or a negative errno; calls that MAY YIELD
 * must be made from a greenlet and return -ECANCELED when it is killed, -ETIMEDOUT when a
 * deadline passes (their timeout argument or an enclosing green_timeout scope), except
 * green_proc_stop, which is clean-up and says how it differs. None of this is
 * thread-safe: a green_proc belongs to the hub that spawned it, and one greenlet at a time
 * may wait on it.
 */
#ifndef WORKERD_GREEN_PROC_H
#define WORKERD_GREEN_PROC_H

#include "green.h"

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* The last bytes of stderr that green_proc_communicate keeps (the rest is read and
 * dropped, so a chatty child never blocks on a full pipe). */
#define GREEN_PROC_ERR_TAIL 4096

typedef struct green_proc green_proc;

/* What to run. The strings are copied by the kernel at spawn; nothing is kept. */
typedef struct green_proc_spec {
    const char *path;  /* the executable, run as is: no PATH search and no shell */
    char *const *argv; /* NULL-terminated; argv[0] is what the program sees as its name */
    char *const *envp; /* NULL-terminated: the child's whole environment */
} green_proc_spec;

/* Start the program. Does not yield; must be called on a hub's thread (from a greenlet or
 * the hub). On success *out owns the child and its pipes until green_proc_free.
 * Returns 0, or a negative errno with nothing left behind: what exec said (-ENOENT,
 * -EACCES, -ENOEXEC, -ETXTBSY, ...), -EMFILE / -ENFILE (no descriptors for the pipes),
 * -EAGAIN (the process limit), -ENOMEM, -EPERM (no hub on this thread), -EOPNOTSUPP (the
 * hub does not run on libev's default loop, which alone can watch children). Under
 * valgrind, which runs glibc's CLONE_VFORK spawn as a fork, exec errors cannot come back
 * here: the spawn succeeds and the child exits with status 127. */
int green_proc_spawn(green_proc **out, const green_proc_spec *spec);

/* The child's pid, which is also its process group id. */
pid_t green_proc_pid(const green_proc *p);

/* Write in_len bytes of in to the child's stdin and close it (the child then reads an end
 * of file); meanwhile read its stdout, keeping at most out_max bytes, and its stderr,
 * keeping the last GREEN_PROC_ERR_TAIL bytes; until the child has exited. Then whatever is
 * still in the pipes is read without waiting (what the child wrote before it exited is all
 * there) and the pipes are closed: output written after the child's exit, by a process it
 * left behind, is not waited for. in may be NULL when in_len is 0; it must stay valid until
 * the call that returns 0, -EFBIG or -ENOMEM. MAY YIELD.
 *
 * A child that exits or closes its stdin without reading all of in is not an error: the
 * rest is dropped. Returns:
 *    0           the child has exited: green_proc_status, green_proc_stdout and
 *                green_proc_stderr say how and what it wrote;
 *   -EFBIG       it wrote more than out_max bytes on stdout: its process group was sent
 *                SIGKILL, its exit awaited; green_proc_stdout holds the first out_max bytes;
 *   -ETIMEDOUT, -ECANCELED, or a green_throw's code: interrupted, the child may still be
 *                running. Call again (same arguments) to carry on where it stopped, e.g.
 *                after a soft limit asked the child to stop with SIGTERM; or stop it
 *                (green_proc_stop), or let green_proc_free kill it;
 *   -EPERM       not called from a greenlet;
 *   -ENOMEM      no memory for its stdout: the process group was sent SIGKILL; its exit
 *                is still to come (green_proc_wait, or green_proc_free). */
int green_proc_communicate(green_proc *p, const void *in, size_t in_len, size_t out_max);

/* Wait for the child to exit. MAY YIELD. Returns 0 (exited: green_proc_status),
 * -ETIMEDOUT, -ECANCELED, -EPERM. */
int green_proc_wait(green_proc *p, double timeout);

/* Send sig to the child's process group. Does not yield. Returns 0, or -ESRCH once the
 * child has exited (its group was killed with it). */
int green_proc_signal(green_proc *p, int sig);

/* Stop the child: SIGTERM to its process group, up to grace seconds for it to exit, then
 * SIGKILL and wait for the exit, which comes at once (a process in uninterruptible sleep
 * delays it). MAY YIELD. This is clean-up on a fixed schedule, typically run because the
 * caller was just killed or its time ran out, so nothing cuts the grace short: not the
 * enclosing green_timeout scopes, not a green_kill or green_throw (a kill that arrives
 * meanwhile is consumed). Once SIGKILL is sent, an interruption ends the wait: the call
 * returns its code (-ECANCELED for a kill) without waiting for the end (libev reaps the
 * child later; green_proc_free is safe). Returns 0 when the child has exited (at once if
 * it already had), such a code, or -EPERM. */
int green_proc_stop(green_proc *p, double grace);

/* The child's wait status once it has exited (test it with WIFEXITED, WEXITSTATUS,
 * WIFSIGNALED, WTERMSIG), or -1 while it runs. */
int green_proc_status(const green_proc *p);

/* What green_proc_communicate read from stdout: *len bytes (they may include NULs),
 * followed by a NUL that is not counted; owned by p. Never NULL. */
const char *green_proc_stdout(const green_proc *p, size_t *len);

/* The last bytes read from stderr (at most GREEN_PROC_ERR_TAIL), as for stdout;
 * *total, if not NULL, receives how many bytes the child wrote on stderr in all. */
const char *green_proc_stderr(const green_proc *p, size_t *len, size_t *total);

/* Release the child: a child still running is sent SIGKILL with its whole process group
 * (and reaped by libev's handler, never left a zombie); its pipes are closed. Does not
 * yield; callable from a greenlet or the hub. p may be NULL. */
void green_proc_free(green_proc *p);

#endif
