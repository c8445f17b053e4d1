#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what is missing, checks that every C file
# is formatted as .clang-format says, then builds and runs every test in a -Werror build and in an AddressSanitizer+UBSan build, fuzzes the parsers
# (the Celery envelope reader too) for 30 s each, runs the core tests on the ucontext fallback and the aarch64 context
# switch under qemu, and the runtime and broker tests under valgrind memcheck. Every test
# starts the servers it needs (redis-server, nginx) on free
# loopback ports and stops them. Usage: tests/run-all.sh [fast]  (fast: first build only)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
tests/install-deps.sh
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
jobs=$(nproc)
# Most tests spend their time waiting for events (servers starting, timers, workers
# draining), not computing: twice as many at once as there are CPUs keeps the CPUs busy.
# Valgrind's tests compute, and keep to one per CPU.
tjobs=$((jobs * 2))
export TMPDIR=${TMPDIR:-/tmp}

step() { printf '\n==== %s\n' "$*"; }

step "formatting (.clang-format)"
tests/check-format.sh

step "build (-Werror)"
cmake -S . -B build-ci -DCMAKE_BUILD_TYPE=RelWithDebInfo -DWORKERD_WERROR=ON >/dev/null
cmake --build build-ci -j"$jobs"
step "tests"
ctest --test-dir build-ci -LE valgrind -j"$tjobs" --output-on-failure
[ "${1:-}" = fast ] && exit 0

step "build (AddressSanitizer + UBSan)"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DWORKERD_SANITIZE=ON >/dev/null
cmake --build build-asan -j"$jobs"
step "tests under ASan + UBSan"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan -LE valgrind -j"$tjobs" --output-on-failure

step "fuzzing the message parser, the result writers, the Celery envelope reader and the config parser (30 s each)"
tests/fuzz/run.sh 30

step "build (ucontext fallback)"
cmake -S . -B build-ucontext -DCMAKE_BUILD_TYPE=RelWithDebInfo -DWORKERD_CONTEXT=ucontext >/dev/null
cmake --build build-ucontext -j"$jobs" --target test_core
step "core tests on the ucontext fallback"
ctest --test-dir build-ucontext -R '^test_core\.' -LE valgrind -j"$jobs" --output-on-failure

step "aarch64 context switch under qemu"
tests/cross-aarch64.sh

step "runtime and broker tests under valgrind memcheck"
ctest --test-dir build-ci -L valgrind -j"$jobs" --output-on-failure
