/*
 * test_options.c - workerd's settings as a user meets them: the defaults, each source
 * (config file, environment, command line) and their precedence, and the exact one-line
 * message of every kind of mistake.
 *
 * The environment is a fake one (fake_getenv over a small table), so the tests neither
 * depend on nor disturb the real environment.
 */
#include "testlib.h"

#include "wd_options.h"

#include <fcntl.h>
#include <stdarg.h>
#include <unistd.h>

/* The fake environment: NAME=VALUE strings, NULL-terminated. */
static const char *fake_env[16];

static char *fake_getenv(const char *name) {
    size_t n = strlen(name);
    for (int i = 0; fake_env[i] != NULL; i++)
        if (strncmp(fake_env[i], name, n) == 0 && fake_env[i][n] == '=')
            return (char *)fake_env[i] + n + 1;
    return NULL;
}

static void set_env(const char *first, ...) {
    va_list ap;
    int i = 0;
    va_start(ap, first);
    for (const char *s = first; s != NULL; s = va_arg(ap, const char *))
        fake_env[i++] = s;
    va_end(ap);
    fake_env[i] = NULL;
}

static char err[512];

/* Load with argv = "workerd" followed by the NULL-terminated arguments. */
static int load(struct wd_options *o, ...) {
    char *argv[32] = {"workerd"};
    int argc = 1;
    va_list ap;
    va_start(ap, o);
    for (char *s = va_arg(ap, char *); s != NULL; s = va_arg(ap, char *))
        argv[argc++] = s;
    va_end(ap);
    return wd_options_load(o, argc, argv, fake_getenv, err, sizeof err);
}

/* Expect an error with exactly this message, and nothing left in *o. */
#define ASSERT_LOAD_FAILS(msg, ...)                                                                \
    do {                                                                                           \
        struct wd_options o_;                                                                      \
        ASSERT_EQ(load(&o_, __VA_ARGS__, NULL), -1);                                               \
        ASSERT_STREQ(err, msg);                                                                    \
        ASSERT(o_.queues == NULL && o_.broker == NULL && o_.hostname == NULL);                     \
    } while (0)

/* A config file with the given text in a fresh directory; returns its path (static). */
static char config_dir[256];
static char *write_config(const char *text) {
    static char path[512];
    char *dir = test_tmpdir("wdopt");
    snprintf(config_dir, sizeof config_dir, "%s", dir);
    free(dir);
    snprintf(path, sizeof path, "%s/workerd.conf", config_dir);
    FILE *f = fopen(path, "w");
    ASSERT(f != NULL);
    fputs(text, f);
    fclose(f);
    return path;
}

static void remove_config(void) {
    test_rmtree(config_dir);
}

/* Run fn with stdout sent to a file; returns what it printed (caller frees). */
static char *capture_stdout(int (*fn)(struct wd_options *), struct wd_options *o, int *rc) {
    char path[] = "/tmp/wd_test_opt.XXXXXX";
    int fd = mkstemp(path);
    ASSERT(fd >= 0);
    fflush(stdout);
    int saved = dup(STDOUT_FILENO);
    dup2(fd, STDOUT_FILENO);
    close(fd);
    *rc = fn(o);
    fflush(stdout);
    dup2(saved, STDOUT_FILENO);
    close(saved);
    FILE *f = fopen(path, "r");
    char *text = calloc(1, 65536);
    size_t n = fread(text, 1, 65535, f);
    text[n] = '\0';
    fclose(f);
    unlink(path);
    return text;
}

TEST(defaults_without_any_source) {
    set_env(NULL);
    struct wd_options o;
    ASSERT_EQ(load(&o, NULL), 0);
    char host[256] = "";
    gethostname(host, sizeof host);
    ASSERT_EQ(o.pool, WD_POOL_GREEN);
    ASSERT_EQ(o.concurrency, 100);
    ASSERT_EQ(o.nqueues, 1);
    ASSERT_STREQ(o.queues[0], "default");
    ASSERT_STREQ(o.broker, "redis://127.0.0.1:6379/0");
    ASSERT_STREQ(o.result_backend, "redis://127.0.0.1:6379/0");
    ASSERT_STREQ(o.prefix, "workerd");
    ASSERT_STREQ(o.hostname, host);
    ASSERT_EQ(o.prefetch, 100);
    ASSERT_EQ(o.result_expires, 86400);
    ASSERT_EQ(o.shutdown_timeout, 30);
    ASSERT_EQ(o.loglevel, WD_LOG_INFO);
    ASSERT(o.config_path == NULL);
    ASSERT_EQ(o.max_message_size, 1 << 20);
    ASSERT_EQ(o.heartbeat, 5);
    ASSERT_EQ(o.heartbeat_ttl, 15);
    ASSERT_EQ(o.max_redeliveries, 5);
    ASSERT(o.http_deny == NULL && o.http_allow == NULL);
    wd_options_free(&o);
    ASSERT(o.queues == NULL);
    wd_options_free(&o); /* a freed struct may be freed again */
}

TEST(short_options_set_their_values) {
    set_env(NULL);
    struct wd_options o;
    ASSERT_EQ(load(&o, "-P", "green", "-c", "2000", "-Q", "high,low", "-b",
                   "redis://10.0.0.1:6380/3", "-n", "w1@%h", "-l", "DEBUG", NULL),
              0);
    char host[256] = "";
    gethostname(host, sizeof host);
    char want[300];
    snprintf(want, sizeof want, "w1@%s", host);
    ASSERT_EQ(o.concurrency, 2000);
    ASSERT_EQ(o.nqueues, 2);
    ASSERT_STREQ(o.queues[0], "high");
    ASSERT_STREQ(o.queues[1], "low");
    ASSERT_STREQ(o.broker, "redis://10.0.0.1:6380/3");
    ASSERT_STREQ(o.hostname, want);
    ASSERT_EQ(o.loglevel, WD_LOG_DEBUG);
    wd_options_free(&o);
}

