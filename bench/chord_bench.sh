#!/usr/bin/env bash
# workerd's chord figures (issue 13, "Workflows and periodic tasks"):
#   bench/chord_bench.sh [RUNS=3] [MEMBERS=10000]
# Builds workerd (Release), starts a private redis-server on a free loopback port
# (bench/lib/servers.sh) and one worker (-c 200), then:
#   time     a chord of MEMBERS echo tasks, from its LPUSH to its callback's result (the
#            callback's result channel, subscribed before the push): RUNS runs, median;
#   memory   Redis's used_memory (INFO memory) before and after a chord whose members are
#            enqueued but not yet run (they go to a queue no worker consumes), divided by
#            MEMBERS: what one pending member costs (its message on the queue and its
#            share of the chord's state).
# Environment: WORKERD_BIN (a workerd to run instead of building one), BENCH_BUILD_DIR
# (default build-release), WORKERS_C (default 200).
set -euo pipefail
runs=${1:-3}
members=${2:-10000}
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

py=/usr/bin/python3
# shellcheck source=SCRIPTDIR/lib/build.sh
. bench/lib/build.sh
bench_install_deps
bench_build_workerd

# shellcheck source=SCRIPTDIR/lib/servers.sh
. bench/lib/servers.sh
worker_pid=""
stop_all() {
  [ -n "$worker_pid" ] && kill "$worker_pid" 2>/dev/null && wait "$worker_pid" 2>/dev/null
  bench_stop_servers
}
trap stop_all EXIT
bench_start_redis

rev=$(git -C "$top" rev-parse --short HEAD 2>/dev/null || echo '?')
echo "# machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')," \
     "Linux $(uname -r); redis $(redis-server --version | grep -o 'v=[^ ]*'); workerd $rev"

"$WORKERD_BIN" -b "redis://127.0.0.1:$REDIS_PORT/0" -c "${WORKERS_C:-200}" -l warning \
    >"$BENCH_RUN/worker.log" 2>&1 &
worker_pid=$!

REDIS_PORT=$REDIS_PORT MEMBERS=$members RUNS=$runs "$py" - <<'PY'
import json, os, statistics, time
import redis

r = redis.Redis(port=int(os.environ["REDIS_PORT"]))
n, runs = int(os.environ["MEMBERS"]), int(os.environ["RUNS"])
while not r.hlen("workerd:workers"):
    time.sleep(0.05)

def chord(cid, queue=None):
    sig = {"task": "echo", "args": [0]}
    if queue:
        sig["queue"] = queue
    members = [dict(sig, args=[i]) for i in range(n)]
    return json.dumps({"id": cid, "task": "chord",
                       "args": [members, {"id": cid + "-cb", "task": "echo"}]},
                      separators=(",", ":"))

times = []
for k in range(runs):
    cid = "bench-chord-%d" % k
    msg = chord(cid)
    p = r.pubsub()
    p.subscribe("workerd:result:" + cid + "-cb")
    p.get_message(timeout=1)
    t0 = time.time()
    r.lpush("workerd:queue:default", msg)
    while True:
        m = p.get_message(timeout=60)
        if m and m["type"] == "message" and json.loads(m["data"])["status"] != "STARTED":
            break
    times.append(time.time() - t0)
    res = json.loads(r.get("workerd:result:" + cid + "-cb"))
    assert res["status"] == "SUCCESS" and len(res["result"][0]) == n, res["status"]
    p.close()
    print("time run %d: %d-member chord of echo tasks, enqueue to callback result %.3f s"
          % (k + 1, n, times[-1]))
print("time median: %.3f s (%.0f members/s)" % (statistics.median(times),
                                                n / statistics.median(times)))

# Memory: members parked on a queue nobody consumes.
r.delete("workerd:queue:parked")
before = int(r.info("memory")["used_memory"])
cid = "bench-parked"
r.lpush("workerd:queue:default", chord(cid, queue="parked"))
while r.llen("workerd:queue:parked") < n:
    time.sleep(0.05)
time.sleep(0.2)
after = int(r.info("memory")["used_memory"])
one = len(json.dumps({"id": cid + ".0", "task": "echo", "args": [0], "queue": "parked",
                      "member_of": {"id": cid, "index": 0}}, separators=(",", ":")))
print("memory: %d pending members, used_memory +%d bytes: %.0f bytes per pending member "
      "(a member's message is about %d bytes)" % (n, after - before, (after - before) / n, one))
PY
