"""The Celery side of bench/celery_interop.sh: a Celery app whose one task has the name the
producer sends, workerd.http.get, so that Celery -P gevent can run the very messages workerd
runs. Debian's Celery 5.2 (python3-celery), its defaults (json, results SET + PUBLISH).

The backend is kept in one object (celery/celery#7960: under gevent Celery otherwise builds
a result backend and a Redis pool per greenlet), and the GET uses urllib: Celery at its
best, not as shipped."""
import os
import time
import urllib.request
from functools import cached_property

from celery import Celery
from celery.signals import worker_ready


class SharedBackendCelery(Celery):
    @cached_property
    def backend(self):
        return self._get_backend()


URL = 'redis://127.0.0.1:%s/0' % os.environ.get('REDIS_PORT', '6379')
app = SharedBackendCelery('interop', broker=URL, backend=URL)


@app.task(name='workerd.http.get')
def http_get(url, timeout=30):
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        body = resp.read().decode('utf-8', 'replace')
        return {'status': resp.status, 'body': body}


@worker_ready.connect
def _ready(**_):
    path = os.environ.get('BENCH_READY_FILE')
    if path:
        with open(path, 'w') as fh:
            fh.write(repr(time.time()))