TEST(long_options_set_their_values) {
    set_env(NULL);
    struct wd_options o;
    ASSERT_EQ(load(&o, "--pool=solo", "--concurrency", "7", "--queues=a",
                   "--broker=unix:///tmp/r.sock", "--result-backend=redis://127.0.0.1:6390/1",
                   "--prefix=app", "--hostname=node9", "--prefetch=3", "--result-expires=0",
                   "--shutdown-timeout=120", "--loglevel=warning", "--max-message-size=2M",
                   "--heartbeat=2", "--max-redeliveries=0", NULL),
              0);
    ASSERT_EQ(o.pool, WD_POOL_SOLO);
    ASSERT_STREQ(o.broker, "unix:///tmp/r.sock");
    ASSERT_STREQ(o.result_backend, "redis://127.0.0.1:6390/1");
    ASSERT_STREQ(o.prefix, "app");
    ASSERT_STREQ(o.hostname, "node9");
    ASSERT_EQ(o.prefetch, 3);
    ASSERT_EQ(o.result_expires, 0);
    ASSERT_EQ(o.shutdown_timeout, 120);
    ASSERT_EQ(o.loglevel, WD_LOG_WARNING);
    ASSERT_EQ(o.max_message_size, 2 << 20);
    ASSERT_EQ(o.heartbeat, 2);
    ASSERT_EQ(o.heartbeat_ttl, 6);
    ASSERT_EQ(o.max_redeliveries, 0);
    wd_options_free(&o);
}

TEST(solo_pool_runs_one_task_at_a_time) {
    set_env(NULL);
    struct wd_options o;
    ASSERT_EQ(load(&o, "-P", "solo", "-c", "50", NULL), 0);
    ASSERT_EQ(o.concurrency, 1);
    ASSERT_EQ(o.prefetch, 1);
    wd_options_free(&o);
}

TEST(prefetch_defaults_to_concurrency) {
    set_env(NULL);
    struct wd_options o;
    ASSERT_EQ(load(&o, "-c", "500", NULL), 0);
    ASSERT_EQ(o.prefetch, 500);
    wd_options_free(&o);
}

TEST(config_file_sets_values) {
    set_env(NULL);
    char *path = write_config("# workerd settings\n"
                              "; another comment\n"
                              "\n"
                              "WORKERD_CONCURRENCY=250\n"
                              "  WORKERD_QUEUES = \"high, low\"  \n"
                              "WORKERD_PREFIX='my#app;wd'\n"
                              "WORKERD_BROKER=redis://:pa\\ ss@127.0.0.1:6380/2\n"
                              "WORKERD_HOSTNAME=\"node\\\"1\"\n"
                              "WORKERD_LOGLEVEL=error   \n"
                              "WORKERD_HEARTBEAT=\\\n"
                              "10\n");
    struct wd_options o;
    ASSERT_EQ(load(&o, "--config", path, NULL), 0);
    ASSERT_STREQ(o.config_path, path);
    ASSERT_EQ(o.concurrency, 250);
    ASSERT_EQ(o.nqueues, 2);
    ASSERT_STREQ(o.queues[0], "high");
    ASSERT_STREQ(o.queues[1], "low");
    ASSERT_EQ(o.loglevel, WD_LOG_ERROR);
    ASSERT_EQ(o.heartbeat, 10);
    ASSERT_STREQ(o.broker, "redis://:pa ss@127.0.0.1:6380/2");
    ASSERT_STREQ(o.hostname, "node\"1");
    ASSERT_STREQ(o.prefix, "my#app;wd");
    wd_options_free(&o);
    remove_config();
}

TEST(prefix_with_blank_from_config_is_rejected) {
    set_env(NULL);
    /* The quoted value above keeps its blank, which a key prefix may not contain. */
    char *path = write_config("WORKERD_PREFIX='my app'\n");
    char want[1200];
    snprintf(want, sizeof want,
             "workerd: WORKERD_PREFIX: key prefix contains whitespace or a control character "
             "(from %s line 1)",
             path);
    ASSERT_LOAD_FAILS(want, "--config", path);
    remove_config();
}

TEST(config_file_named_by_environment) {
    char *path = write_config("WORKERD_CONCURRENCY=42\n");
    char var[600];
    snprintf(var, sizeof var, "WORKERD_CONFIG=%s", path);
    set_env(var, NULL);
    struct wd_options o;
    ASSERT_EQ(load(&o, NULL), 0);
    ASSERT_EQ(o.concurrency, 42);
    ASSERT_STREQ(o.config_path, path);
    wd_options_free(&o);
    remove_config();
}

TEST(environment_sets_values) {
    set_env("WORKERD_POOL=solo", "WORKERD_QUEUES=x,y,z", "WORKERD_RESULT_EXPIRES=60",
            "WORKERD_MAX_MESSAGE_SIZE=64k", "WORKERD_PREFETCH=9", NULL);
    struct wd_options o;
    ASSERT_EQ(load(&o, NULL), 0);
    ASSERT_EQ(o.pool, WD_POOL_SOLO);
    ASSERT_EQ(o.nqueues, 3);
    ASSERT_STREQ(o.queues[2], "z");
    ASSERT_EQ(o.result_expires, 60);
    ASSERT_EQ(o.max_message_size, 65536);
    ASSERT_EQ(o.prefetch, 9);
    wd_options_free(&o);
}

TEST(environment_overrides_file_and_command_line_overrides_both) {
    char *path = write_config("WORKERD_CONCURRENCY=10\n"
                              "WORKERD_PREFETCH=11\n"
                              "WORKERD_HEARTBEAT=12\n");
    set_env("WORKERD_PREFETCH=21", "WORKERD_HEARTBEAT=22", NULL);
    struct wd_options o;
    ASSERT_EQ(load(&o, "--config", path, "--heartbeat", "32", NULL), 0);
    ASSERT_EQ(o.concurrency, 10); /* file only */
    ASSERT_EQ(o.prefetch, 21);    /* file < environment */
    ASSERT_EQ(o.heartbeat, 32);   /* file < environment < command line */
    wd_options_free(&o);
    remove_config();
}

TEST(command_line_config_beats_environment_config) {
    char *path = write_config("WORKERD_CONCURRENCY=77\n");
    set_env("WORKERD_CONFIG=/nonexistent/never-read.conf", NULL);
    struct wd_options o;
    ASSERT_EQ(load(&o, "--config", path, NULL), 0);
    ASSERT_EQ(o.concurrency, 77);
    wd_options_free(&o);
    remove_config();
}

