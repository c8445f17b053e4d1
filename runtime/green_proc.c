/*
 * green_proc.c - child processes for greenlets (green_proc.h): posix_spawn with three
 * pipes, ev_io watchers on the parent's ends, ev_child for the exit.
 *
 * Spawning. glibc's posix_spawn clones with CLONE_VM | CLONE_VFORK, so starting a child
 * costs no copy of the worker's page tables, however many greenlet stacks it maps, and an
 * exec failure comes back as its return value. The file actions put the pipes on 0, 1 and
 * 2 and then close every descriptor from 3 up (closefrom, i.e. close_range): the worker's
 * Redis and HTTP sockets, and the pipes of the other children being spawned, never leak
 * into a child even where an fd was opened without O_CLOEXEC. The pipes themselves are
 * made close-on-exec and moved above 2 first, so that dup2 onto 0..2 cannot overwrite a
 * pipe end that is still to be duplicated when the worker's own 0..2 are closed. Only the
 * parent's ends are non-blocking (O_NONBLOCK belongs to the open file description, and
 * each end of a pipe is a description of its own), so the child sees ordinary blocking
 * stdio.
 *
 * Exits. libev's default loop reaps every child itself (waitpid(-1) in its SIGCHLD
 * handler) and hands the status to the ev_child watchers of that pid in the same pass,
 * before any greenlet runs. child_exited records the status, kills the rest of the
 * child's process group (green_proc.h says why) and wakes the waiting greenlet. Killing
 * the group right there, microseconds after the leader was reaped, is safe: while any
 * member lives the kernel does not hand out the group's id as a pid again, and with none
 * left the kill finds nobody (a pid recycled in those microseconds would need the whole
 * pid space to wrap meanwhile). pidfds would avoid the question, but the default loop
 * reaps first, so waitid on a pidfd could never see the status.
 *
 * Communicating. One greenlet drives the three pipes: it tries each ready end (writing
 * stdin until EAGAIN, reading stdout and stderr until EAGAIN), arms the watchers of the
 * ends that said EAGAIN, and parks until a watcher or the exit wakes it. The callbacks
 * only stop their watcher, record which end is ready and wake the greenlet (STYLE.md:
 * callbacks never switch). Writing and reading at once is what keeps a child that writes
 * before it has read all its input from deadlocking against a parent that writes before
 * it reads. Once the child has exited, what it wrote is all in the pipes (a write into a
 * pipe completes before the writer can exit), so the ends are drained without waiting and
 * closed.
 *
 * Stacks: everything runs on the calling greenlet's stack except the callbacks (hub). The
 * record, its watchers and its buffers are on the heap.
 */
#include "green_proc.h"
#include "green_internal.h"
#include "green_io.h"

#include <ev.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

enum { END_IN = 1, END_OUT = 2, END_ERR = 4 };

struct green_proc {
    pid_t pid;
    bool exited;
    int status;           /* wait status once exited, else -1 */
    int fd[3];            /* the parent's ends: stdin (write), stdout, stderr; -1 closed */
    ev_io io[3];          /* their watchers (data: this record) */
    ev_child child_w;     /* the exit (data: this record) */
    struct green *waiter; /* the greenlet parked on this child, or NULL */
    unsigned ready;       /* END_* bits the callbacks found ready */
    bool started;         /* communicate has begun (a later call resumes it) */
    const char *in;       /* communicate's input, and how much of it is written */
    size_t in_len, in_off;
    char *out; /* stdout as read: out_len bytes, room for out_cap */
    size_t out_len, out_cap, out_max;
    bool out_overflow; /* more than out_max bytes came */
    size_t err_total;  /* stderr bytes read in all */
    size_t err_len;    /* bytes in err; the tail is its last GREEN_PROC_ERR_TAIL */
    char err[2 * GREEN_PROC_ERR_TAIL + 1];
};

static const unsigned end_bit[3] = {END_IN, END_OUT, END_ERR};

/* ---- callbacks (hub) ------------------------------------------------------------------ */

static void end_ready(struct ev_loop *loop, ev_io *w, int revents) {
    struct green_proc *p = w->data;
    (void)revents;
    ev_io_stop(loop, w);
    p->ready |= end_bit[w - p->io];
    if (p->waiter)
        green__wake(p->waiter, 0);
}

