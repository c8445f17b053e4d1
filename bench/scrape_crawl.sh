#!/usr/bin/env bash
# http.scrape crawl throughput and memory, one command:
#   bench/scrape_crawl.sh [PAGES=1000] [CONCURRENCY=100] [RUNS=3]
# Builds workerd (Release; or runs $WORKERD_BIN), starts a private redis-server and the
# generated test site (tests/lib/scrape_site.py, PAGES pages, a Python ThreadingHTTPServer:
# the site itself is a large part of the cost on a small machine) on free loopback ports,
# and per run: FLUSHALL, a fresh site, `workerd -c CONCURRENCY`, then one root message,
# http.scrape of /site/0 with follow 64 and max_pages PAGES, timed from the push to the
# crawl finished (done == enqueued == PAGES, queue empty). Checks that the site served
# every page exactly once, reads workerd's peak RSS (VmHWM of /proc/PID/status) before
# stopping it, and prints each run and the medians as `name value unit` lines.
# Needs python3-redis.
set -euo pipefail
pages=${1:-1000}
conc=${2:-100}
runs=${3:-3}
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
. bench/lib/build.sh
bench_build_workerd
. bench/lib/servers.sh
trap bench_stop_servers EXIT
ulimit -n "$(ulimit -Hn)"
bench_start_redis
bench_machine_line
echo "# case: crawl of $pages generated pages at -c $conc, $runs runs"
export WORKERD_BIN REDIS_PORT BENCH_RUN
/usr/bin/python3 - "$pages" "$conc" "$runs" "$top/tests/lib/scrape_site.py" <<'PY'
import json, os, statistics, subprocess, sys, time, urllib.request
import redis

pages, conc, runs, site_py = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
r = redis.Redis(port=int(os.environ['REDIS_PORT']))
rates, peaks = [], []
for run in range(runs):
    r.flushall()
    site = subprocess.Popen(['/usr/bin/python3', site_py, str(pages)], stdout=subprocess.PIPE)
    port = int(site.stdout.readline())
    log = open(os.path.join(os.environ['BENCH_RUN'], 'worker-%d.log' % run), 'w')
    w = subprocess.Popen([os.environ['WORKERD_BIN'], '-b', 'redis://127.0.0.1:%s/0' %
                          os.environ['REDIS_PORT'], '-c', str(conc), '-l', 'warning'],
                         stdout=log, stderr=log)
    while r.hlen('workerd:workers') == 0:
        if w.poll() is not None:
            sys.exit('workerd exited early, see %s' % log.name)
        time.sleep(0.01)
    msg = {'id': 'crawl-%d' % run, 'task': 'http.scrape',
           'args': ['http://127.0.0.1:%d/site/0' % port],
           'kwargs': {'follow': 64, 'max_pages': pages, 'same_host': True}}
    key = 'workerd:crawl:crawl-%d' % run
    t0 = time.monotonic()
    r.lpush('workerd:queue:default', json.dumps(msg))
    while True:
        done, enq = r.hmget(key, 'done', 'enqueued')
        if done is not None and int(done) == pages and int(enq) == pages \
                and r.llen('workerd:queue:default') == 0:
            break
        if w.poll() is not None:
            sys.exit('workerd exited early, see %s' % log.name)
        time.sleep(0.005)
    elapsed = time.monotonic() - t0
    with open('/proc/%d/status' % w.pid) as f:
        hwm = next(int(l.split()[1]) for l in f if l.startswith('VmHWM:'))
    w.terminate()
    w.wait()
    hits = json.load(urllib.request.urlopen('http://127.0.0.1:%d/_hits' % port))
    site.kill()
    site.wait()
    fetched = {p: n for p, n in hits.items() if p.startswith('/site/')}
    if len(fetched) != pages or any(n != 1 for n in fetched.values()):
        sys.exit('run %d: %d pages fetched, %d more than once' %
                 (run + 1, len(fetched), sum(1 for n in fetched.values() if n != 1)))
    rates.append(pages / elapsed)
    peaks.append(hwm / 1024)
    print('scrape_crawl_run%d %.0f pages/s (%.2f s), peak RSS %.1f MiB' %
          (run + 1, pages / elapsed, elapsed, hwm / 1024))
print('scrape_crawl_c%d_median %.0f pages/s' % (conc, statistics.median(rates)))
print('scrape_crawl_c%d_peak_rss_median %.1f MiB' % (conc, statistics.median(peaks)))
PY