TEST(empty_environment_variable_counts_as_unset) {
    set_env("WORKERD_CONCURRENCY=", "WORKERD_CONFIG=", NULL);
    struct wd_options o;
    ASSERT_EQ(load(&o, NULL), 0);
    ASSERT_EQ(o.concurrency, 100);
    wd_options_free(&o);
}

TEST(result_backend_defaults_to_broker) {
    set_env("WORKERD_BROKER=redis://u:pw@127.0.0.1:7000/4", NULL);
    struct wd_options o;
    ASSERT_EQ(load(&o, NULL), 0);
    ASSERT_STREQ(o.result_backend, "redis://u:pw@127.0.0.1:7000/4");
    ASSERT_STREQ(o.result_backend_redacted, "redis://u:***@127.0.0.1:7000/4");
    wd_options_free(&o);
}

TEST(broker_password_is_redacted) {
    set_env(NULL);
    struct wd_options o;
    ASSERT_EQ(load(&o, "-b", "redis://:s3cr%40t@127.0.0.1:6379/1", "--result-backend",
                   "redis://127.0.0.1/2", NULL),
              0);
    ASSERT_STREQ(o.broker_redacted, "redis://:***@127.0.0.1:6379/1");
    ASSERT_STREQ(o.result_backend_redacted, "redis://127.0.0.1/2");
    wd_options_free(&o);
}

TEST(bad_broker_message_hides_the_password) {
    set_env(NULL);
    ASSERT_LOAD_FAILS("workerd: --broker: redis URL 'redis://:***@127.0.0.1:99999': port must "
                      "be a number from 1 to 65535 (from the command line)",
                      "-b", "redis://:hunter2@127.0.0.1:99999");
}

TEST(bad_broker_scheme_is_rejected) {
    set_env(NULL);
    ASSERT_LOAD_FAILS("workerd: --broker: redis URL 'amqp://guest:***@localhost//': scheme must "
                      "be redis://, redis+sentinel:// or unix:// (from the command line)",
                      "--broker", "amqp://guest:guest@localhost//");
    set_env("WORKERD_RESULT_BACKEND=rpc://", NULL);
    ASSERT_LOAD_FAILS("workerd: WORKERD_RESULT_BACKEND: redis URL 'rpc://': scheme must be "
                      "redis://, redis+sentinel:// or unix:// (from the environment)",
                      "-c", "5");
}

TEST(queues_keep_their_order_and_lose_surrounding_blanks) {
    set_env(NULL);
    struct wd_options o;
    ASSERT_EQ(load(&o, "-Q", "zeta, alpha ,mid", NULL), 0);
    ASSERT_EQ(o.nqueues, 3);
    ASSERT_STREQ(o.queues[0], "zeta");
    ASSERT_STREQ(o.queues[1], "alpha");
    ASSERT_STREQ(o.queues[2], "mid");
    wd_options_free(&o);
}

TEST(bad_queue_names_are_rejected) {
    set_env(NULL);
    ASSERT_LOAD_FAILS("workerd: --queues: empty queue name in 'a,,b' (from the command line)", "-Q",
                      "a,,b");
    ASSERT_LOAD_FAILS("workerd: --queues: empty queue name in 'a,' (from the command line)", "-Q",
                      "a,");
    ASSERT_LOAD_FAILS("workerd: --queues: queue name contains whitespace or a control character "
                      "(from the command line)",
                      "-Q", "a,my queue");
    ASSERT_LOAD_FAILS("workerd: --queues: queue 'a' is listed twice (from the command line)", "-Q",
                      "a,b,a");
}

/* The limits are the broker's (BROKER_PREFIX_MAX, BROKER_QUEUE_NAME_MAX): a name that
 * passes here fits every key, so start-up cannot fail on it later. */
TEST(names_longer_than_the_broker_allows_are_rejected) {
    set_env(NULL);
    char prefix[71], queue[141], list[160];
    memset(prefix, 'p', 70);
    prefix[70] = '\0';
    memset(queue, 'q', 140);
    queue[140] = '\0';
    ASSERT_LOAD_FAILS("workerd: --prefix: key prefix is longer than 64 bytes (from the command "
                      "line)",
                      "--prefix", prefix);
    snprintf(list, sizeof list, "a,%s", queue);
    ASSERT_LOAD_FAILS("workerd: --queues: queue name is longer than 128 bytes (from the command "
                      "line)",
                      "-Q", list);
    /* At the limits, they pass. */
    struct wd_options o;
    prefix[64] = '\0';
    queue[128] = '\0';
    ASSERT_EQ(load(&o, "--prefix", prefix, "-Q", queue, NULL), 0);
    ASSERT_EQ(strlen(o.prefix), 64);
    ASSERT_EQ(strlen(o.queues[0]), 128);
    wd_options_free(&o);
}

TEST(hostname_expands_celery_escapes) {
    set_env(NULL);
    char host[256] = "";
    gethostname(host, sizeof host);
    const char *dot = strchr(host, '.');
    char want[700];
    snprintf(want, sizeof want, "w@%.*s/%s/%s/100%%", dot ? (int)(dot - host) : (int)strlen(host),
             host, dot ? dot + 1 : "", host);
    struct wd_options o;
    ASSERT_EQ(load(&o, "-n", "w@%n/%d/%h/100%%", NULL), 0);
    ASSERT_STREQ(o.hostname, want);
    wd_options_free(&o);
    ASSERT_LOAD_FAILS("workerd: --hostname: unknown '%x' in 'w@%x' (use %h, %n, %d or %%) (from "
                      "the command line)",
                      "-n", "w@%x");
}

TEST(non_number_is_rejected) {
    set_env(NULL);
    ASSERT_LOAD_FAILS("workerd: --concurrency: 'abc' is not a number (from the command line)", "-c",
                      "abc");
    ASSERT_LOAD_FAILS("workerd: --concurrency: '10x' is not a number (from the command line)",
                      "--concurrency=10x");
    ASSERT_LOAD_FAILS("workerd: --max-message-size: '1MB' is not a number (from the command "
                      "line)",
                      "--max-message-size", "1MB");
}

