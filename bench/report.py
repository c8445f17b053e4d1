"""The report of bench/all.sh: docs/benchmarks.md (tables), a PNG chart, `name value unit`.

usage: report.py OUT_DIR REPORT.md CHART.png
Reads OUT_DIR/workerd_*.jsonl (workerd_macro.py), OUT_DIR/peer/{celery,sidekiq}_*.jsonl
(the peer harness), OUT_DIR/latency.txt (bench_latency), OUT_DIR/limits/ (redis-benchmark
CSV, wrk output) and OUT_DIR/meta.txt. Every figure is the median of the runs; the tables
also give min-max. Targets are those of the performance issue; "met?" compares medians.
The chart is drawn by gnuplot (tasks/s on a log scale, and peak RSS).
"""
import glob
import json
import os
import re
import statistics
import subprocess
import sys

out, md_path, png_path = sys.argv[1], sys.argv[2], sys.argv[3]
lines = []  # `name value unit`


def emit(name, value, unit):
    if value is not None:
        f = '%.0f' if abs(value) >= 1000 else '%.1f' if abs(value) >= 10 else '%.4g'
        lines.append('%s %s %s' % (name, f % value, unit))


def rows(path):
    try:
        with open(path) as f:
            return [json.loads(ln) for ln in f if ln.strip()]
    except OSError:
        return []


def med(rs, key):
    xs = [r[key] for r in rs if r.get(key) is not None]
    return statistics.median(xs) if xs else None


def spread(rs, key, fmt='%.0f'):
    xs = sorted(r[key] for r in rs if r.get(key) is not None)
    if not xs:
        return '-'
    return '%s (%s-%s)' % (fmt % statistics.median(xs), fmt % xs[0], fmt % xs[-1])


def one(pattern):
    paths = sorted(glob.glob(os.path.join(out, pattern)))
    return rows(paths[0]) if paths else []


meta = {}
try:
    for ln in open(os.path.join(out, 'meta.txt')):
        k, _, v = ln.rstrip('\n').partition('=')
        meta[k] = v
except OSError:
    pass

wd = {
    'echo': one('workerd_echo_c1000_n*.jsonl'),
    'echo_ir': one('workerd_echo_ir_c1000_n*.jsonl'),
    'slow1k': one('workerd_http_slow_c1000_n*.jsonl'),
    'slow10k': one('workerd_http_slow_c10000_n*.jsonl'),
    'fast': one('workerd_http_fast_c100_n*.jsonl'),
}
peer = {
    'echo': one('peer/celery_noop_gevent_c100_n*_sharedbackend.jsonl'),
    'echo_default': one('peer/celery_noop_gevent_c100_n*[0-9].jsonl'),
    'echo_ir': one('peer/celery_noop_ir_gevent_c100_n*_sharedbackend.jsonl'),
    'slow1k': one('peer/celery_fetch_slow_gevent_c1000_n*_sharedbackend*.jsonl'),
    'fast': one('peer/celery_fetch_fast_gevent_c100_n*_sharedbackend*.jsonl'),
    'sidekiq': one('peer/sidekiq_noop_c10_n*.jsonl'),
}

# Limits.
redis_rates = {}
try:
    import csv
    acc = {}
    for r in csv.reader(open(os.path.join(out, 'limits', 'redis.csv'))):
        acc.setdefault((r[2], r[1]), []).append(float(r[3]))
    redis_rates = {k: statistics.median(v) for k, v in acc.items()}
except OSError:
    pass


def wrk(name):
    rates, p99 = [], []
    for f in sorted(glob.glob(os.path.join(out, 'limits', 'wrk_%s_*.txt' % name))):
        t = open(f).read()
        m = re.search(r'Requests/sec:\s+([\d.]+)', t)
        if m:
            rates.append(float(m.group(1)))
        e = re.search(r'Socket errors:.*', t)
        if e:
            p99.append(e.group(0))
    return (statistics.median(rates) if rates else None, rates, p99)


wrk_fast, wrk_slow1k, wrk_slow10k = wrk('fast_c100'), wrk('slow_c1000'), wrk('slow_c10000')
latency = {}
try:
    for ln in open(os.path.join(out, 'latency.txt')):
        p = ln.split()
        if len(p) == 3:
            latency[p[0]] = float(p[1])
except OSError:
    pass

# One task in Redis = RPOP + HSET (fetch) + SET EX + PUBLISH + HDEL (ack): the rate at which
# Redis alone could do all five for every task, at pipeline depth 16, if nothing else ran.
task_cmds = ('RPOP', 'HSET', 'SET_EX', 'PUBLISH', 'HDEL')
redis_task_limit = None
if all((c, 'P16') in redis_rates for c in task_cmds):
    redis_task_limit = 1 / sum(1 / redis_rates[(c, 'P16')] for c in task_cmds)


