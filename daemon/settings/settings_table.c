/*
 * settings_table.c - every option of workerd and workerctl, once (settings.h).
 *
 * Options take Celery's names where Celery has one (-P/--pool, -c/--concurrency,
 * -Q/--queues, -b/--broker, --result-backend, -n/--hostname, -l/--loglevel). Each option
 * FOO-BAR is also the environment variable WORKERD_FOO_BAR and the config-file key of the
 * same name. The order here is the order of workerd --help.
 *
 * apply says what a reload (SIGHUP) does with a changed value: only the log level can be
 * changed under a running worker; everything else is what the worker was built on (its
 * connections, its pool, its key names, its HTTP endpoint, its processes), so a change to
 * any of them restarts it gracefully in place. A new option must say which it is.
 *
 * Plain data; the version, which CMake passes in, lives here too.
 */
#include "settings.h"

#include "broker_keys.h"
#include "broker_msg.h"
#include "wd_shutdown.h"

/* A numeric constant as the text of a default. */
#define TEXT_OF_(x) #x
#define TEXT_OF(x) TEXT_OF_(x)

#ifndef WORKERD_VERSION
#define WORKERD_VERSION "0.0.0"
#endif

const char *settings_version(void) {
    return WORKERD_VERSION;
}

static const struct settings_choice pools[] = {
    {"green", NULL},
    {"gevent", "green"}, /* Celery's name for the same thing */
    {"solo", NULL},
    {NULL, NULL},
};

/* wd_log.h's level names (wd_log_level_parse reads the name a choice means). */
static const struct settings_choice protocols[] = {
    {"workerd", NULL},
    {"celery", NULL},
    {NULL, NULL},
};

static const struct settings_choice levels[] = {
    {"debug", NULL}, {"info", NULL},      {"warning", NULL},
    {"error", NULL}, {"warn", "warning"}, {NULL, NULL},
};

/* One entry per option, laid out alike: names, variable, placeholder, default, then the
 * kind, what a change needs, the range or choices, and the help. */