TEST(out_of_range_number_is_rejected) {
    set_env(NULL);
    ASSERT_LOAD_FAILS("workerd: --concurrency: '0' is out of range, expected 1..1000000 (from "
                      "the command line)",
                      "-c", "0");
    ASSERT_LOAD_FAILS("workerd: --concurrency: '1000001' is out of range, expected 1..1000000 "
                      "(from the command line)",
                      "-c", "1000001");
    ASSERT_LOAD_FAILS("workerd: --concurrency: '-5' is out of range, expected 1..1000000 (from "
                      "the command line)",
                      "-c", "-5");
    ASSERT_LOAD_FAILS("workerd: --prefetch: '99999999999999999999999' is out of range, expected "
                      "1..1000000 (from the command line)",
                      "--prefetch", "99999999999999999999999");
    ASSERT_LOAD_FAILS("workerd: --max-message-size: '1G' is out of range, expected "
                      "1024..536870912 (from the command line)",
                      "--max-message-size", "1G");
    set_env("WORKERD_HEARTBEAT=0", NULL);
    ASSERT_LOAD_FAILS("workerd: WORKERD_HEARTBEAT: '0' is out of range, expected 1..3600 (from "
                      "the environment)",
                      "-c", "1");
}

TEST(config_file_value_error_names_file_and_line) {
    set_env(NULL);
    char *path = write_config("# comment\n\nWORKERD_PREFIX=x\n\n\n\nWORKERD_CONCURRENCY=abc\n");
    char want[600];
    snprintf(want, sizeof want,
             "workerd: WORKERD_CONCURRENCY: 'abc' is not a number (from %s line 7)", path);
    ASSERT_LOAD_FAILS(want, "--config", path);
    remove_config();
}

TEST(config_file_error_counts_even_when_overridden) {
    set_env(NULL);
    char *path = write_config("WORKERD_CONCURRENCY=lots\n");
    char want[600];
    snprintf(want, sizeof want,
             "workerd: WORKERD_CONCURRENCY: 'lots' is not a number (from %s line 1)", path);
    ASSERT_LOAD_FAILS(want, "--config", path, "-c", "10");
    remove_config();
}

TEST(http_policy_lists_come_from_every_source) {
    set_env(NULL);
    struct wd_options o;
    ASSERT_EQ(load(&o, "--http-deny", "10.0.0.0/8, 127.0.0.0/8", "--http-allow=127.0.0.1/32", NULL),
              0);
    ASSERT_STREQ(o.http_deny, "10.0.0.0/8, 127.0.0.0/8");
    ASSERT_STREQ(o.http_allow, "127.0.0.1/32");
    wd_options_free(&o);
    set_env("WORKERD_HTTP_DENY=fc00::/7,*.corp.example", "WORKERD_HTTP_ALLOW=api.corp.example",
            NULL);
    ASSERT_EQ(load(&o, NULL), 0);
    ASSERT_STREQ(o.http_deny, "fc00::/7,*.corp.example");
    ASSERT_STREQ(o.http_allow, "api.corp.example");
    wd_options_free(&o);
    set_env(NULL);
    char *path = write_config("WORKERD_HTTP_DENY=192.168.0.0/16\nWORKERD_HTTP_ALLOW=::1\n");
    ASSERT_EQ(load(&o, "--config", path, NULL), 0);
    ASSERT_STREQ(o.http_deny, "192.168.0.0/16");
    ASSERT_STREQ(o.http_allow, "::1");
    wd_options_free(&o);
    remove_config();
}

TEST(bad_http_policy_entry_is_rejected_naming_it_and_its_source) {
    set_env(NULL);
    ASSERT_LOAD_FAILS("workerd: --http-deny: '10.0.0.0/33' is not an address, a CIDR or a host "
                      "name (from the command line)",
                      "--http-deny", "10.0.0.0/8,10.0.0.0/33");
    ASSERT_LOAD_FAILS("workerd: --http-allow: '10.0.0.1/8' has host bits set (the network is "
                      "10.0.0.0/8) (from the command line)",
                      "--http-allow", "10.0.0.1/8");
    ASSERT_LOAD_FAILS("workerd: --http-deny: empty entry in 'a,,b' (from the command line)",
                      "--http-deny", "a,,b");
    set_env("WORKERD_HTTP_ALLOW=http://x/", NULL);
    ASSERT_LOAD_FAILS("workerd: WORKERD_HTTP_ALLOW: 'http://x/' is not an address, a CIDR or a "
                      "host name (from the environment)",
                      "--http-allow", "ok.example");
    set_env(NULL);
    char *path = write_config("\nWORKERD_HTTP_DENY=under_score.ok, bad name\n");
    char want[1200];
    snprintf(want, sizeof want,
             "workerd: WORKERD_HTTP_DENY: 'bad name' is not an address, a CIDR or a host name "
             "(from %s line 2)",
             path);
    ASSERT_LOAD_FAILS(want, "--config", path);
    remove_config();
}

TEST(unknown_option_is_rejected) {
    set_env(NULL);
    ASSERT_LOAD_FAILS("workerd: unknown option '--frobnicate' (see workerd --help)",
                      "--frobnicate=3");
    ASSERT_LOAD_FAILS("workerd: unknown option '-x' (see workerd --help)", "-c", "5", "-x");
    ASSERT_LOAD_FAILS("workerd: ambiguous option '--con' (could be --concurrency or --config)",
                      "--con=5");
    struct wd_options o;
    ASSERT_EQ(load(&o, "--conc=5", NULL), 0); /* a unique abbreviation is fine */
    ASSERT_EQ(o.concurrency, 5);
    wd_options_free(&o);
}

TEST(option_without_its_value_is_rejected) {
    set_env(NULL);
    ASSERT_LOAD_FAILS("workerd: option '-c' needs a value", "-c");
    ASSERT_LOAD_FAILS("workerd: option '--queues' needs a value", "--queues");
    ASSERT_LOAD_FAILS("workerd: --queues: empty value (from the command line)", "--queues=");
}

TEST(stray_argument_is_rejected) {
    set_env(NULL);
    ASSERT_LOAD_FAILS("workerd: unexpected argument 'worker' (workerd takes options only)",
                      "worker", "-c", "5");
}

TEST(unknown_pool_is_rejected) {
    set_env(NULL);
    ASSERT_LOAD_FAILS("workerd: unknown pool 'prefork' (choose green or solo) (from the command "
                      "line)",
                      "-P", "prefork");
    struct wd_options o;
    ASSERT_EQ(load(&o, "-P", "gevent", NULL), 0); /* Celery's name for the same thing */
    ASSERT_EQ(o.pool, WD_POOL_GREEN);
    wd_options_free(&o);
}

