/*
 * e2e.c - the helpers behind e2e.h: a workerd child with its log in a file, and a
 * synchronous Redis client for pushing messages and polling results.
 *
 * Polling, not notification: the tests look at what a user would look at (the log file,
 * the keys in Redis), every 10 ms up to a deadline, so a slow shared machine only makes a
 * test slower, never wrong.
 */
#include "e2e.h"
#include "testlib.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define POLL_SECONDS 0.01

static void pause_poll(void) {
    usleep((useconds_t)(POLL_SECONDS * 1e6));
}

const char *e2e_url(int port) {
    static char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/0", port);
    return url;
}

void e2e__worker_start(const char *bin, e2e_worker *w, int port, const char *const *args) {
    memset(w, 0, sizeof *w);
    w->dir = test_tmpdir("e2e");
    w->log = malloc(strlen(w->dir) + 16);
    sprintf(w->log, "%s/worker.log", w->dir);
    const char *argv[64];
    int n = 0;
    argv[n++] = bin;
    char url[64];
    if (port > 0) {
        snprintf(url, sizeof url, "redis://127.0.0.1:%d/0", port);
        argv[n++] = "-b";
        argv[n++] = url;
    }
    for (int i = 0; args && args[i]; i++) {
        if (n >= 62)
            test__fail(__FILE__, __LINE__, "too many worker arguments");
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    fprintf(stderr, "e2e: starting %s (log %s)\n", bin, w->log);
    pid_t pid = fork();
    if (pid < 0)
        test__fail(__FILE__, __LINE__, "fork: %s", strerror(errno));
    if (pid == 0) {
        /* A failed ASSERT aborts the test: its worker must not outlive it. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(w->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        int null = open("/dev/null", O_RDONLY);
        if (fd < 0 || null < 0)
            _exit(126);
        dup2(null, 0);
        dup2(fd, 1);
        dup2(fd, 2);
        /* The worker must see default signal dispositions whatever the test inherited. */
        signal(SIGPIPE, SIG_DFL);
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    w->pid = pid;
    w->status = -1;
}

void e2e__worker_startl(const char *bin, e2e_worker *w, int port, ...) {
    const char *args[64];
    int n = 0;
    va_list ap;
    va_start(ap, port);
    while ((args[n] = va_arg(ap, const char *)) != NULL)
        if (++n == 63)
            test__fail(__FILE__, __LINE__, "too many worker arguments");
    va_end(ap);
    e2e__worker_start(bin, w, port, args);
}

char *e2e_log_read(const e2e_worker *w) {
    FILE *f = fopen(w->log, "rb");
    if (!f)
        return strdup("");
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    size_t got;
    while ((got = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += got;
        if (cap - len < 2) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
    }
    fclose(f);
    buf[len] = '\0';
    return buf;
}

int e2e_log_count(const e2e_worker *w, const char *needle) {
    char *log = e2e_log_read(w);
    int n = 0;
    for (const char *p = log; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    free(log);
    return n;
}

static bool reap(e2e_worker *w, int flags) {
    if (w->pid <= 0)
        return true;
    int st;
    pid_t got = waitpid(w->pid, &st, flags);
    if (got != w->pid)
        return false;
    w->pid = 0;
    w->status = WIFEXITED(st) ? WEXITSTATUS(st) : WIFSIGNALED(st) ? 128 + WTERMSIG(st) : -1;
    return true;
}

bool e2e_log_wait_n(e2e_worker *w, const char *needle, int times, double timeout) {
    double deadline = test_now() + timeout;
    for (;;) {
        if (e2e_log_count(w, needle) >= times)
            return true;
        if (test_now() > deadline)
            return false;
        if (w->pid > 0 && reap(w, WNOHANG))
            return e2e_log_count(w, needle) >= times;
        pause_poll();
    }
}

void e2e_wait_ready(e2e_worker *w) {
    if (!e2e_log_wait(w, "ready: consuming", 10.0)) {
        e2e_log_dump(w);
        test__fail(__FILE__, __LINE__, "the worker did not become ready within 10 s");
    }
}

void e2e_log_dump(const e2e_worker *w) {
    char *log = e2e_log_read(w);
    fprintf(stderr, "---- worker log %s ----\n%s---- end of worker log ----\n", w->log, log);
    free(log);
}

void e2e_worker_signal(e2e_worker *w, int sig) {
    if (w->pid > 0)
        kill(w->pid, sig);
}

int e2e_worker_wait(e2e_worker *w, double timeout) {
    double deadline = test_now() + timeout;
    while (!reap(w, WNOHANG)) {
        if (test_now() > deadline)
            return -1;
        pause_poll();
    }
    return w->status;
}

void e2e_worker_stop(e2e_worker *w) {
    if (w->pid > 0) {
        kill(w->pid, SIGKILL);
        reap(w, 0);
    }
    if (w->dir)
        test_rmtree(w->dir);
    free(w->dir);
    free(w->log);
    w->dir = w->log = NULL;
}

/* ---- Redis ------------------------------------------------------------------------------ */

redisContext *e2e_redis(int port) {
    struct timeval tv = {5, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (!c || c->err)
        test__fail(__FILE__, __LINE__, "connect to redis on port %d: %s", port,
                   c ? c->errstr : "out of memory");
    redisSetTimeout(c, tv);
    /* A restarted Redis accepts connections before it has read its AOF back, and answers
     * everything with LOADING meanwhile: wait until it is really ready. */
    double deadline = test_now() + 10.0;
    for (;;) {
        redisReply *r = redisCommand(c, "PING");
        bool loading = r && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "LOADING", 7) == 0;
        if (!r)
            test__fail(__FILE__, __LINE__, "PING redis on port %d: %s", port, c->errstr);
        freeReplyObject(r);
        if (!loading)
            break;
        if (test_now() > deadline)
            test__fail(__FILE__, __LINE__, "redis on port %d still loading after 10 s", port);
        pause_poll();
    }
    return c;
}

static redisReply *command(redisContext *c, const char *fmt, va_list ap) {
    redisReply *r = redisvCommand(c, fmt, ap);
    if (!r)
        test__fail(__FILE__, __LINE__, "redis command \"%s\": %s", fmt, c->errstr);
    if (r->type == REDIS_REPLY_ERROR)
        test__fail(__FILE__, __LINE__, "redis command \"%s\": %s", fmt, r->str);
    return r;
}

static redisReply *cmd(redisContext *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = command(c, fmt, ap);
    va_end(ap);
    return r;
}

void e2e_push_len(redisContext *c, const char *queue, const char *msg, size_t len) {
    freeReplyObject(cmd(c, "LPUSH workerd:queue:%s %b", queue, msg, len));
}

void e2e_pushf(redisContext *c, const char *queue, const char *fmt, ...) {
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    e2e_push(c, queue, msg);
}

void e2e_push_task(redisContext *c, const char *queue, const char *id, const char *task,
                   const char *args_json) {
    size_t need = strlen(id) + strlen(task) + strlen(args_json) + 64;
    char *msg = malloc(need);
    snprintf(msg, need, "{\"id\":\"%s\",\"task\":\"%s\",\"args\":%s}", id, task, args_json);
    e2e_push(c, queue, msg);
    free(msg);
}

long long e2e_int(redisContext *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = command(c, fmt, ap);
    va_end(ap);
    long long v = -1;
    if (r->type == REDIS_REPLY_INTEGER)
        v = r->integer;
    else if (r->type != REDIS_REPLY_NIL)
        test__fail(__FILE__, __LINE__, "redis command \"%s\": reply type %d, not an integer", fmt,
                   r->type);
    freeReplyObject(r);
    return v;
}

char *e2e_get(redisContext *c, const char *key) {
    redisReply *r = cmd(c, "GET %s", key);
    char *s = r->type == REDIS_REPLY_STRING ? strndup(r->str, r->len) : NULL;
    freeReplyObject(r);
    return s;
}

json_t *e2e_result(redisContext *c, const char *id) {
    char key[512];
    snprintf(key, sizeof key, "workerd:result:%s", id);
    char *s = e2e_get(c, key);
    if (!s)
        return NULL;
    json_error_t jerr;
    json_t *doc = json_loads(s, 0, &jerr);
    if (!doc)
        test__fail(__FILE__, __LINE__, "result %s is not JSON (%s): %s", id, jerr.text, s);
    free(s);
    return doc;
}

json_t *e2e_wait_result(redisContext *c, const char *id, const char *status, double timeout) {
    double deadline = test_now() + timeout;
    for (;;) {
        json_t *doc = e2e_result(c, id);
        const char *st = e2e_jstr(doc, "status");
        if (st && (status ? strcmp(st, status) == 0
                          : strcmp(st, "STARTED") != 0 && strcmp(st, "RETRY") != 0))
            return doc;
        json_decref(doc);
        if (test_now() > deadline)
            return NULL;
        pause_poll();
    }
}

json_t *e2e_dead_letters(redisContext *c) {
    redisReply *r = cmd(c, "LRANGE workerd:dead 0 -1");
    json_t *arr = json_array();
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        json_error_t jerr;
        /* The raw text of a dead letter may hold NUL bytes (kept as \u0000). */
        json_t *doc = json_loadb(r->element[i]->str, r->element[i]->len, JSON_ALLOW_NUL, &jerr);
        if (!doc)
            test__fail(__FILE__, __LINE__, "dead letter %zu is not JSON: %s", i, jerr.text);
        json_array_append_new(arr, doc);
    }
    freeReplyObject(r);
    return arr;
}

bool e2e_wait_dead(redisContext *c, long long n, double timeout) {
    double deadline = test_now() + timeout;
    while (e2e_int(c, "LLEN workerd:dead") < n) {
        if (test_now() > deadline)
            return false;
        pause_poll();
    }
    return true;
}

long long e2e_count_keys(redisContext *c, const char *pattern) {
    redisReply *r = cmd(c, "KEYS %s", pattern);
    long long n = r->type == REDIS_REPLY_ARRAY ? (long long)r->elements : 0;
    freeReplyObject(r);
    return n;
}

long long e2e_command_calls(redisContext *c, const char *command) {
    redisReply *r = redisCommand(c, "INFO commandstats");
    ASSERT(r != NULL && r->type == REDIS_REPLY_STRING);
    char needle[128];
    snprintf(needle, sizeof needle, "cmdstat_%s:calls=", command);
    const char *p = strstr(r->str, needle);
    long long n = p ? atoll(p + strlen(needle)) : 0;
    freeReplyObject(r);
    return n;
}

double e2e_redis_time(redisContext *c) {
    redisReply *r = cmd(c, "TIME");
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2)
        test__fail(__FILE__, __LINE__, "TIME: reply type %d", r->type);
    double t = atof(r->element[0]->str) + atof(r->element[1]->str) / 1e6;
    freeReplyObject(r);
    return t;
}

redisContext *e2e_subscribe(int port, const char *channel) {
    redisContext *c = e2e_redis(port);
    redisReply *r = redisCommand(c, "SUBSCRIBE %s", channel);
    if (!r || r->type != REDIS_REPLY_ARRAY)
        test__fail(__FILE__, __LINE__, "SUBSCRIBE %s failed", channel);
    freeReplyObject(r);
    return c;
}

json_t *e2e_next_published(redisContext *sub, double timeout) {
    double deadline = test_now() + timeout;
    for (;;) {
        /* What is buffered first; then wait for the socket, so that no read times out
         * (a timed-out read leaves a hiredis context failed). */
        void *reply = NULL;
        if (redisReaderGetReply(sub->reader, &reply) != REDIS_OK)
            test__fail(__FILE__, __LINE__, "reading the subscription: protocol error");
        if (reply == NULL) {
            double left = deadline - test_now();
            if (left <= 0)
                return NULL;
            struct pollfd p = {.fd = sub->fd, .events = POLLIN};
            if (poll(&p, 1, (int)(left * 1000) + 1) > 0 && redisBufferRead(sub) != REDIS_OK)
                test__fail(__FILE__, __LINE__, "reading the subscription: %s", sub->errstr);
            continue;
        }
        redisReply *r = reply;
        json_t *doc = NULL;
        if (r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
            strcmp(r->element[0]->str, "message") == 0)
            doc = json_loadb(r->element[2]->str, r->element[2]->len, 0, NULL);
        freeReplyObject(r);
        if (doc)
            return doc;
    }
}

/* ---- JSON ------------------------------------------------------------------------------- */

const char *e2e_jstr(const json_t *obj, const char *key) {
    json_t *v = obj ? json_object_get(obj, key) : NULL;
    return json_is_string(v) ? json_string_value(v) : NULL;
}

double e2e_jnum(const json_t *obj, const char *key) {
    json_t *v = obj ? json_object_get(obj, key) : NULL;
    return json_is_number(v) ? json_number_value(v) : NAN;
}

const char *e2e_jerror(const json_t *result) {
    return e2e_jstr(result ? json_object_get(result, "error") : NULL, "message");
}

void e2e_env_start(e2e_env *e) {
    memset(e, 0, sizeof *e);
    test_redis_start(&e->redis, NULL);
    e->c = e2e_redis(e->redis.port);
}

void e2e_env_end(e2e_env *e) {
    if (e->w.pid > 0) {
        e2e_worker_signal(&e->w, SIGTERM);
        int code = e2e_worker_wait(&e->w, 30.0);
        if (code != 0)
            e2e_log_dump(&e->w);
        ASSERT_EQ(code, 0);
    }
    e2e_worker_stop(&e->w);
    redisFree(e->c);
    test_redis_stop(&e->redis);
}

json_t *e2e_must_result_within(e2e_env *e, const char *id, double timeout) {
    json_t *res = e2e_wait_result(e->c, id, NULL, timeout);
    if (!res) {
        e2e_log_dump(&e->w);
        test__fail(__FILE__, __LINE__, "no final result for %s within %g s", id, timeout);
    }
    return res;
}

json_t *e2e_must_result(e2e_env *e, const char *id) {
    return e2e_must_result_within(e, id, 10.0);
}
