/*
 * workerctl.c - workerctl's entry point: the command table, the help texts, and the
 * dispatch to the commands (ctl_call.c, ctl_info.c, ctl_admin.c, ctl_dead.c).
 *
 * workerctl is workerd's command-line client, as `celery call / inspect / purge` are
 * Celery's: it talks to the same Redis with plain synchronous hiredis and exits. It takes
 * workerd's connection settings (-b/--broker, --result-backend, --prefix, --result-expires,
 * --config FILE, and WORKERD_* in the environment), so pointing both at one config file is
 * enough. The shared options may come before the command or anywhere after it; they are
 * moved behind the command's name here and parsed with the command's own (ctl_parse).
 *
 * Exit codes are listed in ctl.h and in the help: 0 ok, 1 failed or not found, 2 usage,
 * 3 Redis unreachable, 4 --wait timed out.
 *
 * Runs on the main thread, single-threaded; no green runtime.
 */
#include "ctl.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "settings.h"

#define EXIT_HELP                                                                                  \
    "\n"                                                                                           \
    "Exit codes: 0 ok, 1 failed or not found, 2 bad usage, 3 cannot reach Redis,\n"                \
    "4 --wait timed out.\n"

static const ctl_command commands[] = {
    {"call", ctl_cmd_call, "send a task (and wait for its result)",
     "Usage: workerctl call TASK [ARG...] [--args JSON] [--kwargs JSON] [-q QUEUE]\n"
     "                      [--id ID] [--wait [SECONDS]]\n"
     "Send a task message to a queue and print its id.\n"
     "\n"
     "Each ARG is one positional argument: JSON when it parses as JSON (1, true,\n"
     "null, \"text\", [1,2], {\"a\":1}), a string otherwise: `call echo 1 two` sends\n"
     "[1,\"two\"]. A word such as -5 is an argument; put others after -- (call echo -- -x).\n"
     "\n"
     "  --args=JSON         all positional arguments as one JSON array (not with ARGs)\n"
     "  --kwargs=JSON       keyword arguments, a JSON object\n"
     "  -q, --queue=QUEUE   the queue to send to (default: default)\n"
     "  --id=ID             the task id (default: a new UUID)\n"
     "  -w, --wait[=SECONDS]\n"
     "                      wait for the final result (SUCCESS, FAILURE or REVOKED) and\n"
     "                      print it; no SECONDS waits without limit. A number right\n"
     "                      after --wait is its SECONDS, not a task argument.\n"
     "\n"
     "With --wait the exit code is 0 for SUCCESS, 1 for FAILURE or REVOKED, 4 when no\n"
     "final result came in time (the task may still run).\n",
     false},
    {"result", ctl_cmd_result, "show a task's result",
     "Usage: workerctl result ID [--wait [SECONDS]]\n"
     "Print the stored result of a task. The exit code is 0 for SUCCESS (and for a\n"
     "task still running, STARTED), 1 for FAILURE, REVOKED or no result.\n"
     "\n"
     "  -w, --wait[=SECONDS]  wait for a final result; no SECONDS waits without limit;\n"
     "                        exit 4 when none came in time\n",
     false},
    {"workers", ctl_cmd_workers, "list the workers, alive or dead",
     "Usage: workerctl workers\n"
     "List every registered worker: alive while its heartbeat key exists, dead when\n"
     "it stopped without unregistering (another worker will recover its messages),\n"
     "with its pool, concurrency, the messages it holds, uptime, version and queues.\n",
     false},
    {"inspect", ctl_cmd_inspect, "list the messages the workers hold",
     "Usage: workerctl inspect\n"
     "List the messages in flight, per worker: delivery tag, queue, id, task.\n",
     false},
    {"queues", ctl_cmd_queues, "pending messages per queue",
     "Usage: workerctl queues\n"
     "List the queues (every non-empty queue and every queue a worker consumes) with\n"
     "their pending messages and live consumers, and the number of dead letters.\n",
     false},
    {"stats", ctl_cmd_stats, "totals: queues, pending, in flight, workers, dead letters",
     "Usage: workerctl stats\n"
     "Print totals: queues, pending and in-flight messages, live and dead workers,\n"
     "dead letters.\n",
     false},
    {"purge", ctl_cmd_purge, "delete every pending message of a queue",
     "Usage: workerctl purge QUEUE --yes\n"
     "Delete the queue's pending messages and print how many were deleted. Without\n"
     "--yes it only says how many it would delete (and exits 2). Messages in flight\n"
     "are not touched.\n"
     "\n"
     "  -y, --yes   really delete\n",
     false},
    {"pause", ctl_cmd_pause, "stop every worker taking from a queue",
     "Usage: workerctl pause QUEUE\n"
     "Add QUEUE to PREFIX:paused: from their next fetch no worker takes its messages;\n"
     "they stay queued (producers can go on adding) until `workerctl resume QUEUE`.\n"
     "Tasks already running finish. QUEUE may be a Celery queue, as =NAME. With\n"
     "--json: queue, paused (true), changed (false when it was paused already).\n",
     false},
    {"resume", ctl_cmd_resume, "let the workers take from a paused queue again",
     "Usage: workerctl resume QUEUE\n"
     "Remove QUEUE from PREFIX:paused: the workers take from it again within about\n"
     "two seconds, oldest message first. With --json: queue, paused (false), changed\n"
     "(false when it was not paused).\n",
     false},
    {"paused", ctl_cmd_paused, "list the paused queues",
     "Usage: workerctl paused\n"
     "List the paused queues, one a line (--json: an array of names).\n",
     false},
    {"revoke", ctl_cmd_revoke, "revoke tasks: never run them, or stop them (--terminate)",
     "Usage: workerctl revoke [--terminate] ID...\n"
     "Revoke tasks for --result-expires seconds (PREFIX:revoked:ID, PREFIX:revoked;\n"
     "kept in Redis, so it outlives worker restarts), take their messages out of the\n"
     "queues if they are still pending and store a REVOKED result for them, and say\n"
     "which workers hold them in flight. A worker that takes a message with a revoked\n"
     "id later (from a queue, once it is due, after a redelivery) does not run it:\n"
     "its result is REVOKED, error TaskRevokedError \"revoked\". A task already\n"
     "running runs on, unless:\n"
     "\n"
     "  --terminate   also stop it where it runs: every worker hears of it at once\n"
     "                (the stream PREFIX:control) and the one running it kills it; its\n"
     "                result is REVOKED, error TaskRevokedError \"terminated\"\n"
     "\n"
     "With --json, one object per id (an array of them for several ids): id,\n"
     "removed, queues, result (a REVOKED result was stored), running_on (the workers\n"
     "holding it), terminated (--terminate was given).\n",
     false},
    {"dead", ctl_cmd_dead, "list, requeue or drop dead letters",
     "Usage: workerctl dead list [--limit N]\n"
     "       workerctl dead requeue (--all | INDEX...)\n"
     "       workerctl dead drop (--all | INDEX...)\n"
     "Dead letters are messages that could not be run (invalid, unknown task, poison\n"
     "pills). INDEX is the number `dead list` shows, 0 being the newest.\n"
     "\n"
     "  list      show the newest entries: index, age, queue, id, reason\n"
     "            -n, --limit=N   at most N entries (default 50)\n"
     "  requeue   push the entries' original messages back to their queues (a poison\n"
     "            pill's redelivery count starts over) and remove the entries; an\n"
     "            entry whose message was cut when it was stored cannot be requeued\n"
     "  drop      delete the entries\n"
     "            -a, --all       every entry (requeue: oldest first)\n",
     true},
    {"rate-limit", ctl_cmd_rate_limit, "list, set or remove the tasks' rate limits",
     "Usage: workerctl rate-limit [TASK (RATE | off)]\n"
     "Rate limits apply over ALL workers of the Redis (PREFIX:rate_limits). With no\n"
     "argument, list them. TASK RATE sets TASK's limit (RATE: a number, fractions\n"
     "allowed, '/' and s, m or h, e.g. 100/s, 10/m, 0.5/h); TASK off removes it. Every\n"
     "worker applies the change from its next message of TASK (within a second for a\n"
     "task that had no limit). A worker started with --rate-limit for TASK writes its\n"
     "own value again when it starts.\n",
     false},
    {"crawl", ctl_cmd_crawl, "show an http.scrape crawl's progress",
     "Usage: workerctl crawl ID\n"
     "Show the crawl ID of http.scrape tasks with follow (ID: the root message's id, or\n"
     "its kwarg crawl): pages done (their task succeeded), failed (any other final\n"
     "outcome: a FAILURE, a time limit, revoked, expired, dead-lettered), pending\n"
     "(enqueued and not ended yet: waiting, running, or waiting for a retry), enqueued\n"
     "(the root included) and max (its max_pages); \"(finished)\" when nothing is\n"
     "pending. Exit 1 when Redis has no such crawl (it never was, or its keys expired, 7\n"
     "days after its last page).\n"
     "\n"
     "With --json: {crawl, done, failed, pending, enqueued, max, finished}.\n",
     false},
    {"beat", ctl_cmd_beat, "list the periodic tasks of the beat file, last and next runs",
     "Usage: workerctl beat --beat FILE\n"
     "Read the beat file the workers run (--beat FILE, or WORKERD_BEAT in the\n"
     "environment or the --config file) and list each entry: name, schedule, catch_up,\n"
     "queue, the tick it last fired (from PREFIX:beat; - when never) and its next tick\n"
     "after the Redis server's clock now. A file that does not load is refused with the\n"
     "entry and field named (exit 2).\n"
     "\n"
     "With --json, an array of objects: name, schedule, catch_up, queue, last_fired and\n"
     "next (unix seconds or null), last_id (beat:NAME:TIME or null).\n",
     false},
};

