#!/usr/bin/env bash
# Every benchmark case in one run, beside the peers and the machine's limits, and the report:
#   bench/all.sh [RUNS=3]
#   PEER_BENCH_DIR=/path/to/peer/bench bench/all.sh        (with Celery and Sidekiq)
# Builds workerd and bench_latency (Release), starts a private redis-server and nginx (echo
# module: /fast, /slow = 100 ms) on free loopback ports, and runs, in this order:
#   1. echo, results stored: 100,000 tasks at -c 1000 (Celery: noop 20,000 at -c 100)
#   2. the same with ignore_result                      (Celery: noop_ir 20,000 at -c 100)
#   3. http.get /slow: 10,000 at -c 1000 and 50,000 at -c 10000 (Celery: 5,000 at -c 1000)
#   4. http.get /fast: 50,000 at -c 100                 (Celery: 5,000 at -c 100)
#   5. latency enqueue -> start at a steady 1,000 tasks/s for 30 s (bench/latency)
#   6. limits: redis-benchmark for the commands a task costs, wrk against /slow (1000 and
#      10000 connections) and /fast (100)
# Sidekiq's no-op (20,000 at -c 10, warnings silenced) runs when $PEER_BENCH_DIR has
# sidekiq_bench.sh. Throughput cases use bench/macro/workerd_macro.py (the peers' method).
# Writes docs/benchmarks.md (table, machine, versions, date) and docs/benchmarks.png
# (gnuplot), and prints `name value unit` lines. Servers are stopped on exit.
# Environment:
#   PEER_BENCH_DIR   the peer harness (celery_bench.sh, sidekiq_bench.sh); without it, the
#                    peer columns stay empty.
#   PEER_VARIANTS    Celery set-ups for case 1: "shared" (BENCH_SHARED_BACKEND=1, its best:
#                    the default) and/or "default" (as shipped).
#   PEER_RUNS        runs per peer measurement (default RUNS); PEER_ECHO_COUNT (20000),
#                    PEER_HTTP_COUNT (5000).
#   BENCH_OUT        results directory (default ${TMPDIR:-/tmp}/workerd-bench-all)
#   BENCH_BUILD_DIR  build directory (default build-release)
#   BENCH_DOCS       where the report goes (default docs/benchmarks.md and .png)
#   LATENCY_SECONDS (30), LATENCY_RATE (1000), WRK_DURATION (10s)
set -euo pipefail
runs=${1:-3}
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
py=/usr/bin/python3

tests/install-deps.sh
need=(python3-redis redis-tools wrk gnuplot-nox nginx-light libnginx-mod-http-echo)
[ -n "${PEER_BENCH_DIR:-}" ] && need+=(python3-celery python3-gevent python3-requests)
[ -n "${PEER_BENCH_DIR:-}" ] && [ -x "${PEER_BENCH_DIR}/sidekiq_bench.sh" ] && need+=(ruby-sidekiq)
missing=()
for p in "${need[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing: ${missing[*]}" >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
      "${missing[@]}" >/dev/null
fi

build=${BENCH_BUILD_DIR:-build-release}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j"$(nproc)" --target workerd bench_latency >/dev/null
export WORKERD_BIN=$top/$build/daemon/workerd
out=${BENCH_OUT:-${TMPDIR:-/tmp}/workerd-bench-all}
export BENCH_OUT=$out
rm -rf "$out"; mkdir -p "$out/limits"

# shellcheck source=SCRIPTDIR/lib/servers.sh
. bench/lib/servers.sh
worker_pid=""
cleanup() {
  [ -n "$worker_pid" ] && kill "$worker_pid" 2>/dev/null && wait "$worker_pid" 2>/dev/null
  bench_stop_servers
}
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)"
NGINX_WORKERS=1 bench_start_nginx
bench_start_redis
export REDIS_PORT NGINX_PORT

rev=$(git rev-parse --short HEAD 2>/dev/null || echo '?')
git status --porcelain 2>/dev/null | grep -q . && rev+=" + local changes"
{
  echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "cpus=$(nproc)"
  echo "cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
  echo "mem=$(awk '/MemTotal/ {printf "%.1f GB", $2/1048576}' /proc/meminfo)"
  echo "kernel=$(uname -r)"
  echo "workerd=$rev (Release, $(cc --version | head -1))"
  echo "redis=$(redis-server --version | grep -o 'v=[^ ]*' | cut -d= -f2)"
  echo "nginx=$(nginx -v 2>&1 | cut -d/ -f2) (1 worker)"
  echo "wrk=$(dpkg-query -W -f='${Version}' wrk)"
  echo "libs=libev $(dpkg-query -W -f='${Version}' libev4), hiredis $(dpkg-query -W -f='${Version}' libhiredis0.14), jansson $(dpkg-query -W -f='${Version}' libjansson4), libcurl $(dpkg-query -W -f='${Version}' libcurl4)"
  echo "celery=$(dpkg-query -W -f='${Version}' python3-celery 2>/dev/null || echo -)"
  echo "gevent=$(dpkg-query -W -f='${Version}' python3-gevent 2>/dev/null || echo -)"
  echo "sidekiq=$(dpkg-query -W -f='${Version}' ruby-sidekiq 2>/dev/null || echo -)"
  echo "load_before=$(cut -d' ' -f1-3 /proc/loadavg)"
  echo "runs=$runs"
} > "$out/meta.txt"
cat "$out/meta.txt" | sed 's/^/# /'

