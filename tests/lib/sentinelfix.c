/*
 * sentinelfix.c - the Sentinel set of sentinelfix.h. The sentinels get a config file
 * each (they rewrite it, as redis-sentinel insists); the fake sentinel is a forked child
 * that answers every request it reads with the same two-element array, which is all
 * SENTINEL get-master-addr-by-name needs.
 */
#include "sentinelfix.h"

#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

void sfix_ports(sfix *f) {
    memset(f, 0, sizeof *f);
    for (int i = 0; i < 3; i++)
        f->sport[i] = test_free_port();
    snprintf(f->url, sizeof f->url,
             "redis+sentinel://127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d/" SFIX_MASTER "/0",
             f->sport[0], f->sport[1], f->sport[2]);
    f->sdir = test_tmpdir("sentinel");
}

redisContext *sfix_connect(int port) {
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    ASSERT(c != NULL && c->err == 0);
    redisSetTimeout(c, tv);
    return c;
}

/* A field of INFO replication (or of any "key:value" text) is `want`. */
static bool info_has(redisContext *c, const char *want) {
    redisReply *r = redisCommand(c, "INFO replication");
    bool ok = r != NULL && r->type == REDIS_REPLY_STRING && strstr(r->str, want) != NULL;
    if (r)
        freeReplyObject(r);
    return ok;
}

void sfix_start_nodes(sfix *f) {
    static char mport[16];
    test_redis_start(&f->node[0], NULL);
    snprintf(mport, sizeof mport, "%d", f->node[0].port);
    static const char *replica_args[4];
    replica_args[0] = "--replicaof";
    replica_args[1] = "127.0.0.1";
    replica_args[2] = mport;
    replica_args[3] = NULL;
    test_redis_start(&f->node[1], replica_args);
    redisContext *r = sfix_connect(f->node[1].port);
    ASSERT_WITHIN(info_has(r, "master_link_status:up"), 20.0);
    redisFree(r);
}

