"""behavior.churn: metrics by hand, the model against the baselines, no leakage."""

from datetime import datetime, timedelta, timezone

import duckdb
import numpy as np
import pandas as pd
import pytest

from behavior import churn as C
from behavior import churn_choice as CC
from behavior.synth import SynthConfig, generate


def test_metrics_on_a_hand_computed_example():
    y = [1, 0, 1, 0]
    s = [0.9, 0.8, 0.3, 0.1]
    m = C.churn_metrics(y, s)
    # pairs (pos, neg): (0.9>0.8) (0.9>0.1) (0.3<0.8) (0.3>0.1) -> 3/4
    assert m["roc_auc"] == pytest.approx(0.75)
    # AP: ranks 1 (hit, P=1), 3 (hit, P=2/3) -> (1 + 2/3) / 2
    assert m["pr_auc"] == pytest.approx(5 / 6)
    assert m["brier"] == pytest.approx((0.01 + 0.64 + 0.49 + 0.01) / 4)
    # top 10% of 4 -> 1 row (0.9, churned): rate 1 / base 0.5
    assert m["lift_at_10pct"] == pytest.approx(2.0)
    cal = C.calibration_table(y, s)
    assert [r["bin"] for r in cal] == [1, 3, 8, 9]
    assert sum(r["count"] for r in cal) == 4
    assert cal[-1]["observed"] == 1.0 and cal[-1]["mean_predicted"] == pytest.approx(0.9)


def test_cutoffs_never_overlap_and_bad_history_is_explained():
    as_of = datetime(2025, 12, 1, tzinfo=timezone.utc)
    first = datetime(2024, 1, 1, tzinfo=timezone.utc)
    cuts = C.choose_cutoffs(as_of, first, 90)
    assert cuts.problem is None and cuts.test == as_of - timedelta(days=90)
    assert 1 <= len(cuts.train) <= C.MAX_TRAIN_CUTOFFS and cuts.train == sorted(cuts.train)
    assert all(c + timedelta(days=90) <= cuts.test for c in cuts.train)
    short = C.choose_cutoffs(datetime(2024, 4, 1, tzinfo=timezone.utc), first, 90, shorten=True)
    assert short.test is None and "too little history" in short.problem
    assert cuts.label_days == 90


def test_a_short_history_gets_shorter_labels_and_several_cutoffs_a_short_step_apart():
    """CDNOW's shape: 273 days of history, a 273-day horizon. The old rule had no training
    cutoff at all; the label window shrinks so a test window, a training window and a run of
    cutoffs fit, stepping by less than the window."""
    first = datetime(1997, 1, 1, tzinfo=timezone.utc)
    as_of = datetime(1997, 10, 1, tzinfo=timezone.utc)
    assert C.choose_cutoffs(as_of, first, 273).problem   # without `shorten`: the horizon or nothing
    cuts = C.choose_cutoffs(as_of, first, 273, shorten=True)
    assert cuts.problem is None and cuts.label_days == (273 - C.SHORT_HISTORY_DAYS) // 3 == 81
    assert cuts.test == as_of - timedelta(days=81) and len(cuts.train) == C.MAX_TRAIN_CUTOFFS
    assert all(c + timedelta(days=81) <= cuts.test and c >= first + timedelta(days=C.SHORT_HISTORY_DAYS)
               for c in cuts.train)
    steps = {(b - a).days for a, b in zip(cuts.train, cuts.train[1:])}
    assert len(steps) == 1 and 7 <= steps.pop() < 81
    # 200 days and a 90-day horizon: 56-day labels, four training cutoffs instead of none
    mid = C.choose_cutoffs(first + timedelta(days=200), first, 90, shorten=True)
    assert mid.label_days == 56 and len(mid.train) == C.MAX_TRAIN_CUTOFFS


@pytest.fixture(scope="module")
def synth():
    pay = generate(SynthConfig(users=4000, months=24, seed=3)).tables["payments"]
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET threads = 1")   # parallel float sums differ in the last bit; keep the fit reproducible
    con.register("payments", pay)
    last = pay["paid_at"].max().to_pydatetime()
    as_of = datetime(last.year, last.month, last.day, tzinfo=timezone.utc) + timedelta(days=1)
    cuts = C.choose_cutoffs(as_of, pay["paid_at"].min().to_pydatetime())
    train = pd.concat([C.cutoff_dataset(con, "payments", c) for c in cuts.train], ignore_index=True)
    test = C.cutoff_dataset(con, "payments", cuts.test)
    return pay, con, cuts, train, test


