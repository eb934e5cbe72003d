"""The rank ROC-AUC equals scikit-learn's on any binary labels and scores, ties included."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from behavior.ranking import roc_auc


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(-5, 5) | st.floats(-1e6, 1e6)), min_size=1, max_size=60))
def test_equals_scikit_learn(pairs):
    y = np.array([p[0] for p in pairs], dtype=int)
    s = np.array([p[1] for p in pairs], dtype=float)
    if 0 < y.sum() < len(y):
        assert math.isclose(roc_auc(y, s), roc_auc_score(y, s), rel_tol=0, abs_tol=1e-12)
    else:
        assert math.isnan(roc_auc(y, s))


def test_known_answers():
    assert roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75
    assert roc_auc([0, 1], [1.0, 1.0]) == 0.5
    assert roc_auc([1, 0, 1], [3, 2, 1]) == 0.5
