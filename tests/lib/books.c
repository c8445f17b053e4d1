/*
 * books.c - the accounting behind books.h: parse the workers' logs into runs, read every
 * result, match the two, and check that Redis holds nothing left over.
 *
 * Ids live in an array sorted once at check time (bsearch by id); runs in a growing array
 * in log order. The scenarios have at most a few thousand of each, so nothing cleverer is
 * needed. Log lines look like
 *   2026-11-26T03:40:01.123Z DEBUG [task f-17] sleep started (tag 42)
 * and the worker's id comes from its start-up line ("... worker id <wid>").
 */
#include "books.h"
#include "testlib.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

struct book_id {
    char *id, *expect;
    char *status, *worker; /* from the result, after books_check; NULL when absent */
    int runs, faulted;
};

struct book_run {
    int id, log;      /* indexes into ids and logs */
    int attempt;      /* the message's retries when it ran: 0 first, 1 the first retry */
    double t;         /* when it started (unix seconds) */
    bool interrupted; /* "interrupted by shutdown" followed in its log */
};

struct book_log {
    char *path, *wid;
    char what[16]; /* "" or the fault that hit its worker */
    double fault_until;
};

struct book_window {
    char what[32];
    double t0, t1;
};

struct books {
    struct book_id *ids;
    size_t nids, capids;
    struct book_run *runs;
    size_t nruns, capruns;
    struct book_log *logs;
    size_t nlogs, caplogs;
    struct book_window *windows;
    size_t nwindows, capwindows;
    int faults;
    long long expect_dead;
    bool sorted;
    books_totals totals;
};

/* Grow *arr (of element size sz) so that it holds one more than *n. */
static void *grow(void *arr, size_t *cap, size_t n, size_t sz) {
    if (n < *cap)
        return arr;
    *cap = *cap ? *cap * 2 : 64;
    void *p = realloc(arr, *cap * sz);
    if (!p)
        test__fail(__FILE__, __LINE__, "books: out of memory");
    return p;
}

books *books_new(void) {
    books *b = calloc(1, sizeof *b);
    if (!b)
        test__fail(__FILE__, __LINE__, "books: out of memory");
    return b;
}

void books_free(books *b) {
    if (!b)
        return;
    for (size_t i = 0; i < b->nids; i++) {
        free(b->ids[i].id);
        free(b->ids[i].expect);
        free(b->ids[i].status);
        free(b->ids[i].worker);
    }
    for (size_t i = 0; i < b->nlogs; i++) {
        free(b->logs[i].path);
        free(b->logs[i].wid);
    }
    free(b->ids);
    free(b->runs);
    free(b->logs);
    free(b->windows);
    free(b);
}

double books_now(void) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

void books_ids(books *b, const char *prefix, int first, int last, const char *status) {
    for (int i = first; i <= last; i++) {
        b->ids = grow(b->ids, &b->capids, b->nids, sizeof *b->ids);
        struct book_id *e = &b->ids[b->nids++];
        memset(e, 0, sizeof *e);
        if (asprintf(&e->id, "%s%d", prefix, i) < 0 || !(e->expect = strdup(status)))
            test__fail(__FILE__, __LINE__, "books: out of memory");
    }
    b->sorted = false;
}

int books_log(books *b, const char *path) {
    b->logs = grow(b->logs, &b->caplogs, b->nlogs, sizeof *b->logs);
    struct book_log *l = &b->logs[b->nlogs];
    memset(l, 0, sizeof *l);
    l->path = strdup(path);
    return (int)b->nlogs++;
}

void books_log_fault(books *b, int index, const char *what, double until) {
    ASSERT(index >= 0 && (size_t)index < b->nlogs);
    struct book_log *l = &b->logs[index];
    snprintf(l->what, sizeof l->what, "%s", what);
    if (until > l->fault_until)
        l->fault_until = until;
    b->faults++;
}

void books_window(books *b, const char *what, double t0, double t1) {
    b->windows = grow(b->windows, &b->capwindows, b->nwindows, sizeof *b->windows);
    struct book_window *w = &b->windows[b->nwindows++];
    snprintf(w->what, sizeof w->what, "%s", what);
    w->t0 = t0;
    w->t1 = t1;
    b->faults++;
}

