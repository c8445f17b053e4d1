#!/usr/bin/env bash
# workerd's quick start: install what is missing (Debian 12), build workerd and workerctl
# (build/daemon/workerd, build/daemon/ctl/workerctl), make sure a Redis answers at the
# broker URL (starting a local redis-server when none does and the URL is the default
# one), then run `workerd -P green` in the foreground with any extra arguments given
# here. Ctrl-C stops workerd (warm shutdown) and the Redis it started.
#
#   daemon/run.sh [workerd options...]        e.g. daemon/run.sh -c 1000 -Q high,default
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
tests/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target workerd workerctl >/dev/null
echo "run.sh: built build/daemon/workerd and build/daemon/ctl/workerctl" >&2

url=${WORKERD_BROKER:-redis://127.0.0.1:6379/0}
started=""
stop_redis() {
  if [ -n "$started" ]; then
    redis-cli -p 6379 shutdown nosave >/dev/null 2>&1 || true
  fi
}
trap stop_redis EXIT
if ! redis-cli -u "$url" ping 2>/dev/null | grep -q PONG; then
  if [ "$url" != "redis://127.0.0.1:6379/0" ]; then
    echo "run.sh: no Redis answers at WORKERD_BROKER; start it, or unset WORKERD_BROKER" >&2
    exit 1
  fi
  mkdir -p "$top/build/redis"
  redis-server --port 6379 --bind 127.0.0.1 --dir "$top/build/redis" --appendonly yes \
      --daemonize yes --logfile "$top/build/redis/redis.log" >/dev/null
  started=yes
  for _ in $(seq 100); do redis-cli -p 6379 ping 2>/dev/null | grep -q PONG && break; sleep 0.05; done
  echo "run.sh: started a local redis-server on 127.0.0.1:6379 (data in build/redis)" >&2
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
build/daemon/workerd -P green "$@" || status=$?
exit "${status:-0}"
