/*
 * green_redis.h - Redis for greenlets: hiredis 0.14 async on the hub's libev loop, where a
 * call parks only the calling greenlet until its reply has arrived.
 *
 * A green_redis is one connection. Any number of greenlets of the hub that made it may
 * issue commands on it at once: hiredis writes them out in the order they were issued and
 * replies come back in that order, each waking the greenlet that asked. A pipeline sends
 * n commands and parks once, until all n replies are in: one round trip.
 *
 * Replies are deep copies owned by the caller, freed with hiredis's freeReplyObject (they
 * are allocated with malloc exactly as hiredis allocates its own). A Redis error reply
 * ("-ERR ...", "-WRONGTYPE ...") is a successful call that returns a REDIS_REPLY_ERROR
 * reply: the caller inspects it. A call's negative return means there is no reply.
 *
 * Conventions of every call that MAY YIELD (green.h's, as in green_io.h):
 *
 *   - `timeout` is in seconds for the whole call: < 0 waits forever, 0 expires at once,
 *     > 0 is a deadline. Enclosing green_timeout scopes apply as well; whichever deadline
 *     is earliest ends the call with -ETIMEDOUT.
 *   - They must be made from a greenlet: from the hub (any libev, curl or hiredis callback)
 *     or a thread with no hub they return -EPERM (and assert in debug builds).
 *   - -ECANCELED when the greenlet is killed (before or while parked).
 *   - A call that returned an error never completes later. Redis cannot take a command
 *     back, though: a command whose call timed out or was cancelled may still have run
 *     on the server, and its reply, when it comes, is discarded.
 *   - Nothing is thread-safe: a connection belongs to the hub (OS thread) that made it.
 *
 * Timeouts and the order of replies. A timed-out or cancelled command stays queued on
 * the connection (hiredis 0.14 cannot withdraw it), so commands issued after it get their
 * replies only once its reply has come. The connection stays usable (not sticky-failed),
 * which is right for a slow command; when the server itself stopped answering, free the
 * connection and connect again. green_redis_inflight says how much is still queued.
 *
 * Blocking commands (BLPOP, BRPOP, BLMOVE, XREAD BLOCK, ...) work through the same calls,
 * with a call timeout larger than the command's own. They hold up every command queued
 * behind them on the same connection, so give blocking consumers their own connection.
 * SUBSCRIBE / PSUBSCRIBE / UNSUBSCRIBE / PUNSUBSCRIBE / MONITOR are refused (-ENOTSUP):
 * their replies do not pair one-to-one with commands.
 *
 * Connection loss. When the connection drops (the server dies, a network error), every
 * waiting call returns -ECONNRESET (the server closed it), -EIO (a socket error) or
 * -EPROTO (a protocol error), and the connection becomes sticky-failed: every later call
 * returns that same error at once, and green_redis_last_error tells what happened
 * ("redis: connection lost: Server closed the connection"). The owner then frees it and
 * connects again; nothing reconnects behind its back.
 *
 * SIGPIPE. hiredis writes with write(2), so a write to a connection the server has just
 * closed raises SIGPIPE: the process must ignore SIGPIPE (the daemon and the test harness
 * do), and the write error then shows as a lost connection.
 *
 * Name resolution: hiredis 0.14 resolves a host name with a blocking getaddrinfo on the
 * hub's thread. Numeric addresses (and "localhost", from /etc/hosts) do not block; a name
 * that needs DNS holds up the whole hub while it resolves.
 */
#ifndef WORKERD_GREEN_REDIS_H
#define WORKERD_GREEN_REDIS_H

#include "green.h"

#include <hiredis/hiredis.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct green_redis green_redis;

/* Park until a sentinel of url (a redis+sentinel:// URL) announces that its master has
 * moved (+switch-master for the URL's master name), so that an owner can reconnect at
 * once instead of on its next failure; a switch to `current` ("host:port", as
 * green_redis_peer says, or NULL) is not one. Subscribes on the first sentinel that answers
 * (AUTH sentinel_password first), on a connection of its own that is closed on return.
 * MAY YIELD. Returns 0 on a switch, -EHOSTUNREACH when no sentinel could be subscribed
 * to or the subscription was lost (call again, after a pause), -ETIMEDOUT, -ECANCELED,
 * -EINVAL for a URL of another kind, -ENOMEM. */
