"""ROC-AUC by ranks: the same number as `sklearn.metrics.roc_auc_score` for a binary label,
without its input validation, which costs ~100x the computation on the few hundred to few
thousand rows of a bootstrap resample (1,000 resamples: seconds with scikit-learn, tens of
milliseconds here).

The AUC is the Mann-Whitney statistic: the probability that a random positive scores above a
random negative, ties counting one half; computed from the positives' average ranks.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def roc_auc(y, score) -> float:
    """ROC-AUC of `score` for the 0/1 labels `y`; NaN when `y` holds only one class."""
    y = np.asarray(y) != 0
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(np.asarray(score, dtype=float))
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
