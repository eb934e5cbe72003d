"""Merchant churn risk: labels on a hand-made log, the selection rule, reasons in words."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from behavior import merchant_churn as MC
from behavior.merchant_profiles import merchant_profiles
from behavior.schema import PAYMENTS

UTC = timezone.utc
CUT = datetime(2025, 4, 1, tzinfo=UTC)


def _lines(merchant: str, n: int, start_days: float, span_days: float) -> list[dict]:
    """n successful payments at `merchant` spread over [CUT + start, CUT + start + span)."""
    return [{"payment_id": f"{merchant}-{start_days}-{i}", "line_no": 0, "user_id": f"u{i % 7}",
             "merchant_id": merchant, "item_id": "i1", "category": "food", "quantity": 1,
             "amount": Decimal("10.00"), "currency": "EUR",
             "paid_at": CUT + timedelta(days=start_days + span_days * (i + 0.5) / n), "channel": "app",
             "status": "success", "promotion_id": None} for i in range(n)]


def test_labels_mark_a_fall_by_more_than_half_among_active_merchants():
    rows = (_lines("fell", 20, -90, 90) + _lines("fell", 9, 0, 90)       # 9 < 10: churned
            + _lines("kept", 20, -90, 90) + _lines("kept", 10, 0, 90)    # exactly half: kept
            + _lines("tiny", 9, -90, 90) + _lines("gone", 30, -90, 90)   # tiny: not active; gone: churned
            + _lines("late", 30, 100, 10))                              # after the label window: not read
    con = duckdb.connect()
    con.register("payments", pa.Table.from_pylist(rows, schema=PAYMENTS.arrow_schema))
    lab = MC.label(MC.profiles_at_cutoffs(con, "payments", CUT + timedelta(days=90), [CUT])[CUT])
    lab = lab.set_index("merchant_id")
    assert set(lab.index) == {"fell", "kept", "gone"}
    assert lab.loc["fell", "churned"] == 1 and lab.loc["fell", "future_payments"] == 9
    assert lab.loc["kept", "churned"] == 0 and lab.loc["gone", "churned"] == 1
    assert lab.loc["gone", "future_payments"] == 0


def test_selection_keeps_the_baseline_unless_the_model_is_clearly_better():
    rng = np.random.default_rng(0)
    y = (rng.random(400) < 0.2).astype(int)
    noise = rng.random(400)
    good = y + 0.3 * rng.random(400)                     # separates the classes
    sel = MC.select(y, good, {"volume_trend": noise, "recency": rng.random(400)})
    rows = {c["name"]: c for c in sel.report()["candidates"]}
    assert sel.chosen == "model" and sel.model_chosen and rows["model"]["value"] - rows["volume_trend"]["value"] > 0.3
    assert rows["volume_trend"]["gain_vs_chosen"][1] < 0 and rows["recency"]["gain_vs_chosen"][1] < 0
    assert MC.selection_note(sel) == f"{sel.report()['summary']}; the model's risk is published"
    assert MC.selection_note(sel).startswith("served the model: beats ")
    same = MC.select(y, noise, {"volume_trend": noise})  # no better than the baseline
    assert same.chosen == "volume_trend" and not same.model_chosen
    slight = MC.select(y, good, {"volume_trend": good + 0.01 * rng.random(400)})
    assert slight.chosen == "volume_trend"                # inside its uncertainty
    lo, hi = {c["name"]: c for c in slight.report()["candidates"]}["model"]["gain_vs_chosen"]
    assert lo <= 0 <= hi
    assert MC.selection_note(slight).startswith("kept the baseline volume_trend: the model gains ")
    assert MC.selection_note(slight).endswith(", within its uncertainty; the calibrated volume_trend baseline is "
                                              "published as the risk")
    assert slight.report()["metric"] == "roc_auc" and slight.report()["n_boot"] <= MC.N_BOOT


def test_model_learns_a_falling_volume_and_follows_sklearn_conventions():
    rng = np.random.default_rng(1)
    n = 600
    trend = rng.uniform(-0.9, 0.5, n)
    frame = pd.DataFrame({c: rng.random(n) for c in MC.FEATURES})
    frame["payments_trend_90d"] = trend
    y = (trend + 0.2 * rng.standard_normal(n) < -0.4).astype(int)
    model = MC.MerchantRiskModel().fit(frame, y)
    p = model.predict_proba(frame)[:, 1]
    assert p[trend < -0.7].mean() > 0.5 > p[trend > 0].mean()
    with pytest.raises(ValueError, match="both"):
        MC.MerchantRiskModel().fit(frame, np.zeros(n))
    from sklearn.exceptions import NotFittedError
    with pytest.raises(NotFittedError):
        MC.MerchantRiskModel().predict_proba(frame)


def test_features_carry_the_fall_a_fade_and_a_silence_point_to():
    frame = pd.DataFrame({"payments_30d": [30.0, 0.0, 4.0], "payments_90d": [90.0, 90.0, 12.0],
                          "days_since_last_payment": [1.0, 40.0, 3.0], "payments_trend_90d": [0.0, -0.2, np.nan]})
    X = MC.design_matrix(frame)
    steady, faded, small = X
    # P(Poisson(90) < 45) is ~1e-7 (log ~ -16); at a 30-day pace of 0 the fall is certain (log 0)
    assert steady[0] < -12 and faded[0] == pytest.approx(0.0, abs=1e-9)
    assert steady[1] == pytest.approx(faded[1])
    assert steady[1] < small[1] < 0                                     # a small merchant falls by noise alone
    assert faded[2] == pytest.approx(np.log1p(40.0)) and steady[2] == pytest.approx(np.log1p(1.0))
    assert small[3] == 0.0 and faded[3] == -0.2


def test_reasons_say_in_words_why_the_risk_is_high():
    frame = pd.DataFrame([
        {"payments_trend_90d": -0.6, "customers_trend_90d": -0.1, "revenue_trend_90d": np.nan,
         "days_since_last_payment": 40.0, "payments_trend_30d": 0.0, "failure_rate": 0.01, "refund_rate": 0.0,
         "retention_90d": 0.5},
        {"payments_trend_90d": 0.1, "customers_trend_90d": 0.0, "revenue_trend_90d": 0.0,
         "days_since_last_payment": 1.0, "payments_trend_30d": 0.0, "failure_rate": 0.2, "refund_rate": 0.0,
         "retention_90d": 0.5},
        {"payments_trend_90d": 0.1, "customers_trend_90d": 0.0, "revenue_trend_90d": 0.0,
         "days_since_last_payment": 1.0, "payments_trend_30d": 0.0, "failure_rate": 0.0, "refund_rate": 0.0,
         "retention_90d": 0.5},
    ] * 2)
    reasons = MC.risk_reasons(frame, np.array([0.9, 0.8, 0.7, 0.2, np.nan, 0.1]))
    assert reasons[0] == "no payment for 40 days; payments down 60% vs the previous 90 days"
    assert reasons[1] == "20% of payment attempts fail"
    assert "no single sign" in reasons[2]
    assert reasons[3:] == [None, None, None]


def test_planted_merchants_that_stop_are_labelled_churned_before_they_stop():
    from behavior.synth import SynthConfig, generate

    d = generate(SynthConfig(users=6000, seed=3, items=1500))
    con = duckdb.connect()
    con.register("payments", d.tables["payments"])
    checked = 0
    for mid, t in d.truth["merchants"].items():
        change = datetime.fromisoformat(t["change_at"])
        # a stopped merchant 30 days before its stop (its fade half done), a growing one after its change
        cut = change - timedelta(days=30) if t["trajectory"] == "stopped" else change + timedelta(days=5)
        if t["trajectory"] == "declining" or cut + timedelta(days=90) > pd.Timestamp(d.truth["observation_end"]):
            continue
        lab = MC.label(MC.profiles_at_cutoffs(con, "payments", cut + timedelta(days=90), [cut])[cut])
        lab = lab.set_index("merchant_id")
        if mid not in lab.index:
            continue   # fewer than MIN_VOLUME payments: not active
        assert lab.loc[mid, "churned"] == (1 if t["trajectory"] == "stopped" else 0), (mid, t)
        checked += 1
    assert checked >= 4


def test_profiles_at_cutoffs_equal_the_full_profiles_columns_from_one_read():
    """Known answer: the narrow cutoff frames are the full merchant profile's columns the model
    and the baselines read, at every cutoff (whole days before as_of, as_of mid-day), with the
    same merchants in the same order; a payment's time is that of its first line."""
    from behavior.synth import SynthConfig, generate

    d = generate(SynthConfig(users=3000, seed=4, items=800))
    pay = d.tables["payments"]
    late = pay[pay["payment_id"] == pay["payment_id"].iloc[0]].copy()
    late["line_no"] = 99
    late["paid_at"] = late["paid_at"] + pd.Timedelta(days=200)   # a later line of a payment: not its time
    con = duckdb.connect()
    con.register("payments", pd.concat([pay, late], ignore_index=True))
    as_of = pd.Timestamp(d.truth["observation_end"]).to_pydatetime() - timedelta(hours=5, microseconds=7)
    cuts = [as_of - timedelta(days=k) for k in (90, 120, 180, 300, 600)]
    at = MC.profiles_at_cutoffs(con, "payments", as_of, cuts)
    cols = ["merchant_id", *MC.FEATURES, "payments_prev_90d"]
    for c in cuts:
        full = merchant_profiles(con, "payments", c)
        full = full[full["payments"] > 0][cols].reset_index(drop=True)
        assert len(full) > 50
        pd.testing.assert_frame_equal(at[c][cols], full, check_exact=True)
    with pytest.raises(ValueError, match="whole number of days"):
        MC.profiles_at_cutoffs(con, "payments", as_of, [as_of - timedelta(days=90, hours=1)])


