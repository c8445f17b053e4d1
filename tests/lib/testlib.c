/*
 * testlib.c - the harness behind testlib.h: a registry of TEST functions run by name, and
 * the real servers the integration tests talk to. Servers are children of the test
 * process; each test stops what it started, and ctest's timeout ends a hung test.
 */
#include "testlib.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_TESTS 256

static struct {
    const char *name;
    test_fn fn;
} tests[MAX_TESTS];
static int ntests;
static const char *self_path; /* argv[0], for test_child */

/* The names tests/lib/test_names.cmake can register with ctest. */
static bool registrable(const char *name) {
    if (*name == '\0')
        return false;
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_'))
            return false;
    return true;
}

void test__register(const char *name, test_fn fn) {
    if (ntests == MAX_TESTS) {
        fprintf(stderr, "testlib: more than %d tests in one program\n", MAX_TESTS);
        abort();
    }
    if (!registrable(name)) {
        fprintf(stderr, "testlib: TEST(%s): ctest cannot run this name (use [a-z0-9_]+)\n", name);
        abort();
    }
    tests[ntests].name = name;
    tests[ntests].fn = fn;
    ntests++;
}

void test__fail(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "FAIL %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
    abort();
}

void test_skip(const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "SKIP: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
    exit(TEST_SKIP_CODE);
}

double test_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void test_pause(void) {
    struct timespec ts = {0, 10 * 1000 * 1000};
    nanosleep(&ts, NULL);
}

static int run_one(int i) {
    double t0 = test_now();
    fprintf(stderr, "RUN  %s\n", tests[i].name);
    tests[i].fn();
    fprintf(stderr, "OK   %s (%.3f s)\n", tests[i].name, test_now() - t0);
    return 0;
}

int main(int argc, char **argv) {
    self_path = argv[0];
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc > 1 && strcmp(argv[1], "--list") == 0) {
        for (int i = 0; i < ntests; i++)
            printf("%s\n", tests[i].name);
        return 0;
    }
    int ran = 0;
    for (int i = 0; i < ntests; i++) {
        if (argc > 1 && strcmp(argv[1], tests[i].name) != 0)
            continue;
        run_one(i);
        ran++;
    }
    if (ran == 0) {
        fprintf(stderr, "no test named %s\n", argc > 1 ? argv[1] : "(any)");
        return 2;
    }
    return 0;
}

bool test_in_child(void) {
    return getenv("WORKERD_TEST_CHILD") != NULL;
}

int test_child(const char *name, char **err) {
    char *dir = test_tmpdir("child");
    char path[512];
    snprintf(path, sizeof path, "%s/stderr", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        test__fail(__FILE__, __LINE__, "open %s: %s", path, strerror(errno));
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        test__fail(__FILE__, __LINE__, "fork: %s", strerror(errno));
    if (pid == 0) {
        dup2(fd, 2);
        setenv("WORKERD_TEST_CHILD", "1", 1);
        execl(self_path, self_path, name, (char *)NULL);
        _exit(127);
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (err) {
        off_t len = lseek(fd, 0, SEEK_END);
        *err = calloc(1, (size_t)(len > 0 ? len : 0) + 1);
        if (len > 0 && pread(fd, *err, (size_t)len, 0) != len)
            test__fail(__FILE__, __LINE__, "read %s: %s", path, strerror(errno));
    }
    close(fd);
    test_rmtree(dir);
    free(dir);
    return st;
}

size_t test_read_head(int fd, char *buf, size_t cap) {
    size_t n = 0;
    while (n < cap - 1) {
        ssize_t r = read(fd, buf + n, cap - 1 - n);
        if (r <= 0)
            break;
        n += (size_t)r;
        buf[n] = '\0';
        if (strstr(buf, "\r\n\r\n") != NULL)
            break;
    }
    buf[n] = '\0';
    return n;
}

bool test_pid_dead(pid_t pid) {
    char path[64], state = 0;
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return true;
    int n = fscanf(f, "%*d (%*[^)]) %c", &state);
    fclose(f);
    return n != 1 || state == 'Z' || state == 'X';
}

int test_free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0)
        test__fail(__FILE__, __LINE__, "free port: %s", strerror(errno));
    close(fd);
    return ntohs(a.sin_port);
}

char *test_tmpdir(const char *tag) {
    const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char *path = malloc(strlen(base) + strlen(tag) + 32);
    sprintf(path, "%s/workerd-%s-XXXXXX", base, tag);
    if (!mkdtemp(path))
        test__fail(__FILE__, __LINE__, "mkdtemp: %s", strerror(errno));
    chmod(path, 0755); /* nginx workers run as nobody and must read files here */
    return path;
}

void test_rmtree(const char *dir) {
    if (dir && strncmp(dir, "/", 1) == 0 && strstr(dir, "/workerd-"))
        test_system("rm -rf '%s'", dir);
}

int test_system(const char *fmt, ...) {
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int st = system(cmd);
    if (st == -1 || !WIFEXITED(st))
        return -1;
    return WEXITSTATUS(st);
}

static bool port_answers(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bool ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

static void wait_port(pid_t pid, int port, const char *what) {
    for (int i = 0; i < 400; i++) {
        if (port_answers(port))
            return;
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid)
            test__fail(__FILE__, __LINE__, "%s exited at start (status %d)", what, st);
        usleep(10000);
    }
    test__fail(__FILE__, __LINE__, "%s did not listen on port %d", what, port);
}

