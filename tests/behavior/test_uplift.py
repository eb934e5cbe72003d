"""Uplift metrics (known answers, random = 0, perfect = 1) and the two estimators."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from behavior.errors import InputError
from behavior.uplift import (ClassTransformation, _descending_keys, TLearner, default_classifier, qini_coefficient, qini_curve,
                             uplift_at_k, uplift_by_decile)


def test_qini_curve_by_hand():
    # ranked: (t=1,y=1) (t=0,y=0) (t=1,y=0) (t=0,y=1)
    y, t, s = np.array([1, 0, 0, 1]), np.array([1, 0, 1, 0]), np.array([4, 3, 2, 1])
    k, q = qini_curve(y, t, s)
    # k=1: yt=1, nc=0 -> 1; k=2: 1 - 0*1/1 = 1; k=3: 1 - 0*2/1 = 1; k=4: 1 - 1*2/2 = 0
    assert list(k) == [0, 1, 2, 3, 4] and q == pytest.approx([0, 1, 1, 1, 0])


def test_qini_coefficient_perfect_one_random_zero_reversed_negative():
    rng = np.random.default_rng(0)
    n = 4000
    tau = rng.uniform(-0.1, 0.4, n)
    t = rng.random(n) < 0.5
    y = (rng.random(n) < 0.2 + np.where(t, tau, 0)).astype(int)
    oracle = np.where(t & (y == 1), 2, np.where(~t & (y == 1), 0, 1))
    assert qini_coefficient(y, t, oracle) == pytest.approx(1.0)
    randoms = [qini_coefficient(y, t, rng.random(n)) for _ in range(40)]
    assert abs(np.mean(randoms)) < 0.03
    assert qini_coefficient(y, t, tau) > 0.1 > qini_coefficient(y, t, -tau)


def test_uplift_at_k_and_deciles():
    y = np.array([1, 0, 1, 0, 0, 0, 1, 1, 0, 0])
    t = np.array([1, 0, 1, 0, 1, 0, 0, 1, 1, 0])
    s = np.arange(10)[::-1]
    # top 40%: rows 0..3 -> treated y (1,1) mean 1, control y (0,0) mean 0
    assert uplift_at_k(y, t, s, 0.4) == pytest.approx(1.0)
    assert uplift_at_k(y, t, s, 1.0) == pytest.approx(y[t == 1].mean() - y[t == 0].mean())
    rows = uplift_by_decile(y, t, s, bins=5)
    assert [r["n"] for r in rows] == [2] * 5 and rows[0]["uplift"] == pytest.approx(1.0)
    with pytest.raises(InputError):
        uplift_at_k(y, t, s, 0)


def _planted(n: int, seed: int):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"x0": rng.normal(size=n), "x1": rng.normal(size=n), "noise": rng.normal(size=n)})
    tau = 0.3 * (X["x0"] > 0) - 0.1 * (X["x1"] > 1)
    base = 0.2 + 0.1 * (X["x1"] > 0)
    t = rng.random(n) < 0.3          # unbalanced groups: the class transformation reweights
    y = (rng.random(n) < base + np.where(t, tau, 0)).astype(int)
    return X, y, t.astype(int), tau.to_numpy()


@pytest.mark.parametrize("cls", [TLearner, ClassTransformation])
def test_estimators_rank_by_the_planted_uplift(cls):
    X, y, t, _ = _planted(12000, 1)
    model = cls().fit(X, y, t)
    Xt, yt, tt, taut = _planted(6000, 2)
    pred = model.predict(Xt)
    assert np.corrcoef(pred, taut)[0, 1] > 0.6
    assert qini_coefficient(yt, tt, pred) > 0.5 * qini_coefficient(yt, tt, taut) > 0
    high, low = pred[Xt["x0"] > 0].mean(), pred[Xt["x0"] <= 0].mean()
    assert high - low == pytest.approx(0.3, abs=0.08)


def test_estimators_refuse_outcomes_of_one_class():
    X = pd.DataFrame({"x": np.arange(10.0)})
    with pytest.raises(InputError, match="both outcomes"):
        TLearner().fit(X, np.zeros(10), np.arange(10) % 2)
    with pytest.raises(InputError, match="0/1"):
        ClassTransformation().fit(X, np.full(10, 2), np.arange(10) % 2)


def test_class_transformation_uses_each_campaigns_own_treatment_share():
    """Found in review: pooled campaigns with 80% and 20% treated and no effect at all looked
    like +/-0.2 uplift when weighted by the overall share."""
    rng = np.random.default_rng(5)
    n = 8000
    campaign = np.arange(n) % 2
    X = pd.DataFrame({"campaign": campaign.astype(float), "x": rng.normal(size=n)})
    share = np.where(campaign == 0, 0.8, 0.2)
    t = (rng.random(n) < share).astype(int)
    y = (rng.random(n) < 0.3).astype(int)           # no effect anywhere
    p = pd.Series(t).groupby(campaign).transform("mean").to_numpy()    # each campaign's own share
    fair = ClassTransformation().fit(X, y, t, propensity=p).predict(X)
    for c in (0, 1):
        assert abs(fair[campaign == c].mean()) < 0.05
    naive = ClassTransformation().fit(X, y, t).predict(X)
    assert abs(naive[campaign == 0].mean()) > 0.1     # what the overall share got wrong


def test_qini_resampled_is_each_resample_scored_alone():
    """The selection's bootstrap scores every candidate's ranking on every resample at once; each
    must equal the Qini of that resample alone (ties in the score from repeated units included),
    and 0 where a resample lacks a group."""
    from behavior.model_choice import resamples
    from behavior.uplift import qini_resampled

    rng = np.random.default_rng(3)
    for n, share in ((400, 0.5), (60, 0.1), (7, 0.3)):
        y = (rng.random(n) < 0.3).astype(int)
        t = np.zeros(n, bool)
        t[rng.permutation(n)[: max(1, int(share * n))]] = True
        scores = np.round(rng.random((2, n)), 1)             # ties within a score too
        idx = resamples(n, 300, seed=n)
        alone = [[qini_coefficient(y[r], t[r], s[r]) if t[r].any() and not t[r].all() else 0.0 for r in idx]
                 for s in scores]
        assert qini_resampled(y, t, scores, idx).tolist() == alone
        assert qini_resampled(y, t, scores[1], idx).tolist() == alone[1]
    assert (np.array(alone) == 0).any()                     # (n = 7: some resamples have one group)


def test_class_transformation_grows_the_trees_of_the_booster_on_the_weighted_rows():
    """`ClassTransformation` bins the weighted rows itself (scikit-learn's per-percentile binning
    was 3/4 of the fit): its predictions must be those of the booster fitted on the raw rows
    with the same weights, on rows it has not seen too."""
    from sklearn.base import clone

    from behavior.uplift_bins import binned_rows

    X, y, t, _ = _planted(6000, 4)
    X["spend"] = np.round(np.exp(X["x0"]) * 10, 1)          # > 255 values with ties
    X.loc[X.index[::7], "spend"] = np.nan
    X["count"] = np.arange(len(X)) % 40                      # <= 255 values: left to the booster
    model = ClassTransformation(seed=2).fit(X, y, t)
    assert set(model.edges_) == {X.columns.get_loc(c) for c in ("x0", "x1", "noise", "spend")}
    p = t.mean()
    weight = np.where(t == 1, 0.5 / p, 0.5 / (1 - p))
    booster = clone(default_classifier(2)).fit(X, y * t + (1 - y) * (1 - t), sample_weight=weight)
    new, *_ = _planted(3000, 5)
    new["spend"], new["count"] = np.round(np.exp(new["x0"]) * 10, 1), 3
    for rows in (X, new):
        np.testing.assert_array_equal(model.predict(rows), 2 * booster.predict_proba(rows)[:, 1] - 1)
    # above 10,000 rows the booster stops early and bins only its own training share: the same
    # split is drawn, so the bins and the trees are the same there too
    X, y, t, _ = _planted(12000, 6)
    X["spend"] = np.round(np.exp(X["x0"]) * 10, 1)
    model = ClassTransformation(seed=3).fit(X, y, t)
    assert model.model_.do_early_stopping_ and X.columns.get_loc("spend") in model.edges_
    p = t.mean()
    weight = np.where(t == 1, 0.5 / p, 0.5 / (1 - p))
    booster = clone(default_classifier(3)).fit(X, y * t + (1 - y) * (1 - t), sample_weight=weight)
    assert model.model_.n_iter_ == booster.n_iter_
    new, *_ = _planted(3000, 7)
    new["spend"] = np.round(np.exp(new["x0"]) * 10, 1)
    for rows in (X, new):
        np.testing.assert_array_equal(model.predict(rows), 2 * booster.predict_proba(rows)[:, 1] - 1)
    # an unseeded booster's split cannot be drawn again: it bins the rows itself
    assert binned_rows(default_classifier(None), np.arange(10_001) % 2) is None
    assert len(binned_rows(default_classifier(0), np.arange(10_001) % 2)) == 9_000
    assert len(binned_rows(default_classifier(None), np.arange(10_000) % 2)) == 10_000


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-70_000, 70_000), min_size=1, max_size=40), st.booleans())
def test_descending_keys_sort_as_the_scores_do(values, halves):
    """The radix keys of integer scores spanning < 2^16 values, and -score otherwise (halves:
    non-integer scores), give the stable descending order of the scores themselves."""
    score = np.array([values, values[::-1]], float) + (0.5 if halves else 0.0) * (np.arange(len(values)) % 2)
    keys = _descending_keys(score)
    small = np.array_equal(score, np.floor(score)) and np.ptp(score) < 1 << 16
    assert (keys.dtype == np.uint16) == bool(small)
    expected = np.array([sorted(range(len(row)), key=lambda i: -row[i]) for row in score])   # Python's sort is stable
    assert np.array_equal(np.argsort(keys, axis=1, kind="stable"), expected)


def test_the_ranks_the_selection_scores_sort_by_radix():
    ranks = -np.random.default_rng(0).permutation(50_000).astype(float)[None]   # select_arm's distinct ranks
    assert _descending_keys(ranks).dtype == np.uint16
    assert _descending_keys(np.array([[2.0, 1.0, 0.0, 1.0]])).dtype == np.uint16   # the perfect ranking's scores
    assert _descending_keys(np.array([[0.0, np.nan]])).dtype == float
