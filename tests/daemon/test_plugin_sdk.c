/*
 * test_plugin_sdk.c - the plugin SDK as a user gets it: `cmake --install` of this build
 * into a private DESTDIR puts the public headers, workerd.pc and the CMake package where
 * the build says; each header compiles on its own from there (no private header is
 * installed or needed); the workerd binary exports exactly the functions those headers
 * declare; and the example plugin (tasks/examples/hello), built from its own CMakeLists.txt
 * against the DESTDIR install (and again with pkg-config and a plain cc), runs its tasks
 * in the real workerd against a real Redis and nginx.
 *
 * The build directory is $WORKERD_BUILD_DIR or the one WORKERD_BIN was built in; the
 * install prefix and the header list are read from its CMakeCache.txt.
 */
#include "buildcache.h"
#include "e2e.h"
#include "testlib.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- the build and its install --------------------------------------------------------- */

static const char *build_dir(void) {
    return buildcache_dir(WORKERD_BIN);
}

static const char *cache_value(const char *name) {
    return buildcache_value(WORKERD_BIN, name, NULL);
}

/* The whole file as a malloc'd string, or NULL. */
static char *slurp(const char *path) {
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return NULL;
    size_t cap = 1 << 20;
    char *buf = malloc(cap);
    ASSERT(buf != NULL);
    size_t len = fread(buf, 1, cap - 1, f);
    buf[len] = '\0';
    fclose(f);
    return buf;
}

/* A DESTDIR install of this build. */
struct sdk {
    char *dir;          /* the DESTDIR */
    char prefix[2200];  /* DESTDIR + the install prefix */
    char include[2300]; /* prefix/include */
    char log[2300];     /* where commands' output goes */
};

static void sdk_install(struct sdk *s) {
    s->dir = test_tmpdir("sdk");
    snprintf(s->prefix, sizeof s->prefix, "%s%s", s->dir, cache_value("CMAKE_INSTALL_PREFIX"));
    snprintf(s->include, sizeof s->include, "%s/include", s->prefix);
    snprintf(s->log, sizeof s->log, "%s/log", s->dir);
    int rc =
        test_system("DESTDIR='%s' cmake --install '%s' >'%s' 2>&1", s->dir, build_dir(), s->log);
    if (rc != 0)
        test_system("cat '%s' >&2", s->log);
    ASSERT_EQ(rc, 0);
}

static void sdk_end(struct sdk *s) {
    test_rmtree(s->dir);
    free(s->dir);
}

