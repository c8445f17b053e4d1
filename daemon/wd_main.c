/*
 * wd_main.c - workerd's entry point: read the settings, then run one green worker on the
 * main thread's hub until it shuts down; or, with --processes N (or a recycling limit),
 * the supervisor (wd_supervisor.h), whose children come back here to be that worker.
 *
 * The tasks are registered first, in the main process: the built-in ones, then those of
 * every --load plugin in order (task_loader.h), then the --exec-task programs
 * (task_exec.h), so that --list-tasks can print them and the supervisor's children inherit
 * them, loaded once, and a name taken twice is refused once, not by every child.
 *
 * Exit codes: 0 after a clean shutdown (or --help / --version / --list-tasks), 1 when the
 * worker could not start or could not put its messages back, 2 for bad options, a plugin
 * that cannot be loaded, an --exec-task name already taken or a --beat file that does not
 * load (a one-line message on stderr says which: for the beat file, the entry and field).
 */
#include "beat_file.h"
#include "green.h"
#include "green_http.h"
#include "task.h"
#include "task_exec.h"
#include "task_loader.h"
#include "wd_log.h"
#include "wd_options.h"
#include "wd_supervisor.h"
#include "wd_worker.h"

#include <errno.h>
#include <signal.h>
#include <unistd.h>
#include <stdio.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Whether the --beat file at path loads; err says why not ("workerd: --beat: FILE: entry
 * 2 ("x"): field "cron": ..."). The worker reads it again itself; this check is what makes
 * a bad file a refused start (exit 2) or a refused reload rather than a worker that fails
 * later. */
static bool beat_file_ok(const char *path, char *err, size_t errlen) {
    beat_schedule *s;
    char why[900];
    if (beat_schedule_load(path, (double)time(NULL), &s, why, sizeof why) != 0) {
        snprintf(err, errlen, "workerd: --beat: %s", why);
        return false;
    }
    beat_schedule_free(s);
    return true;
}

struct run {
    const struct wd_options *opts;
    int argc;
    char **argv;
    bool supervised; /* a child of --processes: its supervisor owns restarts */
    int code;
};

/* The external-program tasks as the options give them. */
static task_exec_config exec_config(const struct wd_options *o) {
    return (task_exec_config){
        .tasks = o->exec_tasks,
        .ntasks = o->nexec_tasks,
        .env = o->exec_env,
        .nenv = o->nexec_env,
        .max_output = o->exec_max_output,
    };
}

/* SIGHUP: read the settings again, the same way as at start. The log level (the one
 * SETTINGS_LIVE option) and the log file apply at once. A change to any other option (each
 * is marked SETTINGS_RESTART in the settings table: what the running worker is built on) is
 * not applied halfway: the worker shuts down warm and main execs itself with the same
 * arguments, so it starts again on the new settings as the same process (systemd's MAINPID
 * stays). A supervised child leaves that to its supervisor. A bad new configuration is
 * refused and the running one kept. */
static bool reload(void *arg) {
    struct run *r = arg;
    struct wd_options fresh;
    char err[1024];
    if (wd_options_load(&fresh, r->argc, r->argv, getenv, err, sizeof err) != 0) {
        wd_log(WD_LOG_ERROR, "reload refused, keeping the running settings: %s", err);
        return false;
    }
    /* Another beat file is read by the restart: refuse it now if it would not start. (The
     * same file's new contents are the worker's to reload, live: wd_beat_reload.) */
    bool new_beat = fresh.beat && (!r->opts->beat || strcmp(fresh.beat, r->opts->beat) != 0);
    if (new_beat && !beat_file_ok(fresh.beat, err, sizeof err)) {
        wd_log(WD_LOG_ERROR, "reload refused, keeping the running settings: %s", err);
        wd_options_free(&fresh);
        return false;
    }
    task_exec_config exec = exec_config(&fresh);
    if (task_exec_check(&exec, err, sizeof err) != 0) {
        wd_log(WD_LOG_ERROR, "reload refused, keeping the running settings: workerd: %s", err);
        wd_options_free(&fresh);
        return false;
    }
    wd_log_set_level(fresh.loglevel);
    wd_log_reopen();
    const char *changed = wd_options_restart_needed(r->opts, &fresh);
    bool restart = changed != NULL;
    if (restart && r->supervised) {
        wd_log(WD_LOG_WARNING,
               "reload: --%s changed; changes beyond the log level take effect when the "
               "supervisor restarts this child",
               changed);
        restart = false;
    }
    if (restart)
        wd_log(WD_LOG_INFO,
               "reloaded the configuration: log level %s; the rest needs a restart (--%s "
               "changed)",
               wd_log_level_name(fresh.loglevel), changed);
    else
        wd_log(WD_LOG_INFO, "reloaded the configuration: log level %s",
               wd_log_level_name(fresh.loglevel));
    wd_options_free(&fresh);
    return restart;
}

