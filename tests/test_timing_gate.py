"""The timing gate (tests/timing_gate.py) between two real processes, as two pytest-xdist workers
use it: a part run alone starts only after the other worker's test let go, and two workers asking
to run a part alone at once both get their turn, one after the other (no deadlock)."""

import multiprocessing
import time

from tests.timing_gate import Gate

FORK = multiprocessing.get_context("fork")


def _test(folder, name, hold_s, alone_s, started, go, out):
    """A test of one worker: holds the share as every test does; with `alone_s`, a part of it runs
    alone. Puts (name, what, start, end) on `out`."""
    gate = Gate(folder)   # its own open files: flock locks belong to one process's open file
    with gate.shared():
        started.release()
        go.wait()
        t0 = time.monotonic()
        if alone_s:
            with gate.alone_within():
                t1 = time.monotonic()
                time.sleep(alone_s)
                out.put((name, "alone", t1, time.monotonic()))
        time.sleep(hold_s)
        out.put((name, "shared", t0, time.monotonic()))


def _run(tmp_path, tests: dict) -> dict:
    started, go, out = FORK.Semaphore(0), FORK.Event(), FORK.Queue()
    procs = [FORK.Process(target=_test, args=(tmp_path, name, hold, alone, started, go, out))
             for name, (hold, alone) in tests.items()]
    for p in procs:
        p.start()
    for _ in procs:
        assert started.acquire(timeout=10), "a worker never got its share"
    go.set()
    for p in procs:
        p.join(timeout=20)
    assert not any(p.is_alive() for p in procs), "the workers wait on each other"
    for p in procs:
        p.kill()
    got = {}
    while not out.empty():
        name, what, t0, t1 = out.get()
        got[name, what] = (t0, t1)
    return got


def test_a_timed_part_starts_when_the_other_workers_test_let_go(tmp_path):
    got = _run(tmp_path, {"timed": (0.0, 0.2), "other": (0.8, 0.0)})
    assert got["timed", "alone"][0] >= got["other", "shared"][1]


def test_two_timed_parts_at_once_take_turns(tmp_path):
    got = _run(tmp_path, {"a": (0.3, 0.3), "b": (0.3, 0.3)})
    (a0, a1), (b0, b1) = got["a", "alone"], got["b", "alone"]
    assert a1 <= b0 or b1 <= a0, "both ran alone at the same time"
