#!/usr/bin/env bash
# External-program tasks per second, one command:
#   bench/exec_tasks.sh [COUNT=10000] [CONCURRENCY=100] [RUNS=3] [PROGRAM=/bin/true]
# Builds workerd (Release; or runs $WORKERD_BIN), starts a private redis-server on a free
# loopback port, and per run: FLUSHALL, enqueues COUNT messages for the task `prog`
# (--exec-task prog=PROGRAM; /bin/true succeeds with null: it prints nothing), starts
# `workerd -c CONCURRENCY` on them, and times exec -> every message acked (the queue empty
# and no worker holding one: each result is stored by the ack that releases its message),
# then checks that every result is SUCCESS and stops the worker. Prints the machine, each
# run, and the median as `name value unit` lines. Needs python3-redis.
set -euo pipefail
count=${1:-10000}
conc=${2:-100}
runs=${3:-3}
program=${4:-/bin/true}
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
. bench/lib/build.sh
bench_build_workerd
. bench/lib/servers.sh
trap bench_stop_servers EXIT
ulimit -n "$(ulimit -Hn)"
bench_start_redis
bench_machine_line
echo "# case: $count tasks of --exec-task prog=$program at -c $conc, $runs runs"
export WORKERD_BIN REDIS_PORT BENCH_RUN
/usr/bin/python3 - "$count" "$conc" "$runs" "$program" <<'PY'
import os, statistics, subprocess, sys, time
import redis

count, conc, runs, program = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
r = redis.Redis(port=int(os.environ['REDIS_PORT']))
QUEUE = 'workerd:queue:default'
# The queue's length plus how many registered workers still hold a message.
busy = r.register_script("""
local n = 0
for _, wid in ipairs(redis.call('HKEYS', 'workerd:workers')) do
  n = n + redis.call('EXISTS', 'workerd:inflight:' .. wid, 'workerd:landing:' .. wid .. ':default')
end
return {redis.call('LLEN', KEYS[1]), n}
""")
rates = []
for run in range(runs):
    r.flushall()
    p = r.pipeline(transaction=False)
    for i in range(count):
        p.lpush(QUEUE, '{"id":"x-%d","task":"prog"}' % i)
        if i % 1000 == 999:
            p.execute()
    p.execute()
    log = open(os.path.join(os.environ['BENCH_RUN'], 'worker-%d.log' % run), 'w')
    t0 = time.monotonic()
    w = subprocess.Popen([os.environ['WORKERD_BIN'], '-b', 'redis://127.0.0.1:%s/0' %
                          os.environ['REDIS_PORT'], '-c', str(conc), '-l', 'warning',
                          '--exec-task', 'prog=' + program], stdout=log, stderr=log)
    while True:
        queued, holding = busy(keys=[QUEUE])
        if queued == 0 and holding == 0 and r.hlen('workerd:workers') > 0:
            break
        if w.poll() is not None:
            sys.exit('workerd exited early, see %s' % log.name)
        time.sleep(0.01)
    elapsed = time.monotonic() - t0
    w.terminate()
    w.wait()
    p = r.pipeline(transaction=False)
    for i in range(count):
        p.get('workerd:result:x-%d' % i)
    ok = sum(1 for v in p.execute() if v is not None and b'"status":"SUCCESS"' in v)
    if ok != count:
        sys.exit('run %d: %d of %d results are SUCCESS, see %s' % (run + 1, ok, count, log.name))
    rates.append(count / elapsed)
    print('exec_tasks_run%d %.0f tasks/s (%.2f s)' % (run + 1, count / elapsed, elapsed))
print('exec_tasks_c%d_median %.0f tasks/s' % (conc, statistics.median(rates)))
PY
