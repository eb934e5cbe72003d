"""The loyalty, segments, merchants and profiles stages through the runner, on synthetic data."""

import json

import numpy as np
import pandas.testing as pd_testing
import pyarrow.parquet as pq
import pytest

from behavior.segments import SEGMENTS
from pipelines.config import Config
from pipelines.ingest import IngestOptions, ingest
from pipelines.runner import run_pipeline
from pipelines.synth_files import write_synth


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    from behavior.store.datahome import DataHome

    root = tmp_path_factory.mktemp("loyalty")
    write_synth(root / "synth", users=4000, months=18, seed=11)
    home = DataHome(root / "data")
    ingest(home, [root / "synth"], IngestOptions())
    return home, root


def bundle(home, report):
    return home.bundles / report["bundle_version"]


@pytest.mark.slow
def test_report_and_profiles_carry_the_loyalty_columns(lake):
    home, _ = lake
    rep = run_pipeline(home, Config())
    loy = rep["loyalty"]
    assert set(loy["bgnbd"]["params"]) == {"r", "alpha", "a", "b"} and np.isfinite(loy["bgnbd"]["log_likelihood"])
    assert set(loy["gamma_gamma"]["params"]) == {"p", "q", "v"}
    assert loy["horizons_days"] == {"expected_purchases": 90, "clv": 365}
    ho = loy["holdout"]
    assert ho["days"] == 90 and ho["customers"] > 1000 and abs(ho["error_pct"]) < 15
    assert sum(b["customers"] for b in ho["by_frequency"]) == ho["customers"]
    # the model is chosen on the holdout (drawn from BG/NBD: the simpler model stays) and reported
    assert loy["selection"]["chosen"] == loy["model"] == ho["model"] == "bgnbd" and loy["model_forced"] is False
    assert {c["name"] for c in loy["selection"]["candidates"]} == {"bgnbd", "mbgnbd"}
    assert ho["curve"]["days"][-1] == 90 and ho["curve"]["actual"][-1] == ho["actual_total"]
    assert list(rep["segments"]["counts"]) == list(SEGMENTS)
    profiles = pq.read_table(bundle(home, rep) / "profiles.parquet").to_pandas()
    assert sum(rep["segments"]["counts"].values()) == len(profiles)
    for col in ("p_alive", "expected_purchases", "expected_spend", "clv", "segment", "loyalty_score", "loyalty_tier",
                "r_score", "marketing_opt_out"):
        assert col in profiles.columns, col
    assert profiles["p_alive"].between(0, 1).all() and (profiles["clv"] >= 0).all()
    assert profiles["loyalty_score"].between(0, 100).all()
    # BG/NBD: a customer without repeat purchases is alive with probability 1.
    assert np.allclose(profiles.loc[profiles["frequency"] == 0, "p_alive"], 1.0)
    merchants = pq.read_table(bundle(home, rep) / "merchants.parquet").to_pandas()
    assert merchants["merchant_id"].is_unique and merchants["mean_customer_clv"].notna().any()
    for col in ("payments_90d", "payments_trend_90d", "share_of_wallet", "tier_share_gold", "merchant_segment"):
        assert col in merchants.columns, col
    assert merchants["tier_share_gold"].notna().any()
    assert sum(rep["merchants"]["counts"].values()) == len(merchants) == rep["merchants"]["merchants"]
    assert json.loads((bundle(home, rep) / "report.json").read_text())["loyalty"]["model"] == "bgnbd"


def test_modified_model_is_a_config_choice(lake):
    from dataclasses import replace

    home, _ = lake
    cfg = Config()
    rep = run_pipeline(home, replace(cfg, loyalty=replace(cfg.loyalty, model="mbgnbd")), stages=["loyalty"])
    assert rep["loyalty"]["model"] == "mbgnbd" == rep["loyalty"]["selection"]["chosen"]
    assert any("forces" in n for n in rep["loyalty"]["selection"]["notes"]) and rep["loyalty"]["model_forced"]
    assert set(rep["stages"]) == {"features", "loyalty"}


