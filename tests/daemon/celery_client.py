"""celery_client.py - Celery's own producer against a workerd running --protocol celery.

Run by test_e2e_celery.c with Debian's /usr/bin/python3 (python3-celery):

    celery_client.py cases REDIS_PORT HTTP_PORT   every case below; "ok <case>" for each
    celery_client.py kill REDIS_PORT              sends one workerd.sleep, prints
                                                  "sent <id>", then waits for its result
    celery_client.py fleet REDIS_PORT             a Python worker (-P gevent) beside the
                                                  workerd on one queue; prints
                                                  "python_ran N"
    celery_client.py rate REDIS_PORT N RATE       N echo tasks through Celery and N
                                                  workerd messages at once, beside a
                                                  workerd --rate-limit echo=RATE/s: the
                                                  one rate holds over both protocols

With FLEET_REDIS_PORT set, importing this module defines fleet_app, the Python worker's
app: workerd.sleep as a Python task that counts its runs in Redis.

Each case prints "case <name>" when it starts; a failed check prints "FAILED case <name>"
with the exception and its traceback, and what Redis holds for a result that never came,
then exits non-zero. One interpreter runs every case: Python and Celery take a while to
start.
"""
import base64
import contextlib
import datetime
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import uuid

import celery
from celery import chain, chord, signature
from celery.exceptions import ChordError, NotRegistered, TaskRevokedError, TimeLimitExceeded

TIMEOUT = 20
PIECE = 5


def app_for(port, **conf):
    app = celery.Celery(broker=f"redis://127.0.0.1:{port}/0",
                        backend=f"redis://127.0.0.1:{port}/0")
    app.conf.update(**conf)
    return app


@contextlib.contextmanager
def case(name):
    """One case: announced, timed, and on failure named with its exception."""
    print("case", name, flush=True)
    t0 = time.time()
    try:
        yield
    except BaseException as e:
        print(f"FAILED case {name} after {time.time() - t0:.1f} s: {type(e).__name__}: {e}",
              flush=True)
        traceback.print_exc(file=sys.stdout)
        sys.stdout.flush()
        raise
    print(f"ok {name} ({time.time() - t0:.1f} s)", flush=True)


def get(result):
    """result.get(), waiting for the result's PUBLISH as Celery does, in pieces of PIECE
    seconds: each piece begins by reading the stored result, so a PUBLISH Celery's
    consumer missed (celery/celery#4039: the result is stored, get() times out) costs a
    piece, not the case; such a miss is reported. On the overall timeout, says what Redis
    holds for it: a stored result means the producer missed its PUBLISH, none means
    workerd never finished the task."""
    redis = result.backend.client
    key = "celery-task-meta-" + result.id
    deadline = time.time() + TIMEOUT
    while True:
        try:
            return result.get(timeout=PIECE)
        except celery.exceptions.TimeoutError:
            stored = redis.get(key)
            if time.time() >= deadline:
                raise AssertionError(
                    f"no result for {result.id} after {TIMEOUT} s; Redis holds {stored!r}; "
                    f"queue celery: {redis.llen('celery')}, scheduled: "
                    f"{redis.zcard('workerd:scheduled')}, in flight: "
                    f"{[redis.hlen(k) for k in redis.keys('workerd:inflight:*')]}")
            if stored is not None:
                print(f"note: {result.id} not heard of in {PIECE} s, but stored: {stored!r}",
                      flush=True)


def expect_raise(result, cls, text=None):
    try:
        value = get(result)
    except cls as e:
        if text is not None:
            assert text in str(e), f"{type(e).__name__}: {e!r} lacks {text!r}"
        return e
    raise AssertionError(f"expected {cls.__name__}, got the value {value!r}")


