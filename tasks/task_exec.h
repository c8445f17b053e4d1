/*
 * task_exec.h - tasks run by external programs, in any language (--exec-task NAME=PATH).
 *
 * The protocol, for the program at PATH (README.md "Your own tasks: any program"):
 *
 *   - It is started without a shell, with argv [PATH], in workerd's working directory, in
 *     a process group of its own, with stdin, stdout and stderr on pipes and no other
 *     descriptor, every standard signal at its default, and a minimal environment:
 *     PATH=/usr/local/bin:/usr/bin:/bin, LANG=C.UTF-8, workerd's HOME when it has one, and
 *     what --exec-env adds (which may replace those three). Nothing else of workerd's
 *     environment is passed on: it may hold the broker's password.
 *   - stdin carries one line, the message as a JSON object {"id", "task", "args",
 *     "kwargs", "retries"} and a newline, then an end of file.
 *   - Exit status 0: the task succeeded, and stdout holds its result, one JSON value of
 *     any type (nothing at all, or only blanks, means null). stdout that is not JSON, or
 *     larger than --exec-max-output (the program is then killed at once), is a FAILURE
 *     "BadOutput"; stderr is ignored.
 *   - Exit status TASK_EXEC_RETRY_STATUS (75, sysexits' EX_TEMPFAIL): the program asks
 *     for the task to be tried again later: a retry (TASK_ERETRY, task.h) after the
 *     message's backoff while it has retries left, then a FAILURE "RetryRequested"; the
 *     message says so and carries the stderr tail, as for ExecError.
 *   - Any other status, or death by a signal: FAILURE "ExecError", whose message says how
 *     it ended and carries the last 4 KiB of its stderr.
 *   - The task ends when the program exits: whatever it left running in its process group
 *     is killed, and output written after the exit is not read.
 *   - Time limits (task.h "time limits"). The soft limit sends the process group SIGTERM
 *     and lets the program answer: exiting 0 with a (partial) result is a SUCCESS, exit 75
 *     a retry request, anything else a FAILURE SoftTimeLimitExceeded. The hard limit, and
 *     a shutdown that stops the task (cold, or warm past --shutdown-timeout), stop the
 *     program: SIGTERM to the group, then SIGKILL after TASK_EXEC_GRACE seconds; the task
 *     returns once the program is gone (the daemon then stores TimeLimitExceeded, or puts
 *     the message back), so its slot is held until then.
 *
 * Each running task holds one child and three descriptors; -c bounds both.
 *
 * Registration is start-up work (task.h: the registry is not thread-safe); the task runs
 * on a greenlet of a hub on libev's default loop (green_proc.h), as the daemon's do.
 */
#ifndef WORKERD_TASK_EXEC_H
#define WORKERD_TASK_EXEC_H

#include <stdbool.h>
#include <stddef.h>

/* The exit status that asks for a retry (sysexits.h's EX_TEMPFAIL). */
#define TASK_EXEC_RETRY_STATUS 75

/* Seconds between SIGTERM and SIGKILL when the hard limit or a shutdown stops a program
 * (the daemon's repeated kills do not shorten it). */
#define TASK_EXEC_GRACE 5.0

/* --exec-max-output's default: 10 MiB of stdout. */
#define TASK_EXEC_DEFAULT_MAX_OUTPUT ((size_t)10 << 20)

/* What --exec-task and --exec-env gave, already split into entries. */
typedef struct task_exec_config {
    char *const *tasks; /* "NAME=PATH" entries */
    size_t ntasks;
    char *const *env; /* "KEY=VALUE" entries */
    size_t nenv;
    size_t max_output; /* stdout bytes kept; 0: TASK_EXEC_DEFAULT_MAX_OUTPUT */
} task_exec_config;

/* Check one --exec-task entry, NAME=PATH: NAME a valid task name (task.h), PATH absolute,
 * an existing regular file that this process may execute. Returns 0, or -1 with a
 * one-line reason in why ("'/x' does not exist"). Does file-system look-ups; never
 * yields. */
int task_exec_check_task(const char *entry, char *why, size_t whylen);

/* Check one --exec-env entry: KEY=VALUE with KEY letters, digits and '_', not starting
 * with a digit. Returns 0, or -1 with a reason in why. Pure. */
int task_exec_check_env(const char *entry, char *why, size_t whylen);

/* Check a whole configuration (each entry as above) against the registry: no NAME twice,
 * none registered already by anything but an earlier task_exec_register (a built-in, a
 * plugin), no KEY twice. For start-up, before task_exec_register, and for a reload, which
 * must not accept what the restart would refuse. Returns 0, or -1 with a reason in why
 * that starts with the option at fault ("--exec-task: task 'echo' already exists ..."). */
int task_exec_check(const task_exec_config *cfg, char *why, size_t whylen);

/* Register the tasks of cfg (checked first as task_exec_check does) and fix the programs'
 * environment and output cap. Copies what it keeps. Start-up only, once. Returns 0,
 * -EINVAL (why says what is wrong), -EEXIST (a name is taken; why says which), -ENOMEM. */
int task_exec_register(const task_exec_config *cfg, char *why, size_t whylen);

/* Forget the configuration (tests; program exit), after task_registry_clear. */
void task_exec_clear(void);

#endif
