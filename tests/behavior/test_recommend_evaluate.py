"""The evaluator against metrics computed by hand on a tiny example (arithmetic in the comments)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from behavior.recommend.checks import InteractionsError
from behavior.recommend.evaluate import evaluate

# users x items (6 items); k = 3
#   user 0: recommended [1, 2, 3], relevant {1, 3}        -> hits at ranks 1 and 3
#   user 1: recommended [4, -1, -1], relevant {0, 2, 4, 5} -> a hit at rank 1, then padding
#   user 2: recommended [0, 1, 2], relevant {}             -> not counted anywhere
RECOMMENDED = np.array([[1, 2, 3], [4, -1, -1], [0, 1, 2]])
RELEVANT = sp.csr_matrix(
    (np.ones(6, np.float32), ([0, 0, 1, 1, 1, 1], [1, 3, 0, 2, 4, 5])), shape=(3, 6)
)
L2 = math.log2


def test_hand_computed_metrics():
    m = evaluate(RECOMMENDED, RELEVANT, k=3, n_items=6)
    # precision@3 = hits / k:            user 0: 2/3, user 1: 1/3 (padding is not excused)
    assert m["precision@3"] == pytest.approx((2 / 3 + 1 / 3) / 2)
    # recall@3 = hits / |relevant|:      user 0: 2/2, user 1: 1/4
    assert m["recall@3"] == pytest.approx((1.0 + 0.25) / 2)
    # nDCG@3: user 0 DCG = 1/log2(2) + 1/log2(4) = 1.5, IDCG (2 relevant) = 1 + 1/log2(3)
    #         user 1 DCG = 1, IDCG (min(3, 4) = 3 relevant) = 1 + 1/log2(3) + 1/log2(4)
    ndcg0 = (1 / L2(2) + 1 / L2(4)) / (1 + 1 / L2(3))
    ndcg1 = 1.0 / (1 + 1 / L2(3) + 1 / L2(4))
    assert m["ndcg@3"] == pytest.approx((ndcg0 + ndcg1) / 2)
    assert ndcg0 == pytest.approx(0.919720, abs=1e-6) and ndcg1 == pytest.approx(0.469279, abs=1e-6)
    # MAP@3: user 0 (P@1 + P@3) / min(3, 2) = (1 + 2/3) / 2; user 1 P@1 / min(3, 4) = 1/3
    assert m["map@3"] == pytest.approx(((1 + 2 / 3) / 2 + 1 / 3) / 2)
    # coverage: items {1, 2, 3, 4} shown to the counted users (user 2's list does not count) / 6
    assert m["coverage"] == pytest.approx(4 / 6)
    assert m["users"] == 2


def test_precision_is_over_k_not_min_k_relevant():
    # one relevant item, found at rank 1: implicit's precision_at_k would say 1/min(3, 1) = 1
    rel = sp.csr_matrix(np.array([[0, 1, 0, 0]], np.float32))
    m = evaluate(np.array([[1, 2, 3]]), rel, k=3, n_items=4)
    assert m["precision@3"] == pytest.approx(1 / 3)
    assert m["recall@3"] == m["ndcg@3"] == m["map@3"] == pytest.approx(1.0)


def test_k_cuts_longer_lists_and_pads_shorter_ones():
    rel = sp.csr_matrix(np.array([[1, 0, 0, 1]], np.float32))
    assert evaluate(np.array([[1, 2, 0, 3]]), rel, k=2, n_items=4)["recall@2"] == 0.0
    short = evaluate(np.array([[3]]), rel, k=2, n_items=4)
    assert short["precision@2"] == pytest.approx(0.5) and short["recall@2"] == pytest.approx(0.5)


def test_a_repeated_item_counts_once():
    rel = sp.csr_matrix(np.array([[0, 1, 0]], np.float32))
    m = evaluate(np.array([[1, 1, 1]]), rel, k=3, n_items=3)
    assert m["precision@3"] == pytest.approx(1 / 3)


def test_per_user_values_average_to_the_metrics():
    m = evaluate(RECOMMENDED, RELEVANT, k=3, n_items=6, per_user=True)
    assert m["user_rows"].tolist() == [0, 1]
    for name in ("precision", "recall", "ndcg", "map"):
        assert m["per_user"][name].mean() == pytest.approx(m[f"{name}@3"])


def test_bad_input_is_rejected():
    with pytest.raises(InteractionsError, match="no user has a relevant item"):
        evaluate(RECOMMENDED, sp.csr_matrix((3, 6), dtype=np.float32), k=3, n_items=6)
    with pytest.raises(InteractionsError, match="one row per row of relevant"):
        evaluate(RECOMMENDED[:2], RELEVANT, k=3, n_items=6)
    with pytest.raises(InteractionsError, match="outside the 6 items"):
        evaluate(np.array([[9, 0, 1]] * 3), RELEVANT, k=3, n_items=6)
    with pytest.raises(InteractionsError, match="k must be >= 1"):
        evaluate(RECOMMENDED, RELEVANT, k=0, n_items=6)
