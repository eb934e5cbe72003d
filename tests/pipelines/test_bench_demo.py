"""`behavior bench demo`: the demo's pipeline timed per step in fresh processes."""

from __future__ import annotations

import json

import pytest

from pipelines.bench.demo import format_demo_table
from pipelines.stages import STAGES
from tests.e2e.test_cli import behavior


@pytest.mark.slow
def test_bench_demo_times_every_step_of_the_demo_pipeline(tmp_path):
    out = behavior(tmp_path / "home", "bench", "demo", "--users", "300", "--repeat", "2",
                   "--out", str(tmp_path / "work"), "--json")
    rows = json.loads(out.stdout)
    steps = [r["step"] for r in rows]
    assert steps == ["synth", "ingest", *STAGES, "report.html", "publish", "pipeline"]
    by = {r["step"]: r for r in rows}
    assert all(r["runs"] == 2 and r["min"] <= r["median"] <= r["max"] and r["peak_mb"] > 0 for r in rows)
    for r in rows:
        assert r["min"] >= 0, r
    # the steps are the whole pipeline: their sums per run lie within the pipeline's range
    assert sum(r["min"] for r in rows[:-1]) <= by["pipeline"]["max"] + 0.5
    assert sum(r["max"] for r in rows[:-1]) >= by["pipeline"]["min"] - 0.5
    assert by["pipeline"]["target"] == "<= 60 s" and by["pipeline"]["met"] == (by["pipeline"]["median"] <= 60)
    assert not list((tmp_path / "work").glob("demo-*"))       # each run's data home is removed
    table = format_demo_table(rows)
    assert "| **pipeline** |" in table and "target <= 60 s on 2 cores" in table
