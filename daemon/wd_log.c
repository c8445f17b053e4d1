/*
 * wd_log.c - the one-line-per-event log behind wd_log.h.
 *
 * Every line is built in a buffer on the caller's stack (a greenlet's stack is 256 KiB by
 * default; two WD_LOG_LINE_MAX buffers are 8 KiB) and leaves in a single write(2). Nothing
 * is buffered between calls, so there is nothing to flush at exit or before a fork, and a
 * crash loses at most the line being built.
 *
 * Invariants:
 *   - log_fd is the descriptor number every writer uses. It is 2 (stderr) or the number of
 *     the log file, which wd_log_reopen replaces in place with dup2(2): a writer that read
 *     log_fd a moment before a reopen writes to either the old or the new file, never to a
 *     closed or reused descriptor.
 *   - The threshold is an atomic int, so a reload can change it while other threads log.
 *   - The state table of wd_log_state is guarded by a mutex; the line itself is written
 *     outside the lock.
 *
 * These functions run on whatever stack calls them (greenlet, hub or another thread) and
 * never yield.
 */
#include "wd_log.h"

#include "green_check.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static atomic_int threshold = WD_LOG_INFO;
static atomic_int log_fd = STDERR_FILENO;
static char log_path[PATH_MAX]; /* empty when logging to stderr */

/* The task id is untrusted and only a label: beyond this many bytes it is cut. */
#define TASK_ID_MAX 200

static const char *const level_names[] = {"debug", "info", "warning", "error"};
static const char *const level_tags[] = {"DEBUG", "INFO ", "WARN ", "ERROR"};

int wd_log_level_parse(const char *text, enum wd_log_level *out) {
    for (int i = WD_LOG_DEBUG; i <= WD_LOG_ERROR; i++) {
        if (strcasecmp(text, level_names[i]) == 0) {
            *out = (enum wd_log_level)i;
            return 0;
        }
    }
    if (strcasecmp(text, "warn") == 0) {
        *out = WD_LOG_WARNING;
        return 0;
    }
    return -EINVAL;
}

const char *wd_log_level_name(enum wd_log_level level) {
    if ((int)level < WD_LOG_DEBUG || level > WD_LOG_ERROR)
        return "unknown";
    return level_names[level];
}

void wd_log_set_level(enum wd_log_level level) {
    atomic_store(&threshold, (int)level);
}

enum wd_log_level wd_log_get_level(void) {
    return (enum wd_log_level)atomic_load(&threshold);
}

bool wd_log_enabled(enum wd_log_level level) {
    return (int)level >= atomic_load(&threshold);
}

/* Copy src (len bytes) to dst, escaping what would break the one-line rule: \n, \r and
 * the other control characters except tab. Writes whole escape sequences only, never
 * more than cap bytes. Returns the bytes written; *cut is set when src did not fit. */
static size_t escape(const char *src, size_t len, char *dst, size_t cap, bool *cut) {
    static const char hex[] = "0123456789abcdef";
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)src[i];
        char seq[4];
        size_t k = 0;
        if (c == '\n') {
            seq[k++] = '\\';
            seq[k++] = 'n';
        } else if (c == '\r') {
            seq[k++] = '\\';
            seq[k++] = 'r';
        } else if ((c < 0x20 && c != '\t') || c == 0x7f) {
            seq[k++] = '\\';
            seq[k++] = 'x';
            seq[k++] = hex[c >> 4];
            seq[k++] = hex[c & 15];
        } else {
            seq[k++] = (char)c;
        }
        if (n + k > cap) {
            *cut = true;
            return n;
        }
        memcpy(dst + n, seq, k);
        n += k;
    }
    return n;
}

/* "2026-11-26T03:40:01.123Z" (24 bytes) into out, which holds at least 32. */
static size_t format_time(char *out) {
    double now = green_wallclock();
    time_t sec = (time_t)now;
    long ms = (long)((now - (double)sec) * 1000); /* 0..999: the fraction is in [0, 1) */
    struct tm tm;
    gmtime_r(&sec, &tm);
    size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    n += (size_t)snprintf(out + n, 32 - n, ".%03ldZ", ms);
    return n;
}

