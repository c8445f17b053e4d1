/*
 * wd_supervisor.c - the process supervisor of wd_supervisor.h.
 *
 * Shape. wd_supervisor_run owns a `struct sup` (one `struct kid` per slot) and turns the
 * default libev loop until every child is gone after a shutdown request. Watcher callbacks
 * never fork: they mark a slot `due` and break the loop, and the outer loop of
 * wd_supervisor_run forks. So a child starts life outside any ev_run, on main's stack,
 * and returns from wd_supervisor_run straight into main's worker path; it first stops
 * every watcher it inherited, frees the supervisor's memory and calls ev_loop_fork, so its
 * own green runtime finds the default loop clean (the worker's ev_signal watchers need
 * the default loop).
 *
 * Invariants: a slot has at most one child (pid != 0) and, when it has none and no
 * shutdown was asked for, either a restart timer running or `due` set. `live` counts the
 * slots with a child. Once `stopping`, nothing is forked again.
 *
 * Notifications. Children write sd_notify datagrams to an abstract AF_UNIX socket
 * ("@workerd-supervisor-<pid>-<random>") that has SO_PASSCRED, so each datagram carries
 * its sender's pid and is credited to that slot: READY=1 marks it ready, any datagram
 * (WATCHDOG=1 in particular) proves it alive. The children ping (WATCHDOG=1 at half the
 * WATCHDOG_USEC they are given) for systemd's watchdog, for --time-limit, or both; one
 * timer checks them at the same pace.
 *
 * Everything runs on the main thread of the parent, in libev callbacks or between loop
 * runs; nothing yields (there are no greenlets here).
 */
#include "wd_supervisor.h"

#include "wd_log.h"
#include "wd_notify.h"
#include "wd_shutdown.h"

#include <errno.h>
#include <ev.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BACKOFF_FIRST 1.0
#define BACKOFF_MAX 30.0
#define BACKOFF_RESET_AFTER 60.0
#define LIMIT_PING_MIN 0.25
#define LIMIT_PING_MAX 1.0

struct sup;

struct kid {
    struct sup *sup;
    int slot;
    pid_t pid;         /* 0: no child in this slot now */
    bool due;          /* fork one at the next turn of the outer loop */
    bool ready;        /* this child said READY=1 */
    bool ever_ready;   /* some child of this slot did, once */
    double started;    /* ev_now at fork */
    double last_heard; /* ev_now of its last datagram (or its fork) */
    double delay;      /* the next crash's restart delay */
    ev_timer restart;
};

struct sup {
    const struct wd_options *opts;
    struct ev_loop *loop;
    struct kid *kids;
    int n, live;
    bool stopping, told_ready, failed;
    ev_child child_w;
    ev_signal sigs[4];
    ev_io notify_w;
    int notify_fd;
    char notify_name[96]; /* "@workerd-supervisor-..." as NOTIFY_SOCKET spells it */
    ev_timer watchdog;
    int64_t watchdog_usec; /* systemd's watchdog interval; 0: off */
    double limit_ping;     /* --time-limit: how often children ping; 0: no limit */
    int64_t child_usec;    /* the interval children are told to ping within; 0: none */
};

static const int forwarded[4] = {SIGTERM, SIGINT, SIGQUIT, SIGHUP};

bool wd_supervisor_wanted(const struct wd_options *opts) {
    return opts->processes > 1 || opts->max_tasks_per_child > 0 || opts->max_memory_per_child > 0;
}

