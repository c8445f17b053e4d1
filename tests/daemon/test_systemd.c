/*
 * test_systemd.c - workerd as installed: `cmake --install` of this build into a private
 * DESTDIR puts the binary, the units, the sysusers.d and tmpfiles.d entries, the example
 * configuration and the man page where the build says; systemd's own tools accept the
 * installed units (systemd-analyze verify, and security --offline for their sandbox) and
 * set up the user and the configuration's permissions (systemd-sysusers and
 * systemd-tmpfiles, with --root); and the example configuration documents every option
 * and, uncommented, starts the real workerd.
 *
 * The build directory is $WORKERD_BUILD_DIR or, by default, the one WORKERD_BIN was built
 * in (WORKERD_BIN is BUILD/daemon/workerd). The install locations are read from its
 * CMakeCache.txt, where systemd/CMakeLists.txt stores them. Tests needing a systemd tool
 * that is not installed (package "systemd") print why and pass.
 */
#include "buildcache.h"
#include "e2e.h"
#include "testlib.h"
#include "wd_shutdown.h"

#include <errno.h>
#include <grp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- the build and its install --------------------------------------------------------- */

/* snprintf that fails the test instead of truncating a path. */
static void fmt(char *out, size_t size, const char *format, ...)
    __attribute__((format(printf, 3, 4)));
static void fmt(char *out, size_t size, const char *format, ...) {
    va_list ap;
    va_start(ap, format);
    int n = vsnprintf(out, size, format, ap);
    va_end(ap);
    ASSERT(n >= 0 && (size_t)n < size);
}

static const char *build_dir(void) {
    return buildcache_dir(WORKERD_BIN);
}

static const char *cache_value(const char *name) {
    return buildcache_value(WORKERD_BIN, name,
                            "systemd/ is not part of the build (the top CMakeLists.txt "
                            "needs add_subdirectory(systemd))");
}

/* Where the install put things, all under one DESTDIR. */
struct inst {
    char *destdir;
    char installed_bin[4096]; /* the binary's path on the target system */
    char bin[4096];
    char unitdir[4096];
    char sysusers[4096]; /* the sysusers.d file */
    char tmpfiles[4096]; /* the tmpfiles.d file */
    char confdir[4096];
    char conf[4096]; /* confdir/workerd.conf */
    char example[4096];
    char man[4096];
};

static void inst_paths(struct inst *in) {
    const char *d = in->destdir;
    fmt(in->installed_bin, sizeof in->installed_bin, "%s", cache_value("WORKERD_BIN"));
    fmt(in->bin, sizeof in->bin, "%s%s", d, cache_value("WORKERD_BIN"));
    fmt(in->unitdir, sizeof in->unitdir, "%s%s", d, cache_value("WORKERD_SYSTEMD_UNITDIR"));
    fmt(in->sysusers, sizeof in->sysusers, "%s%s/workerd.conf", d,
        cache_value("WORKERD_SYSUSERSDIR"));
    fmt(in->tmpfiles, sizeof in->tmpfiles, "%s%s/workerd.conf", d,
        cache_value("WORKERD_TMPFILESDIR"));
    fmt(in->confdir, sizeof in->confdir, "%s%s", d, cache_value("WORKERD_CONFDIR"));
    fmt(in->conf, sizeof in->conf, "%s/workerd.conf", in->confdir);
    fmt(in->example, sizeof in->example, "%s%s/workerd.conf.example", d,
        cache_value("WORKERD_DOCDIR"));
    fmt(in->man, sizeof in->man, "%s%s/man1/workerd.1", d, cache_value("WORKERD_MANDIR"));
}

/* Paths only, no install (for a test that prepares the DESTDIR first). */
static void inst_prepare(struct inst *in) {
    memset(in, 0, sizeof *in);
    in->destdir = test_tmpdir("install");
    inst_paths(in);
}

