"""Interactions -> matrix: duplicates summed, refunds netted, confidence schemes by hand, id maps."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from implicit.nearest_neighbours import bm25_weight

from behavior.errors import InputError
from behavior.recommend.checks import InteractionsError
from behavior.recommend.interactions import IdMap, Interactions, build_matrix, confidence
from behavior.recommend.topk import normalise_rows, top_k
from behavior.recommend.weighting import Weighting, weigh


def test_build_matrix_sums_duplicates_and_drops_zeros():
    m = build_matrix([0, 0, 1, 2, 0], [1, 1, 0, 2, 2], [1, 2, 5, 0, 1], n_users=4, n_items=3)
    assert isinstance(m, sp.csr_matrix) and m.shape == (4, 3) and m.dtype == np.float32
    np.testing.assert_array_equal(m.toarray(), [[0, 3, 1], [5, 0, 0], [0, 0, 0], [0, 0, 0]])
    assert m.nnz == 3  # the zero weight of (2, 2) is not stored


@pytest.mark.parametrize(
    "args, message",
    [
        (([0, 5], [0, 1], [1, 1], 3, 2), "user_idx holds index 5"),
        (([0, 1], [0, -1], [1, 1], 3, 2), "item_idx holds index -1"),
        (([0, 1], [0], [1, 1], 3, 2), "user_idx has 2 entries but item_idx has 1"),
        (([0, 1], [0, 1], [1, np.nan], 3, 2), "NaN"),
        (([0.5], [0], [1], 3, 2), "integer indices"),
        (([0], [0], [-1], 3, 2), "weight must be >= 0"),
    ],
)
def test_build_matrix_rejects_bad_arrays(args, message):
    with pytest.raises(InteractionsError, match=message):
        build_matrix(*args)


def test_confidence_schemes_by_hand():
    counts, refunds, days = np.array([3, 1, 2, 4]), np.array([0, 2, 1, 0]), np.array([0, 10, 90, 180])
    # net counts: 3, 0 (more refunds than purchases, clipped), 1, 4
    np.testing.assert_allclose(confidence(counts, refunds, days, "count"), [3, 0, 1, 4])
    np.testing.assert_allclose(
        confidence(counts, refunds, days, "log", alpha=2.0),
        [1 + 2 * math.log(4), 0, 1 + 2 * math.log(2), 1 + 2 * math.log(5)],
    )
    # half-life 90 days: 3 * 1, 0, 1 * 1/2, 4 * 1/4
    np.testing.assert_allclose(confidence(counts, refunds, days, "recency", half_life_days=90), [3, 0, 0.5, 1])


def test_confidence_errors_are_precise():
    with pytest.raises(InteractionsError, match="unknown confidence scheme 'tfidf'"):
        confidence([1], [0], [0], "tfidf")
    with pytest.raises(InteractionsError, match="has no parameter 'alpha'"):
        confidence([1], [0], [0], "count", alpha=2)
    with pytest.raises(InteractionsError, match="matrix-level|whole matrix"):
        confidence([1], [0], [0], "bm25")
    with pytest.raises(InteractionsError, match="needs days_since_last"):
        confidence([1], [0], None, "recency")


def test_bm25_is_implicits_and_the_fitted_weighting_reproduces_it():
    rng = np.random.default_rng(1)
    m = sp.random(30, 12, density=0.3, format="csr", random_state=2, dtype=np.float32)
    m.data[:] = rng.integers(1, 5, m.nnz)
    expected = sp.csr_matrix(bm25_weight(m, K1=100, B=0.8)).toarray()
    np.testing.assert_allclose(weigh(m, "bm25").toarray(), expected, rtol=1e-5)
    fitted = Weighting("bm25").fit(m)
    np.testing.assert_allclose(fitted.transform(m).toarray(), expected, rtol=1e-5)
    # a single user's row later is weighted with the training idf and mean row length
    np.testing.assert_allclose(fitted.transform(m[[4]]).toarray(), expected[[4]], rtol=1e-5)
    restored = Weighting.from_arrays(fitted.to_arrays())
    np.testing.assert_allclose(restored.transform(m[[4]]).toarray(), expected[[4]], rtol=1e-5)


def test_bm25_keeps_an_item_everyone_bought_positive():
    m = sp.csr_matrix(np.ones((3, 2), np.float32))  # idf = log 3 - log 4 < 0 for both items
    w = weigh(m, "bm25")
    assert w.nnz == 6 and (w.data > 0).all()


def test_interactions_net_refunds_and_align_days():
    inter = Interactions(
        user_idx=[0, 0, 1, 1, 2, 0], item_idx=[1, 2, 0, 2, 1, 1],
        counts=[2, 1, 1, 3, 0, 1], refunds=[0, 1, 0, 1, 2, 0], days_since_last=[5, 1, 0, 30, 0, 2],
        n_users=3, n_items=3,
    )
    net, days = inter.matrices()
    # (0,1) appears twice: 2 + 1 purchases, last 2 days ago; (0,2) fully refunded; user 2 only refunds
    np.testing.assert_array_equal(net.toarray(), [[0, 3, 0], [1, 0, 2], [0, 0, 0]])
    np.testing.assert_array_equal(days.indptr, net.indptr)
    np.testing.assert_array_equal(days.indices, net.indices)
    np.testing.assert_array_equal(days.data, [2, 0, 30])  # the day-0 purchase is kept, not dropped
    recency = weigh(net, "recency", days=days, half_life_days=30)
    np.testing.assert_allclose(recency.toarray(), [[0, 3 * 2 ** (-2 / 30), 0], [1, 0, 1], [0, 0, 0]], rtol=1e-6)
    with pytest.raises(InteractionsError, match="same sparsity pattern"):
        weigh(net, "recency", days=sp.csr_matrix(net.shape))


_entry = st.tuples(st.integers(0, 3), st.integers(0, 4), st.integers(0, 3), st.integers(0, 2), st.integers(0, 60))


@settings(max_examples=60, deadline=None)
@given(entries=st.lists(_entry, max_size=30), seed=st.integers(0, 1000))
def test_matrices_in_order_or_shuffled_equal_a_plain_reference(entries, seed):
    """Entries in (user, item) order take the linear path, shuffled ones the sort: both must give
    the pairs' summed counts and refunds and their smallest days, purchased pairs only."""
    ref: dict = {}
    for u, i, c, r, d in entries:
        c0, r0, d0 = ref.get((u, i), (0, 0, math.inf))
        ref[(u, i)] = (c0 + c, r0 + r, min(d0, d))
    want_net = np.zeros((4, 5))
    want_days = np.zeros((4, 5))
    for (u, i), (c, r, d) in ref.items():
        if c > r:
            want_net[u, i], want_days[u, i] = c - r, d
    for rows in (sorted(entries, key=lambda e: (e[0], e[1])),
                 [entries[j] for j in np.random.default_rng(seed).permutation(len(entries))]):
        cols = list(zip(*rows)) if rows else [[]] * 5
        net, days = Interactions(*(np.array(c, dtype=np.int64 if k < 2 else float) for k, c in enumerate(cols)),
                                 n_users=4, n_items=5).matrices()
        np.testing.assert_array_equal(net.toarray(), want_net)
        np.testing.assert_array_equal(days.indices, net.indices)
        np.testing.assert_array_equal(days.indptr, net.indptr)
        np.testing.assert_array_equal(days.toarray(), np.where(want_net > 0, want_days, 0))


