"""workerd throughput, measured the way the peer harness measures Celery (celery_bench.py).

usage: workerd_macro.py CASE COUNT CONC RUNS     (run by bench/workerd_bench.sh)
  CASE: echo | echo_ir | http_slow | http_fast
Environment: WORKERD_BIN (the binary), REDIS_PORT, NGINX_PORT (private servers, already up),
BENCH_OUT (output directory), BENCH_LIMIT_S (give up on a run after this many s, default 600).

Per run, as in the peer harness:
  1. start-up: FLUSHALL, start the worker on an empty queue, time exec -> the "ready: consuming"
     log line (INFO); idle RSS one second later; warm stop (SIGTERM).
  2. FLUSHALL, enqueue COUNT messages with the worker stopped (batched LPUSH, ids job-1..job-N).
  3. start the worker (t0 = just before exec), poll Redis every 10 ms until the queue is empty and
     no worker holds a message in flight (no workerd:inflight:<wid> hash and no landing list of
     a registered worker). An ack stores the result in the same script that removes the
     in-flight entry, so for result cases this means every result is stored, and for
     ignore_result every task has finished. Then read peak RSS (VmHWM), CPU (utime+stime) of
     the worker and of redis-server, and warm-stop the worker.
  4. check: every result key exists with status SUCCESS and the expected result; nothing was
     put back on the queue at stop; no dead letters; no WARN/ERROR lines in the worker's log.
The worker runs with -l info in both phases: workerd logs nothing per task at INFO (only start,
ready and stop lines), and the ready line gives the start-up inside the measured run too, as
Celery's worker_ready signal does for the peer. One JSON line per run goes to
BENCH_OUT/workerd_<CASE>_c<CONC>_n<COUNT>.jsonl; the summary is printed by summary.py.
Run with Debian's /usr/bin/python3 (python3-redis).
"""
import json
import os
import signal
import subprocess
import sys
import threading
import time

import redis

PORT = int(os.environ['REDIS_PORT'])
NGINX = 'http://127.0.0.1:%s' % os.environ.get('NGINX_PORT', '0')
BIN = os.environ['WORKERD_BIN']
PREFIX = 'workerd'
QUEUE = PREFIX + ':queue:default'
TICKS = os.sysconf('SC_CLK_TCK')
CASES = {  # case: (task, args, ignore_result)
    'echo': ('echo', [], False),
    'echo_ir': ('echo', [], True),
    'http_slow': ('http.get', [NGINX + '/slow'], False),
    'http_fast': ('http.get', [NGINX + '/fast'], False),
}

# One round trip per poll: the queue's length plus how many registered workers still hold
# messages (in-flight hash or a landing list). Cheap: no KEYS/SCAN over the result keys.
POLL_LUA = """
local busy = 0
for _, wid in ipairs(redis.call('HKEYS', KEYS[2])) do
  busy = busy + redis.call('EXISTS', ARGV[1] .. ':inflight:' .. wid,
                           ARGV[1] .. ':landing:' .. wid .. ':default')
end
return {redis.call('LLEN', KEYS[1]), busy}
"""


