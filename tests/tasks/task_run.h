/*
 * task_run.h - shared by the tests of tests/tasks: run one registered task the way the
 * daemon will, on the main greenlet of a fresh hub, and compare its JSON result exactly.
 *
 *     task_outcome o = task_run("sleep", "[0.1]", NULL);
 *     ASSERT_EQ(o.rc, 0);
 *     ASSERT_JSON(o.result, "0.1");
 *     task_outcome_free(&o);
 *
 * Static inline so that each test program takes only what it uses.
 */
#ifndef WORKERD_TESTS_TASK_RUN_H
#define WORKERD_TESTS_TASK_RUN_H

#include "green.h"
#include "green_http.h"
#include "task.h"
#include "testlib.h"

#include <jansson.h>

typedef struct task_outcome {
    int rc;
    json_t *result; /* set on success, else NULL */
    task_error err;
    double seconds; /* how long the task function ran */
} task_outcome;

typedef struct task_run_spec {
    const char *task;
    json_t *args, *kwargs;
    double time_limit; /* > 0: run inside a green_timeout scope of that many seconds */
    task_outcome *out;
} task_run_spec;

/* Parse JSON text, failing the test on a syntax error in the test itself. */
static inline json_t *task_json(const char *text) {
    json_error_t error;
    json_t *v = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &error);
    if (v == NULL)
        test__fail(__FILE__, __LINE__, "bad JSON in test: %s: %s", text, error.text);
    return v;
}

/* Compare v with the JSON text expected, printing both when they differ. */
#define ASSERT_JSON(v, expected)                                                                   \
    do {                                                                                           \
        json_t *want__ = task_json(expected);                                                      \
        const json_t *got__ = (v);                                                                 \
        if (got__ == NULL || !json_equal(got__, want__)) {                                         \
            char *s__ = got__ ? json_dumps(got__, JSON_ENCODE_ANY | JSON_SORT_KEYS) : NULL;        \
            test__fail(__FILE__, __LINE__, "%s: got %s, want %s", #v, s__ ? s__ : "NULL",          \
                       expected);                                                                  \
        }                                                                                          \
        json_decref(want__);                                                                       \
    } while (0)

/* Assert a failure: rc, err.type and err.message exactly. */
#define ASSERT_TASK_ERROR(o, want_rc, want_type, want_message)                                     \
    do {                                                                                           \
        ASSERT_EQ((o).rc, want_rc);                                                                \
        ASSERT((o).result == NULL);                                                                \
        ASSERT_STREQ((o).err.type, want_type);                                                     \
        ASSERT_STREQ((o).err.message, want_message);                                               \
    } while (0)

/* The task body, as a daemon worker greenlet would run it. */
static inline void *task_run_main(void *arg) {
    task_run_spec *s = arg;
    task_fn fn = task_registry_find(s->task);
    ASSERT(fn != NULL);
    task_call call = {.id = "test-1", .name = s->task, .args = s->args, .kwargs = s->kwargs};
    green_timeout limit;
    if (s->time_limit > 0)
        green_timeout_start(&limit, s->time_limit);
    double start = test_now();
    s->out->rc = fn(&call, &s->out->result, &s->out->err);
    s->out->seconds = test_now() - start;
    if (s->time_limit > 0)
        green_timeout_end(&limit);
    return NULL;
}

/* Make sure the built-ins are registered (with default limits) once per process. */
static inline void task_run_register(void) {
    if (task_registry_find("echo") == NULL)
        ASSERT_EQ(task_register_builtins(NULL), 0);
}

/* Run task with args and kwargs given as JSON text (NULL: [] and {}) in a new hub. */
static inline task_outcome task_run_limited(const char *task, const char *args, const char *kwargs,
                                            double time_limit) {
    task_outcome out = {.rc = -1};
    task_run_spec spec = {
        .task = task,
        .args = task_json(args ? args : "[]"),
        .kwargs = task_json(kwargs ? kwargs : "{}"),
        .time_limit = time_limit,
        .out = &out,
    };
    task_run_register();
    ASSERT_EQ(green_run(NULL, NULL, task_run_main, &spec, NULL), 0);
    json_decref(spec.args);
    json_decref(spec.kwargs);
    return out;
}

static inline task_outcome task_run(const char *task, const char *args, const char *kwargs) {
    return task_run_limited(task, args, kwargs, 0);
}

static inline void task_outcome_free(task_outcome *o) {
    json_decref(o->result);
    o->result = NULL;
    task_error_clear(&o->err);
}

#endif