TEST(bad_loglevel_is_rejected) {
    set_env(NULL);
    ASSERT_LOAD_FAILS("workerd: unknown log level 'verbose' (choose debug, info, warning or "
                      "error) (from the command line)",
                      "-l", "verbose");
}

TEST(missing_config_file_is_an_error) {
    set_env(NULL);
    ASSERT_LOAD_FAILS("workerd: --config: cannot read config file '/nonexistent/workerd.conf': "
                      "No such file or directory (from the command line)",
                      "--config", "/nonexistent/workerd.conf");
    set_env("WORKERD_CONFIG=/nonexistent/env.conf", NULL);
    ASSERT_LOAD_FAILS("workerd: WORKERD_CONFIG: cannot read config file '/nonexistent/env.conf': "
                      "No such file or directory (from the environment)",
                      "-c", "5");
}

TEST(config_line_without_equals_is_an_error) {
    set_env(NULL);
    char *path = write_config("WORKERD_CONCURRENCY=5\n# fine\nconcurrency 5\n");
    char want[600];
    snprintf(want, sizeof want, "workerd: expected KEY=VALUE, got 'concurrency 5' (from %s line 3)",
             path);
    ASSERT_LOAD_FAILS(want, "--config", path);
    remove_config();
}

TEST(unknown_config_key_is_an_error) {
    set_env(NULL);
    char *path = write_config("WORKERD_CONCURENCY=5\n");
    char want[600];
    snprintf(want, sizeof want, "workerd: unknown key 'WORKERD_CONCURENCY' (from %s line 1)", path);
    ASSERT_LOAD_FAILS(want, "--config", path);
    remove_config();
}

static int load_help(struct wd_options *o) {
    return load(o, "-c", "5", "--help", "--bogus", NULL);
}

static int load_version(struct wd_options *o) {
    return load(o, "-V", NULL);
}

TEST(help_prints_every_option_and_returns_one) {
    set_env(NULL);
    struct wd_options o;
    int rc;
    char *out = capture_stdout(load_help, &o, &rc);
    ASSERT_EQ(rc, 1);
    ASSERT(o.queues == NULL);
    const char *names[] = {
        "--pool",
        "WORKERD_POOL",
        "--concurrency",
        "WORKERD_CONCURRENCY",
        "--queues",
        "WORKERD_QUEUES",
        "--broker",
        "WORKERD_BROKER",
        "--result-backend",
        "WORKERD_RESULT_BACKEND",
        "--prefix",
        "WORKERD_PREFIX",
        "--hostname",
        "WORKERD_HOSTNAME",
        "--prefetch",
        "WORKERD_PREFETCH",
        "--result-expires",
        "WORKERD_RESULT_EXPIRES",
        "--shutdown-timeout",
        "WORKERD_SHUTDOWN_TIMEOUT",
        "--loglevel",
        "WORKERD_LOGLEVEL",
        "--max-message-size",
        "WORKERD_MAX_MESSAGE_SIZE",
        "--heartbeat",
        "WORKERD_HEARTBEAT",
        "--max-redeliveries",
        "WORKERD_MAX_REDELIVERIES",
        "--http-deny",
        "WORKERD_HTTP_DENY",
        "--http-allow",
        "WORKERD_HTTP_ALLOW",
        "169.254.0.0/16",
        "--config",
        "WORKERD_CONFIG",
        "--help",
        "--version",
        "[WORKERD_POOL; default: green]",
        "[WORKERD_CONCURRENCY; default: 100]",
        "[WORKERD_QUEUES; default: default]",
        "[WORKERD_BROKER; default: redis://127.0.0.1:6379/0]",
        "[WORKERD_PREFIX; default: workerd]",
        "[WORKERD_RESULT_EXPIRES; default: 86400]",
        "[WORKERD_SHUTDOWN_TIMEOUT; default: 30]",
        "[WORKERD_LOGLEVEL; default: info]",
        "[WORKERD_MAX_MESSAGE_SIZE; default: 1M]",
        "[WORKERD_HEARTBEAT; default: 5]",
        "[WORKERD_MAX_REDELIVERIES; default: 5]",
        "Celery defaults to the number of CPUs",
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strstr(out, names[i]) == NULL)
            test__fail(__FILE__, __LINE__, "the help lacks %s", names[i]);
    for (const char *line = out; *line; line = strchr(line, '\n') + 1)
        ASSERT(strcspn(line, "\n") <= 100);
    free(out);
}

TEST(version_prints_name_and_version_and_returns_one) {
    set_env(NULL);
    struct wd_options o;
    int rc;
    char *out = capture_stdout(load_version, &o, &rc);
    ASSERT_EQ(rc, 1);
    ASSERT_STREQ(wd_version(), "0.1.0"); /* the project() version, passed in by CMake */
    ASSERT_STREQ(out, "workerd 0.1.0\n");
    free(out);
}

TEST(loading_twice_starts_getopt_afresh) {
    set_env(NULL);
    struct wd_options a, b;
    /* The first parse stops inside a group of short options, the worst case for getopt's
     * hidden state. */
    ASSERT_EQ(load(&a, "-c", "5", "-lx", NULL), -1);
    ASSERT_EQ(load(&a, "-c", "5", NULL), 0);
    ASSERT_EQ(load(&b, "-Q", "q1", "-c", "6", NULL), 0);
    ASSERT_EQ(a.concurrency, 5);
    ASSERT_EQ(b.concurrency, 6);
    ASSERT_STREQ(b.queues[0], "q1");
    wd_options_free(&a);
    wd_options_free(&b);
}

TEST(argv_is_left_untouched) {
    set_env(NULL);
    char *argv[] = {"workerd", "-c", "5", "stray", "-Q", "a", NULL};
    char *copy[7];
    memcpy(copy, argv, sizeof argv);
    struct wd_options o;
    ASSERT_EQ(wd_options_load(&o, 6, argv, fake_getenv, err, sizeof err), -1);
    for (int i = 0; i < 6; i++)
        ASSERT(argv[i] == copy[i]);
}

TEST(no_environment_getter_means_no_environment) {
    struct wd_options o;
    char *argv[] = {"workerd", NULL};
    ASSERT_EQ(wd_options_load(&o, 1, argv, NULL, err, sizeof err), 0);
    ASSERT_EQ(o.concurrency, 100);
    wd_options_free(&o);
}

