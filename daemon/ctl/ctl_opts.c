/*
 * ctl_opts.c - workerctl's option parser and settings.
 *
 * workerctl reads the same settings as workerd, so that one config file, one environment
 * and the same -b URL point both at the same Redis: -b/--broker, --result-backend, --prefix,
 * --result-expires and --config, each also WORKERD_<NAME> and (but --config) a key of the
 * --config FILE / WORKERD_CONFIG file. Their names, defaults, checks, layers (defaults <
 * config file < environment < command line) and messages are the shared settings module's
 * (settings.h), the very entries workerd uses; this file only says which of them workerctl
 * reads and what its help says of each. Keys of the file that only workerd uses
 * (WORKERD_POOL, ...) are skipped unchecked, and unknown keys are skipped too: the file is
 * workerd's.
 *
 * workerd's command-line parser cannot be reused: it rejects operands and unknown options,
 * and workerctl's commands have both. So this is a small word parser of its own: long
 * options with "=VALUE" or a separate word, single-letter options, "--" ending them, and
 * the shared options accepted anywhere on the line (`workerctl queues --json` and
 * `workerctl --json queues` both work). Unlike getopt_long it takes no abbreviations, and a
 * word like "-5" is an operand (a task argument), not an option.
 *
 * Runs on the main thread; blocking file I/O (the config file).
 */
#include "ctl.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "settings.h"

/* The settings workerctl reads, in the order of its help, with what the help says of each
 * (the names, variable and default come from the settings table). */
static const struct {
    enum settings_id id;
    const char *help; /* lines separated by '\n' */
} shared[] = {
    {SETTINGS_BROKER, "redis://[user:password@]host[:port][/db] or\n"
                      "unix://[user:password@]/path[?db=N]"},
    {SETTINGS_RESULT_BACKEND, "where results are stored; default: the broker"},
    {SETTINGS_PREFIX, "key prefix"},
    {SETTINGS_RESULT_EXPIRES, "seconds results (and revocations) are kept; 0: forever"},
    {SETTINGS_BEAT, "the beat file, as workerd reads it (for `beat`)"},
    {SETTINGS_CONFIG, "KEY=VALUE file, as workerd reads it"},
};
#define NSHARED (sizeof shared / sizeof *shared)

/* Ids of the options every command has; a shared setting's id is SH_SETTING + its
 * settings id. */
enum { SH_JSON = 1000, SH_HELP, SH_SETTING = 2000 };