def envelope(task, task_id, body, headers=None, content_type="application/json"):
    """A protocol v2 message as kombu LPUSHes it (body: bytes, already serialised)."""
    h = {"lang": "py", "task": task, "id": task_id, "retries": 0, "root_id": task_id,
         "parent_id": None, "group": None, "eta": None, "expires": None,
         "timelimit": [None, None]}
    h.update(headers or {})
    return json.dumps({
        "body": base64.b64encode(body).decode(), "content-encoding": "utf-8",
        "content-type": content_type, "headers": h,
        "properties": {"correlation_id": task_id, "reply_to": "", "delivery_mode": 2,
                       "delivery_info": {"exchange": "", "routing_key": "celery"},
                       "priority": 0, "body_encoding": "base64",
                       "delivery_tag": str(uuid.uuid4())}})


def cases(port, http_port):
    app = app_for(port)
    redis = app.backend.client
    url = f"http://127.0.0.1:{http_port}"

    with case("echo"):
        assert get(app.send_task("workerd.echo", args=[1, "two"])) == [1, "two"]
        r = app.send_task("workerd.echo", args=[{"a": [1.5, None]}])
        assert get(r) == [{"a": [1.5, None]}]
        assert r.state == "SUCCESS"

    with case("http.get"):
        got = get(app.send_task("workerd.http.get", args=[url + "/fast"],
                                kwargs={"timeout": 5}))
        assert got["status"] == 200 and got["body"] == "ok\n", got
        # A mapped name (--celery-task proj.fetch=http.get).
        got = get(app.send_task("proj.fetch", args=[url + "/missing"]))
        assert got["status"] == 404, got

    with case("failures raise"):
        e = expect_raise(app.send_task("workerd.fail", args=["it broke"]), Exception, "it broke")
        assert type(e).__name__ == "TaskError", type(e)
        expect_raise(app.send_task("workerd.sleep", args=[5], time_limit=0.3), TimeLimitExceeded)

    with case("NotRegistered"):
        r = app.send_task("proj.tasks.unknown", args=[])
        expect_raise(r, NotRegistered, "proj.tasks.unknown")
        expect_raise(app.send_task("workerd.no.such.task"), NotRegistered)

    with case("countdown"):
        t0 = time.time()
        r = app.send_task("workerd.echo", args=["later"], countdown=1.0)
        assert get(r) == ["later"]
        assert time.time() - t0 >= 1.0, time.time() - t0

    with case("expires"):
        r = app.send_task("workerd.echo", args=[1], countdown=2, expires=0.5)
        expect_raise(r, TaskRevokedError, "expired")
        assert r.state == "REVOKED"

    with case("chain"):
        # A chain: every link runs on workerd, each fed the result of the one before.
        res = chain(signature("workerd.echo", args=[1], app=app),
                    signature("workerd.echo", args=[2], app=app),
                    signature("workerd.echo", args=[3], app=app)).apply_async()
        assert get(res) == [[[1], 2], 3]
        assert get(res.parent) == [[1], 2]
        # A failing link fails the rest of the chain, as Celery's workers do.
        res = chain(signature("workerd.fail", args=["first"], app=app),
                    signature("workerd.echo", args=[2], app=app)).apply_async()
        expect_raise(res, Exception, "first")
        # link and link_error (callbacks and errbacks).
        cb_id, eb_id = str(uuid.uuid4()), str(uuid.uuid4())
        r = app.send_task("workerd.echo", args=[5],
                          link=signature("workerd.echo", args=[6], app=app).set(task_id=cb_id))
        assert get(r) == [5]
        assert get(app.AsyncResult(cb_id)) == [[5], 6]
        r = app.send_task("workerd.fail", args=["x"],
                          link_error=signature("workerd.echo", app=app).set(task_id=eb_id))
        assert get(app.AsyncResult(eb_id)) == [r.id]

    with case("chord"):
        # The callback runs once, with the members' results in header order.
        res = chord([signature("workerd.echo", args=[i, 2 ** 60 + i], app=app)
                     for i in range(5)],
                    signature("workerd.echo", args=["done"], app=app)).apply_async()
        assert get(res) == [[[i, 2 ** 60 + i] for i in range(5)], "done"]
        # An immutable callback gets no results.
        res = chord([signature("workerd.echo", args=[i], app=app) for i in range(2)],
                    signature("workerd.echo", args=["alone"], app=app, immutable=True)
                    ).apply_async()
        assert get(res) == ["alone"]
        # A member failing fails the callback, as Celery's ChordError (the chord's get()
        # raises the member's own error first, as with Celery's workers).
        res = chord([signature("workerd.echo", args=[1], app=app),
                     signature("workerd.fail", args=["member broke"], app=app)],
                    signature("workerd.echo", app=app)).apply_async()
        expect_raise(res, Exception, "member broke")
        expect_raise(app.AsyncResult(res.id), ChordError, "member broke")
        assert redis.keys("celery-taskset-meta-*") == [], redis.keys("celery-taskset-meta-*")
        # A member delivered twice (here with another result the second time) is counted
        # once: the chord of 2 waits for its other member. The second delivery's link
        # (marker) says when its ack is done.
        gid, cb_id, marker, a_id = (str(uuid.uuid4()) for _ in range(4))
        redis.set(f"celery-taskset-meta-{gid}.s", 2)
        cb = dict(signature("workerd.echo", app=app).set(task_id=cb_id))

        def member(tid, index, arg, link=None):
            embed = {"callbacks": link, "errbacks": None, "chain": None, "chord": cb}
            return envelope("workerd.echo", tid, json.dumps([[arg], {}, embed]).encode(),
                            {"group": gid, "group_index": index})
        redis.lpush("celery", member(a_id, 0, 1))
        assert get(app.AsyncResult(a_id)) == [1]
        link = [dict(signature("workerd.echo", app=app).set(task_id=marker))]
        redis.lpush("celery", member(a_id, 0, 2, link))
        assert get(app.AsyncResult(marker)) == [[2]]
        assert redis.get("celery-task-meta-" + cb_id) is None
        redis.lpush("celery", member(str(uuid.uuid4()), 1, 3))
        assert get(app.AsyncResult(cb_id)) == [[[1], [3]]]

    with case("SUCCESS kept"):
        # A stored SUCCESS is never replaced: another delivery of the same id failing later
        # leaves it (the errback runs after that failure's ack, in the same step).
        done_id, eb_id = str(uuid.uuid4()), str(uuid.uuid4())
        redis.set("celery-task-meta-" + done_id, json.dumps({
            "status": "SUCCESS", "result": 42, "traceback": None, "children": [],
            "date_done": "2026-12-04T00:00:00", "task_id": done_id}))
        app.send_task("workerd.fail", args=["late"], task_id=done_id,
                      link_error=signature("workerd.echo", app=app).set(task_id=eb_id))
        assert get(app.AsyncResult(eb_id)) == [done_id]
        assert get(app.AsyncResult(done_id)) == 42

    with case("many with priorities"):
        rs = [app.send_task("workerd.echo", args=[i], priority=p)
              for i in range(100) for p in (0, 5, 9)]
        assert [get(r) for r in rs] == [[i] for i in range(100) for p in (0, 5, 9)]

    with case("refused"):
        # Refused without being deserialised: pickle, then hand-made bad messages.
        pickled = app_for(port, task_serializer="pickle", accept_content=["pickle", "json"])
        r = pickled.send_task("workerd.echo", args=[1])
        expect_raise(r, Exception, "application/x-python-serialize")
        bad = {}
        for name, text in [
            ("base64", None),
            ("types", envelope("workerd.echo", "", json.dumps([[], {}, None]).encode(),
                               {"retries": "three"})),
            ("body", envelope("workerd.echo", "", b'{"not": "a list"}')),
        ]:
            tid = str(uuid.uuid4())
            if text is None:
                env = json.loads(envelope("workerd.echo", tid, b"[[], {}, null]"))
                env["body"] = "%%% not base64 %%%"
                text = json.dumps(env)
            else:
                env = json.loads(text)
                env["headers"]["id"] = tid
                text = json.dumps(env)
            redis.lpush("celery", text)
            bad[name] = tid
        for name, tid in bad.items():
            e = expect_raise(app.AsyncResult(tid), Exception)
            assert type(e).__name__ == "InvalidMessage", (name, type(e), e)
        # Protocol 1: the id is in the body, so there is no result, only a dead letter.
        v1 = {"task": "workerd.echo", "id": str(uuid.uuid4()), "args": [], "kwargs": {}}
        redis.lpush("celery", json.dumps({
            "body": base64.b64encode(json.dumps(v1).encode()).decode(),
            "content-type": "application/json", "content-encoding": "utf-8", "headers": {},
            "properties": {"body_encoding": "base64", "delivery_tag": "x", "priority": 0,
                           "delivery_info": {"exchange": "", "routing_key": "celery"}}}))
        deadline = time.time() + TIMEOUT
        while redis.llen("workerd:dead") < 7 and time.time() < deadline:
            time.sleep(0.05)
        letters = [json.loads(x) for x in redis.lrange("workerd:dead", 0, -1)]
        reasons = " | ".join(d["reason"] for d in letters)
        assert len(letters) == 7, reasons  # the two NotRegistered too
        assert "protocol v1" in reasons and "application/x-python-serialize" in reasons, reasons
        assert all(d["queue"] == "=celery" for d in letters), letters


