/*
 * web_main.c - workerd-web's main: the options, the refusal to listen beyond loopback
 * without --auth, the Redis connections and the server (web.h).
 *
 *   workerd-web [-b URL] [--result-backend URL] [--prefix P] [--config FILE]
 *               [--result-expires S] [--listen ADDR:PORT] [--auth FILE]
 *
 * The shared options come from the settings table with workerd's and workerctl's
 * defaults, environment variables and config file (settings.h). Exit codes: 0 after
 * SIGTERM or SIGINT, 2 for bad usage or settings (one line on stderr, saying why), 1 when
 * it cannot listen or start. Redis need not be up at start: the connection reconnects by
 * itself and the API answers 503 meanwhile.
 *
 * Runs on one thread: main() parses, then green_run runs serve() as the hub's first
 * greenlet, which owns everything until a signal sets the stop event.
 */
#include "web.h"

#include "broker_conn.h"
#include "green.h"
#include "green_check.h"
#include "green_io.h"
#include "green_sync.h"
#include "settings.h"

#include <arpa/inet.h>
#include <ev.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static const char USAGE[] =
    "Usage: workerd-web [OPTIONS]\n"
    "The workerd dashboard: every worker, queue, task and dead letter of one Redis, in a\n"
    "browser, and a JSON API for scripts (see README.md \"The dashboard\").\n\n"
    "  --listen ADDR:PORT   where to serve (default " WEB_DEFAULT_LISTEN "); an address\n"
    "                       other than loopback needs --auth\n"
    "  --auth FILE          require credentials: lines 'USER:HASH' (crypt(3): yescrypt\n"
    "                       or sha512-crypt) and/or 'token:SECRET' (a bearer token)\n";

struct run {
    struct web w;
    const char *host;
    int port;
    char *broker, *results;
    int code;
};

static void on_state(void *arg, const char *name, bool up, const char *err) {
    (void)arg;
    if (up)
        fprintf(stderr, "workerd-web: %s: connected\n", name);
    else
        fprintf(stderr, "workerd-web: %s: down: %s\n", name, err ? err : "?");
}

static green_event stop_ev;

static void on_signal(struct ev_loop *loop, ev_signal *s, int revents) {
    (void)loop, (void)s, (void)revents;
    green_event_set(&stop_ev);
}

static void *serve(void *arg) {
    struct run *r = arg;
    struct web *w = &r->w;
    green_event_init(&stop_ev);
    w->conn = broker_conn_new(r->broker, "broker", on_state, w);
    w->results = r->results ? broker_conn_new(r->results, "result backend", on_state, w) : w->conn;
    int fd = w->conn && w->results ? green_tcp_listen(r->host, r->port, 1024) : -ENOMEM;
    if (fd < 0) {
        fprintf(stderr, "workerd-web: cannot listen on %s:%d: %s\n", r->host, r->port,
                strerror(-fd));
        r->code = 1;
    } else {
        w->port = green_sock_port(fd);
        w->started_at = green_wallclock();
        bool v6 = strchr(r->host, ':') != NULL;
        fprintf(stderr, "workerd-web: serving http://%s%s%s:%d/ (Redis %s, prefix '%s'%s)\n",
                v6 ? "[" : "", r->host, v6 ? "]" : "", w->port, w->broker_redacted, w->keys.prefix,
                w->auth ? ", --auth" : ", no --auth: loopback only");
        ev_signal sigs[2];
        const int which[2] = {SIGTERM, SIGINT};
        for (int i = 0; i < 2; i++) {
            ev_signal_init(&sigs[i], on_signal, which[i]);
            ev_signal_start(green_loop(), &sigs[i]);
        }
        int rc = web_http_serve(w, fd, &stop_ev);
        if (rc) {
            fprintf(stderr, "workerd-web: cannot serve: %s\n", strerror(-rc));
            r->code = 1;
        }
        for (int i = 0; i < 2; i++)
            ev_signal_stop(green_loop(), &sigs[i]);
        close(fd);
    }
    if (w->results && w->results != w->conn)
        broker_conn_close(w->results);
    if (w->conn)
        broker_conn_close(w->conn);
    green_event_destroy(&stop_ev);
    return NULL;
}

/* ADDR:PORT, [V6]:PORT into host (numeric) and port; false when malformed. */
static bool parse_listen(char *text, const char **host, int *port) {
    char *colon = strrchr(text, ':'), *end;
    if (!colon || colon == text)
        return false;
    *colon = '\0';
    long p = strtol(colon + 1, &end, 10);
    if (*end || end == colon + 1 || p < 0 || p > 65535)
        return false;
    *port = (int)p;
    if (text[0] == '[') {
        size_t n = strlen(text);
        if (n < 3 || text[n - 1] != ']')
            return false;
        text[n - 1] = '\0';
        text++;
    }
    unsigned char buf[16];
    if (inet_pton(AF_INET, text, buf) != 1 && inet_pton(AF_INET6, text, buf) != 1)
        return false;
    *host = text;
    return true;
}