/* The built-in tasks, the plugins' (--load) and the external programs (--exec-task): 0,
 * or the exit code after a one-line message. */
static int register_tasks(const struct wd_options *opts) {
    task_http_limits http = {.deny = opts->http_deny,
                             .allow = opts->http_allow,
                             .methods = opts->http_methods,
                             .max_result = opts->max_result_size};
    if (green_http_global_init() != 0 || task_register_builtins(&http) != 0) {
        wd_log(WD_LOG_ERROR, "cannot initialise libcurl or the built-in tasks");
        return 1;
    }
    for (size_t i = 0; i < opts->nload; i++) {
        char why[1024];
        if (task_plugin_load(opts->load[i], why, sizeof why) != 0) {
            fprintf(stderr, "workerd: plugin %s: %s\n", opts->load[i], why);
            return 2;
        }
    }
    char why[1024];
    task_exec_config exec = exec_config(opts);
    int rc = task_exec_register(&exec, why, sizeof why);
    if (rc != 0) {
        fprintf(stderr, "workerd: %s\n", why);
        return rc == -ENOMEM ? 1 : 2;
    }
    return 0;
}

static int name_cmp(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* --list-tasks: every registered name and the daemon's own workflow tasks (wd_canvas.h),
 * one per line, sorted. */
static int list_tasks(void) {
    static const char *const canvas[] = {"chord", "group"};
    size_t nreg = task_registry_names(NULL, 0), n = nreg + 2;
    const char **names = calloc(n, sizeof *names);
    if (names == NULL)
        return 1;
    task_registry_names(names, nreg);
    names[nreg] = canvas[0];
    names[nreg + 1] = canvas[1];
    qsort(names, n, sizeof *names, name_cmp);
    for (size_t i = 0; i < n; i++)
        printf("%s\n", names[i]);
    free(names);
    return fflush(stdout) == 0 ? 0 : 1;
}

static void *worker_greenlet(void *arg) {
    struct run *r = arg;
    r->code = wd_worker_run(r->opts, reload, r);
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
    if (opts.beat && !opts.list_tasks && !beat_file_ok(opts.beat, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        wd_options_free(&opts);
        return 2;
    }
    if ((rc = register_tasks(&opts)) != 0 || opts.list_tasks) {
        if (rc == 0)
            rc = list_tasks();
        wd_options_free(&opts);
        return rc;
    }
    bool supervised = false;
    if (wd_supervisor_wanted(&opts)) {
        /* The parent supervises until every child is gone; each child comes back here
         * and carries on as an ordinary worker, child k serving --http on PORT+k. */
        int slot = 0, code = wd_supervisor_run(&opts, &slot);
        supervised = true;
        if (code >= 0) {
            wd_options_free(&opts);
            return code;
        }
        opts.http_base_port = opts.http_port;
        if (opts.http_host && opts.http_port)
            opts.http_port += slot;
    }
    struct run r = {&opts, argc, argv, supervised, 1};
    rc = green_run(NULL, NULL, worker_greenlet, &r, NULL);
    if (rc != 0)
        wd_log(WD_LOG_ERROR, "cannot start the green runtime: error %d", rc);
    task_http_cleanup();
    green_http_global_cleanup();
    wd_options_free(&opts);
    if (rc == 0 && r.code == WD_WORKER_RESTART) {
        /* Start again as the same process (systemd's MAINPID stays), reading the settings
         * afresh. Everything was finished or put back by the warm shutdown. */
        wd_log(WD_LOG_INFO, "restarting with the new settings");
        execv("/proc/self/exe", argv);
        wd_log(WD_LOG_ERROR, "cannot restart (%s): exiting; start workerd again", strerror(errno));
        return 1;
    }
    return rc != 0 ? 1 : r.code;
}
