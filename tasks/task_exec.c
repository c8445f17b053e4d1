/*
 * task_exec.c - tasks run by external programs (task_exec.h has the protocol a program
 * follows; README.md "Your own tasks: any program" shows it to users).
 *
 * Every --exec-task registers the same task function under its own name; the function
 * finds its program by call->name in a small table filled at start-up and never changed
 * afterwards, like the registry itself. One run is: encode the message, spawn the program
 * (green_proc.h), hand it the message while collecting stdout (capped) and stderr (its
 * tail) until it exits, and turn the exit into a result:
 *
 *     exit 0, stdout JSON (or empty)   SUCCESS with that value (empty: null)
 *     exit 0, stdout not JSON          FAILURE BadOutput, with the start of stdout
 *     stdout over --exec-max-output    FAILURE BadOutput (the program was killed)
 *     exit 75                          a retry request (TASK_ERETRY, the message's backoff),
 *                                      with the stderr tail; type RetryRequested once the
 *                                      message has no retries left
 *     other exit, or a signal          FAILURE ExecError: how it ended, the stderr tail
 *     program could not be started     FAILURE ExecError: why
 *
 * The time limits interrupt the wait (task.h "time limits"). The soft one arrives once, as
 * -ETIMEDOUT: the program gets SIGTERM and the wait goes on, so a program that handles it
 * can still exit 0 with a partial result; one that ends otherwise makes the task return
 * -ETIMEDOUT (SoftTimeLimitExceeded). The hard one, like a shutdown, arrives as
 * -ECANCELED (and the hard one again every second): the program is stopped with SIGTERM,
 * then SIGKILL after TASK_EXEC_GRACE seconds (green_proc_stop, which those repeated kills
 * do not cut short), and only then does the task return, so the slot is held until the
 * program is gone and -c bounds the programs too. A deadline that stays passed (a
 * green_timeout scope of whoever calls the task) is handled as the soft limit, then, when
 * the resumed wait ends at once, as a stop.
 *
 * Runs on the task's greenlet; the table is read-only once registered.
 */
#include "task_exec.h"
#include "task.h"
#include "task_internal.h"

#include "green_proc.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* The start of a stdout that is not JSON, quoted in BadOutput. */
#define SNIPPET_MAX 200

struct program {
    char *name;
    char *path;
};

static struct program *programs;
static size_t nprograms;
static char **child_env; /* NULL-terminated */
static size_t max_output = TASK_EXEC_DEFAULT_MAX_OUTPUT;

/* ---- checks ------------------------------------------------------------------------------ */

static int reason(char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int reason(char *why, size_t whylen, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, whylen, fmt, ap);
    va_end(ap);
    return -1;
}

