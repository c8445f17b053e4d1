/*
 * green_threadpool.c - the per-hub pool of OS threads behind green_threadpool_call
 * (green_threadpool.h).
 *
 * Shape. A pool belongs to one hub (the GREEN__SLOT_THREADPOOL slot) and owns: a mutex;
 * a FIFO of queued jobs with a condition variable the idle threads sleep on; a list of
 * done jobs; up to `size` threads, started lazily while there are more queued jobs than
 * idle threads; and an ev_async on the hub's loop. A job is a heap record: fn, arg,
 * ret, the release hook, and the parked caller.
 *
 * Life of a job. The caller (a greenlet) queues it and parks. A thread takes it
 * (QUEUED -> RUNNING), runs fn without the lock, then puts it on the done list (DONE) and
 * calls ev_async_send, the one libev call that is safe from another thread. On the hub,
 * the async callback takes the whole done list under the lock, marks each job
 * `finished`, and wakes its caller (green__wake, code 0). The woken caller copies ret and
 * frees the record.
 *
 * Abandoned jobs. If the caller's park ends with -ECANCELED or -ETIMEDOUT instead, the
 * caller looks at the job: already finished (the callback ran but its wake came too
 * late) -> release and free it now; still QUEUED (no thread took it) -> withdraw it from
 * the queue, release with ret NULL, free; RUNNING or DONE-but-not-yet-seen -> clear its
 * `waiter`, and the async callback releases and frees it when it arrives. So exactly
 * one party frees each record, and no thread or callback ever points into a greenlet's
 * stack.
 *
 * Which fields need the lock: state, the queue and done lists, and the thread counters
 * are shared with the threads. waiter, finished, in_flight and abandoned are touched only
 * on the hub's thread (by its greenlets and its callbacks, which never run at the same
 * time), so they need none.
 *
 * Keeping the loop alive. The ev_async is unref'd right after it starts, so an idle pool
 * never keeps the loop running; while jobs are in flight the pool takes one loop
 * reference (ev_ref), so a hub whose only pending work is a pool job sleeps in the loop
 * instead of spinning or ending. The hub ends after its last greenlet; the slot's
 * destroy hook then tells the threads to stop, joins them (waiting for jobs that are
 * still running), releases whatever is left, and stops the watcher.
 *
 * Stacks: green_threadpool_call runs on the caller's greenlet; on_done and pool_destroy
 * on the hub; worker on its own OS thread.
 */
#include "green_threadpool.h"
#include "green_internal.h"

#include <ev.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_SIZE 4
#define MAX_SIZE 1024

enum job_state { JOB_QUEUED, JOB_RUNNING, JOB_DONE };

typedef struct job {
    struct job *prev, *next; /* in the queue (both) or the done list (next only) */
    void *(*fn)(void *arg);
    void *arg;
    void *ret;
    green_threadpool_release_fn release;
    enum job_state state; /* under the lock */
    struct green *waiter; /* hub only: the parked caller, NULL once abandoned */
    bool finished;        /* hub only: on_done has taken it off the done list */
} job;

typedef struct pool {
    pthread_mutex_t lock;
    pthread_cond_t work;          /* signalled when a job is queued, broadcast on stop */
    job *queue_head, *queue_tail; /* under the lock */
    job *done;                    /* under the lock; LIFO, order does not matter */
    size_t queued, running, idle; /* under the lock */
    size_t threads;               /* under the lock; only the hub adds threads */
    bool stopping;                /* under the lock */
    size_t size;
    pthread_t *tids; /* hub only: the `threads` started, to join */
    struct ev_loop *loop;
    ev_async async;
    size_t in_flight; /* hub only: submitted, not yet finished or withdrawn */
    size_t abandoned; /* hub only: for the stats */
} pool;

static atomic_size_t configured_size = DEFAULT_SIZE;

int green_threadpool_set_size(size_t threads) {
    if (threads == 0 || threads > MAX_SIZE)
        return -EINVAL;
    atomic_store(&configured_size, threads);
    if (green_loop() != NULL && green__slot_get(GREEN__SLOT_THREADPOOL) != NULL)
        return -EBUSY;
    return 0;
}

/* ------------------------------------------------------------------------------------ */
/* The pool threads.                                                                    */
/* ------------------------------------------------------------------------------------ */

