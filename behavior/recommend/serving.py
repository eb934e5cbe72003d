"""What the API serves from a bundle: the selected model plus everything around it, as arrays.

`serving_arrays(...)` gathers, as plain arrays (`np.savez(..., **arrays)`; load with
`np.load(path, allow_pickle=False)`), the id maps, each user's owned items (the net-count
CSR the model was refitted on, and the days since each last purchase), item metadata
(category code, active flag; optionally merchant, price and name, shown with each item), the catalogue default for excluding owned items, popularity
overall and per segment, and the model's own arrays under "model.". `ServingModel` is built
from them and answers one user at a time:

- `recommend`: inactive items are never returned; a user the bundle does not know, or who
  owns nothing (e.g. only refunds), gets the items most popular in their segment (if
  known), else overall: source "fallback". Otherwise the model ranks (source "model"), and a
  list shorter than n (buy-again, item kNN) is completed with popular items whose score is
  their share of buyers.
- `similar`, `fold_in` (factor models: a vector from a list of items, no retraining),
  `recommend_for_items` (any model, from a list of items), `explain` ("because you bought").

Everything that does not depend on the request (masks, popularity orders) is computed once
at load.

One user's `recommend` (and `recommend_for_items`) takes a numpy-only fast path for the
models defined here (ALS, BPR, item kNN, EASE, popularity, buy-again and blends of them): the
user's row is read straight from the owned-items arrays, weighted, scored and masked
without building scipy matrices or going through the generic `Recommender.recommend`
(whose per-call set-up costs several times the arithmetic for a single user). It performs
the same floating-point operations in the same order as the general path, so the answers
are identical (tests/behavior/test_serving_fast_path.py compares both for every model
kind); any other model takes the general path.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

from behavior.errors import BehaviorError
from behavior.recommend.base import Recommender, prefixed, strip_prefix
from behavior.recommend.baselines import _TIE_BREAK, BuyAgain, Popularity
from behavior.recommend.blend import Blend
from behavior.recommend.checks import InteractionsError, check_matrix
from behavior.recommend.factors import ALS, BPR, PRUNE_BLOCKS, FactorModel, SparkALS
from behavior.recommend.interactions import IdMap, confidence
from behavior.recommend.ease import EASE
from behavior.recommend.neighbours import ItemItem, ItemKNN
from behavior.recommend.topk import normalise_row, top_k_row
from behavior.recommend.weighting import Weighting

FORMAT_VERSION = 1


class UnknownIdError(BehaviorError, LookupError):
    """An item, category or segment id the bundle does not know."""


class Recommendation(NamedTuple):
    items: list[tuple[str, float]]
    source: str  # "model" or "fallback"


def _codes(values, names, what: str, n: int) -> np.ndarray:
    codes = np.asarray(values)
    if codes.shape != (n,) or (codes.size and not np.issubdtype(codes.dtype, np.integer)):
        raise InteractionsError(f"{what} must be {n} integer codes, got shape {codes.shape} dtype {codes.dtype}")
    if codes.size and (codes.min() < -1 or codes.max() >= len(names)):
        raise InteractionsError(f"{what} holds codes outside [-1, {len(names)}) of its {len(names)} names")
    return codes.astype(np.int32)


def serving_arrays(
    model: Recommender,
    *,
    user_ids: IdMap,
    item_ids: IdMap,
    seen,
    seen_days=None,
    item_category,
    category_names,
    item_active,
    user_segment=None,
    segment_names=(),
    exclude_seen: bool | np.ndarray = True,
    selected: str = "",
    item_merchant=None,
    item_price=None,
    item_name=None,
) -> dict[str, np.ndarray]:
    """Every array the serving layer needs (names and dtypes in the bundle docs). `seen`: the
    users x items net counts the model was fitted on; codes are -1 for "none". The optional
    item attributes (one per item; "" or NaN where unknown) are stored as `item_merchant`,
    `item_price` and `item_name` for the API to show beside each recommended item."""
    n_users, n_items = len(user_ids), len(item_ids)
    m = check_matrix(seen, "seen", n_items)
    if m.shape[0] != n_users or (model.n_users_, model.n_items_) != m.shape:
        raise InteractionsError(
            f"seen is {m.shape}, the id maps {n_users} x {n_items} and the model {model.n_users_} x "
            f"{model.n_items_}: all must describe the same users and items"
        )
    active = np.asarray(item_active, dtype=bool)
    if active.shape != (n_items,):
        raise InteractionsError(f"item_active must have {n_items} entries, got {active.shape}")
    category_names = np.asarray(category_names, dtype=np.str_)
    segment_names = np.asarray(segment_names, dtype=np.str_)
    category = _codes(item_category, category_names, "item_category", n_items)
    segment = (np.full(n_users, -1, np.int32) if user_segment is None
               else _codes(user_segment, segment_names, "user_segment", n_users))
    exclude = np.asarray(exclude_seen, dtype=bool)
    exclude = np.full(n_items, bool(exclude)) if exclude.ndim == 0 else exclude
    if exclude.shape != (n_items,):
        raise InteractionsError(f"exclude_seen must be a bool or {n_items} bools, got shape {exclude.shape}")

    owns = sp.csr_matrix((np.ones(m.nnz, np.float32), m.indices, m.indptr), shape=m.shape)
    popularity = np.asarray(owns.sum(axis=0), dtype=np.float64).ravel()
    buyers = max(int((np.diff(m.indptr) > 0).sum()), 1)
    by_segment = np.zeros((segment_names.size, n_items), dtype=np.float32)
    if segment_names.size:
        has = segment >= 0
        onehot = sp.csr_matrix((np.ones(int(has.sum()), np.float32), (segment[has], np.flatnonzero(has))),
                               shape=(segment_names.size, n_users))
        counts = np.asarray((onehot @ owns).todense(), dtype=np.float64)
        seg_buyers = np.maximum(np.asarray(onehot @ (np.diff(m.indptr) > 0).astype(np.float32)).ravel(), 1.0)
        by_segment = (counts / seg_buyers[:, None]).astype(np.float32)
    out = {
        "format": np.array(FORMAT_VERSION, dtype=np.int64),
        "selected": np.array(selected or model.kind),
        "user_ids": user_ids.ids,
        "item_ids": item_ids.ids,
        "seen.indptr": m.indptr.astype(np.int64),
        "seen.indices": m.indices.astype(np.int32),
        "seen.data": m.data.astype(np.float32),
        "item_category": category,
        "category_names": category_names,
        "item_active": active,
        "user_segment": segment,
        "segment_names": segment_names,
        "exclude_seen": exclude,
        "popularity": (popularity / buyers).astype(np.float32),
        "popularity_segment": by_segment,
    }
    if seen_days is not None:
        d = sp.csr_matrix(seen_days)
        if not (np.array_equal(d.indptr, m.indptr) and np.array_equal(d.indices, m.indices)):
            raise InteractionsError("seen_days must have the sparsity pattern of seen (Interactions.matrices())")
        out["seen.days"] = d.data.astype(np.float32)
    for name, values, dtype in (("item_merchant", item_merchant, np.str_), ("item_price", item_price, np.float64),
                                ("item_name", item_name, np.str_)):
        if values is not None:
            arr = np.asarray(values, dtype=dtype)
            if arr.shape != (n_items,):
                raise InteractionsError(f"{name} must have {n_items} entries, got shape {arr.shape}")
            out[name] = arr
    out.update(prefixed(model.to_arrays(), "model."))
    return out


# ---------------------------------------------------------------------- the one-user fast path
# Each function below computes, for one user's row given as numpy arrays (sorted item
# indices, net counts, days), exactly what the general path computes from a 1-row CSR
# matrix: the same float32/float64 operations in the same order. Keep them in step with
# Weighting.transform, each model's _scores and Blend._mix (the fast-path test catches drift).

_FAST_LEAVES = (ALS, SparkALS, BPR, ItemKNN, EASE, Popularity, BuyAgain)
_FIRST_SEGMENT = np.zeros(1, dtype=np.intp)


def _fast_supported(model: Recommender, has_days: bool) -> bool:
    """Whether the fast path reproduces `model` (exact types only: a subclass may score differently)."""
    if type(model) is Blend:
        return _fast_supported(model.a, has_days) and _fast_supported(model.b, has_days)
    if type(model) not in _FAST_LEAVES:
        return False
    scheme = model.weighting_.scheme
    # without days the general path fails for "recency" (every model weighs its rows first)
    return scheme in ("count", "log", "bm25") or (scheme == "recency" and has_days)


def _factor_models(model: Recommender) -> list[FactorModel]:
    if type(model) is Blend:
        return _factor_models(model.a) + _factor_models(model.b)
    return [model] if isinstance(model, FactorModel) else []


def _row_confidence(weighting: Weighting, cols: np.ndarray, data: np.ndarray,
                    days: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """`weighting.transform` of one row: (item indices, float32 weights), zero weights dropped."""
    if weighting.scheme == "bm25":
        k1, b = weighting.params["K1"], weighting.params["B"]
        row_sums = np.add.reduceat(data, _FIRST_SEGMENT)  # what csr.sum(axis=1) does for one row
        norm = (1.0 - b) + b * row_sums / weighting.mean_row_sum_
        c = data.astype(np.float64)
        w = c * (k1 + 1.0) / (k1 * norm[np.zeros(c.size, dtype=np.intp)] + c) * weighting.idf_[cols]
    elif weighting.scheme == "count":  # net counts as they are (float32 -> float64 -> float32 is exact)
        w = data
    else:
        w = confidence(data, None, days if weighting.scheme == "recency" else None, weighting.scheme,
                       **weighting.params)
    w = w.astype(np.float32)
    keep = w != 0
    return (cols, w) if keep.all() else (cols[keep], w[keep])


def _mix_row(blend: Blend, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """`Blend._mix` of one row."""
    w = float(blend.weight)
    out = w * normalise_row(a) + (1.0 - w) * normalise_row(b)
    out[~(np.isfinite(a) | np.isfinite(b))] = -np.inf
    return out


def _knn_row(similarity: sp.csr_matrix, cols: np.ndarray, weights: np.ndarray, n_items: int) -> np.ndarray:
    """The row r @ S of ItemKNN, dense with -inf off the product's pattern: scipy's csr_matmat
    adds v * S[j, k] into a float32 sum per k, visiting j (the row's items) and then each row
    of S in stored order, and drops sums that are exactly 0; np.add.at adds in the same order."""
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


class ServingModel:
    """Recommendations for one user at a time from `serving_arrays` output (see module docstring)."""

    def __init__(self, arrays) -> None:
        version = int(arrays["format"])
        if version != FORMAT_VERSION:
            raise InteractionsError(f"recommender arrays have format {version}; this code reads {FORMAT_VERSION}")
        self.selected = str(arrays["selected"])
        self.users = IdMap(arrays["user_ids"])
        self.items = IdMap(arrays["item_ids"])
        self.model = Recommender.from_arrays(strip_prefix(arrays, "model."))
        n_items = len(self.items)
        self._indptr = np.asarray(arrays["seen.indptr"], dtype=np.int64)
        self._indices = np.asarray(arrays["seen.indices"], dtype=np.int32)
        self._data = np.asarray(arrays["seen.data"], dtype=np.float32)
        self._days = np.asarray(arrays["seen.days"], dtype=np.float32) if "seen.days" in arrays else None
        self.item_category = np.asarray(arrays["item_category"], dtype=np.int32)
        self.category_names = np.asarray(arrays["category_names"], dtype=np.str_)
        self._category_code = {str(name): code for code, name in enumerate(self.category_names)}
        # item attributes shown beside each item; None for bundles written without them
        self.item_merchant = np.asarray(arrays["item_merchant"], np.str_) if "item_merchant" in arrays else None
        self.item_price = np.asarray(arrays["item_price"], np.float64) if "item_price" in arrays else None
        self.item_name = np.asarray(arrays["item_name"], np.str_) if "item_name" in arrays else None
        self._segment_code = {str(name): code for code, name in enumerate(arrays["segment_names"])}
        self.user_segment = np.asarray(arrays["user_segment"], dtype=np.int32)
        self.active = np.asarray(arrays["item_active"], dtype=bool)
        self.exclude_default = np.asarray(arrays["exclude_seen"], dtype=bool)
        self._no_exclusion = not self.exclude_default.any()
        self._category_mask = {
            code: self.active & (self.item_category == code) for code in self._category_code.values()
        }
        self._popularity = np.asarray(arrays["popularity"], dtype=np.float32)
        self._popularity_segment = np.asarray(arrays["popularity_segment"], dtype=np.float32)
        # active items by decreasing popularity, overall and per segment
        active_items = np.flatnonzero(self.active)
        self._order = active_items[np.argsort(-self._popularity[active_items], kind="stable")]
        self._order_segment = [active_items[np.argsort(-p[active_items], kind="stable")]
                               for p in self._popularity_segment]
        self._n_items = n_items
        # factor models: per filter, the allowed items in decreasing-norm order (pruned top-n)
        self._norm_index = None
        if isinstance(self.model, FactorModel):
            self._norm_index = {None: self.model.norm_index(np.flatnonzero(self.active))}
            for code, mask in self._category_mask.items():
                self._norm_index[code] = self.model.norm_index(np.flatnonzero(mask))
        # ids longer than every known id cannot be known: searchsorted would first copy all ids to the longer type
        self._max_user_id_len = self.users.ids.dtype.itemsize // np.dtype("U1").itemsize
        self._fast = self._owned_rows_canonical() and _fast_supported(self.model, self._days is not None)
        # recommend_for_items: factor models fold the row in (the general path does that)
        self._fast_anonymous = self._fast and not _factor_models(self.model)
        if self._fast:
            self._prepare_fast_path()

    def _owned_rows_canonical(self) -> bool:
        """Owned items sorted and unique within each row, counts finite and >= 0: what the
        general path's checks leave as they are (anything else goes the general way)."""
        indptr, indices, data = self._indptr, self._indices, self._data
        if indptr.size != len(self.users) + 1 or indptr[0] != 0 or indptr[-1] != indices.size \
                or data.size != indices.size or (np.diff(indptr) < 0).any():
            return False
        if indices.size and (indices.min() < 0 or indices.max() >= self._n_items):
            return False
        if self._days is not None and self._days.size != indices.size:
            return False
        starts = np.zeros(indices.size, dtype=bool)
        starts[indptr[:-1][indptr[:-1] < indices.size]] = True
        increasing = np.diff(indices.astype(np.int64)) > 0
        return bool((increasing | starts[1:]).all() and np.isfinite(data).all() and (data >= 0).all())

    def _prepare_fast_path(self) -> None:
        """Per item filter (none, or a category): what `Recommender._candidates` makes of the
        allowed-items mask (items scored alone, or items blocked after scoring), and the item
        factors the general path would gather on every call."""
        self._candidates: dict[int | None, tuple[np.ndarray | None, np.ndarray | None]] = {}
        self._item_factors: dict[tuple[int, int | None], np.ndarray] = {}
        if self._norm_index is not None:
            return  # a factor model alone: the pruned scan over the norm indexes
        for code in (None, *self._category_mask):
            items, blocked = self.model._candidates(self._allowed_for(code))
            self._candidates[code] = (items, blocked)
            for model in _factor_models(self.model):
                y = model.item_factors_
                self._item_factors[id(model), code] = y if items is None else y[items]

    @classmethod
    def from_arrays(cls, arrays) -> ServingModel:
        return cls(arrays)

    # ------------------------------------------------------------------ helpers
    def _row(self, uidx: int) -> tuple[sp.csr_matrix, sp.csr_matrix | None]:
        a, b = self._indptr[uidx], self._indptr[uidx + 1]
        indptr = np.array([0, b - a], dtype=np.int64)
        shape = (1, self._n_items)
        row = sp.csr_matrix((self._data[a:b], self._indices[a:b], indptr), shape=shape)
        days = None if self._days is None else sp.csr_matrix((self._days[a:b], self._indices[a:b], indptr), shape=shape)
        return row, days

    def _items_counts(self, item_ids) -> tuple[np.ndarray, np.ndarray]:
        """(items, float32 counts) of a list of item ids (repeats count), items ascending."""
        idx = self.items.index(list(item_ids))
        known = idx[idx >= 0]
        if known.size == 0:
            raise UnknownIdError(f"none of the {len(idx)} given item ids is in the bundle's catalogue")
        counts = np.bincount(known, minlength=self._n_items)
        cols = np.flatnonzero(counts)
        return cols, counts[cols].astype(np.float32)

    def _items_row(self, item_ids) -> sp.csr_matrix:
        cols, counts = self._items_counts(item_ids)
        return sp.csr_matrix((counts, cols, [0, cols.size]), shape=(1, self._n_items))

    def _category(self, category: str | None) -> int | None:
        if category is None:
            return None
        code = self._category_code.get(category)
        if code is None:
            raise UnknownIdError(f"unknown category {category!r}; known: {', '.join(sorted(self._category_code))}")
        return code

    def _allowed(self, category: str | None) -> np.ndarray:
        return self._allowed_for(self._category(category))

    def _allowed_for(self, code: int | None) -> np.ndarray:
        return self.active if code is None else self._category_mask[code]

    def _user_index(self, user_id: str) -> int:
        if len(user_id) > self._max_user_id_len:
            return -1
        return self.users.index_of(user_id)

    def _segment(self, segment: str | None, uidx: int) -> int:
        if segment is not None:
            code = self._segment_code.get(segment)
            if code is None:
                raise UnknownIdError(f"unknown segment {segment!r}; known: {', '.join(sorted(self._segment_code))}")
            return code
        return int(self.user_segment[uidx]) if uidx >= 0 else -1

    def _exclusion(self, exclude_purchased: bool | None):
        if exclude_purchased is None:
            return False if self._no_exclusion else self.exclude_default
        return bool(exclude_purchased)

    def _popular(self, n: int, allowed: np.ndarray, segment: int, skip: np.ndarray) -> list[tuple[str, float]]:
        if segment >= 0 and segment < len(self._order_segment):
            order, share = self._order_segment[segment], self._popularity_segment[segment]
        else:
            order, share = self._order, self._popularity
        if skip.size:
            allowed = allowed.copy()
            allowed[skip] = False
        picked = order[allowed[order]][:n]
        return list(zip(self.items.ids[picked].tolist(), share[picked].astype(float).tolist()))

    def _complete(self, items, scores, n, allowed, segment, owned, exclude) -> Recommendation:
        keep = items >= 0
        picked, values = items[keep], scores[keep]
        out = list(zip(self.items.ids[picked].tolist(), values.astype(float).tolist()))
        if len(out) < n:
            skip = picked
            if exclude is not False and owned.size:
                drop = owned if exclude is True else owned[np.asarray(exclude)[owned]]
                skip = np.concatenate([skip, drop])
            out += self._popular(n - len(out), allowed, segment, skip)
        return Recommendation(out, "model" if picked.size else "fallback")

    # ------------------------------------------------------------------ API
    def recommend(self, user_id: str, n: int = 10, category: str | None = None,
                  exclude_purchased: bool | None = None, segment: str | None = None) -> Recommendation:
        """Top-n (item_id, score) for a user, best first, and where they came from."""
        return self._recommend(user_id, n, category, exclude_purchased, segment, fast=self._fast)

    def _recommend(self, user_id: str, n: int, category: str | None, exclude_purchased: bool | None,
                   segment: str | None, *, fast: bool) -> Recommendation:
        """`recommend` on the fast path, or (fast=False) on the general one: the same answer."""
        if n < 1:
            raise InteractionsError(f"n must be >= 1, got {n}")
        code = self._category(category)
        allowed = self._allowed_for(code)
        uidx = self._user_index(user_id)
        seg = self._segment(segment, uidx)
        a, b = (int(self._indptr[uidx]), int(self._indptr[uidx + 1])) if uidx >= 0 else (0, 0)
        if a == b:
            return Recommendation(self._popular(n, allowed, seg, np.zeros(0, np.int64)), "fallback")
        exclude = self._exclusion(exclude_purchased)
        if self._norm_index is not None:
            owned = self._indices[a:b].astype(np.int64)
            skip = owned if exclude is True else owned[exclude[owned]] if exclude is not False else owned[:0]
            if fast:
                items, scores = self._factor_top(uidx, n, code, skip)
            else:
                top = self.model.top_by_norm(self.model.user_factors_[uidx: uidx + 1], n,
                                             (np.zeros(skip.size, np.int64), skip), index=self._norm_index[code])
                items, scores = top[0][0], top[1][0]
            return self._complete(items, scores, n, allowed, seg, owned, exclude)
        if fast:
            days = None if self._days is None else self._days[a:b]
            items, scores = self._fast_top(uidx, self._indices[a:b], self._data[a:b], days, n, code, exclude)
            return self._complete(items, scores, n, allowed, seg, self._indices[a:b], exclude)
        row, days = self._row(uidx)
        return self._general(uidx, row, days, n, allowed, seg, exclude)

    def _general(self, uidx: int, row: sp.csr_matrix, days, n: int, allowed: np.ndarray, seg: int,
                 exclude) -> Recommendation:
        """The model's own `recommend` on a 1-row matrix (any model; uidx -1: from the row alone)."""
        if not allowed.any():  # nothing to rank (a category whose items are all inactive)
            return Recommendation([], "fallback")
        items, scores = self.model.recommend(np.array([uidx]), row, n, exclude_seen=exclude,
                                             allowed_items=allowed, days=days)
        return self._complete(items[0], scores[0], n, allowed, seg, row.indices, exclude)

    def recommend_for_items(self, item_ids, n: int = 10, category: str | None = None,
                            exclude_purchased: bool | None = None, segment: str | None = None) -> Recommendation:
        """Top-n for someone who bought `item_ids` (a new or anonymous user), without retraining."""
        return self._recommend_for_items(item_ids, n, category, exclude_purchased, segment,
                                         fast=self._fast_anonymous)

    def _recommend_for_items(self, item_ids, n, category, exclude_purchased, segment, *, fast: bool):
        """Fast path (models without factors: those fold the row in) or general path."""
        cols, counts = self._items_counts(item_ids)
        return self._recommend_row(cols, counts, np.zeros(cols.size, np.float32), n, category, exclude_purchased,
                                   self._segment(segment, -1), fast=fast)

    def _recommend_row(self, cols, counts, days, n, category, exclude_purchased, seg: int, *, fast: bool):
        code = self._category(category)
        allowed = self._allowed_for(code)
        exclude = self._exclusion(exclude_purchased)
        if fast:
            items, scores = self._fast_top(-1, cols, counts, days, n, code, exclude)
            return self._complete(items, scores, n, allowed, seg, cols, exclude)
        row = sp.csr_matrix((counts, cols, [0, cols.size]), shape=(1, self._n_items))
        days = sp.csr_matrix((days, row.indices, row.indptr), shape=row.shape)
        return self._general(-1, row, days, n, allowed, seg, exclude)

    def recommend_folded(self, user_id: str, new_item_ids, n: int = 10, category: str | None = None,
                         exclude_purchased: bool | None = None, segment: str | None = None) -> Recommendation:
        """Top-n for a user who, besides what the bundle knows of them, just bought
        `new_item_ids` (one unit per id, 0 days ago): their row plus these items is folded in
        as for `recommend_for_items` (factor models: a new vector, no retraining), and owned
        items, the new ones included, are left out where the catalogue's policy says so. A
        user the bundle does not know gets personalised items from the new ones alone."""
        if n < 1:
            raise InteractionsError(f"n must be >= 1, got {n}")
        idx = self.items.index(list(new_item_ids))
        added = np.bincount(idx[idx >= 0], minlength=self._n_items).astype(np.float32)
        uidx = self._user_index(user_id)
        a, b = (int(self._indptr[uidx]), int(self._indptr[uidx + 1])) if uidx >= 0 else (0, 0)
        if not added.any():
            return self.recommend(user_id, n, category, exclude_purchased, segment)
        counts = added
        days = np.zeros(self._n_items, np.float32)
        owned = self._indices[a:b]
        counts[owned] += self._data[a:b]
        if self._days is not None:
            days[owned] = self._days[a:b]
        days[added > 0] = 0.0
        cols = np.flatnonzero(counts > 0)
        return self._recommend_row(cols, counts[cols], days[cols], n, category, exclude_purchased,
                                   self._segment(segment, uidx), fast=self._fast_anonymous)

    # ------------------------------------------------------------------ the fast path
    def _fast_top(self, uidx: int, cols: np.ndarray, data: np.ndarray, days: np.ndarray | None, n: int,
                  code: int | None, exclude) -> tuple[np.ndarray, np.ndarray]:
        """One row's top-n (items, scores), -1 / -inf padded: `Recommender.recommend` and its
        `_top_chunk` for one user, on numpy arrays (see the module docstring)."""
        items, blocked = self._candidates[code]
        if items is not None and items.size == 0:
            return np.full(n, -1, dtype=np.int64), np.full(n, -np.inf, dtype=np.float32)
        s = self._scores_row(self.model, uidx, cols, data, days, code, items)
        if blocked is not None:
            s[blocked] = -np.inf
        if exclude is not False:
            c = cols if exclude is True else cols[exclude[cols]]
            if items is not None:  # item -> its column among the scored items
                p = np.minimum(np.searchsorted(items, c), items.size - 1)
                c = p[items[p] == c]
            s[c] = -np.inf
        idx, val = top_k_row(s, n)
        if items is not None:
            idx = np.where(idx >= 0, items[np.maximum(idx, 0)], -1)
        return idx, val

    def _scores_row(self, model: Recommender, uidx: int, cols: np.ndarray, data: np.ndarray,
                    days: np.ndarray | None, code: int | None, items: np.ndarray | None) -> np.ndarray:
        """`model._score_rows` for one row: dense float32 scores over `items` (None: all items)."""
        if type(model) is Blend:
            a = self._scores_row(model.a, uidx, cols, data, days, code, items)
            b = self._scores_row(model.b, uidx, cols, data, days, code, items)
            return _mix_row(model, a, b)
        if isinstance(model, FactorModel):  # a known user's trained vector
            return (model.user_factors_[[uidx]] @ self._item_factors[id(model), code].T)[0]
        if type(model) is Popularity:
            return model.popularity_.copy() if items is None else model.popularity_[items]
        conf_cols, weights = _row_confidence(model.weighting_, cols, data, days)
        if isinstance(model, ItemItem):
            out = _knn_row(model.similarity_, conf_cols, weights, self._n_items)
        else:  # BuyAgain
            out = np.full(self._n_items, -np.inf, dtype=np.float32)
            out[conf_cols] = weights + _TIE_BREAK * model.popularity_[conf_cols]
        return out if items is None else out[items]

    def _factor_top(self, uidx: int, n: int, code: int | None, skip: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`FactorModel.top_by_norm` for one user over the filter's norm index: the same blocks,
        products, early stop and `top_k` merges, without the bookkeeping for many users."""
        model, index = self.model, self._norm_index[code]
        size = index.items.size
        x = model.user_factors_[uidx: uidx + 1]
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

    def fold_in(self, item_ids) -> np.ndarray:
        """The user vector (factor models) of someone who bought `item_ids`, without retraining."""
        model = self.model
        if not isinstance(model, FactorModel):
            raise InteractionsError(f"fold_in needs a factor model (als, bpr); the bundle serves {model.kind!r}")
        row = self._items_row(item_ids)
        days = sp.csr_matrix((np.zeros(row.nnz, np.float32), row.indices, row.indptr), shape=row.shape)
        return model.fold_in(row, days)[0]

    def similar(self, item_id: str, n: int = 10) -> list[tuple[str, float]]:
        """Active items most similar to `item_id` (never itself)."""
        idx = self.items.index_of(item_id)
        if idx < 0:
            raise UnknownIdError(f"unknown item {item_id!r}")
        items, scores = self.model.similar_items([idx], n, allowed_items=self.active)
        keep = items[0] >= 0
        return list(zip(self.items.ids[items[0][keep]].tolist(), scores[0][keep].astype(float).tolist()))

    def explain(self, user_id: str, item_id: str, n: int = 5) -> list[tuple[str, float]]:
        """The user's items that contributed most to `item_id` ("because you bought ..."); [] if none."""
        iidx = self.items.index_of(item_id)
        if iidx < 0:
            raise UnknownIdError(f"unknown item {item_id!r}")
        uidx = self.users.index_of(user_id)
        if uidx < 0 or self._indptr[uidx + 1] == self._indptr[uidx]:
            return []
        row, days = self._row(uidx)
        try:
            items, contrib = self.model.explain(uidx, row, iidx, n, days)
        except InteractionsError:
            return []
        return list(zip(self.items.ids[items].tolist(), contrib.astype(float).tolist()))