/* "exited with code 3" / "was killed by signal 9 (Killed)". */
static void describe(int status, char *buf, size_t len) {
    if (WIFEXITED(status))
        snprintf(buf, len, "exited with code %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, len, "was killed by signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    else
        snprintf(buf, len, "ended with status %#x", status);
}

static void report_status(struct sup *s) {
    int ready = 0;
    for (int i = 0; i < s->n; i++)
        ready += s->kids[i].pid && s->kids[i].ready;
    bool all_once = true;
    for (int i = 0; i < s->n; i++)
        all_once = all_once && s->kids[i].ever_ready;
    if (all_once && !s->told_ready && !s->stopping) {
        s->told_ready = true;
        wd_log(WD_LOG_INFO, "supervisor: all %d children ready", s->n);
        wd_notifyf("READY=1\nSTATUS=%d/%d children running", ready, s->n);
    } else {
        wd_notifyf("STATUS=%s%d/%d children running", s->stopping ? "stopping: " : "", ready, s->n);
    }
}

static void on_restart(struct ev_loop *loop, ev_timer *t, int revents) {
    struct kid *k = t->data;
    (void)revents;
    ev_timer_stop(loop, t);
    if (!k->sup->stopping) {
        k->due = true;
        ev_break(loop, EVBREAK_ONE);
    }
}

static void on_child(struct ev_loop *loop, ev_child *w, int revents) {
    struct sup *s = w->data;
    (void)revents;
    struct kid *k = NULL;
    for (int i = 0; i < s->n; i++)
        if (s->kids[i].pid == w->rpid)
            k = &s->kids[i];
    if (!k)
        return; /* not one of ours (nothing else forks here, but be safe) */
    char how[96];
    describe(w->rstatus, how, sizeof how);
    double lived = ev_now(loop) - k->started;
    bool clean = WIFEXITED(w->rstatus) && WEXITSTATUS(w->rstatus) == 0;
    k->pid = 0;
    k->ready = false;
    s->live--;
    if (lived >= BACKOFF_RESET_AFTER)
        k->delay = BACKOFF_FIRST;
    if (s->stopping) {
        s->failed = s->failed || !clean;
        wd_log(clean ? WD_LOG_INFO : WD_LOG_ERROR, "supervisor: child %d (pid %d) %s; %d left",
               k->slot, (int)w->rpid, how, s->live);
        if (s->live == 0)
            ev_break(loop, EVBREAK_ONE);
    } else if (clean) {
        /* Recycled (--max-tasks-per-child, --max-memory-per-child): not a crash. */
        wd_log(WD_LOG_INFO,
               "supervisor: child %d (pid %d) exited 0 after %.1f s (recycled); "
               "starting a new one",
               k->slot, (int)w->rpid, lived);
        k->due = true;
        ev_break(loop, EVBREAK_ONE);
    } else {
        wd_log(WD_LOG_WARNING,
               "supervisor: child %d (pid %d) %s after %.1f s; restarting it "
               "in %g s",
               k->slot, (int)w->rpid, how, lived, k->delay);
        ev_timer_set(&k->restart, k->delay, 0.);
        ev_timer_start(loop, &k->restart);
        k->delay = k->delay * 2 > BACKOFF_MAX ? BACKOFF_MAX : k->delay * 2;
    }
    report_status(s);
}

static void forward(struct sup *s, int sig) {
    for (int i = 0; i < s->n; i++)
        if (s->kids[i].pid)
            kill(s->kids[i].pid, sig);
}

static void on_signal(struct ev_loop *loop, ev_signal *w, int revents) {
    struct sup *s = w->data;
    (void)revents;
    if (w->signum == SIGHUP) {
        wd_log(WD_LOG_INFO, "supervisor: SIGHUP: passing it on to %d children", s->live);
        forward(s, SIGHUP);
        return;
    }
    if (!s->stopping) {
        s->stopping = true;
        wd_log(WD_LOG_INFO, "supervisor: %s: stopping %d children", strsignal(w->signum), s->live);
        /* The children stop in parallel, each within the shutdown timeout and what comes
         * after the tasks (wd_shutdown.h). */
        wd_notifyf("STOPPING=1\nEXTEND_TIMEOUT_USEC=%lld",
                   (long long)(s->opts->shutdown_timeout + WD_SHUTDOWN_AFTER_TASKS) * 1000000);
        for (int i = 0; i < s->n; i++) {
            ev_timer_stop(loop, &s->kids[i].restart);
            s->kids[i].due = false;
        }
        report_status(s);
    }
    forward(s, w->signum);
    if (s->live == 0)
        ev_break(loop, EVBREAK_ONE);
}

/* Datagrams from the children: READY=1, WATCHDOG=1, STATUS=..., credited by sender pid. */
static void on_notify(struct ev_loop *loop, ev_io *w, int revents) {
    struct sup *s = w->data;
    (void)revents;
    for (;;) {
        char buf[4096];
        union {
            struct cmsghdr h;
            char space[CMSG_SPACE(sizeof(struct ucred))];
        } ctl;
        struct iovec iov = {buf, sizeof buf - 1};
        struct msghdr msg = {
            .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &ctl, .msg_controllen = sizeof ctl};
        ssize_t n = recvmsg(s->notify_fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (n < 0)
            return;
        buf[n] = '\0';
        pid_t pid = 0;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c))
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS) {
                struct ucred cred;
                memcpy(&cred, CMSG_DATA(c), sizeof cred);
                pid = cred.pid;
            }
        for (int i = 0; i < s->n; i++) {
            struct kid *k = &s->kids[i];
            if (!pid || k->pid != pid)
                continue;
            k->last_heard = ev_now(loop);
            bool ready = strncmp(buf, "READY=1", 7) == 0 || strstr(buf, "\nREADY=1");
            if (ready && !k->ready) {
                k->ready = k->ever_ready = true;
                report_status(s);
            }
        }
    }
}