static void child_exited(struct ev_loop *loop, ev_child *w, int revents) {
    struct green_proc *p = w->data;
    (void)revents;
    ev_child_stop(loop, w);
    p->exited = true;
    p->status = w->rstatus;
    kill(-p->pid, SIGKILL); /* what it left in its group; ESRCH when nothing */
    if (p->waiter)
        green__wake(p->waiter, 0);
}

/* ---- spawning --------------------------------------------------------------------------- */

/* fd moved to a number above 2 (close-on-exec), or -errno. */
static int above_stdio(int fd) {
    if (fd > 2)
        return fd;
    int moved = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    int err = errno;
    close(fd);
    return moved < 0 ? -err : moved;
}

/* A close-on-exec pipe with both ends above 2. 0 or -errno (nothing left open). */
static int make_pipe(int fds[2]) {
    if (pipe2(fds, O_CLOEXEC) < 0) {
        fds[0] = fds[1] = -1;
        return -errno;
    }
    for (int i = 0; i < 2; i++) {
        int fd = above_stdio(fds[i]);
        if (fd < 0) {
            fds[i] = -1;
            if (fds[1 - i] >= 0)
                close(fds[1 - i]);
            fds[0] = fds[1] = -1;
            return fd;
        }
        fds[i] = fd;
    }
    return 0;
}

static void close_pair(int fds[2]) {
    for (int i = 0; i < 2; i++)
        if (fds[i] >= 0)
            close(fds[i]);
}

/* posix_spawn with the child's set-up: pipes on 0..2 and nothing else open, its own
 * process group, default signal dispositions and an empty mask. Returns 0 or -errno. */
static int spawn(pid_t *pid, const green_proc_spec *spec, int in[2], int out[2], int err[2]) {
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    sigset_t all, none;
    sigfillset(&all);
    sigemptyset(&none);
    int rc = posix_spawn_file_actions_init(&fa);
    if (rc != 0)
        return -rc;
    rc = posix_spawnattr_init(&attr);
    if (rc != 0) {
        posix_spawn_file_actions_destroy(&fa);
        return -rc;
    }
    rc = posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    if (rc == 0)
        rc = posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    if (rc == 0)
        rc = posix_spawn_file_actions_adddup2(&fa, err[1], 2);
    if (rc == 0)
        rc = posix_spawn_file_actions_addclosefrom_np(&fa, 3);
    if (rc == 0)
        rc = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF |
                                                 POSIX_SPAWN_SETSIGMASK);
    if (rc == 0)
        rc = posix_spawnattr_setpgroup(&attr, 0);
    if (rc == 0)
        rc = posix_spawnattr_setsigdefault(&attr, &all);
    if (rc == 0)
        rc = posix_spawnattr_setsigmask(&attr, &none);
    if (rc == 0)
        rc = posix_spawn(pid, spec->path, &fa, &attr, spec->argv, spec->envp);
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&fa);
    return -rc;
}

int green_proc_spawn(green_proc **out, const green_proc_spec *spec) {
    struct ev_loop *loop = green_loop();
    *out = NULL;
    if (loop == NULL)
        return -EPERM;
    if (!green__default_loop())
        return -EOPNOTSUPP;
    struct green_proc *p = malloc(sizeof *p);
    if (p == NULL)
        return -ENOMEM;
    /* Not calloc'd whole: the 8 KiB stderr buffer is written before it is read. */
    memset(p, 0, offsetof(struct green_proc, err));
    p->err[0] = '\0';
    p->status = -1;
    int in[2] = {-1, -1}, o[2] = {-1, -1}, e[2] = {-1, -1};
    int rc = make_pipe(in);
    if (rc == 0)
        rc = make_pipe(o);
    if (rc == 0)
        rc = make_pipe(e);
    if (rc == 0)
        rc = spawn(&p->pid, spec, in, o, e);
    /* The child's ends are the child's now (or nobody's). */
    int parent[3] = {in[1], o[0], e[0]};
    in[1] = o[0] = e[0] = -1;
    close_pair(in);
    close_pair(o);
    close_pair(e);
    for (int i = 0; rc == 0 && i < 3; i++)
        rc = green_fd_set_nonblock(parent[i]);
    if (rc != 0) {
        for (int i = 0; i < 3; i++)
            if (parent[i] >= 0)
                close(parent[i]);
        if (p->pid > 0)
            kill(-p->pid, SIGKILL); /* reaped by libev's handler */
        free(p);
        return rc;
    }
    for (int i = 0; i < 3; i++) {
        p->fd[i] = parent[i];
        ev_init(&p->io[i], end_ready);
        p->io[i].data = p;
    }
    ev_child_init(&p->child_w, child_exited, p->pid, 0);
    p->child_w.data = p;
    ev_child_start(loop, &p->child_w);
    *out = p;
    return 0;
}