def test_on_the_synthetic_bgnbd_world_bgnbd_is_served_since_no_model_beats_it_beyond_the_noise(synth):
    """The generator draws purchases from BG/NBD, so BG/NBD's own P(no purchase) is close to the
    best possible score: the models may match it, not beat it beyond the noise, and the baseline
    is served. (A world where a model is needed: tests/behavior/test_churn_choice.py.)"""
    _, _, _, train, test = synth
    cols = C.feature_columns(train)
    assert {"recency_days", "frequency", "tenure_days", "spend_trend", "share_app", "failure_rate",
            "p_alive", "expected_purchases"} <= set(cols)
    chosen = CC.select(train, test, cols)
    rep = chosen.report
    assert rep["served"].startswith("bgnbd_") and not chosen.served.is_model, rep["selection"]
    assert set(rep["baselines"]) == set(C.BASELINES) and set(rep["models"]) == set(CC.MODELS)
    for c in rep["selection"]["candidates"]:
        if not c["baseline"]:
            assert c["gain_vs_chosen"][0] <= 0, c    # no model is better beyond the noise
    for name in ("recency", "frequency", "bgnbd_p_alive"):    # the simple rules lose beyond it
        assert rep["beat"][name]["interval"][0] > 0, (name, rep["beat"][name])
    served = chosen.served
    p = served.predict_proba(test)[:, 1]
    assert len(np.unique(p)) > 0.5 * len(np.unique(rep_scores := C.baseline_scores(test)[served.name]))
    assert np.all(np.diff(p[np.argsort(rep_scores, kind="stable")]) >= 0)   # the calibration keeps the ranking
    prob, reasons = C.churn_reasons(served, test[cols].head(300), context=test.head(300))
    assert np.allclose(prob, p[:300]) and any(reasons)
    assert all(r == "" or 1 <= len(r.split("; ")) <= 3 for r in reasons)
    # in chunks (bounded memory) the effects are still against the whole population's medians
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(C, "REASON_CHUNK", 7)
        chunked = C.churn_reasons(served, test[cols].head(300), context=test.head(300))
    assert np.array_equal(chunked[0], prob) and chunked[1] == reasons