def ratio(a, b):
    return a / b if a is not None and b else None


def fmt(x, f='%.0f'):
    return '-' if x is None else f % x


def met(ok):
    return '-' if ok is None else ('yes' if ok else '**no**')


e_rate, e_rss = med(wd['echo'], 'tasks_per_s'), med(wd['echo'], 'peak_rss_mb')
c_rate, c_rss = med(peer['echo'], 'tasks_per_s'), med(peer['echo'], 'peak_rss_mb')
s_rate = med(peer['sidekiq'], 'tasks_per_s')
s1k, s10k = med(wd['slow1k'], 'tasks_per_s'), med(wd['slow10k'], 'tasks_per_s')
s10k_rss = med(wd['slow10k'], 'peak_rss_mb')
f_rate = med(wd['fast'], 'tasks_per_s')
p99 = latency.get('latency_p99')

target_rows = [
    ('1. echo 100k, results, -c 1000: tasks/s', fmt(e_rate), '-', '-', '>= 50,000',
     met(e_rate >= 50000 if e_rate else None)),
    ('1. ... vs Celery -P gevent, shared backend (20k at -c 100)', fmt(e_rate), fmt(c_rate),
     fmt(ratio(e_rate, c_rate), '%.0fx'), '>= 100x',
     met(ratio(e_rate, c_rate) >= 100 if ratio(e_rate, c_rate) else None)),
    ('1. ... vs Sidekiq 6 (20k at -c 10)', fmt(e_rate), fmt(s_rate),
     fmt(ratio(e_rate, s_rate), '%.1fx'), '>= 10x',
     met(ratio(e_rate, s_rate) >= 10 if ratio(e_rate, s_rate) else None)),
    ('1. peak RSS MB', fmt(e_rss, '%.1f'), fmt(c_rss, '%.1f'), fmt(ratio(e_rss, c_rss), '%.2fx'),
     "<= Celery's", met(e_rss <= c_rss if e_rss and c_rss else None)),
    ('2. echo 100k, ignore_result, -c 1000: tasks/s', fmt(med(wd['echo_ir'], 'tasks_per_s')),
     fmt(med(peer['echo_ir'], 'tasks_per_s')),
     fmt(ratio(med(wd['echo_ir'], 'tasks_per_s'), med(peer['echo_ir'], 'tasks_per_s')), '%.0fx'),
     '(none)', '-'),
    ('3. http.get /slow 10k, -c 1000: tasks/s (limit 1000/0.1 s)', fmt(s1k),
     fmt(med(peer['slow1k'], 'tasks_per_s')), fmt(ratio(s1k, 10000), '%.2fx of 10k/s'),
     '>= 0.9x', met(s1k >= 9000 if s1k else None)),
    ('3. http.get /slow 50k, -c 10000: tasks/s vs wrk 10000 conns', fmt(s10k), '-',
     fmt(ratio(s10k, wrk_slow10k[0]), '%.2fx of wrk'), '>= 0.5x',
     met(ratio(s10k, wrk_slow10k[0]) >= 0.5 if ratio(s10k, wrk_slow10k[0]) else None)),
    ('3. ... peak RSS MB at -c 10000', fmt(s10k_rss, '%.1f'), '-', '-', '<= 150',
     met(s10k_rss <= 150 if s10k_rss else None)),
    ('4. http.get /fast 50k, -c 100: tasks/s vs wrk 100 conns', fmt(f_rate),
     fmt(med(peer['fast'], 'tasks_per_s')), fmt(ratio(f_rate, wrk_fast[0]), '%.2fx of wrk'),
     '>= 0.5x', met(ratio(f_rate, wrk_fast[0]) >= 0.5 if ratio(f_rate, wrk_fast[0]) else None)),
    ('5. latency enqueue -> start at 1,000/s: p99 ms', fmt(p99, '%.2f'), '-', '-', '<= 5 ms',
     met(p99 <= 5 if p99 is not None else None)),
]

