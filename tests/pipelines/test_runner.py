from datetime import datetime, timezone

import pandas as pd
import pyarrow as pa
import pytest

from behavior.errors import BehaviorError
from pipelines.config import Config
from pipelines.ingest import IngestOptions, ingest
from pipelines.runner import Stage, open_context, plan


def test_plan_adds_prerequisites_in_order():
    stages = {n: Stage(n, deps, lambda ctx: None) for n, deps in
              {"a": (), "b": ("a",), "c": ("b",), "d": ("a",)}.items()}
    assert plan(stages, ["c"]) == ["a", "b", "c"]
    assert plan(stages, ["d", "b"]) == ["a", "d", "b"]
    assert plan(stages, None) == ["a", "b", "c", "d"]
    with pytest.raises(BehaviorError, match="unknown stage x"):
        plan(stages, ["x"])


def test_views_hold_nothing_at_or_after_as_of(home, tmp_path):
    src = tmp_path / "p.csv"
    pd.DataFrame({"user_id": ["u1", "u1", "u2"], "item_id": ["a", "b", "c"],
                  "paid_at": ["2025-01-01 10:00", "2025-02-01 00:00:00", "2025-03-01"]}).to_csv(src, index=False)
    ingest(home, [src], IngestOptions(defaults={"currency": "EUR"}))
    ctx = open_context(home, Config(), datetime(2025, 2, 1, tzinfo=timezone.utc))
    rows = ctx.con.sql("SELECT item_id FROM payments ORDER BY paid_at").fetchall()
    assert rows == [("a",)]  # the event exactly at as_of is not visible
    default = open_context(home, Config(), None)
    assert default.as_of == datetime(2025, 3, 2, tzinfo=timezone.utc)  # the day after the last payment
