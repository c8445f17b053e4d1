/*
 * other.c - a second working test plugin: two tasks that return their arguments, for the
 * tests of --list-tasks and of several --load options.
 */
#include <workerd/task_plugin.h>

WORKERD_PLUGIN_DECLARE();

static int same(const task_call *call, json_t **result, task_error *err) {
    *result = json_deep_copy(call->args);
    return *result ? 0 : task_error_set(err, "MemoryError", "out of memory");
}

int workerd_plugin_init(void) {
    int rc = task_registry_add("u.two", same);
    return rc != 0 ? rc : task_registry_add("u.one", same);
}