pid_t green_proc_pid(const green_proc *p) {
    return p->pid;
}

int green_proc_status(const green_proc *p) {
    return p->exited ? p->status : -1;
}

const char *green_proc_stdout(const green_proc *p, size_t *len) {
    *len = p->out_len;
    return p->out ? p->out : "";
}

const char *green_proc_stderr(const green_proc *p, size_t *len, size_t *total) {
    size_t skip = p->err_len > GREEN_PROC_ERR_TAIL ? p->err_len - GREEN_PROC_ERR_TAIL : 0;
    *len = p->err_len - skip;
    if (total)
        *total = p->err_total;
    return p->err + skip;
}

int green_proc_signal(green_proc *p, int sig) {
    if (p->exited)
        return -ESRCH;
    return kill(-p->pid, sig) == 0 ? 0 : -errno;
}

/* ---- the pipes ------------------------------------------------------------------------ */

static void close_end(struct green_proc *p, int i) {
    if (p->fd[i] < 0)
        return;
    ev_io_stop(ev_default_loop(0), &p->io[i]);
    close(p->fd[i]);
    p->fd[i] = -1;
}

/* Write stdin until it would block; close it once everything is written or the child no
 * longer reads (EPIPE, or any other error: the input is then simply not delivered). */
static void write_in(struct green_proc *p) {
    while (p->fd[0] >= 0 && p->in_off < p->in_len) {
        ssize_t n = write(p->fd[0], p->in + p->in_off, p->in_len - p->in_off);
        if (n > 0) {
            p->in_off += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return;
        } else {
            break;
        }
    }
    close_end(p, 0);
}

/* Stop the child for writing too much: it is killed with its group, its stdin and stdout
 * closed; stderr is still read until the exit. */
static void overflow(struct green_proc *p) {
    p->out_overflow = true;
    p->out_len = p->out_max;
    p->out[p->out_len] = '\0';
    kill(-p->pid, SIGKILL);
    close_end(p, 0);
    close_end(p, 1);
}

/* Room for at least one more byte than out_max allows, to see an overflow. false when out
 * of memory. */
static bool grow_out(struct green_proc *p) {
    size_t want = p->out_max + 2; /* out_max bytes, one too many, and the NUL */
    if (p->out_cap - p->out_len > 1 || p->out_cap >= want)
        return true;
    size_t cap = p->out_cap ? p->out_cap * 2 : 4096;
    if (cap > want)
        cap = want;
    char *grown = realloc(p->out, cap);
    if (grown == NULL)
        return false;
    p->out = grown;
    p->out_cap = cap;
    return true;
}

/* Read stdout until it would block or ends. Returns 0, or -ENOMEM. */
static int read_out(struct green_proc *p) {
    while (p->fd[1] >= 0) {
        if (!grow_out(p))
            return -ENOMEM;
        size_t room = p->out_cap - 1 - p->out_len; /* keep one byte for the NUL */
        ssize_t n = read(p->fd[1], p->out + p->out_len, room);
        if (n > 0) {
            p->out_len += (size_t)n;
            p->out[p->out_len] = '\0';
            if (p->out_len > p->out_max)
                overflow(p);
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return 0;
        } else {
            close_end(p, 1); /* end of file, or an error that ends it alike */
        }
    }
    return 0;
}

/* Read stderr until it would block or ends, keeping its tail: the buffer holds two tails'
 * worth; when it is full, the older half goes. */
static void read_err(struct green_proc *p) {
    while (p->fd[2] >= 0) {
        if (p->err_len == sizeof p->err - 1) {
            memmove(p->err, p->err + GREEN_PROC_ERR_TAIL, GREEN_PROC_ERR_TAIL);
            p->err_len = GREEN_PROC_ERR_TAIL;
        }
        ssize_t n = read(p->fd[2], p->err + p->err_len, sizeof p->err - 1 - p->err_len);
        if (n > 0) {
            p->err_len += (size_t)n;
            p->err_total += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            break;
        } else {
            close_end(p, 2);
        }
    }
    p->err[p->err_len] = '\0';
}