#define NCOMMANDS (sizeof commands / sizeof *commands)

void ctl_command_help(const ctl_command *command, FILE *out) {
    fputs(command->help, out);
    ctl_shared_help(out);
    fputs(EXIT_HELP, out);
}

static void usage(FILE *out) {
    fprintf(out, "Usage: workerctl [OPTION]... COMMAND [ARG]...\n"
                 "Send tasks to workerd and look at its queues, workers and results.\n"
                 "\n"
                 "Commands:\n");
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].synopsis);
    fprintf(out, "\n'workerctl COMMAND --help' describes a command.\n");
    ctl_shared_help(out);
    fprintf(out, "  -V, --version             print the version\n" EXIT_HELP);
}

int main(int argc, char **argv) {
    signal(SIGPIPE, SIG_IGN);
    ctl c = {0};

    /* The options before the command: find the command, act on --help and --version. */
    int i = 1;
    for (; i < argc && argv[i][0] == '-' && argv[i][1] != '\0'; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return CTL_OK;
        }
        if (strcmp(argv[i], "--version") == 0 || strcmp(argv[i], "-V") == 0) {
            printf("workerctl %s\n", settings_version());
            return CTL_OK;
        }
        if (ctl_shared_takes_value(argv[i]))
            i++;
    }
    if (i >= argc)
        return ctl_usage(&c, "no command given");
    if (strcmp(argv[i], "help") == 0) { /* `workerctl help [COMMAND]` */
        if (i + 1 >= argc) {
            usage(stdout);
            return CTL_OK;
        }
        argv[i] = argv[i + 1];
        argv[i + 1] = "--help";
    }
    for (size_t k = 0; k < NCOMMANDS; k++) {
        if (strcmp(argv[i], commands[k].name) != 0)
            continue;
        c.command = &commands[k];
        /* The command sees: its name (and subcommand), the options given before it, then
         * the rest. */
        char **args = calloc((size_t)argc + 1, sizeof *args);
        if (args == NULL)
            return ctl_error(CTL_FAIL, "out of memory");
        int n = 0, rest = i + 1;
        args[n++] = argv[i];
        if (commands[k].subcommands && rest < argc && argv[rest][0] != '-')
            args[n++] = argv[rest++];
        for (int j = 1; j < i; j++)
            args[n++] = argv[j];
        for (int j = rest; j < argc; j++)
            args[n++] = argv[j];
        int code = commands[k].run(&c, n, args);
        free(args);
        fflush(stdout);
        ctl_free(&c);
        return code == CTL_DONE ? CTL_OK : code;
    }
    return ctl_usage(&c, "unknown command '%s'", argv[i]);
}
