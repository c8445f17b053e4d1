/*
 * ctl_opts.c - workerctl's option parser and settings.
 *
 * workerctl reads the same settings as workerd, so that one config file, one environment
 * and the same -b URL point both at the same Redis: -b/--broker, --result-backend, --prefix
 * and --result-expires, each also WORKERD_<NAME> and a key of the --config FILE /
 * WORKERD_CONFIG file (read with workerd's own parser, wd_conffile.h). The precedence is
 * workerd's: defaults < config file < environment < command line. Keys of the file that
 * only workerd uses (WORKERD_POOL, ...) are ignored, not errors: the file is shared.
 *
 * workerd's wd_options_load cannot be reused: it rejects operands and unknown options, and
 * workerctl's commands have both. So this is a small parser of its own, in the same spirit:
 * long options with "=VALUE" or a separate word, single-letter options, "--" ending them,
 * and the shared options accepted anywhere on the line (`workerctl queues --json` and
 * `workerctl --json queues` both work). Unlike getopt_long it takes no abbreviations, and a
 * word like "-5" is an operand (a task argument), not an option.
 *
 * Only the effective value of a setting is validated (the URL with the runtime's own
 * parser, green_redis_url_parse, the prefix with broker_check_prefix); the message names
 * where it came from. Runs on the main thread; blocking file I/O (the config file).
 */
#include "ctl.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "green_redis.h"
#include "wd_conffile.h"

enum shared_id {
    SH_BROKER = 1000,
    SH_RESULT_BACKEND,
    SH_PREFIX,
    SH_CONFIG,
    SH_RESULT_EXPIRES,
    SH_JSON,
    SH_HELP,
};

static const ctl_opt shared_opts[] = {
    {"broker", 'b', CTL_ARG, SH_BROKER},
    {"result-backend", 0, CTL_ARG, SH_RESULT_BACKEND},
    {"prefix", 0, CTL_ARG, SH_PREFIX},
    {"config", 0, CTL_ARG, SH_CONFIG},
    {"result-expires", 0, CTL_ARG, SH_RESULT_EXPIRES},
    {"json", 0, CTL_NOARG, SH_JSON},
    {"help", 'h', CTL_NOARG, SH_HELP},
    {NULL, 0, CTL_NOARG, 0},
};