if os.environ.get("FLEET_REDIS_PORT"):
    fleet_app = app_for(int(os.environ["FLEET_REDIS_PORT"]),
                        broker_transport_options={"visibility_timeout": 1},
                        worker_prefetch_multiplier=1)

    # Not fleet_app.backend: under gevent Celery 5.2 builds a backend per greenlet
    # (celery/celery#7960), which costs most of a second per task.
    import redis as redis_py
    fleet_redis = redis_py.Redis(port=int(os.environ["FLEET_REDIS_PORT"]))

    @fleet_app.task(name="workerd.sleep", bind=True)
    def fleet_sleep(self, seconds):
        fleet_redis.incr("fleet:py:" + self.request.id)
        time.sleep(seconds)
        return float(seconds)

    @fleet_app.task(name="workerd.echo")
    def fleet_echo(*args):
        return list(args)

    @celery.signals.worker_ready.connect
    def fleet_ready(**_):
        with open(os.environ["FLEET_READY_FILE"], "w") as f:
            f.write("ready")


def fleet(port):
    """workerd holds tasks longer than the Python worker's visibility_timeout (1 s) while
    that worker runs beside it: every task runs exactly once, none is taken from workerd; a
    chord's members run on both sides complete it once."""
    app = app_for(port)
    redis = app.backend.client
    first = [app.send_task("workerd.sleep", args=[3]) for _ in range(10)]
    ready = os.path.join(tempfile.gettempdir(), "celery-fleet-%d-ready" % os.getpid())
    env = dict(os.environ, FLEET_REDIS_PORT=str(port), FLEET_READY_FILE=ready,
               PATH="/usr/bin:/bin")
    py = subprocess.Popen([sys.executable, "-m", "celery", "-A", "celery_client:fleet_app",
                           "worker", "-P", "gevent", "-c", "10", "--without-gossip",
                           "--without-mingle", "--without-heartbeat", "-l", "warning"],
                          cwd=os.path.dirname(os.path.abspath(__file__)), env=env)
    try:
        deadline = time.time() + TIMEOUT
        while not os.path.exists(ready):
            assert py.poll() is None and time.time() < deadline, "the Python worker did not start"
            time.sleep(0.05)
        rest = [app.send_task("workerd.sleep", args=[0.5]) for _ in range(20)]
        # Read by state rather than get(): Celery 5.2's get() of a result stored before
        # it subscribes can wait a second for its next poll, a second per task here.
        while not all(r.state == "SUCCESS" for r in first + rest):
            assert time.time() < deadline + TIMEOUT, [r.state for r in first + rest]
            time.sleep(0.05)
        assert [r.result for r in first + rest] == [3.0] * 10 + [0.5] * 20
        time.sleep(2.5)  # past the visibility timeout, more sweeps
        assert redis.llen("celery") == 0
        counts = {k: int(redis.get(k)) for k in redis.keys("fleet:py:*")}
        assert all(c == 1 for c in counts.values()), counts
        for r in first:  # workerd's long tasks: never run by Python
            assert redis.get("fleet:py:" + r.id) is None, r.id
        # A chord whose members either side may run: both count in Celery's keys (Python's
        # JSON and workerd's), and the callback gets every result in header order.
        with case("fleet chord"):
            res = chord([signature("workerd.echo", args=[i, 2 ** 60, 0.5], app=app)
                         for i in range(20)],
                        signature("workerd.echo", args=["cb"], app=app)).apply_async()
            assert get(res) == [[[i, 2 ** 60, 0.5] for i in range(20)], "cb"]
        print("python_ran", len(counts), flush=True)
    finally:
        py.send_signal(signal.SIGTERM)
        py.wait(30)
        if os.path.exists(ready):
            os.unlink(ready)


