#!/usr/bin/env bash
# /healthz latency under a connection flood, one command:
#   bench/http_probes.sh [http_probes.py options: --idle 2000 --slow 200 --seconds 10 ...]
# Builds workerd (Release; or runs $WORKERD_BIN), starts a private redis-server and
# `workerd --http` on free loopback ports, waits for /healthz, then runs
# bench/http_probes.py against it: an attacker process holds the idle and slow
# connections (reopening those the worker closes) while /healthz is probed; prints the
# probes' p50/p99/max and the worker's RSS as `name value unit` lines.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
if [ -z "${WORKERD_BIN:-}" ]; then
  tests/install-deps.sh
  build=${BENCH_BUILD_DIR:-build-release}
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$build" -j"$(nproc)" --target workerd >/dev/null
  WORKERD_BIN=$top/$build/daemon/workerd
fi
. bench/lib/servers.sh
worker=""
stop_all() {
  [ -n "$worker" ] && kill "$worker" 2>/dev/null && wait "$worker" 2>/dev/null
  bench_stop_servers
}
trap stop_all EXIT
ulimit -n "$(ulimit -Hn)"
bench_start_redis
port=$(bench_free_port)
"$WORKERD_BIN" -b "redis://127.0.0.1:$REDIS_PORT/0" --http "127.0.0.1:$port" \
    >"$BENCH_RUN/worker.log" 2>&1 &
worker=$!
for _ in $(seq 200); do
  curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
  sleep 0.05
done
curl -fs "http://127.0.0.1:$port/healthz" >/dev/null || {
  echo "workerd did not become healthy" >&2; cat "$BENCH_RUN/worker.log" >&2; exit 1; }
echo "# machine: $(nproc) CPUs, Linux $(uname -r); workerd: $WORKERD_BIN;" \
     "descriptors: $(ulimit -n)"
python3 bench/http_probes.py --port "$port" --pid "$worker" "$@"
