"""What the API serves from a bundle: the selected model plus everything around it, as arrays.

`serving_arrays(...)` gathers, as plain arrays (`np.savez(..., **arrays)`; load with
`behavior.store.bundle.read_recommender`), the id maps, each user's purchased items (the net-count
CSR the model was refitted on, and the days since each last purchase), item metadata
(category code, active flag; optionally merchant, price and name, shown with each item), the
catalogue default for excluding purchased items, popularity overall and per segment, and the
model's own arrays under "model.". `ServingModel` is built from them and answers one user at a
time:

- `recommend`: inactive items are never returned; a user the bundle does not know, or who
  purchased nothing (e.g. only refunds), gets the items most popular in their segment (if
  known), else overall: source "fallback". Otherwise the model ranks (source "model"), and a
  list shorter than n (buy-again, item kNN) is completed with popular items whose score is
  their share of buyers.
- `similar`, `fold_in` (factor models: a vector from a list of items, no retraining),
  `recommend_for_items` (any model, from a list of items), `explain` ("because you bought").

Everything that does not depend on the request (masks, popularity orders) is computed once
at load.

One user's `recommend` (and `recommend_for_items`) takes a numpy-only fast path for every
model that offers one through the `Recommender` contract (`row_scorer`, `user_top_index` /
`user_top`; ServingModel knows no model by name): the user's row is read straight from the
purchased-items arrays and handed to the model's row scorer, then masked, without building scipy
matrices or going through the generic `Recommender.recommend` (whose per-call set-up costs
several times the arithmetic for a single user). The scorers perform the same floating-point
operations in the same order as the general path, so the answers are identical
(tests/behavior/test_serving_fast_path.py compares both for every model kind); a model
without a row scorer takes the general path.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

from behavior.errors import BehaviorError
from behavior.recommend.base import Recommender, RowScorer, prefixed, strip_prefix
from behavior.recommend.checks import InteractionsError, check_matrix
from behavior.recommend.interactions import IdMap
from behavior.recommend.topk import top_k_row

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
    purchased,
    purchased_days=None,
    item_category,
    category_names,
    item_active,
    user_segment=None,
    segment_names=(),
    exclude_purchased: bool | np.ndarray = True,
    selected: str = "",
    item_merchant=None,
    item_price=None,
    item_name=None,
) -> dict[str, np.ndarray]:
    """Every array the serving layer needs (names and dtypes in the bundle docs). `purchased`: the
    users x items net counts the model was fitted on; codes are -1 for "none". The optional
    item attributes (one per item; "" or NaN where unknown) are stored as `item_merchant`,
    `item_price` and `item_name` for the API to show beside each recommended item."""
    n_users, n_items = len(user_ids), len(item_ids)
    m = check_matrix(purchased, "purchased", n_items)
    if m.shape[0] != n_users or (model.n_users_, model.n_items_) != m.shape:
        raise InteractionsError(
            f"purchased is {m.shape}, the id maps {n_users} x {n_items} and the model {model.n_users_} x "
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
    exclude = np.asarray(exclude_purchased, dtype=bool)
    exclude = np.full(n_items, bool(exclude)) if exclude.ndim == 0 else exclude
    if exclude.shape != (n_items,):
        raise InteractionsError(f"exclude_purchased must be a bool or {n_items} bools, got shape {exclude.shape}")

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
        # the matrix's own arrays where their types already fit (no copy of ~80M entries at 100M lines)
        "purchased.indptr": m.indptr.astype(np.int64, copy=False),
        "purchased.indices": m.indices.astype(np.int32, copy=False),
        "purchased.data": m.data.astype(np.float32, copy=False),
        "item_category": category,
        "category_names": category_names,
        "item_active": active,
        "user_segment": segment,
        "segment_names": segment_names,
        "exclude_purchased": exclude,
        "popularity": (popularity / buyers).astype(np.float32),
        "popularity_segment": by_segment,
    }
    if purchased_days is not None:
        d = sp.csr_matrix(purchased_days)
        if not (np.array_equal(d.indptr, m.indptr) and np.array_equal(d.indices, m.indices)):
            raise InteractionsError(
                "purchased_days must have the sparsity pattern of purchased (Interactions.matrices())")
        out["purchased.days"] = d.data.astype(np.float32, copy=False)
    for name, values, dtype in (("item_merchant", item_merchant, np.str_), ("item_price", item_price, np.float64),
                                ("item_name", item_name, np.str_)):
        if values is not None:
            arr = np.asarray(values, dtype=dtype)
            if arr.shape != (n_items,):
                raise InteractionsError(f"{name} must have {n_items} entries, got shape {arr.shape}")
            out[name] = arr
    out.update(prefixed(model.to_arrays(), "model."))
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
        self._indptr = np.asarray(arrays["purchased.indptr"], dtype=np.int64)
        self._indices = np.asarray(arrays["purchased.indices"], dtype=np.int32)
        self._data = np.asarray(arrays["purchased.data"], dtype=np.float32)
        self._days = np.asarray(arrays["purchased.days"], dtype=np.float32) if "purchased.days" in arrays else None
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
        self.exclude_default = np.asarray(arrays["exclude_purchased"], dtype=bool)
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
        # a model with a top-n search of its own (factor models: the pruned scan by norm):
        # per filter, its index over the allowed items
        self._top_index = None
        if self.model.user_top_index(self.active) is not None:
            self._top_index = {code: self.model.user_top_index(self._allowed_for(code))
                               for code in (None, *self._category_mask)}
        # ids longer than every known id cannot be known: searchsorted would first copy all ids to the longer type
        self._max_user_id_len = self.users.ids.dtype.itemsize // np.dtype("U1").itemsize
        self._fast = self._purchased_rows_canonical() and self._prepare_fast_path()
        self._fast_anonymous = self._fast and self._fast_anonymous

    def _purchased_rows_canonical(self) -> bool:
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

    def _prepare_fast_path(self) -> bool:
        """Per item filter (none, or a category): what `Recommender._candidates` makes of the
        allowed-items mask (items scored alone, or items blocked after scoring) and the model's
        row scorers over those items, for known users and for rows alone (`recommend_for_items`).
        False if the model has no row scorer for known users (then every call is general)."""
        has_days = self._days is not None
        self._fast_anonymous = False
        if self._top_index is not None:
            return True  # known users: the model's own search; rows alone: folded in, the general way
        self._candidates: dict[int | None, tuple[np.ndarray | None, np.ndarray | None]] = {}
        self._scorers: dict[int | None, RowScorer] = {}
        self._anonymous_scorers: dict[int | None, RowScorer] = {}
        for code in (None, *self._category_mask):
            items, blocked = self.model._candidates(self._allowed_for(code))
            self._candidates[code] = (items, blocked)
            known = self.model.row_scorer(items, has_days, known_user=True)
            if known is None:
                return False
            self._scorers[code] = known
            anonymous = self.model.row_scorer(items, has_days, known_user=False)
            if anonymous is not None:
                self._anonymous_scorers[code] = anonymous
        self._fast_anonymous = len(self._anonymous_scorers) == len(self._scorers)
        return True

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

    def _complete(self, items, scores, n, allowed, segment, purchased, exclude) -> Recommendation:
        keep = items >= 0
        picked, values = items[keep], scores[keep]
        out = list(zip(self.items.ids[picked].tolist(), values.astype(float).tolist()))
        if len(out) < n:
            skip = picked
            if exclude is not False and purchased.size:
                drop = purchased if exclude is True else purchased[np.asarray(exclude)[purchased]]
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
        if self._top_index is not None:
            purchased = self._indices[a:b].astype(np.int64)
            skip = (purchased if exclude is True else purchased[exclude[purchased]] if exclude is not False
                    else purchased[:0])
            items, scores = self.model.user_top(uidx, n, skip, self._top_index[code], fast=fast)
            return self._complete(items, scores, n, allowed, seg, purchased, exclude)
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
        items, scores = self.model.recommend(np.array([uidx]), row, n, exclude_purchased=exclude,
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
        as for `recommend_for_items` (factor models: a new vector, no retraining), and purchased
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
        purchased = self._indices[a:b]
        counts[purchased] += self._data[a:b]
        if self._days is not None:
            days[purchased] = self._days[a:b]
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
        scorer = (self._scorers if uidx >= 0 else self._anonymous_scorers)[code]
        s = scorer(uidx, cols, data, days)
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

    def fold_in(self, item_ids) -> np.ndarray:
        """The user vector (factor models) of someone who bought `item_ids`, without retraining."""
        fold = getattr(self.model, "fold_in", None)
        if fold is None:
            raise InteractionsError(f"fold_in needs a factor model (als, bpr); the bundle serves {self.model.kind!r}")
        row = self._items_row(item_ids)
        days = sp.csr_matrix((np.zeros(row.nnz, np.float32), row.indices, row.indptr), shape=row.shape)
        return fold(row, days)[0]

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