static pid_t spawn_sentinel(sfix *f, int i) {
    char conf[512], log[512];
    snprintf(conf, sizeof conf, "%s/sentinel-%d.conf", f->sdir, i);
    snprintf(log, sizeof log, "%s/sentinel-%d.log", f->sdir, i);
    FILE *fp = fopen(conf, "w");
    ASSERT(fp != NULL);
    fprintf(fp,
            "port %d\nbind 127.0.0.1\ndir %s\n"
            "sentinel monitor " SFIX_MASTER " 127.0.0.1 %d 2\n"
            "sentinel down-after-milliseconds " SFIX_MASTER " 500\n"
            "sentinel failover-timeout " SFIX_MASTER " 2000\n"
            "sentinel parallel-syncs " SFIX_MASTER " 1\n",
            f->sport[i], f->sdir, f->node[0].port);
    if (f->spass != NULL)
        fprintf(fp, "requirepass %s\n", f->spass);
    fclose(fp);
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        FILE *out = freopen(log, "a", stdout);
        (void)out;
        dup2(1, 2);
        execlp("redis-sentinel", "redis-sentinel", conf, (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* The value of field `name` in a SENTINEL MASTER reply (a flat key/value array). */
static long long master_field(redisContext *c, const char *name) {
    redisReply *r = redisCommand(c, "SENTINEL MASTER " SFIX_MASTER);
    long long v = -1;
    for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2)
        if (strcmp(r->element[i]->str, name) == 0)
            v = atoll(r->element[i + 1]->str);
    if (r)
        freeReplyObject(r);
    return v;
}

/* A connection to a sentinel, logged in; NULL while it is not listening. */
static redisContext *try_connect(const sfix *f, int port) {
    redisContext *c = redisConnect("127.0.0.1", port);
    if (c != NULL && c->err != 0) {
        redisFree(c);
        c = NULL;
    }
    if (c != NULL && f->spass != NULL) {
        redisReply *r = redisCommand(c, "AUTH %s", f->spass);
        ASSERT(r != NULL && r->type == REDIS_REPLY_STATUS);
        freeReplyObject(r);
    }
    return c;
}

void sfix_start_sentinels(sfix *f, bool for_failover) {
    for (int i = 0; i < 3; i++)
        f->spid[i] = spawn_sentinel(f, i);
    for (int i = 0; i < 3; i++) {
        redisContext *c = NULL;
        ASSERT_WITHIN((c = try_connect(f, f->sport[i])) != NULL, 20.0);
        /* Each must know the two others (for the quorum; they meet through hello messages
         * every 2 s) and the replica (to promote). */
        ASSERT_WITHIN(master_field(c, "num-slaves") == 1 &&
                          (!for_failover || master_field(c, "num-other-sentinels") == 2),
                      20.0);
        redisFree(c);
    }
}

void sfix_start(sfix *f, bool for_failover) {
    sfix_ports(f);
    sfix_start_nodes(f);
    sfix_start_sentinels(f, for_failover);
}

int sfix_start_liar(sfix *f, int liar_port, const char *host, int port) {
    if (f->liar > 0) {
        kill(f->liar, SIGKILL);
        waitpid(f->liar, NULL, 0);
        f->liar = 0;
    }
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)liar_port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    ASSERT_WITHIN(bind(fd, (struct sockaddr *)&a, sizeof a) == 0, 5.0);
    ASSERT(listen(fd, 16) == 0);
    socklen_t len = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &len);
    f->liar_port = ntohs(a.sin_port);
    char answer[256], portstr[16];
    snprintf(portstr, sizeof portstr, "%d", port);
    snprintf(answer, sizeof answer, "*2\r\n$%zu\r\n%s\r\n$%zu\r\n%s\r\n", strlen(host), host,
             strlen(portstr), portstr);
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        signal(SIGPIPE, SIG_IGN);
        for (;;) {
            int cfd = accept(fd, NULL, NULL);
            if (cfd < 0)
                continue;
            /* A process per connection: a client may hold one open (a subscription). */
            if (fork() == 0) {
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                close(fd); /* the port is free again as soon as the fake sentinel dies */
                char buf[4096];
                /* One request per read is enough for a client that waits for each answer. */
                while (read(cfd, buf, sizeof buf) > 0)
                    if (write(cfd, answer, strlen(answer)) < 0)
                        break;
                _exit(0);
            }
            close(cfd);
            while (waitpid(-1, NULL, WNOHANG) > 0)
                ;
        }
    }
    close(fd);
    f->liar = pid;
    return f->liar_port;
}

int sfix_master_port(sfix *f) {
    for (int i = 0; i < 3; i++) {
        if (f->spid[i] <= 0)
            continue;
        redisContext *c = try_connect(f, f->sport[i]);
        redisReply *r = c ? redisCommand(c, "SENTINEL get-master-addr-by-name " SFIX_MASTER) : NULL;
        int port =
            r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 ? atoi(r->element[1]->str) : -1;
        if (r)
            freeReplyObject(r);
        if (c)
            redisFree(c);
        if (port > 0)
            return port;
    }
    test__fail(__FILE__, __LINE__, "no sentinel names a master");
    return -1;
}

static bool is_master(int port) {
    redisContext *c = redisConnect("127.0.0.1", port);
    bool ok = c && !c->err && info_has(c, "role:master");
    if (c)
        redisFree(c);
    return ok;
}

int sfix_wait_failover(sfix *f, int old_port, double timeout) {
    int port = -1;
    ASSERT_WITHIN((port = sfix_master_port(f)) != old_port && is_master(port), timeout);
    return port;
}

void sfix_stop(sfix *f) {
    for (int i = 0; i < 3; i++)
        if (f->spid[i] > 0) {
            kill(f->spid[i], SIGKILL);
            waitpid(f->spid[i], NULL, 0);
            f->spid[i] = 0;
        }
    if (f->liar > 0) {
        kill(f->liar, SIGKILL);
        waitpid(f->liar, NULL, 0);
    }
    for (int i = 0; i < 2; i++)
        if (f->node[i].dir != NULL)
            test_redis_stop(&f->node[i]);
    if (f->sdir != NULL) {
        test_rmtree(f->sdir);
        free(f->sdir);
        f->sdir = NULL;
    }
}