/* One round over the ready ends. Returns 0 or -ENOMEM. */
static int pump(struct green_proc *p, unsigned ready) {
    int rc = 0;
    if (ready & END_IN)
        write_in(p);
    if (ready & END_OUT)
        rc = read_out(p);
    if (ready & END_ERR)
        read_err(p);
    return rc;
}

static void stop_watchers(struct green_proc *p) {
    for (int i = 0; i < 3; i++)
        ev_io_stop(ev_default_loop(0), &p->io[i]);
}

/* Park until a watcher or the exit wakes the caller, or deadline / a scope / a kill.
 * scoped false: clean-up, the enclosing scopes do not apply. */
static int park_on(struct green_proc *p, double deadline, bool scoped) {
    p->waiter = green__current();
    int rc = scoped ? green__park(deadline) : green__park_unscoped(deadline);
    p->waiter = NULL;
    return rc;
}

int green_proc_communicate(green_proc *p, const void *in, size_t in_len, size_t out_max) {
    int rc = green__check();
    if (rc < 0)
        return rc;
    if (!p->started) {
        p->started = true;
        p->in = in;
        p->in_len = in_len;
        p->in_off = 0;
        p->out_max = out_max;
    }
    unsigned ready = END_IN | END_OUT | END_ERR; /* try each end once before waiting */
    while (!p->exited) {
        if (pump(p, ready) < 0) {
            kill(-p->pid, SIGKILL);
            stop_watchers(p);
            return -ENOMEM;
        }
        if (p->exited)
            break;
        /* Watch the ends that said EAGAIN. The fd may be a new one with an old number
         * (docs/pitfalls.md "libev"): ev_io_set before every start. */
        for (int i = 0; i < 3; i++) {
            if (p->fd[i] >= 0 && !ev_is_active(&p->io[i])) {
                ev_io_set(&p->io[i], p->fd[i], i == 0 ? EV_WRITE : EV_READ);
                ev_io_start(ev_default_loop(0), &p->io[i]);
            }
        }
        p->ready = 0;
        rc = park_on(p, GREEN_FOREVER, true);
        ready = p->ready;
        if (rc < 0 && !p->exited) {
            stop_watchers(p);
            return rc;
        }
    }
    /* Exited: everything it wrote is in the pipes. Read it without waiting, then close. */
    stop_watchers(p);
    rc = pump(p, END_OUT | END_ERR);
    for (int i = 0; i < 3; i++)
        close_end(p, i);
    if (rc < 0)
        return rc;
    return p->out_overflow ? -EFBIG : 0;
}

int green_proc_wait(green_proc *p, double timeout) {
    int rc = green__check();
    if (rc < 0)
        return rc;
    double deadline = green__deadline_in(timeout);
    while (!p->exited) {
        rc = park_on(p, deadline, true);
        if (rc < 0 && !p->exited)
            return rc;
    }
    return 0;
}

int green_proc_stop(green_proc *p, double grace) {
    if (green__current() == NULL)
        return green__park_unscoped(GREEN_FOREVER); /* -EPERM, and says so */
    if (p->exited)
        return 0;
    kill(-p->pid, SIGTERM);
    /* The grace: only the exit or its end finish it; an interruption is consumed. */
    double deadline = green__deadline_in(grace > 0 ? grace : 0);
    while (!p->exited && ev_time() < deadline)
        park_on(p, deadline, false);
    if (p->exited)
        return 0;
    kill(-p->pid, SIGKILL);
    while (!p->exited) {
        int rc = park_on(p, GREEN_FOREVER, false);
        if (rc < 0 && !p->exited)
            return rc;
    }
    return 0;
}

void green_proc_free(green_proc *p) {
    if (p == NULL)
        return;
    /* Every watcher of a green_proc is on the default loop (green_proc_spawn checks), which
     * outlives any hub: stop them there, even when no hub runs any more. */
    struct ev_loop *loop = ev_default_loop(0);
    if (!p->exited) {
        kill(-p->pid, SIGKILL);
        /* Its exit is still to come: libev's handler reaps it, with nobody to tell. */
        ev_child_stop(loop, &p->child_w);
    }
    for (int i = 0; i < 3; i++) {
        if (p->fd[i] >= 0) {
            ev_io_stop(loop, &p->io[i]);
            close(p->fd[i]);
        }
    }
    free(p->out);
    free(p);
}