/* ---- operations: --http, -E, --processes, recycling limits ------------------------------ */

TEST(operations_options_default_to_off) {
    set_env(NULL);
    struct wd_options o;
    ASSERT_EQ(load(&o, NULL), 0);
    ASSERT(o.http_host == NULL);
    ASSERT(!o.events);
    ASSERT_EQ(o.processes, 1);
    ASSERT_EQ(o.max_tasks_per_child, 0);
    ASSERT_EQ(o.max_memory_per_child, 0);
    wd_options_free(&o);
}

TEST(http_address_is_split_into_host_and_port) {
    set_env(NULL);
    struct wd_options o;
    ASSERT_EQ(load(&o, "--http", "127.0.0.1:9808", NULL), 0);
    ASSERT_STREQ(o.http_host, "127.0.0.1");
    ASSERT_EQ(o.http_port, 9808);
    wd_options_free(&o);
    ASSERT_EQ(load(&o, "--http", "[::1]:0", NULL), 0);
    ASSERT_STREQ(o.http_host, "::1");
    ASSERT_EQ(o.http_port, 0);
    wd_options_free(&o);
    ASSERT_EQ(load(&o, "--http", "localhost:9808", NULL), 0);
    ASSERT_STREQ(o.http_host, "127.0.0.1");
    wd_options_free(&o);
    /* off in a higher layer turns off what a lower one set */
    set_env("WORKERD_HTTP=0.0.0.0:9808", NULL);
    ASSERT_EQ(load(&o, "--http", "off", NULL), 0);
    ASSERT(o.http_host == NULL);
    wd_options_free(&o);
}

TEST(bad_http_address_is_rejected) {
    set_env(NULL);
    ASSERT_LOAD_FAILS("workerd: --http: '9808' is not ADDR:PORT (e.g. 127.0.0.1:9808) or off "
                      "(from the command line)",
                      "--http", "9808");
    ASSERT_LOAD_FAILS("workerd: --http: 'example.com:9808' is not a numeric IPv4 address, "
                      "[IPv6 address] or localhost (from the command line)",
                      "--http", "example.com:9808");
    ASSERT_LOAD_FAILS("workerd: --http: '70000' is out of range, expected 0..65535 (from the "
                      "command line)",
                      "--http", "127.0.0.1:70000");
    ASSERT_LOAD_FAILS("workerd: --http: 'x' is not a number (from the command line)", "--http",
                      "127.0.0.1:x");
}

TEST(events_flag_and_variable) {
    struct wd_options o;
    set_env(NULL);
    ASSERT_EQ(load(&o, "-E", NULL), 0);
    ASSERT(o.events);
    wd_options_free(&o);
    ASSERT_EQ(load(&o, "--events", NULL), 0);
    ASSERT(o.events);
    wd_options_free(&o);
    set_env("WORKERD_EVENTS=yes", NULL);
    ASSERT_EQ(load(&o, NULL), 0);
    ASSERT(o.events);
    wd_options_free(&o);
    set_env("WORKERD_EVENTS=OFF", NULL);
    ASSERT_EQ(load(&o, NULL), 0);
    ASSERT(!o.events);
    wd_options_free(&o);
    set_env("WORKERD_EVENTS=maybe", NULL);
    ASSERT_LOAD_FAILS("workerd: WORKERD_EVENTS: 'maybe' is neither on nor off (from the "
                      "environment)",
                      NULL);
    set_env(NULL);
    ASSERT_LOAD_FAILS("workerd: option '--events' takes no value", "--events=1");
}

TEST(processes_and_recycling_limits_are_checked) {
    set_env(NULL);
    struct wd_options o;
    ASSERT_EQ(load(&o, "--processes", "4", "--max-tasks-per-child", "1000",
                   "--max-memory-per-child", "204800", NULL),
              0);
    ASSERT_EQ(o.processes, 4);
    ASSERT_EQ(o.max_tasks_per_child, 1000);
    ASSERT_EQ(o.max_memory_per_child, 204800);
    wd_options_free(&o);
    ASSERT_LOAD_FAILS("workerd: --processes: '0' is out of range, expected 1..1024 (from the "
                      "command line)",
                      "--processes", "0");
    ASSERT_LOAD_FAILS("workerd: --max-tasks-per-child: '-1' is out of range, expected "
                      "0..1000000000 (from the command line)",
                      "--max-tasks-per-child", "-1");
    ASSERT_LOAD_FAILS("workerd: --max-memory-per-child: '200M' is not a number (from the "
                      "command line)",
                      "--max-memory-per-child", "200M");
}

/* Seconds with fractions, 0 for none; defaults none, none and 0.1 s. */
TEST(time_limits_and_blocking_warn_take_fractions_of_seconds) {
    set_env(NULL);
    struct wd_options o;
    ASSERT_EQ(load(&o, NULL), 0);
    ASSERT(o.soft_time_limit == 0 && o.time_limit == 0 && o.blocking_warn == 0.1);
    wd_options_free(&o);
    set_env("WORKERD_TIME_LIMIT=90", NULL);
    ASSERT_EQ(load(&o, "--soft-time-limit", "2.5", "--blocking-warn", "0", NULL), 0);
    ASSERT(o.soft_time_limit == 2.5 && o.time_limit == 90 && o.blocking_warn == 0);
    wd_options_free(&o);
    set_env(NULL);
    ASSERT_LOAD_FAILS("workerd: --time-limit: '-1' is out of range, expected 0..86400 seconds "
                      "(from the command line)",
                      "--time-limit", "-1");
    ASSERT_LOAD_FAILS("workerd: --time-limit: '86401' is out of range, expected 0..86400 "
                      "seconds (from the command line)",
                      "--time-limit", "86401");
    ASSERT_LOAD_FAILS("workerd: --soft-time-limit: 'nan' is not a number of seconds (from the "
                      "command line)",
                      "--soft-time-limit", "nan");
    ASSERT_LOAD_FAILS("workerd: --soft-time-limit: 'inf' is not a number of seconds (from the "
                      "command line)",
                      "--soft-time-limit", "inf");
    ASSERT_LOAD_FAILS("workerd: --soft-time-limit: '5s' is not a number of seconds (from the "
                      "command line)",
                      "--soft-time-limit", "5s");
    ASSERT_LOAD_FAILS("workerd: --blocking-warn: '61' is out of range, expected 0..60 seconds "
                      "(from the command line)",
                      "--blocking-warn", "61");
    set_env("WORKERD_BLOCKING_WARN=1e999", NULL);
    ASSERT_LOAD_FAILS("workerd: WORKERD_BLOCKING_WARN: '1e999' is not a number of seconds (from "
                      "the environment)",
                      NULL);
    set_env(NULL);
}

