/*
 * good.c - the test plugin whose tasks use what task_env.h and the runtime offer, for
 * tests/daemon/test_plugins.c:
 *
 *   t.call(name, args, timeout=10)   task_send_wait: the other task's result, or its error
 *   t.send(name, args, queue)        task_send, fire and forget: the message id
 *   t.wait(id, timeout)              task_wait
 *   t.count(key)                     INCR key on the lent connection; logs "count KEY is N"
 *   t.client_id()                    CLIENT ID of the lent connection (which one it is)
 *   t.spawned(key, n)                n greenlets INCR key on the one lent connection, joined
 *   t.log(level, text)               task_log at level 0..3
 *   t.crash_once(key)                INCR key; crashes (SIGSEGV) when it was the first
 *   t.crash()                        crashes every time
 */
#include <workerd/green.h>
#include <workerd/task_plugin.h>

#include <stdlib.h>

WORKERD_PLUGIN_DECLARE();

static int oom(task_error *err) {
    return task_error_set(err, "MemoryError", "out of memory");
}

static int t_call(const task_call *call, json_t **result, task_error *err) {
    const char *name;
    const json_t *args;
    double timeout;
    int rc = task_arg_string(call, 0, "name", &name, err);
    if (rc == 0)
        rc = task_arg_value(call, 1, "args", true, &args, err);
    if (rc == 0)
        rc = task_opt_number(call, 2, "timeout", 10, 0, 60, &timeout, err);
    return rc != 0 ? rc : task_send_wait(call, name, args, NULL, NULL, timeout, result, err);
}

static int t_send(const task_call *call, json_t **result, task_error *err) {
    const char *name, *queue;
    const json_t *args;
    int rc = task_arg_string(call, 0, "name", &name, err);
    if (rc == 0)
        rc = task_arg_value(call, 1, "args", true, &args, err);
    if (rc == 0)
        rc = task_opt_string(call, 2, "queue", NULL, &queue, NULL, err);
    if (rc != 0)
        return rc;
    char id[TASK_ID_MAX + 1];
    task_send_opts opts = {.queue = queue, .time_limit = 30};
    rc = task_send(call, name, args, NULL, &opts, id, err);
    if (rc != 0)
        return rc;
    *result = json_string(id);
    return *result ? 0 : oom(err);
}

static int t_wait(const task_call *call, json_t **result, task_error *err) {
    const char *id;
    double timeout;
    int rc = task_arg_string(call, 0, "id", &id, err);
    if (rc == 0)
        rc = task_arg_number(call, 1, "timeout", 0, 60, &timeout, err);
    return rc != 0 ? rc : task_wait(call, id, timeout, result, err);
}

/* INCR key: 0 with *n, or a task_env.h return. */
static int incr(const task_call *call, const char *key, long long *n, task_error *err) {
    redisReply *reply;
    int rc = task_redis_command(call, &reply, 5, err, "INCR %s", key);
    if (rc != 0)
        return rc;
    *n = reply->integer;
    freeReplyObject(reply);
    return 0;
}

static int t_count(const task_call *call, json_t **result, task_error *err) {
    const char *key;
    long long n;
    int rc = task_arg_string(call, 0, "key", &key, err);
    if (rc == 0)
        rc = incr(call, key, &n, err);
    if (rc != 0)
        return rc;
    task_log(call, TASK_LOG_INFO, "count %s is %lld", key, n);
    *result = json_integer(n);
    return *result ? 0 : oom(err);
}

static int t_client_id(const task_call *call, json_t **result, task_error *err) {
    green_redis *c;
    redisReply *reply;
    int rc = task_redis(call, &c, err);
    if (rc != 0)
        return rc;
    rc = green_redis_command(c, &reply, 5, "CLIENT ID");
    if (rc != 0)
        return task_error_set(err, "RedisError", "CLIENT ID: %s", green_redis_last_error(c));
    *result = json_integer(reply->integer);
    freeReplyObject(reply);
    return *result ? 0 : oom(err);
}

struct spawned {
    const task_call *call;
    const char *key;
    int rc;
    task_error err;
};

static void *incr_main(void *arg) {
    struct spawned *s = arg;
    long long n;
    s->rc = incr(s->call, s->key, &n, &s->err);
    return NULL;
}

static int t_spawned(const task_call *call, json_t **result, task_error *err) {
    const char *key;
    double n;
    int rc = task_arg_string(call, 0, "key", &key, err);
    if (rc == 0)
        rc = task_arg_number(call, 1, "n", 1, 100, &n, err);
    if (rc != 0)
        return rc;
    struct spawned s[100];
    green_t g[100];
    int started = 0;
    for (int i = 0; i < (int)n; i++) {
        s[i] = (struct spawned){.call = call, .key = key};
        if (green_spawn(&g[i], incr_main, &s[i]) != 0)
            break;
        started++;
    }
    for (int i = 0; i < started; i++) /* every greenlet joined: nothing is left behind */
        green_join(g[i], NULL);
    for (int i = 0; i < started; i++) {
        if (s[i].rc != 0) {
            *err = s[i].err;
            return s[i].rc;
        }
    }
    if (started < (int)n)
        return task_error_set(err, "RuntimeError", "spawned only %d greenlets", started);
    *result = json_integer(started);
    return *result ? 0 : oom(err);
}

static int t_log(const task_call *call, json_t **result, task_error *err) {
    double level;
    const char *text;
    int rc = task_arg_number(call, 0, "level", 0, 3, &level, err);
    if (rc == 0)
        rc = task_arg_string(call, 1, "text", &text, err);
    if (rc != 0)
        return rc;
    task_log(call, (enum task_log_level)level, "%s", text);
    *result = json_null();
    return 0;
}

/* A null pointer the compiler cannot see coming: the store is a real SIGSEGV. */
static int *volatile nowhere;

static int t_crash_once(const task_call *call, json_t **result, task_error *err) {
    const char *key;
    long long n;
    int rc = task_arg_string(call, 0, "key", &key, err);
    if (rc == 0)
        rc = incr(call, key, &n, err);
    if (rc != 0)
        return rc;
    if (n == 1)
        *nowhere = 1;
    *result = json_integer(n);
    return *result ? 0 : oom(err);
}

static int t_crash(const task_call *call, json_t **result, task_error *err) {
    (void)call, (void)result, (void)err;
    *nowhere = 1;
    return 0;
}

int workerd_plugin_init(void) {
    static const struct {
        const char *name;
        task_fn fn;
    } tasks[] = {
        {"t.call", t_call},
        {"t.send", t_send},
        {"t.wait", t_wait},
        {"t.count", t_count},
        {"t.client_id", t_client_id},
        {"t.spawned", t_spawned},
        {"t.log", t_log},
        {"t.crash_once", t_crash_once},
        {"t.crash", t_crash},
    };
    for (size_t i = 0; i < sizeof tasks / sizeof *tasks; i++) {
        int rc = task_registry_add(tasks[i].name, tasks[i].fn);
        if (rc != 0)
            return rc;
    }
    return 0;
}