detail = []
for label, key, rs in (
        ('workerd echo 100k -c 1000', 'workerd_echo_c1000', wd['echo']),
        ('workerd echo ignore_result 100k -c 1000', 'workerd_echo_ir_c1000', wd['echo_ir']),
        ('workerd http /slow 10k -c 1000', 'workerd_http_slow_c1000', wd['slow1k']),
        ('workerd http /slow 50k -c 10000', 'workerd_http_slow_c10000', wd['slow10k']),
        ('workerd http /fast 50k -c 100', 'workerd_http_fast_c100', wd['fast']),
        ('Celery noop -c 100, shared backend', 'celery_noop_shared_c100', peer['echo']),
        ('Celery noop -c 100, as shipped', 'celery_noop_default_c100', peer['echo_default']),
        ('Celery noop_ir -c 100, shared backend', 'celery_noop_ir_shared_c100', peer['echo_ir']),
        ('Celery fetch /slow -c 1000, shared + urllib', 'celery_fetch_slow_c1000', peer['slow1k']),
        ('Celery fetch /fast -c 100, shared + urllib', 'celery_fetch_fast_c100', peer['fast']),
        ('Sidekiq noop -c 10 (quiet)', 'sidekiq_noop_c10', peer['sidekiq'])):
    if not rs:
        continue
    for r in rs:
        r.setdefault('worker_cpu_ms_per_task', r['worker_cpu_s'] * 1000 / r['n'])
        r.setdefault('redis_cpu_ms_per_task', r['redis_cpu_s'] * 1000 / r['n'])
    detail.append((label, rs[0]['n'], len(rs), spread(rs, 'tasks_per_s'),
                   spread(rs, 'startup_empty_s', '%.3f'), spread(rs, 'peak_rss_mb', '%.1f'),
                   spread(rs, 'worker_cpu_ms_per_task', '%.4f'),
                   spread(rs, 'redis_cpu_ms_per_task', '%.4f')))
    emit(key + '_tasks_per_s', med(rs, 'tasks_per_s'), 'tasks/s')
    emit(key + '_peak_rss_mb', med(rs, 'peak_rss_mb'), 'MB')
    emit(key + '_worker_cpu_ms_per_task', med(rs, 'worker_cpu_ms_per_task'), 'ms/task')
    emit(key + '_startup_s', med(rs, 'startup_empty_s'), 's')
for k in ('latency_p50', 'latency_p90', 'latency_p99', 'latency_max'):
    emit(k, latency.get(k), 'ms')
for (c, p), v in sorted(redis_rates.items()):
    emit('limit_redis_%s_%s' % (c.lower(), p.lower()), v, 'ops/s')
emit('limit_redis_one_task_p16', redis_task_limit, 'tasks/s')
emit('limit_wrk_fast_c100', wrk_fast[0], 'req/s')
emit('limit_wrk_slow_c1000', wrk_slow1k[0], 'req/s')
emit('limit_wrk_slow_c10000', wrk_slow10k[0], 'req/s')
for name, a, b in (('ratio_echo_vs_celery', e_rate, c_rate), ('ratio_echo_vs_sidekiq', e_rate, s_rate),
                   ('ratio_slow_c10000_vs_wrk', s10k, wrk_slow10k[0]),
                   ('ratio_fast_vs_wrk', f_rate, wrk_fast[0])):
    emit(name, ratio(a, b), 'x')

# The chart: tasks/s (log scale) per case, workerd beside the peer, and peak RSS.
chart = [('echo', e_rate, c_rate, e_rss, c_rss),
         ('echo-ir', med(wd['echo_ir'], 'tasks_per_s'), med(peer['echo_ir'], 'tasks_per_s'),
          med(wd['echo_ir'], 'peak_rss_mb'), med(peer['echo_ir'], 'peak_rss_mb')),
         ('slow-c1k', s1k, med(peer['slow1k'], 'tasks_per_s'), med(wd['slow1k'], 'peak_rss_mb'),
          med(peer['slow1k'], 'peak_rss_mb')),
         ('slow-c10k', s10k, None, s10k_rss, None),
         ('fast-c100', f_rate, med(peer['fast'], 'tasks_per_s'), med(wd['fast'], 'peak_rss_mb'),
          med(peer['fast'], 'peak_rss_mb'))]
dat = os.path.join(out, 'chart.dat')
with open(dat, 'w') as f:
    for name, a, b, ra, rb in chart:
        f.write('%s %s %s %s %s\n' % (name, *('%.3f' % x if x else 'NaN' for x in (a, b, ra, rb))))
gp = '''set terminal pngcairo size 1000,420 font ",10"
set output "%s"
set multiplot layout 1,2 title "workerd vs Celery -P gevent (shared backend), same run, %s"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set key top right
set grid ytics
set logscale y
set ylabel "tasks/s (log)"
set title "throughput"
plot "%s" using 2:xtic(1) title "workerd", "" using 3 title "Celery gevent"
unset logscale y
set ylabel "MB"
set title "peak RSS (VmHWM)"
set yrange [0:*]
plot "%s" using 4:xtic(1) title "workerd", "" using 5 title "Celery gevent"
unset multiplot
''' % (png_path, meta.get('date', ''), dat, dat)
try:
    subprocess.run(['gnuplot'], input=gp.replace('pngcairo', 'png'), text=True, check=True)
