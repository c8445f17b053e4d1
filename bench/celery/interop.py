"""bench/celery_interop.sh's driver (Debian's /usr/bin/python3 with python3-celery).

usage: interop.py WORKERD_BIN COUNT CONC RUNS URL OUTDIR

Per run, for each consumer (workerd --protocol celery, then celery worker -P gevent):
FLUSHALL; Celery's producer (send_task, one producer connection) sends COUNT
workerd.http.get tasks for URL with no worker running; the worker starts; Redis is polled
every 10 ms until COUNT celery-task-meta-* results are stored, each checked to be a
SUCCESS with status 200. tasks/s = COUNT / (done - ready), ready being when the worker said
so (workerd's "ready: consuming" log line, Celery's worker_ready signal); wall = from exec.
Prints one line per run and the medians."""
import calendar
import json
import os
import signal
import statistics
import subprocess
import sys
import time

import redis

HERE = os.path.dirname(os.path.abspath(__file__))
PY = '/usr/bin/python3'


def produce(app, n, url):
    t0 = time.time()
    with app.producer_or_acquire() as producer:
        for _ in range(n):
            app.send_task('workerd.http.get', args=[url], kwargs={'timeout': 30},
                          producer=producer)
    return time.time() - t0


def wait_done(r, p, n, limit=600):
    t0 = time.time()
    while True:
        done = len(r.keys('celery-task-meta-*')) >= n
        now = time.time()
        if done:
            return now
        if p.poll() is not None:
            raise SystemExit('the worker exited early')
        if now - t0 > limit:
            raise SystemExit('timed out')
        time.sleep(0.01)


def check(r, n):
    keys = r.keys('celery-task-meta-*')
    ok = 0
    for i in range(0, len(keys), 1000):
        for v in r.mget(keys[i:i + 1000]):
            m = json.loads(v)
            ok += m['status'] == 'SUCCESS' and m['result']['status'] == 200
    if ok != n:
        raise SystemExit('%d of %d results are SUCCESS 200' % (ok, n))


def stop(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def run_workerd(binary, port, conc, log):
    t0 = time.time()
    p = subprocess.Popen([binary, '-b', 'redis://127.0.0.1:%d/0' % port, '--protocol', 'celery',
                          '-Q', 'celery', '-c', str(conc), '--http-allow', '127.0.0.1',
                          '-l', 'info'],
                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return p, t0


def workerd_ready(logpath):
    with open(logpath) as f:
        for line in f:
            if 'ready: consuming' in line:
                ts = line.split()[0]  # 2026-12-04T23:13:25.624Z
                return calendar.timegm(time.strptime(ts[:19], '%Y-%m-%dT%H:%M:%S')) \
                    + float('0' + ts[19:-1])
    return None


def run_celery(port, conc, ready_file, log):
    if os.path.exists(ready_file):
        os.unlink(ready_file)
    env = dict(os.environ, REDIS_PORT=str(port), BENCH_READY_FILE=ready_file,
               PATH='/usr/bin:/bin', PYTHONDONTWRITEBYTECODE='1')
    t0 = time.time()
    p = subprocess.Popen([PY, '-m', 'celery', '-A', 'interop_app', 'worker', '-P', 'gevent',
                          '-c', str(conc), '--without-gossip', '--without-mingle',
                          '--without-heartbeat', '-l', 'warning'],
                         cwd=HERE, env=env, stdout=log, stderr=subprocess.STDOUT,
                         start_new_session=True)
    return p, t0


def main():
    binary, n, conc, runs, url, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), \
        int(sys.argv[4]), sys.argv[5], sys.argv[6]
    port = int(os.environ['REDIS_PORT'])
    sys.path.insert(0, HERE)
    from interop_app import app  # noqa: E402 (REDIS_PORT set first)
    r = redis.Redis(port=port)
    rates = {'workerd': [], 'celery': []}
    for run in range(runs):
        for who in ('workerd', 'celery'):
            r.flushall()
            enq = produce(app, n, url)
            assert r.llen('celery') == n, r.llen('celery')
            logpath = os.path.join(out, '%s_%d.log' % (who, run))
            ready_file = os.path.join(out, 'celery_ready')
            with open(logpath, 'wb') as log:
                if who == 'workerd':
                    p, t0 = run_workerd(binary, port, conc, log)
                else:
                    p, t0 = run_celery(port, conc, ready_file, log)
                done = wait_done(r, p, n)
                stop(p)
            if who == 'workerd':
                ready = workerd_ready(logpath)
            else:
                with open(ready_file) as f:
                    ready = float(f.read())
            check(r, n)
            rate = n / (done - ready)
            rates[who].append(rate)
            print('run %d %-7s enqueue %.2f s, ready after %.2f s, %d tasks in %.2f s: '
                  '%.0f tasks/s (%.0f from exec)' % (run + 1, who, enq, ready - t0, n,
                                                     done - ready, rate, n / (done - t0)),
                  flush=True)
    w, c = statistics.median(rates['workerd']), statistics.median(rates['celery'])
    print('median of %d: workerd %.0f tasks/s, celery -P gevent %.0f tasks/s (%.1fx)'
          % (runs, w, c, w / c))
    print('celery_interop_workerd_tasks_per_s %.0f' % w)
    print('celery_interop_celery_gevent_tasks_per_s %.0f' % c)


main()
