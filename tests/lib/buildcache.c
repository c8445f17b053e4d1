/*
 * buildcache.c - the build directory and its CMakeCache.txt (see buildcache.h).
 */
#include "buildcache.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testlib.h"

const char *buildcache_dir(const char *workerd_bin) {
    static char dir[4096];
    const char *env = getenv("WORKERD_BUILD_DIR");
    if (env != NULL && env[0] != '\0') {
        snprintf(dir, sizeof dir, "%s", env);
    } else {
        const char *suffix = "/daemon/workerd";
        size_t n = strlen(workerd_bin), s = strlen(suffix);
        ASSERT(n > s && strcmp(workerd_bin + n - s, suffix) == 0);
        snprintf(dir, sizeof dir, "%.*s", (int)(n - s), workerd_bin);
    }
    return dir;
}

const char *buildcache_value(const char *workerd_bin, const char *name, const char *hint) {
    static char value[4096];
    char path[4200], line[8192];
    snprintf(path, sizeof path, "%s/CMakeCache.txt", buildcache_dir(workerd_bin));
    FILE *f = fopen(path, "r");
    if (f == NULL)
        test__fail(__FILE__, __LINE__, "no %s: set WORKERD_BUILD_DIR to the build directory", path);
    size_t len = strlen(name);
    bool found = false;
    while (!found && fgets(line, sizeof line, f) != NULL) {
        char *eq = strchr(line, '=');
        if (strncmp(line, name, len) == 0 && line[len] == ':' && eq != NULL) {
            snprintf(value, sizeof value, "%s", eq + 1);
            value[strcspn(value, "\n")] = '\0';
            found = true;
        }
    }
    fclose(f);
    if (!found)
        test__fail(__FILE__, __LINE__, "%s is not in the build's cache%s%s", name,
                   hint != NULL ? ": " : "", hint != NULL ? hint : "");
    return value;
}