static void inst_run(struct inst *in) {
    int rc = test_system("DESTDIR='%s' cmake --install '%s' >'%s/install.log' 2>&1", in->destdir,
                         build_dir(), in->destdir);
    if (rc != 0)
        test_system("cat '%s/install.log' >&2", in->destdir);
    ASSERT_EQ(rc, 0);
}

static void inst_start(struct inst *in) {
    inst_prepare(in);
    inst_run(in);
}

static void inst_end(struct inst *in) {
    test_rmtree(in->destdir);
    free(in->destdir);
}

/* ---- small helpers ------------------------------------------------------------------- */

static bool have_program(const char *name) {
    return test_system("command -v %s >/dev/null 2>&1", name) == 0;
}

#define SKIP_WITHOUT(prog)                                                                         \
    do {                                                                                           \
        if (!have_program(prog)) {                                                                 \
            printf("skipped: %s is not installed (Debian package systemd)\n", prog);               \
            return;                                                                                \
        }                                                                                          \
    } while (0)

/* The whole file as a malloc'd string, or NULL. */
static char *slurp(const char *path) {
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return NULL;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    size_t n;
    while ((n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (cap - len < 2) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
    }
    buf[len] = '\0';
    fclose(f);
    return buf;
}

static void spit(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    ASSERT(f != NULL);
    fputs(text, f);
    ASSERT(fclose(f) == 0);
}

/* The line of text starting with key (e.g. "ExecStart="), without its newline. */
static char *line_of(const char *text, const char *key, char *out, size_t size) {
    size_t klen = strlen(key);
    for (const char *p = text; *p != '\0';) {
        if (strncmp(p, key, klen) == 0) {
            snprintf(out, size, "%.*s", (int)strcspn(p, "\n"), p);
            return out;
        }
        const char *nl = strchr(p, '\n');
        if (nl == NULL)
            break;
        p = nl + 1;
    }
    return NULL;
}

/* Copy an installed unit into dir with its ExecStart pointing into the DESTDIR, so that
 * systemd-analyze verify finds the binary. */
static void copy_unit_for_verify(const struct inst *in, const char *unit, const char *dir) {
    char src[4200], dst[4200], from[4200], to[8400];
    snprintf(src, sizeof src, "%s/%s", in->unitdir, unit);
    snprintf(dst, sizeof dst, "%s/%s", dir, unit);
    snprintf(from, sizeof from, "ExecStart=%s", in->installed_bin);
    snprintf(to, sizeof to, "ExecStart=%s", in->bin);
    char *text = slurp(src);
    ASSERT(text != NULL);
    char *at = strstr(text, from);
    ASSERT(at != NULL);
    FILE *f = fopen(dst, "w");
    ASSERT(f != NULL);
    fprintf(f, "%.*s%s%s", (int)(at - text), text, to, at + strlen(from));
    ASSERT(fclose(f) == 0);
    free(text);
}

static int verify(const char *dir, const char *unit, const char *log) {
    return test_system("cd '%s' && systemd-analyze verify --man=no './%s' >'%s' 2>&1", dir, unit,
                       log);
}

/* ---- install ------------------------------------------------------------------------- */

TEST(install_puts_binary_units_config_and_man_page_in_place) {
    struct inst in;
    inst_start(&in);
    ASSERT(access(in.bin, X_OK) == 0);
    const char *files[] = {in.sysusers, in.tmpfiles, in.conf, in.example, in.man};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        struct stat st;
        if (stat(files[i], &st) != 0)
            test__fail(__FILE__, __LINE__, "not installed: %s", files[i]);
        ASSERT(st.st_size > 0);
    }
    char unit[4200];
    snprintf(unit, sizeof unit, "%s/workerd.service", in.unitdir);
    ASSERT(access(unit, R_OK) == 0);
    snprintf(unit, sizeof unit, "%s/workerd@.service", in.unitdir);
    ASSERT(access(unit, R_OK) == 0);
    /* The configuration may hold a password: not world-readable. */
    struct stat st;
    ASSERT(stat(in.conf, &st) == 0);
    ASSERT_EQ(st.st_mode & 07777, 0640);
    inst_end(&in);
}