def test_cutoff_frames_hold_a_row_per_merchant_and_window_span_however_old_the_history():
    """Known answer from activity rows reaching back 10**12 days: the counts, last payment and
    labels at two cutoffs come from sums over the spans between window ends, so the history's
    length costs nothing (a table of every day since the first one cannot be allocated)."""
    as_of = datetime(2025, 1, 1, tzinfo=timezone.utc)
    us = 86_400_000_000
    as_of_us = int(as_of.timestamp()) * 1_000_000

    def row(m: str, day: int, n: int) -> dict:
        return {"merchant_id": m, "day": day, "payments": n, "last_us": max(as_of_us + day * us + 5, -2**62)}

    rows = [row("m2", -10**12, 7), row("m2", -200, 1), row("m2", -95, 4), row("m2", -91, 2), row("m2", -20, 6),
            row("m1", -150, 3), row("m1", -100, 1), row("m1", -60, 9),   # m1: nothing before -150
            row("m2", -20, 1)]   # the same merchant and day again, from another user part
    activity = pa.Table.from_pylist(rows)
    at = MC.cutoff_frames(activity, as_of, [as_of - timedelta(days=90), as_of - timedelta(days=10)])
    c90, c10 = at[as_of - timedelta(days=90)], at[as_of - timedelta(days=10)]
    assert c90["merchant_id"].tolist() == ["m1", "m2"]
    assert c90["payments_30d"].tolist() == [1, 6] and c90["payments_90d"].tolist() == [4, 6]
    assert c90["payments_prev_90d"].tolist() == [0, 1] and c90["future_payments"].tolist() == [9, 7]
    assert c90["days_since_last_payment"].tolist() == pytest.approx([10 - 5e-6 / 86_400, 1 - 5e-6 / 86_400])
    assert c10["payments_90d"].tolist() == [10, 13] and "future_payments" not in c10
    assert c10["days_since_last_payment"].tolist() == pytest.approx([50, 10], abs=1e-9)


