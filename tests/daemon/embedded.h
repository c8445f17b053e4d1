/*
 * embedded.h - a worker run inside a forked child of the test program, for the end-to-end
 * tests that need tasks of their own (registered in the child, so that no test task ever
 * exists in the workerd binary). The child's stdout and stderr go to the e2e_worker's
 * log, so e2e.h's log waits and signals work on it as on the real binary.
 *
 * Header-only (static functions): included by the daemon test programs that use it.
 */
#ifndef WORKERD_TESTS_EMBEDDED_H
#define WORKERD_TESTS_EMBEDDED_H

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "e2e.h"
#include "testlib.h"
#include "wd_log.h"
#include "wd_options.h"

/* In the child: die with the test, send stdio to log, and load workerd's options from
 * "-b <the test Redis at port>" and the NULL-terminated args (may be NULL) into *opts,
 * applying the log level. A bad option exits 2 with the message, as workerd does. */
static inline void embedded_child_setup(const char *log, int port, const char *const *args,
                                        struct wd_options *opts) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    int null = open("/dev/null", O_RDONLY);
    if (fd < 0 || null < 0)
        _exit(126);
    dup2(null, 0);
    dup2(fd, 1);
    dup2(fd, 2);
    signal(SIGPIPE, SIG_IGN);
    char *argv[64];
    int argc = 0;
    argv[argc++] = "workerd";
    argv[argc++] = "-b";
    argv[argc++] = (char *)e2e_url(port);
    for (int i = 0; args && args[i] && argc < 63; i++)
        argv[argc++] = (char *)args[i];
    argv[argc] = NULL;
    char err[1024];
    if (wd_options_load(opts, argc, argv, getenv, err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        _exit(2);
    }
    wd_log_set_level(opts->loglevel);
}

/* Fork a child that runs child(log, arg) (which must not return) with its log in a fresh
 * directory named after tag, and fill *w as e2e_worker_start does. */
static inline void embedded_start(e2e_worker *w, const char *tag,
                                  void (*child)(const char *log, void *arg), void *arg) {
    memset(w, 0, sizeof *w);
    w->dir = test_tmpdir(tag);
    w->log = malloc(strlen(w->dir) + 16);
    sprintf(w->log, "%s/worker.log", w->dir);
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        test__fail(__FILE__, __LINE__, "fork: %s", strerror(errno));
    if (pid == 0) {
        child(w->log, arg);
        _exit(127);
    }
    w->pid = pid;
    w->status = -1;
}

#endif
