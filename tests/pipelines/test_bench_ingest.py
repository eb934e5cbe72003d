"""`behavior bench ingest`: ingest beside DuckDB's own COPY of the same file, per format, in the
same run; and the measuring loop the suites share."""

import pytest

from pipelines.bench.child import measure
from pipelines.bench.ingest import TARGET_RATIO, bench_ingest, ingest_row
from pipelines.bench.suites import format_table


def test_ingest_and_its_floor_store_every_line_and_the_row_gives_their_ratio(tmp_path):
    rows = bench_ingest([3000], 1, tmp_path)
    assert [r["step"] for r in rows] == ["ingest csv", "ingest parquet"]
    for r in rows:
        assert r["lines"] == 3000 and r["runs"] == 1
        assert _ratio_of(r["ratio"], r["seconds"], r["floor_seconds"])
        assert r["floor_peak_mb"] > 50 and r["peak_mb"] > 50
        assert r["met"] == (r["ratio"] <= TARGET_RATIO)
        assert r["cpu_s"] > 0 and _ratio_of(r["cpu_ratio"], r["cpu_s"], r["floor_cpu_s"])
    table = format_table(rows)
    assert "| ingest csv | 3,000 |" in table and f"{rows[0]['ratio']:.2f}x" in table
    assert not list(tmp_path.glob("home-*")) and not list(tmp_path.glob("payments-*"))   # nothing left behind


def _ratio_of(ratio: float, a: float, b: float) -> bool:
    """Whether `ratio` (to 2 decimals) is a / b of the unrounded figures that `a` and `b` show to
    3 decimals (a 3000-line floor takes a few milliseconds: their rounding alone moves the
    quotient by several percent)."""
    return (a - 5e-4) / (b + 5e-4) - 5e-3 <= ratio <= (a + 5e-4) / (b - 5e-4) + 5e-3


def test_the_ratio_is_of_the_medians_and_the_target_is_one_and_a_half_times_the_floor():
    ingest = [{"seconds": s, "peak_mb": 900.0} for s in (3.0, 6.0, 4.5)]
    floor = [{"seconds": s, "peak_mb": 400.0} for s in (2.0, 3.0, 9.0)]
    row = ingest_row("ingest csv", 1_000_000, ingest, floor)
    assert (row["seconds"], row["floor_seconds"], row["ratio"], row["met"]) == (4.5, 3.0, 1.5, True)
    assert (row["peak_mb"], row["floor_peak_mb"], row["lines_per_s"]) == (900.0, 400.0, 222_222)
    assert not ingest_row("ingest csv", 10, [{"seconds": 3.1, "peak_mb": 1}], [{"seconds": 2.0, "peak_mb": 1}])["met"]
    assert "cpu_ratio" not in row   # runs without CPU seconds
    timed = ingest_row("ingest csv", 10, [{"seconds": 3.0, "cpu": 4.0, "peak_mb": 1}], [{"seconds": 2.0, "cpu": 2.0, "peak_mb": 1}])
    assert (timed["cpu_s"], timed["floor_cpu_s"], timed["cpu_ratio"]) == (4.0, 2.0, 2.0)


def test_measure_interleaves_the_steps_and_starts_each_run_without_the_fresh_folder(tmp_path):
    fresh = tmp_path / "home"
    code = ("from pathlib import Path\np = Path(sys.argv[1])\nexisted = p.exists()\np.mkdir()\n"
            "res = {'existed': existed, 'step': sys.argv[2], 'seconds': 0.0}")
    said = []
    runs = measure({"a": (code, str(fresh), "a"), "b": (code, str(fresh), "b")}, repeat=2, label="x",
                   progress=said.append, fresh=fresh)
    assert said == ["x: a, run 1/2", "x: b, run 1/2", "x: a, run 2/2", "x: b, run 2/2"]
    assert [r["step"] for r in runs["a"]] == ["a", "a"] and not any(r["existed"] for r in runs["a"] + runs["b"])
    assert all(r["peak_mb"] > 5 for r in runs["b"]) and not fresh.exists()
