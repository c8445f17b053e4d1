/*
 * wd_main.c - workerd's entry point: read the settings, then run one green worker on the
 * main thread's hub until it shuts down.
 *
 * Exit codes: 0 after a clean shutdown (or --help / --version), 1 when the worker could
 * not start or could not put its messages back, 2 for bad options (a one-line message on
 * stderr says which).
 */
#include "green.h"
#include "green_http.h"
#include "task.h"
#include "wd_log.h"
#include "wd_options.h"
#include "wd_worker.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

struct run {
    const struct wd_options *opts;
    int code;
};

static void *worker_greenlet(void *arg) {
    struct run *r = arg;
    r->code = wd_worker_run(r->opts);
    return NULL;
}

int main(int argc, char **argv) {
    struct wd_options opts;
    char err[1024];
    signal(SIGPIPE, SIG_IGN); /* a write to a closed socket must be an error, not a death */
    int rc = wd_options_load(&opts, argc, argv, getenv, err, sizeof err);
    if (rc == 1)
        return 0;
    if (rc != 0) {
        fprintf(stderr, "%s\n", err);
        return 2;
    }
    wd_log_set_level(opts.loglevel);
    if (green_http_global_init() != 0 || task_register_builtins(NULL) != 0) {
        wd_log(WD_LOG_ERROR, "cannot initialise libcurl or the built-in tasks");
        wd_options_free(&opts);
        return 1;
    }
    struct run r = {&opts, 1};
    rc = green_run(NULL, NULL, worker_greenlet, &r, NULL);
    if (rc != 0)
        wd_log(WD_LOG_ERROR, "cannot start the green runtime: error %d", rc);
    task_http_cleanup();
    green_http_global_cleanup();
    wd_options_free(&opts);
    return rc != 0 ? 1 : r.code;
}
