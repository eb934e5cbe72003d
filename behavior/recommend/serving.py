"""What the API serves from a bundle: the selected model plus everything around it, as arrays.

`serving_arrays(...)` gathers, as plain arrays (`np.savez(..., **arrays)`; load with
`np.load(path, allow_pickle=False)`), the id maps, each user's owned items (the net-count
CSR the model was refitted on, and the days since each last purchase), item metadata
(category code, active flag), the catalogue default for excluding owned items, popularity
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
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

from behavior.errors import BehaviorError
from behavior.recommend.base import Recommender, prefixed, strip_prefix
from behavior.recommend.checks import InteractionsError, check_matrix
from behavior.recommend.factors import FactorModel
from behavior.recommend.interactions import IdMap

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
) -> dict[str, np.ndarray]:
    """Every array the serving layer needs (names and dtypes in the bundle docs). `seen`: the
    users x items net counts the model was fitted on; codes are -1 for "none"."""
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
        self._indptr = np.asarray(arrays["seen.indptr"], dtype=np.int64)
        self._indices = np.asarray(arrays["seen.indices"], dtype=np.int32)
        self._data = np.asarray(arrays["seen.data"], dtype=np.float32)
        self._days = np.asarray(arrays["seen.days"], dtype=np.float32) if "seen.days" in arrays else None
        self.item_category = np.asarray(arrays["item_category"], dtype=np.int32)
        self._category_code = {str(name): code for code, name in enumerate(arrays["category_names"])}
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

    def _items_row(self, item_ids) -> sp.csr_matrix:
        idx = self.items.index(list(item_ids))
        known = idx[idx >= 0]
        if known.size == 0:
            raise UnknownIdError(f"none of the {len(idx)} given item ids is in the bundle's catalogue")
        counts = np.bincount(known, minlength=self._n_items)
        cols = np.flatnonzero(counts)
        return sp.csr_matrix((counts[cols].astype(np.float32), cols, [0, cols.size]), shape=(1, self._n_items))

    def _category(self, category: str | None) -> int | None:
        if category is None:
            return None
        code = self._category_code.get(category)
        if code is None:
            raise UnknownIdError(f"unknown category {category!r}; known: {', '.join(sorted(self._category_code))}")
        return code

    def _allowed(self, category: str | None) -> np.ndarray:
        code = self._category(category)
        return self.active if code is None else self._category_mask[code]

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
        if n < 1:
            raise InteractionsError(f"n must be >= 1, got {n}")
        allowed = self._allowed(category)
        uidx = self.users.index_of(user_id)
        seg = self._segment(segment, uidx)
        if uidx < 0 or self._indptr[uidx + 1] == self._indptr[uidx]:
            return Recommendation(self._popular(n, allowed, seg, np.zeros(0, np.int64)), "fallback")
        exclude = self._exclusion(exclude_purchased)
        if self._norm_index is not None:
            owned = self._indices[self._indptr[uidx]:self._indptr[uidx + 1]].astype(np.int64)
            skip = owned if exclude is True else owned[exclude[owned]] if exclude is not False else owned[:0]
            items, scores = self.model.top_by_norm(
                self.model.user_factors_[uidx: uidx + 1], n, (np.zeros(skip.size, np.int64), skip),
                index=self._norm_index[self._category(category)],
            )
            return self._complete(items[0], scores[0], n, allowed, seg, owned, exclude)
        row, days = self._row(uidx)
        items, scores = self.model.recommend(np.array([uidx]), row, n, exclude_seen=exclude,
                                             allowed_items=allowed, days=days)
        return self._complete(items[0], scores[0], n, allowed, seg, row.indices, exclude)

    def recommend_for_items(self, item_ids, n: int = 10, category: str | None = None,
                            exclude_purchased: bool | None = None, segment: str | None = None) -> Recommendation:
        """Top-n for someone who bought `item_ids` (a new or anonymous user), without retraining."""
        row = self._items_row(item_ids)
        allowed = self._allowed(category)
        seg = self._segment(segment, -1)
        exclude = self._exclusion(exclude_purchased)
        days = sp.csr_matrix((np.zeros(row.nnz, np.float32), row.indices, row.indptr), shape=row.shape)
        items, scores = self.model.recommend(np.array([-1]), row, n, exclude_seen=exclude,
                                             allowed_items=allowed, days=days)
        return self._complete(items[0], scores[0], n, allowed, seg, row.indices, exclude)

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
