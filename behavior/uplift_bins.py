"""The bins scikit-learn's HistGradientBoosting makes of weighted rows, computed a column at a time.

Given sample weights, the booster places a column's bin thresholds at weighted percentiles that
scikit-learn computes one percentile at a time (254 calls per column with more than 255 distinct
values): three quarters of the class transformation's fit on an arm of 3,600 rows.
`weighted_edges` computes the same thresholds (the same sort, running sum of the weights and
comparisons) for all percentiles of a column at once, and `to_bins` replaces each such column by
its bin number (the count of thresholds below the value; missing stays missing). The booster bins
a column of at most 255 distinct values at the midpoints of its values, so on the bin numbers it
sees the same bins of the training rows and grows the same trees. A booster that stops early
(above 10,000 rows by default) bins only its training share, which `binned_rows` draws as
scikit-learn does (the same stratified split from the same seed), so its bins are computed the
same way.

A row to predict whose value falls in a bin no training row fell in (two thresholds within one
training value and the midpoint to the next) can go the other way at a split there; such bins
need percentiles that land exactly on a boundary of the weights' running sum inside a run of
equal values.
"""

from __future__ import annotations

import numbers

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state

ALMOST_INF = 1e300           # the booster's own cap of a threshold (sklearn's ALMOST_INF)
BIN_SUBSAMPLE = 200_000      # above it the booster bins a weighted subsample without weights
EARLY_STOPPING_ROWS = 10_000  # above it ("auto") the booster stops early and bins only its training share


def binned_rows(estimator, y) -> np.ndarray | None:
    """The rows (positions, in the order the booster sees them) whose weighted percentiles
    `estimator` bins its columns at, when `weighted_edges` can reproduce them: every row, or,
    when it stops early, its training share (scikit-learn's own stratified split of the rows by
    `y`, drawn from the same seed); None for another estimator, an unseeded one that stops early,
    or more rows than it bins without subsampling."""
    if not isinstance(estimator, HistGradientBoostingClassifier):
        return None
    rows = np.arange(len(y))
    stops = estimator.early_stopping
    if (len(y) > EARLY_STOPPING_ROWS if stops == "auto" else stops) and estimator.validation_fraction is not None:
        if not isinstance(estimator.random_state, numbers.Integral):
            return None
        # the booster's first draw from its random_state seeds its split (scikit-learn's fit)
        seed = check_random_state(estimator.random_state).randint(np.iinfo(np.uint32).max, dtype="u8")
        rows, _ = train_test_split(rows, test_size=estimator.validation_fraction, stratify=y, random_state=seed)
    return rows if len(rows) <= BIN_SUBSAMPLE else None


def _weighted_percentiles(values: np.ndarray, weight: np.ndarray, percentiles: np.ndarray) -> np.ndarray:
    """scikit-learn's weighted percentiles ("averaged inverted CDF") of sorted `values` with
    positive weights, all percentiles at once: the same sort, running sum and comparisons."""
    order = np.argsort(values.reshape(-1, 1), axis=0)[:, 0]
    cdf = np.cumsum(weight[order])
    rank = percentiles / 100 * cdf[-1]
    last = len(values) - 1
    at = np.clip(np.searchsorted(cdf, rank), 0, last)
    above = cdf[at] - rank > np.finfo(float).eps
    here, after = values[order[at]], values[order[np.clip(at + 1, 0, last)]]
    return np.where(above, here, (here + after) / 2)


def _edges(col: np.ndarray, weight: np.ndarray, max_bins: int) -> np.ndarray | None:
    """The booster's thresholds of one column, or None when it has at most `max_bins` distinct
    values (their midpoints, which do not depend on the weights)."""
    keep = ~np.isnan(col) & (weight != 0)
    col, weight = col[keep], weight[keep]
    order = np.argsort(col)
    col, weight = col[order], weight[order]
    if len(np.unique(col)) <= max_bins:
        return None
    edges = np.unique(_weighted_percentiles(col, weight, np.linspace(0, 100, num=max_bins + 1)[1:-1]))
    return np.clip(edges, None, ALMOST_INF)


def weighted_edges(X, sample_weight, max_bins: int = 255) -> dict[int, np.ndarray]:
    """{column position: thresholds} of the columns of X the booster bins by weighted percentiles."""
    values = np.asarray(X, dtype=float)
    weight = np.asarray(sample_weight, float)
    out = {}
    for j in range(values.shape[1]):
        edges = _edges(values[:, j], weight, max_bins)
        if edges is not None:
            out[j] = edges
    return out


def to_bins(X, edges: dict[int, np.ndarray]):
    """X (a DataFrame or an array, not modified) with each column of `edges` replaced by its bin number."""
    if not edges:
        return X
    frame = isinstance(X, pd.DataFrame)
    out = X.copy() if frame else np.array(X, dtype=float)
    for j, thresholds in edges.items():
        col = (X.iloc[:, j] if frame else out[:, j])
        col = np.asarray(col, dtype=float)
        binned = np.searchsorted(thresholds, col, side="left").astype(float)
        binned[np.isnan(col)] = np.nan
        if frame:
            out.isetitem(j, binned)
        else:
            out[:, j] = binned
    return out


__all__ = ["binned_rows", "to_bins", "weighted_edges"]
