/*
 * settings_load.c - the layers of settings.h: defaults, config file, environment, command
 * line, each value checked by settings__set (settings_value.c) as it is applied, with the
 * layer it came from in the message. Also the reload comparison and the help text, which
 * are driven by the same table.
 *
 * Everything is built in a local struct that reaches the caller only on success.
 *
 * Runs on the main thread's stack at start-up or reload; blocking file I/O (the config
 * file, at most 1 MiB); never yields.
 */
#include "settings_internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "settings_conffile.h"

_Static_assert(SETTINGS_COUNT <= 64, "settings_set has one bit per option");

int settings__fail(struct settings__load *l, const char *fmt, ...) {
    char what[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    switch (l->layer) {
    case SETTINGS__FILE:
        snprintf(l->errbuf, l->errlen, "%s: %s (from %s line %d)", l->program, what, l->file,
                 l->line);
        break;
    case SETTINGS__ENV:
        snprintf(l->errbuf, l->errlen, "%s: %s (from the environment)", l->program, what);
        break;
    case SETTINGS__CLI:
        snprintf(l->errbuf, l->errlen, "%s: %s (from the command line)", l->program, what);
        break;
    case SETTINGS__DEFAULT:
        snprintf(l->errbuf, l->errlen, "%s: %s (from the defaults)", l->program, what);
        break;
    }
    return -1;
}

/* The config file's state while it is parsed. */
struct file_ctx {
    struct settings__load *l;
    const struct settings_sources *src;
    struct settings *s;
    bool refused; /* the callback wrote the message (else the parser did) */
};

/* The config-file callback: keys are the environment names. */
static int file_entry(void *ud, const char *key, const char *value, int line, char *errbuf,
                      size_t errlen) {
    struct file_ctx *f = ud;
    (void)errbuf, (void)errlen; /* settings__fail writes into the same buffer */
    f->l->line = line;
    for (int id = 0; id < SETTINGS_COUNT; id++) {
        const struct settings_opt *d = &settings_opts[id];
        if (d->env == NULL || d->kind == SETTINGS_KIND_FILE || strcmp(d->env, key) != 0)
            continue;
        if (!(f->src->uses & SETTINGS_BIT(id)))
            return 0; /* another program's option: not ours to check */
        if (settings__set(f->l, (enum settings_id)id, key, value, &f->s->v[id]) == 0)
            return 0;
        f->refused = true;
        return -1;
    }
    if (f->src->unknown_keys_ok)
        return 0;
    f->refused = true;
    return settings__fail(f->l, "unknown key '%s'", key);
}

/* Read the whole config file and apply it. how names the option that named the file, as
 * the user wrote it, for the message when it cannot be read. */
static int apply_file(struct settings__load *l, const struct settings_sources *src,
                      struct settings *s, const char *path, const char *how) {
    FILE *fp = fopen(path, "re");
    char *text = NULL;
    size_t len = 0;
    const size_t max = 1 << 20;
    if (fp != NULL) {
        text = malloc(max + 1);
        if (text != NULL)
            len = fread(text, 1, max + 1, fp);
    }
    if (fp == NULL || text == NULL || ferror(fp) || len > max) {
        const char *why = fp == NULL || ferror(fp) ? strerror(errno)
                          : text == NULL           ? "out of memory"
                                                   : "larger than 1 MiB";
        int r = settings__fail(l, "%s: cannot read config file '%s': %s", how, path, why);
        if (fp != NULL)
            fclose(fp);
        free(text);
        return r;
    }
    fclose(fp);
    struct file_ctx f = {.l = l, .src = src, .s = s};
    l->layer = SETTINGS__FILE;
    l->file = path;
    int r = settings_conffile_parse(text, len, path, file_entry, &f, l->errbuf, l->errlen);
    free(text);
    if (r < 0 && !f.refused) {
        /* The parser's own message, which leaves the program's name to us. */
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", l->errbuf);
        snprintf(l->errbuf, l->errlen, "%s: %s", l->program, msg);
    }
    return r;
}

int settings_load(struct settings *out, const struct settings_sources *src, char *errbuf,
                  size_t errlen) {
    struct settings__load l = {
        .program = src->program, .check = src->check, .errbuf = errbuf, .errlen = errlen};
    struct settings s = {0};
    char name[64];
    memset(out, 0, sizeof *out);
    errbuf[0] = '\0';

    /* Defaults first: the same checks as any other layer. */
    l.layer = SETTINGS__DEFAULT;
    for (int id = 0; id < SETTINGS_COUNT; id++) {
        const char *deflt = settings_opts[id].deflt;
        if ((src->uses & SETTINGS_BIT(id)) && deflt != NULL &&
            settings__set(&l, (enum settings_id)id, "default", deflt, &s.v[id]) < 0)
            goto fail;
    }

    const struct settings_opt *config_opt = &settings_opts[SETTINGS_CONFIG];
    const char *config = src->cli[SETTINGS_CONFIG];
    snprintf(name, sizeof name, "--%s", config_opt->name);
    l.layer = SETTINGS__CLI;
    if (config == NULL && src->getenv_fn != NULL) {
        config = src->getenv_fn(config_opt->env);
        snprintf(name, sizeof name, "%s", config_opt->env);
        l.layer = SETTINGS__ENV;
        if (config != NULL && *config == '\0')
            config = NULL;
    }
    if (config != NULL) {
        if (settings__set(&l, SETTINGS_CONFIG, name, config, &s.v[SETTINGS_CONFIG]) < 0 ||
            apply_file(&l, src, &s, config, name) < 0)
            goto fail;
    }

    l.layer = SETTINGS__ENV;
    for (int id = 0; src->getenv_fn != NULL && id < SETTINGS_COUNT; id++) {
        const struct settings_opt *d = &settings_opts[id];
        if (!(src->uses & SETTINGS_BIT(id)) || d->env == NULL || d->kind == SETTINGS_KIND_FILE)
            continue;
        const char *value = src->getenv_fn(d->env);
        if (value != NULL && *value != '\0' &&
            settings__set(&l, (enum settings_id)id, d->env, value, &s.v[id]) < 0)
            goto fail;
    }

    l.layer = SETTINGS__CLI;
    for (int id = 0; id < SETTINGS_COUNT; id++) {
        const struct settings_opt *d = &settings_opts[id];
        if (!(src->uses & SETTINGS_BIT(id)) || src->cli[id] == NULL ||
            d->kind == SETTINGS_KIND_FILE || d->kind == SETTINGS_KIND_ACTION)
            continue;
        snprintf(name, sizeof name, "--%s", d->name);
        if (settings__set(&l, (enum settings_id)id, name, src->cli[id], &s.v[id]) < 0)
            goto fail;
    }
    *out = s;
    return 0;

fail:
    settings_free(&s);
    return -1;
}

void settings_free(struct settings *s) {
    for (int id = 0; id < SETTINGS_COUNT; id++)
        settings__value_free(&s->v[id]);
}

/* Two optional strings, NULL equal to NULL only. */
static bool same_text(const char *a, const char *b) {
    return a == b || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static bool same_value(const struct settings_value *a, const struct settings_value *b) {
    if (a->set != b->set || a->num != b->num || a->seconds != b->seconds ||
        !same_text(a->text, b->text) || a->nitems != b->nitems)
        return false;
    for (size_t i = 0; i < a->nitems; i++)
        if (strcmp(a->items[i], b->items[i]) != 0)
            return false;
    return true;
}

int settings_first_change(const struct settings *a, const struct settings *b,
                          enum settings_apply apply) {
    for (int id = 0; id < SETTINGS_COUNT; id++)
        if (settings_opts[id].apply == apply && !same_value(&a->v[id], &b->v[id]))
            return id;
    return -1;
}

void settings_print_help(FILE *out, settings_set uses) {
    for (int id = 0; id < SETTINGS_COUNT; id++) {
        const struct settings_opt *d = &settings_opts[id];
        if (!(uses & SETTINGS_BIT(id)))
            continue;
        char opt[80];
        int n = d->letter ? snprintf(opt, sizeof opt, "  -%c, --%s", d->letter, d->name)
                          : snprintf(opt, sizeof opt, "      --%s", d->name);
        if (d->arg)
            snprintf(opt + n, sizeof opt - (size_t)n, "=%s", d->arg);
        fprintf(out, "%s\n", opt);
        for (const char *p = d->help; *p;) {
            size_t len = strcspn(p, "\n");
            fprintf(out, "        %.*s\n", (int)len, p);
            p += len + (p[len] == '\n');
        }
        if (d->env && d->deflt && !d->deflt_in_words)
            fprintf(out, "        [%s; default: %s]\n", d->env, d->deflt);
        else if (d->env)
            fprintf(out, "        [%s]\n", d->env);
    }
}
