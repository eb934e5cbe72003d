"""The search's sparse ranking: the candidate scores of buy-again, item kNN, EASE and their blends
are their dense scores' finite cells bit for bit, and the lists ranked from them (and popularity's
from its one shared order) hold the same scores as the dense ranking's, equal scores by item."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from behavior.recommend.blend import Blend
from behavior.recommend.ease import EASE
from behavior.recommend.models import ALS, BuyAgain, ItemKNN, Popularity
from behavior.recommend.select import Bench
from behavior.recommend.topk import normalise_csr, normalise_rows, top_k, top_k_csr


def dense(m: sp.csr_matrix) -> np.ndarray:
    out = np.full(m.shape, -np.inf, dtype=np.float32)
    coo = m.tocoo()
    out[coo.row, coo.col] = coo.data
    return out


def canonical(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k by decreasing score, equal scores by increasing item, -1 / -inf padded."""
    idx = np.full((scores.shape[0], k), -1, dtype=np.int64)
    val = np.full((scores.shape[0], k), -np.inf, dtype=np.float32)
    for r, row in enumerate(scores):
        items = np.flatnonzero(np.isfinite(row))
        items = items[np.lexsort((items, -row[items]))][:k]
        idx[r, :items.size], val[r, :items.size] = items, row[items]
    return idx, val


@st.composite
def sparse_scores(draw):
    rows, cols = draw(st.integers(1, 12)), draw(st.integers(1, 40))
    density = draw(st.floats(0.0, 1.0))
    # few distinct values: ties everywhere, -0.0 beside 0.0 included
    values = draw(st.lists(st.sampled_from([-2.0, -0.0, 0.0, 0.5, 1.0, 3.0]), min_size=rows * cols,
                           max_size=rows * cols))
    seed = draw(st.integers(0, 2 ** 16))
    r, c = np.nonzero(np.random.default_rng(seed).random((rows, cols)) < density)
    return sp.csr_matrix((np.array(values, np.float32).reshape(rows, cols)[r, c], (r, c)), shape=(rows, cols))


@settings(max_examples=200, deadline=None)
@given(sparse_scores(), st.integers(1, 12))
def test_top_k_csr_is_the_dense_top_k_with_equal_scores_by_item(m, k):
    idx, val = top_k_csr(m, k)
    ref_idx, ref_val = canonical(dense(m), k)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_array_equal(val, ref_val)
    np.testing.assert_array_equal(val, top_k(dense(m), k)[1])   # the same scores as the dense ranking


@settings(max_examples=200, deadline=None)
@given(sparse_scores())
def test_normalise_csr_is_normalise_rows_bit_for_bit(m):
    got = dense(normalise_csr(m))
    want = normalise_rows(dense(m))
    stored = np.isfinite(dense(m))
    assert np.array_equal(got[stored].view(np.uint32), want[stored].view(np.uint32))


@settings(max_examples=100, deadline=None)
@given(sparse_scores(), st.integers(1, 12), st.integers(1, 60))
def test_top_k_csr_pads_rows_in_blocks_to_the_same_answer(m, k, cells):
    from behavior.recommend import topk

    whole = top_k_csr(m, k)
    saved, topk._PADDED_CELLS = topk._PADDED_CELLS, cells
    try:
        blocks = top_k_csr(m, k)
    finally:
        topk._PADDED_CELLS = saved
    np.testing.assert_array_equal(blocks[0], whole[0])
    np.testing.assert_array_equal(blocks[1], whole[1])


def test_an_unsorted_row_ranks_as_a_sorted_one():
    m = sp.csr_matrix((np.array([1.0, 2.0, 1.0, 2.0], np.float32), np.array([7, 5, 2, 9]), np.array([0, 4])),
                      shape=(1, 10))
    assert top_k_csr(m, 3)[0].tolist() == [[5, 9, 2]]