def test_id_map_round_trip(tmp_path):
    ids = IdMap.fit(["u3", "u1", "u2", "u1"])
    assert len(ids) == 3 and ids.ids.tolist() == ["u1", "u2", "u3"]
    np.testing.assert_array_equal(ids.index(["u2", "nope", "u1"]), [1, -1, 0])
    assert ids.index_of("u3") == 2 and ids.index_of("zz") == -1 and ids.index_of("") == -1
    assert ids.ids_of([2, 0]).tolist() == ["u3", "u1"]
    np.savez(tmp_path / "ids.npz", **ids.to_arrays("user_"))
    with np.load(tmp_path / "ids.npz", allow_pickle=False) as f:
        again = IdMap.from_arrays(f, "user_")
    assert again.ids.tolist() == ids.ids.tolist()
    with pytest.raises(InputError, match="sorted and unique"):
        IdMap(["b", "a"])
    with pytest.raises(InputError, match="null"):
        IdMap.fit(["a", None])
    assert IdMap([]).index(["a"]).tolist() == [-1]


def test_top_k_is_exact_on_wide_rows_with_ties_and_padding():
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 50, size=(40, 20_011)).astype(np.float32)  # many ties, odd width
    scores[rng.random(scores.shape) < 0.5] = -np.inf
    scores[0, :] = -np.inf
    scores[0, [7, 20_010]] = [1.0, 2.0]  # only two candidates, one in the ragged tail
    idx, val = top_k(scores, 10)
    expected = -np.sort(-scores, axis=1)[:, :10]
    np.testing.assert_array_equal(val, expected)
    assert idx[0, :2].tolist() == [20_010, 7] and (idx[0, 2:] == -1).all()
    rows = np.arange(40)[:, None]
    ok = idx >= 0
    np.testing.assert_array_equal(scores[rows, np.maximum(idx, 0)][ok], val[ok])