int task_exec_check_task(const char *entry, char *why, size_t whylen) {
    const char *eq = strchr(entry, '=');
    if (eq == NULL)
        return reason(why, whylen, "'%s' is not NAME=PATH", entry);
    char name[160];
    snprintf(name, sizeof name, "%.*s", (int)(eq - entry), entry);
    if ((size_t)(eq - entry) >= sizeof name || !task__name_valid(name))
        return reason(why, whylen,
                      "'%.*s' is not a task name (letters, digits and _-.:, starting with a "
                      "letter or _, at most 128 bytes)",
                      (int)(eq - entry), entry);
    const char *path = eq + 1;
    struct stat st;
    if (path[0] != '/')
        return reason(why, whylen, "%s: the path '%s' is not absolute", name, path);
    if (stat(path, &st) != 0)
        return reason(why, whylen, "%s: %s: %s", name, path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return reason(why, whylen, "%s: %s is not a regular file", name, path);
    if (access(path, X_OK) != 0)
        return reason(why, whylen, "%s: %s is not executable", name, path);
    return 0;
}

/* Length of the KEY of a KEY=VALUE entry, or 0 when it is not a valid one. */
static size_t env_key_len(const char *entry) {
    size_t n = 0;
    if (!isalpha((unsigned char)entry[0]) && entry[0] != '_')
        return 0;
    while (isalnum((unsigned char)entry[n]) || entry[n] == '_')
        n++;
    return entry[n] == '=' ? n : 0;
}

int task_exec_check_env(const char *entry, char *why, size_t whylen) {
    if (strchr(entry, '=') == NULL)
        return reason(why, whylen, "'%s' is not KEY=VALUE", entry);
    if (env_key_len(entry) == 0)
        return reason(why, whylen,
                      "'%.*s' is not a variable name (letters, digits and _, not starting "
                      "with a digit)",
                      (int)strcspn(entry, "="), entry);
    return 0;
}

static int exec_run(const task_call *call, json_t **result, task_error *err);

int task_exec_check(const task_exec_config *cfg, char *why, size_t whylen) {
    char entry_why[384];
    for (size_t i = 0; i < cfg->ntasks; i++) {
        if (task_exec_check_task(cfg->tasks[i], entry_why, sizeof entry_why) < 0)
            return reason(why, whylen, "--exec-task: %s", entry_why);
        size_t len = strcspn(cfg->tasks[i], "=");
        for (size_t j = 0; j < i; j++)
            if (strncmp(cfg->tasks[j], cfg->tasks[i], len + 1) == 0)
                return reason(why, whylen, "--exec-task: task '%.*s' is given twice", (int)len,
                              cfg->tasks[i]);
        char name[160];
        snprintf(name, sizeof name, "%.*s", (int)len, cfg->tasks[i]);
        task_fn fn = task_registry_find(name);
        if (fn != NULL && fn != exec_run)
            return reason(why, whylen,
                          "--exec-task: task '%s' already exists (a built-in or a plugin's "
                          "task); choose another name",
                          name);
    }
    for (size_t i = 0; i < cfg->nenv; i++) {
        if (task_exec_check_env(cfg->env[i], entry_why, sizeof entry_why) < 0)
            return reason(why, whylen, "--exec-env: %s", entry_why);
        size_t len = env_key_len(cfg->env[i]);
        for (size_t j = 0; j < i; j++)
            if (strncmp(cfg->env[j], cfg->env[i], len + 1) == 0)
                return reason(why, whylen, "--exec-env: variable %.*s is given twice", (int)len,
                              cfg->env[i]);
    }
    return 0;
}

/* ---- registration -------------------------------------------------------------------------- */

/* Set KEY=VALUE in the NULL-terminated env (room for one more), replacing the same key. */
static int env_set(char **env, size_t *n, const char *entry) {
    size_t key = strcspn(entry, "=") + 1;
    char *copy = strdup(entry);
    if (copy == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < *n; i++) {
        if (strncmp(env[i], entry, key) == 0) {
            free(env[i]);
            env[i] = copy;
            return 0;
        }
    }
    env[(*n)++] = copy;
    env[*n] = NULL;
    return 0;
}

static int build_env(const task_exec_config *cfg) {
    child_env = calloc(cfg->nenv + 4, sizeof *child_env);
    if (child_env == NULL)
        return -ENOMEM;
    size_t n = 0;
    int rc = env_set(child_env, &n, "PATH=/usr/local/bin:/usr/bin:/bin");
    if (rc == 0)
        rc = env_set(child_env, &n, "LANG=C.UTF-8");
    const char *home = getenv("HOME");
    if (rc == 0 && home != NULL && *home != '\0') {
        char *entry = malloc(strlen(home) + 6);
        if (entry == NULL)
            return -ENOMEM;
        sprintf(entry, "HOME=%s", home);
        rc = env_set(child_env, &n, entry);
        free(entry);
    }
    for (size_t i = 0; rc == 0 && i < cfg->nenv; i++)
        rc = env_set(child_env, &n, cfg->env[i]);
    return rc;
}

int task_exec_register(const task_exec_config *cfg, char *why, size_t whylen) {
    if (task_exec_check(cfg, why, whylen) < 0)
        return strstr(why, "already exists") ? -EEXIST : -EINVAL;
    max_output = cfg->max_output ? cfg->max_output : TASK_EXEC_DEFAULT_MAX_OUTPUT;
    int rc = build_env(cfg);
    if (rc == 0 && cfg->ntasks > 0) {
        programs = calloc(cfg->ntasks, sizeof *programs);
        rc = programs ? 0 : -ENOMEM;
    }
    for (size_t i = 0; rc == 0 && i < cfg->ntasks; i++) {
        const char *entry = cfg->tasks[i];
        size_t len = strcspn(entry, "=");
        struct program *p = &programs[nprograms];
        p->name = strndup(entry, len);
        p->path = strdup(entry + len + 1);
        if (p->name == NULL || p->path == NULL) {
            free(p->name);
            free(p->path);
            rc = -ENOMEM;
            break;
        }
        nprograms++;
        rc = task_registry_add(p->name, exec_run);
    }
    if (rc == -ENOMEM)
        snprintf(why, whylen, "out of memory");
    return rc;
}

void task_exec_clear(void) {
    for (size_t i = 0; i < nprograms; i++) {
        free(programs[i].name);
        free(programs[i].path);
    }
    free(programs);
    programs = NULL;
    nprograms = 0;
    for (size_t i = 0; child_env != NULL && child_env[i] != NULL; i++)
        free(child_env[i]);
    free(child_env);
    child_env = NULL;
    max_output = TASK_EXEC_DEFAULT_MAX_OUTPUT;
}

/* ---- one run ------------------------------------------------------------------------------ */

static const struct program *program_of(const char *name) {
    for (size_t i = 0; i < nprograms; i++)
        if (strcmp(programs[i].name, name) == 0)
            return &programs[i];
    return NULL;
}

/* The message as the program reads it: one line of JSON. malloc'd; NULL when out of
 * memory. */
static char *message_line(const task_call *call, size_t *len) {
    /* json_pack's "O" takes a reference, which the object gives back when it is freed:
     * args and kwargs are only read. */
    json_t *msg =
        json_pack("{s:s, s:s, s:O, s:O, s:i}", "id", call->id, "task", call->name, "args",
                  (json_t *)call->args, "kwargs", (json_t *)call->kwargs, "retries", call->retries);
    char *text = msg ? json_dumps(msg, JSON_COMPACT) : NULL;
    json_decref(msg);
    if (text == NULL)
        return NULL;
    *len = strlen(text);
    char *line = realloc(text, *len + 2);
    if (line == NULL) {
        free(text);
        return NULL;
    }
    line[(*len)++] = '\n';
    line[*len] = '\0';
    return line;
}

/* "exited with status 3", "killed by signal 9 (SIGKILL)". */
static void describe_end(int status, char *out, size_t size) {
    if (WIFEXITED(status)) {
        snprintf(out, size, "exited with status %d", WEXITSTATUS(status));
    } else {
        const char *abbrev = sigabbrev_np(WTERMSIG(status));
        snprintf(out, size, "killed by signal %d (SIG%s)", WTERMSIG(status), abbrev ? abbrev : "?");
    }
}

/* Append len bytes of text to out (size bytes, holding a string), each NUL as '?'. */
static void append_text(char *out, size_t size, const char *text, size_t len) {
    size_t n = strlen(out);
    for (size_t i = 0; i < len && n + 1 < size; i++)
        out[n++] = text[i] ? text[i] : '?';
    out[n] = '\0';
}

/* type, then how the program ended (`end`, or in words from its status when NULL) and the
 * tail of its stderr: longer than a task_error's message holds, hence task_error_set_long.
 * Returns TASK_EFAIL. */
static int ended(green_proc *p, const char *type, const char *end, task_error *err) {
    size_t len, total, size = GREEN_PROC_ERR_TAIL + 128;
    const char *tail = green_proc_stderr(p, &len, &total);
    char *text = malloc(size); /* not on the stack: a greenlet's pages stay committed */
    if (text == NULL)
        return task_error_set(err, "MemoryError", "out of memory");
    if (end)
        snprintf(text, size, "%s", end);
    else
        describe_end(green_proc_status(p), text, size);
    size_t n = strlen(text);
    if (total == 0)
        snprintf(text + n, size - n, "; nothing on stderr");
    else if (len < total)
        snprintf(text + n, size - n, "; stderr (the last %zu of %zu bytes): ", len, total);
    else
        snprintf(text + n, size - n, "; stderr: ");
    if (len < total) {
        /* Cut in the middle: start at a character, not inside a UTF-8 sequence. */
        while (len > 0 && ((unsigned char)*tail & 0xc0) == 0x80)
            tail++, len--;
    }
    if (len > 0 && tail[len - 1] == '\n')
        len--;
    append_text(text, size, tail, len);
    int rc = task_error_set_long(err, type, text);
    free(text);
    return rc;
}

static bool blank(const char *s, size_t len) {
    for (size_t i = 0; i < len; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
            return false;
    return true;
}

/* Exit status 0: the result is stdout's JSON. */
static int parse_result(green_proc *p, json_t **result, task_error *err) {
    size_t len;
    const char *out = green_proc_stdout(p, &len);
    if (blank(out, len)) {
        *result = json_null();
        return 0;
    }
    json_error_t jerr;
    json_t *value = json_loadb(out, len, JSON_DECODE_ANY, &jerr);
    if (value != NULL) {
        *result = value;
        return 0;
    }
    task_error_set(err, "BadOutput",
                   "the program exited with status 0 but its stdout is not JSON (%s, at line %d "
                   "column %d); it begins: ",
                   jerr.text, jerr.line, jerr.column);
    append_text(err->message, sizeof err->message, out, len < SNIPPET_MAX ? len : SNIPPET_MAX);
    return TASK_EFAIL;
}

/* The outcome of a program that has exited. After a soft limit (soft), a program that
 * does not finish with a result of its own has ended because of the limit. */
static int outcome(green_proc *p, bool soft, json_t **result, task_error *err) {
    int status = green_proc_status(p);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return parse_result(p, result, err);
    if (WIFEXITED(status) && WEXITSTATUS(status) == TASK_EXEC_RETRY_STATUS) {
        /* TASK_ERETRY with the message's own backoff; RetryRequested names the failure
         * once the retries have run out. */
        int rc = ended(p, "RetryRequested", "asked for a retry (exit status 75)", err);
        err->retry_in = -1;
        return rc == TASK_EFAIL ? TASK_ERETRY : rc;
    }
    if (soft)
        return -ETIMEDOUT;
    return ended(p, "ExecError", NULL, err);
}

static int exec_run(const task_call *call, json_t **result, task_error *err) {
    const struct program *prog = program_of(call->name);
    if (prog == NULL)
        return task_error_set(err, "InternalError", "%s: no program is registered for it",
                              call->name);
    size_t in_len;
    char *in = message_line(call, &in_len);
    if (in == NULL)
        return task_error_set(err, "MemoryError", "out of memory");
    char *argv[] = {prog->path, NULL};
    green_proc_spec spec = {.path = prog->path, .argv = argv, .envp = child_env};
    green_proc *p;
    int rc = green_proc_spawn(&p, &spec);
    if (rc < 0) {
        free(in);
        return task_error_set(err, "ExecError", "cannot run %s: %s", prog->path, strerror(-rc));
    }
    bool soft = false;
    rc = green_proc_communicate(p, in, in_len, max_output);
    if (rc == -ETIMEDOUT) {
        /* The soft limit (once): ask the program to stop, and let it answer. A deadline
         * that stays passed (a scope of whoever runs this task) ends it instead. */
        soft = true;
        green_proc_signal(p, SIGTERM);
        rc = green_proc_communicate(p, in, in_len, max_output);
        if (rc == -ETIMEDOUT) {
            green_proc_stop(p, TASK_EXEC_GRACE);
            rc = -ETIMEDOUT;
        }
    }
    free(in);
    if (rc == 0) {
        rc = outcome(p, soft, result, err);
    } else if (rc == -EFBIG) {
        rc = task_error_set(err, "BadOutput",
                            "the program wrote more than %zu bytes on stdout "
                            "(--exec-max-output) and was killed",
                            max_output);
    } else if (rc == -ENOMEM) {
        rc = task_error_set(err, "MemoryError", "out of memory reading the program's output");
    } else if (rc == -ECANCELED) {
        /* The hard limit or a shutdown: the program is stopped before the slot is given
         * back, so -c bounds the programs running too. */
        green_proc_stop(p, TASK_EXEC_GRACE);
    }
    green_proc_free(p); /* kills the group if anything above left it running */
    return rc;
}
