"""Matrix-level confidence weighting: the step between net counts and what a model fits.

`weigh(matrix, scheme, days)` is the stateless form: it weighs a whole net-count matrix.
`Weighting` is the fitted form a model keeps: for ``"bm25"`` it remembers the training
matrix's item document frequencies and mean row length, so that the rows of a user scored
later (or folded in) are weighted exactly as in training. BM25 (implicit's `bm25_weight`,
documents = users, terms = items)::

    w = c * (K1 + 1) / (K1 * ((1 - B) + B * rowsum / mean_rowsum) + c) * idf
    idf = log(n_users) - log1p(n_buyers_of_item)        (floored at IDF_FLOOR)

The floor keeps a purchase a positive signal: an item that every user bought would otherwise
get a weight <= 0, which ALS reads as "disliked". Element-wise schemes are documented in
`behavior.recommend.interactions`.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from implicit.nearest_neighbours import bm25_weight

from behavior.recommend.checks import InteractionsError, check_matrix
from behavior.recommend.interactions import SCHEME_DEFAULTS, confidence, scheme_params

IDF_FLOOR = 1e-3
_FIRST_SEGMENT = np.zeros(1, dtype=np.intp)


def _with_data(matrix: sp.csr_matrix, data: np.ndarray) -> sp.csr_matrix:
    """`matrix`'s pattern with `data` as float32, zero weights dropped; `matrix` is left as it was
    (the result shares its index arrays only when no weight is zero: `eliminate_zeros` rewrites
    them in place)."""
    data = data.astype(np.float32)
    if not data.all():
        out = sp.csr_matrix((data, matrix.indices.copy(), matrix.indptr.copy()), shape=matrix.shape)
        out.eliminate_zeros()
        return out
    return sp.csr_matrix((data, matrix.indices, matrix.indptr), shape=matrix.shape)


def _aligned_days(matrix: sp.csr_matrix, days) -> np.ndarray:
    if days is None:
        raise InteractionsError("scheme 'recency' needs the days-since-last-purchase matrix (days=...)")
    days = sp.csr_matrix(days)
    if days.shape != matrix.shape or not (
        np.array_equal(days.indptr, matrix.indptr) and np.array_equal(days.indices, matrix.indices)
    ):
        raise InteractionsError(
            "days must have the same sparsity pattern as the net-count matrix; build both with "
            "Interactions.matrices()"
        )
    return days.data


def weigh(matrix, scheme: str = "count", days=None, **params) -> sp.csr_matrix:
    """The confidence matrix of a net-count matrix under `scheme` (bm25: implicit's bm25_weight)."""
    m = check_matrix(matrix, "matrix")
    full = scheme_params(scheme, params)
    if scheme == "bm25":
        weighted = sp.csr_matrix(bm25_weight(m, K1=full["K1"], B=full["B"]), dtype=np.float32)
        weighted.sort_indices()
        # implicit leaves idf unfloored; re-derive the floor so the result equals Weighting's
        idf = np.log(m.shape[0]) - np.log1p(np.bincount(m.indices, minlength=m.shape[1]))
        low = idf < IDF_FLOOR
        if low.any():
            return Weighting("bm25", **params).fit(m).transform(m)
        return weighted
    day_data = _aligned_days(m, days) if scheme == "recency" else None
    return _with_data(m, confidence(m.data, None, day_data, scheme, **params))


class Weighting:
    """A confidence scheme and, once fitted, the training statistics it needs (bm25).

    `__init__` stores the scheme and its parameters; `fit(matrix)` learns from the training net
    counts; `transform(matrix, days)` weighs any rows over the same items.
    """

    def __init__(self, scheme: str = "count", **params) -> None:
        self.scheme = scheme
        self.params = scheme_params(scheme, params)

    def describe(self) -> dict:
        """JSON-able: {"weighting": scheme, **params}."""
        return {"weighting": self.scheme, **self.params}

    def fit(self, matrix) -> Weighting:
        m = check_matrix(matrix, "matrix")
        self.n_items_ = m.shape[1]
        if self.scheme == "bm25":
            n_users = max(m.shape[0], 1)
            df = np.bincount(m.indices, minlength=m.shape[1])
            self.idf_ = np.maximum(np.log(n_users) - np.log1p(df), IDF_FLOOR).astype(np.float64)
            row_sums = np.asarray(m.sum(axis=1)).ravel()
            self.mean_row_sum_ = float(row_sums.mean()) if row_sums.size and row_sums.mean() > 0 else 1.0
        return self

    def transform(self, matrix, days=None) -> sp.csr_matrix:
        if not hasattr(self, "n_items_"):
            raise InteractionsError("Weighting.transform before fit")
        m = check_matrix(matrix, "user_items", self.n_items_)
        if self.scheme == "bm25":
            k1, b = self.params["K1"], self.params["B"]
            rows = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
            row_sums = np.asarray(m.sum(axis=1)).ravel()
            norm = (1.0 - b) + b * row_sums / self.mean_row_sum_
            c = m.data.astype(np.float64)
            return _with_data(m, c * (k1 + 1.0) / (k1 * norm[rows] + c) * self.idf_[m.indices])
        if self.scheme == "count":   # the net counts as they are, as `transform_row` (no float64 copies)
            return _with_data(m, m.data)
        day_data = _aligned_days(m, days) if self.scheme == "recency" else None
        return _with_data(m, confidence(m.data, None, day_data, self.scheme, **self.params))

    def row_exact(self, has_days: bool) -> bool:
        """Whether `transform_row` reproduces `transform` (without days, "recency" cannot weigh)."""
        return self.scheme in ("count", "log", "bm25") or (self.scheme == "recency" and has_days)

    def transform_row(self, cols: np.ndarray, data: np.ndarray,
                      days: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """`transform` of one row given as numpy arrays (sorted item indices, net counts, days):
        (item indices, float32 weights), zero weights dropped. The same float operations in the
        same order as `transform`, so the weights are bit-identical (one user served on numpy alone)."""
        if self.scheme == "bm25":
            k1, b = self.params["K1"], self.params["B"]
            row_sums = np.add.reduceat(data, _FIRST_SEGMENT)  # what csr.sum(axis=1) does for one row
            norm = (1.0 - b) + b * row_sums / self.mean_row_sum_
            c = data.astype(np.float64)
            w = c * (k1 + 1.0) / (k1 * norm[np.zeros(c.size, dtype=np.intp)] + c) * self.idf_[cols]
        elif self.scheme == "count":  # net counts as they are (float32 -> float64 -> float32 is exact)
            w = data
        else:
            w = confidence(data, None, days if self.scheme == "recency" else None, self.scheme, **self.params)
        w = w.astype(np.float32)
        keep = w != 0
        return (cols, w) if keep.all() else (cols[keep], w[keep])

    def to_arrays(self) -> dict[str, np.ndarray]:
        out = {"scheme": np.array(self.scheme), "n_items": np.array(self.n_items_, dtype=np.int64)}
        out.update({f"param.{k}": np.array(v, dtype=np.float64) for k, v in self.params.items()})
        if self.scheme == "bm25":
            out["idf"] = self.idf_
            out["mean_row_sum"] = np.array(self.mean_row_sum_)
        return out

    @classmethod
    def from_arrays(cls, arrays) -> Weighting:
        scheme = str(arrays["scheme"])
        params = {k[len("param."):]: float(v) for k, v in arrays.items() if k.startswith("param.")}
        w = cls(scheme, **params)
        w.n_items_ = int(arrays["n_items"])
        if scheme == "bm25":
            w.idf_ = np.asarray(arrays["idf"], dtype=np.float64)
            w.mean_row_sum_ = float(arrays["mean_row_sum"])
        return w


SCHEMES = tuple(SCHEME_DEFAULTS)