int green_redis_sentinel_watch(const char *url, const char *current, double timeout);

/* "host:port" (or "unix:/path") of the node c is connected to; lives as long as c. Does
 * not yield. */
const char *green_redis_peer(const green_redis *c);

/* Connect to host:port (TCP; numeric address or a host name, see above). Parks the caller
 * until the connection is established, it fails, or timeout. MAY YIELD. Returns the
 * connection (free it with green_redis_free), or NULL with *err set: -ECONNREFUSED,
 * -ETIMEDOUT, -ECANCELED, -EPERM, -ENOENT (no such socket file), -ENOMEM, or the errno of
 * the failed connect; green_redis_connect_error() then describes it. err may be NULL. */
green_redis *green_redis_connect_tcp(const char *host, int port, double timeout, int *err);

/* The same for a Unix domain socket at path. */
green_redis *green_redis_connect_unix(const char *path, double timeout, int *err);

/* Connect as a URL says, then authenticate and select the database, all within timeout:
 *
 *   redis://[user[:password]@]host[:port][/db]     (port 6379, db 0 by default;
 *                                                   host may be [IPv6]; ?db=N also works)
 *   unix://[user[:password]@]/path/to/socket[?db=N]
 *   redis+sentinel://[user[:password]@]host[:port][,host[:port]...]/master[/db]
 *                    [?sentinel_password=...]      (sentinel port 26379 by default)
 *
 * user and password may be percent-encoded (%40 for '@'). With a password, it sends AUTH
 * password (or AUTH user password for an ACL user); with db != 0, SELECT db. MAY YIELD.
 *
 * A redis+sentinel:// URL names the Redis Sentinels watching the master, not the master:
 * the sentinels are asked in the URL's order (SENTINEL get-master-addr-by-name, after
 * AUTH sentinel_password when given), the address named is connected to, logged into, and
 * must answer ROLE with "master"; a sentinel that is down, does not know the master, or
 * names a node that is not a master (a stale or lying sentinel) is skipped for the next.
 * Each sentinel gets at most a second of the timeout. So every (re)connect through such a
 * URL finds the current master: an owner that reconnects after a connection loss, or
 * after a -READONLY reply, follows a failover. Fails with -EHOSTUNREACH when no sentinel
 * led to a master; the message says what each one did (the last sentinel's story).
 *
 * Errors: -EINVAL for a malformed URL (or rediss://: no TLS here) or a refused SELECT,
 * -EACCES when AUTH is refused, and those of green_redis_connect_tcp. Messages never
 * contain the password. */
green_redis *green_redis_connect_url(const char *url, double timeout, int *err);

/* Why the last failed green_redis_connect_* on this thread failed (a static per-thread
 * buffer; "" if none failed yet). Read it before the next connect on this thread, e.g.
 * right after the failed call, before yielding. Does not yield; callable anywhere. */
const char *green_redis_connect_error(void);

/* Run one command, formatted as hiredis's redisCommand formats it ("SET %s %b", ...).
 * Parks the caller until the reply. MAY YIELD. On success returns 0 and *reply receives
 * the reply (never NULL; the caller frees it with freeReplyObject). On error *reply is
 * NULL and the return is -ETIMEDOUT, -ECANCELED, -EPERM, the connection's sticky error
 * (see above), -ECONNABORTED (the connection was freed while the call waited), -EINVAL
 * (a bad format string), -ENOTSUP (a subscribe command) or -ENOMEM. */
int green_redis_command(green_redis *c, redisReply **reply, double timeout, const char *fmt, ...);
int green_redis_vcommand(green_redis *c, redisReply **reply, double timeout, const char *fmt,
                         va_list ap);

/* The same with the arguments as an argument vector (binary safe; argvlen NULL means each
 * argument is a C string), like redisCommandArgv. argc must be >= 1. */
