"""`behavior bench recommend-search`: the recommend stage's search on a demo lake, as a table row."""

import pytest

from pipelines.bench.suites import format_table
from pipelines.bench.recommend import MIN_USERS, STEP, bench_search, search_users


@pytest.mark.slow
def test_search_benchmark_reports_the_search_time_and_the_test_metrics(tmp_path):
    messages: list[str] = []
    row = bench_search(tmp_path, repeat=1, users=1500, progress=messages.append)
    assert row["step"] == STEP and row["runs"] == 1 and row["users"] == 1500
    assert 0 < row["seconds"] <= row["stage_seconds"]
    assert row["budget_seconds"] == 4.0
    assert 0 < row["precision@10"] <= 1 and 0 < row["ndcg@10"] <= 1
    assert len(row["selected"]) == 1 and row["peak_mb"] > 0
    assert row["target"].startswith("<= 30 s") and row["met"] is True   # the target applies at 60k users
    assert any("demo lake of 1,500 users" in m for m in messages)
    assert STEP in format_table([row])
    # the lake is made once and reused
    again = bench_search(tmp_path, repeat=1, users=1500, progress=messages.append)
    assert sum("making a demo lake" in m for m in messages) == 1 and again["users"] == 1500


def test_behavior_bench_sizes_the_search_lake_from_its_size_options():
    assert search_users(20_000_000) == 60_000               # the default --recommend-lines: the demo's size
    assert search_users(1_000_000) == 50_000
    assert search_users(40_000) == 2_000                    # a small benchmark gets a small lake
    assert search_users(100) == MIN_USERS
    assert search_users(40_000, users=60_000) == 60_000    # --users wins
