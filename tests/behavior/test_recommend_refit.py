"""fit_every_user: the stage's refits, bounded for ALS by a sample of users plus one least-squares step."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from behavior.recommend.models import ALS, Blend, BuyAgain, ItemKNN


@pytest.fixture(scope="module")
def matrix():
    m = sp.random(600, 40, density=0.08, format="csr", random_state=3, dtype=np.float32)
    m.data = np.ceil(m.data * 4).astype(np.float32)
    keep = np.ones(m.shape[0], np.float32)
    keep[7] = 0       # a user with no purchase keeps a zero vector
    m = sp.csr_matrix(sp.diags(keep) @ m)
    m.eliminate_zeros()
    return m


def _als(weighting="count"):
    return ALS(factors=6, regularization=0.1, alpha=3.0, iterations=6, random_state=0, weighting=weighting)


def test_within_the_bound_every_model_is_fitted_as_by_fit(matrix):
    for make in (_als, lambda: ItemKNN(K=5), BuyAgain):
        a = make().fit(matrix).to_arrays()
        b = make().fit_every_user(matrix, max_fit_users=10_000, seed=3).to_arrays()
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    a, b = ItemKNN(K=5).fit(matrix), ItemKNN(K=5).fit_every_user(matrix, max_fit_users=50)
    assert (a.similarity_ != b.similarity_).nnz == 0   # item kNN's neighbours need every user


@pytest.mark.parametrize("weighting", ["count", "bm25"])
def test_als_above_the_bound_fits_items_on_a_sample_and_solves_every_user(matrix, weighting):
    model = _als(weighting).fit_every_user(matrix, max_fit_users=200, seed=5)
    active = np.flatnonzero(np.diff(matrix.indptr) > 0)
    rows = np.sort(np.random.default_rng(5).choice(active, size=200, replace=False))
    sample = _als(weighting).fit(matrix[rows])
    assert np.array_equal(model.item_factors_, sample.item_factors_)
    assert model.n_users_ == matrix.shape[0] == model.user_factors_.shape[0]
    # each user's factors: the exact solve of the fold-in (float64 there, float32 in implicit's solver)
    folded = sample.fold_in(matrix)
    np.testing.assert_allclose(model.user_factors_, folded, atol=1e-4 * np.abs(folded).max())
    assert not model.user_factors_[7].any()
    items, _ = model.recommend(np.arange(20), matrix[:20], n=5)
    assert (items >= 0).all()


def test_a_blend_refits_each_component_its_own_way(matrix):
    blend = Blend(_als(), ItemKNN(K=5), 0.4).fit_every_user(matrix, max_fit_users=200, seed=5)
    als = _als().fit_every_user(matrix, max_fit_users=200, seed=5)
    assert np.array_equal(blend.a.user_factors_, als.user_factors_) and blend.n_users_ == matrix.shape[0]
    assert (blend.b.similarity_ != ItemKNN(K=5).fit(matrix).similarity_).nnz == 0
