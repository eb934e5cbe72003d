"""`behavior bench scale` on a tiny size: every step timed, peaks measured, the plot written."""

import json

from pipelines.bench_scale import run_scale
from pipelines.stages import STAGES


def test_scale_bench_times_every_step_and_plots(tmp_path):
    rows = run_scale([6000], tmp_path)
    steps = [r["step"] for r in rows]
    assert steps == ["synth", "ingest", *STAGES, "publish + start-up", "ingest + run"]
    total = rows[-1]
    assert total["seconds"] >= sum(r["seconds"] for r in rows if r["step"] in STAGES)
    assert all(r["peak_mb"] > 50 for r in rows if r["step"] not in ("synth",))
    assert total["met"] is True and "10M" in total["target"]
    from pipelines.bench_scale import TARGET
    assert not TARGET[1]({"lines": 9_994_341, "seconds": 1136.7, "peak_mb": 5755})   # a 10M run that took 19 min
    assert json.loads((tmp_path / "scale.json").read_text()) == rows
    assert (tmp_path / "scale.png").stat().st_size > 10_000
    assert not (tmp_path / "scale-6000").exists()
