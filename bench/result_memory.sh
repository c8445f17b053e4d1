#!/usr/bin/env bash
# The worker's peak memory for the largest results an http.get may make, one command:
#   bench/result_memory.sh
# Builds workerd (Release; or runs $WORKERD_BIN), starts a private redis-server and a
# static file server (python3 -m http.server) on free loopback ports, and for each case
# starts a fresh `workerd -c 1`, sends it one http.get, waits for the result and reads the
# worker's peak resident memory (VmHWM in /proc/PID/status, the whole life of the
# process). Prints one line per case: the body, --max-result-size, the outcome, the
# stored result's size, the idle worker's VmHWM and the peak after the task; then the
# peak's growth as a multiple of --max-result-size.
#
# Cases: 100 MiB bodies of \x01 and of '"' (max_size 104857600, the most a message may
# ask for), which used to make 600 MB and 200 MB results; the largest bodies whose results
# fit the default limit (16 MiB of JSON: base64 of 12 MiB of \x01, 16 MiB of text); and
# the same 100 MiB of \x01 under the largest limit (--max-result-size 256M), where its
# 133 MiB base64 result is stored.
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
files=""
stop_all() {
  [ -n "$worker" ] && kill "$worker" 2>/dev/null && wait "$worker" 2>/dev/null
  [ -n "$files" ] && kill "$files" 2>/dev/null && wait "$files" 2>/dev/null
  bench_stop_servers
}
trap stop_all EXIT
bench_start_redis
rcli() { redis-cli -p "$REDIS_PORT" "$@"; }

MIB=$((1 << 20))
www="$BENCH_RUN/www"
mkdir -p "$www"
fill() { # fill NAME BYTES OCTAL-CHAR
  head -c "$2" /dev/zero | tr '\000' "\\$3" > "$www/$1"
}
fill ones-100m $((100 * MIB)) 001
fill quotes-100m $((100 * MIB)) 042
# The largest that fit 16 MiB of JSON with room for the rest of the result (~400 bytes).
fill ones-12m $(((16 * MIB - 1024) / 4 * 3)) 001
fill text-16m $((16 * MIB - 1024)) 170
http_port=$(bench_free_port)
python3 -m http.server "$http_port" --bind 127.0.0.1 --directory "$www" \
    >"$BENCH_RUN/http.log" 2>&1 &
files=$!
for _ in $(seq 200); do
  curl -fs -o /dev/null "http://127.0.0.1:$http_port/" && break
  sleep 0.05
done

vmhwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }

echo "# machine: $(nproc) CPUs, Linux $(uname -r); workerd: $WORKERD_BIN"
printf '%-12s %-8s %-30s %12s %10s %10s %8s\n' body limit outcome stored_bytes idle_MiB \
    peak_MiB growth/limit
run_case() { # run_case FILE LIMIT
  local file=$1 limit=$2 id="mem-$1-$2"
  rcli DEL "workerd:result:$id" >/dev/null
  "$WORKERD_BIN" -b "redis://127.0.0.1:$REDIS_PORT/0" -c 1 --max-result-size "$limit" \
      >"$BENCH_RUN/worker.log" 2>&1 &
  worker=$!
  for _ in $(seq 400); do
    grep -q "ready: consuming" "$BENCH_RUN/worker.log" && break
    sleep 0.05
  done
  local idle
  idle=$(vmhwm_kib "$worker")
  rcli LPUSH workerd:queue:default "{\"id\":\"$id\",\"task\":\"http.get\",\"args\":[\"http://127.0.0.1:$http_port/$file\"],\"kwargs\":{\"max_size\":104857600,\"timeout\":120}}" >/dev/null
  local status=""
  for _ in $(seq 1200); do
    status=$(rcli GETRANGE "workerd:result:$id" 0 400 | grep -o '"status":"[A-Z]*"' | head -1 |
             tr -dc 'A-Z' || true)
    [ -n "$status" ] && [ "$status" != STARTED ] && break
    sleep 0.1
  done
  local peak bytes what
  peak=$(vmhwm_kib "$worker")
  bytes=$(rcli STRLEN "workerd:result:$id")
  what=$status
  if [ "$status" = FAILURE ]; then
    what="FAILURE $(rcli GET "workerd:result:$id" | python3 -c \
        'import json,sys; print(json.load(sys.stdin)["error"]["type"])')"
  elif [ "$status" = SUCCESS ]; then
    what="SUCCESS $(rcli GET "workerd:result:$id" | python3 -c \
        'import json,sys; r=json.load(sys.stdin)["result"]; print("body_base64" if "body_base64" in r else "body")')"
  fi
  kill "$worker"; wait "$worker" 2>/dev/null || true; worker=""
  local limit_kib=$((${limit%M} * 1024))
  awk -v f="$file" -v l="$limit" -v w="$what" -v b="$bytes" -v i="$idle" -v p="$peak" \
      -v k="$limit_kib" 'BEGIN { printf "%-12s %-8s %-30s %12s %10.1f %10.1f %8.2f\n",
                                  f, l, w, b, i / 1024, p / 1024, (p - i) / k }'
}
run_case ones-100m 16M
run_case quotes-100m 16M
run_case ones-12m 16M
run_case text-16m 16M
run_case ones-100m 256M