/* ---- reload: what a changed value needs ------------------------------------------------- */

TEST(every_option_is_marked_live_or_restart) {
    for (int id = 0; id < SETTINGS_COUNT; id++) {
        const struct settings_opt *d = &settings_opts[id];
        if (d->kind == SETTINGS_KIND_ACTION)
            continue;
        if (d->apply != SETTINGS_LIVE && d->apply != SETTINGS_RESTART)
            test__fail(__FILE__, __LINE__, "--%s is neither live nor restart", d->name);
        /* Only the log level can change under a running worker. */
        ASSERT_EQ(d->apply == SETTINGS_LIVE, id == SETTINGS_LOGLEVEL);
    }
}

/* A reload compares every option: a different value of any of them, from any layer, is
 * noticed, and only the log level's applies without a restart. */
TEST(a_reload_notices_a_change_to_any_option) {
    char *path = write_config("\n");
    char config[600];
    snprintf(config, sizeof config, "WORKERD_CONFIG=%s", path);
    const struct {
        enum settings_id id;
        const char *env;
    } changes[] = {
        {SETTINGS_POOL, "WORKERD_POOL=solo"},
        {SETTINGS_CONCURRENCY, "WORKERD_CONCURRENCY=7"},
        {SETTINGS_QUEUES, "WORKERD_QUEUES=default,low"},
        {SETTINGS_PROTOCOL, "WORKERD_PROTOCOL=celery"},
        {SETTINGS_CELERY_QUEUES, "WORKERD_CELERY_QUEUES=celery"},
        {SETTINGS_CELERY_TASK, "WORKERD_CELERY_TASK=proj.fetch=http.get"},
        {SETTINGS_CELERY_RESULT_EXTENDED, "WORKERD_CELERY_RESULT_EXTENDED=on"},
        {SETTINGS_CELERY_TRACK_STARTED, "WORKERD_CELERY_TRACK_STARTED=on"},
        {SETTINGS_BROKER, "WORKERD_BROKER=redis://127.0.0.1:6390/1"},
        {SETTINGS_RESULT_BACKEND, "WORKERD_RESULT_BACKEND=redis://127.0.0.1:6390/2"},
        {SETTINGS_PREFIX, "WORKERD_PREFIX=other"},
        {SETTINGS_HOSTNAME, "WORKERD_HOSTNAME=elsewhere"},
        {SETTINGS_PREFETCH, "WORKERD_PREFETCH=3"},
        {SETTINGS_RESULT_EXPIRES, "WORKERD_RESULT_EXPIRES=60"},
        {SETTINGS_SHUTDOWN_TIMEOUT, "WORKERD_SHUTDOWN_TIMEOUT=5"},
        {SETTINGS_LOGLEVEL, "WORKERD_LOGLEVEL=debug"},
        {SETTINGS_MAX_MESSAGE_SIZE, "WORKERD_MAX_MESSAGE_SIZE=2M"},
        {SETTINGS_MAX_RESULT_SIZE, "WORKERD_MAX_RESULT_SIZE=2M"},
        {SETTINGS_HEARTBEAT, "WORKERD_HEARTBEAT=2"},
        {SETTINGS_MAX_REDELIVERIES, "WORKERD_MAX_REDELIVERIES=1"},
        {SETTINGS_SOFT_TIME_LIMIT, "WORKERD_SOFT_TIME_LIMIT=1.5"},
        {SETTINGS_TIME_LIMIT, "WORKERD_TIME_LIMIT=3"},
        {SETTINGS_BLOCKING_WARN, "WORKERD_BLOCKING_WARN=0.5"},
        {SETTINGS_RATE_LIMIT, "WORKERD_RATE_LIMIT=echo=20/s"},
        {SETTINGS_HTTP_HOST_RATE, "WORKERD_HTTP_HOST_RATE=5/s"},
        {SETTINGS_HTTP_HOST_CONCURRENCY, "WORKERD_HTTP_HOST_CONCURRENCY=4"},
        {SETTINGS_BEAT, "WORKERD_BEAT=/etc/workerd/beat.json"},
        {SETTINGS_HTTP_DENY, "WORKERD_HTTP_DENY=10.0.0.0/8"},
        {SETTINGS_HTTP_ALLOW, "WORKERD_HTTP_ALLOW=127.0.0.1"},
        {SETTINGS_HTTP_METHODS, "WORKERD_HTTP_METHODS=PROPFIND"},
        {SETTINGS_HTTP, "WORKERD_HTTP=127.0.0.1:0"},
        {SETTINGS_EVENTS, "WORKERD_EVENTS=on"},
        {SETTINGS_PROCESSES, "WORKERD_PROCESSES=2"},
        {SETTINGS_MAX_TASKS_PER_CHILD, "WORKERD_MAX_TASKS_PER_CHILD=10"},
        {SETTINGS_MAX_MEMORY_PER_CHILD, "WORKERD_MAX_MEMORY_PER_CHILD=1000"},
        {SETTINGS_LOAD, "WORKERD_LOAD=/opt/workerd/plugins/hello.so"},
        {SETTINGS_EXEC_TASK, "WORKERD_EXEC_TASK=noop=/bin/true"},
        {SETTINGS_EXEC_ENV, "WORKERD_EXEC_ENV=A=1"},
        {SETTINGS_EXEC_MAX_OUTPUT, "WORKERD_EXEC_MAX_OUTPUT=1M"},
        {SETTINGS_CONFIG, config},
    };
    size_t n = sizeof changes / sizeof *changes;
    /* Every option with a value has its case here. */
    for (int id = 0; id < SETTINGS_COUNT; id++) {
        bool found = false;
        for (size_t i = 0; i < n; i++)
            found = found || changes[i].id == (enum settings_id)id;
        if (!found && settings_opts[id].kind != SETTINGS_KIND_ACTION)
            test__fail(__FILE__, __LINE__, "no change of --%s tried", settings_opts[id].name);
    }
    set_env(NULL);
    struct wd_options before, same, after;
    ASSERT_EQ(load(&before, NULL), 0);
    /* The same values, from another layer, are no change. */
    ASSERT_EQ(load(&same, "-c", "100", "--queues", " default ", "--http", "off", NULL), 0);
    ASSERT(wd_options_restart_needed(&before, &same) == NULL);
    ASSERT_EQ(settings_first_change(&before.all, &same.all, SETTINGS_LIVE), -1);
    wd_options_free(&same);
    for (size_t i = 0; i < n; i++) {
        set_env(changes[i].env, NULL);
        ASSERT_EQ(load(&after, NULL), 0);
        const char *restart = wd_options_restart_needed(&before, &after);
        int live = settings_first_change(&before.all, &after.all, SETTINGS_LIVE);
        if (changes[i].id == SETTINGS_LOGLEVEL) {
            ASSERT(restart == NULL);
            ASSERT_EQ(live, SETTINGS_LOGLEVEL);
        } else if (restart == NULL || strcmp(restart, settings_opts[changes[i].id].name) != 0) {
            test__fail(__FILE__, __LINE__, "%s: restart needed for %s", changes[i].env,
                       restart ? restart : "nothing");
        } else {
            ASSERT_EQ(live, -1);
        }
        wd_options_free(&after);
    }
    wd_options_free(&before);
    remove_config();
}