static bool is_loopback(const char *host) {
    unsigned char b[16];
    if (inet_pton(AF_INET, host, b) == 1)
        return b[0] == 127;
    static const unsigned char one[16] = {[15] = 1};
    return inet_pton(AF_INET6, host, b) == 1 && memcmp(b, one, 16) == 0;
}

int main(int argc, char **argv) {
    enum { O_RB = 256, O_PREFIX, O_CONFIG, O_EXPIRES, O_LISTEN, O_AUTH };
    static const struct option longs[] = {
        {"broker", required_argument, NULL, 'b'},
        {"result-backend", required_argument, NULL, O_RB},
        {"prefix", required_argument, NULL, O_PREFIX},
        {"config", required_argument, NULL, O_CONFIG},
        {"result-expires", required_argument, NULL, O_EXPIRES},
        {"listen", required_argument, NULL, O_LISTEN},
        {"auth", required_argument, NULL, O_AUTH},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    struct settings_sources src = {
        .program = "workerd-web", .getenv_fn = getenv, .unknown_keys_ok = true};
    src.uses = SETTINGS_BIT(SETTINGS_BROKER) | SETTINGS_BIT(SETTINGS_RESULT_BACKEND) |
               SETTINGS_BIT(SETTINGS_PREFIX) | SETTINGS_BIT(SETTINGS_CONFIG) |
               SETTINGS_BIT(SETTINGS_RESULT_EXPIRES);
    char listen_buf[300] = WEB_DEFAULT_LISTEN;
    const char *auth_path = NULL;
    int opt;
    signal(SIGPIPE, SIG_IGN);
    while ((opt = getopt_long(argc, argv, "b:hV", longs, NULL)) != -1) {
        switch (opt) {
        case 'b':
            src.cli[SETTINGS_BROKER] = optarg;
            break;
        case O_RB:
            src.cli[SETTINGS_RESULT_BACKEND] = optarg;
            break;
        case O_PREFIX:
            src.cli[SETTINGS_PREFIX] = optarg;
            break;
        case O_CONFIG:
            src.cli[SETTINGS_CONFIG] = optarg;
            break;
        case O_EXPIRES:
            src.cli[SETTINGS_RESULT_EXPIRES] = optarg;
            break;
        case O_LISTEN:
            snprintf(listen_buf, sizeof listen_buf, "%s", optarg);
            break;
        case O_AUTH:
            auth_path = optarg;
            break;
        case 'h':
            fputs(USAGE, stdout);
            settings_print_help(stdout, src.uses & ~SETTINGS_BIT(SETTINGS_CONFIG));
            return 0;
        case 'V':
            printf("workerd-web %s\n", settings_version());
            return 0;
        default:
            fprintf(stderr, "workerd-web: see --help\n");
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "workerd-web: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    static struct run r;
    char err[1024];
    if (!parse_listen(listen_buf, &r.host, &r.port)) {
        fprintf(stderr, "workerd-web: --listen: '%s' is not ADDR:PORT with a numeric address\n",
                listen_buf);
        return 2;
    }
    if (!auth_path && !is_loopback(r.host)) {
        fprintf(stderr,
                "workerd-web: refusing to listen on %s without --auth: anyone who can reach it "
                "could purge queues and revoke tasks; give --auth FILE (users with crypt(3) "
                "hashes or a bearer token) or listen on 127.0.0.1\n",
                r.host);
        return 2;
    }
    if (auth_path && !(r.w.auth = web_auth_load(auth_path, err, sizeof err))) {
        fprintf(stderr, "workerd-web: %s\n", err);
        return 2;
    }
    struct settings s;
    if (settings_load(&s, &src, err, sizeof err) < 0) {
        fprintf(stderr, "%s\n", err);
        web_auth_free(r.w.auth);
        return 2;
    }
    const struct settings_value *b = &s.v[SETTINGS_BROKER], *rb = &s.v[SETTINGS_RESULT_BACKEND];
    r.broker = strdup(b->text);
    r.results = rb->set && strcmp(rb->text, b->text) != 0 ? strdup(rb->text) : NULL;
    snprintf(r.w.broker_redacted, sizeof r.w.broker_redacted, "%s", b->redacted);
    broker_keys_init(&r.w.keys, s.v[SETTINGS_PREFIX].text);
    r.w.result_expires = s.v[SETTINGS_RESULT_EXPIRES].num;
    settings_free(&s);
    /* WEB_MAX_CONNS browsers and the Redis links need more descriptors than the usual
     * soft limit of 1024: raise it to the hard limit, as workerd does. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    int rc = green_run(NULL, NULL, serve, &r, NULL);
    if (rc) {
        fprintf(stderr, "workerd-web: cannot start: %s\n", strerror(-rc));
        r.code = 1;
    }
    free(r.broker);
    free(r.results);
    free(r.w.overview);
    web_auth_free(r.w.auth);
    return r.code;
}