/* How often children ping under --time-limit: often enough that a silence longer than
 * --time-limit plus this proves a loop stuck for longer than --time-limit (the stall began
 * at most one ping after the last one heard), rarely enough to cost nothing. */
static double limit_ping(const struct wd_options *opts) {
    if (!(opts->time_limit > 0))
        return 0;
    double ping = opts->time_limit / 4;
    return ping < LIMIT_PING_MIN ? LIMIT_PING_MIN : ping > LIMIT_PING_MAX ? LIMIT_PING_MAX : ping;
}

/* Feed systemd's watchdog from this loop; replace a child that stopped pinging: for
 * systemd's whole interval, or (--time-limit) for longer than the time limit. */
static void on_watchdog(struct ev_loop *loop, ev_timer *w, int revents) {
    struct sup *s = w->data;
    (void)revents;
    double interval = (double)s->watchdog_usec / 1e6;
    for (int i = 0; i < s->n; i++) {
        struct kid *k = &s->kids[i];
        double silent = ev_now(loop) - k->last_heard;
        if (!k->pid)
            continue;
        if (s->watchdog_usec > 0 && silent > interval) {
            wd_log(WD_LOG_ERROR,
                   "supervisor: child %d (pid %d) sent no watchdog ping for "
                   "%.0f s: its loop is stuck; killing it",
                   k->slot, (int)k->pid, silent);
        } else if (s->limit_ping > 0 && silent > s->opts->time_limit + s->limit_ping) {
            wd_log(WD_LOG_ERROR,
                   "supervisor: child %d (pid %d) has been stuck for more than --time-limit "
                   "(%g s; no ping for %.1f s), likely in a task computing without yielding; "
                   "killing it: its messages go back to their queues once its heartbeat "
                   "expires",
                   k->slot, (int)k->pid, s->opts->time_limit, silent);
        } else {
            continue;
        }
        kill(k->pid, SIGKILL);
        k->last_heard = ev_now(loop); /* once: the kill's exit restarts it */
    }
    if (s->watchdog_usec > 0)
        wd_notify("WATCHDOG=1");
}

static int notify_socket(struct sup *s) {
    s->notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (s->notify_fd < 0)
        return -errno;
    int one = 1;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    snprintf(s->notify_name, sizeof s->notify_name, "@workerd-supervisor-%d-%lx", (int)getpid(),
             (unsigned long)ts.tv_nsec);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t len = strlen(s->notify_name);
    memcpy(sa.sun_path + 1, s->notify_name + 1, len - 1); /* sun_path[0] = 0: abstract */
    socklen_t salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
    if (setsockopt(s->notify_fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof one) < 0 ||
        bind(s->notify_fd, (struct sockaddr *)&sa, salen) < 0) {
        int err = errno;
        close(s->notify_fd);
        s->notify_fd = -1;
        return -err;
    }
    return 0;
}

static void stop_watchers(struct sup *s) {
    for (int i = 0; i < 4; i++)
        ev_signal_stop(s->loop, &s->sigs[i]);
    ev_child_stop(s->loop, &s->child_w);
    ev_io_stop(s->loop, &s->notify_w);
    ev_timer_stop(s->loop, &s->watchdog);
    for (int i = 0; i < s->n; i++)
        ev_timer_stop(s->loop, &s->kids[i].restart);
}

static void sup_free(struct sup *s) {
    stop_watchers(s);
    if (s->notify_fd >= 0)
        close(s->notify_fd);
    free(s->kids);
    free(s);
}

/* In the new child: shed everything of the supervisor and become a plain worker. */
static void become_child(struct sup *s, pid_t parent) {
    char usec[32], pid[32];
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) /* the supervisor died before the line above */
        _exit(0);
    setenv("NOTIFY_SOCKET", s->notify_name, 1);
    if (s->child_usec > 0) {
        snprintf(usec, sizeof usec, "%lld", (long long)s->child_usec);
        snprintf(pid, sizeof pid, "%d", (int)getpid());
        setenv("WATCHDOG_USEC", usec, 1);
        setenv("WATCHDOG_PID", pid, 1);
    } else {
        unsetenv("WATCHDOG_USEC");
        unsetenv("WATCHDOG_PID");
    }
    sup_free(s);
    ev_loop_fork(EV_DEFAULT);
}

