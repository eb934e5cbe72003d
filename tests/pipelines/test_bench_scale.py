"""`behavior bench scale` on a tiny size: every step timed, peaks measured, the API loaded on
the published bundle, the plot written; above PART_LINES the history is generated in parts."""

import json

import pytest

from pipelines.bench.scale import PART_LINES, _parts, format_scale, run_scale
from pipelines.stages import STAGES


@pytest.mark.slow
def test_scale_bench_times_every_step_and_plots(tmp_path):
    rows = run_scale([6000], tmp_path, api_seconds=2)
    steps = [r["step"] for r in rows]
    assert steps == ["synth", "ingest", *STAGES, "publish + start-up", "ingest + run", "api start-up",
                     "api recommendations"]
    api = rows[-1]
    assert api["requests_per_s"] > 50 and api["errors"] == 0 and api["peak_mb"] > 50
    assert "req/s" in format_scale(rows)
    total = rows[-3]
    assert total["seconds"] >= sum(r["seconds"] for r in rows if r["step"] in STAGES)
    assert all(r["peak_mb"] > 50 for r in rows if r["step"] not in ("synth",))
    assert total["met"] is True and "10M" in total["target"]
    from pipelines.bench.scale import TARGET
    assert not TARGET[1]({"lines": 9_994_341, "seconds": 1136.7, "peak_mb": 5755})   # a 10M run that took 19 min
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