TEST(install_keeps_an_existing_config) {
    struct inst in;
    inst_prepare(&in);
    ASSERT_EQ(test_system("mkdir -p '%s'", in.confdir), 0);
    spit(in.conf, "WORKERD_QUEUES=mine\n");
    inst_run(&in);
    char *text = slurp(in.conf);
    ASSERT_STREQ(text, "WORKERD_QUEUES=mine\n");
    free(text);
    inst_end(&in);
}

TEST(installed_units_run_the_installed_binary_with_their_config) {
    struct inst in;
    inst_start(&in);
    const char *confdir = cache_value("WORKERD_CONFDIR");
    char path[4200], want[8400], got[8400];
    const char *units[] = {"workerd.service", "workerd@.service"};
    const char *confs[] = {"workerd.conf", "%i.conf"};
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/%s", in.unitdir, units[i]);
        char *text = slurp(path);
        ASSERT(text != NULL);
        snprintf(want, sizeof want, "ExecStart=%s --config %s/%s", in.installed_bin, confdir,
                 confs[i]);
        ASSERT_STREQ(line_of(text, "ExecStart=", got, sizeof got), want);
        ASSERT(strstr(text, "@WORKERD_") == NULL); /* every placeholder was filled */
        free(text);
    }
    inst_end(&in);
}

/* TimeoutStopSec= is derived from daemon/wd_shutdown.h at configure time: the default
 * shutdown timeout, the bound on what follows the tasks, and the unit's margin; and the
 * default it assumes is the one workerd really has. */
TEST(installed_units_stop_timeout_follows_the_shutdown_timings) {
    struct inst in;
    inst_start(&in);
    char path[4200], want[64], got[256];
    snprintf(want, sizeof want, "TimeoutStopSec=%ds",
             WD_SHUTDOWN_TIMEOUT_DEFAULT + WD_SHUTDOWN_AFTER_TASKS + WD_SHUTDOWN_UNIT_MARGIN);
    const char *units[] = {"workerd.service", "workerd@.service"};
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/%s", in.unitdir, units[i]);
        char *text = slurp(path);
        ASSERT(text != NULL);
        ASSERT_STREQ(line_of(text, "TimeoutStopSec=", got, sizeof got), want);
        free(text);
    }
    char help_path[4200];
    snprintf(help_path, sizeof help_path, "%s/help.txt", in.destdir);
    ASSERT_EQ(test_system("'%s' --help >'%s'", WORKERD_BIN, help_path), 0);
    char *help = slurp(help_path);
    ASSERT(help != NULL);
    snprintf(want, sizeof want, "[WORKERD_SHUTDOWN_TIMEOUT; default: %d]",
             WD_SHUTDOWN_TIMEOUT_DEFAULT);
    if (strstr(help, want) == NULL)
        test__fail(__FILE__, __LINE__, "workerd --help does not say \"%s\"", want);
    free(help);
    inst_end(&in);
}

/* What a shutdown does after its tasks fits in WD_SHUTDOWN_AFTER_TASKS, with room for a
 * loaded machine: the sum that the header's comment states. */
TEST(shutdown_steps_after_the_tasks_fit_their_bound) {
    double overrun = WD_SHUTDOWN_LINK_POLL > WD_SHUTDOWN_LAST_CALL ? WD_SHUTDOWN_LINK_POLL
                                                                   : WD_SHUTDOWN_LAST_CALL;
    double steps = WD_SHUTDOWN_WARM_FLUSH + overrun + WD_SHUTDOWN_PUT_BACK_MIN +
                   WD_SHUTDOWN_UNREGISTER_CALL + WD_SHUTDOWN_EVENTS_GRACE + overrun +
                   WD_SHUTDOWN_HTTP_GRACE;
    ASSERT(WD_SHUTDOWN_COLD_FLUSH <= WD_SHUTDOWN_WARM_FLUSH);
    ASSERT_RANGE(steps, 1, WD_SHUTDOWN_AFTER_TASKS - 5);
}