def test_no_leakage_events_after_a_cutoff_do_not_change_its_features_or_labels(synth):
    pay, con, cuts, train, _ = synth
    c = cuts.train[0]
    h = timedelta(days=C.HORIZON_DAYS)
    before = train[train["cutoff"] == c].drop(columns=["cutoff"]).reset_index(drop=True)
    # delete every event after the label window, and rewrite those inside it (amounts, channel)
    late = pay["paid_at"] >= pd.Timestamp(c + h)
    changed = pay[~late].copy()
    window = changed["paid_at"] >= pd.Timestamp(c)
    changed.loc[window, "channel"] = "pos"
    changed.loc[window, "amount"] = changed.loc[window, "amount"] * 3
    con2 = duckdb.connect()
    con2.execute("SET TimeZone = 'UTC'")
    con2.register("payments", changed)
    after = C.cutoff_dataset(con2, "payments", c).drop(columns=["cutoff"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(before, after)
    # a later cutoff's label window covers the training windows only if they overlap: they never do
    assert all(t + h <= cuts.test for t in cuts.train)
    assert max(train["cutoff"]) + h <= cuts.test


def test_gain_curve_by_hand_and_for_random_and_perfect_rankings():
    y = [1, 0, 1, 0]
    g = C.gain_curve(y, [0.9, 0.8, 0.3, 0.1], points=5)   # top 0, 1, 2, 3, 4 customers
    assert g["share"] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert g["captured"] == [0.0, 0.5, 0.5, 1.0, 1.0]
    rng = np.random.default_rng(0)
    yy = rng.random(20_000) < 0.3
    rand = C.gain_curve(yy, rng.random(yy.size))
    assert len(rand["share"]) == 21
    assert np.allclose(rand["captured"], rand["share"], atol=0.02)
    perfect = C.gain_curve(yy, yy.astype(float))
    assert perfect["captured"][6] == 1.0                       # the top 30% hold every churner
    assert all(np.isnan(C.gain_curve([0, 0], [0.1, 0.2])["captured"]))


@pytest.fixture(scope="module")
def scored(synth):
    """The stage's scoring: a model refitted on every labeled cutoff, applied at as_of."""
    pay, con, cuts, train, test = synth
    full = pd.concat([train, test], ignore_index=True)
    cols = C.feature_columns(full)
    model = C.ChurnClassifier(max_iter=60).fit(full[cols], full["churned"])
    as_of = cuts.test + timedelta(days=C.HORIZON_DAYS)
    now = C.cutoff_dataset(con, "payments", as_of, labels=False)
    return model, now, cols


def test_every_at_risk_customer_has_a_reason_and_none_points_the_wrong_way(scored):
    model, now, cols = scored
    p, words = C.churn_reasons(model, now[cols], context=now)
    at_risk = p >= C.REASON_THRESHOLD
    assert at_risk.sum() >= 50   # the checks below must cover many customers
    assert all(words[i] for i in np.flatnonzero(at_risk))
    assert not any("up " in w or "spend trend +" in w for w in words)
    p, picked, refs = C.reason_features(model, now[cols])
    assert all(picked[i] for i in np.flatnonzero(at_risk))
    for i, feats in enumerate(picked):
        for f in feats:
            v = now[f].iat[i]
            assert C.RISK_DIRECTION[f] * (v - refs[f]) > 0, (f, v, refs[f])
            if f == "spend_trend":
                assert v < 0, v   # growth is never a reason to churn
    # the healthy reference is the customers expected to stay: they have bought more recently
    assert refs["recency_days"] < now.loc[at_risk, "recency_days"].median()


def test_reasons_are_worded_for_one_time_buyers_and_against_the_own_gap():
    row = {"recency_days": 730.0, "frequency": 0.0, "mean_gap_days": np.nan}
    assert C._fmt_reason("recency_days", row, 90) == "one-time buyer, not back for 730 days"
    row = {"recency_days": 120.0, "frequency": 4.0, "mean_gap_days": 30.0}
    assert C._fmt_reason("recency_days", row, 90) == "no purchase for 120 days, usually buys every 30 days"
    row = {"spend_trend": -0.6, "spend_90d": 40.0, "spend_prev_90d": 100.0}
    assert C._fmt_reason("spend_trend", row, 90) == "payments down 60% vs previous 90 days"


def test_cutoff_datasets_equal_one_cutoff_at_a_time_and_write_a_big_log_into_parts_once(synth, monkeypatch):
    """On a log split into user parts, the datasets of all cutoffs come from one write of the
    parts (one per cutoff before), and each equals `cutoff_dataset` at that cutoff alone."""
    from behavior import features as F

    pay, con, cuts, train, test = synth
    every = [*cuts.train, cuts.test]
    monkeypatch.setattr(F, "PART_LINES", len(pay) // 3)
    writes = []
    real = F.UserParts._write
    monkeypatch.setattr(F.UserParts, "_write", lambda self, k: writes.append(k) or real(self, k))
    frames = list(C.cutoff_datasets(con, "payments", every))
    assert len(writes) == 1 and writes[0] > 1
    for c, frame in zip(every, frames):
        alone = pd.concat([train, test])
        alone = alone[alone["cutoff"] == c].reset_index(drop=True)
        pd.testing.assert_frame_equal(frame, alone)


def test_known_bgnbd_figures_are_taken_as_they_are_and_only_with_the_model_that_computed_them():
    from behavior.btyd import BetaGeoFitter

    rng = np.random.default_rng(3)
    T = rng.integers(60, 400, 500).astype(float)
    x = rng.poisson(2, 500).astype(float)
    frame = pd.DataFrame({"frequency": x, "recency": np.where(x > 0, T * rng.uniform(0.1, 1, 500), 0.0).round(), "T": T})
    bg = BetaGeoFitter().fit(frame["frequency"], frame["recency"], frame["T"])
    computed = C.add_bgnbd(frame, 90, model=bg)
    marked = {"p_alive": np.full(500, 0.25), "expected_purchases": np.full(500, 1.5)}
    out = C.add_bgnbd(frame, 90, model=bg, known=marked)
    assert (out["p_alive"] == 0.25).all() and (out["expected_purchases"] == 1.5).all()
    # P(no purchase) is built on the P(alive) handed in
    r, alpha = bg.params_["r"], bg.params_["alpha"]
    assert np.array_equal(out["p_no_purchase"], 0.75 + 0.25 * ((alpha + T) / (alpha + T + 90)) ** (r + x))
    same = C.add_bgnbd(frame, 90, model=bg, known={"p_alive": computed["p_alive"].to_numpy()})
    pd.testing.assert_frame_equal(same, computed, check_exact=True)
    with pytest.raises(ValueError, match="fitted model"):
        C.add_bgnbd(frame, 90, known=marked)   # the default BG/NBD is fitted here: nothing computed them
    with pytest.raises(ValueError, match="p_alive and expected_purchases"):
        C.add_bgnbd(frame, 90, model=bg, known={"clv": np.zeros(500)})
