"""What a candidate configuration costs the search, estimated from the data's shape alone.

The search's budget (`behavior.recommend.search.successive_halving`) is spent in *reference
seconds*: the seconds a fit and its validation scoring take on the reference machine (2 cores),
predicted by a cost model per family from the matrix it is fitted on (users, items, stored
entries, item co-occurrences), the validation users scored and the configuration (factors,
iterations, neighbours). The clock is never read, so what the search tries, the rungs, the
survivors and the chosen model depend only on the data and the configuration: the same lake
chooses the same model on a busy machine, a fast one or under another thread count.

The constants were calibrated once, from the CPU seconds of the fits and scorings of the default
configurations on the demo data (60,000 users, 4,000 items, 0.7M training entries) and on a
7,500-user sample of it, on 2 cores; they predict those measurements within about a factor of
1.5, which is all a budget needs: the report gives the estimate beside the measured seconds of
every trial.

Per family (U users, I items, N entries, P = the sum over users of their number of items
squared, V validation users scored, f factors, t iterations, K neighbours):

    popularity, buy_again   N
    item_knn                P (implicit's item-item product) + I K
    ease                    P + I^2 (the dense gram and its top-K columns) + I^3 (Cholesky inverse)
    als                     t f (U + I + N) + t (U + I)
    bpr                     t f N (single-threaded SGD, one sample per entry and iteration)

plus the scoring of V users over I items (dense scores and two top-k passes; V I f more for the
factor models, V (N / U) K more for the item-item ones).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

# reference seconds per unit of work (see the module docstring)
PER_ENTRY = 3.0e-8             # a baseline's pass over the stored entries
PER_PAIR = 1.6e-8              # one item co-occurrence of the item-item product
PER_NEIGHBOUR = 2.0e-8         # one kept neighbour of one item
PER_DENSE_CELL = 1.0e-8        # one cell of EASE's dense items x items matrices
PER_CUBE = 5.0e-11             # one multiply-add of EASE's Cholesky inverse
PER_ALS_FACTOR = 5.7e-9        # one factor of one row or entry in one ALS iteration
PER_ALS_ROW = 1.4e-6           # one row's solve set-up in one ALS iteration
PER_BPR_FACTOR = 3.7e-9        # one factor of one SGD sample of BPR
PER_SCORE_CELL = 7.5e-9        # one user x item score: filled, masked and ranked under two policies
PER_SCORE_PRODUCT = 7.0e-11    # one multiply-add of a factor model's scores
PER_NEIGHBOUR_SCORE = 3.0e-8   # one (user item, neighbour) term of an item-item model's scores


@dataclass(frozen=True)
class Shape:
    """What the cost of a fit and its scoring depends on: the fitted matrix's users, items,
    stored entries and item co-occurrences (sum of squared row lengths), and the users scored."""

    users: int
    items: int
    entries: int
    pairs: int
    scored: int

    @classmethod
    def of(cls, matrix: sp.csr_matrix, scored: int) -> Shape:
        lengths = np.diff(matrix.indptr).astype(np.float64)
        return cls(int(matrix.shape[0]), int(matrix.shape[1]), int(matrix.nnz), int((lengths ** 2).sum()),
                   int(scored))

    @property
    def per_user(self) -> float:
        return self.entries / max(self.users, 1)


def _baseline(s: Shape, c: dict) -> float:
    return PER_ENTRY * s.entries


def _item_knn(s: Shape, c: dict) -> float:
    return PER_PAIR * s.pairs + PER_NEIGHBOUR * s.items * int(c.get("K", 50))


def _ease(s: Shape, c: dict) -> float:
    return PER_PAIR * s.pairs + PER_DENSE_CELL * s.items ** 2 + PER_CUBE * float(s.items) ** 3


def _als(s: Shape, c: dict) -> float:
    rows = s.users + s.items
    return int(c.get("iterations", 15)) * (PER_ALS_FACTOR * int(c.get("factors", 64)) * (rows + s.entries)
                                          + PER_ALS_ROW * rows)


def _bpr(s: Shape, c: dict) -> float:
    return PER_BPR_FACTOR * int(c.get("iterations", 60)) * int(c.get("factors", 64)) * s.entries


FIT: dict[str, Callable[[Shape, dict], float]] = {
    "popularity": _baseline, "buy_again": _baseline, "item_knn": _item_knn, "ease": _ease, "als": _als, "bpr": _bpr,
}
FACTOR_KINDS = ("als", "bpr")
ITEM_ITEM_KINDS = ("item_knn", "ease")


def scoring_cost(shape: Shape, kind: str, config: dict) -> float:
    """Reference seconds to score `shape.scored` users over every item and rank them twice (with
    and without their own items)."""
    cells = float(shape.scored) * shape.items
    cost = PER_SCORE_CELL * cells
    if kind in FACTOR_KINDS:
        cost += PER_SCORE_PRODUCT * cells * int(config.get("factors", 64))
    elif kind in ITEM_ITEM_KINDS:
        cost += PER_NEIGHBOUR_SCORE * shape.scored * shape.per_user * int(config.get("K", 50))
    return cost


def cost(kind: str, config: dict, shape: Shape) -> float:
    """Reference seconds to fit `kind` with `config` on `shape` and score its validation users. A
    kind without a cost model of its own (a caller's model) is costed like ALS with its
    defaults: a fit that reads every entry many times."""
    fit = FIT.get(kind)
    fit_cost = _als(shape, {}) if fit is None else fit(shape, config)
    return fit_cost + scoring_cost(shape, kind, config)