/* The units set MemoryDenyWriteExecute=yes, which refuses writable+executable mappings:
 * a binary marked for an executable stack would have every thread stack mapped that way,
 * so pthread_create (curl's resolver, the thread pool) would fail under systemd. */
TEST(installed_binary_has_no_executable_stack) {
    if (!have_program("readelf")) {
        printf("skipped: readelf is not installed (Debian package binutils)\n");
        return;
    }
    struct inst in;
    inst_start(&in);
    ASSERT_EQ(test_system("readelf -lW '%s' | grep -q GNU_STACK", in.bin), 0);
    ASSERT(test_system("readelf -lW '%s' | grep GNU_STACK | grep -q RWE", in.bin) != 0);
    inst_end(&in);
}

/* ---- systemd's tools on the installed files ------------------------------------------ */

TEST(installed_units_pass_systemd_analyze_verify) {
    SKIP_WITHOUT("systemd-analyze");
    struct inst in;
    inst_start(&in);
    char *dir = test_tmpdir("verify");
    char log[4200];
    snprintf(log, sizeof log, "%s/verify.log", dir);
    const char *units[] = {"workerd.service", "workerd@.service"};
    for (int i = 0; i < 2; i++) {
        copy_unit_for_verify(&in, units[i], dir);
        int rc = verify(dir, units[i], log);
        char *out = slurp(log);
        if (rc != 0 || out[0] != '\0')
            test__fail(__FILE__, __LINE__, "verify %s: status %d:\n%s", units[i], rc, out);
        free(out);
    }
    /* The check has teeth: the same unit without its binary fails. */
    ASSERT(unlink(in.bin) == 0);
    ASSERT(verify(dir, "workerd.service", log) != 0);
    test_rmtree(dir);
    free(dir);
    inst_end(&in);
}

/* The sandbox scores at most 2.0 ("OK") in systemd's exposure scale of 0 (locked down) to
 * 10 (unprotected); it is about 1.1 with the settings in the unit. */
TEST(installed_units_sandbox_exposure_is_low) {
    SKIP_WITHOUT("systemd-analyze");
    struct inst in;
    inst_start(&in);
    const char *units[] = {"workerd.service", "workerd@.service"};
    for (int i = 0; i < 2; i++) {
        int rc = test_system("cd '%s' && systemd-analyze security --offline=yes --threshold=20 "
                             "--no-pager './%s' >'%s/security.log' 2>&1",
                             in.unitdir, units[i], in.destdir);
        if (rc != 0)
            test_system("tail -3 '%s/security.log' >&2", in.destdir);
        ASSERT_EQ(rc, 0);
    }
    inst_end(&in);
}

/* After systemd-sysusers and systemd-tmpfiles, as a package's postinst would run them, the
 * user exists and the configuration is 0640 root:workerd. Changing owners needs root. */
TEST(sysusers_and_tmpfiles_make_the_config_readable_by_group_workerd) {
    SKIP_WITHOUT("systemd-sysusers");
    SKIP_WITHOUT("systemd-tmpfiles");
    if (geteuid() != 0) {
        printf("skipped: changing file owners needs root\n");
        return;
    }
    struct inst in;
    inst_start(&in);
    ASSERT_EQ(test_system("mkdir -p '%s/etc'", in.destdir), 0);
    ASSERT_EQ(
        test_system("systemd-sysusers --root='%s' '%s' >/dev/null 2>&1", in.destdir, in.sysusers),
        0);
    ASSERT_EQ(test_system("systemd-tmpfiles --create --root='%s' '%s' >/dev/null 2>&1", in.destdir,
                          in.tmpfiles),
              0);
    char path[4200];
    snprintf(path, sizeof path, "%s/etc/group", in.destdir);
    FILE *f = fopen(path, "r");
    ASSERT(f != NULL);
    struct group *g;
    gid_t gid = 0;
    while ((g = fgetgrent(f)) != NULL)
        if (strcmp(g->gr_name, "workerd") == 0)
            gid = g->gr_gid;
    fclose(f);
    ASSERT(gid != 0);
    snprintf(path, sizeof path, "%s/etc/passwd", in.destdir);
    char *passwd = slurp(path);
    ASSERT(passwd != NULL && strncmp(passwd, "workerd:", 8) == 0);
    free(passwd);
    struct stat st;
    ASSERT(stat(in.conf, &st) == 0);
    ASSERT_EQ(st.st_mode & 07777, 0640);
    ASSERT_EQ(st.st_uid, 0);
    ASSERT_EQ(st.st_gid, gid);
    inst_end(&in);
}