void books_fault(books *b, int n) {
    b->faults += n;
}

void books_expect_dead(books *b, long long n) {
    b->expect_dead = n;
}

/* ---- ids ---------------------------------------------------------------------------- */

static int cmp_id(const void *x, const void *y) {
    return strcmp(((const struct book_id *)x)->id, ((const struct book_id *)y)->id);
}

static struct book_id *find_id(books *b, const char *id) {
    if (!b->sorted) {
        qsort(b->ids, b->nids, sizeof *b->ids, cmp_id);
        b->sorted = true;
    }
    struct book_id key = {.id = (char *)id};
    return bsearch(&key, b->ids, b->nids, sizeof *b->ids, cmp_id);
}

/* STARTED and RETRY (a retry is waiting in the scheduled set) are not final. */
static bool is_final(const char *status) {
    return status && strcmp(status, "STARTED") != 0 && strcmp(status, "RETRY") != 0;
}

/* Read every result (one MGET), filling status and worker. Returns how many are final. */
static size_t read_results(books *b, redisContext *c) {
    find_id(b, ""); /* sort */
    size_t argc = b->nids + 1, final = 0;
    const char **argv = calloc(argc, sizeof *argv);
    char **keys = calloc(argc, sizeof *keys);
    ASSERT(argv && keys);
    argv[0] = "MGET";
    for (size_t i = 0; i < b->nids; i++) {
        if (asprintf(&keys[i], "workerd:result:%s", b->ids[i].id) < 0)
            test__fail(__FILE__, __LINE__, "books: out of memory");
        argv[i + 1] = keys[i];
    }
    redisReply *r = redisCommandArgv(c, (int)argc, argv, NULL);
    ASSERT(r && r->type == REDIS_REPLY_ARRAY && r->elements == b->nids);
    for (size_t i = 0; i < b->nids; i++) {
        struct book_id *e = &b->ids[i];
        free(e->status);
        free(e->worker);
        e->status = e->worker = NULL;
        if (r->element[i]->type != REDIS_REPLY_STRING)
            continue;
        json_t *doc = json_loadb(r->element[i]->str, r->element[i]->len, 0, NULL);
        const char *st = json_string_value(json_object_get(doc, "status"));
        const char *wk = json_string_value(json_object_get(doc, "worker"));
        e->status = strdup(st ? st : "(none)");
        e->worker = wk ? strdup(wk) : NULL;
        final += is_final(e->status);
        json_decref(doc);
    }
    freeReplyObject(r);
    for (size_t i = 0; i < b->nids; i++)
        free(keys[i]);
    free(keys);
    free(argv);
    return final;
}

/* Sum of LLEN (or HLEN) over the keys matching pattern. */
static long long sum_len(redisContext *c, const char *pattern, const char *len_cmd) {
    redisReply *keys = redisCommand(c, "KEYS %s", pattern);
    ASSERT(keys && keys->type == REDIS_REPLY_ARRAY);
    long long sum = 0;
    for (size_t i = 0; i < keys->elements; i++) {
        redisReply *n = redisCommand(c, "%s %s", len_cmd, keys->element[i]->str);
        ASSERT(n && n->type == REDIS_REPLY_INTEGER);
        sum += n->integer;
        freeReplyObject(n);
    }
    freeReplyObject(keys);
    return sum;
}

static long long leftovers(redisContext *c) {
    return sum_len(c, "workerd:queue:*", "LLEN") + sum_len(c, "workerd:inflight:*", "HLEN") +
           sum_len(c, "workerd:landing:*", "LLEN") + sum_len(c, "workerd:scheduled", "ZCARD");
}

bool books_wait_done(books *b, redisContext *c, double timeout) {
    double deadline = test_now() + timeout;
    for (;;) {
        if (read_results(b, c) == b->nids && leftovers(c) == 0)
            return true;
        if (test_now() >= deadline)
            return false;
        usleep(50000);
    }
}

/* ---- logs --------------------------------------------------------------------------- */

/* "2026-11-26T03:40:01.123Z" -> unix seconds; -1 when the line does not start so. */
static double parse_time(const char *s) {
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!end)
        return -1;
    double t = (double)timegm(&tm);
    if (*end == '.')
        t += strtod(end, NULL);
    return t;
}

