import contextlib
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as pipelines/__init__.py: before OpenMP loads

from pathlib import Path

import pytest

from tests.run_folder import run_folder
from tests.timing_gate import Gate

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


def _gate(config) -> Gate | None:
    if not hasattr(config, "workerinput"):
        return None   # one process: nothing runs beside a test
    if not hasattr(config, "_timing_gate"):
        config._timing_gate = Gate(run_folder(config._tmp_path_factory))
    return config._timing_gate


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    gate = _gate(item.config)
    if gate is None:
        return (yield)
    with gate.shared():   # a timing test's fixtures too: they run beside the other worker
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    gate = _gate(item.config)
    if gate is None or not item.get_closest_marker("timing"):
        return (yield)
    with gate.alone_within():
        return (yield)


@pytest.fixture
def timed(request):
    """`with timed(): ...` runs the part of a test that asserts a wall-clock bound while no other
    worker runs a test (see tests/timing_gate.py); the rest of the test runs beside the other worker."""
    gate = _gate(request.config)
    if request.node.get_closest_marker("timing"):
        raise pytest.UsageError(f"{request.node.nodeid}: marked `timing` (all of it runs alone) and asks for "
                                "`timed` (part of it): use one of the two")
    return gate.alone_within if gate is not None else contextlib.nullcontext
