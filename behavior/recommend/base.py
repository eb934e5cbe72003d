"""The one contract every recommender implements (after implicit's `RecommenderBase`).

Models see integer indices of a users x items CSR matrix of *net counts* (purchases minus
refunds, > 0); each model owns a `Weighting` (its confidence scheme) that it applies to the
rows it is given, so every model of a blend weighs its input its own way.

Names: the items a user bought are *purchased* everywhere (`exclude_purchased`, the pairs
`_purchased_pairs` skips, the bundle's `purchased.*` arrays, the API parameter); a pair is
purchased when its net count is > 0. `net` names the count itself only where the netting of
refunds matters (building, weighing and fitting on the matrix).

- `fit(user_items, days=None) -> self`: `days` (same pattern, days since the pair's last
  purchase) is needed only by the "recency" scheme.
- `recommend(user_idx, user_items, n, exclude_purchased, allowed_items, days)`: row j of
  `user_items` belongs to `user_idx[j]` (implicit's convention); `user_idx = -1` is a user the
  model has not seen in training: factor models fold the row in, the others score from it.
  Returns (items int64 [len(user_idx) x n], scores float32 [len(user_idx) x n]), best first,
  padded with -1 / -inf when fewer than n items are candidates. `exclude_purchased` is a bool or a
  per-item bool array (exclude an item the user purchased only where True); `allowed_items` is
  None, an index array or a per-item bool mask.
- `similar_items(item_idx, n)`: the item itself is never returned.
- `to_arrays()` / `from_arrays()`: plain arrays (`.npz` with allow_pickle=False).
- Serving one user at a time (`behavior.recommend.serving.ServingModel`, which knows no model
  by name): `row_scorer(items, has_days, known_user)` returns a function
  `score(user_idx, cols, data, days)` of one user's row as numpy arrays (sorted item indices,
  net counts, days or None) giving the dense float32 scores over `items` (None: all) that
  `_score_rows` gives for that row as a 1-row matrix, bit for bit, or None when the model has
  no such path (serving then builds the matrix and calls `recommend`). `user_top_index(allowed)`
  / `user_top(...)`: a model that can find one known user's top-n without scoring every item
  (the factor models' scan by decreasing norm) says so; the others return None.

Subclasses implement `_fit(confidence)`, `_scores(user_idx, confidence_rows, items)` (dense
float32, -inf = not a candidate), `_item_scores(item_idx)` and the array round trip, and for
the one-row serving path `_row_scorer(items, known_user)`. A subclass that changes how a model
scores (`_scores` or `_score_rows`) without its own `_row_scorer` is served the general way,
so a one-row path inherited from its parent can never disagree with its scores.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar, Self

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from behavior.errors import NotFittedError
from behavior.recommend.checks import InteractionsError, as_index_array, check_matrix, check_trainable
from behavior.recommend.topk import top_k
from behavior.recommend.weighting import Weighting

CHUNK_CELLS = 4_000_000  # dense scores per chunk (16 MB of float32)
MAX_SCORING_THREADS = 4
REGISTRY: dict[str, type[Recommender]] = {}
# score(user_idx, cols, data, days) -> dense float32 scores of one user (see the module docstring)
RowScorer = Callable[[int, np.ndarray, np.ndarray, "np.ndarray | None"], np.ndarray]


class Recommender(abc.ABC):
    kind: ClassVar[str]
    param_names: ClassVar[tuple[str, ...]] = ()
    # False for models whose similar_items is only popularity (no item-item information)
    item_similarity: ClassVar[bool] = True
    # True for models that score a few items per user, the others -inf (`candidate_scores`)
    sparse_candidates: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if "kind" in cls.__dict__:
            REGISTRY[cls.kind] = cls
        scores_anew = "_scores" in cls.__dict__ or "_score_rows" in cls.__dict__
        if scores_anew and "_row_scorer" not in cls.__dict__ and "row_scorer" not in cls.__dict__:
            cls._row_scorer = Recommender._row_scorer
        # likewise the search's sparse and shared forms of the scores
        if scores_anew and "candidate_scores" not in cls.__dict__:
            cls.sparse_candidates = False
        if scores_anew and "shared_scores" not in cls.__dict__:
            cls.shared_scores = Recommender.shared_scores

    def __init__(self, weighting: str = "count", weighting_params: dict | None = None) -> None:
        self.weighting = weighting
        self.weighting_params = weighting_params

    # ------------------------------------------------------------------ parameters
    def get_params(self) -> dict:
        """JSON-able hyperparameters, with "kind" and the weighting scheme."""
        out = {"kind": self.kind}
        out.update({name: getattr(self, name) for name in self.param_names})
        out["weighting"] = self.weighting
        full = Weighting(self.weighting, **(self.weighting_params or {})).params
        if full:
            out["weighting_params"] = full
        return out

    @property
    def fitted(self) -> bool:
        return hasattr(self, "weighting_")

    def _check_fitted(self) -> None:
        if not self.fitted:
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit(user_items) first")

    # ------------------------------------------------------------------ fit
    def fit(self, user_items, days=None) -> Self:
        m = check_trainable(user_items)
        weighting = Weighting(self.weighting, **(self.weighting_params or {})).fit(m)
        self._fit(weighting.transform(m, days))
        self.weighting_ = weighting
        self.n_users_, self.n_items_ = m.shape
        return self

    @abc.abstractmethod
    def _fit(self, confidence: sp.csr_matrix) -> None: ...

    def fit_every_user(self, user_items, days=None, *, max_fit_users: int | None = None, seed: int = 0) -> Self:
        """Fitted to serve every user of `user_items` at a cost bounded by `max_fit_users` where
        the model can: `fit` unless the model learns one state per user from a sample
        (ALS: item factors from `max_fit_users` users, every user's factors solved from them)."""
        return self.fit(user_items, days)

    # ------------------------------------------------------------------ scoring
    @abc.abstractmethod
    def _scores(self, user_idx: np.ndarray, confidence: sp.csr_matrix, items: np.ndarray | None) -> np.ndarray:
        """Dense float32 scores [len(user_idx) x len(items) (or n_items)]; -inf = not a candidate."""

    def _score_rows(self, user_idx, rows: sp.csr_matrix, days, items) -> np.ndarray:
        return self._scores(user_idx, self.weighting_.transform(rows, days), items)

    @abc.abstractmethod
    def _item_scores(self, item_idx: np.ndarray) -> np.ndarray:
        """Dense float32 similarity of each given item to every item."""

    def candidate_scores(self, user_idx, rows: sp.csr_matrix, days) -> sp.csr_matrix:
        """The finite scores of `_score_rows(user_idx, rows, days, None)`, bit for bit, as a CSR
        matrix (every item it does not store is -inf): what the search ranks for a model with
        `sparse_candidates` instead of a dense users x items matrix."""
        raise InteractionsError(f"{type(self).__name__} scores every item: it has no sparse candidate scores")

    def shared_scores(self) -> np.ndarray | None:
        """The float32 scores `_score_rows` gives every user when they depend on no user
        (popularity), else None."""
        return None

    # ------------------------------------------------------------------ one user, served
    def row_scorer(self, items: np.ndarray | None, has_days: bool, known_user: bool) -> RowScorer | None:
        """The one-row scorer over `items` (see the module docstring), or None. `known_user`
        False: the row's user is -1 (scored from the row alone)."""
        self._check_fitted()
        if not self.weighting_.row_exact(has_days):
            return None
        return self._row_scorer(items, known_user)

    def _row_scorer(self, items: np.ndarray | None, known_user: bool) -> RowScorer | None:
        """What `row_scorer` returns once the weighting is known to be reproducible."""
        return None

    def user_top_index(self, allowed: np.ndarray) -> Any | None:
        """An index, built once per item filter (`allowed`: per-item bool mask), over which
        `user_top` finds one known user's top-n without scoring every item; None if the model
        has no such search."""
        return None

    def user_top(self, user_idx: int, n: int, skip: np.ndarray, index: Any, *,
                 fast: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Top-n (items int64, scores float32), -1 / -inf padded, of a known user over
        `user_top_index`'s `index`, never an item of `skip`; `fast` False: the same answer
        through the batch search (`recommend`'s)."""
        raise InteractionsError(f"{type(self).__name__} has no top-n search of its own (user_top_index is None)")

    def recommend(
        self,
        user_idx,
        user_items,
        n: int = 10,
        exclude_purchased=True,
        allowed_items=None,
        days=None,
        chunk_size: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-n (items, scores) per user, best first, -1 / -inf padded (see the module docstring)."""
        self._check_fitted()
        users = as_index_array(np.atleast_1d(user_idx), "user_idx", self.n_users_, allow_missing=True)
        rows = check_matrix(user_items, "user_items", self.n_items_)
        if rows.shape[0] != users.size:
            raise InteractionsError(
                f"user_items has {rows.shape[0]} rows for {users.size} users; "
                "pass one row per user (user_items[user_idx])"
            )
        if n < 1:
            raise InteractionsError(f"n must be >= 1, got {n}")
        excludable = self._excludable(exclude_purchased)
        items, blocked = self._candidates(allowed_items)
        width = self.n_items_ if items is None else items.size
        position = None
        if items is not None:
            position = np.full(self.n_items_, -1, dtype=np.int64)
            position[items] = np.arange(items.size)
        chunk = chunk_size or self._chunk_rows(width, items is None)
        out_items = np.full((users.size, n), -1, dtype=np.int64)
        out_scores = np.full((users.size, n), -np.inf, dtype=np.float32)

        def top(start: int, stop: int) -> None:
            sub = rows[start:stop]
            sub_days = None if days is None else days[start:stop]
            purchased = _purchased_pairs(sub, excludable)
            out_items[start:stop], out_scores[start:stop] = self._top_chunk(
                users[start:stop], sub, sub_days, n, purchased, items, blocked, position
            )

        over_chunks(top, users.size, chunk)
        return out_items, out_scores

    def _chunk_rows(self, width: int, all_items: bool) -> int:
        """Users per chunk: bounded dense scores in memory."""
        return max(1, CHUNK_CELLS // max(width, 1))

    def _top_chunk(self, users, rows, days, n, purchased, items, blocked, position) -> tuple[np.ndarray, np.ndarray]:
        """Top-n of one chunk of users: dense scores, then masks, then `top_k`."""
        s = self._score_rows(users, rows, days, items)
        if blocked is not None:
            s[:, blocked] = -np.inf
        r, c = purchased
        if position is not None:
            c = position[c]
            r, c = r[c >= 0], c[c >= 0]
        s[r, c] = -np.inf
        idx, val = top_k(s, n)
        if position is not None:
            idx = np.where(idx >= 0, items[np.maximum(idx, 0)], -1)
        return idx, val

    def _excludable(self, exclude_purchased):
        if np.ndim(exclude_purchased) == 0:
            if not isinstance(exclude_purchased, (bool, np.bool_)) and np.asarray(exclude_purchased).dtype != bool:
                raise InteractionsError(
                    f"exclude_purchased must be a bool or a per-item bool array, got {exclude_purchased!r}")
            return True if bool(exclude_purchased) else None
        mask = np.asarray(exclude_purchased)
        if mask.dtype != bool or mask.shape != (self.n_items_,):
            raise InteractionsError(f"exclude_purchased must be a bool or a bool array of {self.n_items_} items")
        return mask if mask.any() else None

    def _allowed_mask(self, allowed_items) -> np.ndarray | None:
        if allowed_items is None:
            return None
        arr = np.asarray(allowed_items)
        if arr.dtype == bool:
            if arr.shape != (self.n_items_,):
                raise InteractionsError(f"allowed_items mask must have {self.n_items_} entries, got {arr.shape}")
            return arr
        mask = np.zeros(self.n_items_, dtype=bool)
        mask[as_index_array(arr, "allowed_items", self.n_items_)] = True
        return mask

    def _candidates(self, allowed_items) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(item subset to score, or None) and (items to block after scoring, or None).

        A small subset is scored alone (fewer products); a large one is cheaper to score in
        full and block, without gathering a copy of the item factors.
        """
        mask = self._allowed_mask(allowed_items)
        if mask is None:
            return None, None
        if np.count_nonzero(mask) * 4 >= self.n_items_:
            return None, ~mask
        return np.flatnonzero(mask), None

    def similar_items(self, item_idx, n: int = 10, allowed_items=None) -> tuple[np.ndarray, np.ndarray]:
        """(items int64 [len x n], scores float32 [len x n]) most similar first, never the item itself."""
        self._check_fitted()
        items = as_index_array(np.atleast_1d(item_idx), "item_idx", self.n_items_)
        s = self._item_scores(items).astype(np.float32, copy=True)
        s[np.arange(items.size), items] = -np.inf
        allowed = self._allowed_mask(allowed_items)
        if allowed is not None:
            s[:, ~allowed] = -np.inf
        return top_k(s, n)

    def explain(self, user_idx: int, user_items, item_idx: int, n: int = 5, days=None) -> tuple[np.ndarray, np.ndarray]:
        """The purchased items (first row of `user_items`) that contributed most to `item_idx`'s score.

        Returns (items int64, contributions float32), largest first, at most n.
        """
        raise InteractionsError(f"{type(self).__name__} cannot explain a recommendation")

    # ------------------------------------------------------------------ arrays
    def to_arrays(self) -> dict[str, np.ndarray]:
        self._check_fitted()
        out = {"kind": np.array(self.kind), "n_users": np.array(self.n_users_), "n_items": np.array(self.n_items_)}
        for name in self.param_names:
            value = getattr(self, name)
            if value is not None:
                out[f"param.{name}"] = np.array(value)
        out.update({f"weighting.{k}": v for k, v in self.weighting_.to_arrays().items()})
        out.update(self._fitted_arrays())
        return out

    @abc.abstractmethod
    def _fitted_arrays(self) -> dict[str, np.ndarray]: ...

    @abc.abstractmethod
    def _load_arrays(self, arrays) -> None: ...

    @classmethod
    def from_arrays(cls, arrays) -> Recommender:
        kind = str(arrays["kind"])
        target = REGISTRY.get(kind)
        if target is None:
            raise InteractionsError(f"unknown recommender kind {kind!r} in arrays; known: {', '.join(REGISTRY)}")
        if cls is not Recommender and not issubclass(target, cls):
            raise InteractionsError(f"arrays hold a {kind!r} model, not a {cls.kind!r} one")
        if "from_arrays" in target.__dict__ and target is not cls:
            return target.from_arrays(arrays)
        params = {k[len("param."):]: v.item() for k, v in arrays.items() if k.startswith("param.")}
        weighting = Weighting.from_arrays(strip_prefix(arrays, "weighting."))
        model = target._from_params(params, weighting)
        model.weighting_ = weighting
        model.n_users_, model.n_items_ = int(arrays["n_users"]), int(arrays["n_items"])
        model._load_arrays(arrays)
        return model

    @classmethod
    def from_config(cls, params: dict) -> Recommender:
        """A new, unfitted model from `get_params()` output without "kind"."""
        try:
            return cls(**params)
        except TypeError as exc:
            raise InteractionsError(f"bad parameters for {cls.kind!r}: {exc}") from None

    @classmethod
    def _from_params(cls, params: dict, weighting: Weighting) -> Recommender:
        return cls(**params, weighting=weighting.scheme, weighting_params=dict(weighting.params) or None)


def over_chunks(fn: Callable[[int, int], None], n: int, step: int) -> None:
    """fn(start, stop) for each chunk [start, start + step) of range(n), on up to
    `MAX_SCORING_THREADS` threads (one per core): numpy and scipy release the GIL in the dense
    scoring and ranking, and each chunk writes only its own rows, so the result does not depend
    on the number of threads. BLAS runs one thread per chunk meanwhile (no oversubscription)."""
    starts = range(0, n, step)
    threads = min(MAX_SCORING_THREADS, len(os.sched_getaffinity(0)), len(starts))
    if threads <= 1:
        for start in starts:
            fn(start, min(start + step, n))
        return
    with threadpool_limits(1, "blas"), ThreadPoolExecutor(threads) as pool:
        # list() re-raises the first chunk's exception, if any
        list(pool.map(lambda start: fn(start, min(start + step, n)), starts))


def _purchased_pairs(rows: sp.csr_matrix, excludable) -> tuple[np.ndarray, np.ndarray]:
    """(row, item) of the purchased items to exclude: all of them, those marked per item, or none."""
    if excludable is None or rows.nnz == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    r = np.repeat(np.arange(rows.shape[0]), np.diff(rows.indptr))
    c = rows.indices.astype(np.int64)
    if excludable is not True:
        keep = excludable[c]
        r, c = r[keep], c[keep]
    return r, c


def prefixed(arrays: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    return {f"{prefix}{k}": v for k, v in arrays.items()}


def strip_prefix(arrays, prefix: str) -> dict[str, np.ndarray]:
    return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}


def from_params(params: dict) -> Recommender:
    """A new, unfitted model from `get_params()` output (what the report stores)."""
    params = dict(params)
    kind = params.pop("kind", None)
    if kind not in REGISTRY:
        raise InteractionsError(f"unknown recommender kind {kind!r}; known: {', '.join(REGISTRY)}")
    return REGISTRY[kind].from_config(params)
