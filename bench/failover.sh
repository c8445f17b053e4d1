#!/usr/bin/env bash
# Sentinel failovers under load: one master, two replicas and three redis-sentinel
# processes on loopback, WORKERS workers behind a redis+sentinel:// URL. Each of ROUNDS
# rounds enqueues PER_ROUND sleep tasks (then WAIT 1, as a producer that needs its
# messages to survive a failover does), SIGKILLs the master once half of them are taken,
# waits for the sentinels to promote a replica, and restarts the killed node as a replica
# of the new master. At the end every id must have its SUCCESS result.
#   bench/failover.sh [ROUNDS] [PER_ROUND] [WORKERS]
# Prints one line per failover and `failover_*` lines: tasks, lost (ids without a
# SUCCESS result: must be 0), duplicated (runs beyond one per id, from the workers' debug
# logs), and the failover times. KEEP=1 keeps the logs; HEARTBEAT=N sets --heartbeat.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
rounds=${1:-5}
per=${2:-4000}
nworkers=${3:-2}
heartbeat=${HEARTBEAT:-5} # workerd's default: a failover shorter than its TTL robs nobody
build=${BENCH_BUILD_DIR:-build-release}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j2 --target workerd >/dev/null
run=$(mktemp -d /tmp/workerd-failover-XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "${KEEP:-}" ]; then echo "logs kept in $run"; else rm -rf "$run"; fi
}
trap cleanup EXIT
free_port() {
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
cli() { local port=$1; shift; redis-cli -p "$port" "$@"; }

# node_start INDEX [replicaof-port]: redis-server in the foreground of a background job.
declare -A node_pid node_port
node_start() {
  local i=$1 args=()
  [ $# -gt 1 ] && args=(--replicaof 127.0.0.1 "$2")
  mkdir -p "$run/n$i"
  redis-server --port "${node_port[$i]}" --bind 127.0.0.1 --save '' --appendonly no \
      --dir "$run/n$i" --logfile "$run/n$i/redis.log" "${args[@]}" &
  node_pid[$i]=$!
  pids+=("${node_pid[$i]}")
  for _ in $(seq 200); do cli "${node_port[$i]}" ping 2>/dev/null | grep -q PONG && return; sleep 0.05; done
  echo "redis-server $i did not start" >&2; exit 1
}
for i in 0 1 2; do node_port[$i]=$(free_port); done
node_start 0
node_start 1 "${node_port[0]}"
node_start 2 "${node_port[0]}"
for i in 1 2; do
  until cli "${node_port[$i]}" info replication | grep -q master_link_status:up; do sleep 0.1; done
done

sports=()
for i in 0 1 2; do
  sp=$(free_port); sports+=("$sp")
  cat > "$run/sentinel-$i.conf" <<CONF
port $sp
bind 127.0.0.1
dir $run
sentinel monitor mymaster 127.0.0.1 ${node_port[0]} 2
sentinel down-after-milliseconds mymaster 500
sentinel failover-timeout mymaster 2000
sentinel parallel-syncs mymaster 2
CONF
  redis-sentinel "$run/sentinel-$i.conf" > "$run/sentinel-$i.log" 2>&1 &
  pids+=($!)
done
field() { cli "${sports[0]}" sentinel master mymaster | awk -v k="$1" 'p{print; exit} $0==k{p=1}'; }
until [ "$(field num-other-sentinels 2>/dev/null)" = 2 ] && [ "$(field num-slaves)" = 2 ]; do
  sleep 0.2
done
master_port() { cli "${sports[0]}" sentinel get-master-addr-by-name mymaster | sed -n 2p; }
url="redis+sentinel://127.0.0.1:${sports[0]},127.0.0.1:${sports[1]},127.0.0.1:${sports[2]}/mymaster/0"

for w in $(seq "$nworkers"); do
  "$build/daemon/workerd" -b "$url" -c 50 --heartbeat "$heartbeat" -l debug -n "fo$w" \
      > "$run/worker-$w.log" 2>&1 &
  pids+=($!)
done

enqueue() { # first last port
  /usr/bin/python3 - "$1" "$2" <<'PY' | cli "$3" --pipe >/dev/null
import sys
key = "workerd:queue:default"
for i in range(int(sys.argv[1]), int(sys.argv[2]) + 1):
    msg = '{"id":"fo-%d","task":"sleep","args":[0.05]}' % i
    sys.stdout.write("*3\r\n$5\r\nLPUSH\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n"
                     % (len(key), key, len(msg), msg))
PY
}

total=0
times=()
for r in $(seq "$rounds"); do
  m=$(master_port)
  enqueue $((total + 1)) $((total + per)) "$m"
  total=$((total + per))
  cli "$m" wait 2 5000 >/dev/null
  until [ "$(cli "$m" llen workerd:queue:default)" -lt $((per / 2)) ]; do sleep 0.05; done
  killed=""
  for i in 0 1 2; do [ "${node_port[$i]}" = "$m" ] && killed=$i; done
  t0=$(date +%s.%N)
  kill -9 "${node_pid[$killed]}"
  wait "${node_pid[$killed]}" 2>/dev/null || true
  until n=$(master_port) && [ "$n" != "$m" ] && cli "$n" info replication 2>/dev/null | grep -q role:master; do
    sleep 0.05
  done
  t1=$(date +%s.%N)
  dt=$(echo "$t1 - $t0" | bc)
  times+=("$dt")
  echo "failover $r: master :$m SIGKILLed, :$n promoted after ${dt} s"
  node_start "$killed" "$n"
  until cli "${node_port[$killed]}" info replication | grep -q master_link_status:up; do sleep 0.1; done
  # Sentinel refuses a new failover of the same master name for 2 x failover-timeout.
  sleep 4.5
done

m=$(master_port)
deadline=$((SECONDS + 120))
count_ok() {
  cli "$m" eval "local n=0 for i=1,tonumber(ARGV[1]) do local v=redis.call('GET','workerd:result:fo-'..i) if v and string.find(v,'\"SUCCESS\"',1,true) then n=n+1 end end return n" 0 "$total"
}
while ok=$(count_ok) && [ "$ok" -lt "$total" ] && [ $SECONDS -lt $deadline ]; do sleep 0.5; done
runs=$(cat "$run"/worker-*.log | grep -c ' sleep started (tag ' || true)
echo "failover_rounds $rounds"
echo "failover_tasks $total"
echo "failover_lost $((total - ok))"
echo "failover_duplicated $((runs - total))"
echo "failover_seconds ${times[*]}"
# Where the duplicates come from: entries put back after a reconnect (acks the failover
# lost) and dead workers' messages recovered (heartbeats the failover let expire).
echo "failover_put_back $(cat "$run"/worker-*.log | sed -n 's/.*put back \([0-9]*\) messages.*/\1/p' | paste -sd+ | sed 's/^$/0/' | bc)"
echo "failover_recoveries $(cat "$run"/worker-*.log | grep -c 'recovered the messages of dead workers' || true)"
[ "$ok" -eq "$total" ]