def rate(port, n, per_second):
    """n Celery messages of workerd.echo and n workerd messages of echo, pushed together,
    must run at one rate: no window of the run saw a burst. Run times: a Celery result's
    date_done (echo ends as it starts), a workerd result's started_at."""
    app = app_for(port)
    redis = app.backend.client
    native, sent = [], []
    for i in range(n):
        nid = str(uuid.uuid4())
        redis.lpush("workerd:queue:default", json.dumps({"id": nid, "task": "echo", "args": [i]}))
        native.append(nid)
        sent.append(app.send_task("workerd.echo", args=[i]))
    times = []
    with case("rate: Celery results"):
        for i, r in enumerate(sent):
            assert get(r) == [i]
            meta = app.backend.get_task_meta(r.id)
            done = datetime.datetime.fromisoformat(meta["date_done"])
            times.append(done.replace(tzinfo=datetime.timezone.utc).timestamp())
    with case("rate: workerd results"):
        deadline = time.time() + TIMEOUT
        for nid in native:
            while (doc := redis.get("workerd:result:" + nid)) is None:
                assert time.time() < deadline, f"no result for {nid}"
                time.sleep(0.05)
            doc = json.loads(doc)
            assert doc["status"] == "SUCCESS" and doc.get("retries", 0) == 0, doc
            times.append(doc["started_at"])
    with case("rate: one rate over both"):
        times.sort()
        period = 1.0 / per_second
        print("run times (s from the first):", [round(t - times[0], 3) for t in times],
              flush=True)
        # The limit allows a start every period (and a 50 ms tolerance): any 4 starts in a
        # row span at least 3 periods; 2 are asserted, the rest is slack for the clocks.
        for i in range(len(times) - 3):
            assert times[i + 3] - times[i] >= 2 * period, (i, times[i + 3] - times[i])
        assert redis.llen("celery") == 0 and redis.zcard("workerd:scheduled") == 0


def kill(port):
    app = app_for(port)
    r = app.send_task("workerd.sleep", args=[1.0])
    print("sent", r.id, flush=True)
    print("result", json.dumps(r.get(timeout=60)), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "cases":
        cases(int(sys.argv[2]), int(sys.argv[3]))
    elif sys.argv[1] == "fleet":
        fleet(int(sys.argv[2]))
    elif sys.argv[1] == "rate":
        rate(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]))
    else:
        kill(int(sys.argv[2]))
    print("done", flush=True)