int green_redis_commandargv(green_redis *c, redisReply **reply, double timeout, int argc,
                            const char **argv, const size_t *argvlen);

/* Send n commands (command i is argcs[i], argvs[i], argvlens[i]; argvlens or argvlens[i]
 * NULL means C strings) and park once until all n replies are in: one round trip, and
 * the replies in order. MAY YIELD. On success returns 0 and replies[0..n-1] receive the
 * replies (each freed by the caller with freeReplyObject; some may be error replies). On
 * error every replies[i] is NULL and the return is as for green_redis_command; if the
 * failure came after the commands were sent, some of them may have run on the server.
 * n == 0 returns 0 at once. */
int green_redis_pipeline(green_redis *c, size_t n, const int *argcs, const char **const *argvs,
                         const size_t *const *argvlens, redisReply **replies, double timeout);

/* True while the connection is up: connected and not sticky-failed. Does not yield. */
bool green_redis_is_connected(const green_redis *c);

/* The sticky error (0 while the connection is healthy) and its message ("" while
 * healthy). The string belongs to c and lives as long as it. Do not yield. */
int green_redis_error(const green_redis *c);
const char *green_redis_last_error(const green_redis *c);

/* Commands sent and not yet answered, including those whose callers gave up (timed out,
 * cancelled) and whose replies will be discarded. Does not yield. */
size_t green_redis_inflight(const green_redis *c);

/* Close the connection and free c. Safe at any time from a greenlet (or from the hub
 * outside hiredis callbacks): calls of other greenlets still waiting on c return
 * -ECONNABORTED, and replies of abandoned calls are discarded. c must not be used
 * afterwards, also not by those waiting greenlets (which is why their error says only
 * that it was freed). NULL is a no-op. Does not yield. */
void green_redis_free(green_redis *c);

/* ---- URLs ---- */

/* One TCP address of a Redis Sentinel. */
typedef struct green_redis_addr {
    char *host; /* brackets of an IPv6 literal removed */
    int port;   /* 26379 by default */
} green_redis_addr;

/* A parsed Redis URL. Strings are heap copies, percent-decoding done; NULL when absent. */
typedef struct green_redis_url {
    char *host;     /* TCP host, brackets of an IPv6 literal removed; NULL for unix:// */
    int port;       /* TCP port, 6379 by default */
    char *path;     /* Unix socket path; NULL for redis:// */
    char *user;     /* ACL user name, or NULL */
    char *password; /* password, or NULL */
    int db;         /* database number, 0 by default */
    /* redis+sentinel:// only (host and path NULL then; user and password are the data
     * nodes'): the sentinels in the URL's order, the master's name, and the sentinels'
     * own password (sentinel_password=), or NULL. */
    green_redis_addr *sentinels;
    size_t nsentinels;
    char *master;
    char *sentinel_password;
} green_redis_url;

/* Parse url (the forms of green_redis_connect_url) into *out (zeroed first), with libcurl's
 * URL parser, so host, IPv6 literal (a zone as %25eth0), port and path are read as RFC
 * 3986 says; an empty port is the default, a '#' fragment is refused (a '#' in a socket
 * path is part of it). user, password and the socket path may hold any byte but NUL,
 * percent-encoded; an unencoded '/', '?' or '@' in the password also works (the user
 * information runs to the last '@'). Returns 0, -ENOMEM, or -EINVAL with a message in
 * errbuf (if not NULL) saying what is wrong, quoting the URL only in its redacted form.
 * On error *out holds nothing to free. Does not yield; callable anywhere. */
int green_redis_url_parse(const char *url, green_redis_url *out, char *errbuf, size_t errlen);

/* Free the strings of a parsed URL and zero it. Safe on a zeroed struct. */
void green_redis_url_clear(green_redis_url *u);

/* Write url into buf (at most len bytes, always NUL-terminated if len > 0) with its
 * password (and a sentinel_password= value) replaced by "***", for logs; a URL without a
 * password is copied as is. Even a
 * malformed URL never has what looks like its password copied. Returns buf. Does not
 * yield; callable anywhere. */
char *green_redis_url_redact(const char *url, char *buf, size_t len);

#endif
