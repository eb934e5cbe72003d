"""LeafMasks: scikit-learn's histogram boosters evaluated by leaf masks give scikit-learn's
predictions to the bit (known answers: scikit-learn's own `predict_proba` / `predict`)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

import behavior.uplift_boosters as UB
from behavior.uplift_boosters import LeafMaskClassifier, LeafMaskRegressor, LeafMasks, with_leaf_masks
from behavior.uplift_selection import ArmData, serve
from tests.behavior.test_uplift_selection import _arm, campaign


def _data(n: int, seed: int, nan_share: float = 0.1) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Features with NaN, ties, whole numbers and infinities; a 0/1 label and a numeric target."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"counts": rng.integers(0, 6, n).astype(float), "spend": rng.lognormal(3, 1, n),
                      "share": np.round(rng.random(n), 1), "gap": rng.exponential(10, n),
                      "noise": rng.normal(size=n)})
    X.loc[rng.random(n) < nan_share, "gap"] = np.nan
    X.loc[rng.random(n) < 0.01, "spend"] = np.inf
    logit = 0.8 * X["counts"] - 0.02 * X["spend"].clip(upper=100) + np.nan_to_num(X["gap"], nan=30) / 20 - 1.5
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return X, y, logit.to_numpy() + rng.normal(size=n)


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 10_000), leaves=st.sampled_from([2, 7, 15, 31]), nan_share=st.sampled_from([0.0, 0.2]),
       rows=st.sampled_from([1, 5, 2048]))
def test_classifier_probabilities_are_scikit_learns_to_the_bit(seed, leaves, nan_share, rows):
    """Every row's P(y = 1), with NaN (either side of each node), ties at thresholds, +inf,
    trees of up to 16 leaves (16-bit masks) and of more (64-bit masks), in passes of any size."""
    X, y, _ = _data(3000, seed, nan_share)
    booster = HistGradientBoostingClassifier(max_iter=40, max_leaf_nodes=leaves, min_samples_leaf=5,
                                             random_state=seed).fit(X, y)
    new, _, _ = _data(5000, seed + 1, nan_share)
    new.iloc[:50] = X.iloc[:50].to_numpy()     # values exactly at the training bins' edges
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(UB, "ROWS", rows)
        got = LeafMaskClassifier(booster).predict_proba(new)
    np.testing.assert_array_equal(got, booster.predict_proba(new))


def test_regressor_predictions_are_scikit_learns_to_the_bit():
    X, _, target = _data(4000, 7)
    booster = HistGradientBoostingRegressor(max_iter=60, max_leaf_nodes=15, random_state=0).fit(X, target)
    new, _, _ = _data(6000, 8)
    np.testing.assert_array_equal(LeafMaskRegressor(booster).predict(new), booster.predict(new))


def test_a_booster_of_one_leaf_trees_predicts_its_baseline():
    X, _, _ = _data(200, 1)
    booster = HistGradientBoostingClassifier(max_iter=5).fit(X, np.r_[np.zeros(199, int), 1])
    np.testing.assert_array_equal(LeafMaskClassifier(booster).predict_proba(X), booster.predict_proba(X))


def test_what_leaf_masks_cannot_evaluate_is_left_to_scikit_learn():
    X, y, _ = _data(1000, 2)
    cats = HistGradientBoostingClassifier(max_iter=5, categorical_features=[0]).fit(X.fillna(0), y)
    multi = HistGradientBoostingClassifier(max_iter=5).fit(X, np.arange(len(y)) % 3)
    assert not LeafMasks.supports(cats) and not LeafMasks.supports(multi)
    assert not LeafMasks.supports(HistGradientBoostingClassifier())      # not fitted
    with pytest.raises(ValueError, match="numeric features"):
        LeafMasks(cats)


def test_columns_in_another_order_are_refused():
    X, y, _ = _data(1000, 3)
    booster = HistGradientBoostingClassifier(max_iter=5).fit(X, y)
    with pytest.raises(ValueError, match="in that order"):
        LeafMaskClassifier(booster).predict_proba(X[X.columns[::-1]])


@pytest.mark.parametrize("name", ["cell_mean", "t_learner", "class_transformation", "dr_learner", "response"])
def test_an_arm_with_leaf_masks_predicts_what_the_arm_predicts(name):
    """`with_leaf_masks(arm).predict`: the served uplift and P(redeem) of every row to the bit, each
    booster replaced (the T-learner's treated classifier, also its redemption model, by one object)."""
    X, meta = campaign(6000, "hetero", 4)
    data, _ = _arm(X, meta, "mens")
    data = ArmData(data.X, data.cells, data.y, data.t, data.y * data.t)
    arm = serve(name, data, seed=4)
    fast = with_leaf_masks(arm)
    cells = meta["cell"].to_numpy()
    for got, want in zip(fast.predict(X, cells), arm.predict(X, cells)):
        np.testing.assert_array_equal(got, want)
    assert isinstance(fast.redeem, LeafMasks) and not isinstance(arm.redeem, LeafMasks)
    if name == "t_learner":
        assert fast.model.model_t_ is fast.redeem and isinstance(fast.model.model_c_, LeafMasks)