@pytest.mark.slow
def test_without_amounts_gamma_gamma_and_clv_are_skipped_not_failed(tmp_path, lake):
    import pyarrow as pa

    from behavior.store.datahome import DataHome

    _, root = lake
    pay = pq.read_table(root / "synth" / "payments.parquet").drop_columns(["amount"])
    pq.write_table(pay, tmp_path / "payments.parquet")
    home = DataHome(tmp_path / "data")
    ingest(home, [tmp_path / "payments.parquet"], IngestOptions())
    rep = run_pipeline(home, Config())
    assert "no amounts" in rep["loyalty"]["gamma_gamma"]["skipped"]
    profiles = pq.read_table(bundle(home, rep) / "profiles.parquet").to_pandas()
    assert profiles["clv"].isna().all() and profiles["p_alive"].notna().all()
    assert profiles["m_score"].isna().all() and profiles["segment"].notna().all()


def test_holdout_needs_history_and_says_so(lake):
    from datetime import datetime, timezone

    home, _ = lake
    rep = run_pipeline(home, Config(), as_of=datetime(2024, 3, 1, tzinfo=timezone.utc), stages=["loyalty"])
    assert "skipped" in rep["loyalty"]["holdout"]


def test_profiles_line_up_each_table_by_user_id():
    """A per-user table in another order, or without some users, is matched on user_id (nulls
    where a user has no row); one in the feature table's order is taken as is."""
    import pyarrow as pa

    from pipelines.stages.align import aligned

    ids = pa.chunked_array([["a", "b", "c", "d"]])
    shuffled = pa.table({"user_id": ["c", "a", "d"], "x": [3, 1, 4], "y": ["C", "A", "D"]})
    got = aligned(ids, shuffled)
    assert got.column_names == ["x", "y"]
    assert got.column("x").to_pylist() == [1, None, 3, 4] and got.column("y").to_pylist() == ["A", None, "C", "D"]
    same = pa.table({"user_id": ["a", "b", "c", "d"], "x": [1, 2, 3, 4]})
    assert aligned(ids, same).column("x").to_pylist() == [1, 2, 3, 4]
    with pytest.raises(AssertionError, match="twice"):   # a repeated user is never silently dropped
        aligned(ids, pa.table({"user_id": ["c", "a", "c"], "x": [3, 1, 5]}))


def test_a_run_writes_one_set_of_user_parts_for_its_per_user_queries(lake, monkeypatch):
    """With a big log (here: parts of a few thousand lines) the feature table, the loyalty
    holdout, merchant loyalty and the promotion starts read one set of user parts, written
    once, and give what the one-piece queries give; the parts are gone after the run."""
    import behavior.features as F
    from behavior.sql_dialect import DuckDBEngine

    home, _ = lake
    stages = ["merchants", "promotions"]
    whole = run_pipeline(home, Config(), stages=stages)
    monkeypatch.setattr(F, "PART_LINES", 20_000)
    copies = []
    real = DuckDBEngine.execute
    monkeypatch.setattr(DuckDBEngine, "execute", lambda self, sql: copies.append(sql) or real(self, sql))
    parts = run_pipeline(home, Config(), stages=stages)
    assert len(copies) == 1 and "PARTITION_BY (part)" in copies[0]
    assert parts["stages"]["features"]["rows"] == whole["stages"]["features"]["rows"] > 3000
    assert parts["loyalty"]["holdout"] == whole["loyalty"]["holdout"]
    a, b = ({k: v for k, v in r["promotions"].items() if k != "seconds"} for r in (whole, parts))
    assert a == b and a["effectiveness"]
    a, b = (pq.read_table(bundle(home, r) / "merchants.parquet").to_pandas() for r in (whole, parts))
    pd_testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-12)
    assert not any((home.root / "tmp").glob("parts-*"))
