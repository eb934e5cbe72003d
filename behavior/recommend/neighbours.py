"""Item-item models: a user's score is r_u S over their confidence row r_u and a sparse
items x items matrix S.

`ItemItem` holds what every such model shares (scoring, similar items, explanations, S's CSR
arrays); only items in the neighbourhood of something the user owns are candidates (-inf
elsewhere), so the list can be shorter than n. Serving needs only S's CSR arrays.

`ItemKNN`: nearest neighbours (implicit's cosine or BM25 item similarity); fitting keeps the K
most similar items of every item (implicit's `all_pairs_knn`, the item's similarity to itself
included). `behavior.recommend.ease.EASE` is the other one.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from behavior.recommend.base import Recommender
from behavior.recommend.checks import InteractionsError, as_index_array, check_matrix

SIMILARITIES = ("cosine", "bm25")


class ItemItem(Recommender):
    """Scoring and arrays of the models whose fitted state is one sparse items x items matrix
    `similarity_` (row i: what owning item i adds to each item's score)."""

    sparse_candidates = True

    def _set_similarity(self, similarity) -> None:
        self.similarity_ = sp.csr_matrix(similarity, dtype=np.float32)
        self.similarity_.sort_indices()

    def candidate_scores(self, user_idx, rows, days):
        self._check_fitted()
        return sp.csr_matrix(self.weighting_.transform(rows, days) @ self.similarity_, dtype=np.float32)

    def _scores(self, user_idx, confidence, items):
        product = confidence @ self.similarity_
        # slicing the (small) product is far cheaper than slicing the columns of S
        product = (product if items is None else sp.csr_matrix(product)[:, items]).tocoo()
        out = np.full(product.shape, -np.inf, dtype=np.float32)
        out[product.row, product.col] = product.data
        return out

    def _row_scorer(self, items, known_user):
        def score(user_idx, cols, data, days):
            conf_cols, weights = self.weighting_.transform_row(cols, data, days)
            out = knn_row(self.similarity_, conf_cols, weights, self.n_items_)
            return out if items is None else out[items]
        return score

    def _item_scores(self, item_idx):
        rows = self.similarity_[item_idx].tocoo()
        out = np.full(rows.shape, -np.inf, dtype=np.float32)
        out[rows.row, rows.col] = rows.data
        return out

    def explain(self, user_idx, user_items, item_idx, n=5, days=None):
        self._check_fitted()
        raw = check_matrix(user_items, "user_items", self.n_items_)[:1]
        item = int(as_index_array([item_idx], "item_idx", self.n_items_)[0])
        row = self.weighting_.transform(raw, None if days is None else days[:1])
        contrib = row.data * self.similarity_[row.indices][:, [item]].toarray().ravel()
        keep = contrib > 0
        order = np.argsort(-contrib[keep], kind="stable")[:n]
        return row.indices[keep][order].astype(np.int64), contrib[keep][order].astype(np.float32)

    def _fitted_arrays(self):
        s = self.similarity_
        return {"similarity.indptr": s.indptr.astype(np.int64), "similarity.indices": s.indices.astype(np.int32),
                "similarity.data": s.data.astype(np.float32)}

    def _load_arrays(self, arrays):
        self.similarity_ = sp.csr_matrix(
            (arrays["similarity.data"], arrays["similarity.indices"], arrays["similarity.indptr"]),
            shape=(self.n_items_, self.n_items_),
        )


class ItemKNN(ItemItem):
    kind = "item_knn"
    param_names = ("similarity", "K", "K1", "B")

    def __init__(self, similarity="cosine", K=50, K1=1.2, B=0.75, weighting="count", weighting_params=None):
        super().__init__(weighting, weighting_params)
        self.similarity = similarity
        self.K = K
        self.K1 = K1
        self.B = B

    def _fit(self, confidence):
        from implicit.nearest_neighbours import BM25Recommender, CosineRecommender
        from implicit.utils import ParameterWarning

        if self.similarity not in SIMILARITIES:
            raise InteractionsError(f"ItemKNN similarity must be one of {SIMILARITIES}, got {self.similarity!r}")
        # implicit's own weighting hands its kNN a COO matrix and warns about it: not our input
        with threadpool_limits(1, "blas"), warnings.catch_warnings():
            warnings.simplefilter("ignore", ParameterWarning)
            if self.similarity == "cosine":
                model = CosineRecommender(K=int(self.K), num_threads=1)
            else:
                model = BM25Recommender(K=int(self.K), K1=float(self.K1), B=float(self.B), num_threads=1)
            model.fit(confidence, show_progress=False)
        self._set_similarity(model.similarity)


def knn_row(similarity: sp.csr_matrix, cols: np.ndarray, weights: np.ndarray, n_items: int) -> np.ndarray:
    """The row r @ S of `ItemItem._scores`, dense with -inf off the product's pattern: scipy's
    csr_matmat adds v * S[j, k] into a float32 sum per k, visiting j (the row's items) and then
    each row of S in stored order, and drops sums that are exactly 0; np.add.at adds in the same order."""
    out = np.full(n_items, -np.inf, dtype=np.float32)
    starts = similarity.indptr[cols]
    lengths = similarity.indptr[cols + 1] - starts
    total = int(lengths.sum())
    if total == 0:
        return out
    pos = np.arange(total) + np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
    k = similarity.indices[pos]
    sums = np.zeros(n_items, dtype=np.float32)
    np.add.at(sums, k, np.repeat(weights, lengths) * similarity.data[pos])
    hit = np.zeros(n_items, dtype=bool)
    hit[k] = True
    hit &= sums != 0
    out[hit] = sums[hit]
    return out
