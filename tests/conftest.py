import contextlib
import fcntl
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as pipelines/__init__.py: before OpenMP loads

from pathlib import Path

import pytest

from tests.run_folder import run_folder

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def messy() -> Path:
    return FIXTURES / "messy"


@pytest.fixture
def home(tmp_path):
    from behavior.store.datahome import DataHome

    return DataHome(tmp_path / "data")


@pytest.fixture
def assert_pushed_down():
    """Check that a query over a 4-row-group Parquet file pushes `paid_at < as_of` into the
    scan (and, where DuckDB reports it, reads only the first row group)."""
    import re

    def check(con, sql: str) -> None:
        plan = con.sql("EXPLAIN ANALYZE " + sql).fetchall()[0][1]
        scan = plan[plan.index("READ_PARQUET"):]
        assert re.search(r"Filters:.*?paid_at <", scan, re.S), plan
        if "Row Groups Scanned" in scan:
            assert re.search(r"Row Groups Scanned: 1 / 4", scan), plan

    return check


# --- running under pytest-xdist (`make test` runs `pytest -n 2`; pyproject sets --dist loadfile) ---
#
# A worker runs whole files: module-scoped fixtures (built lakes) are built by one worker only.
# The files holding slow tests are handed out first (pyproject's --no-loadscope-reorder keeps this
# order instead of xdist's largest-count-first), so that the last minutes of a run are not one
# worker alone.


def pytest_collection_modifyitems(config, items):
    if not hasattr(config, "workerinput"):
        return   # one process: keep the files' own order
    slow: dict = {}
    for item in items:
        slow[item.path] = slow.get(item.path, 0) + (item.get_closest_marker("slow") is not None)
    first_seen = {path: i for i, path in reversed(list(enumerate(item.path for item in items)))}
    items.sort(key=lambda item: (-slow[item.path], first_seen[item.path]))


class _Gate:
    """Under pytest-xdist, a test marked `timing` (it asserts a wall-clock bound) runs its body
    while no other worker runs a test, so that the other worker's load cannot make it fail: the
    other tests hold a shared lock for the whole of their run, a timing test an exclusive one.
    A timing test waiting for its turn holds the turnstile, so that tests starting meanwhile queue
    behind it instead of starving it."""

    def __init__(self, folder):
        self.turnstile = open(folder / "timing-turnstile.lock", "a")
        self.tests = open(folder / "timing-tests.lock", "a")

    @contextlib.contextmanager
    def shared(self):
        fcntl.flock(self.turnstile, fcntl.LOCK_EX)
        fcntl.flock(self.tests, fcntl.LOCK_SH)
        fcntl.flock(self.turnstile, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(self.tests, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def alone(self):
        fcntl.flock(self.turnstile, fcntl.LOCK_EX)
        try:
            fcntl.flock(self.tests, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self.tests, fcntl.LOCK_UN)
        finally:
            fcntl.flock(self.turnstile, fcntl.LOCK_UN)


def _gate(config) -> _Gate | None:
    if not hasattr(config, "workerinput"):
        return None   # one process: nothing runs beside a test
    if not hasattr(config, "_timing_gate"):
        config._timing_gate = _Gate(run_folder(config._tmp_path_factory))
    return config._timing_gate


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    gate = _gate(item.config)
    if gate is None or item.get_closest_marker("timing"):
        return (yield)
    with gate.shared():
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    gate = _gate(item.config)
    if gate is None or not item.get_closest_marker("timing"):
        return (yield)
    with gate.alone():
        return (yield)
