"""One contract, every model: a shared test mixin on a tiny matrix whose answers are known.

The matrix has two disjoint blocks (like implicit's RecommenderBase tests): users 0-19 buy
only items 0-7, users 20-39 only items 8-15, five of their block's eight items each, 1-3
times. A collaborative model must recommend each user an unpurchased item of their own block;
popularity must rank by number of buyers; buy-again must return the user's own items by count.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from behavior.errors import InputError, NotFittedError
from behavior.recommend.checks import InteractionsError
from behavior.recommend.interactions import Interactions
from behavior.recommend.models import ALS, BPR, EASE, Blend, BuyAgain, ItemKNN, Popularity, Recommender, from_params

N_USERS, N_ITEMS, BLOCK = 40, 16, 8


def block_of(idx):
    return np.asarray(idx) // BLOCK if np.ndim(idx) else idx // BLOCK


@pytest.fixture(scope="module")
def matrix() -> sp.csr_matrix:
    rng = np.random.default_rng(0)
    rows, cols, vals = [], [], []
    for u in range(N_USERS):
        block = 0 if u < N_USERS // 2 else 1
        purchased = rng.choice(BLOCK, size=5, replace=False) + block * BLOCK
        rows += [u] * 5
        cols += purchased.tolist()
        vals += rng.integers(1, 4, size=5).tolist()
    return sp.csr_matrix((np.array(vals, np.float32), (rows, cols)), shape=(N_USERS, N_ITEMS))


def purchased(matrix, u) -> set[int]:
    return set(matrix[u].indices.tolist())


class RecommenderContract:
    """Runs against every model; subclasses say how to make one and what the right answer is."""

    @classmethod
    def make(cls) -> Recommender:
        raise NotImplementedError

    @pytest.fixture(scope="class")
    @classmethod
    def model(cls, matrix) -> Recommender:
        return cls.make().fit(matrix)

    # ---------------------------------------------------------- the known answer
    def test_known_answer(self, model, matrix):
        users = np.arange(N_USERS)
        items, scores = model.recommend(users, matrix[users], n=1, exclude_purchased=True)
        for u in users:
            top = int(items[u, 0])
            assert top >= 0 and top not in purchased(matrix, u)
            assert block_of(top) == (0 if u < N_USERS // 2 else 1)

    def test_similar_items(self, model):
        items, scores = model.similar_items(np.arange(N_ITEMS), n=3)
        assert (items != np.arange(N_ITEMS)[:, None]).all()  # never the item itself
        if model.item_similarity:  # popularity and buy-again know nothing item-to-item
            for i in range(N_ITEMS):
                assert block_of(int(items[i, 0])) == block_of(i)

    # ---------------------------------------------------------- the contract
    def test_shapes_dtypes_and_sorted_scores(self, model, matrix):
        users = np.array([0, 5, 25])
        items, scores = model.recommend(users, matrix[users], n=4, exclude_purchased=False)
        assert items.shape == scores.shape == (3, 4)
        assert np.issubdtype(items.dtype, np.integer) and scores.dtype == np.float32
        finite = np.where(np.isfinite(scores), scores, -np.inf)
        assert (np.diff(finite, axis=1) <= 1e-6).all()
        for r in range(3):
            assert len(set(items[r][items[r] >= 0].tolist())) == int((items[r] >= 0).sum())

    def test_padding_when_fewer_candidates(self, model, matrix):
        users = np.arange(N_USERS)
        allowed = np.array([1, 9])
        items, scores = model.recommend(users, matrix[users], n=5, exclude_purchased=False, allowed_items=allowed)
        assert ((items == -1) == np.isneginf(scores)).all()
        assert np.isin(items[items >= 0], allowed).all()
        assert (items[:, 2:] == -1).all()
        # padding only after the real items
        valid = items >= 0
        assert (valid[:, 1:] <= valid[:, :-1]).all()

    def test_exclude_purchased(self, model, matrix):
        users = np.arange(N_USERS)
        items, _ = model.recommend(users, matrix[users], n=N_ITEMS, exclude_purchased=True)
        for u in users:
            assert not purchased(matrix, u) & set(items[u][items[u] >= 0].tolist())

    def test_exclude_purchased_per_item(self, model, matrix):
        users = np.arange(N_USERS)
        excludable = np.zeros(N_ITEMS, dtype=bool)
        excludable[:4] = True  # exclude purchased items 0-3 only
        items, _ = model.recommend(users, matrix[users], n=N_ITEMS, exclude_purchased=excludable)
        for u in users:
            shown = set(items[u][items[u] >= 0].tolist())
            assert not (purchased(matrix, u) & set(range(4))) & shown

    def test_batched_equals_single_and_chunked(self, model, matrix):
        users = np.arange(N_USERS)
        whole = model.recommend(users, matrix[users], n=3, exclude_purchased=True)
        chunked = model.recommend(users, matrix[users], n=3, exclude_purchased=True, chunk_size=7)
        np.testing.assert_array_equal(whole[0], chunked[0])
        single = model.recommend([7], matrix[[7]], n=3, exclude_purchased=True)
        np.testing.assert_array_equal(single[0][0], whole[0][7])
        np.testing.assert_allclose(single[1][0], whole[1][7], rtol=1e-5)

    def test_arrays_round_trip_without_pickle(self, model, matrix, tmp_path):
        arrays = model.to_arrays()
        assert all(isinstance(v, np.ndarray) and v.dtype != object for v in arrays.values())
        np.savez(tmp_path / "m.npz", **arrays)
        with np.load(tmp_path / "m.npz", allow_pickle=False) as f:
            loaded = Recommender.from_arrays(dict(f))
        assert type(loaded) is type(model) and loaded.get_params() == model.get_params()
        users = np.arange(N_USERS)
        a = model.recommend(users, matrix[users], n=4, exclude_purchased=True)
        b = loaded.recommend(users, matrix[users], n=4, exclude_purchased=True)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_allclose(a[1], b[1], rtol=1e-6)
        np.testing.assert_array_equal(model.similar_items([0, 9], 3)[0], loaded.similar_items([0, 9], 3)[0])

    def test_params_rebuild_an_equal_model(self, model, matrix):
        again = from_params(model.get_params()).fit(matrix)
        users = np.arange(N_USERS)
        np.testing.assert_array_equal(model.recommend(users, matrix, 3)[0], again.recommend(users, matrix, 3)[0])

    def test_not_fitted(self):
        with pytest.raises(NotFittedError, match="not fitted"):
            self.make().recommend([0], sp.csr_matrix((1, N_ITEMS)), 3)

    @pytest.mark.parametrize(
        "bad, message",
        [
            (sp.csr_matrix(np.ones((5, 1), np.float32)), "catalogue of 1 item"),
            (sp.csr_matrix((0, 0), dtype=np.float32), "is empty"),
            (sp.csr_matrix((4, 6), dtype=np.float32), "no positive interaction"),
        ],
        ids=["one-item catalogue", "empty matrix", "all-zero rows"],
    )
    def test_fit_rejects_unusable_input(self, bad, message):
        with pytest.raises(InteractionsError, match=message) as err:
            self.make().fit(bad)
        assert isinstance(err.value, InputError) and isinstance(err.value, ValueError)

    def test_users_with_only_refunds_are_no_input(self):
        refunds_only = Interactions([0, 1, 2], [0, 1, 1], counts=[1, 2, 0], refunds=[1, 3, 1],
                                    days_since_last=[0, 0, 0], n_users=3, n_items=4)
        net, _ = refunds_only.matrices()
        assert net.nnz == 0
        with pytest.raises(InteractionsError, match="only refunds"):
            self.make().fit(net)

    def test_recommend_rejects_bad_arguments(self, model, matrix):
        with pytest.raises(InteractionsError, match="one row per user"):
            model.recommend([0, 1], matrix[[0]], 3)
        with pytest.raises(InteractionsError, match="outside"):
            model.recommend([N_USERS + 5], matrix[[0]], 3)
        with pytest.raises(InteractionsError, match="item columns"):
            model.recommend([0], sp.csr_matrix((1, N_ITEMS + 1)), 3)


class TestALS(RecommenderContract):
    # two disjoint blocks are exactly a rank-2 structure; more factors fit noise inside a block
    @classmethod
    def make(cls):
        return ALS(factors=2, regularization=0.1, alpha=5.0, iterations=15, random_state=0)

    def test_fold_in_equals_implicit_recalculate_user(self, model, matrix):
        from implicit.cpu.als import AlternatingLeastSquares
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1, "blas"):
            ref = AlternatingLeastSquares(factors=2, regularization=0.1, alpha=5.0)
        ref.item_factors, ref.user_factors = model.item_factors_, model.user_factors_
        rows = matrix[[3, 30]]
        np.testing.assert_allclose(model.fold_in(rows), ref.recalculate_user([3, 30], rows), rtol=1e-3, atol=1e-5)

    def test_cold_user_is_folded_in(self, model, matrix):
        items, _ = model.recommend([-1, 3], matrix[[3, 3]], n=3, exclude_purchased=True)
        np.testing.assert_array_equal(items[0], items[1])

    def test_explain_matches_implicit(self, model, matrix):
        from implicit.cpu.als import AlternatingLeastSquares
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1, "blas"):
            ref = AlternatingLeastSquares(factors=2, regularization=0.1, alpha=5.0)
        ref.item_factors, ref.user_factors = model.item_factors_, model.user_factors_
        item = int(model.recommend([3], matrix[[3]], 1)[0][0, 0])
        ours = model.explain(3, matrix[[3]], item, n=5)
        _, theirs, _ = ref.explain(0, matrix[[3]], item, N=5)
        assert ours[0].tolist() == [i for i, _ in theirs]
        np.testing.assert_allclose(ours[1], [s for _, s in theirs], rtol=1e-3)


class TestBPR(RecommenderContract):
    @classmethod
    def make(cls):
        return BPR(factors=4, learning_rate=0.05, regularization=0.01, iterations=200, random_state=0)

    def test_cold_user_lands_in_their_block(self, model, matrix):
        items, _ = model.recommend([-1, -1], matrix[[3, 30]], n=1, exclude_purchased=True)
        assert block_of(int(items[0, 0])) == 0 and block_of(int(items[1, 0])) == 1


class TestItemKNNCosine(RecommenderContract):
    @classmethod
    def make(cls):
        return ItemKNN(similarity="cosine", K=10)

    def test_only_neighbours_are_candidates(self, model, matrix):
        items, _ = model.recommend([0], matrix[[0]], n=N_ITEMS, exclude_purchased=False)
        assert set(items[0][items[0] >= 0].tolist()) <= set(range(BLOCK))
        assert (items[0][BLOCK:] == -1).all()

    def test_explain_names_purchased_neighbours(self, model, matrix):
        item = int(model.recommend([0], matrix[[0]], 1)[0][0, 0])
        because, contrib = model.explain(0, matrix[[0]], item)
        assert set(because.tolist()) <= purchased(matrix, 0) and (np.diff(contrib) <= 0).all()


class TestItemKNNBM25(RecommenderContract):
    @classmethod
    def make(cls):
        return ItemKNN(similarity="bm25", K=10, weighting="bm25")


class TestEASE(RecommenderContract):
    @classmethod
    def make(cls):
        return EASE(regularization=0.5, K=N_ITEMS)

    def test_weights_are_steck_closed_form(self, model, matrix):
        """B = I - P diag(1 / diag(P)), P = (X^T X + lambda I)^-1, computed directly in float64."""
        x = matrix.toarray().astype(np.float64)
        gram = x.T @ x
        p = np.linalg.inv(gram + 0.5 * np.diag(gram).mean() * np.eye(N_ITEMS))
        expected = np.eye(N_ITEMS) - p / np.diag(p)[None, :]
        np.testing.assert_allclose(model.similarity_.toarray(), expected, rtol=1e-4, atol=1e-6)
        scores = x @ expected
        items, got = model.recommend(np.arange(N_USERS), matrix, n=3, exclude_purchased=False)
        np.testing.assert_allclose(got, np.take_along_axis(scores, items, axis=1), rtol=1e-4, atol=1e-5)

    def test_pruning_keeps_the_largest_weights_of_each_column(self, model, matrix):
        pruned = EASE(regularization=0.5, K=3).fit(matrix).similarity_.toarray()
        full = model.similarity_.toarray()
        assert ((pruned != 0).sum(axis=0) <= 3).all()
        for j in range(N_ITEMS):
            kept = np.flatnonzero(pruned[:, j])
            assert np.abs(full[kept, j]).min() >= np.sort(np.abs(full[:, j]))[-3] - 1e-7
            np.testing.assert_array_equal(pruned[kept, j], full[kept, j])

    def test_larger_catalogue_than_the_dense_inverse_allows_is_refused(self, monkeypatch):
        monkeypatch.setattr("behavior.recommend.ease.MAX_ITEMS", 10)
        with pytest.raises(InteractionsError, match="limited to catalogues of 10 items"):
            EASE().fit(sp.csr_matrix(np.eye(12, dtype=np.float32)))


class TestPopularity(RecommenderContract):
    @classmethod
    def make(cls):
        return Popularity()

    def test_known_answer(self, model, matrix):
        buyers = np.bincount(matrix.indices, minlength=N_ITEMS)
        items, scores = model.recommend(np.arange(N_USERS), matrix, n=N_ITEMS, exclude_purchased=False)
        np.testing.assert_array_equal(scores[0], np.sort(buyers)[::-1])
        np.testing.assert_array_equal(buyers[items[0]], np.sort(buyers)[::-1])
        assert (items == items[0]).all()  # everyone gets the same list


class TestBuyAgain(RecommenderContract):
    @classmethod
    def make(cls):
        return BuyAgain()

    def test_known_answer(self, model, matrix):
        items, scores = model.recommend(np.arange(N_USERS), matrix, n=N_ITEMS, exclude_purchased=False)
        for u in range(N_USERS):
            shown = items[u][items[u] >= 0]
            assert set(shown.tolist()) == purchased(matrix, u)
            np.testing.assert_allclose(scores[u][: shown.size], np.sort(matrix[u].data)[::-1], atol=1e-3)
        excluded, _ = model.recommend(np.arange(N_USERS), matrix, n=3, exclude_purchased=True)
        assert (excluded == -1).all()

    def test_recency_decays_old_purchases(self, matrix):
        inter = Interactions([0, 0], [1, 2], counts=[3, 1], refunds=[0, 0], days_since_last=[360, 0],
                             n_users=1, n_items=3)
        net, days = inter.matrices()
        model = BuyAgain(weighting="recency", weighting_params={"half_life_days": 90}).fit(net, days)
        items, scores = model.recommend([0], net, n=2, exclude_purchased=False, days=days)
        assert items[0].tolist() == [2, 1]  # 1 recent purchase beats 3 a year ago (3/16)
        np.testing.assert_allclose(scores[0], [1.0, 3 / 16], atol=1e-3)


class TestBlend(RecommenderContract):
    @classmethod
    def make(cls):
        return Blend(ItemKNN(similarity="cosine", K=10), Popularity(), weight=0.7)

    def test_weight_extremes_are_the_components(self, matrix):
        knn, pop = ItemKNN(K=10).fit(matrix), Popularity().fit(matrix)
        users = np.arange(N_USERS)
        only_pop = Blend.of_fitted(knn, pop, 0.0).recommend(users, matrix, 4, exclude_purchased=False)[0]
        np.testing.assert_array_equal(only_pop, pop.recommend(users, matrix, 4, exclude_purchased=False)[0])

    def test_blend_of_unequal_models_is_rejected(self, matrix):
        with pytest.raises(InteractionsError, match="same users x items"):
            Blend.of_fitted(Popularity().fit(matrix), Popularity().fit(matrix[:5]), 0.5)


def test_pruned_top_n_of_factor_models_is_exact_on_a_wide_catalogue():
    """Above PRUNE_MIN_ITEMS items, factor models scan items by decreasing norm and stop early;
    the result must equal the brute-force top-n, exclusions and blocked items included."""
    from behavior.recommend.factors import PRUNE_MIN_ITEMS
    from behavior.recommend.topk import top_k

    rng = np.random.default_rng(4)
    n_users, n_items, lines = 3000, PRUNE_MIN_ITEMS + 1811, 60_000
    users = rng.integers(0, n_users, lines)
    items = rng.permutation(n_items)[np.minimum(rng.zipf(1.4, lines) - 1, n_items - 1)]
    x = sp.csr_matrix((np.ones(lines, np.float32), (users, items)), shape=(n_users, n_items))
    x.sum_duplicates()
    model = ALS(factors=16, iterations=4, random_state=0).fit(x)
    blocked = rng.random(n_items) < 0.1
    asked = np.arange(0, n_users, 3)
    got_i, got_v = model.recommend(asked, x[asked], n=10, exclude_purchased=True, allowed_items=~blocked)
    dense = model.user_factors_[asked] @ model.item_factors_.T
    dense[:, blocked] = -np.inf
    rows = x[asked].tocoo()
    dense[rows.row, rows.col] = -np.inf
    want_i, want_v = top_k(dense, 10)
    np.testing.assert_allclose(got_v, want_v, rtol=1e-5)
    assert (got_i == want_i).mean() > 0.999  # identical up to exact float ties


def test_exclude_purchased_must_be_a_bool(matrix):
    model = Popularity().fit(matrix)
    with pytest.raises(InteractionsError, match="exclude_purchased must be a bool"):
        model.recommend([0], matrix[[0]], 3, exclude_purchased="per_category")


@pytest.mark.parametrize("make", [lambda: ItemKNN(K=5), lambda: ALS(factors=4, iterations=3), BuyAgain,
                                  lambda: Blend(BuyAgain(), ItemKNN(K=5), 0.4)])
def test_the_lists_do_not_depend_on_the_scoring_threads(matrix, monkeypatch, make):
    """Chunks of users are ranked on threads (`over_chunks`); one thread or four, in chunks of
    three users, the lists and scores are the same."""
    import behavior.recommend.base as base

    model = make().fit(matrix)
    users = np.arange(N_USERS)
    answers = []
    for threads in (1, 4):
        monkeypatch.setattr(base, "MAX_SCORING_THREADS", threads)
        answers.append(model.recommend(users, matrix[users], n=5, exclude_purchased=False, chunk_size=3))
    assert np.array_equal(answers[0][0], answers[1][0]) and np.array_equal(answers[0][1], answers[1][1])
    assert (answers[0][0][:, 0] >= 0).all()