/* clang-format off */
const struct settings_opt settings_opts[SETTINGS_COUNT] = {
    [SETTINGS_POOL] =
        {"pool", 'P', "WORKERD_POOL", "POOL", "green", .kind = SETTINGS_KIND_CHOICE,
         .apply = SETTINGS_RESTART, .choices = pools, .noun = "pool", .choose = "green or solo",
         .help = "green: run up to --concurrency tasks at once, each on a green thread.\n"
                 "solo: run one task at a time on the same runtime (--concurrency is ignored).\n"
                 "gevent is accepted for green."},
    [SETTINGS_CONCURRENCY] =
        {"concurrency", 'c', "WORKERD_CONCURRENCY", "N", "100", .kind = SETTINGS_KIND_NUMBER,
         .apply = SETTINGS_RESTART, .lo = 1, .hi = 1000000,
         .help = "Tasks in flight at once (1..1000000). Celery defaults to the number of CPUs,\n"
                 "which suits processes doing CPU work; green tasks mostly wait on I/O, so that\n"
                 "would leave this process idle. 100 keeps memory and the load on the services\n"
                 "tasks call modest; raise it (thousands are fine) for I/O-bound work."},
    [SETTINGS_QUEUES] =
        {"queues", 'Q', "WORKERD_QUEUES", "Q1,Q2", "default", .kind = SETTINGS_KIND_QUEUES,
         .apply = SETTINGS_RESTART,
         .help = "Queues to consume, comma-separated, in strict priority order: a queue is\n"
                 "served only while the ones before it are empty."},
    [SETTINGS_PROTOCOL] =
        {"protocol", 0, "WORKERD_PROTOCOL", "PROTOCOL", "workerd", .kind = SETTINGS_KIND_CHOICE,
         .apply = SETTINGS_RESTART, .choices = protocols, .noun = "protocol",
         .choose = "workerd or celery",
         .help = "The message format of the -Q queues. workerd: workerd's own JSON on\n"
                 "PREFIX:queue:NAME. celery: Celery's message protocol 2 on the list NAME, as\n"
                 "kombu's Redis transport keeps it (and its priority lists), results as\n"
                 "Celery's Redis backend stores them (see \"Coming from Celery\")."},
    [SETTINGS_CELERY_QUEUES] =
        {"celery-queues", 0, "WORKERD_CELERY_QUEUES", "Q1,Q2", NULL, .kind = SETTINGS_KIND_QUEUES,
         .apply = SETTINGS_RESTART,
         .help = "Celery queues to consume too, after the -Q queues, whatever --protocol says:\n"
                 "-Q default --celery-queues celery serves both formats in one worker."},
    [SETTINGS_CELERY_TASK] =
        {"celery-task", 0, "WORKERD_CELERY_TASK", "NAME=TASK", NULL, .repeat = true,
         .kind = SETTINGS_KIND_LIST, .apply = SETTINGS_RESTART,
         .help = "Run the Celery task NAME as workerd's TASK (proj.tasks.fetch=http.get);\n"
                 "workerd.TASK needs no entry. Repeat it, or separate entries with commas."},
    [SETTINGS_CELERY_RESULT_EXTENDED] =
        {"celery-result-extended", 0, "WORKERD_CELERY_RESULT_EXTENDED", NULL, "off",
         .kind = SETTINGS_KIND_FLAG, .apply = SETTINGS_RESTART,
         .help = "Celery's result_extended: Celery results also hold name, args, kwargs,\n"
                 "worker, retries and queue."},
    [SETTINGS_CELERY_TRACK_STARTED] =
        {"celery-track-started", 0, "WORKERD_CELERY_TRACK_STARTED", NULL, "off",
         .kind = SETTINGS_KIND_FLAG, .apply = SETTINGS_RESTART,
         .help = "Celery's task_track_started: store STARTED for Celery tasks that are still\n"
                 "running when the worker's next batch of writes goes out."},
    [SETTINGS_BROKER] =
        {"broker", 'b', "WORKERD_BROKER", "URL", "redis://127.0.0.1:6379/0",
         .kind = SETTINGS_KIND_URL, .apply = SETTINGS_RESTART,
         .help = "The Redis holding the queues: redis://[user:password@]host[:port][/db]\n"
                 "or unix://[user:password@]/path/to/redis.sock[?db=N]; user and password\n"
                 "may be percent-encoded (%40 for @)."},
    [SETTINGS_RESULT_BACKEND] =
        {"result-backend", 0, "WORKERD_RESULT_BACKEND", "URL", NULL, .kind = SETTINGS_KIND_URL,
         .apply = SETTINGS_RESTART,
         .help = "The Redis storing results (same forms as --broker). Default: the broker."},
    [SETTINGS_PREFIX] =
        {"prefix", 0, "WORKERD_PREFIX", "PREFIX", BROKER_PREFIX_DEFAULT,
         .kind = SETTINGS_KIND_PREFIX, .apply = SETTINGS_RESTART,
         .help = "Prefix of every Redis key (PREFIX:queue:NAME, PREFIX:result:ID, ...)."},
    [SETTINGS_HOSTNAME] =
        {"hostname", 'n', "WORKERD_HOSTNAME", "NAME", "%h", .deflt_in_words = true,
         .kind = SETTINGS_KIND_HOSTNAME, .apply = SETTINGS_RESTART,
         .help = "This worker's node name; %h is the host name, %n its first label, %d the\n"
                 "rest (the domain), %% a percent sign. Default: the host name."},
    [SETTINGS_PREFETCH] =
        {"prefetch", 0, "WORKERD_PREFETCH", "N", NULL, .kind = SETTINGS_KIND_NUMBER,
         .apply = SETTINGS_RESTART, .lo = 1, .hi = 1000000,
         .help = "Most messages taken from Redis in one fetch (1..1000000); a fetch never\n"
                 "takes more than the free slots. Default: the concurrency."},
    [SETTINGS_RESULT_EXPIRES] =
        {"result-expires", 0, "WORKERD_RESULT_EXPIRES", "SECONDS", "86400",
         .kind = SETTINGS_KIND_NUMBER, .apply = SETTINGS_RESTART, .lo = 0, .hi = 315360000,
         .help = "How long a result is kept in Redis; 0 keeps it forever."},
    [SETTINGS_SHUTDOWN_TIMEOUT] =
        {"shutdown-timeout", 0, "WORKERD_SHUTDOWN_TIMEOUT", "SECONDS",
         TEXT_OF(WD_SHUTDOWN_TIMEOUT_DEFAULT), .kind = SETTINGS_KIND_NUMBER,
         .apply = SETTINGS_RESTART, .lo = 0, .hi = 86400,
         .help = "On SIGTERM, how long running tasks may take to finish before the\n"
                 "unfinished ones are put back on their queues."},
    [SETTINGS_LOGLEVEL] =
        {"loglevel", 'l', "WORKERD_LOGLEVEL", "LEVEL", "info", .kind = SETTINGS_KIND_CHOICE,
         .apply = SETTINGS_LIVE, .choices = levels, .noun = "log level",
         .choose = "debug, info, warning or error",
         .help = "debug, info, warning or error (any case)."},
    [SETTINGS_MAX_MESSAGE_SIZE] =
        {"max-message-size", 0, "WORKERD_MAX_MESSAGE_SIZE", "BYTES", "1M",
         .kind = SETTINGS_KIND_SIZE, .apply = SETTINGS_RESTART, .lo = 1024, .hi = 512L << 20,
         .help = "Largest task message accepted (a K, M or G suffix multiplies by 1024,\n"
                 "1024^2, 1024^3); a larger one goes to the dead-letter list."},
    [SETTINGS_MAX_RESULT_SIZE] =
        {"max-result-size", 0, "WORKERD_MAX_RESULT_SIZE", "BYTES", "16M",
         .kind = SETTINGS_KIND_SIZE, .apply = SETTINGS_RESTART, .lo = 1024, .hi = 256L << 20,
         .help = "Largest result stored, as JSON (K, M, G suffixes as above, at most 256M).\n"
                 "A task whose result would be larger fails with ResultTooLarge, stored\n"
                 "small. The default keeps a worker's memory per task bounded and results\n"
                 "well under Redis's 512 MB proto-max-bulk-len and under the 32 MB at which\n"
                 "Redis drops a subscriber waiting for a result."},
    [SETTINGS_HEARTBEAT] =
        {"heartbeat", 0, "WORKERD_HEARTBEAT", "SECONDS", "5", .kind = SETTINGS_KIND_NUMBER,
         .apply = SETTINGS_RESTART, .lo = 1, .hi = 3600,
         .help = "Seconds between heartbeats (1..3600). A worker silent for three heartbeats\n"
                 "is dead, and its unacknowledged messages go back to their queues."},
    [SETTINGS_MAX_REDELIVERIES] =
        {"max-redeliveries", 0, "WORKERD_MAX_REDELIVERIES", "N", "5",
         .kind = SETTINGS_KIND_NUMBER, .apply = SETTINGS_RESTART, .lo = 0, .hi = 1000,
         .help = "A message redelivered more often than this (its workers keep dying on it)\n"
                 "goes to the dead-letter list instead (0..1000)."},
    [SETTINGS_SOFT_TIME_LIMIT] =
        {"soft-time-limit", 0, "WORKERD_SOFT_TIME_LIMIT", "SECONDS", "0",
         .kind = SETTINGS_KIND_SECONDS, .apply = SETTINGS_RESTART,
         .hi = (long)BROKER_TIME_LIMIT_MAX,
         .help = "A task's soft time limit when its message sets none (fractions allowed, up\n"
                 "to 86400; 0: none): its blocking call then returns ETIMEDOUT, once, and it\n"
                 "may clean up and return its own result (else FAILURE SoftTimeLimitExceeded)."},
    [SETTINGS_TIME_LIMIT] =
        {"time-limit", 0, "WORKERD_TIME_LIMIT", "SECONDS", "0",
         .kind = SETTINGS_KIND_SECONDS, .apply = SETTINGS_RESTART,
         .hi = (long)BROKER_TIME_LIMIT_MAX,
         .help = "A task's hard time limit when its message sets none (fractions allowed, up\n"
                 "to 86400; 0: none): the task is killed at its next blocking call, its HTTP\n"
                 "transfers aborted, FAILURE TimeLimitExceeded. With --processes, also a\n"
                 "child whose loop is stuck this long (a task computing without yielding)\n"
                 "is killed and replaced, and its messages go to another worker."},
    [SETTINGS_BLOCKING_WARN] =
        {"blocking-warn", 0, "WORKERD_BLOCKING_WARN", "SECONDS", "0.1",
         .kind = SETTINGS_KIND_SECONDS, .apply = SETTINGS_RESTART, .hi = 60,
         .help = "Log a warning naming a task that runs this long without yielding (fractions\n"
                 "allowed, up to 60; 0: off): meanwhile every other task of the process waits."},
    [SETTINGS_RATE_LIMIT] =
        {"rate-limit", 0, "WORKERD_RATE_LIMIT", "TASK=RATE", NULL, .repeat = true,
         .kind = SETTINGS_KIND_CHECKED,
         .apply = SETTINGS_RESTART,
         .help = "Start TASK at most RATE times over ALL workers of the Redis; RATE is a number\n"
                 "(fractions allowed), '/' and s, m or h: 100/s, 10/m, 0.5/h. Repeatable; as a\n"
                 "variable or config key a comma list (echo=20/s,http.get=1/s). Written at\n"
                 "start-up to PREFIX:rate_limits, which workerctl rate-limit changes for every\n"
                 "worker at run time. A message over the rate waits in the scheduled set for\n"
                 "its turn, holding no slot. Default: none."},
    [SETTINGS_HTTP_HOST_RATE] =
        {"http-host-rate", 0, "WORKERD_HTTP_HOST_RATE", "RATE", NULL,
         .kind = SETTINGS_KIND_CHECKED, .apply = SETTINGS_RESTART,
         .help = "Start at most RATE http.get/request/scrape transfers per destination host\n"
                 "(the URL's host, lower-cased; not the hosts of its redirects) over ALL\n"
                 "workers of the Redis; RATE as for --rate-limit (5/s, 30/m). A task whose\n"
                 "host has no turn waits in the scheduled set for it, holding no slot, its\n"
                 "retries untouched, no result written. Default: none."},
    [SETTINGS_HTTP_HOST_CONCURRENCY] =
        {"http-host-concurrency", 0, "WORKERD_HTTP_HOST_CONCURRENCY", "N", "0",
         .kind = SETTINGS_KIND_NUMBER, .apply = SETTINGS_RESTART, .lo = 0, .hi = 100000,
         .help = "Have at most N http.get/request/scrape requests in flight per destination\n"
                 "host (the URL's host, lower-cased) over ALL workers of the Redis (0..100000;\n"
                 "0: no limit). A task whose host has no free slot waits in the scheduled set,\n"
                 "holding no slot of the pool, retries untouched, no result written, and asks\n"
                 "again shortly. A worker killed mid-request frees its slot when the slot's\n"
                 "lease (the request's timeout + 2 s) runs out."},
    [SETTINGS_BEAT] =
        {"beat", 0, "WORKERD_BEAT", "FILE", NULL, .kind = SETTINGS_KIND_CHECKED,
         .apply = SETTINGS_RESTART,
         .help = "Enqueue the periodic tasks of FILE, a JSON list of entries ({\"name\", \"every\":\n"
                 "SECONDS or \"cron\": \"m h dom mon dow\" with \"timezone\", \"message\",\n"
                 "\"catch_up\"}; see workerd(1)). Any number of workers may run the same file:\n"
                 "each due time is enqueued once over all of them, with the id\n"
                 "beat:NAME:UNIXTIME. SIGHUP reads the file again (a bad one is refused and\n"
                 "the running schedule kept); a bad file at start exits 2. Default: none."},
    [SETTINGS_HTTP_DENY] =
        {"http-deny", 0, "WORKERD_HTTP_DENY", "LIST", NULL, .kind = SETTINGS_KIND_CHECKED,
         .apply = SETTINGS_RESTART,
         .help = "Addresses, CIDR networks and host names (a leading *. matches the names\n"
                 "below) that http.* tasks may not connect to, comma-separated, e.g.\n"
                 "10.0.0.0/8,127.0.0.0/8,*.internal.example. Checked on the address\n"
                 "actually connected to, after DNS, for every redirect too. Always denied:\n"
                 "link-local 169.254.0.0/16 and fe80::/10 (cloud metadata), 0.0.0.0/8, ::,\n"
                 "multicast and reserved. Loopback and private ranges are allowed unless\n"
                 "listed. Default: nothing more."},
    [SETTINGS_HTTP_ALLOW] =
        {"http-allow", 0, "WORKERD_HTTP_ALLOW", "LIST", NULL, .kind = SETTINGS_KIND_CHECKED,
         .apply = SETTINGS_RESTART,
         .help = "Exceptions to --http-deny, in the same forms. The most specific rule wins:\n"
                 "a matching host name first, then the longest matching prefix (so\n"
                 "--http-deny 127.0.0.0/8 --http-allow 127.0.0.1 admits 127.0.0.1 alone);\n"
                 "on a tie, --http-deny wins over --http-allow, which wins over the\n"
                 "built-in list. Default: none."},
    [SETTINGS_HTTP_METHODS] =
        {"http-methods", 0, "WORKERD_HTTP_METHODS", "LIST", NULL, .kind = SETTINGS_KIND_CHECKED,
         .apply = SETTINGS_RESTART,
         .help = "HTTP methods http.request may send besides GET, HEAD, POST, PUT, PATCH,\n"
                 "DELETE and OPTIONS, comma-separated (e.g. PROPFIND,REPORT). A method not\n"
                 "allowed fails the task before any connection. Default: none."},
    [SETTINGS_HTTP] =
        {"http", 0, "WORKERD_HTTP", "ADDR:PORT", "off", .kind = SETTINGS_KIND_LISTEN,
         .apply = SETTINGS_RESTART,
         .help = "Serve /metrics (Prometheus), /healthz and /workers over HTTP on ADDR:PORT,\n"
                 "e.g. 127.0.0.1:9808 ([::1]:9808 for IPv6; 0.0.0.0 listens everywhere: the\n"
                 "endpoint has no authentication). With --processes N, child k (0..N-1)\n"
                 "listens on PORT+k. off: no endpoint."},
    [SETTINGS_EVENTS] =
        {"events", 'E', "WORKERD_EVENTS", NULL, "off", .kind = SETTINGS_KIND_FLAG,
         .apply = SETTINGS_RESTART,
         .help = "Publish task events (received, started, succeeded, failed, retried,\n"
                 "revoked) on the capped stream PREFIX:events, for monitors. As a variable or\n"
                 "config key: on or off."},
    [SETTINGS_PROCESSES] =
        {"processes", 0, "WORKERD_PROCESSES", "N", "1", .kind = SETTINGS_KIND_NUMBER,
         .apply = SETTINGS_RESTART, .lo = 1, .hi = 1024,
         .help = "Run N worker processes (1..1024) under a supervisor that restarts a child\n"
                 "that crashed (backoff 1 s doubling to 30 s) and passes signals on to all."},
    [SETTINGS_MAX_TASKS_PER_CHILD] =
        {"max-tasks-per-child", 0, "WORKERD_MAX_TASKS_PER_CHILD", "N", "0",
         .kind = SETTINGS_KIND_NUMBER, .apply = SETTINGS_RESTART, .lo = 0, .hi = 1000000000,
         .help = "A worker process that has taken N tasks finishes them, exits, and the\n"
                 "supervisor starts a fresh one (runs under the supervisor even with\n"
                 "--processes 1). 0: no limit."},
    [SETTINGS_MAX_MEMORY_PER_CHILD] =
        {"max-memory-per-child", 0, "WORKERD_MAX_MEMORY_PER_CHILD", "KIB", "0",
         .kind = SETTINGS_KIND_NUMBER, .apply = SETTINGS_RESTART, .lo = 0, .hi = 1L << 30,
         .help = "A worker process whose resident memory exceeds KIB kibibytes after a task\n"
                 "is replaced the same way. 0: no limit."},
    [SETTINGS_LOAD] =
        {"load", 0, "WORKERD_LOAD", "PLUGIN.so", NULL, .repeat = true,
         .kind = SETTINGS_KIND_PATHS, .apply = SETTINGS_RESTART,
         .help = "Load a task plugin (a shared object built against workerd's SDK; see\n"
                 "README.md) at start-up, before any worker starts; its tasks join the\n"
                 "built-in ones. Give it once per plugin, or a comma list; a path without a\n"
                 "'/' is taken in the working directory. A plugin that cannot be loaded stops\n"
                 "the start with exit code 2. Default: none."},
    [SETTINGS_EXEC_TASK] =
        {"exec-task", 0, "WORKERD_EXEC_TASK", "NAME=PATH", NULL, .repeat = true,
         .kind = SETTINGS_KIND_LIST,
         .apply = SETTINGS_RESTART,
         .help = "Register task NAME, run by the program at PATH (absolute and executable; no\n"
                 "shell): it reads the message as JSON on stdin and prints its result as JSON\n"
                 "on stdout; exit status 75 asks for a retry (see workerd(1)). Repeat the\n"
                 "option for more tasks, or separate entries with commas (\\, for a comma in\n"
                 "a path)."},
    [SETTINGS_EXEC_ENV] =
        {"exec-env", 0, "WORKERD_EXEC_ENV", "KEY=VALUE", NULL, .repeat = true,
         .kind = SETTINGS_KIND_LIST,
         .apply = SETTINGS_RESTART,
         .help = "Add KEY=VALUE to the environment of --exec-task programs, which otherwise\n"
                 "is PATH=/usr/local/bin:/usr/bin:/bin, LANG=C.UTF-8 and workerd's HOME (a\n"
                 "KEY here replaces those). Repeatable, or comma-separated (\\, for a comma in\n"
                 "a value)."},
    [SETTINGS_EXEC_MAX_OUTPUT] =
        {"exec-max-output", 0, "WORKERD_EXEC_MAX_OUTPUT", "BYTES", "10M",
         .kind = SETTINGS_KIND_SIZE, .apply = SETTINGS_RESTART, .lo = 1024, .hi = 512L << 20,
         .help = "Most an --exec-task program may write on stdout (K, M, G suffixes); one\n"
                 "that writes more is killed and its task fails with BadOutput."},
    [SETTINGS_CONFIG] =
        {"config", 0, "WORKERD_CONFIG", "FILE", NULL, .kind = SETTINGS_KIND_FILE,
         .apply = SETTINGS_RESTART,
         .help = "Read settings from FILE: KEY=VALUE lines with the variable names shown\n"
                 "here, as systemd's EnvironmentFile= reads them. Default: no file."},
    [SETTINGS_HELP] = {"help", 'h', NULL, NULL, NULL, .kind = SETTINGS_KIND_ACTION,
                       .help = "Print this help and exit."},
    [SETTINGS_VERSION] = {"version", 'V', NULL, NULL, NULL, .kind = SETTINGS_KIND_ACTION,
                          .help = "Print the version and exit."},
    [SETTINGS_LIST_TASKS] = {"list-tasks", 0, NULL, NULL, NULL, .kind = SETTINGS_KIND_ACTION,
                             .help = "Print the name of every task this worker would run (the built-in\n"
                                     "ones and those of the --load plugins), one per line, and exit."},
};
/* clang-format on */
