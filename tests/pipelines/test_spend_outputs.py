"""Spend-based outputs on real shapes of amounts: a payment log where one customer's repeat
order cost 0.00 (a free replacement), and a lake without any amount column."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from behavior.promotions import NO_AMOUNTS
from pipelines.config import Config
from behavior.store.datahome import DataHome
from pipelines.ingest import IngestOptions, ingest
from pipelines.runner import run_pipeline
from pipelines.stages.segments import NO_AMOUNTS as SEGMENTS_NO_AMOUNTS
from pipelines.summary import run_summary
from pipelines.synth_files import write_synth

def free_repeat_order(synth) -> str:
    """Rewrite the synthetic log so that one customer who paid on exactly two days paid 0.00 on
    the second (a free replacement order); returns that customer."""
    pay = pq.read_table(synth / "payments.parquet").to_pandas()
    pay["day"] = pay["paid_at"].dt.floor("D")
    days = pay.groupby("user_id")["day"].nunique()
    clean = pay.groupby("user_id")["status"].agg(lambda s: (s == "success").all())
    user = sorted(days[(days == 2) & clean].index)[0]
    second = (pay["user_id"] == user) & (pay["day"] == pay.loc[pay["user_id"] == user, "day"].max())
    pay.loc[second, "amount"] = pay.loc[second, "amount"] * 0
    pq.write_table(pa.Table.from_pandas(pay.drop(columns=["day"]), preserve_index=False),
                   synth / "payments.parquet")
    return user


def test_a_zero_amount_repeat_purchase_gets_the_population_mean_not_everyone_empty(tmp_path):
    synth = tmp_path / "synth"
    write_synth(synth, users=1500, months=12, seed=3)
    free = free_repeat_order(synth)
    home = DataHome(tmp_path / "data")
    ingest(home, [synth], IngestOptions())
    rep = run_pipeline(home, Config(), stages=["profiles"])
    gg = rep["loyalty"]["gamma_gamma"]
    assert set(gg["params"]) == {"p", "q", "v"}, gg          # was {"error": "monetary_value must be positive ..."}
    assert gg["fallback"]["customers"] == 1 and "population mean" in gg["fallback"]["rule"]
    profiles = pq.read_table(home.bundles / rep["bundle_version"] / "profiles.parquet").to_pandas()
    profiles = profiles.set_index("user_id")
    assert profiles["clv"].notna().all() and profiles["expected_spend"].notna().all()   # was null for everyone
    assert profiles.index[profiles["spend_fallback"]].tolist() == [free]
    row = profiles.loc[free]
    assert row["monetary_value"] == 0 and row["frequency"] == 1
    p, q, v = (gg["params"][k] for k in ("p", "q", "v"))
    assert row["expected_spend"] == pytest.approx(p * v / (q - 1)) == pytest.approx(gg["fallback"]["expected_spend"])
    one_time = profiles[profiles["frequency"] == 0]
    assert len(one_time) and np.allclose(one_time["expected_spend"], row["expected_spend"])
    assert row["clv"] > 0 and row["expected_purchases"] > 0


def test_a_lake_without_amounts_skips_the_spend_outputs_with_notes(tmp_path):
    synth = tmp_path / "synth"
    write_synth(synth, users=1500, months=12, seed=3, promo_assign_rate=0.5)
    pay = pq.read_table(synth / "payments.parquet")
    pq.write_table(pay.drop_columns(["amount"]), synth / "payments.parquet")   # an export with no amounts
    home = DataHome(tmp_path / "data")
    ingest(home, [synth], IngestOptions())
    rep = run_pipeline(home, Config())

    assert "the lake has no amounts" in rep["loyalty"]["gamma_gamma"]["skipped"]
    assert rep["segments"]["notes"] == [SEGMENTS_NO_AMOUNTS]
    promos = rep["promotions"]
    estimated = [e for e in promos["effectiveness"].values() if e["status"] == "estimated"]
    assert estimated and NO_AMOUNTS in promos["notes"]
    for e in estimated:   # was a revenue lift of 0 with a [0, 0] interval and -cost as net revenue
        assert e["revenue_per_user"] == {"skipped": NO_AMOUNTS}
        assert "revenue" not in e["cuped"] and not {"revenue", "net_revenue"} & set(e["incremental"])
        assert e["conversion"]["lift_ci"] and e["incremental"]["redemptions"] > 0
    profiles = pq.read_table(home.bundles / rep["bundle_version"] / "profiles.parquet").to_pandas()
    for col in ("net_spend", "monetary_value", "expected_spend", "clv", "m_score"):
        assert profiles[col].isna().all(), col
    assert not profiles["spend_fallback"].any() and profiles["p_alive"].notna().all()
    assert rep["report_html"]["errors"] == [] and rep["active"]
    summary = run_summary(rep, home)
    assert "no revenue (no amounts)" in summary and "gamma-gamma: the lake has no amounts" in summary
