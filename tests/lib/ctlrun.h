/*
 * ctlrun.h - helpers for the tests of workerctl: run the real binary as a child with a
 * chosen environment, capture its exit code, stdout and stderr, and set up the Redis (and,
 * when needed, the workerd) it talks to.
 *
 * A run's stdout and stderr go to files in a private directory, read when it ends; each
 * run is echoed to stderr so that a failed test shows what workerctl said. The child has
 * PR_SET_PDEATHSIG(SIGKILL), so a failed ASSERT never leaves one behind, and runs with
 * every WORKERD_* variable workerctl reads cleared: the test's own environment cannot
 * point it at another Redis. Single-threaded test programs only; nothing yields.
 */
#ifndef WORKERD_TESTS_CTLRUN_H
#define WORKERD_TESTS_CTLRUN_H

#include <sys/types.h>

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "e2e.h"
#include "testlib.h"

/* One run of workerctl. */
typedef struct ctlrun {
    pid_t pid;
    char *dir; /* holds the output files */
    int code;  /* exit code, or 128 + the signal that killed it */
    char *out; /* stdout, once finished */
    char *err; /* stderr, once finished */
} ctlrun;

/* Start bin with args (NULL-terminated) and env ("K=V" entries, NULL-terminated, may be
 * NULL) added to the environment. Does not wait. */
void ctlrun__start(const char *bin, ctlrun *r, const char *const *env, const char *const *args);

/* Wait up to timeout seconds for the run to end (else SIGKILL it and fail the test), then
 * read its output. */
void ctlrun_finish(ctlrun *r, double timeout);

/* Free the output and remove the directory. */
void ctlrun_free(ctlrun *r);

/* stdout parsed as JSON (ASSERTs that it is); decref it. */
json_t *ctlrun_json(const ctlrun *r);

/* Lines (newlines) in s. */
int ctlrun_lines(const char *s);

/* The binary: WORKERCTL_BIN when the build defines it for the test program, else the
 * "workerctl" beside WORKERD_BIN. */
const char *ctlrun__beside(const char *workerd_bin);
#ifdef WORKERCTL_BIN
#define CTLRUN_BIN WORKERCTL_BIN
#else
#define CTLRUN_BIN ctlrun__beside(WORKERD_BIN)
#endif

/* Run to the end (30 s at most): CTL_RUN(&r, "queues", "--json"). */
#define CTL_RUN(r, ...)                                                                            \
    do {                                                                                           \
        const char *a__[] = {__VA_ARGS__, NULL};                                                   \
        ctlrun__start(CTLRUN_BIN, (r), NULL, a__);                                                 \
        ctlrun_finish((r), 30.0);                                                                  \
    } while (0)
/* The same with environment entries and a NULL-terminated argument array. */
#define CTL_RUN_ENV(r, env, args)                                                                  \
    do {                                                                                           \
        ctlrun__start(CTLRUN_BIN, (r), (env), (args));                                             \
        ctlrun_finish((r), 30.0);                                                                  \
    } while (0)
/* Start in the background; end with ctlrun_finish. */
#define CTL_START(r, ...)                                                                          \
    do {                                                                                           \
        const char *a__[] = {__VA_ARGS__, NULL};                                                   \
        ctlrun__start(CTLRUN_BIN, (r), NULL, a__);                                                 \
    } while (0)

/* A redis-server of the test's own, a client to it, its URL, and room for a worker. */
typedef struct ctlrun_env {
    test_redis redis;
    redisContext *c;
    char url[64]; /* redis://127.0.0.1:<port>/0 */
    e2e_worker w; /* started by the test when it needs one (E2E_START_READY) */
} ctlrun_env;

void ctlrun_env_start(ctlrun_env *e);
/* SIGTERM the worker if one runs (ASSERTs a clean exit), stop Redis. */
void ctlrun_env_end(ctlrun_env *e);

/* A Redis command with up to three string arguments (unused ones ignored); ASSERTs it did
 * not fail. */
void ctlrun_redis(ctlrun_env *e, const char *fmt, const char *a, const char *b, const char *c);

/* Element i of the list at key, parsed as JSON (ASSERTs it exists and parses). */
json_t *ctlrun_list(ctlrun_env *e, const char *key, long i);

#endif
