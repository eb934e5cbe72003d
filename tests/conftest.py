import contextlib
import fcntl
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as pipelines/__init__.py: before OpenMP loads

from pathlib import Path

import pytest

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


# --- running under pytest-xdist (`make test` runs `pytest -n 2`; pyproject sets --dist loadgroup) ---
#
# A worker runs whole files: module- and session-scoped fixtures (built lakes, published bundles)
# are then built by one worker only. Files that share an expensive session resource name it as an
# xdist_group and run on one worker together (the Spark files share one JVM). The files holding
# slow tests are handed out first, so that the last minutes of a run are not one worker alone.


def _module_groups(items) -> dict:
    """module path -> xdist group, for every module with a test that uses a shared session resource."""
    groups = {}
    for item in items:
        if "spark" in getattr(item, "fixturenames", ()):
            groups[item.path] = "spark"
    return groups


def _scope(item) -> str:
    mark = item.get_closest_marker("xdist_group")
    return f"group:{mark.args[0]}" if mark else str(item.path)


@pytest.hookimpl(tryfirst=True)   # before xdist's own hook reads the xdist_group marks
def pytest_collection_modifyitems(config, items):
    groups = _module_groups(items)
    for item in items:
        if item.path in groups and not item.get_closest_marker("xdist_group"):
            item.add_marker(pytest.mark.xdist_group(groups[item.path]))
    if not hasattr(config, "workerinput"):
        return   # one process: keep the files' own order
    slow: dict[str, int] = {}
    for item in items:
        slow[_scope(item)] = slow.get(_scope(item), 0) + (item.get_closest_marker("slow") is not None)
    first_seen = {s: i for i, s in reversed(list(enumerate(map(_scope, items))))}
    items.sort(key=lambda item: (-slow[_scope(item)], first_seen[_scope(item)]))


def pytest_xdist_make_scheduler(config, log):
    """Under --dist loadgroup: one work unit per xdist group, and per file for the rest (xdist's
    own loadgroup hands out ungrouped tests one by one, building a module's fixtures on each
    worker), in the order the workers collected them (slow files first)."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class FileOrGroupScheduling(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            scope = super()._split_scope(nodeid)
            return nodeid.split("::", 1)[0] if scope == nodeid else scope

    config.option.loadscopereorder = False   # keep the slow-first order, not the largest-count-first
    return FileOrGroupScheduling(config, log)


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
        # the run's temporary folder, common to its workers
        config._timing_gate = _Gate(config._tmp_path_factory.getbasetemp().parent)
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