def status_kb(pid, field):
    try:
        with open('/proc/%d/status' % pid) as f:
            for line in f:
                if line.startswith(field + ':'):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_s(pid):
    """utime + stime of the whole process (all its threads)."""
    try:
        with open('/proc/%d/stat' % pid) as f:
            fields = f.read().rsplit(')', 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS
    except OSError:
        return 0.0


class Worker:
    """A workerd process whose stderr is read by a thread that timestamps the ready line."""

    def __init__(self, conc, log_path):
        self.log = open(log_path, 'w')
        self.ready_at = None
        self.problems = []  # WARN / ERROR lines
        self.t0 = time.time()
        self.p = subprocess.Popen(
            [BIN, '-P', 'green', '-c', str(conc), '-b', 'redis://127.0.0.1:%d/0' % PORT,
             '-l', 'info'],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.PIPE,
            start_new_session=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for raw in self.p.stderr:
            line = raw.decode('utf-8', 'replace')
            if self.ready_at is None and 'ready: consuming' in line:
                self.ready_at = time.time()
            if ' WARN ' in line or ' ERROR ' in line:
                self.problems.append(line.strip())
            self.log.write(line)
        self.log.flush()

    def stop(self):
        """Warm shutdown; SIGKILL after 20 s (the peer harness's rule). Returns the exit code."""
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(20)
            except subprocess.TimeoutExpired:
                self.problems.append('did not stop within 20 s of SIGTERM: killed')
                os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait()
        self.reader.join(5)
        self.log.close()
        return self.p.returncode


def enqueue(r, case, n):
    task, args, ignore = CASES[case]
    t0 = time.time()
    batch = []
    for i in range(1, n + 1):
        msg = {'id': 'job-%d' % i, 'task': task, 'args': args}
        if ignore:
            msg['ignore_result'] = True
        batch.append(json.dumps(msg, separators=(',', ':')))
        if len(batch) == 1000 or i == n:
            r.lpush(QUEUE, *batch)  # LPUSH a b: b ends at the head, job-1 is taken first
            batch = []
    return time.time() - t0


def check_results(r, case, n):
    """Counts stored results: (ok, bad, missing), printing the first few bad ones."""
    _, _, ignore = CASES[case]
    keys = ['%s:result:job-%d' % (PREFIX, i) for i in range(1, n + 1)]
    ok = bad = missing = 0
    for i in range(0, n, 1000):
        for v in r.mget(keys[i:i + 1000]):
            if v is None:
                missing += 1
                continue
            m = json.loads(v)
            res = m.get('result')
            if case.startswith('echo'):
                expected = res == []
            else:
                expected = isinstance(res, dict) and res.get('status') == 200
            good = m.get('status') == 'SUCCESS' and expected
            if good:
                ok += 1
            else:
                bad += 1
                if bad <= 3:
                    print('  bad result:', v[:300], file=sys.stderr)
    if ignore:
        return ok + bad, 0, 0  # stored results when none should be: reported as "stored"
    return ok, bad, missing


def one_run(case, n, conc, run, logdir, limit_s):
    r = redis.Redis(port=PORT, db=0)
    poll = r.register_script(POLL_LUA)
    res = {'case': case, 'n': n, 'conc': conc, 'run': run}

    # 1. start-up with an empty queue
    r.flushall()
    w = Worker(conc, os.path.join(logdir, 'startup_%d.log' % run))
    while w.ready_at is None:
        if w.p.poll() is not None or time.time() - w.t0 > 60:
            raise SystemExit('workerd did not become ready, see %s' % w.log.name)
        time.sleep(0.002)
    res['startup_empty_s'] = w.ready_at - w.t0
    time.sleep(1.0)
    res['idle_rss_mb'] = status_kb(w.p.pid, 'VmRSS') / 1024
    w.stop()

    # 2. enqueue with the worker stopped
    r.flushall()
    res['enqueue_s'] = enqueue(r, case, n)
    qlen = r.llen(QUEUE)
    assert qlen == n, 'queue holds %d, expected %d' % (qlen, n)
    res['msg_bytes'] = len(r.lindex(QUEUE, 0))

    # 3. run the worker over the full queue
    rpid = int(r.info('server')['process_id'])
    rcpu0 = cpu_s(rpid)
    r.config_resetstat()
    conns0 = r.info('stats')['total_connections_received']
    w = Worker(conc, os.path.join(logdir, 'run_%d.log' % run))
    t0 = w.t0
    polls = 0
    while True:
        qlen, busy = poll(keys=[QUEUE, PREFIX + ':workers'], args=[PREFIX])
        polls += 1
        now = time.time()
        # The worker registers before it fetches, so while the queue is non-empty nothing
        # is missed; once it is empty, nothing in flight means nothing left to finish.
        if qlen == 0 and busy == 0:
            break
        if w.p.poll() is not None:
            raise SystemExit('workerd exited early, see %s' % w.log.name)
        if now - t0 > limit_s:
            res['timed_out'] = True
            break
        time.sleep(0.01)
    t_done = now
    res['peak_rss_mb'] = status_kb(w.p.pid, 'VmHWM') / 1024
    res['worker_cpu_s'] = cpu_s(w.p.pid)
    res['redis_cpu_s'] = cpu_s(rpid) - rcpu0
    res['redis_conns'] = r.info('stats')['total_connections_received'] - conns0
    res['redis_cmds_per_task'] = {
        k[len('cmdstat_'):]: round(v['calls'] / n, 3) for k, v in r.info('commandstats').items()
        if k[len('cmdstat_'):] not in ('evalsha', 'info', 'config|resetstat', 'config')}
    res['polls'] = polls
    ready = w.ready_at
    res['exit_code'] = w.stop()
    res['requeued_after_stop'] = r.llen(QUEUE)
    res['dead_letters'] = r.llen(PREFIX + ':dead')
    res['log_problems'] = len(w.problems)
    for line in w.problems[:3]:
        print('  worker log:', line, file=sys.stderr)
    res['wall_s'] = t_done - t0
    res['ready_in_run_s'] = (ready - t0) if ready else None
    res['net_s'] = (t_done - ready) if ready else None
    res['tasks_per_s'] = n / res['wall_s']
    res['tasks_per_s_net'] = n / res['net_s'] if ready else None
    res['worker_cpu_ms_per_task'] = res['worker_cpu_s'] * 1000 / n
    res['redis_cpu_ms_per_task'] = res['redis_cpu_s'] * 1000 / n

    # 4. verify stored results
    ok, bad, missing = check_results(r, case, n)
    if CASES[case][2]:
        res['results_stored'] = ok
    else:
        res['results_ok'], res['results_bad'], res['results_missing'] = ok, bad, missing
    r.flushall()
    return res


def main():
    case, n, conc, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    if case not in CASES:
        raise SystemExit('unknown case %s (echo | echo_ir | http_slow | http_fast)' % case)
    limit_s = float(os.environ.get('BENCH_LIMIT_S', '600'))
    label = '%s_c%d_n%d' % (case, conc, n)
    out_dir = os.environ['BENCH_OUT']
    logdir = os.path.join(out_dir, 'logs', 'workerd_' + label)
    os.makedirs(logdir, exist_ok=True)
    print('workerd %s: %s' % (label, BIN))
    with open(os.path.join(out_dir, 'workerd_%s.jsonl' % label), 'w') as out:
        for run in range(1, runs + 1):
            res = one_run(case, n, conc, run, logdir, limit_s)
            out.write(json.dumps(res) + '\n')
            out.flush()
            print('run %d: %s' % (run, ', '.join(
                '%s=%s' % (k, round(v, 3) if isinstance(v, float) else v)
                for k, v in res.items() if k not in ('case', 'n', 'conc', 'run'))))
            sys.stdout.flush()
            time.sleep(2)


if __name__ == '__main__':
    main()