/* Take j out of the queue. Called with the lock held. */
static void unqueue(pool *pl, job *j) {
    if (j->prev != NULL)
        j->prev->next = j->next;
    else
        pl->queue_head = j->next;
    if (j->next != NULL)
        j->next->prev = j->prev;
    else
        pl->queue_tail = j->prev;
    pl->queued--;
}

static void *worker(void *p) {
    pool *pl = p;
    pthread_mutex_lock(&pl->lock);
    for (;;) {
        while (pl->queue_head == NULL && !pl->stopping) {
            pl->idle++;
            pthread_cond_wait(&pl->work, &pl->lock);
            pl->idle--;
        }
        /* On stop, queued jobs are left for pool_destroy to release: every greenlet has
         * ended by then, so nobody waits for them. */
        if (pl->stopping)
            break;
        job *j = pl->queue_head;
        unqueue(pl, j);
        j->state = JOB_RUNNING;
        pl->running++;
        pthread_mutex_unlock(&pl->lock);

        void *ret = j->fn(j->arg);

        pthread_mutex_lock(&pl->lock);
        j->ret = ret;
        j->state = JOB_DONE;
        j->next = pl->done;
        pl->done = j;
        pl->running--;
        /* Thread-safe and non-blocking; pool_destroy stops the watcher only after joining
         * every thread, so no send can reach a stopped watcher. */
        ev_async_send(pl->loop, &pl->async);
    }
    pthread_mutex_unlock(&pl->lock);
    return NULL;
}

/* Start one more thread, with every signal blocked so that signals keep going to the
 * hub's thread (inherited from our mask, restored right after). Called with the lock
 * held. Returns 0 or -errno. */
static int start_thread(pool *pl) {
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_t tid;
    int err = pthread_create(&tid, NULL, worker, pl);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err != 0)
        return -err;
    pthread_setname_np(tid, "green-pool");
    pl->tids[pl->threads++] = tid;
    return 0;
}

/* ------------------------------------------------------------------------------------ */
/* The hub side.                                                                        */
/* ------------------------------------------------------------------------------------ */

static void job_release(job *j) {
    if (j->release != NULL)
        j->release(j->arg, j->ret);
    free(j);
}

/* A job left the pool's hands (finished or withdrawn): drop the loop reference that
 * in-flight jobs hold once the last one is gone. */
static void job_gone(pool *pl) {
    if (--pl->in_flight == 0)
        ev_unref(pl->loop);
}

/* The ev_async callback, on the hub's stack: hand every done job to its caller, or free
 * it if its caller gave up. Never yields. */
static void on_done(struct ev_loop *loop, ev_async *w, int revents) {
    (void)loop;
    (void)revents;
    pool *pl = w->data;
    pthread_mutex_lock(&pl->lock);
    job *list = pl->done;
    pl->done = NULL;
    pthread_mutex_unlock(&pl->lock);
    while (list != NULL) {
        job *j = list;
        list = j->next;
        j->finished = true;
        job_gone(pl);
        if (j->waiter != NULL) {
            /* If the wake fails, the caller's park has already ended with an error; it
             * sees `finished` when it runs and frees the job itself. */
            green__wake(j->waiter, 0);
        } else {
            pl->abandoned--;
            job_release(j);
        }
    }
}

static void pool_destroy(void *p) {
    pool *pl = p;
    pthread_mutex_lock(&pl->lock);
    pl->stopping = true;
    pthread_cond_broadcast(&pl->work);
    pthread_mutex_unlock(&pl->lock);
    for (size_t i = 0; i < pl->threads; i++)
        pthread_join(pl->tids[i], NULL);

    /* No thread runs now, and every greenlet has ended, so whatever is left is abandoned:
     * jobs never taken, and jobs done after the hub's last loop iteration. */
    for (job *j = pl->queue_head, *next; j != NULL; j = next) {
        next = j->next;
        j->ret = NULL;
        job_release(j);
    }
    for (job *j = pl->done, *next; j != NULL; j = next) {
        next = j->next;
        job_release(j);
    }
    /* Give the watcher back the reference ev_async_stop will take away. */
    if (pl->in_flight == 0)
        ev_ref(pl->loop);
    ev_async_stop(pl->loop, &pl->async);
    pthread_cond_destroy(&pl->work);
    pthread_mutex_destroy(&pl->lock);
    free(pl->tids);
    free(pl);
}