static pid_t spawn(char *const argv[], const char *logpath) {
    pid_t pid = fork();
    if (pid == 0) {
        /* A failed ASSERT aborts the test: its servers must not outlive it. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execvp(argv[0], argv);
        _exit(127);
    }
    return pid;
}

static void redis_spawn(test_redis *r) {
    char port[16], log[512];
    snprintf(port, sizeof port, "%d", r->port);
    snprintf(log, sizeof log, "%s/redis.log", r->dir);
    const char *argv[64] = {
        "redis-server", "--port", port,    "--bind", "127.0.0.1",    "--save", "",
        "--appendonly", "no",     "--dir", r->dir,   "--maxclients", "10000"};
    int n = 13;
    for (int i = 0; r->extra_args && r->extra_args[i] && n < 62; i++)
        argv[n++] = r->extra_args[i];
    argv[n] = NULL;
    r->pid = spawn((char *const *)argv, log);
    wait_port(r->pid, r->port, "redis-server");
}

void test_redis_start(test_redis *r, const char *const *extra_args) {
    r->port = test_free_port();
    r->dir = test_tmpdir("redis");
    r->extra_args = extra_args;
    redis_spawn(r);
}

void test_redis_kill(test_redis *r, int sig) {
    if (r->pid <= 0)
        return;
    kill(r->pid, sig);
    if (sig == SIGKILL || sig == SIGTERM) {
        waitpid(r->pid, NULL, 0);
        r->pid = 0;
    }
}

void test_redis_restart(test_redis *r) {
    for (int i = 0; i < 200 && port_answers(r->port); i++)
        usleep(10000);
    redis_spawn(r);
}

void test_redis_stop(test_redis *r) {
    test_redis_kill(r, SIGTERM);
    test_rmtree(r->dir);
    free(r->dir);
    r->dir = NULL;
}

static void write_file(const char *dir, const char *name, const void *data, size_t len) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, len, f) != len)
        test__fail(__FILE__, __LINE__, "write %s: %s", path, strerror(errno));
    fclose(f);
}

void test_nginx_start(test_nginx *n) {
    n->port = test_free_port();
    n->dir = test_tmpdir("nginx");
    unsigned char bin[4096];
    for (size_t i = 0; i < sizeof bin; i++)
        bin[i] = (unsigned char)i;
    write_file(n->dir, "bin", bin, sizeof bin);
    size_t big_len = 2u << 20;
    char *big = malloc(big_len);
    memset(big, 'x', big_len);
    write_file(n->dir, "big", big, big_len);
    free(big);

    char conf[4096];
    int len = snprintf(
        conf, sizeof conf,
        "load_module /usr/lib/nginx/modules/ngx_http_echo_module.so;\n"
        "worker_processes 1;\nworker_rlimit_nofile 30000;\ndaemon off;\n"
        "pid %1$s/nginx.pid;\nerror_log %1$s/error.log warn;\n"
        "events { worker_connections 20000; multi_accept on; }\n"
        "http {\n access_log off;\n"
        " client_body_temp_path %1$s/body; proxy_temp_path %1$s/proxy;\n"
        " fastcgi_temp_path %1$s/fcgi; uwsgi_temp_path %1$s/uwsgi; scgi_temp_path %1$s/scgi;\n"
        " keepalive_requests 1000000; keepalive_timeout 65;\n"
        " server {\n  listen 127.0.0.1:%2$d backlog=16384;\n  default_type text/plain;\n"
        "  root %1$s;\n"
        "  location = /fast { return 200 \"ok\\n\"; }\n"
        "  location = /slow { echo_sleep 0.1; echo \"ok\"; }\n"
        "  location = /never { echo_sleep 3600; echo \"late\"; }\n"
        "  location = /trickle { echo -n a; echo_flush; echo_sleep 1; echo -n b; echo_flush;"
        " echo_sleep 30; echo -n c; echo_flush; echo_sleep 30; echo d; }\n"
        "  location = /missing { return 404; }\n"
        "  location = /error { return 500 \"boom\\n\"; }\n"
        "  location = /redirect { return 302 /fast; }\n"
        "  location = /loop { return 302 /loop; }\n"
        "  location = /bin { default_type application/octet-stream; }\n"
        "  location = /big { }\n"
        "  location = /headers { echo $http_x_test; }\n"
        "  location = /body { echo_read_request_body; echo_request_body; }\n"
        " }\n}\n",
        n->dir, n->port);
    write_file(n->dir, "nginx.conf", conf, (size_t)len);
    char confpath[512], log[512];
    snprintf(confpath, sizeof confpath, "%s/nginx.conf", n->dir);
    snprintf(log, sizeof log, "%s/stderr.log", n->dir);
    char *argv[] = {"nginx", "-p", n->dir, "-c", confpath, NULL};
    n->pid = spawn(argv, log);
    wait_port(n->pid, n->port, "nginx");
}

void test_nginx_stop(test_nginx *n) {
    if (n->pid > 0) {
        /* Fast shutdown: SIGQUIT would wait for requests in progress (a /never: an hour). */
        kill(n->pid, SIGTERM);
        waitpid(n->pid, NULL, 0);
        n->pid = 0;
    }
    test_rmtree(n->dir);
    free(n->dir);
    n->dir = NULL;
}