@pytest.fixture(scope="module")
def world():
    rng = np.random.default_rng(3)
    users, items = 3000, 300
    rows = np.repeat(np.arange(users), 6)
    cols = np.minimum(rng.zipf(1.3, rows.size) - 1, items - 1)
    net = sp.csr_matrix((rng.integers(1, 4, rows.size).astype(np.float32), (rows, cols)), shape=(users, items))
    net.sum_duplicates()
    days = net.copy()
    days.data = rng.uniform(0, 300, days.nnz).astype(np.float32)
    vcols = np.minimum(rng.zipf(1.3, users) - 1, items - 1)
    valid = sp.csr_matrix((np.ones(users, np.float32), (np.arange(users), vcols)), shape=(users, items))
    return net, days, valid


def fitted(world):
    net, days, _ = world
    knn = ItemKNN(K=20).fit(net, days)
    again = BuyAgain(weighting="recency").fit(net, days)
    return {"buy_again": again, "item_knn": knn, "bm25_knn": ItemKNN(similarity="bm25", K=30).fit(net, days),
            "ease": EASE(K=30).fit(net, days), "blend": Blend.of_fitted(again, knn, 0.4),
            "popularity": Popularity(measure="weight", weighting="recency").fit(net, days)}


def test_candidate_scores_are_the_dense_scores_finite_cells(world):
    net, days, _ = world
    users = np.arange(0, 3000, 7)
    for name, model in fitted(world).items():
        if not model.sparse_candidates:
            assert name == "popularity" and model.shared_scores() is not None
            continue
        want = model._score_rows(users, net[users], days[users], None)
        got = dense(model.candidate_scores(users, net[users], days[users]))
        assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), name


def test_factor_models_have_neither_sparse_nor_shared_scores(world):
    net, days, _ = world
    als = ALS(factors=8, iterations=2).fit(net, days)
    assert not als.sparse_candidates and als.shared_scores() is None
    assert not Blend.of_fitted(als, BuyAgain().fit(net, days), 0.5).sparse_candidates


def test_the_search_ranks_the_dense_scores_with_equal_scores_by_item(world):
    """Every exclusion policy (none, all purchased items, per item): each validation user's list
    is the canonical top-k of the model's dense scores with the policy's items at -inf."""
    net, days, valid = world
    bench = Bench(net, days, valid, 10, 1000, 0)
    mask = np.arange(net.shape[1]) % 3 == 0
    policies = (False, True, mask)
    for name, model in fitted(world).items():
        lists = bench._model_lists(model, policies)
        scores = model._score_rows(bench.users, bench.rows, bench.days, None)
        r = np.repeat(np.arange(bench.rows.shape[0]), np.diff(bench.rows.indptr))
        c = bench.rows.indices
        for got, exclude in zip(lists, policies):
            s = scores.copy()
            if exclude is not False:
                keep = np.ones(c.size, bool) if exclude is True else exclude[c]
                s[r[keep], c[keep]] = -np.inf
            np.testing.assert_array_equal(got, canonical(s, 10)[0], err_msg=f"{name} {exclude!r:.20}")


def test_the_blend_search_mixes_the_sparse_scores_as_the_dense_blend(world):
    net, days, valid = world
    bench = Bench(net, days, valid, 10, 1000, 0)
    models = fitted(world)
    blend, metrics, _, _ = bench.best_blend(models["buy_again"], models["item_knn"], (0.2, 0.6), (False, True))
    dense_blend = Blend.of_fitted(models["buy_again"], models["item_knn"], blend.weight)
    scores = dense_blend._score_rows(bench.users, bench.rows, bench.days, None)
    best = max((bench._evaluate(canonical(s, 10)[0])[0] for s in (scores, _excluded(scores, bench.rows))),
               key=lambda m: m["ndcg@10"])
    assert metrics == best


def _excluded(scores: np.ndarray, rows: sp.csr_matrix) -> np.ndarray:
    s = scores.copy()
    s[np.repeat(np.arange(rows.shape[0]), np.diff(rows.indptr)), rows.indices] = -np.inf
    return s