static int pool_get(pool **out) {
    pool *pl = green__slot_get(GREEN__SLOT_THREADPOOL);
    if (pl != NULL) {
        *out = pl;
        return 0;
    }
    pl = calloc(1, sizeof *pl);
    if (pl == NULL)
        return -ENOMEM;
    pl->size = atomic_load(&configured_size);
    pl->tids = calloc(pl->size, sizeof *pl->tids);
    if (pl->tids == NULL) {
        free(pl);
        return -ENOMEM;
    }
    pthread_mutex_init(&pl->lock, NULL);
    pthread_cond_init(&pl->work, NULL);
    pl->loop = green_loop();
    ev_async_init(&pl->async, on_done);
    pl->async.data = pl;
    ev_async_start(pl->loop, &pl->async);
    ev_unref(pl->loop);
    green__slot_set(GREEN__SLOT_THREADPOOL, pl, pool_destroy);
    *out = pl;
    return 0;
}

/* Queue j, starting a thread if every started one is busy. Returns 0, or -EAGAIN/-errno
 * when no thread exists and none could be started (j is then not queued). */
static int submit(pool *pl, job *j) {
    pthread_mutex_lock(&pl->lock);
    j->state = JOB_QUEUED;
    j->next = NULL;
    j->prev = pl->queue_tail;
    if (pl->queue_tail != NULL)
        pl->queue_tail->next = j;
    else
        pl->queue_head = j;
    pl->queue_tail = j;
    pl->queued++;
    if (pl->queued > pl->idle && pl->threads < pl->size) {
        int err = start_thread(pl);
        if (err < 0 && pl->threads == 0) {
            fprintf(stderr, "green_threadpool: cannot start a thread: %s\n", strerror(-err));
            unqueue(pl, j);
            pthread_mutex_unlock(&pl->lock);
            return err == -ENOMEM ? -ENOMEM : -EAGAIN;
        }
        /* With at least one thread the job just waits its turn. */
    }
    pthread_cond_signal(&pl->work);
    pthread_mutex_unlock(&pl->lock);
    if (pl->in_flight++ == 0)
        ev_ref(pl->loop);
    return 0;
}

/* The caller's park ended without the job's result: see "Abandoned jobs" above. */
static void abandon(pool *pl, job *j) {
    if (j->finished) {
        job_release(j);
        return;
    }
    bool withdrawn = false;
    pthread_mutex_lock(&pl->lock);
    if (j->state == JOB_QUEUED) {
        unqueue(pl, j);
        withdrawn = true;
    }
    pthread_mutex_unlock(&pl->lock);
    if (withdrawn) {
        job_gone(pl);
        j->ret = NULL;
        job_release(j);
    } else {
        j->waiter = NULL;
        pl->abandoned++;
    }
}

int green_threadpool_call_ex(void *(*fn)(void *arg), void *arg, void **ret, double timeout,
                             green_threadpool_release_fn release) {
    assert(fn != NULL && "green_threadpool_call: fn is NULL");
    int rc = green__check();
    pool *pl = NULL;
    job *j = NULL;
    if (rc < 0)
        goto fail;
    rc = pool_get(&pl);
    if (rc < 0)
        goto fail;
    j = calloc(1, sizeof *j);
    if (j == NULL) {
        rc = -ENOMEM;
        goto fail;
    }
    j->fn = fn;
    j->arg = arg;
    j->release = release;
    j->waiter = green__current();
    rc = submit(pl, j);
    if (rc < 0)
        goto fail;

    rc = green__park(green__deadline_in(timeout));
    if (rc == 0 && j->finished) {
        if (ret != NULL)
            *ret = j->ret;
        free(j);
        return 0;
    }
    assert(rc < 0 && "green_threadpool_call: woken by someone other than the pool");
    if (rc >= 0)
        rc = -EINTR;
    abandon(pl, j);
    return rc;

fail:
    free(j);
    if (release != NULL)
        release(arg, NULL);
    return rc;
}

int green_threadpool_call(void *(*fn)(void *arg), void *arg, void **ret, double timeout) {
    return green_threadpool_call_ex(fn, arg, ret, timeout, NULL);
}

void green_threadpool_get_stats(green_threadpool_stats *out) {
    memset(out, 0, sizeof *out);
    if (green_loop() == NULL)
        return;
    pool *pl = green__slot_get(GREEN__SLOT_THREADPOOL);
    if (pl == NULL)
        return;
    pthread_mutex_lock(&pl->lock);
    out->threads = pl->threads;
    out->queued = pl->queued;
    out->running = pl->running;
    pthread_mutex_unlock(&pl->lock);
    out->abandoned = pl->abandoned;
}
