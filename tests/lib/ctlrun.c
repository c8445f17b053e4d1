/*
 * ctlrun.c - the helpers behind ctlrun.h: workerctl as a child process with its output in
 * files, and the Redis fixture of its tests.
 */
#include "ctlrun.h"

#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

const char *ctlrun__beside(const char *workerd_bin) {
    static char path[4096];
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", workerd_bin);
    snprintf(path, sizeof path, "%s/workerctl", dirname(dir));
    return path;
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    ASSERT(f != NULL);
    char *buf = calloc(1, 1 << 20);
    ASSERT(buf != NULL);
    size_t n = fread(buf, 1, (1 << 20) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

void ctlrun__start(const char *bin, ctlrun *r, const char *const *env, const char *const *args) {
    memset(r, 0, sizeof *r);
    r->dir = test_tmpdir("ctl");
    const char *argv[64];
    int n = 0;
    argv[n++] = bin;
    for (int i = 0; args[i] != NULL; i++) {
        if (n >= 63)
            test__fail(__FILE__, __LINE__, "too many workerctl arguments");
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    char out[4200], err[4200];
    snprintf(out, sizeof out, "%s/out", r->dir);
    snprintf(err, sizeof err, "%s/err", r->dir);
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        static const char *const vars[] = {"WORKERD_BROKER", "WORKERD_PREFIX", "WORKERD_CONFIG",
                                           "WORKERD_RESULT_BACKEND", "WORKERD_RESULT_EXPIRES"};
        for (size_t i = 0; i < sizeof vars / sizeof *vars; i++)
            unsetenv(vars[i]);
        for (int i = 0; env && env[i]; i++)
            putenv((char *)env[i]);
        int fo = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int fe = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int null = open("/dev/null", O_RDONLY);
        if (fo < 0 || fe < 0 || null < 0)
            _exit(126);
        dup2(null, 0);
        dup2(fo, 1);
        dup2(fe, 2);
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    r->pid = pid;
}

void ctlrun_finish(ctlrun *r, double timeout) {
    double deadline = test_now() + timeout;
    int st;
    while (waitpid(r->pid, &st, WNOHANG) == 0) {
        if (test_now() > deadline) {
            kill(r->pid, SIGKILL);
            waitpid(r->pid, &st, 0);
            test__fail(__FILE__, __LINE__, "workerctl still running after %g s", timeout);
        }
        usleep(10000);
    }
    r->pid = 0;
    r->code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    char path[4200];
    snprintf(path, sizeof path, "%s/out", r->dir);
    r->out = slurp(path);
    snprintf(path, sizeof path, "%s/err", r->dir);
    r->err = slurp(path);
    fprintf(stderr, "workerctl exit %d\n--- stdout\n%s--- stderr\n%s---\n", r->code, r->out,
            r->err);
}

void ctlrun_free(ctlrun *r) {
    free(r->out);
    free(r->err);
    test_rmtree(r->dir);
    free(r->dir);
    memset(r, 0, sizeof *r);
}

json_t *ctlrun_json(const ctlrun *r) {
    json_error_t e;
    json_t *v = json_loads(r->out, 0, &e);
    if (v == NULL)
        test__fail(__FILE__, __LINE__, "stdout is not JSON: %s", e.text);
    return v;
}

int ctlrun_lines(const char *s) {
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

void ctlrun_env_start(ctlrun_env *e) {
    memset(e, 0, sizeof *e);
    test_redis_start(&e->redis, NULL);
    e->c = e2e_redis(e->redis.port);
    snprintf(e->url, sizeof e->url, "redis://127.0.0.1:%d/0", e->redis.port);
}

void ctlrun_env_end(ctlrun_env *e) {
    if (e->w.pid > 0) {
        e2e_worker_signal(&e->w, SIGTERM);
        int code = e2e_worker_wait(&e->w, 10.0);
        if (code != 0)
            e2e_log_dump(&e->w);
        ASSERT_EQ(code, 0);
    }
    e2e_worker_stop(&e->w);
    redisFree(e->c);
    test_redis_stop(&e->redis);
}

void ctlrun_redis(ctlrun_env *e, const char *fmt, const char *a, const char *b, const char *c) {
    redisReply *r = redisCommand(e->c, fmt, a, b, c);
    ASSERT(r != NULL && r->type != REDIS_REPLY_ERROR);
    freeReplyObject(r);
}

json_t *ctlrun_list(ctlrun_env *e, const char *key, long i) {
    redisReply *r = redisCommand(e->c, "LINDEX %s %ld", key, i);
    ASSERT(r != NULL && r->type == REDIS_REPLY_STRING);
    json_t *v = json_loads(r->str, 0, NULL);
    freeReplyObject(r);
    ASSERT(v != NULL);
    return v;
}
