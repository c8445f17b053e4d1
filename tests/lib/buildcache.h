/*
 * buildcache.h - the build directory of the binaries under test and the entries of its
 * CMakeCache.txt, for the tests that install the build (cmake --install) and check what
 * lands where. The build directory is $WORKERD_BUILD_DIR when set, else the one the
 * workerd binary was built in (<build>/daemon/workerd). Results live in static buffers.
 */
#ifndef WORKERD_TESTS_BUILDCACHE_H
#define WORKERD_TESTS_BUILDCACHE_H

/* The build directory; workerd_bin is the test's WORKERD_BIN. */
const char *buildcache_dir(const char *workerd_bin);

/* The value of the cache entry name (NAME:TYPE=value). A missing CMakeCache.txt or entry
 * fails the test; hint, when not NULL, is added to the message of a missing entry (why it
 * may be missing). */
const char *buildcache_value(const char *workerd_bin, const char *name, const char *hint);

#endif
