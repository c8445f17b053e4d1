#!/usr/bin/env bash
# The runtime's micro-benchmarks in one command: builds bench_runtime (Release), starts a
# private nginx, runs it, then the same HTTP loads from wrk for comparison.
#   bench/runtime.sh [--transfers N] [--requests N] [--concurrency N]
# Prints bench_runtime's table and `name value unit` lines, then wrk's figures as
# `wrk_slow_reqs_per_s` and `wrk_fast_reqs_per_s` lines.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
tests/install-deps.sh
command -v wrk >/dev/null || { echo "installing wrk" >&2; apt-get install -y -qq wrk >/dev/null; }
cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build-release -j"$(nproc)" --target bench_runtime >/dev/null
. bench/lib/servers.sh
trap bench_stop_servers EXIT
ulimit -n "$(ulimit -Hn)"
bench_start_nginx
base="http://127.0.0.1:$NGINX_PORT"
build-release/bench/bench_runtime --http "$base/fast" "$base/slow" "$@"
echo
echo "# the same loads from wrk (-t2, 10 s), for comparison"
slow=$(wrk -t2 -c10000 -d10s "$base/slow" 2>/dev/null | awk '/Requests\/sec/ {print $2}')
fast=$(wrk -t2 -c100 -d10s "$base/fast" 2>/dev/null | awk '/Requests\/sec/ {print $2}')
echo "wrk_slow_reqs_per_s ${slow:-0} req/s (10000 connections, /slow)"
echo "wrk_fast_reqs_per_s ${fast:-0} req/s (100 connections, /fast)"
