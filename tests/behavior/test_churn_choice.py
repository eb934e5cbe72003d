"""behavior.churn_choice and churn_calibration: the served churn score is never below a baseline.

Two planted worlds, simulated day by day:
- recency decides: each day a customer buys with a probability that depends only on the days
  since their last purchase, so recency is all there is to know and the recency baseline must
  be kept;
- a signal beyond recency: before quitting for good a customer's payments fail for a month
  (a card that stopped working), so the failure rate tells who is leaving while their recency
  still looks healthy, and the model must be chosen.
"""

from datetime import datetime, timedelta, timezone

import duckdb
import numpy as np
import pandas as pd
import pytest

from behavior import churn as C
from behavior import churn_choice as CC
from behavior.churn_calibration import CALIBRATORS, choose_calibrator

START = datetime(2024, 1, 1, tzinfo=timezone.utc)
DAYS = 540


def _payments(user: np.ndarray, day: np.ndarray, failed: np.ndarray, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = len(user)
    return pd.DataFrame({
        "payment_id": [f"p{i:08d}" for i in range(n)], "line_no": np.ones(n, np.int32),
        "user_id": [f"u{u:05d}" for u in user], "merchant_id": "m1",
        "item_id": [f"i{k}" for k in rng.integers(0, 20, n)], "category": "food",
        "quantity": np.ones(n, np.int32), "amount": rng.gamma(2.0, 10.0, n).round(2), "currency": "EUR",
        "paid_at": pd.to_datetime(START) + pd.to_timedelta(day * 86_400 + rng.integers(0, 86_400, n), unit="s"),
        "channel": "app", "status": np.where(failed, "failed", "success"), "promotion_id": None})


def recency_world(users: int = 5000, seed: int = 1) -> pd.DataFrame:
    """P(purchase today) = f(days since the last purchase): recency is a sufficient statistic."""
    rng = np.random.default_rng(seed)
    since = rng.integers(0, 60, users).astype(float)
    start = rng.integers(0, 200, users)
    rows = []
    for d in range(DAYS):
        p = np.where(since < 20, 0.08, np.where(since < 60, 0.03, 0.003))
        buy = (rng.random(users) < p) & (d >= start)
        since = np.where(buy, 0, since + 1)
        rows.append(np.flatnonzero(buy))
    user = np.concatenate(rows)
    day = np.concatenate([np.full(len(r), d) for d, r in enumerate(rows)])
    return _payments(user, day, np.zeros(len(user), bool), seed)


def failing_world(users: int = 5000, seed: int = 2) -> pd.DataFrame:
    """Steady buyers who, from a random day on, fail every payment for 30 days, then leave."""
    rng = np.random.default_rng(seed)
    rate = rng.gamma(2.0, 0.04, users)
    start = rng.integers(0, 200, users)
    decline = start + rng.exponential(400, users)
    rows, fails = [], []
    for d in range(DAYS):
        active = (d >= start) & (d < decline + 30)
        buy = active & (rng.random(users) < rate)
        rows.append(np.flatnonzero(buy))
        fails.append((d >= decline)[buy] | (rng.random(buy.sum()) < 0.02))
    user = np.concatenate(rows)
    day = np.concatenate([np.full(len(r), d) for d, r in enumerate(rows)])
    return _payments(user, day, np.concatenate(fails), seed)


def _select(payments: pd.DataFrame) -> CC.Selection:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET threads = 1")
    con.register("payments", payments)
    as_of = START + timedelta(days=DAYS)
    cuts = C.choose_cutoffs(as_of, START, 60, shorten=True)
    train = pd.concat([C.cutoff_dataset(con, "payments", c, cuts.label_days) for c in cuts.train], ignore_index=True)
    test = C.cutoff_dataset(con, "payments", cuts.test, cuts.label_days)
    return CC.select(train, test, C.feature_columns(train))


def test_where_recency_alone_decides_the_recency_baseline_is_kept():
    chosen = _select(recency_world())
    rep = chosen.report
    assert rep["served"] == "recency" and not chosen.served.is_model, rep["selection"]
    best_model = max(rep["models"].values(), key=lambda m: m["roc_auc"])
    assert abs(best_model["roc_auc"] - rep["test"]["roc_auc"]) < 0.02   # nothing beyond the noise to gain
    # served as a calibrated probability that keeps recency's ranking
    frame = pd.DataFrame({"recency_days": [1.0, 30.0, 90.0, 200.0], "frequency": 3.0, "expected_purchases": 1.0,
                          "p_alive": 0.5, "p_no_purchase": 0.5})
    p = chosen.served.predict_proba(frame)[:, 1]
    assert np.all(np.diff(p) > 0) and 0 < p[0] < p[-1] < 1


def test_with_a_signal_beyond_recency_the_model_is_chosen_and_beats_every_baseline_beyond_the_noise():
    chosen = _select(failing_world())
    rep = chosen.report
    assert chosen.served.is_model and rep["served"] in CC.MODELS, rep["selection"]
    assert rep["selection"]["chosen"] == rep["served"]
    for name in C.BASELINES:
        gain = rep["beat"][name]
        assert gain["roc_auc_gain"] > 0 and gain["interval"][0] > 0, (name, gain)
    assert rep["test"]["brier"] < min(b["brier"] for b in rep["baselines"].values())


def test_calibrators_keep_the_ranking_and_the_best_held_out_one_is_chosen():
    rng = np.random.default_rng(0)
    score = rng.normal(size=20_000)
    y = (rng.random(score.size) < 1 / (1 + np.exp(-2 * score))).astype(int)
    cal = choose_calibrator(score, y)
    assert set(cal.measured) == set(CALIBRATORS) and cal.name in CALIBRATORS
    assert cal.measured[cal.name]["log_loss"] == min(m["log_loss"] for m in cal.measured.values())
    # the data are logistic in the score: Platt is right, and every calibrator is close to it
    assert cal.measured["platt"]["log_loss"] <= cal.measured["isotonic"]["log_loss"] + 1e-3
    grid = np.linspace(-3, 3, 500)
    for name in CALIBRATORS:
        from behavior.churn_calibration import make_calibrator

        p = make_calibrator(name, False).fit(score, y).predict(grid)
        assert np.all(np.diff(p) > 0), name              # ties broken by the raw score: strictly increasing
        assert np.allclose(p, 1 / (1 + np.exp(-2 * grid)), atol=0.08), name
        assert cal.measured[name]["distinct"] > 0.9 * score.size / 2, name


def test_plain_isotonic_flattens_what_the_tie_broken_one_keeps():
    rng = np.random.default_rng(1)
    score = rng.random(5000)
    y = (rng.random(5000) < score).astype(int)
    from sklearn.isotonic import IsotonicRegression

    from behavior.churn_calibration import IsotonicCalibrator

    plain = IsotonicRegression(out_of_bounds="clip").fit(score, y).predict(score)
    ours = IsotonicCalibrator().fit(score, y).predict(score)
    assert len(np.unique(plain)) < 100 and len(np.unique(ours)) == len(np.unique(score))
    assert np.mean(np.abs(ours - plain)) < 0.03


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_bootstrap_auc_matches_scikit_learn_on_every_resample(seed):
    from sklearn.metrics import roc_auc_score

    from behavior.model_choice import resamples

    rng = np.random.default_rng(seed)
    score = rng.integers(0, 5, 400).astype(float)   # many ties
    y = (rng.random(400) < 0.4).astype(int)
    idx = resamples(400, 120, seed=seed)
    value, reps = CC.auc_replicates(score, y, CC.resample_weights(idx, 400), chunk=50)
    assert value == pytest.approx(roc_auc_score(y, score))
    assert reps.shape == (120,)
    assert np.allclose(reps, [roc_auc_score(y[r], score[r]) for r in idx])
