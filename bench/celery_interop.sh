#!/usr/bin/env bash
# Celery's producer sends COUNT http.get tasks (workerd.http.get of nginx's /slow, 100 ms,
# or /fast), consumed by workerd --protocol celery, then the same COUNT by Celery -P gevent
# itself, in the same run, on the same private redis-server and nginx; RUNS runs each, and
# the median tasks/s of each:
#   bench/celery_interop.sh [COUNT=5000] [CONC=1000] [RUNS=3] [PATH=/slow]
# Needs Debian's python3-celery, python3-gevent and python3-redis (tests/install-deps.sh),
# redis-server and nginx-light with libnginx-mod-http-echo. Builds workerd (Release) in
# ${BENCH_BUILD_DIR:-build-release}. Logs go to ${BENCH_OUT:-${TMPDIR:-/tmp}/workerd-bench}.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
count=${1:-5000} conc=${2:-1000} runs=${3:-3} path=${4:-/slow}
BUILD=${BENCH_BUILD_DIR:-$ROOT/build-release}
OUT=${BENCH_OUT:-${TMPDIR:-/tmp}/workerd-bench}/celery_interop
mkdir -p "$OUT"
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" -j2 --target workerd >/dev/null
ulimit -n 20000 2>/dev/null || true
. "$HERE/lib/servers.sh"
trap bench_stop_servers EXIT
bench_start_redis
bench_start_nginx
REDIS_PORT=$REDIS_PORT /usr/bin/python3 "$HERE/celery/interop.py" "$BUILD/daemon/workerd" \
    "$count" "$conc" "$runs" "http://127.0.0.1:$NGINX_PORT$path" "$OUT"
