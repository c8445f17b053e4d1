/*
 * task_plugin.h - what makes a shared object a workerd plugin: the ABI stamp and the one
 * function workerd calls. Include it (as <workerd/task_plugin.h> from the installed SDK)
 * in the one file of the plugin that registers its tasks:
 *
 *     #include <workerd/task_plugin.h>
 *
 *     WORKERD_PLUGIN_DECLARE();
 *
 *     static int greet(const task_call *call, json_t **result, task_error *err) { ... }
 *
 *     int workerd_plugin_init(void) {
 *         return task_registry_add("hello.greet", greet);
 *     }
 *
 * and build it as a shared object (`cc -shared -fPIC $(pkg-config --cflags workerd)`, or
 * workerd_add_plugin() of the CMake package). A plugin links nothing of workerd's: the
 * workerd executable exports every function of the installed headers (and the libraries
 * it uses itself, jansson, libcurl and hiredis, are there too), and the dynamic linker
 * binds the plugin to them when `workerd --load PATH.so` loads it.
 *
 * THE CONTRACT OF workerd_plugin_init:
 *
 *   - It is called once, on workerd's main thread, at start-up: after the built-in tasks
 *     are registered and before any worker (or, with --processes, any child) starts. So
 *     there is no hub yet: no green_* call that may yield works here (they return -EPERM).
 *   - It registers the plugin's tasks with task_registry_add (task.h) and may prepare
 *     what they share (tables, compiled patterns). It must not start threads or open
 *     connections: with --processes the process forks after it, and a forked child keeps
 *     neither threads nor a usable connection. Open connections lazily in the tasks (a
 *     task gets a lent Redis connection from task_redis, task_env.h).
 *   - It returns 0, or anything else to stop the start-up: workerd then exits with code 2
 *     after one line naming the plugin and the value returned (a negative errno is shown
 *     with its text). A task name refused by task_registry_add (one that is already
 *     registered, by the built-in tasks or another plugin, or a malformed one) stops the
 *     start-up too, whatever the function returns, with a line naming the task.
 *
 * Plugins are loaded in the order of --load, each once, and never unloaded: the code of
 * a task stays mapped for the life of the process.
 *
 * A plugin runs in workerd's process, like any C code linked into it: a crash in a task
 * (SIGSEGV, abort) takes the whole process down with every task it was running. The
 * messages are not lost: another worker (or the supervisor's next child, with
 * --processes) recovers them once the dead worker's heartbeat expires, and a message that
 * keeps killing its workers becomes a dead letter after --max-redeliveries (README.md,
 * "Delivery").
 *
 * The ABI. WORKERD_PLUGIN_ABI names the version of the binary interface of every
 * installed header: the layout of its structs and the signatures of its functions. It
 * changes whenever one of them changes incompatibly, and workerd refuses a plugin built
 * for another one (rebuild the plugin against the installed SDK). The first member of
 * struct workerd_plugin_info stays the ABI number in every version, so that any workerd
 * can read it.
 */
#ifndef WORKERD_TASK_PLUGIN_H
#define WORKERD_TASK_PLUGIN_H

#include "task.h"
#include "task_env.h"

/* The plugin ABI this header describes. */
#define WORKERD_PLUGIN_ABI 1

/* What WORKERD_PLUGIN_DECLARE() records in the plugin. */
struct workerd_plugin_info {
    unsigned abi; /* WORKERD_PLUGIN_ABI when the plugin was compiled: always first */
};

/* Put `WORKERD_PLUGIN_DECLARE();` at file scope in exactly one source file of the plugin:
 * it defines the exported symbol workerd_plugin_info, by which workerd knows a plugin
 * from any other shared object, and stamps it with the ABI of the headers it was compiled
 * against. */
#define WORKERD_PLUGIN_DECLARE()                                                                   \
    extern __attribute__((visibility("default")))                                                  \
    const struct workerd_plugin_info workerd_plugin_info;                                          \
    __attribute__((visibility("default")))                                                         \
    const struct workerd_plugin_info workerd_plugin_info = {WORKERD_PLUGIN_ABI}

/* Defined by the plugin (see the contract above); exported, since workerd looks it up by
 * name. */
__attribute__((visibility("default"))) int workerd_plugin_init(void);

#endif
