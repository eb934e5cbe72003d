"""The simple uplift candidates and the doubly robust learner, beside `behavior.uplift`'s T-learner
and class transformation.

All follow scikit-learn's style: `fit(X, y, treatment, propensity=None)` with a 0/1 outcome and a
0/1 treatment flag, learned attributes end in `_`, `predict(X)` starts with `check_is_fitted`.

- `CellMeanUplift`: X is one column (or several) of coarse categorical cells (e.g. segment x
  affinity band). uplift(cell) = mean outcome of the treated minus that of the control within the
  cell, shrunk towards the overall lift by empirical Bayes: the weight of a cell's own difference
  is tau2 / (tau2 + v_cell), where v_cell is the sampling variance of its difference and tau2 the
  variance of the true cell effects (DerSimonian-Laird's moment estimator, floored at 0). With no heterogeneity every
  cell predicts the overall lift; a cell unseen in training predicts it too.
- `ResponseModel`: P(y = 1 | x, treated), one classifier on the treated rows, the control
  ignored ("target the likeliest buyers under the offer"). A ranking, not an uplift.
- `DRLearner` (Kennedy 2020): cross-fitted outcome models mu0, mu1 and the design propensity p
  give the pseudo-outcome mu1 - mu0 + t (y - mu1) / p - (1 - t) (y - mu0) / (1 - p), whose
  regression on x estimates the uplift; scikit-learn boosters only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, clone
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.model_selection import KFold
from sklearn.utils.validation import check_is_fitted

from behavior.errors import InputError
from behavior.uplift import _check, _rows, default_classifier


def _cell_keys(X) -> pd.Series:
    """One string key per row from one or several categorical columns (missing = 'missing')."""
    frame = X.to_frame() if isinstance(X, pd.Series) else pd.DataFrame(X)
    parts = frame.astype("object").where(frame.notna(), "missing").astype(str)
    return parts.agg("|".join, axis=1) if parts.shape[1] > 1 else parts.iloc[:, 0]


class CellMeanUplift(BaseEstimator):
    """Treated-minus-control mean outcome per cell, shrunk towards the overall lift (empirical Bayes)."""

    def fit(self, X, y, treatment, propensity=None):
        """`propensity` is accepted for a common signature; within a cell the groups are compared as drawn."""
        y, t = _check(X, y, treatment)
        keys = _cell_keys(X).to_numpy()
        frame = pd.DataFrame({"cell": keys, "t": t, "y": y.astype(float)})
        stats = frame.groupby(["cell", "t"])["y"].agg(["mean", "count"]).unstack("t")
        m1, m0 = stats[("mean", 1)], stats[("mean", 0)]
        n1, n0 = stats[("count", 1)].fillna(0), stats[("count", 0)].fillna(0)
        self.overall_ = float(y[t == 1].mean() - y[t == 0].mean())
        raw = (m1 - m0).to_numpy(float)
        both = np.isfinite(raw)
        # sampling variance of each cell's difference (rates pooled over both groups of the cell)
        pooled = ((m1.fillna(0) * n1 + m0.fillna(0) * n0) / (n1 + n0)).to_numpy(float)
        var = pooled * (1 - pooled) * (1 / np.maximum(n1, 1) + 1 / np.maximum(n0, 1)).to_numpy(float)
        var = np.maximum(var, 1e-9)
        tau2 = 0.0
        if both.sum() > 1:      # DerSimonian-Laird: the spread of the cells beyond their sampling noise
            w = 1.0 / var[both]
            centre = np.average(raw[both], weights=w)
            q = float(np.sum(w * (raw[both] - centre) ** 2))
            tau2 = max(0.0, (q - (both.sum() - 1)) / (w.sum() - (w ** 2).sum() / w.sum()))
        weight = np.where(both, tau2 / (tau2 + var), 0.0)
        tau = weight * np.nan_to_num(raw) + (1 - weight) * self.overall_
        self.uplift_ = dict(zip(stats.index.astype(str), tau.astype(float)))
        self.heterogeneity_ = float(tau2)
        return self

    def predict(self, X) -> np.ndarray:
        check_is_fitted(self, "uplift_")
        return _cell_keys(X).map(self.uplift_).fillna(self.overall_).to_numpy(float)


class ResponseModel(BaseEstimator):
    """P(y = 1 | x, treated): the T-learner's treated half alone (`behavior.uplift.default_classifier`)."""

    def __init__(self, seed: int = 0):
        self.seed = seed

    def fit(self, X, y, treatment, propensity=None):
        """The control rows are checked (both outcomes present) but not used."""
        y, t = _check(X, y, treatment)
        self.model_ = default_classifier(self.seed).fit(_rows(X, t == 1), y[t == 1])
        return self

    @classmethod
    def of_treated(cls, classifier, seed: int = 0) -> "ResponseModel":
        """The response model whose classifier of the treated rows is `classifier`, already fitted
        (a `TLearner(seed=seed)`'s `model_t_` on the same rows is exactly what `fit` would fit)."""
        model = cls(seed=seed)
        model.model_ = classifier
        return model

    def predict(self, X) -> np.ndarray:
        check_is_fitted(self, "model_")
        return self.model_.predict_proba(X)[:, 1]


def _take(X, idx: np.ndarray):
    return X.iloc[idx] if hasattr(X, "iloc") else X[idx]


def default_regressor(seed: int = 0) -> HistGradientBoostingRegressor:
    """Shallow, regularised boosting for the noisy pseudo-outcome."""
    return HistGradientBoostingRegressor(max_iter=100, learning_rate=0.05, max_leaf_nodes=15, min_samples_leaf=200,
                                         l2_regularization=1.0, random_state=seed)


class DRLearner(BaseEstimator):
    """Doubly robust learner: regression of the cross-fitted AIPW pseudo-outcome on x."""

    def __init__(self, estimator=None, regressor=None, n_folds: int = 2, seed: int = 0):
        self.estimator = estimator
        self.regressor = regressor
        self.n_folds = n_folds
        self.seed = seed

    def fit(self, X, y, treatment, propensity=None):
        """`propensity`: each row's probability of treatment by design (default: the overall share)."""
        y, t = _check(X, y, treatment)
        p = np.full(len(t), t.mean()) if propensity is None else np.asarray(propensity, float)
        if p.shape != t.shape or not ((p > 0) & (p < 1)).all():
            raise InputError("propensity must hold one probability in (0, 1) per row")
        base = self.estimator if self.estimator is not None else default_classifier(self.seed)
        mu0, mu1 = np.empty(len(y)), np.empty(len(y))
        for fit_idx, out_idx in KFold(self.n_folds, shuffle=True, random_state=self.seed).split(np.arange(len(y))):
            for flag, mu in ((1, mu1), (0, mu0)):
                rows = fit_idx[t[fit_idx] == flag]
                if np.unique(y[rows]).size < 2:     # a fold with one outcome: its rate is the model
                    mu[out_idx] = float(y[rows].mean()) if len(rows) else float(y[t == flag].mean())
                    continue
                mu[out_idx] = clone(base).fit(_take(X, rows), y[rows]).predict_proba(_take(X, out_idx))[:, 1]
        phi = mu1 - mu0 + t * (y - mu1) / p - (1 - t) * (y - mu0) / (1 - p)
        reg = self.regressor if self.regressor is not None else default_regressor(self.seed)
        self.model_ = clone(reg).fit(X, phi)
        return self

    def predict(self, X) -> np.ndarray:
        check_is_fitted(self, "model_")
        return self.model_.predict(X)


__all__ = ["CellMeanUplift", "DRLearner", "ResponseModel", "default_regressor"]