/* Fork the child of slot k. Returns 0 in the parent, 1 in the child. */
static int spawn(struct sup *s, struct kid *k) {
    k->due = false;
    /* The child starts with the forwarded signals blocked: until its worker has its own
     * watchers (ev_signal_start unblocks each), a SIGTERM stays pending instead of killing
     * it with the default action, which would look like a crash. */
    sigset_t block, old;
    sigemptyset(&block);
    for (int i = 0; i < 4; i++)
        sigaddset(&block, forwarded[i]);
    sigprocmask(SIG_BLOCK, &block, &old);
    pid_t pid = fork();
    if (pid == 0)
        return 1;
    sigprocmask(SIG_SETMASK, &old, NULL);
    if (pid < 0) {
        wd_log(WD_LOG_ERROR, "supervisor: cannot fork child %d: %s; retrying in %g s", k->slot,
               strerror(errno), k->delay);
        ev_timer_set(&k->restart, k->delay, 0.);
        ev_timer_start(s->loop, &k->restart);
        return 0;
    }
    k->pid = pid;
    k->ready = false;
    k->started = k->last_heard = ev_now(s->loop);
    s->live++;
    wd_log(WD_LOG_INFO, "supervisor: started child %d (pid %d)", k->slot, (int)pid);
    return 0;
}

int wd_supervisor_run(const struct wd_options *opts, int *slot) {
    if (opts->http_host && opts->http_port && opts->http_port + opts->processes - 1 > 65535) {
        wd_log(WD_LOG_ERROR, "--http: ports %d..%d (one per process) go past 65535",
               opts->http_port, opts->http_port + opts->processes - 1);
        return 2;
    }
    struct sup *s = calloc(1, sizeof *s);
    if (s)
        s->kids = calloc((size_t)opts->processes, sizeof *s->kids);
    if (!s || !s->kids) {
        wd_log(WD_LOG_ERROR, "supervisor: out of memory");
        free(s);
        return 1;
    }
    s->opts = opts;
    s->n = opts->processes;
    s->notify_fd = -1;
    s->loop = ev_default_loop(0);
    int rc = notify_socket(s);
    if (rc < 0) {
        wd_log(WD_LOG_ERROR, "supervisor: cannot create the children's notify socket: %s",
               strerror(-rc));
        sup_free(s);
        return 1;
    }
    ev_child_init(&s->child_w, on_child, 0, 0);
    s->child_w.data = s;
    ev_child_start(s->loop, &s->child_w);
    for (int i = 0; i < 4; i++) {
        ev_signal_init(&s->sigs[i], on_signal, forwarded[i]);
        s->sigs[i].data = s;
        ev_signal_start(s->loop, &s->sigs[i]);
    }
    ev_io_init(&s->notify_w, on_notify, s->notify_fd, EV_READ);
    s->notify_w.data = s;
    ev_io_start(s->loop, &s->notify_w);
    s->watchdog_usec = wd_notify_watchdog_usec();
    if (s->watchdog_usec < 0)
        s->watchdog_usec = 0;
    s->limit_ping = limit_ping(opts);
    /* The children ping at half the interval they are given: half of systemd's, or
     * limit_ping, whichever is more often; so does this loop check them. */
    s->child_usec = s->watchdog_usec;
    if (s->limit_ping > 0 && (s->child_usec == 0 || s->child_usec > s->limit_ping * 2e6))
        s->child_usec = (int64_t)(s->limit_ping * 2e6);
    double half = s->child_usec > 0 ? (double)s->child_usec / 2e6 : 1.0;
    ev_timer_init(&s->watchdog, on_watchdog, half, half);
    s->watchdog.data = s;
    if (s->child_usec > 0)
        ev_timer_start(s->loop, &s->watchdog);
    for (int i = 0; i < s->n; i++) {
        struct kid *k = &s->kids[i];
        *k = (struct kid){.sup = s, .slot = i, .due = true, .delay = BACKOFF_FIRST};
        ev_timer_init(&k->restart, on_restart, 0., 0.);
        k->restart.data = k;
    }
    wd_log(WD_LOG_INFO, "supervisor: starting %d worker processes (pid %d)", s->n, (int)getpid());

    pid_t parent = getpid();
    for (;;) {
        for (int i = 0; i < s->n && !s->stopping; i++) {
            if (s->kids[i].due && spawn(s, &s->kids[i])) {
                *slot = i;
                become_child(s, parent);
                return -1;
            }
        }
        if (s->stopping && s->live == 0)
            break;
        ev_run(s->loop, 0);
    }
    int code = s->failed ? 1 : 0;
    wd_log(WD_LOG_INFO, "supervisor: every child has stopped; exiting %d", code);
    sup_free(s);
    return code;
}