/* Run a shell command; on failure print its output (in s->log) and fail. */
static void must(struct sdk *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void must(struct sdk *s, const char *fmt, ...) {
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    ASSERT(n > 0 && (size_t)n < sizeof cmd);
    int rc = test_system("( %s ) >'%s' 2>&1", cmd, s->log);
    if (rc != 0) {
        fprintf(stderr, "command failed (%d): %s\n", rc, cmd);
        test_system("cat '%s' >&2", s->log);
    }
    ASSERT_EQ(rc, 0);
}

/* ---- the headers --------------------------------------------------------------------- */

/* The installed include/workerd holds exactly the SDK's headers, each of which compiles
 * on its own with nothing but the install on the include path, under strict warnings. */
TEST(installed_headers_are_the_public_ones_and_each_stands_alone) {
    struct sdk s;
    sdk_install(&s);
    char listing[2400];
    snprintf(listing, sizeof listing, "%s/headers", s.dir);
    ASSERT_EQ(test_system("ls '%s/workerd' | tr '\\n' ' ' >'%s'", s.include, listing), 0);
    char *got = slurp(listing), want[4096];
    snprintf(want, sizeof want, "%s ", cache_value("WORKERD_SDK_HEADER_NAMES"));
    /* ls sorts; the cache's list is in the build's order: compare as sets. */
    ASSERT_EQ(test_system("[ \"$(echo %s | tr ' ' '\\n' | sort)\" = \"$(echo %s | tr ' ' '\\n' "
                          "| sort)\" ]",
                          got, want),
              0);
    ASSERT(strstr(got, "internal") == NULL && strstr(got, "task_host") == NULL);
    for (char *name = strtok(got, " "); name != NULL; name = strtok(NULL, " ")) {
        must(&s,
             "printf '#include <workerd/%s>\\n' | cc -std=c11 -Wall -Wextra -Werror -Wpedantic "
             "-Wstrict-prototypes -Wmissing-prototypes -I'%s' $(pkg-config --cflags jansson "
             "libcurl hiredis) -fsyntax-only -x c -",
             name, s.include);
    }
    free(got);
    sdk_end(&s);
}

/* The binary exports every function the installed headers declare, and no other symbol of
 * its own: the compiler's reading of the headers (gcc -aux-info) against the dynamic
 * symbol table. */
TEST(workerd_exports_exactly_the_functions_of_the_installed_headers) {
    struct sdk s;
    sdk_install(&s);
    char declared[2400], exported[2400];
    snprintf(declared, sizeof declared, "%s/declared", s.dir);
    snprintf(exported, sizeof exported, "%s/exported", s.dir);
    must(&s,
         "cd '%s' && for h in '%s'/workerd/*.h; do echo \"#include <workerd/${h##*/}>\"; done "
         ">all.c && gcc -std=c11 -I'%s' $(pkg-config --cflags jansson libcurl hiredis) "
         "-fsyntax-only -aux-info aux.txt all.c && grep '/include/workerd/' aux.txt | "
         "grep -v ' static ' | sed -E 's/.* \\*?([A-Za-z_][A-Za-z0-9_]*) \\(.*/\\1/' | "
         "grep -vx workerd_plugin_init | sort -u >'%s'",
         s.dir, s.include, s.include, declared);
    /* Every symbol the binary itself defines in its dynamic table, but the C runtime's
     * (_IO_stdin_used, _init, __bss_start, ...: they start with '_') and the copies of
     * the C library's variables it uses (stderr@GLIBC_2.2.5: versioned, not its own). */
    must(&s,
         "nm -D --defined-only '%s' | awk '{print $3}' | grep -v -e '^_' -e '@' | sort -u "
         ">'%s'",
         WORKERD_BIN, exported);
    char *d = slurp(declared), *e = slurp(exported);
    ASSERT(d != NULL && e != NULL);
    ASSERT(strstr(d, "green_spawn\n") != NULL && strstr(d, "task_registry_add\n") != NULL);
    if (strcmp(d, e) != 0) {
        test_system("diff '%s' '%s' >&2", declared, exported);
        test__fail(__FILE__, __LINE__, "declared (<) and exported (>) functions differ");
    }
    free(d);
    free(e);
    sdk_end(&s);
}

/* ---- the example plugin, built as a user builds it ----------------------------------- */

struct example {
    struct sdk s;
    char cmake_so[2400]; /* built by its CMakeLists.txt */
    char cc_so[2400];    /* built by cc and pkg-config */
};

static void build_example(struct example *x) {
    struct sdk *s = &x->s;
    sdk_install(s);
    const char *src = WORKERD_SOURCE_DIR "/tasks/examples/hello";
    must(s, "cmake -S '%s' -B '%s/build' -DCMAKE_PREFIX_PATH='%s' && cmake --build '%s/build'", src,
         s->dir, s->prefix, s->dir);
    snprintf(x->cmake_so, sizeof x->cmake_so, "%s/build/hello.so", s->dir);
    snprintf(x->cc_so, sizeof x->cc_so, "%s/hello-cc.so", s->dir);
    /* pkg-config reads the .pc from the DESTDIR, its paths moved there by the sysroot. */
    must(s,
         "export PKG_CONFIG_PATH='%s/share/pkgconfig' PKG_CONFIG_SYSROOT_DIR='%s'; "
         "[ -z \"$(pkg-config --libs workerd)\" ] && "
         "cc -std=c11 -Wall -Wextra -Werror -shared -fPIC $(pkg-config --cflags workerd) "
         "-o '%s' '%s/hello.c'",
         s->prefix, s->dir, x->cc_so, src);
}

/* The plugin's only exported symbols are the two workerd looks up. */
static void expect_plugin_exports(struct sdk *s, const char *so) {
    char out[2400];
    snprintf(out, sizeof out, "%s/plugin-exports", s->dir);
    must(s, "nm -D --defined-only '%s' | awk '{print $3}' | sort >'%s'", so, out);
    char *text = slurp(out);
    ASSERT_STREQ(text, "workerd_plugin_info\nworkerd_plugin_init\n");
    free(text);
}

static json_t *result_of(e2e_env *e, const char *id) {
    json_t *res = e2e_must_result(e, id);
    if (strcmp(e2e_jstr(res, "status"), "SUCCESS") != 0) {
        e2e_log_dump(&e->w);
        test__fail(__FILE__, __LINE__, "%s: %s: %s", id, e2e_jstr(res, "status"),
                   e2e_jerror(res) ? e2e_jerror(res) : "");
    }
    return res;
}

static void expect_result(e2e_env *e, const char *id, const char *want_json) {
    json_t *res = result_of(e, id);
    char *got = json_dumps(json_object_get(res, "result"), JSON_COMPACT | JSON_ENCODE_ANY);
    ASSERT_STREQ(got, want_json);
    free(got);
    json_decref(res);
}

TEST(the_example_plugin_builds_against_the_install_and_runs_in_workerd) {
    struct example x;
    build_example(&x);
    expect_plugin_exports(&x.s, x.cmake_so);
    expect_plugin_exports(&x.s, x.cc_so);

    test_nginx nginx;
    test_nginx_start(&nginx);
    e2e_env e;
    e2e_env_start(&e);
    E2E_START_READY(&e.w, e.redis.port, "--load", x.cmake_so, "-c", "4");
    e2e_push_task(e.c, "default", "greet-1", "hello.greet", "[\"Ada\"]");
    expect_result(&e, "greet-1", "\"Hello, Ada!\"");
    e2e_push(e.c, "default",
             "{\"id\":\"greet-2\",\"task\":\"hello.greet\",\"args\":[\"Bob\"],"
             "\"kwargs\":{\"greeting\":\"Hi\"}}");
    expect_result(&e, "greet-2", "\"Hi, Bob!\"");

    e2e_push_task(e.c, "default", "visits-1", "hello.visits", "[\"home\"]");
    expect_result(&e, "visits-1", "1");
    e2e_push_task(e.c, "default", "visits-2", "hello.visits", "[\"home\"]");
    expect_result(&e, "visits-2", "2");
    ASSERT(e2e_log_wait(&e.w, "[task visits-2] page home has 2 visits", TEST_SOON));

    char args[128];
    snprintf(args, sizeof args, "[\"http://127.0.0.1:%d/fast\"]", nginx.port);
    e2e_push_task(e.c, "default", "fetch-1", "hello.fetch", args);
    expect_result(&e, "fetch-1", "{\"status\":200,\"bytes\":3}");

    e2e_push_task(e.c, "default", "primes-1", "hello.primes", "[100]");
    expect_result(&e, "primes-1", "25");

    e2e_push_task(e.c, "default", "all-1", "hello.greet_all", "[[\"Ada\", \"Bob\"]]");
    expect_result(&e, "all-1", "[\"Hello, Ada!\",\"Hello, Bob!\"]");

    /* A wrong argument is the argument helpers' TypeError, and a dead letter. */
    e2e_push_task(e.c, "default", "greet-3", "hello.greet", "[42]");
    json_t *res = e2e_must_result(&e, "greet-3");
    ASSERT_STREQ(e2e_jstr(res, "status"), "FAILURE");
    ASSERT_STREQ(e2e_jerror(res), "hello.greet: argument 1 (name) must be a string, got integer");
    json_decref(res);
    e2e_env_end(&e);

    /* The pkg-config build is the same plugin. */
    char out[2400];
    snprintf(out, sizeof out, "%s/tasks", x.s.dir);
    must(&x.s, "'%s' --load '%s' --list-tasks | grep '^hello\\.' >'%s'", WORKERD_BIN, x.cc_so, out);
    char *tasks = slurp(out);
    ASSERT_STREQ(tasks, "hello.fetch\nhello.greet\nhello.greet_all\nhello.primes\nhello.visits\n");
    free(tasks);
    test_nginx_stop(&nginx);
    sdk_end(&x.s);
}

/* README.md's plugin (its first C block, which starts with a comment naming hello.c) is the
 * code a newcomer copies: it compiles against the install, cleanly, and its tasks load. */
TEST(the_readme_plugin_compiles_and_loads) {
    struct sdk s;
    sdk_install(&s);
    char src[2400], so[2400], out[2400];
    snprintf(src, sizeof src, "%s/hello.c", s.dir);
    snprintf(so, sizeof so, "%s/hello.so", s.dir);
    snprintf(out, sizeof out, "%s/tasks", s.dir);
    must(&s,
         "awk '/^```c$/ {on = 1; next} on && /^```$/ {exit} on' '%s/README.md' >'%s' && "
         "grep -qxF '/* hello.c */' '%s'",
         WORKERD_SOURCE_DIR, src, src);
    must(&s,
         "export PKG_CONFIG_PATH='%s/share/pkgconfig' PKG_CONFIG_SYSROOT_DIR='%s'; "
         "cc -std=c11 -Wall -Wextra -Werror -shared -fPIC $(pkg-config --cflags workerd) "
         "-o '%s' '%s'",
         s.prefix, s.dir, so, src);
    must(&s, "'%s' --load '%s' --list-tasks | grep '^hello\\.' >'%s'", WORKERD_BIN, so, out);
    char *tasks = slurp(out);
    ASSERT_STREQ(tasks, "hello.greet\nhello.visits\n");
    free(tasks);
    sdk_end(&s);
}
