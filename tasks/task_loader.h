/*
 * task_loader.h - loading plugins (task_plugin.h) into the process: what `workerd --load`
 * does at start-up. Not installed.
 *
 * Call it on the main thread, after task_register_builtins and before any hub, thread or
 * child process exists: a plugin's workerd_plugin_init registers tasks, which is start-up
 * work (task.h).
 */
#ifndef WORKERD_TASK_LOADER_H
#define WORKERD_TASK_LOADER_H

#include <stddef.h>

/* Load the plugin at path (a path without a '/' is taken in the working directory, never
 * looked up in the library path), check it, and run its workerd_plugin_init. path must
 * outlive the process's registry: its tasks are registered as path's (a later plugin that
 * registers one of the names is told which plugin has it). Returns 0, or -1 with one line
 * in why saying what is wrong, without the path, e.g.
 *
 *     cannot load it: cannot open shared object file: No such file or directory
 *     not a workerd plugin (its source has no WORKERD_PLUGIN_DECLARE();)
 *     built for plugin ABI 2, but this workerd loads ABI 1: rebuild it against this
 *         workerd's SDK
 *     defines no function workerd_plugin_init
 *     workerd_plugin_init returned -5 (Input/output error)
 *     task "echo" is already registered by the built-in tasks
 *
 * A plugin that failed may have registered some of its tasks: the caller is expected to
 * stop. Not thread-safe. */
int task_plugin_load(const char *path, char *why, size_t whylen);

#endif