# ---- workerd: cases 1-4 -------------------------------------------------------------------
wd() { "$py" bench/macro/workerd_macro.py "$@" "$runs"; }
wd echo 100000 1000
wd echo_ir 100000 1000
wd http_slow 10000 1000
wd http_slow 50000 10000
wd http_fast 50000 100

# ---- peers --------------------------------------------------------------------------------
if [ -n "${PEER_BENCH_DIR:-}" ]; then
  prun=${PEER_RUNS:-$runs}; necho=${PEER_ECHO_COUNT:-20000}; nhttp=${PEER_HTTP_COUNT:-5000}
  mkdir -p /tmp/bench # celery_bench.py's ready file lives there
  celery() { # VARIANT CASE COUNT CONC
    local envs=(BENCH_SHARED_BACKEND=1 BENCH_HTTP=urllib)
    [ "$1" = default ] && envs=(BENCH_SHARED_BACKEND=0 BENCH_HTTP=requests)
    echo "# celery ($1): celery_bench.sh $2 $3 $4 gevent $prun  with ${envs[*]}"
    env "${envs[@]}" BENCH_OUT="$out/peer" "$PEER_BENCH_DIR/celery_bench.sh" "$2" "$3" "$4" \
        gevent "$prun" | tail -n 16
  }
  for v in ${PEER_VARIANTS:-shared}; do celery "$v" noop "$necho" 100; done
  celery shared noop_ir "$necho" 100
  celery shared fetch_slow "$nhttp" 1000
  celery shared fetch_fast "$nhttp" 100
  if [ -x "$PEER_BENCH_DIR/sidekiq_bench.sh" ] && [ -x /usr/bin/sidekiq ]; then
    echo "# sidekiq: sidekiq_bench.sh $necho 10 $prun  with BENCH_SIDEKIQ_QUIET=1"
    BENCH_SIDEKIQ_QUIET=1 BENCH_OUT="$out/peer" "$PEER_BENCH_DIR/sidekiq_bench.sh" \
        "$necho" 10 "$prun" | tail -n 16
  fi
fi

# ---- case 5: latency ----------------------------------------------------------------------
redis-cli -p "$REDIS_PORT" flushall >/dev/null
"$WORKERD_BIN" -P green -c 1000 -b "redis://127.0.0.1:$REDIS_PORT/0" -l warning \
    2>"$out/latency_worker.log" &
worker_pid=$!
sleep 1
"$top/$build/bench/bench_latency" "$REDIS_PORT" "${LATENCY_RATE:-1000}" \
    "${LATENCY_SECONDS:-30}" | tee "$out/latency.txt"
kill "$worker_pid"; wait "$worker_pid" || true; worker_pid=""
redis-cli -p "$REDIS_PORT" flushall >/dev/null

# ---- case 6: limits -----------------------------------------------------------------------
# What one task costs in Redis: fetch.lua's RPOP and HSET (in-flight), ack.lua's SET EX of
# the result, PUBLISH and HDEL; each at pipeline depth 16 (as the scripts batch them) and 1.
val=$(head -c 200 /dev/zero | tr '\0' x)
for run in $(seq "$runs"); do
  for P in 1 16; do
    redis-cli -p "$REDIS_PORT" flushall >/dev/null
    {
      redis-benchmark -p "$REDIS_PORT" -c 50 -n 200000 -P "$P" -t lpush,rpop --csv | tail -n +2
      redis-benchmark -p "$REDIS_PORT" -c 50 -n 200000 -P "$P" -r 1000000 --csv \
          SET 'r:__rand_int__' "$val" EX 86400 | tail -n +2 | sed 's/^"SET[^"]*"/"SET_EX"/'
      redis-benchmark -p "$REDIS_PORT" -c 50 -n 200000 -P "$P" -r 1000000 --csv \
          HSET inflight '__rand_int__' "$val" | tail -n +2 | sed 's/^"HSET[^"]*"/"HSET"/'
      redis-benchmark -p "$REDIS_PORT" -c 50 -n 200000 -P "$P" -r 1000000 --csv \
          HDEL inflight '__rand_int__' | tail -n +2 | sed 's/^"HDEL[^"]*"/"HDEL"/'
      redis-benchmark -p "$REDIS_PORT" -c 50 -n 200000 -P "$P" --csv \
          PUBLISH 'r:1' "$val" | tail -n +2 | sed 's/^"PUBLISH[^"]*"/"PUBLISH"/'
    } | sed "s/^/$run,P$P,/" >> "$out/limits/redis.csv"
  done
done
redis-cli -p "$REDIS_PORT" flushall >/dev/null
dur=${WRK_DURATION:-10s}
for run in $(seq "$runs"); do
  wrk -t2 -c100 -d"$dur" --latency --timeout 5s "http://127.0.0.1:$NGINX_PORT/fast" \
      > "$out/limits/wrk_fast_c100_$run.txt"; sleep 1
  wrk -t2 -c1000 -d"$dur" --latency --timeout 5s "http://127.0.0.1:$NGINX_PORT/slow" \
      > "$out/limits/wrk_slow_c1000_$run.txt"; sleep 1
  wrk -t2 -c10000 -d"$dur" --latency --timeout 5s "http://127.0.0.1:$NGINX_PORT/slow" \
      > "$out/limits/wrk_slow_c10000_$run.txt"; sleep 2
done
echo "load_after=$(cut -d' ' -f1-3 /proc/loadavg)" >> "$out/meta.txt"

# ---- report -------------------------------------------------------------------------------
docs=${BENCH_DOCS:-docs/benchmarks.md}
mkdir -p "$(dirname "$docs")"
"$py" bench/report.py "$out" "$docs" "${docs%.md}.png"
