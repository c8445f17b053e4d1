#!/usr/bin/env bash
# Soak: N echo tasks (default 1,000,000) with results stored through one worker, sampling
# the worker's resident memory as it goes. Passes when the RSS at the end is within 10 %
# of the RSS after the first 10 % of the tasks (no leak that grows with tasks run).
#   bench/soak.sh [N] [CONCURRENCY]
# Prints the RSS curve (tasks done, RSS KiB) and `soak_*` lines.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
n=${1:-1000000}
conc=${2:-1000}
build=${BENCH_BUILD_DIR:-build-release}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j"$(nproc)" --target workerd >/dev/null
. bench/lib/servers.sh
trap bench_stop_servers EXIT
bench_start_redis
cli() { redis-cli -p "$REDIS_PORT" "$@"; }

python3 - "$n" > "$BENCH_RUN/enqueue.resp" <<'PY'
import sys
n = int(sys.argv[1])
out = sys.stdout
key = b"workerd:queue:default"
for i in range(1, n + 1):
    msg = b'{"id":"soak-%d","task":"echo","args":[%d]}' % (i, i)
    out.write("*3\r\n$5\r\nLPUSH\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n"
              % (len(key), key.decode(), len(msg), msg.decode()))
PY
cli --pipe < "$BENCH_RUN/enqueue.resp" >/dev/null
echo "enqueued $(cli llen workerd:queue:default) tasks"

"$build/daemon/workerd" -P green -c "$conc" -b "redis://127.0.0.1:$REDIS_PORT/0" -l warning \
    --result-expires 120 2>"$BENCH_RUN/workerd.log" &
wpid=$!
t0=$(date +%s.%N)
first_rss=""; mark=$((n / 10))
echo "# done rss_kib"
while :; do
  left=$(cli llen workerd:queue:default)
  done=$((n - left))
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$wpid/status")
  echo "$done $rss"
  if [ -z "$first_rss" ] && [ "$done" -ge "$mark" ]; then first_rss=$rss; fi
  if [ "$left" = 0 ] && [ -z "$(cli --scan --pattern 'workerd:inflight:*' | head -1)" ]; then break; fi
  sleep 0.5
done
t1=$(date +%s.%N)
end_rss=$(awk '/VmRSS/ {print $2}' "/proc/$wpid/status")
hwm=$(awk '/VmHWM/ {print $2}' "/proc/$wpid/status")
kill -TERM "$wpid"; wait "$wpid" || true
stored=$(cli eval "return #redis.call('keys','workerd:result:soak-*')" 0)
echo "soak_tasks $n tasks"
echo "soak_results_stored $stored results"
echo "soak_seconds $(echo "$t1 - $t0" | bc) s"
echo "soak_rss_after_first_10pct_kib $first_rss KiB"
echo "soak_rss_end_kib $end_rss KiB"
echo "soak_peak_rss_kib $hwm KiB"
growth=$(echo "scale=3; ($end_rss - $first_rss) * 100 / $first_rss" | bc)
echo "soak_rss_growth_pct $growth %"
awk -v g="$growth" 'BEGIN { exit !(g <= 10 && g >= -100) }' && echo "soak: ok (within 10 %)" \
  || { echo "soak: RSS grew by more than 10 %"; exit 1; }