/* ---- the example configuration ------------------------------------------------------- */

/* Every WORKERD_* variable workerd --help names is in the example (as a commented
 * KEY=default line, but for WORKERD_CONFIG, which a file cannot set) and in the man page. */
TEST(example_config_and_man_page_document_every_option) {
    struct inst in;
    inst_start(&in);
    char help_path[4200];
    snprintf(help_path, sizeof help_path, "%s/help.txt", in.destdir);
    ASSERT_EQ(test_system("'%s' --help >'%s'", WORKERD_BIN, help_path), 0);
    char *help = slurp(help_path);
    char *example = slurp(in.example);
    char *man = slurp(in.man);
    ASSERT(help != NULL && example != NULL && man != NULL);
    int seen = 0;
    for (char *p = strstr(help, "WORKERD_"); p != NULL; p = strstr(p + 1, "WORKERD_")) {
        char key[64], line[80];
        snprintf(key, sizeof key, "%.*s", (int)strspn(p, "ABCDEFGHIJKLMNOPQRSTUVWXYZ_"), p);
        snprintf(line, sizeof line, "\n#%s=", key);
        bool in_example = strcmp(key, "WORKERD_CONFIG") == 0 ? strstr(example, key) != NULL
                                                             : strstr(example, line) != NULL;
        if (!in_example)
            test__fail(__FILE__, __LINE__, "%s is not in the example configuration", key);
        if (strstr(man, key) == NULL)
            test__fail(__FILE__, __LINE__, "%s is not in the man page", key);
        seen++;
    }
    ASSERT(seen >= 15);
    free(help);
    free(example);
    free(man);
    inst_end(&in);
}

/* The example with every setting uncommented is a valid configuration: workerd reads it,
 * starts, and stops cleanly. */
TEST(example_config_uncommented_starts_workerd) {
    struct inst in;
    inst_start(&in);
    char *text = slurp(in.example);
    ASSERT(text != NULL);
    /* Drop the '#' before each "WORKERD_X=" line, in place; but for WORKERD_LOAD and
     * WORKERD_BEAT, whose examples name a plugin and a beat file that only exist where
     * one was installed. */
    char *out = text;
    for (const char *p = text; *p != '\0';) {
        bool start = p == text || p[-1] == '\n';
        if (start && strncmp(p, "#WORKERD_", 9) == 0 && p[9 + strcspn(p + 9, "=\n")] == '=' &&
            strncmp(p, "#WORKERD_LOAD=", 14) != 0 && strncmp(p, "#WORKERD_BEAT=", 14) != 0)
            p++;
        *out++ = *p++;
    }
    *out = '\0';
    char conf[4200];
    snprintf(conf, sizeof conf, "%s/all.conf", in.destdir);
    spit(conf, text);
    free(text);

    test_redis redis;
    test_redis_start(&redis, NULL);
    char url[64];
    snprintf(url, sizeof url, "%s", e2e_url(redis.port));
    /* The command line points both Redis URLs at the test's server (the file's are the
     * defaults, 127.0.0.1:6379, which belongs to nobody here). */
    e2e_worker w;
    E2E_START_READY(&w, redis.port, "--result-backend", url, "--config", conf);
    e2e_worker_signal(&w, SIGTERM);
    int code = e2e_worker_wait(&w, 20.0);
    if (code != 0)
        e2e_log_dump(&w);
    ASSERT_EQ(code, 0);
    e2e_worker_stop(&w);
    test_redis_stop(&redis);
    inst_end(&in);
}
