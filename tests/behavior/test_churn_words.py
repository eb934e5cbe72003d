"""behavior.churn_words and the churn reasons in Arrow: the same words as the per-customer
Python code they replace (kept here as the reference), number for number and row for row."""

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import duckdb
import numpy as np
import pandas as pd
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from behavior import churn as C
from behavior import churn_choice as CC
from behavior.churn_words import fixed, reason_words
from behavior.synth import SynthConfig, generate


# ---------------------------------------------------------------- the reference: the per-row code before


def _words_before(feature: str, cols: dict[str, np.ndarray], horizon_days: int) -> list[str]:
    n = len(cols[feature])
    v = cols[feature].tolist()

    def col(name: str) -> list[float]:
        return cols[name].tolist() if name in cols else [float("nan")] * n

    if feature == "recency_days":
        def recency(x, gap, freq):
            if freq == 0:
                return f"one-time buyer, not back for {x:.0f} days"
            if np.isfinite(gap) and gap > 0:
                return f"no purchase for {x:.0f} days, usually buys every {gap:.0f} days"
            return f"no purchase for {x:.0f} days"
        return [recency(x, g, f) for x, g, f in zip(v, col("mean_gap_days"), col("frequency"))]
    if feature == "spend_trend":
        def trend(prev, now):
            if np.isfinite(prev) and prev > 0 and np.isfinite(now):
                return f"payments down {100 * (prev - now) / prev:.0f}% vs previous 90 days"
            return "spending falling vs previous 90 days"
        return [trend(a, b) for a, b in zip(col("spend_prev_90d"), col("spend_90d"))]
    if feature == "n_payments_90d":
        return ["no payment in the last 90 days" if x == 0 else f"only {x:.0f} payments in the last 90 days" for x in v]
    if feature == "p_alive":
        return [f"likely lapsed: P(still active) {x:.2f}" for x in v]
    if feature == "expected_purchases":
        return [f"only {x:.2f} purchases expected in the next {horizon_days} days" for x in v]
    if feature == "mean_gap_days":
        return [f"buys only every {x:.0f} days on average" for x in v]
    if feature == "frequency":
        return [f"only {x:.0f} repeat purchase days" if x else "no repeat purchase yet" for x in v]
    if feature == "failure_rate":
        return [f"{100 * x:.0f}% of payments failed" for x in v]
    if feature == "refund_rate":
        return [f"{100 * x:.0f}% of lines refunded" for x in v]
    return [f"{feature} {x:.3g}" for x in v]


def _reasons_before(model, X: pd.DataFrame, horizon_days: int, context: pd.DataFrame, top: int = 3,
                    min_effect: float = 0.01, threshold: float = C.REASON_THRESHOLD) -> tuple[np.ndarray, list[str]]:
    """Every row scored again for every reason feature, and the words built row by row."""
    features = C.REASON_FEATURES
    p = model.predict_proba(X)[:, 1]
    refs = C.reason_references(X, p, tuple(f for f in features if f in C.RISK_DIRECTION), threshold)
    feats = [f for f in features if f in refs and X[f].notna().any()]
    candidate = np.column_stack([C._risky_side(f, X[f].to_numpy(float), refs[f]) for f in feats])
    effects = np.full((len(X), len(feats)), -np.inf)
    for j, f in enumerate(feats):
        Xj = X.copy()
        Xj[f] = refs[f]
        effects[:, j] = p - model.predict_proba(Xj)[:, 1]
    effects[~np.isfinite(effects)] = 0.0
    effects[~candidate] = -np.inf
    order = np.argsort(-effects, axis=1, kind="stable")[:, :top]
    best = np.take_along_axis(effects, order, axis=1)
    keep = best >= min_effect
    keep[:, 0] |= (p >= threshold) & np.isfinite(best[:, 0])
    wanted = set(features) | {"spend_90d", "spend_prev_90d", "mean_gap_days", "frequency"}
    cols = {c: context[c].to_numpy(float) for c in wanted if c in context}
    out = []
    for i, (o, kk) in enumerate(zip(order.tolist(), keep.tolist())):
        row = {c: a[i:i + 1] for c, a in cols.items()}
        out.append("; ".join(_words_before(feats[j], row, horizon_days)[0] for j, k in zip(o, kk) if k))
    return p, out


# ---------------------------------------------------------------- numbers and words


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), min_size=1, max_size=40),
       st.sampled_from([0, 2]))
@example([0.125, 0.375, 2.5, 3.5, -0.0, -0.4, -0.004, 0.005, 0.015, 1e9, 1e15, 123456.785, 0.0], 2)
@example([0.5, 1.5, 2.5, -0.5, -0.0, 0.49999999999999994, 1e300, float("nan"), float("-inf")], 0)
def test_fixed_writes_every_number_as_python_format_does(values, decimals):
    x = np.array(values, float)
    assert fixed(x, decimals).to_pylist() == [format(v, f".{decimals}f") for v in values]