int ctl_error(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("workerctl: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return code;
}

int ctl_usage(ctl *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("workerctl: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    if (c->command != NULL)
        fprintf(stderr, "Try 'workerctl %s --help'.\n", c->command->name);
    else
        fprintf(stderr, "Try 'workerctl --help'.\n");
    return CTL_USAGE;
}

int ctl_parse_seconds(const char *text, double *out) {
    char *end;
    if (text == NULL || !(isdigit((unsigned char)*text) || *text == '.'))
        return -1;
    errno = 0;
    double v = strtod(text, &end);
    if (errno != 0 || *end != '\0' || !(v >= 0 && v <= 1e9))
        return -1;
    *out = v;
    return 0;
}

int ctl_parse_index(const char *text, long *out) {
    char *end;
    if (text == NULL || !isdigit((unsigned char)*text))
        return -1;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno != 0 || *end != '\0')
        return -1;
    *out = v;
    return 0;
}

static const ctl_opt *find_long(const ctl_opt *opts, const char *name, size_t len) {
    for (int i = 0; opts != NULL && opts[i].name != NULL; i++)
        if (strlen(opts[i].name) == len && strncmp(opts[i].name, name, len) == 0)
            return &opts[i];
    return NULL;
}

static const ctl_opt *find_letter(const ctl_opt *opts, int letter) {
    for (int i = 0; opts != NULL && opts[i].name != NULL; i++)
        if (opts[i].letter == letter)
            return &opts[i];
    return NULL;
}

/* Store one option: the shared ones into c, the command's into out. */
static int store(ctl *c, ctl_args *out, const ctl_opt *o, const char *value) {
    switch (o->id) {
    case SH_BROKER:
        c->cli_broker = value;
        return CTL_OK;
    case SH_RESULT_BACKEND:
        c->cli_result_backend = value;
        return CTL_OK;
    case SH_PREFIX:
        c->cli_prefix = value;
        return CTL_OK;
    case SH_CONFIG:
        c->cli_config = value;
        return CTL_OK;
    case SH_RESULT_EXPIRES:
        c->cli_expires = value;
        return CTL_OK;
    case SH_JSON:
        c->json = true;
        return CTL_OK;
    case SH_HELP:
        fputs(c->command->help, stdout);
        return CTL_DONE;
    default:
        if (out->nopt >= CTL_MAX_ITEMS)
            return ctl_usage(c, "too many options");
        out->opt[out->nopt].id = o->id;
        out->opt[out->nopt].value = value;
        out->nopt++;
        return CTL_OK;
    }
}

/* A word that looks like an option but is a number (a task argument such as -5). */
static bool negative_number(const char *w) {
    return w[0] == '-' && (isdigit((unsigned char)w[1]) || w[1] == '.');
}

int ctl_parse(ctl *c, int argc, char **argv, const ctl_opt *opts, ctl_args *out) {
    memset(out, 0, sizeof *out);
    bool only_operands = false;
    for (int i = 1; i < argc; i++) {
        char *w = argv[i];
        if (only_operands || w[0] != '-' || w[1] == '\0' || negative_number(w)) {
            if (out->npos >= CTL_MAX_ITEMS)
                return ctl_usage(c, "too many arguments");
            out->pos[out->npos++] = w;
            continue;
        }
        if (strcmp(w, "--") == 0) {
            only_operands = true;
            continue;
        }
        const ctl_opt *o;
        const char *value = NULL;
        bool attached = false;
        char shown[80];
        if (w[1] == '-') {
            size_t len = strcspn(w + 2, "=");
            snprintf(shown, sizeof shown, "--%.*s", (int)len, w + 2);
            o = find_long(opts, w + 2, len);
            if (o == NULL)
                o = find_long(shared_opts, w + 2, len);
            if (w[2 + len] == '=') {
                value = w + 3 + len;
                attached = true;
            }
        } else {
            snprintf(shown, sizeof shown, "-%c", w[1]);
            o = find_letter(opts, w[1]);
            if (o == NULL)
                o = find_letter(shared_opts, w[1]);
            if (w[2] != '\0') {
                value = w + 2;
                attached = true;
            }
        }
        if (o == NULL)
            return ctl_usage(c, "unknown option '%s'", shown);
        if (o->arg == CTL_NOARG && attached)
            return ctl_usage(c, "option '%s' takes no value", shown);
        if (o->arg == CTL_ARG && !attached) {
            if (i + 1 >= argc)
                return ctl_usage(c, "option '%s' needs a value", shown);
            value = argv[++i];
        }
        if (o->arg == CTL_OPTNUM && !attached) {
            double ignored;
            if (i + 1 < argc && ctl_parse_seconds(argv[i + 1], &ignored) == 0)
                value = argv[++i];
        }
        if (o->arg != CTL_NOARG && value != NULL && *value == '\0')
            return ctl_usage(c, "option '%s' has an empty value", shown);
        int r = store(c, out, o, value);
        if (r != CTL_OK)
            return r;
    }
    return ctl_settle(c);
}

/* ---- Settings ------------------------------------------------------------------------ */

/* One setting through its layers: the effective value and where it came from. */
struct setting {
    const char *env; /* the variable and config key */
    char *value;     /* owned */
    char source[CTL_URL_MAX];
};

enum { S_BROKER, S_RESULT_BACKEND, S_PREFIX, S_EXPIRES, S_COUNT };

static int set_value(struct setting *s, const char *value, const char *source) {
    char *copy = strdup(value);
    if (copy == NULL)
        return ctl_error(-1, "out of memory");
    free(s->value);
    s->value = copy;
    snprintf(s->source, sizeof s->source, "%.1000s", source);
    return 0;
}

static int file_entry(void *ud, const char *key, const char *value, int line, char *errbuf,
                      size_t errlen) {
    struct setting *s = ud;
    for (int i = 0; i < S_COUNT; i++) {
        if (strcmp(s[i].env, key) != 0)
            continue;
        char source[CTL_URL_MAX + 32];
        /* The file name was stashed in the last setting's source by read_config. */
        snprintf(source, sizeof source, "from %s line %d", s[S_COUNT].source, line);
        if (set_value(&s[i], value, source) < 0) {
            snprintf(errbuf, errlen, "workerctl: out of memory");
            return -1;
        }
        break;
    }
    return 0; /* workerd's other keys: not ours */
}

/* Read the config file (at most 1 MiB) and apply its keys. */
static int read_config(struct setting *s, const char *path, const char *how) {
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return ctl_error(CTL_USAGE, "%s: cannot read config file '%s': %s", how, path,
                         strerror(errno));
    const size_t max = 1 << 20;
    char *text = malloc(max + 1);
    size_t len = text ? fread(text, 1, max + 1, f) : 0;
    bool bad = text == NULL || ferror(f) || len > max;
    fclose(f);
    if (bad) {
        free(text);
        return ctl_error(CTL_USAGE, "%s: cannot read config file '%s': %s", how, path,
                         text == NULL ? "out of memory" : "unreadable or larger than 1 MiB");
    }
    char err[1024];
    snprintf(s[S_COUNT].source, sizeof s[S_COUNT].source, "%s", path);
    int r = wd_conffile_parse(text, len, path, file_entry, s, err, sizeof err);
    free(text);
    if (r < 0) {
        /* The parser's messages start with "workerd: "; this is workerctl speaking. */
        const char *msg = strncmp(err, "workerd: ", 9) == 0 ? err + 9 : err;
        msg = strncmp(msg, "workerctl: ", 11) == 0 ? msg + 11 : msg;
        return ctl_error(CTL_USAGE, "%s", msg);
    }
    return CTL_OK;
}

static int check_url(const struct setting *s, char *redacted) {
    char why[512];
    green_redis_url u;
    int r = green_redis_url_parse(s->value, &u, why, sizeof why);
    if (r < 0)
        return ctl_error(CTL_USAGE, "%s: %s (%s)", s->env, r == -ENOMEM ? "out of memory" : why,
                         s->source);
    green_redis_url_clear(&u);
    green_redis_url_redact(s->value, redacted, CTL_URL_MAX);
    return CTL_OK;
}

int ctl_settle(ctl *c) {
    struct setting s[S_COUNT + 1] = {
        [S_BROKER] = {.env = "WORKERD_BROKER"},
        [S_RESULT_BACKEND] = {.env = "WORKERD_RESULT_BACKEND"},
        [S_PREFIX] = {.env = "WORKERD_PREFIX"},
        [S_EXPIRES] = {.env = "WORKERD_RESULT_EXPIRES"},
        [S_COUNT] = {.env = ""},
    };
    int code = CTL_USAGE;
    if (set_value(&s[S_BROKER], "redis://127.0.0.1:6379/0", "the default") < 0 ||
        set_value(&s[S_PREFIX], BROKER_PREFIX_DEFAULT, "the default") < 0 ||
        set_value(&s[S_EXPIRES], "86400", "the default") < 0)
        goto out;

    const char *config = c->cli_config, *how = "--config";
    if (config == NULL) {
        config = getenv("WORKERD_CONFIG");
        how = "WORKERD_CONFIG";
    }
    if (config != NULL && *config != '\0' && read_config(s, config, how) != CTL_OK)
        goto out;

    for (int i = 0; i < S_COUNT; i++) {
        const char *v = getenv(s[i].env);
        if (v != NULL && *v != '\0' && set_value(&s[i], v, "from the environment") < 0)
            goto out;
    }
    const char *cli[S_COUNT] = {c->cli_broker, c->cli_result_backend, c->cli_prefix,
                                c->cli_expires};
    static const char *const cli_names[S_COUNT] = {"--broker", "--result-backend", "--prefix",
                                                   "--result-expires"};
    for (int i = 0; i < S_COUNT; i++) {
        if (cli[i] != NULL && set_value(&s[i], cli[i], "from the command line") < 0)
            goto out;
        if (cli[i] != NULL)
            s[i].env = cli_names[i];
    }

    if (check_url(&s[S_BROKER], c->broker_redacted) != CTL_OK)
        goto out;
    if (s[S_RESULT_BACKEND].value != NULL &&
        check_url(&s[S_RESULT_BACKEND], c->results_redacted) != CTL_OK)
        goto out;
    const char *why = broker_check_prefix(s[S_PREFIX].value);
    if (why != NULL || broker_keys_init(&c->keys, s[S_PREFIX].value) < 0) {
        ctl_error(CTL_USAGE, "%s: %s (%s)", s[S_PREFIX].env, why ? why : "bad prefix",
                  s[S_PREFIX].source);
        goto out;
    }
    char *end;
    errno = 0;
    long expires = strtol(s[S_EXPIRES].value, &end, 10);
    if (errno != 0 || *end != '\0' || end == s[S_EXPIRES].value || expires < 0 ||
        expires > 315360000) {
        ctl_error(CTL_USAGE, "%s: '%s' is not a number of seconds in 0..315360000 (%s)",
                  s[S_EXPIRES].env, s[S_EXPIRES].value, s[S_EXPIRES].source);
        goto out;
    }
    c->result_expires = expires;

    free(c->broker);
    free(c->result_backend);
    c->broker = s[S_BROKER].value;
    s[S_BROKER].value = NULL;
    if (s[S_RESULT_BACKEND].value == NULL || strcmp(s[S_RESULT_BACKEND].value, c->broker) == 0) {
        c->result_backend = NULL;
        snprintf(c->results_redacted, sizeof c->results_redacted, "%s", c->broker_redacted);
    } else {
        c->result_backend = s[S_RESULT_BACKEND].value;
        s[S_RESULT_BACKEND].value = NULL;
    }
    code = CTL_OK;
out:
    for (int i = 0; i < S_COUNT; i++)
        free(s[i].value);
    return code;
}

void ctl_free(ctl *c) {
    if (c->results_conn != NULL && c->results_conn != c->broker_conn)
        redisFree(c->results_conn);
    if (c->broker_conn != NULL)
        redisFree(c->broker_conn);
    free(c->broker);
    free(c->result_backend);
    memset(c, 0, sizeof *c);
}
