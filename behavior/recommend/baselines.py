"""The two baselines every learned model has to beat.

- `Popularity`: every user gets the items with the most buyers (distinct users with a
  positive weight in training; with measure="weight", the sum of weights, e.g. of recency
  weights for a trending list). Restricting `allowed_items` to a category gives the
  per-category list; the serving layer also keeps one popularity vector per segment.
- `BuyAgain`: a user's own items, scored by their confidence (with the "recency" scheme:
  purchase counts decayed by the age of the last purchase), ties broken by popularity; no
  other item is a candidate. It is what "people buy milk again" looks like.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from behavior.recommend.base import Recommender
from behavior.recommend.checks import InteractionsError
from behavior.recommend.weighting import Weighting

# popularity only breaks ties of BuyAgain: well below any difference of two confidences
_TIE_BREAK = 1e-4


def _popularity(confidence, measure: str) -> np.ndarray:
    if measure == "buyers":
        return np.bincount(confidence.indices, minlength=confidence.shape[1]).astype(np.float32)
    if measure == "weight":
        return np.asarray(confidence.sum(axis=0), dtype=np.float32).ravel()
    raise InteractionsError(f"popularity measure must be 'buyers' or 'weight', got {measure!r}")


def from_item_buyers(kind: type[Popularity] | type[BuyAgain], buyers, n_users: int) -> Popularity | BuyAgain:
    """`kind()` (default parameters: buyers, count weighting) as `fit` would make it on a matrix
    of `n_users` rows whose items have these numbers of buyers, e.g. counted on Spark."""
    buyers = np.asarray(buyers, dtype=np.float32)
    model = kind()
    model.weighting_ = Weighting("count").fit(sp.csr_matrix((1, buyers.size), dtype=np.float32))
    model.n_users_, model.n_items_ = int(n_users), int(buyers.size)
    model._set_popularity(buyers)
    return model


class Popularity(Recommender):
    kind = "popularity"
    param_names = ("measure",)
    item_similarity = False

    def __init__(self, measure="buyers", weighting="count", weighting_params=None):
        super().__init__(weighting, weighting_params)
        self.measure = measure

    def _fit(self, confidence):
        self._set_popularity(_popularity(confidence, self.measure))

    def _set_popularity(self, popularity: np.ndarray) -> None:
        self.popularity_ = popularity

    def _scores(self, user_idx, confidence, items):
        pop = self.popularity_ if items is None else self.popularity_[items]
        return np.repeat(pop[None, :], len(user_idx), axis=0)

    def shared_scores(self):
        self._check_fitted()
        return self.popularity_

    def _row_scorer(self, items, known_user):
        pop = self.popularity_
        return lambda user_idx, cols, data, days: pop.copy() if items is None else pop[items]

    def _item_scores(self, item_idx):
        return self._scores(item_idx, None, None)

    def _fitted_arrays(self):
        return {"popularity": self.popularity_}

    def _load_arrays(self, arrays):
        self.popularity_ = np.asarray(arrays["popularity"], dtype=np.float32)


class BuyAgain(Recommender):
    kind = "buy_again"
    item_similarity = False
    sparse_candidates = True

    def _fit(self, confidence):
        self._set_popularity(_popularity(confidence, "buyers"))

    def _set_popularity(self, buyers: np.ndarray) -> None:
        self.popularity_ = buyers / max(float(buyers.max()), 1.0)

    def _own_scores(self, confidence):
        return confidence.data + _TIE_BREAK * self.popularity_[confidence.indices]

    def _scores(self, user_idx, confidence, items):
        out = np.full(confidence.shape, -np.inf, dtype=np.float32)
        rows = np.repeat(np.arange(confidence.shape[0]), np.diff(confidence.indptr))
        out[rows, confidence.indices] = self._own_scores(confidence)
        return out if items is None else out[:, items]

    def candidate_scores(self, user_idx, rows, days):
        self._check_fitted()
        confidence = self.weighting_.transform(rows, days)
        return sp.csr_matrix((self._own_scores(confidence).astype(np.float32), confidence.indices, confidence.indptr),
                             shape=confidence.shape)

    def _row_scorer(self, items, known_user):
        def score(user_idx, cols, data, days):
            conf_cols, weights = self.weighting_.transform_row(cols, data, days)
            out = np.full(self.n_items_, -np.inf, dtype=np.float32)
            out[conf_cols] = weights + _TIE_BREAK * self.popularity_[conf_cols]
            return out if items is None else out[items]
        return score

    def _item_scores(self, item_idx):
        return np.repeat(self.popularity_[None, :], len(item_idx), axis=0)

    def explain(self, user_idx, user_items, item_idx, n=5, days=None):
        self._check_fitted()
        row = user_items[:1]
        purchased = item_idx in set(row.indices.tolist())
        if not purchased:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        weight = float(self.weighting_.transform(row, None if days is None else days[:1])[0, item_idx])
        return np.array([item_idx], np.int64), np.array([weight], np.float32)

    def _fitted_arrays(self):
        return {"popularity": self.popularity_}

    def _load_arrays(self, arrays):
        self.popularity_ = np.asarray(arrays["popularity"], dtype=np.float32)