static void parse_log(books *b, int li) {
    struct book_log *l = &b->logs[li];
    FILE *f = fopen(l->path, "r");
    if (!f)
        test__fail(__FILE__, __LINE__, "books: cannot open %s", l->path);
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, f)) > 0) {
        if (line[len - 1] == '\n')
            line[--len] = '\0';
        const char *w = strstr(line, " worker id ");
        if (w && !l->wid && !strstr(line, "[task "))
            l->wid = strdup(w + strlen(" worker id "));
        char *open = strstr(line, " [task ");
        if (!open)
            continue;
        char *id = open + strlen(" [task ");
        char *close = strstr(id, "] ");
        if (!close)
            continue;
        *close = '\0';
        const char *rest = close + 2;
        struct book_id *e = find_id(b, id);
        if (!e)
            continue; /* not one of ours */
        int idx = (int)(e - b->ids);
        if (strstr(rest, " started (tag ")) {
            /* "<task> started (tag 42)", or "(tag 42, retry 2)" for a retry */
            const char *retry = strstr(rest, ", retry ");
            b->runs = grow(b->runs, &b->capruns, b->nruns, sizeof *b->runs);
            b->runs[b->nruns++] = (struct book_run){.id = idx,
                                                    .log = li,
                                                    .attempt = retry ? atoi(retry + 8) : 0,
                                                    .t = parse_time(line)};
        } else if (strstr(rest, " interrupted by shutdown")) {
            for (size_t r = b->nruns; r-- > 0;)
                if (b->runs[r].id == idx && b->runs[r].log == li) {
                    b->runs[r].interrupted = true;
                    break;
                }
        }
    }
    free(line);
    fclose(f);
}

/* Why a run may have been repeated, or NULL when nothing explains it. */
static const char *fault_of(const books *b, const struct book_run *r) {
    const struct book_log *l = &b->logs[r->log];
    if (r->interrupted)
        return "interrupted by the shutdown deadline";
    if (l->what[0] && r->t <= l->fault_until + 0.05)
        return l->what;
    for (size_t i = 0; i < b->nwindows; i++)
        if (r->t >= b->windows[i].t0 - BOOKS_WINDOW_SLACK && r->t <= b->windows[i].t1 + 0.05)
            return b->windows[i].what;
    return NULL;
}

/* The result's worker ran the id (one of its runs is in that worker's log). */
static bool attributed(const books *b, const struct book_id *e, int idx) {
    for (size_t r = 0; r < b->nruns; r++) {
        const struct book_log *l = &b->logs[b->runs[r].log];
        if (b->runs[r].id == idx && l->wid && strcmp(l->wid, e->worker) == 0)
            return true;
    }
    return false;
}

/* The runs of id idx that repeated an attempt (a retry is a new attempt, not a
 * duplicate: attempt k is the run with "retries": k), and how many of those a fault
 * explains, counted per attempt: the k-th attempt that ran n times with f of its runs
 * faulted has n - 1 duplicates, min(f, n - 1) of them explained. */
static void count_duplicates(const books *b, int idx, int *dup, int *expl) {
    *dup = *expl = 0;
    for (size_t r = 0; r < b->nruns; r++) {
        const struct book_run *x = &b->runs[r];
        bool first = x->id == idx;
        for (size_t q = 0; first && q < r; q++)
            first = !(b->runs[q].id == idx && b->runs[q].attempt == x->attempt);
        if (!first)
            continue; /* not idx, or its attempt was counted at its first run */
        int n = 0, f = 0;
        for (size_t q = r; q < b->nruns; q++)
            if (b->runs[q].id == idx && b->runs[q].attempt == x->attempt) {
                n++;
                f += fault_of(b, &b->runs[q]) != NULL;
            }
        *dup += n - 1;
        *expl += f < n - 1 ? f : n - 1;
    }
}

