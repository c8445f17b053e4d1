#!/usr/bin/env bash
# workerd's macro benchmark, optionally beside Celery -P gevent in the same run:
#   bench/workerd_bench.sh CASE COUNT CONC [RUNS=3]
#   CASE = echo | echo_ir | http_slow | http_fast      CONC = 100, or a list: 100,1000
# e.g. bench/workerd_bench.sh echo 20000 100,1000
#      PEER_BENCH_DIR=/path/to/peer/bench bench/workerd_bench.sh http_slow 5000 1000
# Builds workerd (Release), starts a private redis-server (and nginx for http_*) on free
# loopback ports, measures workerd with the peer harness's method (bench/macro/workerd_macro.py:
# enqueue with the worker stopped, start it, poll Redis every 10 ms until done; start-up on an
# empty queue; peak RSS = VmHWM; CPU = utime+stime of the worker and of redis-server), stops
# the servers, and prints min/median/max plus `name value unit` lines.
# Environment:
#   PEER_BENCH_DIR  the peer harness (celery_bench.sh): run Celery on the same servers too
#                   (echo -> noop, echo_ir -> noop_ir, http_slow -> fetch_slow, http_fast ->
#                   fetch_fast) and print it side by side, with ratios.
#   PEER_VARIANTS   Celery set-ups, any of: default (as shipped), shared (BENCH_SHARED_BACKEND=1),
#                   shared_urllib (also BENCH_HTTP=urllib). Default: "default shared" for echo*,
#                   "default shared_urllib" for http_*.
#   PEER_CONC       Celery's concurrency (default: the first of CONC); PEER_RUNS (default RUNS).
#   BENCH_OUT       where JSON lines and logs go (default ${TMPDIR:-/tmp}/workerd-bench).
#   BENCH_BUILD_DIR build directory (default build-release); BENCH_CMAKE_ARGS extra cmake args.
#   BENCH_LIMIT_S   give up on a run after this many seconds (default 600).
set -euo pipefail
[ $# -ge 3 ] || { sed -n 2,23p "$0"; exit 2; }
case_=$1 count=$2 concs=$3 runs=${4:-3}
case $case_ in
  echo) peer_case=noop ;; echo_ir) peer_case=noop_ir ;;
  http_slow) peer_case=fetch_slow ;; http_fast) peer_case=fetch_fast ;;
  *) echo "unknown case $case_ (echo | echo_ir | http_slow | http_fast)" >&2; exit 2 ;;
esac
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

# Debian's python3 with python3-redis drives the runs (the python3 first on PATH may be
# another one that does not see Debian's packages); Celery needs its packages too.
py=/usr/bin/python3
tests/install-deps.sh
need=(python3-redis)
[ -n "${PEER_BENCH_DIR:-}" ] && need+=(python3-celery python3-gevent python3-requests)
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
# shellcheck disable=SC2086 # BENCH_CMAKE_ARGS is a list of words on purpose
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release ${BENCH_CMAKE_ARGS:-} >/dev/null
cmake --build "$build" -j"$(nproc)" --target workerd >/dev/null
export WORKERD_BIN=$top/$build/daemon/workerd
export BENCH_OUT=${BENCH_OUT:-${TMPDIR:-/tmp}/workerd-bench}
mkdir -p "$BENCH_OUT"

# shellcheck source=SCRIPTDIR/lib/servers.sh
. bench/lib/servers.sh
trap bench_stop_servers EXIT
ulimit -n "$(ulimit -Hn)"
bench_start_redis
[[ $case_ == http_* ]] && bench_start_nginx
export REDIS_PORT NGINX_PORT=${NGINX_PORT:-0}

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
rev=$(git -C "$top" rev-parse --short HEAD 2>/dev/null || echo '?')
git -C "$top" status --porcelain 2>/dev/null | grep -q . && rev+=" + local changes"
echo "# machine: $(nproc) CPUs, $cpu, Linux $(uname -r);" \
     "redis $(redis-server --version | grep -o 'v=[^ ]*')"
echo "# workerd: $WORKERD_BIN ($rev); out: $BENCH_OUT"

pairs=()
IFS=, read -ra conc_list <<<"$concs"
for c in "${conc_list[@]}"; do
  "$py" bench/macro/workerd_macro.py "$case_" "$count" "$c" "$runs"
  pairs+=("workerd_${case_}_c${c}=$BENCH_OUT/workerd_${case_}_c${c}_n${count}.jsonl")
done

if [ -n "${PEER_BENCH_DIR:-}" ]; then
  peer_conc=${PEER_CONC:-${conc_list[0]}}
  if [[ $case_ == http_* ]]; then variants=${PEER_VARIANTS:-default shared_urllib}
  else variants=${PEER_VARIANTS:-default shared}; fi
  # celery_bench.py's worker_ready handler writes its ready file under /tmp/bench.
  mkdir -p /tmp/bench
  for v in $variants; do
    label="${peer_case}_gevent_c${peer_conc}_n${count}"
    envs=(BENCH_SHARED_BACKEND=0 BENCH_HTTP=requests)
    case $v in
      default) ;;
      shared) envs=(BENCH_SHARED_BACKEND=1 BENCH_HTTP=requests); label+=_sharedbackend ;;
      shared_urllib)
        envs=(BENCH_SHARED_BACKEND=1 BENCH_HTTP=urllib); label+=_sharedbackend
        [[ $peer_case == fetch_* ]] && label+=_urllib ;;
      *) echo "unknown peer variant $v (default | shared | shared_urllib)" >&2; exit 2 ;;
    esac
    echo "# celery ($v): $PEER_BENCH_DIR/celery_bench.sh $peer_case $count $peer_conc gevent" \
         "${PEER_RUNS:-$runs}  with ${envs[*]}"
    # The peer finds the servers by REDIS_PORT / NGINX_PORT and leaves running ones alone.
    env "${envs[@]}" BENCH_OUT="$BENCH_OUT/peer" "$PEER_BENCH_DIR/celery_bench.sh" \
        "$peer_case" "$count" "$peer_conc" gevent "${PEER_RUNS:-$runs}"
    pairs+=("celery_${peer_case}_${v}_c${peer_conc}=$BENCH_OUT/peer/celery_${label}.jsonl")
  done
fi

"$py" bench/macro/summary.py "$case_ $count tasks (workerd -c $concs)" "${pairs[@]}"
