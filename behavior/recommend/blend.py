"""A blend of two recommenders: score = w * norm(a) + (1 - w) * norm(b).

Each component weighs the rows its own way and scores them; `normalise_rows` puts both on
[0, 1] per user (see `behavior.recommend.topk`), and an item that neither component
proposes stays a non-candidate. The weight is chosen on validation by the selection.
"""

from __future__ import annotations

from typing import Self

import numpy as np
import scipy.sparse as sp

from behavior.recommend.base import Recommender, from_params, prefixed, strip_prefix
from behavior.recommend.checks import InteractionsError, check_trainable
from behavior.recommend.topk import normalise_csr, normalise_row, normalise_rows
from behavior.recommend.weighting import Weighting


class Blend(Recommender):
    kind = "blend"

    @property
    def item_similarity(self) -> bool:  # type: ignore[override]
        return self.a.item_similarity or self.b.item_similarity

    @property
    def sparse_candidates(self) -> bool:  # type: ignore[override]
        return self.a.sparse_candidates and self.b.sparse_candidates

    def __init__(self, a: Recommender, b: Recommender, weight: float = 0.5) -> None:
        super().__init__("count", None)
        self.a = a
        self.b = b
        self.weight = weight

    def get_params(self) -> dict:
        return {"kind": self.kind, "weight": float(self.weight), "a": self.a.get_params(), "b": self.b.get_params()}

    @classmethod
    def from_config(cls, params: dict) -> Blend:
        try:
            return cls(from_params(params["a"]), from_params(params["b"]), float(params["weight"]))
        except KeyError as exc:
            raise InteractionsError(f"blend parameters need 'a', 'b' and 'weight'; missing {exc}") from None

    @classmethod
    def of_fitted(cls, a: Recommender, b: Recommender, weight: float) -> Blend:
        """A blend of two already fitted models over the same users and items (no refit)."""
        if not (a.fitted and b.fitted):
            raise InteractionsError("Blend.of_fitted needs two fitted models")
        if (a.n_users_, a.n_items_) != (b.n_users_, b.n_items_):
            raise InteractionsError("blended models must be fitted on the same users x items matrix")
        blend = cls(a, b, weight)
        blend._mark_fitted()
        return blend

    def _mark_fitted(self) -> None:
        if not 0.0 <= float(self.weight) <= 1.0:
            raise InteractionsError(f"blend weight must be in [0, 1], got {self.weight}")
        self.weighting_ = Weighting("count").fit(_empty(self.a.n_items_))
        self.n_users_, self.n_items_ = self.a.n_users_, self.a.n_items_

    def fit(self, user_items, days=None) -> Self:
        check_trainable(user_items)
        self.a.fit(user_items, days)
        self.b.fit(user_items, days)
        self._mark_fitted()
        return self

    def fit_every_user(self, user_items, days=None, *, max_fit_users: int | None = None, seed: int = 0) -> Self:
        check_trainable(user_items)
        self.a.fit_every_user(user_items, days, max_fit_users=max_fit_users, seed=seed)
        self.b.fit_every_user(user_items, days, max_fit_users=max_fit_users, seed=seed)
        self._mark_fitted()
        return self

    def _fit(self, confidence) -> None:  # fit() is overridden: each component weighs for itself
        raise NotImplementedError

    def _score_rows(self, user_idx, rows, days, items):
        a = self.a._score_rows(user_idx, rows, days, items)
        b = self.b._score_rows(user_idx, rows, days, items)
        return self._mix(a, b)

    def _mix(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return mix(normalise_rows(a), normalise_rows(b), np.isfinite(a) | np.isfinite(b), float(self.weight))

    def candidate_scores(self, user_idx, rows, days):
        self._check_fitted()
        pattern, a, b = union(normalise_csr(self.a.candidate_scores(user_idx, rows, days)),
                              normalise_csr(self.b.candidate_scores(user_idx, rows, days)))
        return with_data(pattern, weighted(a, b, float(self.weight)))

    def _scores(self, user_idx, confidence, items):
        raise NotImplementedError  # scoring goes through _score_rows

    def row_scorer(self, items, has_days, known_user):
        # each component weighs its row its own way: no weighting of the blend's own to check
        a = self.a.row_scorer(items, has_days, known_user)
        b = self.b.row_scorer(items, has_days, known_user)
        if a is None or b is None:
            return None
        return lambda user_idx, cols, data, days: self._mix_row(a(user_idx, cols, data, days),
                                                                b(user_idx, cols, data, days))

    def _mix_row(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """`_mix` of one row."""
        w = float(self.weight)
        out = w * normalise_row(a) + (1.0 - w) * normalise_row(b)
        out[~(np.isfinite(a) | np.isfinite(b))] = -np.inf
        return out

    def _item_scores(self, item_idx):
        # a component without item-item information (popularity) would only add noise here
        if self.a.item_similarity != self.b.item_similarity:
            return (self.a if self.a.item_similarity else self.b)._item_scores(item_idx)
        return self._mix(self.a._item_scores(item_idx), self.b._item_scores(item_idx))

    def explain(self, user_idx, user_items, item_idx, n=5, days=None):
        first, second = (self.a, self.b) if self.weight >= 0.5 else (self.b, self.a)
        for model in (first, second):
            try:
                items, contrib = model.explain(user_idx, user_items, item_idx, n, days)
            except InteractionsError:
                continue
            if items.size:
                return items, contrib
        return np.zeros(0, np.int64), np.zeros(0, np.float32)

    def to_arrays(self) -> dict[str, np.ndarray]:
        self._check_fitted()
        out = {"kind": np.array(self.kind), "weight": np.array(float(self.weight))}
        out.update(prefixed(self.a.to_arrays(), "a."))
        out.update(prefixed(self.b.to_arrays(), "b."))
        return out

    def _fitted_arrays(self):
        raise NotImplementedError

    def _load_arrays(self, arrays):
        raise NotImplementedError

    @classmethod
    def from_arrays(cls, arrays) -> Blend:
        a = Recommender.from_arrays(strip_prefix(arrays, "a."))
        b = Recommender.from_arrays(strip_prefix(arrays, "b."))
        return cls.of_fitted(a, b, float(arrays["weight"]))


def mix(a: np.ndarray, b: np.ndarray, candidate: np.ndarray, weight: float) -> np.ndarray:
    """w a + (1 - w) b of two normalised score matrices, -inf where neither model has a candidate
    (`Blend._mix` once its components are normalised: the search normalises them once per weight)."""
    return np.where(candidate, weighted(a, b, weight), np.float32(-np.inf))   # cheaper than a boolean scatter


def weighted(a: np.ndarray, b: np.ndarray, weight: float) -> np.ndarray:
    """w a + (1 - w) b in float32, the operations of `mix` (elementwise: on dense rows or on the
    entries of `union`)."""
    out = np.multiply(a, np.float32(weight))
    out += np.float32(1.0 - weight) * b
    return out


def union(a: sp.csr_matrix, b: sp.csr_matrix) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """(pattern, a's values, b's values) on the union of the entries of two CSR score matrices of
    the same shape, 0 where a matrix has no entry: what `normalise_rows` makes of a -inf cell, so
    `weighted` of the two gives `mix` on the candidates of either."""
    # scipy's sum of the two patterns, each entry holding its position (+1) in a, plus its
    # position (+1) in b times a power of two above a's: integers exact in float64 that no sum
    # cancels, so no entry of either is lost
    scale = float(1 << (a.nnz + 1).bit_length())
    if (b.nnz + 1) * scale >= 2.0 ** 53:
        raise InteractionsError(f"{a.nnz:,} and {b.nnz:,} candidate scores are too many to blend in one chunk of users")
    pa = sp.csr_matrix((np.arange(1, a.nnz + 1, dtype=np.float64), a.indices, a.indptr), shape=a.shape)
    pb = sp.csr_matrix((np.arange(1, b.nnz + 1, dtype=np.float64) * scale, b.indices, b.indptr), shape=b.shape)
    both = pa + pb
    at_b = np.floor(both.data / scale).astype(np.int64)
    at_a = (both.data - at_b * scale).astype(np.int64)
    va = np.where(at_a > 0, np.asarray(a.data, dtype=np.float32)[np.maximum(at_a - 1, 0)], np.float32(0.0))
    vb = np.where(at_b > 0, np.asarray(b.data, dtype=np.float32)[np.maximum(at_b - 1, 0)], np.float32(0.0))
    return both, va.astype(np.float32, copy=False), vb.astype(np.float32, copy=False)


def with_data(pattern: sp.csr_matrix, data: np.ndarray) -> sp.csr_matrix:
    return sp.csr_matrix((data, pattern.indices, pattern.indptr), shape=pattern.shape)


def _empty(n_items: int) -> sp.csr_matrix:
    return sp.csr_matrix((0, n_items), dtype=np.float32)
