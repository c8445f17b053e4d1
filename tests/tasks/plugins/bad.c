/*
 * bad.c - test plugins that each break one rule of task_plugin.h, chosen by a definition:
 *
 *   BAD_NODECLARE  no WORKERD_PLUGIN_DECLARE();      BAD_ABI       stamped with another ABI
 *   BAD_NOINIT     no workerd_plugin_init            BAD_INITFAIL  the init returns -EIO
 *   BAD_DUPECHO    registers "echo" (a built-in), and returns 0 all the same
 *   BAD_BADNAME    registers "a..b"                  BAD_PRIVATE   calls a private function
 *                                                                  workerd does not export
 *   BAD_NEWER      as a plugin of a future SDK: another ABI, and a function this workerd
 *                  does not have (so it cannot even be loaded with every symbol bound)
 */
#include <workerd/task_plugin.h>

#if defined(BAD_ABI) || defined(BAD_NEWER)
/* The stamp by hand, as a plugin of a future SDK would have it. */
extern __attribute__((visibility("default"))) const struct workerd_plugin_info workerd_plugin_info;
__attribute__((visibility("default")))
const struct workerd_plugin_info workerd_plugin_info = {WORKERD_PLUGIN_ABI + 1};
#elif !defined(BAD_NODECLARE)
WORKERD_PLUGIN_DECLARE();
#endif

#if !defined(BAD_NOINIT)
static int noop(const task_call *call, json_t **result, task_error *err) {
    (void)call, (void)err;
    *result = json_null();
    return 0;
}

#if defined(BAD_PRIVATE)
int green__check(void); /* green_internal.h's: not part of the SDK */
#elif defined(BAD_NEWER)
int task_from_the_future(void); /* a later SDK's */
#endif

int workerd_plugin_init(void) {
#if defined(BAD_INITFAIL)
    (void)noop;
    return -EIO;
#elif defined(BAD_DUPECHO)
    (void)task_registry_add("bad.first", noop);
    (void)task_registry_add("echo", noop); /* refused, and the refusal ignored */
    return 0;
#elif defined(BAD_BADNAME)
    return task_registry_add("a..b", noop);
#elif defined(BAD_PRIVATE)
    return green__check() == 42 ? 1 : task_registry_add("bad.private", noop);
#elif defined(BAD_NEWER)
    return task_from_the_future() == 42 ? 1 : task_registry_add("bad.newer", noop);
#else
    return task_registry_add("bad.task", noop);
#endif
}
#endif
