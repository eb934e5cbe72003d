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