def test_normalise_rows():
    s = np.array([[2.0, 1.0, -np.inf], [-1.0, 1.0, 3.0], [-np.inf, -np.inf, -np.inf], [5.0, 5.0, 5.0]], np.float32)
    np.testing.assert_allclose(
        normalise_rows(s),
        [[1.0, 0.5, 0.0], [0.0, 0.5, 1.0], [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]],
    )


def test_idmap_arrow_is_one_array_above_pyarrows_chunking_of_numpy_strings():
    # pa.array of numpy fixed-width strings returns a ChunkedArray above about 2M values (the
    # 100M-line bundle's 5.8M users); the API's erasure index concatenates it with the profiles'
    ids = np.char.add("u", np.char.zfill(np.arange(2_100_000).astype(str), 8))
    assert isinstance(pa.array(ids, pa.string()), pa.ChunkedArray)   # the case this guards
    arrow = IdMap(ids).arrow()
    assert isinstance(arrow, pa.StringArray) and len(arrow) == ids.size
    assert arrow[0].as_py() == "u00000000" and arrow[-1].as_py() == "u02099999"
    assert pa.concat_arrays([pa.array(["a"]), arrow]).to_pylist()[1:3] == ["u00000000", "u00000001"]
    table = IdMap(ids[:3]).to_table()
    assert table.column("id").to_pylist() == ["u00000000", "u00000001", "u00000002"]
    assert table.column("idx").to_pylist() == [0, 1, 2]


@settings(max_examples=60, deadline=None)
@given(values=st.lists(st.sampled_from([0.0, -0.0, 1.0, 2.0, 3.0, 0.5, 1e-30, 7.25, 1e30]), min_size=1, max_size=30),
       seed=st.integers(0, 1000))
def test_count_weighting_is_the_confidence_of_the_net_counts_bit_for_bit(values, seed):
    """The "count" scheme weighs a matrix without the element-wise float64 path; the weights are
    the float32 of `confidence(..., "count")` bit for bit, zeros (and -0.0) dropped, as before."""
    rng = np.random.default_rng(seed)
    cells = rng.choice(6 * 7, size=len(values), replace=False)
    m = sp.csr_matrix((np.array(values, np.float32), (cells // 7, cells % 7)), shape=(6, 7))
    m.sort_indices()
    want = sp.csr_matrix((confidence(m.data, None, None, "count").astype(np.float32), m.indices.copy(),
                          m.indptr.copy()), shape=m.shape)
    want.eliminate_zeros()
    got = Weighting("count").fit(m).transform(m)
    assert got.data.dtype == np.float32 and got.data is not m.data
    for a, b in ((got.data, want.data), (got.indices, want.indices), (got.indptr, want.indptr)):
        assert np.array_equal(a.view(np.uint8), b.view(np.uint8))


@pytest.mark.parametrize("scheme", ["count", "log", "bm25"])
def test_weighing_a_matrix_with_zero_weights_leaves_the_matrix_as_it_was(scheme):
    """Zero weights are dropped from the result, not from the caller's matrix (whose index arrays
    the result would otherwise share and rewrite)."""
    m = sp.csr_matrix(np.array([[0, 1, 2], [3, 0, 4], [0, 0, 5]], np.float32))
    m.data[[0, 2]] = 0.0                                   # explicit zeros: weights of 0
    before = (m.data.copy(), m.indices.copy(), m.indptr.copy())
    got = Weighting(scheme).fit(m).transform(m) if scheme != "log" else weigh(m, "log")
    for a, b in zip((m.data, m.indices, m.indptr), before):
        assert np.array_equal(a, b)
    assert got.nnz == 3 and not (got.data == 0).any()
