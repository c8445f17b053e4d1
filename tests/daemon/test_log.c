/*
 * test_log.c - the log as a reader of journald or a log file sees it: one line per event,
 * ISO-8601 UTC time with milliseconds, the level, the task id, the message; the threshold;
 * escaping; state-change lines; log files and their reopening; no interleaving between
 * processes.
 *
 * Output is captured by pointing descriptor 2 at a temporary file for the duration of the
 * calls (the assertions run after it is restored, so their messages still reach stderr).
 */
#include "testlib.h"

#include "wd_log.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int saved_stderr = -1;
static char capture_path[64];

static void capture_begin(void) {
    snprintf(capture_path, sizeof capture_path, "/tmp/wd_test_log.XXXXXX");
    int fd = mkstemp(capture_path);
    ASSERT(fd >= 0);
    fflush(stderr);
    saved_stderr = dup(STDERR_FILENO);
    ASSERT(saved_stderr >= 0);
    ASSERT(dup2(fd, STDERR_FILENO) == STDERR_FILENO);
    close(fd);
}

static char *read_file(const char *path) {
    FILE *f = fopen(path, "r");
    ASSERT(f != NULL);
    struct stat st;
    ASSERT_EQ(fstat(fileno(f), &st), 0);
    char *buf = malloc((size_t)st.st_size + 1);
    ASSERT(buf != NULL);
    size_t n = fread(buf, 1, (size_t)st.st_size, f);
    ASSERT_EQ(n, st.st_size);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* Restore stderr; returns everything logged since capture_begin (caller frees). */
static char *capture_end(void) {
    ASSERT(dup2(saved_stderr, STDERR_FILENO) == STDERR_FILENO);
    close(saved_stderr);
    char *text = read_file(capture_path);
    unlink(capture_path);
    return text;
}

static int count_char(const char *s, char c) {
    int n = 0;
    for (; *s; s++)
        n += *s == c;
    return n;
}

/* Check "YYYY-MM-DDTHH:MM:SS.mmmZ " at the start of line and that it is close to now;
 * returns what follows the time and its space. */
static const char *after_timestamp(const char *line) {
    const char *shape = "dddd-dd-ddTdd:dd:dd.dddZ ";
    for (size_t i = 0; shape[i]; i++) {
        if (shape[i] == 'd')
            ASSERT(line[i] >= '0' && line[i] <= '9');
        else
            ASSERT(line[i] == shape[i]);
    }
    struct tm tm = {0};
    ASSERT(sscanf(line, "%4d-%2d-%2dT%2d:%2d:%2d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                  &tm.tm_hour, &tm.tm_min, &tm.tm_sec) == 6);
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    double skew = difftime(timegm(&tm), time(NULL));
    ASSERT_RANGE(skew, -60, 2); /* logged at most a minute ago, and not in the future */
    return line + 25;
}

TEST(line_has_utc_time_level_and_message) {
    wd_log_set_level(WD_LOG_INFO);
    capture_begin();
    wd_log(WD_LOG_INFO, "fetched %d messages from %s", 12, "default");
    char *out = capture_end();
    ASSERT_STREQ(after_timestamp(out), "INFO  fetched 12 messages from default\n");
    free(out);
}

TEST(task_line_carries_task_id) {
    wd_log_set_level(WD_LOG_INFO);
    capture_begin();
    wd_log_task(WD_LOG_WARNING, "job-1", "retry %d of %d", 1, 3);
    char *out = capture_end();
    ASSERT_STREQ(after_timestamp(out), "WARN  [task job-1] retry 1 of 3\n");
    free(out);
}

TEST(each_level_has_its_tag) {
    wd_log_set_level(WD_LOG_DEBUG);
    capture_begin();
    wd_log(WD_LOG_DEBUG, "d");
    wd_log(WD_LOG_INFO, "i");
    wd_log(WD_LOG_WARNING, "w");
    wd_log(WD_LOG_ERROR, "e");
    char *out = capture_end();
    wd_log_set_level(WD_LOG_INFO);
    const char *want[] = {"DEBUG d\n", "INFO  i\n", "WARN  w\n", "ERROR e\n"};
    const char *p = out;
    for (int i = 0; i < 4; i++) {
        const char *rest = after_timestamp(p);
        ASSERT(strncmp(rest, want[i], strlen(want[i])) == 0);
        p = rest + strlen(want[i]);
    }
    ASSERT_STREQ(p, "");
    free(out);
}

TEST(threshold_drops_lower_levels) {
    wd_log_set_level(WD_LOG_WARNING);
    ASSERT(!wd_log_enabled(WD_LOG_INFO));
    ASSERT(wd_log_enabled(WD_LOG_ERROR));
    capture_begin();
    wd_log(WD_LOG_DEBUG, "hidden debug");
    wd_log(WD_LOG_INFO, "hidden info");
    wd_log_task(WD_LOG_INFO, "t", "hidden task info");
    wd_log(WD_LOG_WARNING, "shown warning");
    wd_log(WD_LOG_ERROR, "shown error");
    char *out = capture_end();
    wd_log_set_level(WD_LOG_INFO);
    ASSERT_EQ(count_char(out, '\n'), 2);
    ASSERT(strstr(out, "hidden") == NULL);
    ASSERT(strstr(out, "shown warning") != NULL);
    ASSERT(strstr(out, "shown error") != NULL);
    free(out);
}

TEST(threshold_can_change_at_runtime) {
    wd_log_set_level(WD_LOG_ERROR);
    capture_begin();
    wd_log(WD_LOG_DEBUG, "before");
    wd_log_set_level(WD_LOG_DEBUG);
    ASSERT_EQ(wd_log_get_level(), WD_LOG_DEBUG);
    wd_log(WD_LOG_DEBUG, "after");
    char *out = capture_end();
    wd_log_set_level(WD_LOG_INFO);
    ASSERT(strstr(out, "before") == NULL);
    ASSERT(strstr(out, "DEBUG after\n") != NULL);
    free(out);
}

TEST(newlines_in_message_and_task_id_stay_on_one_line) {
    wd_log_set_level(WD_LOG_INFO);
    capture_begin();
    wd_log_task(WD_LOG_ERROR, "evil\nid", "Traceback:\n  line 1\r\n  bell\a tab\tend");
    char *out = capture_end();
    ASSERT_EQ(count_char(out, '\n'), 1);
    ASSERT_STREQ(after_timestamp(out),
                 "ERROR [task evil\\nid] Traceback:\\n  line 1\\r\\n  bell\\x07 tab\tend\n");
    free(out);
}

TEST(long_message_is_cut_but_stays_one_line) {
    char *big = malloc(20000);
    ASSERT(big != NULL);
    for (int i = 0; i < 19999; i++)
        big[i] = i % 100 == 99 ? '\n' : 'x'; /* newlines double in size when escaped */
    big[19999] = '\0';
    wd_log_set_level(WD_LOG_INFO);
    capture_begin();
    wd_log(WD_LOG_INFO, "%s", big);
    char *out = capture_end();
    size_t len = strlen(out);
    ASSERT(len <= WD_LOG_LINE_MAX);
    ASSERT(len > WD_LOG_LINE_MAX - 8);
    ASSERT_EQ(count_char(out, '\n'), 1);
    ASSERT(strcmp(out + len - 4, "...\n") == 0);
    free(out);
    free(big);
}

TEST(state_change_logs_once_per_change) {
    wd_log_state_reset();
    wd_log_set_level(WD_LOG_INFO);
    capture_begin();
    bool r1 = wd_log_state("broker", 0, WD_LOG_WARNING, "broker disconnected: %s", "refused");
    bool r2 = wd_log_state("broker", 0, WD_LOG_WARNING, "broker disconnected: %s", "refused");
    bool r3 = wd_log_state("broker", 0, WD_LOG_WARNING, "broker disconnected: %s", "timeout");
    bool r4 = wd_log_state("broker", 1, WD_LOG_INFO, "broker connected");
    bool r5 = wd_log_state("broker", 1, WD_LOG_INFO, "broker connected");
    bool r6 = wd_log_state("broker", 0, WD_LOG_WARNING, "broker disconnected again");
    char *out = capture_end();
    ASSERT(r1 && !r2 && !r3 && r4 && !r5 && r6);
    ASSERT_EQ(count_char(out, '\n'), 3);
    const char *l2 = strchr(out, '\n') + 1, *l3 = strchr(l2, '\n') + 1;
    ASSERT(strncmp(after_timestamp(out), "WARN  broker disconnected: refused\n", 35) == 0);
    ASSERT(strncmp(after_timestamp(l2), "INFO  broker connected\n", 23) == 0);
    ASSERT_STREQ(after_timestamp(l3), "WARN  broker disconnected again\n");
    free(out);
}

TEST(state_keys_are_independent) {
    wd_log_state_reset();
    wd_log_set_level(WD_LOG_INFO);
    capture_begin();
    ASSERT(wd_log_state("broker", 1, WD_LOG_INFO, "broker up"));
    ASSERT(wd_log_state("backend", 1, WD_LOG_INFO, "backend up"));
    ASSERT(!wd_log_state("broker", 1, WD_LOG_INFO, "broker up"));
    ASSERT(!wd_log_state("backend", 1, WD_LOG_INFO, "backend up"));
    char *out = capture_end();
    ASSERT_EQ(count_char(out, '\n'), 2);
    free(out);
}

TEST(state_is_recorded_below_threshold) {
    wd_log_state_reset();
    wd_log_set_level(WD_LOG_ERROR);
    capture_begin();
    ASSERT(wd_log_state("broker", 0, WD_LOG_WARNING, "broker down"));
    wd_log_set_level(WD_LOG_INFO);
    ASSERT(!wd_log_state("broker", 0, WD_LOG_WARNING, "broker down"));
    char *out = capture_end();
    ASSERT_STREQ(out, "");
    free(out);
}

TEST(level_names_parse_in_any_case) {
    enum wd_log_level l = WD_LOG_ERROR;
    ASSERT_EQ(wd_log_level_parse("DEBUG", &l), 0);
    ASSERT_EQ(l, WD_LOG_DEBUG);
    ASSERT_EQ(wd_log_level_parse("Info", &l), 0);
    ASSERT_EQ(l, WD_LOG_INFO);
    ASSERT_EQ(wd_log_level_parse("warn", &l), 0);
    ASSERT_EQ(l, WD_LOG_WARNING);
    ASSERT_EQ(wd_log_level_parse("WARNING", &l), 0);
    ASSERT_EQ(l, WD_LOG_WARNING);
    ASSERT_EQ(wd_log_level_parse("error", &l), 0);
    ASSERT_EQ(l, WD_LOG_ERROR);
    ASSERT_EQ(wd_log_level_parse("verbose", &l), -EINVAL);
    ASSERT_EQ(l, WD_LOG_ERROR);
    ASSERT_STREQ(wd_log_level_name(WD_LOG_WARNING), "warning");
}

TEST(log_file_reopen_follows_a_rotation) {
    char *dir = test_tmpdir("wdlog");
    char path[512], rotated[512];
    snprintf(path, sizeof path, "%s/workerd.log", dir);
    snprintf(rotated, sizeof rotated, "%s/workerd.log.1", dir);
    wd_log_set_level(WD_LOG_INFO);
    ASSERT_EQ(wd_log_open_file(path), 0);
    wd_log(WD_LOG_INFO, "first");
    ASSERT_EQ(rename(path, rotated), 0);
    wd_log(WD_LOG_INFO, "second"); /* still the open file, now named .1 */
    ASSERT_EQ(wd_log_reopen(), 0);
    wd_log(WD_LOG_INFO, "third");
    wd_log_close_file();
    capture_begin();
    wd_log(WD_LOG_INFO, "fourth");
    char *err = capture_end();

    char *old = read_file(rotated), *cur = read_file(path);
    ASSERT(strstr(old, "INFO  first\n") != NULL);
    ASSERT(strstr(old, "INFO  second\n") != NULL);
    ASSERT(strstr(old, "third") == NULL);
    ASSERT_STREQ(after_timestamp(cur), "INFO  third\n");
    ASSERT(strstr(err, "INFO  fourth\n") != NULL);
    struct stat st;
    ASSERT_EQ(stat(path, &st), 0);
    mode_t mask = umask(0);
    umask(mask);
    ASSERT_EQ(st.st_mode & 0777, 0640 & ~mask);
    free(old);
    free(cur);
    free(err);
    test_rmtree(dir);
    free(dir);
}

TEST(log_file_that_cannot_be_opened_is_an_error) {
    ASSERT_EQ(wd_log_open_file("/nonexistent-dir/workerd.log"), -ENOENT);
    capture_begin();
    wd_log(WD_LOG_ERROR, "still on stderr");
    char *out = capture_end();
    ASSERT(strstr(out, "still on stderr") != NULL);
    free(out);
}

/* Four processes log long lines to one O_APPEND file at once (as workers under one
 * journald stream or one log file do): every line must come out whole. */
TEST(concurrent_processes_never_interleave_lines) {
    enum { PROCS = 8, LINES = 2000, WIDTH = 1000 };
    wd_log_set_level(WD_LOG_INFO);
    capture_begin();
    /* Reopen the capture file with O_APPEND, as a log file or journald's stream is. */
    int fd = open(capture_path, O_WRONLY | O_APPEND);
    ASSERT(fd >= 0);
    dup2(fd, STDERR_FILENO);
    close(fd);
    pid_t pids[PROCS];
    for (int p = 0; p < PROCS; p++) {
        pids[p] = fork();
        ASSERT(pids[p] >= 0);
        if (pids[p] == 0) {
            char payload[WIDTH + 1];
            memset(payload, 'a' + p, WIDTH);
            payload[WIDTH] = '\0';
            for (int i = 0; i < LINES; i++)
                wd_log(WD_LOG_INFO, "%s", payload);
            _exit(0);
        }
    }
    for (int p = 0; p < PROCS; p++) {
        int status;
        ASSERT_EQ(waitpid(pids[p], &status, 0), pids[p]);
        ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    char *out = capture_end();
    int lines = 0;
    for (char *line = out; *line; lines++) {
        char *nl = strchr(line, '\n');
        ASSERT(nl != NULL);
        ASSERT(line[23] == 'Z' && line[24] == ' ');
        const char *body = (lines == 0 ? after_timestamp(line) : line + 25) + 6; /* "INFO  " */
        ASSERT_EQ(nl - body, WIDTH);
        for (const char *q = body; q < nl; q++)
            ASSERT(*q == body[0]);
        line = nl + 1;
    }
    ASSERT_EQ(lines, PROCS * LINES);
    free(out);
}