static void write_line(const char *line, size_t len) {
    int fd = atomic_load(&log_fd);
    while (len > 0) {
        ssize_t w = write(fd, line, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return; /* EAGAIN, EPIPE, a full disk: drop the line rather than stall */
        line += w;
        len -= (size_t)w;
    }
}

void wd_logv(enum wd_log_level level, const char *task_id, const char *fmt, va_list ap) {
    if (!wd_log_enabled(level))
        return;
    if ((int)level < WD_LOG_DEBUG || level > WD_LOG_ERROR)
        level = WD_LOG_ERROR;

    char msg[WD_LOG_LINE_MAX];
    int mlen = vsnprintf(msg, sizeof msg, fmt, ap);
    bool cut = false;
    if (mlen < 0)
        mlen = snprintf(msg, sizeof msg, "(unformattable log message: %s)", fmt);
    if ((size_t)mlen >= sizeof msg) {
        mlen = (int)sizeof msg - 1;
        cut = true;
    }

    char line[WD_LOG_LINE_MAX];
    const size_t cap = sizeof line - 1; /* room for the newline */
    size_t n = format_time(line);
    n += (size_t)snprintf(line + n, cap - n, " %s ", level_tags[level]);
    if (task_id != NULL) {
        bool id_cut = false;
        size_t idlen = strnlen(task_id, TASK_ID_MAX + 1);
        memcpy(line + n, "[task ", 6);
        n += 6;
        n += escape(task_id, idlen > TASK_ID_MAX ? TASK_ID_MAX : idlen, line + n, 4 * TASK_ID_MAX,
                    &id_cut);
        if (idlen > TASK_ID_MAX) {
            memcpy(line + n, "...", 3);
            n += 3;
        }
        memcpy(line + n, "] ", 2);
        n += 2;
    }
    n += escape(msg, (size_t)mlen, line + n, cap - n, &cut);
    if (cut) {
        /* Mark the cut; overwriting up to three bytes may split an escape sequence, which
         * is harmless since "..." already says the tail is gone. */
        if (n + 3 > cap)
            n = cap - 3;
        memcpy(line + n, "...", 3);
        n += 3;
    }
    line[n++] = '\n';
    write_line(line, n);
}

void wd_log(enum wd_log_level level, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    wd_logv(level, NULL, fmt, ap);
    va_end(ap);
}

void wd_log_task(enum wd_log_level level, const char *task_id, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    wd_logv(level, task_id, fmt, ap);
    va_end(ap);
}

/* The states recorded by wd_log_state. A handful of keys are ever used (broker, result
 * backend, metrics listener...), so a small array searched linearly is enough. */
#define STATE_KEYS 64
#define STATE_KEY_MAX 64

static struct {
    char key[STATE_KEY_MAX];
    int state;
    bool used;
} states[STATE_KEYS];
static pthread_mutex_t states_lock = PTHREAD_MUTEX_INITIALIZER;

/* Record state for key; returns true when it differs from the recorded one (or there was
 * none, or the table is full). */
static bool state_changed(const char *key, int state) {
    bool changed = true;
    pthread_mutex_lock(&states_lock);
    int free_slot = -1;
    int i;
    for (i = 0; i < STATE_KEYS; i++) {
        if (!states[i].used) {
            if (free_slot < 0)
                free_slot = i;
            continue;
        }
        if (strncmp(states[i].key, key, STATE_KEY_MAX - 1) == 0)
            break;
    }
    if (i < STATE_KEYS) {
        changed = states[i].state != state;
        states[i].state = state;
    } else if (free_slot >= 0) {
        snprintf(states[free_slot].key, STATE_KEY_MAX, "%s", key);
        states[free_slot].state = state;
        states[free_slot].used = true;
    }
    pthread_mutex_unlock(&states_lock);
    return changed;
}

bool wd_log_state(const char *key, int state, enum wd_log_level level, const char *fmt, ...) {
    if (!state_changed(key, state))
        return false;
    va_list ap;
    va_start(ap, fmt);
    wd_logv(level, NULL, fmt, ap);
    va_end(ap);
    return true;
}

void wd_log_state_reset(void) {
    pthread_mutex_lock(&states_lock);
    memset(states, 0, sizeof states);
    pthread_mutex_unlock(&states_lock);
}

static int open_log(const char *path) {
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
    return fd < 0 ? -errno : fd;
}

int wd_log_open_file(const char *path) {
    if (strlen(path) >= sizeof log_path)
        return -ENAMETOOLONG;
    int fd = open_log(path);
    if (fd < 0)
        return fd;
    int cur = atomic_load(&log_fd);
    if (cur != STDERR_FILENO) {
        /* A file is already open: take over its descriptor number, as a reopen does. */
        if (dup2(fd, cur) < 0) {
            int err = -errno;
            close(fd);
            return err;
        }
        close(fd);
    } else {
        atomic_store(&log_fd, fd);
    }
    snprintf(log_path, sizeof log_path, "%s", path);
    return 0;
}

int wd_log_reopen(void) {
    int cur = atomic_load(&log_fd);
    if (cur == STDERR_FILENO || log_path[0] == '\0')
        return 0;
    int fd = open_log(log_path);
    if (fd < 0)
        return fd;
    int err = 0;
    if (dup2(fd, cur) < 0)
        err = -errno;
    close(fd);
    return err;
}

void wd_log_close_file(void) {
    int cur = atomic_load(&log_fd);
    if (cur == STDERR_FILENO)
        return;
    /* Point the file's descriptor at stderr first, so a writer that still holds the old
     * number in the instant before the close writes to stderr rather than to the file. */
    dup2(STDERR_FILENO, cur);
    atomic_store(&log_fd, STDERR_FILENO);
    close(cur);
    log_path[0] = '\0';
}
