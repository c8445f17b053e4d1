"""workerd's scheduling figures (run by bench/sched_bench.sh).

usage: workerd_sched.py burst COUNT WORKERS      100,000 messages due at one instant
       workerd_sched.py steady RATE SECONDS WORKERS   countdown tasks at RATE/s, spread

Environment: WORKERD_BIN (the binary), REDIS_PORT (a private redis-server, already up),
BENCH_OUT (logs and one JSON line per case).

burst: FLUSHALL, start WORKERS workers, push COUNT echo messages (pipelined LPUSH) all with
  the same eta T (Redis TIME + a lead long enough for the workers to see them all and put
  them in the scheduled set: they are taken, found early, and kept there). Then poll ZCARD
  of the scheduled set every millisecond: the figure is how long after T the set is empty
  (every message on its queue). Also the spread of the tasks' start times after T
  (started_at - T: includes running 100,000 tasks after the move).
steady: FLUSHALL, start WORKERS workers, push RATE echo messages a second for SECONDS seconds
  (10 every 10 ms), each with a countdown uniform in [0.5, 2] s, reading the server's TIME in
  the same pipeline. Lateness = started_at - (push time + countdown): what a producer sees,
  so it includes the first fetch (the countdown starts when a worker first takes the
  message). p50, p99, max.
Both check that every message got exactly one SUCCESS result.
Run with Debian's /usr/bin/python3 (python3-redis).
"""
import json
import os
import random
import signal
import subprocess
import sys
import time

import redis

PORT = int(os.environ['REDIS_PORT'])
BIN = os.environ['WORKERD_BIN']
OUT = os.environ.get('BENCH_OUT', '/tmp/workerd-bench')
QUEUE = 'workerd:queue:default'
SCHED = 'workerd:scheduled'


def now(r):
    sec, usec = r.time()
    return sec + usec / 1e6


def start_workers(n, tag):
    procs = []
    for i in range(n):
        log = open(os.path.join(OUT, 'sched_%s_w%d.log' % (tag, i)), 'w')
        p = subprocess.Popen([BIN, '-b', 'redis://127.0.0.1:%d/0' % PORT, '-c', '1000'],
                             stdout=log, stderr=subprocess.STDOUT)
        procs.append((p, log))
    r = redis.Redis(port=PORT)
    deadline = time.time() + 10
    while time.time() < deadline and r.hlen('workerd:workers') < n:
        time.sleep(0.01)
    return procs


def stop_workers(procs):
    for p, _ in procs:
        p.send_signal(signal.SIGTERM)
    for p, log in procs:
        p.wait(timeout=60)
        log.close()


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def results(r, ids):
    starts, bad = {}, 0
    for i in range(0, len(ids), 5000):
        chunk = ids[i:i + 5000]
        for id_, doc in zip(chunk, r.mget(['workerd:result:' + x for x in chunk])):
            d = json.loads(doc) if doc else None
            if not d or d.get('status') != 'SUCCESS':
                bad += 1
            else:
                starts[id_] = d['started_at']
    return starts, bad


def wait_results(r, ids, limit):
    deadline = time.time() + limit
    while time.time() < deadline:
        starts, bad = results(r, ids)
        if bad == 0:
            return starts, 0
        time.sleep(0.1)
    return results(r, ids)


def burst(count, workers):
    r = redis.Redis(port=PORT)
    r.flushall()
    procs = start_workers(workers, 'burst')
    lead = 5 + count / 20000.0
    t = round(now(r) + lead, 6)
    ids = ['b-%d' % i for i in range(count)]
    pipe = r.pipeline(transaction=False)
    for i, id_ in enumerate(ids):
        pipe.lpush(QUEUE, json.dumps({'id': id_, 'task': 'echo', 'eta': t}))
        if i % 1000 == 999:
            pipe.execute()
    pipe.execute()
    # All kept before T, or the figure would not be the move's.
    while now(r) < t - 0.2 and r.zcard(SCHED) < count:
        time.sleep(0.01)
    kept = r.zcard(SCHED)
    while now(r) < t:
        time.sleep(0.0005)
    empty_at = None
    while empty_at is None:
        pipe = r.pipeline(transaction=False)
        pipe.zcard(SCHED)
        pipe.time()
        left, (sec, usec) = pipe.execute()
        if left == 0:
            empty_at = sec + usec / 1e6
        else:
            time.sleep(0.001)
    starts, bad = wait_results(r, ids, 120)
    stop_workers(procs)
    late = [s - t for s in starts.values()]
    out = {
        'case': 'burst', 'count': count, 'workers': workers, 'kept_before_due': kept,
        'scheduled_empty_after_s': round(empty_at - t, 4),
        'start_p50_s': round(pct(late, 0.5), 4), 'start_p99_s': round(pct(late, 0.99), 4),
        'start_max_s': round(max(late), 4), 'start_min_s': round(min(late), 6),
        'results_bad': bad,
    }
    return out


def steady(rate, seconds, workers):
    r = redis.Redis(port=PORT)
    r.flushall()
    procs = start_workers(workers, 'steady')
    # Every 10 ms, or one message per tick when the rate is under 100/s.
    per_tick = max(1, rate // 100)
    tick = per_tick / rate
    due, ids = {}, []
    n = 0
    t_next = time.time()
    end = time.time() + seconds
    while time.time() < end:
        pipe = r.pipeline(transaction=False)
        pipe.time()
        batch = []
        for _ in range(per_tick):
            cd = random.uniform(0.5, 2.0)
            id_ = 's-%d' % n
            n += 1
            batch.append((id_, cd))
            pipe.lpush(QUEUE, json.dumps({'id': id_, 'task': 'echo', 'countdown': cd}))
        reply = pipe.execute()
        sec, usec = reply[0]
        pushed = sec + usec / 1e6
        for id_, cd in batch:
            due[id_] = pushed + cd
            ids.append(id_)
        t_next += tick
        delay = t_next - time.time()
        if delay > 0:
            time.sleep(delay)
    starts, bad = wait_results(r, ids, 60)
    stop_workers(procs)
    late = [(starts[i] - due[i]) * 1000 for i in starts]
    early = sum(1 for x in late if x < 0)
    return {
        'case': 'steady', 'rate': rate, 'seconds': seconds, 'workers': workers, 'count': len(ids),
        'late_p50_ms': round(pct(late, 0.5), 3), 'late_p99_ms': round(pct(late, 0.99), 3),
        'late_max_ms': round(max(late), 3), 'early': early, 'results_bad': bad,
    }


def main():
    os.makedirs(OUT, exist_ok=True)
    case = sys.argv[1]
    if case == 'burst':
        out = burst(int(sys.argv[2]), int(sys.argv[3]))
    elif case == 'steady':
        out = steady(int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]))
    else:
        sys.exit(__doc__)
    with open(os.path.join(OUT, 'workerd_sched.jsonl'), 'a') as f:
        f.write(json.dumps(out) + '\n')
    print(' '.join('%s=%s' % kv for kv in out.items()))


if __name__ == '__main__':
    main()
