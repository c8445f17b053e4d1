/*
 * broker_batch.h - Redis commands as argument vectors: built once by broker_cmds.h's
 * builders, sent as they are by either client, the green worker (broker_conn_pipeline on
 * green_redis) or workerctl (hiredis's redisAppendCommandArgv on a plain redisContext):
 *
 *     broker_conn_pipeline(conn, b.n, b.argcs, b.argvs, b.argvlens, replies, timeout);
 *
 *     for (size_t i = 0; i < b.n; i++)
 *         redisAppendCommandArgv(rc, b.argcs[i], b.argvs[i], b.argvlens[i]);
 *
 * A batch holds one or more commands, meant to go out in order in one round trip (a
 * pipeline); one command is a batch of one. Command i has argcs[i] arguments,
 * argvs[i][j] of argvlens[i][j] bytes each: binary-safe, no format strings.
 *
 * An argument is either borrowed (broker_batch_arg, broker_batch_str: the caller keeps the
 * bytes alive and unchanged until the batch is sent) or copied into the batch
 * (broker_batch_copy, broker_batch_num), into blocks of a few KiB: a batch of a thousand
 * results costs a few allocations, not one per key.
 *
 * Errors are sticky: once a call failed (-ENOMEM, or -EINVAL from a builder through
 * broker_batch_fail), b->err holds the first error and every later call returns it and
 * adds nothing, so a builder may chain its calls and look at the result once. A failed
 * batch must not be sent. Start from a zeroed batch (broker_batch b = {0}); release it
 * with broker_batch_clear, which leaves it empty and reusable.
 *
 * Pure computation: no I/O, never yields, callable from any stack; a batch belongs to
 * one thread at a time.
 */
#ifndef WORKERD_BROKER_BATCH_H
#define WORKERD_BROKER_BATCH_H

#include <stddef.h>

struct broker_batch_block;

typedef struct broker_batch {
    /* Read-only for users. The arrays move while commands are added: take the pointers
     * once the batch is complete. */
    size_t n;                /* commands */
    int *argcs;              /* [n] */
    const char ***argvs;     /* [n] */
    const size_t **argvlens; /* [n] */
    int err;                 /* 0, or the first error */

    /* Private. */
    const char **args;
    size_t *lens;
    size_t nargs, cap_args, cap_cmds;
    size_t *first; /* first[i]: index in args of command i's first argument */
    struct broker_batch_block *blocks;
} broker_batch;

/* Start a new command; the arguments that follow are its own (the first names the
 * command: "LLEN"). Returns 0 or the batch's error. */
int broker_batch_cmd(broker_batch *b);

/* Add an argument to the last command. Borrowed: s[0..len), or the C string s. */
int broker_batch_arg(broker_batch *b, const char *s, size_t len);
int broker_batch_str(broker_batch *b, const char *s);

/* Add a copy of s[0..len) (NUL-terminated in the batch), or the decimal text of v. */
int broker_batch_copy(broker_batch *b, const char *s, size_t len);
int broker_batch_num(broker_batch *b, long long v);

/* Replace argument j of command i (both must exist) by s[0..len), borrowed. */
void broker_batch_set(broker_batch *b, size_t i, int j, const char *s, size_t len);

/* Make err (a negative errno) the batch's error, unless it has one already. Returns the
 * batch's error. */
int broker_batch_fail(broker_batch *b, int err);

/* Free everything the batch holds; it is then empty ({0}). */
void broker_batch_clear(broker_batch *b);

#endif
