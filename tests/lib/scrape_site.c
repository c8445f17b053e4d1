/*
 * scrape_site.c - start, query and stop scrape_site.py (scrape_site.h).
 */
#include "scrape_site.h"

#include "httpc.h"
#include "testlib.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#define PYTHON "/usr/bin/python3"

/* The script beside this file (__FILE__ is the absolute source path in CMake builds). */
static void script_path(char *buf, size_t len) {
    const char *slash = strrchr(__FILE__, '/');
    int dir = slash ? (int)(slash - __FILE__) : 1;
    snprintf(buf, len, "%.*s/scrape_site.py", dir, slash ? __FILE__ : ".");
}

void scrape_site_start(scrape_site *s, int pages) {
    char script[4096], count[32];
    script_path(script, sizeof script);
    snprintf(count, sizeof count, "%d", pages);
    int fds[2];
    ASSERT(pipe(fds) == 0);
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        execl(PYTHON, PYTHON, script, count, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    char line[32] = "";
    size_t n = 0;
    while (n + 1 < sizeof line) { /* the port, then a newline */
        ssize_t r = read(fds[0], line + n, 1);
        if (r <= 0 || line[n] == '\n')
            break;
        n++;
    }
    line[n] = '\0';
    close(fds[0]);
    s->pid = pid;
    s->port = atoi(line);
    if (s->port <= 0)
        test__fail(__FILE__, __LINE__, "%s did not print its port (got '%s')", script, line);
}

void scrape_site_stop(scrape_site *s) {
    if (s->pid > 0) {
        kill(s->pid, SIGKILL);
        waitpid(s->pid, NULL, 0);
    }
    s->pid = 0;
}

const char *scrape_site_url(const scrape_site *s, const char *path) {
    static char bufs[8][512];
    static int next;
    char *b = bufs[next++ % 8];
    snprintf(b, sizeof bufs[0], "http://127.0.0.1:%d%s", s->port, path);
    return b;
}

/* The JSON object the site serves at path. */
static json_t *site_json(const scrape_site *s, const char *path) {
    httpc_response r;
    char req[256];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", path);
    ASSERT_EQ(httpc_raw(s->port, req, (size_t)n, 10.0, &r), 200);
    json_error_t e = {.text = ""};
    json_t *doc = r.body ? json_loads(r.body, 0, &e) : NULL;
    httpc_free(&r);
    if (!json_is_object(doc))
        test__fail(__FILE__, __LINE__, "%s is not a JSON object: %s", path, e.text);
    return doc;
}

json_t *scrape_site_hits(const scrape_site *s) {
    return site_json(s, "/_hits");
}

json_t *scrape_site_served(const scrape_site *s) {
    return site_json(s, "/_served");
}