void books_check(books *b, redisContext *c) {
    read_results(b, c);
    b->nruns = 0;
    for (size_t i = 0; i < b->nids; i++)
        b->ids[i].runs = b->ids[i].faulted = 0;
    for (size_t li = 0; li < b->nlogs; li++)
        parse_log(b, (int)li);
    for (size_t r = 0; r < b->nruns; r++) {
        b->ids[b->runs[r].id].runs++;
        b->ids[b->runs[r].id].faulted += fault_of(b, &b->runs[r]) != NULL;
    }
    books_totals t = {.tasks = (int)b->nids, .executions = (int)b->nruns, .faults = b->faults};
    int unattributed = 0, must_run = 0; /* ids expected to run: all but the revoked */
    for (size_t i = 0; i < b->nids; i++)
        must_run += strcmp(b->ids[i].expect, "REVOKED") != 0;
    for (size_t i = 0; i < b->nids; i++) {
        struct book_id *e = &b->ids[i];
        if (!is_final(e->status)) {
            t.lost++;
            fprintf(stderr, "books: LOST %s (result %s, ran %d times)\n", e->id,
                    e->status ? e->status : "absent", e->runs);
            continue;
        }
        if (strcmp(e->status, e->expect) != 0) {
            t.wrong++;
            fprintf(stderr, "books: WRONG %s: %s, expected %s\n", e->id, e->status, e->expect);
        }
        /* A REVOKED result (revoked, expired, a Duplicate) may be written by a worker that
         * did not run the task: nothing to attribute it to. */
        if (e->worker && strcmp(e->status, "REVOKED") != 0 && !attributed(b, e, (int)i)) {
            unattributed++;
            fprintf(stderr, "books: %s has a result from %s, which never ran it\n", e->id,
                    e->worker);
        }
        if (e->runs <= 1)
            continue;
        int dup, expl;
        count_duplicates(b, (int)i, &dup, &expl);
        if (dup == 0)
            continue;
        t.duplicates += dup;
        t.explained += expl;
        fprintf(stderr, "books: %s ran %d times (%s):", e->id, e->runs,
                expl == dup ? "explained" : "NOT EXPLAINED");
        for (size_t r = 0; r < b->nruns; r++)
            if (b->runs[r].id == (int)i) {
                const char *why = fault_of(b, &b->runs[r]);
                fprintf(stderr, " [%s%s%s]",
                        b->logs[b->runs[r].log].wid ? b->logs[b->runs[r].log].wid : "?",
                        why ? ": " : "", why ? why : "");
            }
        fprintf(stderr, "\n");
    }
    b->totals = t;
    long long queued = sum_len(c, "workerd:queue:*", "LLEN");
    long long inflight = sum_len(c, "workerd:inflight:*", "HLEN");
    long long landing = sum_len(c, "workerd:landing:*", "LLEN");
    long long scheduled = sum_len(c, "workerd:scheduled", "ZCARD");
    long long dead = sum_len(c, "workerd:dead", "LLEN");
    printf("books: tasks %d, executions %d, faults %d, lost %d, duplicates %d (explained %d)\n",
           t.tasks, t.executions, t.faults, t.lost, t.duplicates, t.explained);
    printf("books: left over: queued %lld, in flight %lld, landing %lld, scheduled %lld, "
           "dead letters %lld\n",
           queued, inflight, landing, scheduled, dead);
    fflush(stdout);
    ASSERT_EQ(t.lost, 0);
    ASSERT_EQ(t.wrong, 0);
    ASSERT_EQ(unattributed, 0);
    ASSERT_EQ(t.duplicates, t.explained);
    ASSERT(t.executions >= must_run);
    ASSERT_EQ(queued, 0);
    ASSERT_EQ(inflight, 0);
    ASSERT_EQ(landing, 0);
    ASSERT_EQ(scheduled, 0);
    ASSERT_EQ(dead, b->expect_dead);
}

books_totals books_get_totals(const books *b) {
    return b->totals;
}

int books_runs(const books *b, const char *id) {
    for (size_t i = 0; i < b->nids; i++)
        if (strcmp(b->ids[i].id, id) == 0)
            return b->ids[i].runs;
    return 0;
}

const char *books_result_worker(const books *b, const char *id) {
    for (size_t i = 0; i < b->nids; i++)
        if (strcmp(b->ids[i].id, id) == 0)
            return b->ids[i].worker;
    return NULL;
}
