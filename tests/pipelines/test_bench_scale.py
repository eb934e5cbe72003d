"""`behavior bench scale` on a tiny size: every step timed, peaks measured, the API loaded on
the published bundle, the plot written; above PART_LINES the history is generated in parts."""

import json

import pytest

from pipelines.bench.scale import (EXCEPTIONS, GROWTH_LIMIT, PART_LINES, _note, _parts, cost_curve,
                                   format_scale, run_scale, target_row)
from pipelines.stages import STAGES


@pytest.mark.slow
def test_scale_bench_times_every_step_and_plots(tmp_path):
    rows = run_scale([6000], tmp_path, api_seconds=2)
    steps = [r["step"] for r in rows]
    assert steps == ["synth", "ingest", *STAGES, "publish + start-up", "ingest + run", "api start-up",
                     "api recommendations"]
    api = rows[-1]
    assert api["requests_per_s"] > 50 and api["errors"] == 0 and api["peak_mb"] > 50
    assert "req/s" in format_scale(rows) and api["generator"]
    total = rows[-3]
    assert total["seconds"] >= sum(r["seconds"] for r in rows if r["step"] in STAGES)
    assert all(r["peak_mb"] > 50 for r in rows if r["step"] not in ("synth",))
    assert "target" not in total and "met" not in total   # the targets are set at 10M and 100M lines
    assert json.loads((tmp_path / "scale.json").read_text()) == rows
    assert (tmp_path / "scale.png").stat().st_size > 10_000
    assert not (tmp_path / "scale-6000").exists()


def test_big_histories_are_generated_in_parts_that_share_the_catalogue_and_never_collide():
    assert _parts(PART_LINES) == [{"catalog_seed": 0, "items": 39_215, "id_prefix": ""}]   # 588k users / 15
    parts = _parts(100_000_000)
    assert len(parts) == 10 and len({p["id_prefix"] for p in parts}) == 10
    # every payment id within the 12 bytes DuckDB keeps inline, as the one-part history's
    assert max(len(p["id_prefix"] + "p000000001") for p in parts) <= 12
    assert {p["items"] for p in parts} == {200_000} and {p["catalog_seed"] for p in parts} == {0}
    assert [p.get("n_promotions", 4) for p in parts] == [4] + [0] * 9


def test_parts_of_a_history_share_items_and_not_users_or_payments():
    from behavior.synth import SynthConfig, generate

    a = generate(SynthConfig(users=300, months=6, seed=0, catalog_seed=0, items=400))
    b = generate(SynthConfig(users=300, months=6, seed=1, catalog_seed=0, items=400, id_prefix="1",
                             n_promotions=0))
    assert a.tables["items"].equals(b.tables["items"])
    for table, key in (("users", "user_id"), ("payments", "payment_id")):
        assert not set(a.tables[table][key]) & set(b.tables[table][key])
    assert b.tables["payments"]["user_id"].str.startswith("1u").all() and len(b.tables["promotions"]) == 0


def _total(lines, seconds, peak_mb):
    return target_row({"lines": lines, "step": "ingest + run", "seconds": seconds, "peak_mb": peak_mb})


def test_the_targets_are_issue_25s_at_10m_and_100m_lines():
    assert _total(9_994_341, 179.9, 8192)["met"] is True
    assert "180 s" in _total(9_994_341, 179.9, 8192)["target"]
    assert _total(9_994_341, 262.7, 5755)["met"] is False          # this morning's run
    assert _total(9_994_341, 170.0, 8193)["met"] is False          # fast, but over 8 GB
    assert _total(99_312_000, 899, 16 * 1024)["met"] is True
    assert "15 min" in _total(99_312_000, 899, 16 * 1024)["target"]
    assert _total(99_312_000, 2028, 15_690)["met"] is False        # 34 minutes
    assert _total(99_312_000, 800, 17_000)["met"] is False
    assert "target" not in _total(1_001_280, 9999, 99_999)          # no target at 1M lines


def _rows(step, points):
    return [{"lines": lines, "step": step, "seconds": s, "peak_mb": 100} for lines, s in points]


def test_cost_curve_gives_seconds_per_million_lines_and_marks_growth_over_the_limit():
    rows = cost_curve(_rows("merchants", [(1_000_000, 0.3), (10_000_000, 3.6), (100_000_000, 30.0)])
                      + _rows("churn", [(1_000_000, 47.0), (10_000_000, 134.0)])
                      + _rows("segments", [(1_000_000, 0.1), (100_000_000, 12.0)])
                      + _rows("api recommendations", [(1_000_000, 10.0), (100_000_000, 10.0)]))
    by = {(r["step"], r["lines"]): r for r in rows}
    assert by["merchants", 1_000_000]["s_per_m_lines"] == 0.3 and "growth" not in by["merchants", 1_000_000]
    assert by["merchants", 10_000_000]["s_per_m_lines"] == 0.36
    assert by["merchants", 10_000_000]["growth"] == 1.2 and by["merchants", 10_000_000]["over"] is False
    assert by["merchants", 100_000_000]["growth"] == 1.0
    assert by["churn", 10_000_000]["growth"] == 0.29 and by["churn", 10_000_000]["over"] is False  # sampled: sublinear
    seg = by["segments", 100_000_000]
    assert seg["growth"] == 1.2 and seg["over"] is False and "exception" not in seg
    assert "s_per_m_lines" not in by["api recommendations", 100_000_000]    # a fixed-length load, not a cost


def test_growth_over_the_limit_is_an_explained_exception_or_is_called_unexplained():
    rows = cost_curve(_rows("segments", [(1_000_000, 0.1), (100_000_000, 14.0)])
                      + _rows("loyalty", [(1_000_000, 0.9), (100_000_000, 110.0)]))
    seg, loy = rows[1], rows[3]
    assert seg["growth"] == 1.4 and seg["over"] is True and seg["exception"] == EXCEPTIONS["segments"]
    assert loy["growth"] == 1.22 and loy["over"] is True and "exception" not in loy
    table = format_scale(rows)
    assert f"| 100,000,000 | segments | 14.00 | 100 | 0.140 | 1.40x! | over {GROWTH_LIMIT}x: exception, n log n" \
        in table.replace(EXCEPTIONS["segments"], "n log n")
    assert "| 100,000,000 | loyalty | 110.00 | 100 | 1.100 | 1.22x! | over 1.2x: unexplained |" in table
    assert "| 1,000,000 | loyalty | 0.90 | 100 | 0.900 |  |  |" in table


def test_one_size_prints_no_growth_columns_and_every_exception_is_a_step_of_the_run():
    table = format_scale(_rows("loyalty", [(1_000_000, 0.9)]))
    assert table.splitlines()[0] == "| lines | step | seconds | peak MB | note |"
    assert set(EXCEPTIONS) <= set(STAGES)


def test_docs_explain_every_exception_of_the_cost_curve():
    from pathlib import Path

    doc = (Path(__file__).parents[2] / "docs" / "performance.md").read_text()
    for step in EXCEPTIONS:
        assert f"* `{step}`: " in doc


def test_a_load_from_python_says_it_measures_the_client():
    row = {"step": "api recommendations", "requests_per_s": 401.0, "p99_ms": 376.7, "errors": 0}
    assert "Python" not in _note({**row, "generator": "wrk"})
    assert "install wrk" in _note({**row, "generator": "python (asyncio + httpx; ...)"})
    assert _note({**row, "generator": "wrk"}).startswith("401 req/s, p99 376.7 ms, 0 errors")
