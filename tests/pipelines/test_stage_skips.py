"""Stages that cannot work on the data they get skip with a reason (`StageSkipped`): the run
goes on, the report says why, the bundle holds what the other stages built."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from api.bundle import load_bundle
from pipelines import stages
from pipelines.config import Config
from behavior.store.datahome import DataHome
from pipelines.ingest import IngestOptions, ingest
from pipelines.runner import Stage, StageSkipped, run_pipeline


def lake(tmp_path, lines: list[str]) -> DataHome:
    """A data home whose lake holds `lines` ("user,item,paid_at" each) as an order export."""
    src = tmp_path / "orders.csv"
    rows = [f"O-{i},{line},19.90,EUR" for i, line in enumerate(lines, start=1)]
    src.write_text("payment_id,user_id,item_id,paid_at,amount,currency\n" + "\n".join(rows) + "\n")
    home = DataHome(tmp_path / "data")
    ingest(home, [src], IngestOptions(defaults={"currency": "EUR"}))
    return home


# Two customers over three months: one bought before the validation period and in it.
ENOUGH = ["C-1,SKU-1,2025-01-01 10:00", "C-1,SKU-2,2025-02-10 11:00", "C-2,SKU-2,2025-02-11 11:00",
          "C-2,SKU-1,2025-03-20 11:00", "C-1,SKU-1,2025-03-21 11:00"]


@pytest.mark.parametrize("lines, why", [
    (["C-1,SKU-1,2025-03-01 10:00", "C-1,SKU-2,2025-03-01 10:05"], "no purchase before 2025-01-01"),
    (["C-1,SKU-1,2024-12-15 10:00", "C-1,SKU-2,2025-03-01 10:00"],
     "no purchase in the validation period 2025-01-01 to 2025-01-31"),
    (["C-1,SKU-1,2024-12-15 10:00", "C-2,SKU-2,2025-01-10 10:00", "C-2,SKU-1,2025-03-01 10:00"],
     "no buyer in the validation period 2025-01-01 to 2025-01-31 also bought before it"),
], ids=["one-day", "empty-validation", "no-returning-buyer"])
def test_a_history_shorter_than_the_recommenders_periods_skips_it(tmp_path, lines, why):
    home = lake(tmp_path, lines)
    rep = run_pipeline(home, Config(), stages=["recommend"])   # raised before: no bundle at all
    assert why in rep["recommend"]["skipped"] and "choose a later --as-of" in rep["recommend"]["skipped"]
    assert rep["stages"]["recommend"]["skipped"] == rep["recommend"]["skipped"]
    assert not (home.bundles / rep["bundle_version"] / "recommender.npz").exists()


def test_enough_history_trains_the_recommender(tmp_path):
    home = lake(tmp_path, ENOUGH)
    rep = run_pipeline(home, Config(), stages=["recommend"])
    assert "skipped" not in rep["recommend"] and rep["recommend"]["selected"]
    assert (home.bundles / rep["bundle_version"] / "recommender.npz").exists()


def test_a_skipped_stage_leaves_nothing_and_skips_only_the_stages_that_require_it(tmp_path, monkeypatch):
    home = lake(tmp_path, ENOUGH)

    def half_built(name):
        def run(ctx):   # a report section started, then the stage gives up
            raise StageSkipped(f"no {name} for this lake", report={"notes": ["started"]})
        return run

    for name in ("loyalty", "segments"):
        real = stages.STAGES[name]
        monkeypatch.setitem(stages.STAGES, name, Stage(name, real.needs, half_built(name), optional=real.optional))
    rep = run_pipeline(home, Config())

    assert rep["loyalty"] == {"skipped": "no loyalty for this lake",
                              "notes": ["started", "loyalty skipped: no loyalty for this lake"]}
    assert rep["segments"]["skipped"] == "no segments for this lake"
    # merchants needs loyalty's CLV; churn, recommend and profiles can do without both
    assert rep["stages"]["merchants"]["skipped"] == ("it needs the output of the loyalty stage, which was "
                                                     "skipped (no loyalty for this lake)")
    assert all("skipped" not in rep["stages"][s] for s in ("features", "churn", "recommend", "promotions", "profiles"))
    folder = home.bundles / rep["bundle_version"]
    names = {p.name for p in folder.iterdir()}
    assert not names & {"loyalty_part.parquet", "segments_part.parquet", "merchants.parquet"}
    assert {"recommender.npz", "profiles.parquet"} <= names and rep["active"] is True
    profiles = pq.read_table(folder / "profiles.parquet")
    assert "p_alive" not in profiles.column_names and profiles.column("segment").null_count == 2
    bundle = load_bundle(folder)                  # the API serves it: segment is there, if null
    assert bundle.skipped("segments") == "no segments for this lake" and bundle.skipped("promotions") is None
    assert bundle.recommender is not None and bundle.profiles.row("C-2")["segment"] is None
