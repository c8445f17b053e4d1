"""Side-by-side summary of workerd and peer (Celery) runs from their JSON-lines files.

usage: summary.py TITLE NAME=FILE.jsonl [NAME=FILE.jsonl ...]
NAME is the prefix of the `name value unit` lines, e.g. workerd_echo_c100 or
celery_noop_shared_c100; names starting with "workerd" are compared with every other one.
Both harnesses write the same keys per run: tasks_per_s, tasks_per_s_net, wall_s,
startup_empty_s, peak_rss_mb, worker_cpu_s, redis_cpu_s, n. Prints min/median/max per
metric, then medians as `name value unit` lines and the ratios workerd / peer.
"""
import json
import statistics
import sys

METRICS = (  # key, unit, format, label
    ('tasks_per_s', 'tasks/s', '%.0f', 'tasks/s gross'),
    ('tasks_per_s_net', 'tasks/s', '%.0f', 'tasks/s net of start-up'),
    ('wall_s', 's', '%.2f', 'wall s'),
    ('startup_empty_s', 's', '%.3f', 'start-up s (empty queue)'),
    ('peak_rss_mb', 'MB', '%.1f', 'peak RSS MB (VmHWM)'),
    ('worker_cpu_ms_per_task', 'ms/task', '%.4f', 'worker CPU ms/task'),
    ('redis_cpu_ms_per_task', 'ms/task', '%.4f', 'redis CPU ms/task'),
)


def load(path):
    rows = []
    with open(path) as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                # The peer writes CPU seconds only; derive the per-task figures the same way.
                r.setdefault('worker_cpu_ms_per_task', r['worker_cpu_s'] * 1000 / r['n'])
                r.setdefault('redis_cpu_ms_per_task', r['redis_cpu_s'] * 1000 / r['n'])
                rows.append(r)
    return rows


def values(rows, key):
    return sorted(r[key] for r in rows if r.get(key) is not None)


def checks(rows):
    """A short health line: results, requeued at stop, time-outs, log problems."""
    parts = []
    for r in rows:
        if 'results_ok' in r:
            s = '%s ok' % r['results_ok']
            if r.get('results_bad') or r.get('results_missing'):
                s += ' %s bad %s missing' % (r.get('results_bad', 0), r.get('results_missing', 0))
        else:
            s = '%s stored' % r.get('results_stored', '?')
        if r.get('requeued_after_stop'):
            s += ', %d requeued at stop' % r['requeued_after_stop']
            if 'requeued_already_done' in r:
                s += ' (%d already done)' % r['requeued_already_done']
        if r.get('timed_out'):
            s += ', TIMED OUT'
        if r.get('log_problems'):
            s += ', %d WARN/ERROR log lines' % r['log_problems']
        if r.get('dead_letters'):
            s += ', %d dead letters' % r['dead_letters']
        parts.append(s)
    return '; '.join(parts)


def main():
    title = sys.argv[1]
    sets = []
    for arg in sys.argv[2:]:
        name, path = arg.split('=', 1)
        try:
            sets.append((name, load(path)))
        except OSError as e:
            print('  (no data for %s: %s)' % (name, e))
    sets = [(n, rows) for n, rows in sets if rows]
    if not sets:
        return
    width = max(len(n) for n, _ in sets) + 2
    print('\n== %s  (min / median / max; runs: %s)' % (
        title, ', '.join('%s %d' % (n, len(rows)) for n, rows in sets)))
    print('%-26s' % '' + ''.join('%*s' % (width + 12, n) for n, _ in sets))
    for key, _, fmt, label in METRICS:
        cells = []
        for _, rows in sets:
            xs = values(rows, key)
            cells.append('/'.join(fmt % x for x in (xs[0], statistics.median(xs), xs[-1]))
                         if xs else '-')
        print('%-26s' % label + ''.join('%*s' % (width + 12, c) for c in cells))
    for n, rows in sets:
        print('  %s: %s' % (n, checks(rows)))

    print()
    med = {}
    for n, rows in sets:
        for key, unit, fmt, _ in METRICS:
            xs = values(rows, key)
            if xs:
                med[(n, key)] = statistics.median(xs)
                print('%s_%s %s %s' % (n, key.replace('startup_empty_s', 'startup_s'),
                                       fmt % med[(n, key)], unit))
    for w, _ in sets:
        if not w.startswith('workerd'):
            continue
        for p, _ in sets:
            if p.startswith('workerd'):
                continue
            for key, what in (('tasks_per_s', 'gross'), ('tasks_per_s_net', 'net')):
                if med.get((w, key)) and med.get((p, key)):
                    print('ratio_%s_vs_%s_%s %.1f x (tasks/s, median / median)' % (
                        w, p, what, med[(w, key)] / med[(p, key)]))
            key = 'worker_cpu_ms_per_task'
            if med.get((w, key)) and med.get((p, key)):
                print('ratio_%s_vs_%s_cpu %.1f x (peer worker CPU per task / workerd\'s)' % (
                    w, p, med[(p, key)] / med[(w, key)]))


if __name__ == '__main__':
    main()
