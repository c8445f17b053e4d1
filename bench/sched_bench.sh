#!/usr/bin/env bash
# workerd's scheduling figures (issue: "Scheduling: countdown and eta", performance):
#   bench/sched_bench.sh [RUNS=3]
# Builds workerd (Release), starts a private redis-server on a free loopback port
# (bench/lib/servers.sh), and runs bench/macro/workerd_sched.py RUNS times per case:
#   burst   100,000 messages all due at one instant, kept in the scheduled set beforehand
#           by 2 workers: how long after the due time until every one is on its queue
#           (target: within 1 s), and when their tasks started;
#   steady  1,000 countdown tasks a second for 10 s, countdowns 0.5-2 s, 1 worker:
#           lateness of each start after push time + countdown, p50/p99/max (target:
#           p99 <= 10 ms).
# Environment: WORKERD_BIN (a workerd to run instead of building one), BENCH_BUILD_DIR
# (default build-release), BENCH_OUT (default
# ${TMPDIR:-/tmp}/workerd-bench), BURST_COUNT, BURST_WORKERS, STEADY_RATE, STEADY_SECONDS,
# STEADY_WORKERS to change the cases.
set -euo pipefail
runs=${1:-3}
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

py=/usr/bin/python3
# shellcheck source=SCRIPTDIR/lib/build.sh
. bench/lib/build.sh
bench_install_deps
bench_build_workerd
export WORKERD_BIN
export BENCH_OUT=${BENCH_OUT:-${TMPDIR:-/tmp}/workerd-bench}
mkdir -p "$BENCH_OUT"

# shellcheck source=SCRIPTDIR/lib/servers.sh
. bench/lib/servers.sh
trap bench_stop_servers EXIT
ulimit -n "$(ulimit -Hn)"
bench_start_redis
export REDIS_PORT

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
rev=$(git -C "$top" rev-parse --short HEAD 2>/dev/null || echo '?')
git -C "$top" status --porcelain 2>/dev/null | grep -q . && rev+=" + local changes"
echo "# machine: $(nproc) CPUs, $cpu, Linux $(uname -r);" \
     "redis $(redis-server --version | grep -o 'v=[^ ]*')"
echo "# workerd: $WORKERD_BIN ($rev); out: $BENCH_OUT"

for i in $(seq "$runs"); do
  echo "burst run $i: $("$py" bench/macro/workerd_sched.py burst "${BURST_COUNT:-100000}" \
       "${BURST_WORKERS:-2}")"
done
for i in $(seq "$runs"); do
  echo "steady run $i: $("$py" bench/macro/workerd_sched.py steady "${STEADY_RATE:-1000}" \
       "${STEADY_SECONDS:-10}" "${STEADY_WORKERS:-1}")"
done