except (OSError, subprocess.CalledProcessError) as e:
    print('chart not drawn: %s' % e, file=sys.stderr)


def table(head, body):
    s = '| ' + ' | '.join(head) + ' |\n|' + '---|' * len(head) + '\n'
    return s + ''.join('| ' + ' | '.join(str(c) for c in r) + ' |\n' for r in body)


md = ['# Benchmarks', '',
      'Produced by `bench/all.sh` (with `PEER_BENCH_DIR` pointing at the peer harness for '
      'Celery and Sidekiq) on %s. Every figure is the median of the runs (min-max in the detail '
      'table); peers ran on the same machine, against the same private redis-server and nginx, '
      'in the same run.' % meta.get('date', '?'), '',
      '## Machine and versions', '',
      '| | |', '|---|---|']
for k in ('date', 'cpus', 'cpu', 'mem', 'kernel', 'workerd', 'redis', 'nginx', 'wrk', 'libs',
          'celery', 'gevent', 'sidekiq', 'load_before', 'load_after', 'runs'):
    if k in meta:
        md.append('| %s | %s |' % (k, meta[k]))
md += ['', 'The machine is shared (2 vCPUs; the load average before and after the run is above); '
       'the worker, redis-server, nginx and the harness all run on it.', '',
       '## Targets', '',
       table(('case', 'workerd', 'peer', 'ratio', 'target', 'met?'), target_rows),
       '![tasks/s and peak RSS](%s)' % os.path.basename(png_path), '',
       '## Detail (median, min-max)', '',
       table(('run', 'tasks', 'runs', 'tasks/s', 'start-up s', 'peak RSS MB',
              'worker CPU ms/task', 'redis CPU ms/task'), detail),
       '## Latency (case 5)', '',
       'bench/latency/bench_latency: echo tasks LPUSHed at a steady %s tasks/s for %s s, each '
       'carrying its enqueue time; latency = the result\'s started_at minus it.' % (
           fmt(latency.get('latency_rate')), meta.get('latency_seconds', '30')), '',
       table(('p50 ms', 'p90 ms', 'p99 ms', 'max ms', 'tasks', 'missing'),
             [(fmt(latency.get('latency_p50'), '%.3f'), fmt(latency.get('latency_p90'), '%.3f'),
               fmt(latency.get('latency_p99'), '%.3f'), fmt(latency.get('latency_max'), '%.3f'),
               fmt(latency.get('latency_tasks')), fmt(latency.get('latency_missing')))]),
       '## Limits (case 6)', '',
       'redis-benchmark, 50 clients, 200k requests, 200-byte values, random keys (ops/s):', '',
       table(('command', 'P=1', 'P=16'),
             [(c, fmt(redis_rates.get((c, 'P1'))), fmt(redis_rates.get((c, 'P16'))))
              for c in ('LPUSH', 'RPOP', 'HSET', 'SET_EX', 'PUBLISH', 'HDEL')]),
       'One task costs Redis an RPOP and an HSET (fetch.lua) and a SET EX, a PUBLISH and an '
       'HDEL (ack.lua): at the P=16 rates above, Redis alone could do that for **%s tasks/s** '
       '(1 / sum of 1/rate; Lua and the keyspace growth of 100k new keys cost more, and the '
       'worker shares the 2 CPUs).' % fmt(redis_task_limit), '',
       'wrk -t2 against the private nginx (1 worker):', '',
       table(('target', 'req/s (median)', 'runs', 'socket errors'),
             [('/fast, 100 connections', fmt(wrk_fast[0]), ', '.join('%.0f' % x for x in wrk_fast[1]),
               '; '.join(wrk_fast[2]) or '0'),
              ('/slow (100 ms), 1000 connections', fmt(wrk_slow1k[0]),
               ', '.join('%.0f' % x for x in wrk_slow1k[1]), '; '.join(wrk_slow1k[2]) or '0'),
              ('/slow (100 ms), 10000 connections', fmt(wrk_slow10k[0]),
               ', '.join('%.0f' % x for x in wrk_slow10k[1]), '; '.join(wrk_slow10k[2]) or '0')]),
       '## `name value unit`', '', '```'] + lines + ['```', '']
notes = os.path.join(os.path.dirname(md_path), 'benchmarks-notes.md')
if os.path.exists(notes):
    md += [open(notes).read()]
with open(md_path, 'w') as f:
    f.write('\n'.join(md))
print('\n'.join(lines))
print('wrote %s and %s' % (md_path, png_path))
