"""Matrix-factorisation recommenders on implicit: ALS and BPR.

score(u, i) = x_u . y_i with user factors x and item factors y. A user the model has not
seen (user_idx = -1) is *folded in* from their row, without retraining:

- ALS: the exact least-squares step of Hu, Koren and Volinsky (2008) with the item factors
  fixed, x_u = (Y^T Y + reg I + Y^T (C_u - I) Y)^-1 Y^T C_u p_u, C_u = alpha * confidence
  (what implicit's `recalculate_user` computes).
- SparkALS (factors trained by Spark MLlib's ALS with implicitPrefs): MLlib's own step,
  x_u = (Y^T Y + reg n_u I + Y^T (C_u - I) Y)^-1 Y^T C_u p_u with C_u = 1 + alpha * weight
  and n_u the number of the user's items (MLlib scales reg by it, as in ALS-WR).
- BPR: the direction of steepest ascent of the BPR objective at x_u = 0, i.e.
  mean(y over the user's items) - mean(y over all items), scaled to the mean length of the
  trained user vectors (the bias column is kept at 1).

Top-n over a large catalogue skips most item factors, exactly: items are scanned in blocks
of decreasing norm |y|, and since x . y <= |x| |y|, a user is done as soon as their n-th
best score so far is >= |x| times the largest norm not yet scanned. Popular items have the
largest norms, so a user's list is usually settled after the first few blocks.

`explain` lists the purchased items that contribute most: for ALS the exact decomposition
s_ui = sum_j (y_i^T W_u y_j) c_uj with W_u the inverse above (implicit's `explain`); for BPR the
cosine similarity of item factors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from behavior.recommend.base import Recommender
from behavior.recommend.checks import as_index_array, check_matrix, check_trainable
from behavior.recommend.topk import top_k, top_k_row

PRUNE_MIN_ITEMS = 8192  # below this a dense product is as fast as the pruned scan
PRUNE_CHUNK_USERS = 1024
PRUNE_BLOCK_CELLS = 1 << 22  # users x items scored per step (16 MB of float32)
PRUNE_BLOCKS = (1024, 8192)  # items per step: small steps let a single user stop early


@dataclass(frozen=True)
class NormIndex:
    """Items in decreasing order of factor norm: ids, contiguous factors, norms, and the
    position of every catalogue item in that order (-1 when not in the index)."""

    items: np.ndarray
    factors: np.ndarray
    norms: np.ndarray
    rank: np.ndarray

    @classmethod
    def build(cls, item_factors: np.ndarray, items: np.ndarray) -> NormIndex:
        norms = np.linalg.norm(item_factors[items], axis=1)
        order = np.argsort(-norms, kind="stable")
        rank = np.full(item_factors.shape[0], -1, dtype=np.int64)
        rank[items[order]] = np.arange(order.size)
        return cls(items[order], np.ascontiguousarray(item_factors[items[order]]), norms[order], rank)


class FactorModel(Recommender):
    """Shared scoring, similarity and arrays of the factor models."""

    def _scores(self, user_idx, confidence, items):
        x = self.user_vectors(user_idx, confidence)
        y = self.item_factors_ if items is None else self.item_factors_[items]
        return x @ y.T

    def _row_scorer(self, items, known_user):
        if not known_user:
            return None  # a new user is folded in: the general path does that
        y = self.item_factors_ if items is None else self.item_factors_[items]
        x = self.user_factors_
        return lambda user_idx, cols, data, days: (x[[user_idx]] @ y.T)[0]

    def user_top_index(self, allowed: np.ndarray) -> NormIndex:
        return self.norm_index(np.flatnonzero(allowed))

    def user_top(self, user_idx, n, skip, index, *, fast=True):
        if not fast:
            return tuple(a[0] for a in self.top_by_norm(self.user_factors_[user_idx: user_idx + 1], n,
                                                         (np.zeros(skip.size, np.int64), skip), index=index))
        # `top_by_norm` for one user: the same blocks, products, early stop and `top_k`
        # merges, without the bookkeeping for many users
        size = index.items.size
        x = self.user_factors_[user_idx: user_idx + 1]
        x_norm = np.linalg.norm(x, axis=1)[0]
        x = x[[0]]  # top_by_norm scores a gathered copy of the rows still active
        best_i = np.full(n, -1, dtype=np.int64)
        best_v = np.full(n, -np.inf, dtype=np.float32)
        own = index.rank[skip]
        own = own[own >= 0]
        block, high = PRUNE_BLOCKS
        start = 0
        while start < size:
            stop = min(start + block, size)
            s = (x @ index.factors[start:stop].T)[0]
            if own.size:
                s[own[(own >= start) & (own < stop)] - start] = -np.inf
            pos, val = top_k_row(np.concatenate([best_v, s]), n)
            kept = best_i[np.clip(pos, 0, n - 1)]
            fresh = index.items[np.clip(start + pos - n, 0, size - 1)]
            best_i = np.where(pos < 0, -1, np.where(pos < n, kept, fresh))
            best_v = val
            start, block = stop, min(block * 2, high)
            if start < size and not best_v[n - 1] < x_norm * index.norms[start]:
                break
        return best_i, best_v

    def norm_index(self, items=None) -> NormIndex:
        """The items (all, or the given subset) in decreasing order of factor norm."""
        if items is None:
            if getattr(self, "_by_norm", None) is None:
                self._by_norm = NormIndex.build(self.item_factors_, np.arange(self.n_items_))
            return self._by_norm
        return NormIndex.build(self.item_factors_, np.asarray(items, dtype=np.int64))

    def _chunk_rows(self, width, all_items):
        if all_items and width >= PRUNE_MIN_ITEMS:
            return PRUNE_CHUNK_USERS
        return super()._chunk_rows(width, all_items)

    def _top_chunk(self, users, rows, days, n, purchased, items, blocked, position):
        if items is not None or self.n_items_ < PRUNE_MIN_ITEMS:
            return super()._top_chunk(users, rows, days, n, purchased, items, blocked, position)
        x = self.user_vectors(users, self.weighting_.transform(rows, days))
        return self.top_by_norm(x, n, purchased, blocked)

    def top_by_norm(self, x: np.ndarray, n: int, purchased=None, blocked=None, index: NormIndex | None = None):
        """Exact top-n of x @ Y.T over `index` (default: every item), scanning by decreasing norm.

        purchased: (row, item) pairs to skip; blocked: per-item bool mask of items to skip. Rows
        stop as soon as their n-th best score reaches |x| times the largest unscanned norm.
        """
        index = self.norm_index() if index is None else index
        m, size = x.shape[0], index.items.size
        x = np.ascontiguousarray(x, dtype=np.float32)
        x_norm = np.linalg.norm(x, axis=1)
        best_i = np.full((m, n), -1, dtype=np.int64)
        best_v = np.full((m, n), -np.inf, dtype=np.float32)
        skip = None if blocked is None else blocked[index.items]
        purchased_r, purchased_s = np.zeros(0, np.int64), np.zeros(0, np.int64)
        if purchased is not None and purchased[0].size:
            purchased_s = index.rank[purchased[1]]
            purchased_r, purchased_s = purchased[0][purchased_s >= 0], purchased_s[purchased_s >= 0]
        active = np.arange(m)
        low, high = PRUNE_BLOCKS
        block = low if m < 64 else int(np.clip(PRUNE_BLOCK_CELLS // m, low, high))
        start = 0
        while start < size and active.size:
            stop = min(start + block, size)
            s = x[active] @ index.factors[start:stop].T
            if skip is not None:
                s[:, skip[start:stop]] = -np.inf
            if purchased_r.size:
                where = np.full(m, -1, dtype=np.int64)
                where[active] = np.arange(active.size)
                hit = (purchased_s >= start) & (purchased_s < stop) & (where[purchased_r] >= 0)
                s[where[purchased_r[hit]], purchased_s[hit] - start] = -np.inf
            pos, val = top_k(np.concatenate([best_v[active], s], axis=1), n)
            kept = np.take_along_axis(best_i[active], np.clip(pos, 0, n - 1), axis=1)
            fresh = index.items[np.clip(start + pos - n, 0, size - 1)]
            best_i[active] = np.where(pos < 0, -1, np.where(pos < n, kept, fresh))
            best_v[active] = val
            start, block = stop, min(block * 2, high)
            if start < size:
                active = active[best_v[active, n - 1] < x_norm[active] * index.norms[start]]
        return best_i, best_v

    def user_vectors(self, user_idx, confidence: sp.csr_matrix) -> np.ndarray:
        """Trained factors of known users; folded-in factors where user_idx is -1."""
        user_idx = np.asarray(user_idx)
        x = self.user_factors_[np.maximum(user_idx, 0)]
        cold = np.flatnonzero(user_idx < 0)
        if cold.size:
            x[cold] = self._fold_in(confidence[cold])
        return x

    def fold_in(self, user_items, days=None) -> np.ndarray:
        """Factors for new users from their net-count rows (weighted like training)."""
        self._check_fitted()
        rows = check_matrix(user_items, "user_items", self.n_items_)
        return self._fold_in(self.weighting_.transform(rows, days))

    def _fold_in(self, confidence: sp.csr_matrix) -> np.ndarray:
        raise NotImplementedError

    def _normalised_items(self) -> np.ndarray:
        if getattr(self, "_item_unit", None) is None:
            norms = np.linalg.norm(self.item_factors_, axis=1, keepdims=True)
            self._item_unit = self.item_factors_ / np.where(norms > 0, norms, 1.0)
        return self._item_unit

    def _item_scores(self, item_idx):
        unit = self._normalised_items()
        return unit[item_idx] @ unit.T

    def explain(self, user_idx, user_items, item_idx, n=5, days=None):
        self._check_fitted()
        row = check_matrix(user_items, "user_items", self.n_items_)[:1]
        item = int(as_index_array([item_idx], "item_idx", self.n_items_)[0])
        unit = self._normalised_items()
        contrib = unit[row.indices] @ unit[item]
        return _top_contributions(row.indices, contrib, n)

    def _fitted_arrays(self):
        return {"user_factors": self.user_factors_, "item_factors": self.item_factors_}

    def _load_arrays(self, arrays):
        self.user_factors_ = np.asarray(arrays["user_factors"], dtype=np.float32)
        self.item_factors_ = np.asarray(arrays["item_factors"], dtype=np.float32)
        self._item_unit = self._by_norm = None
        self._after_load()

    def _after_load(self) -> None:
        pass


def _top_contributions(items: np.ndarray, contrib: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(-contrib, kind="stable")[:n]
    return items[order].astype(np.int64), contrib[order].astype(np.float32)


class ALS(FactorModel):
    """implicit's AlternatingLeastSquares (conjugate gradient), confidence = alpha * weight."""

    kind = "als"
    param_names = ("factors", "regularization", "alpha", "iterations", "random_state", "num_threads")

    def __init__(self, factors=64, regularization=0.05, alpha=1.0, iterations=15, random_state=0,
                 num_threads=0, weighting="count", weighting_params=None):
        super().__init__(weighting, weighting_params)
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.random_state = random_state
        self.num_threads = num_threads

    def _fit(self, confidence):
        from implicit.cpu.als import AlternatingLeastSquares

        # implicit warns (and slows down) when BLAS runs its own threads inside its solver
        with threadpool_limits(1, "blas"):
            model = AlternatingLeastSquares(
                factors=int(self.factors), regularization=float(self.regularization), alpha=float(self.alpha),
                iterations=int(self.iterations), random_state=self.random_state, num_threads=int(self.num_threads),
            )
            model.fit(confidence, show_progress=False)
        self.user_factors_ = np.ascontiguousarray(model.user_factors, dtype=np.float32)
        self.item_factors_ = np.ascontiguousarray(model.item_factors, dtype=np.float32)
        self._item_unit = self._by_norm = None
        self._after_load()

    def _after_load(self):
        y = self.item_factors_.astype(np.float64)
        self._yty = y.T @ y

    def fit_every_user(self, user_items, days=None, *, max_fit_users: int | None = None, seed: int = 0):
        """`fit` on at most `max_fit_users` users with purchases (a seeded sample; all of them
        when there are no more), then, above that size, every user's factors in one exact
        least-squares step from the sample's item factors (`solve_users`): the item factors
        cost what the search's fits cost, and each user gets the step an ALS iteration takes."""
        m = check_trainable(user_items)
        active = np.flatnonzero(np.diff(m.indptr) > 0)
        if max_fit_users is None or active.size <= max_fit_users:
            return self.fit(m, days)
        rows = np.sort(np.random.default_rng(seed).choice(active, size=max_fit_users, replace=False))
        self.fit(m[rows], None if days is None else days[rows])
        self.user_factors_ = self.solve_users(m, days)
        self.n_users_ = m.shape[0]
        return self

    def solve_users(self, user_items, days=None) -> np.ndarray:
        """Factors of every row of `user_items` (net counts, weighted as in training) in one exact
        least-squares step from the item factors, x_u = (Y^T Y + reg I + Y^T (C_u - I) Y)^-1 Y^T C_u p_u
        (the fold-in of the module docstring), by implicit's Cholesky solver on every core in float32."""
        from implicit.cpu.als import AlternatingLeastSquares

        self._check_fitted()
        confidence = self.weighting_.transform(check_matrix(user_items, "user_items", self.n_items_), days)
        solver = AlternatingLeastSquares(factors=int(self.factors), regularization=float(self.regularization),
                                         alpha=float(self.alpha), num_threads=int(self.num_threads))
        solver.item_factors = self.item_factors_
        with threadpool_limits(1, "blas"):
            users = solver.recalculate_user(np.arange(confidence.shape[0]), confidence)
        return np.ascontiguousarray(users, dtype=np.float32)

    def _system(self, confidence_row: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        items = confidence_row.indices
        c = float(self.alpha) * confidence_row.data.astype(np.float64)
        y = self.item_factors_[items].astype(np.float64)
        a = self._yty + float(self.regularization) * np.eye(y.shape[1]) + (y.T * (c - 1.0)) @ y
        return a, y, c, items

    def _fold_in(self, confidence):
        out = np.zeros((confidence.shape[0], self.item_factors_.shape[1]), dtype=np.float32)
        for r in range(confidence.shape[0]):
            row = confidence[r]
            if row.nnz:
                a, y, c, _ = self._system(row)
                out[r] = np.linalg.solve(a, y.T @ c)
        return out

    def explain(self, user_idx, user_items, item_idx, n=5, days=None):
        self._check_fitted()
        raw = check_matrix(user_items, "user_items", self.n_items_)[:1]
        item = int(as_index_array([item_idx], "item_idx", self.n_items_)[0])
        row = self.weighting_.transform(raw, None if days is None else days[:1])
        if row.nnz == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        a, y, c, items = self._system(row)
        weighted = np.linalg.solve(a, self.item_factors_[item].astype(np.float64))
        return _top_contributions(items, (y @ weighted) * c, n)


class SparkALS(ALS):
    """ALS whose factors were trained by Spark MLlib (`pyspark.ml.recommendation.ALS`,
    implicitPrefs=True) on the same weighted matrix: fitting happens on Spark
    (`pipelines.engines.spark_als`), scoring, fold-in and explanations here.

    MLlib's confidence is c = 1 + alpha * weight (implicit's is alpha * weight) and its
    regularization is regParam times the number of the row's items (implicit's is constant),
    so the fold-in of a new user solves MLlib's normal equations, not ALS's: a trained user's
    own row folds in to their trained vector.
    """

    kind = "spark_als"
    param_names = ("factors", "regularization", "alpha", "iterations", "random_state")

    def _fit(self, confidence):
        raise NotImplementedError("SparkALS is trained on Spark: pipelines.engines.spark_als.SparkALSTrainer")

    def _system(self, confidence_row: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        items = confidence_row.indices
        c = 1.0 + float(self.alpha) * np.abs(confidence_row.data.astype(np.float64))
        y = self.item_factors_[items].astype(np.float64)
        reg = float(self.regularization) * items.size
        a = self._yty + reg * np.eye(y.shape[1]) + (y.T * (c - 1.0)) @ y
        return a, y, c, items


class BPR(FactorModel):
    """implicit's BayesianPersonalizedRanking (single-threaded SGD, so a seed reproduces it)."""

    kind = "bpr"
    param_names = ("factors", "learning_rate", "regularization", "iterations", "random_state")

    def __init__(self, factors=64, learning_rate=0.05, regularization=0.01, iterations=60, random_state=0,
                 weighting="count", weighting_params=None):
        super().__init__(weighting, weighting_params)
        self.factors = factors
        self.learning_rate = learning_rate
        self.regularization = regularization
        self.iterations = iterations
        self.random_state = random_state

    def _fit(self, confidence):
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        with threadpool_limits(1, "blas"):
            model = BayesianPersonalizedRanking(
                factors=int(self.factors), learning_rate=float(self.learning_rate),
                regularization=float(self.regularization), iterations=int(self.iterations),
                random_state=self.random_state, num_threads=1,
            )
            model.fit(confidence, show_progress=False)
        self.user_factors_ = np.ascontiguousarray(model.user_factors, dtype=np.float32)
        self.item_factors_ = np.ascontiguousarray(model.item_factors, dtype=np.float32)
        self._item_unit = self._by_norm = None

    def _fold_in(self, confidence):
        y = self.item_factors_[:, :-1]
        trained = np.linalg.norm(self.user_factors_[:, :-1], axis=1)
        scale = float(trained[trained > 0].mean()) if (trained > 0).any() else 1.0
        base = y.mean(axis=0)
        out = np.zeros((confidence.shape[0], self.item_factors_.shape[1]), dtype=np.float32)
        out[:, -1] = 1.0
        for r in range(confidence.shape[0]):
            row = confidence[r]
            if row.nnz:
                direction = y[row.indices].mean(axis=0) - base
                norm = np.linalg.norm(direction)
                out[r, :-1] = direction * (scale / norm if norm > 0 else 0.0)
        return out