def _columns(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Feature values with the awkward ones mixed in: zeros, NaN, halves, negatives, rates."""
    def mix(a: np.ndarray) -> np.ndarray:
        a = a.copy()
        spots = rng.random(n)
        a[spots < 0.08] = np.nan
        a[(spots >= 0.08) & (spots < 0.16)] = 0.0
        a[(spots >= 0.16) & (spots < 0.22)] = rng.choice([0.125, 2.5, 0.005, -0.5, 1.5], size=((spots >= 0.16) & (spots < 0.22)).sum())
        return a
    return {"recency_days": mix(rng.integers(0, 800, n).astype(float)),
            "spend_trend": mix(rng.normal(-0.2, 0.5, n)),
            "n_payments_90d": mix(rng.integers(0, 12, n).astype(float)),
            "p_alive": mix(rng.random(n)), "expected_purchases": mix(rng.gamma(1.0, 1.5, n)),
            "mean_gap_days": mix(rng.gamma(2.0, 20.0, n)), "frequency": mix(rng.integers(0, 30, n).astype(float)),
            "failure_rate": mix(rng.random(n) * 0.3), "refund_rate": mix(rng.random(n) * 0.1),
            "spend_90d": mix(rng.gamma(2.0, 50.0, n)), "spend_prev_90d": mix(rng.gamma(2.0, 50.0, n))}


@pytest.mark.parametrize("feature", [*C.REASON_FEATURES, "tenure_days"])
def test_each_reason_is_worded_as_the_per_row_code_words_it(feature):
    rng = np.random.default_rng(len(feature))
    cols = _columns(rng, 5000)
    cols["tenure_days"] = rng.gamma(2.0, 200.0, 5000)
    for horizon in (90, 365):
        assert reason_words(feature, cols, horizon).to_pylist() == _words_before(feature, cols, horizon)
    # a missing column reads as unknown, as before
    thin = {c: a for c, a in cols.items() if c == feature or c not in ("mean_gap_days", "spend_prev_90d", "frequency")}
    assert reason_words(feature, thin, 90).to_pylist() == _words_before(feature, thin, 90)


# ---------------------------------------------------------------- the reasons of a small world, before and after


@pytest.fixture(scope="module")
def world():
    """A 3,000-customer BG/NBD world: the features at as_of, the served score and a booster."""
    pay = generate(SynthConfig(users=3000, months=24, seed=11)).tables["payments"]
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("payments", pay)
    day = pay["paid_at"].max().to_pydatetime()
    as_of = datetime(day.year, day.month, day.day, tzinfo=timezone.utc) + timedelta(days=1)
    cuts = C.choose_cutoffs(as_of, pay["paid_at"].min().to_pydatetime())
    *train, test = C.cutoff_datasets(con, "payments", [*cuts.train, cuts.test])
    train = pd.concat(train, ignore_index=True)
    cols = C.feature_columns(train)
    boosting = C.ChurnClassifier(max_iter=40).fit(train[cols], train["churned"])
    now = C.cutoff_dataset(con, "payments", as_of, labels=False)
    return now, cols, CC.select(train, test, cols).served, boosting


def _served(world, which: str):
    now, cols, served, boosting = world
    if which == "baseline":
        assert not served.is_model     # the BG/NBD world serves a baseline
        return served
    if which == "served model":
        return replace(served, name="boosting", model=boosting)
    return boosting                    # a bare classifier: it reads every column


@pytest.mark.parametrize("which", ["baseline", "served model", "classifier"])
def test_the_reasons_are_the_per_row_codes_row_for_row(world, which, monkeypatch):
    now, cols, _, _ = world
    model = _served(world, which)
    X = now[[c for c in now.columns if c in set(cols) | set(C.BASELINE_INPUTS.values())]]
    before_p, before = _reasons_before(model, X, 90, now)
    monkeypatch.setattr(C, "REASON_CHUNK", 97)    # several chunks of rows scored again
    monkeypatch.setattr(C, "WORDS_CHUNK", 250)    # and of rows worded
    p, words = C.churn_reason_words(model, X, horizon_days=90, context=now)
    assert np.array_equal(p, before_p)
    assert words.to_pylist() == before
    assert sum(1 for w in before if w) > 200
    three = sum(1 for w in before if w.count("; ") == 2)
    # a baseline reads no reason feature (P(no purchase)): each at-risk customer gets the one fallback reason
    assert three == 0 if which == "baseline" else three > 50


def test_the_top_effects_are_those_of_a_stable_sort_ties_and_non_candidates_included():
    rng = np.random.default_rng(5)
    effects = rng.choice([0.0, 0.02, -0.01, 0.3, -np.inf], size=(4000, 9))
    for top in (1, 3, 9, 12):
        assert np.array_equal(C._top_columns(effects, top), np.argsort(-effects, axis=1, kind="stable")[:, :top])
