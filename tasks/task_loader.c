/*
 * task_loader.c - `workerd --load`: dlopen a plugin, check that it is one and speaks this
 * workerd's ABI, and run its workerd_plugin_init with the registry watching.
 *
 * The plugin is opened with RTLD_NOW, so that a symbol it needs and workerd does not
 * export (a function of a newer SDK, a private one) fails here, at start-up, rather than
 * as a crash when a task first calls it; and with RTLD_LOCAL, so that plugins do not see
 * each other's symbols. When that open fails, it is tried again with RTLD_LAZY, which
 * binds functions only when called: if that loads, the plugin's stamp can be read, and a
 * plugin of another ABI (whose missing symbol is the consequence) or no plugin at all is
 * reported as such instead of as a missing symbol.
 *
 * dlerror's messages start with the path given to dlopen; the caller names the plugin
 * already, so that prefix is dropped.
 *
 * Runs on the main thread at start-up.
 */
#include "task_loader.h"

#include "task.h"
#include "task_internal.h"
#include "task_plugin.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int fail(char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(char *why, size_t whylen, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, whylen, fmt, ap);
    va_end(ap);
    return -1;
}

/* dlerror's text without the "<file>: " it starts with. */
static const char *dl_reason(const char *file) {
    const char *e = dlerror();
    size_t n = strlen(file);
    if (e == NULL)
        return "unknown error";
    if (strncmp(e, file, n) == 0 && e[n] == ':' && e[n + 1] == ' ')
        return e + n + 2;
    return e;
}

/* The plugin's stamp, or NULL when it has none. */
static const struct workerd_plugin_info *stamp(void *h) {
    dlerror();
    return dlsym(h, "workerd_plugin_info");
}

static int check_stamp(const struct workerd_plugin_info *info, char *why, size_t whylen) {
    if (info == NULL)
        return fail(why, whylen,
                    "not a workerd plugin (its source has no WORKERD_PLUGIN_DECLARE();)");
    if (info->abi != WORKERD_PLUGIN_ABI)
        return fail(why, whylen,
                    "built for plugin ABI %u, but this workerd loads ABI %u: rebuild it against "
                    "this workerd's SDK",
                    info->abi, (unsigned)WORKERD_PLUGIN_ABI);
    return 0;
}

/* Why the RTLD_NOW open failed (see above). */
static int explain_open(const char *file, char *why, size_t whylen) {
    char first[512];
    snprintf(first, sizeof first, "%s", dl_reason(file));
    void *h = dlopen(file, RTLD_LAZY | RTLD_LOCAL);
    if (h != NULL && check_stamp(stamp(h), why, whylen) != 0)
        return -1;
    return fail(why, whylen, "cannot load it: %s", first);
}

/* Why task_registry_add refused a name during the init. */
static int refused(int err, const char *name, char *why, size_t whylen) {
    if (err == -EEXIST) {
        const char *owner = task__registry_owner(name);
        if (owner == NULL)
            return fail(why, whylen, "task \"%s\" is already registered by the built-in tasks",
                        name);
        return fail(why, whylen, "task \"%s\" is already registered by plugin %s", name, owner);
    }
    if (err == -EINVAL)
        return fail(why, whylen,
                    "cannot register task \"%s\": not a valid task name (1 to 128 letters, "
                    "digits and _-.: starting with a letter or _, no empty part between dots), "
                    "or no function",
                    name);
    return fail(why, whylen, "cannot register task \"%s\": %s", name, strerror(-err));
}

int task_plugin_load(const char *path, char *why, size_t whylen) {
    char file[4096];
    /* dlopen looks a name without a slash up in the library path: never that. */
    snprintf(file, sizeof file, "%s%s", strchr(path, '/') ? "" : "./", path);
    dlerror();
    void *h = dlopen(file, RTLD_NOW | RTLD_LOCAL);
    if (h == NULL)
        return explain_open(file, why, whylen);
    if (check_stamp(stamp(h), why, whylen) != 0)
        return -1;
    /* A function pointer from dlsym's void *: POSIX guarantees the conversion works. */
    int (*init)(void);
    dlerror();
    *(void **)&init = dlsym(h, "workerd_plugin_init");
    if (init == NULL)
        return fail(why, whylen, "defines no function workerd_plugin_init");
    task__registry_begin(path);
    int rc = init();
    const char *name;
    int err = task__registry_end(&name);
    if (err != 0)
        return refused(err, name, why, whylen);
    if (rc < 0)
        return fail(why, whylen, "workerd_plugin_init returned %d (%s)", rc, strerror(-rc));
    if (rc != 0)
        return fail(why, whylen, "workerd_plugin_init returned %d", rc);
    return 0;
}