static const ctl_opt own_opts[] = {
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

/* A shared setting by its long name (name[0..len)) or, when name is NULL, its letter:
 * true and *o filled in. */
static bool find_shared(const char *name, size_t len, int letter, ctl_opt *o) {
    for (size_t i = 0; i < NSHARED; i++) {
        const struct settings_opt *d = &settings_opts[shared[i].id];
        if (name != NULL ? strlen(d->name) == len && strncmp(d->name, name, len) == 0
                         : d->letter != 0 && d->letter == letter) {
            *o = (ctl_opt){d->name, d->letter, CTL_ARG, SH_SETTING + (int)shared[i].id};
            return true;
        }
    }
    return false;
}

bool ctl_shared_takes_value(const char *word) {
    ctl_opt o;
    if (word[0] != '-')
        return false;
    if (word[1] == '-')
        return strchr(word, '=') == NULL && find_shared(word + 2, strlen(word + 2), 0, &o);
    return word[1] != '\0' && word[2] == '\0' && find_shared(NULL, 0, word[1], &o);
}

void ctl_shared_help(FILE *out) {
    fprintf(out, "\nConnection (as workerd's; each also WORKERD_<NAME> and a key of the config "
                 "file):\n");
    for (size_t i = 0; i < NSHARED; i++) {
        const struct settings_opt *d = &settings_opts[shared[i].id];
        char opt[80];
        int n = d->letter ? snprintf(opt, sizeof opt, "  -%c, --%s=%s", d->letter, d->name, d->arg)
                          : snprintf(opt, sizeof opt, "      --%s=%s", d->name, d->arg);
        const char *p = shared[i].help;
        size_t len = strcspn(p, "\n");
        if (n <= 26)
            fprintf(out, "%-26s  %.*s\n", opt, (int)len, p);
        else
            fprintf(out, "%s\n%28s%.*s\n", opt, "", (int)len, p);
        for (p += len; *p == '\n'; p += len) {
            p++;
            len = strcspn(p, "\n");
            fprintf(out, "%28s%.*s\n", "", (int)len, p);
        }
        if (d->deflt != NULL)
            fprintf(out, "%28s[%s; default: %s]\n", "", d->env, d->deflt);
        else
            fprintf(out, "%28s[%s]\n", "", d->env);
    }
    fprintf(out, "      --json                print one JSON document for scripts\n"
                 "  -h, --help                print this help\n");
}

/* Store one option: the shared ones into c, the command's into out. */
static int store(ctl *c, ctl_args *out, const ctl_opt *o, const char *value) {
    if (o->id >= SH_SETTING && o->id < SH_SETTING + SETTINGS_COUNT) {
        c->cli[o->id - SH_SETTING] = value;
        return CTL_OK;
    }
    switch (o->id) {
    case SH_JSON:
        c->json = true;
        return CTL_OK;
    case SH_HELP:
        ctl_command_help(c->command, stdout);
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
        ctl_opt setting;
        const char *value = NULL;
        bool attached = false;
        char shown[80];
        if (w[1] == '-') {
            size_t len = strcspn(w + 2, "=");
            snprintf(shown, sizeof shown, "--%.*s", (int)len, w + 2);
            o = find_long(opts, w + 2, len);
            if (o == NULL)
                o = find_long(own_opts, w + 2, len);
            if (o == NULL && find_shared(w + 2, len, 0, &setting))
                o = &setting;
            if (w[2 + len] == '=') {
                value = w + 3 + len;
                attached = true;
            }
        } else {
            snprintf(shown, sizeof shown, "-%c", w[1]);
            o = find_letter(opts, w[1]);
            if (o == NULL)
                o = find_letter(own_opts, w[1]);
            if (o == NULL && find_shared(NULL, 0, w[1], &setting))
                o = &setting;
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
            if (i + 1 < argc &&
                settings_parse_seconds(argv[i + 1], CTL_WAIT_MAX, &ignored, NULL, 0) == 0)
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

int ctl_settle(ctl *c) {
    struct settings_sources src = {
        .program = "workerctl", .getenv_fn = getenv, .unknown_keys_ok = true};
    for (size_t i = 0; i < NSHARED; i++)
        src.uses |= SETTINGS_BIT(shared[i].id);
    memcpy(src.cli, c->cli, sizeof src.cli);
    struct settings s;
    char err[1024];
    if (settings_load(&s, &src, err, sizeof err) < 0) {
        fprintf(stderr, "%s\n", err); /* "workerctl: ..." */
        return CTL_USAGE;
    }
    const struct settings_value *broker = &s.v[SETTINGS_BROKER];
    const struct settings_value *results = &s.v[SETTINGS_RESULT_BACKEND];
    int code = CTL_OK;
    bool separate = results->set && strcmp(results->text, broker->text) != 0;
    char *url = strdup(broker->text), *results_url = separate ? strdup(results->text) : NULL;
    if (url == NULL || (separate && results_url == NULL)) {
        free(url);
        free(results_url);
        code = ctl_error(CTL_FAIL, "out of memory");
        goto out;
    }
    /* settings_load checked the prefix with the same broker_check_prefix. */
    broker_keys_init(&c->keys, s.v[SETTINGS_PREFIX].text);
    c->result_expires = s.v[SETTINGS_RESULT_EXPIRES].num;
    free(c->beat);
    c->beat = s.v[SETTINGS_BEAT].set ? strdup(s.v[SETTINGS_BEAT].text) : NULL;
    free(c->broker);
    free(c->result_backend);
    c->broker = url;
    c->result_backend = results_url;
    snprintf(c->broker_redacted, sizeof c->broker_redacted, "%s", broker->redacted);
    snprintf(c->results_redacted, sizeof c->results_redacted, "%s",
             results_url ? results->redacted : broker->redacted);
out:
    settings_free(&s);
    return code;
}

void ctl_free(ctl *c) {
    if (c->results_conn != NULL && c->results_conn != c->broker_conn)
        redisFree(c->results_conn);
    if (c->broker_conn != NULL)
        redisFree(c->broker_conn);
    free(c->broker);
    free(c->result_backend);
    free(c->beat);
    memset(c, 0, sizeof *c);
}