def test_cutoff_frames_of_the_parts_chunks_equal_those_of_one_table():
    """The activity rows of several user parts (one chunk each, a merchant in some of them only,
    an empty part) give the frames of the same rows in one chunk, in any order."""
    as_of = datetime(2025, 1, 1, tzinfo=timezone.utc)
    rng = np.random.default_rng(3)
    n = 3_000
    rows = pa.table({"merchant_id": pa.array([f"m{i}" for i in rng.integers(0, 40, n)], pa.string()),
                     "day": pa.array(rng.integers(-700, 0, n), pa.int64()),
                     "payments": pa.array(rng.integers(1, 5, n), pa.int64()),
                     "last_us": pa.array(rng.integers(0, 2**50, n), pa.int64())})
    cuts = [as_of - timedelta(days=k) for k in (90, 120, 300)]
    whole = MC.cutoff_frames(rows, as_of, cuts)
    order = np.argsort(rows.column("merchant_id").to_numpy(zero_copy_only=False), kind="stable")
    by_merchant = rows.take(order)   # so that the later parts hold merchants the first ones lack
    parts = pa.concat_tables([by_merchant.slice(0, 1000), by_merchant.slice(1000, 0), by_merchant.slice(1000, 1500),
                              by_merchant.slice(2500)])
    assert parts.column("merchant_id").num_chunks == 4
    chunked = MC.cutoff_frames(parts, as_of, cuts)
    for c in cuts:
        assert len(whole[c]) == 40
        pd.testing.assert_frame_equal(chunked[c], whole[c], check_exact=True)