TEST(http_methods_come_from_the_option_and_bad_lists_are_rejected) {
    set_env(NULL);
    struct wd_options o;
    ASSERT_EQ(load(&o, NULL), 0);
    ASSERT(o.http_methods == NULL);
    wd_options_free(&o);
    ASSERT_EQ(load(&o, "--http-methods", "PROPFIND,REPORT", NULL), 0);
    ASSERT_STREQ(o.http_methods, "PROPFIND,REPORT");
    wd_options_free(&o);
    ASSERT_LOAD_FAILS("workerd: --http-methods: a method may hold only letters, digits and "
                      "!#$%&'*+-.^_`|~ (an HTTP token) (from the command line)",
                      "--http-methods", "GET /x HTTP/1.1");
    set_env("WORKERD_HTTP_METHODS=A,,B", NULL);
    ASSERT_LOAD_FAILS("workerd: WORKERD_HTTP_METHODS: an entry of the list is empty (from the "
                      "environment)",
                      NULL);
    set_env(NULL);
}

/* --exec-task and --exec-env are lists: repeated on the command line they add up, commas
 * separate entries in every layer, "\," keeps a comma inside one, and a higher layer
 * replaces a lower one's whole list. */
TEST(exec_lists_add_up_on_the_command_line_and_escape_commas) {
    set_env("WORKERD_EXEC_TASK=old=/bin/true", "WORKERD_EXEC_ENV=A=1\\,2,B=3", NULL);
    struct wd_options o;
    ASSERT_EQ(load(&o, NULL), 0);
    ASSERT_EQ(o.nexec_tasks, 1);
    ASSERT_STREQ(o.exec_tasks[0], "old=/bin/true");
    ASSERT_EQ(o.nexec_env, 2);
    ASSERT_STREQ(o.exec_env[0], "A=1,2");
    ASSERT_STREQ(o.exec_env[1], "B=3");
    ASSERT_EQ(o.exec_max_output, 10 << 20);
    wd_options_free(&o);
    ASSERT_EQ(load(&o, "--exec-task", "a=/bin/true", "--exec-task", "b=/bin/false,c=/bin/sh",
                   "--exec-env", "X=a\\\\b", "--exec-max-output", "64K", NULL),
              0);
    ASSERT_EQ(o.nexec_tasks, 3);
    ASSERT_STREQ(o.exec_tasks[0], "a=/bin/true");
    ASSERT_STREQ(o.exec_tasks[1], "b=/bin/false");
    ASSERT_STREQ(o.exec_tasks[2], "c=/bin/sh");
    ASSERT_EQ(o.nexec_env, 1);
    ASSERT_STREQ(o.exec_env[0], "X=a\\b");
    ASSERT_EQ(o.exec_max_output, 64 << 10);
    wd_options_free(&o);
    /* In the config file, single quotes keep the backslash for the list. */
    set_env(NULL);
    char *path = write_config("WORKERD_EXEC_ENV='NO_PROXY=localhost\\,127.0.0.1'\n");
    ASSERT_EQ(load(&o, "--config", path, NULL), 0);
    ASSERT_EQ(o.nexec_env, 1);
    ASSERT_STREQ(o.exec_env[0], "NO_PROXY=localhost,127.0.0.1");
    wd_options_free(&o);
    remove_config();
    set_env(NULL);
}

TEST(exec_entries_that_cannot_run_are_refused_with_their_layer) {
    set_env(NULL);
    ASSERT_LOAD_FAILS("workerd: --exec-task: 'noop' is not NAME=PATH (from the command line)",
                      "--exec-task", "noop");
    ASSERT_LOAD_FAILS("workerd: --exec-task: x: /nonexistent/prog: No such file or directory "
                      "(from the command line)",
                      "--exec-task", "ok=/bin/true", "--exec-task", "x=/nonexistent/prog");
    ASSERT_LOAD_FAILS("workerd: --exec-task: a: the path 'true' is not absolute (from the "
                      "command line)",
                      "--exec-task", "a=true");
    ASSERT_LOAD_FAILS("workerd: --exec-task: an entry of the list is empty (from the command "
                      "line)",
                      "--exec-task", "a=/bin/true,");
    ASSERT_LOAD_FAILS("workerd: --exec-env: 'NOVALUE' is not KEY=VALUE (from the command line)",
                      "--exec-env", "NOVALUE");
    set_env("WORKERD_EXEC_ENV=NO_PROXY=a,b", NULL);
    ASSERT_LOAD_FAILS("workerd: WORKERD_EXEC_ENV: 'b' is not KEY=VALUE (from the environment)",
                      NULL);
    set_env(NULL);
    ASSERT_LOAD_FAILS("workerd: --exec-max-output: '100' is out of range, expected "
                      "1024..536870912 (from the command line)",
                      "--exec-max-output", "100");
}
