"""From aggregated purchases to the users x items matrix the recommenders see.

Models see integer indices only: `IdMap` turns external string ids into the dense indices
0..n-1 (and back) and travels with the model as a plain string array. An interaction is a
(user, item) pair with its successful purchase count, refund count and the days between its
last successful purchase and the split date; refunds are subtracted and a negative net count
is clipped at 0 (a pair with only refunds is no interaction).

Confidence schemes (`confidence`, element-wise, on a pair's net count ``c``):

- ``"count"``: ``c``
- ``"log"``: ``1 + alpha * log1p(c)`` (``alpha`` default 1), 0 where ``c = 0``
- ``"recency"``: ``c * 0.5 ** (days_since_last / half_life_days)`` (``half_life_days`` default 90)
- ``"bm25"`` is not element-wise (it needs each item's document frequency and each user's
  row length): `behavior.recommend.weighting.weigh` applies it to the whole matrix.

The aggregation itself is SQL over the payments log (`interactions_sql`), one text for every
engine (DuckDB, Spark; `behavior.sql_dialect`): one row per (user, item) pair.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd
import scipy.sparse as sp

from behavior.recommend.checks import InteractionsError, as_index_array, as_value_array
from behavior.sql_dialect import Dialect

ELEMENTWISE_SCHEMES = ("count", "log", "recency")
SCHEME_DEFAULTS: dict[str, dict[str, float]] = {
    "count": {},
    "log": {"alpha": 1.0},
    "recency": {"half_life_days": 90.0},
    "bm25": {"K1": 100.0, "B": 0.8},
}


def scheme_params(scheme: str, params: dict) -> dict[str, float]:
    """The scheme's full parameter set (defaults filled in); unknown scheme or parameter -> error."""
    if scheme not in SCHEME_DEFAULTS:
        raise InteractionsError(f"unknown confidence scheme {scheme!r}; use one of {', '.join(SCHEME_DEFAULTS)}")
    unknown = sorted(set(params) - set(SCHEME_DEFAULTS[scheme]))
    if unknown:
        allowed = ", ".join(SCHEME_DEFAULTS[scheme]) or "none"
        raise InteractionsError(f"scheme {scheme!r} has no parameter {unknown[0]!r} (parameters: {allowed})")
    full = {**SCHEME_DEFAULTS[scheme], **{k: float(v) for k, v in params.items()}}
    for name, value in full.items():
        if not (np.isfinite(value) and (value > 0 or (name == "B" and 0 <= value <= 1))):
            raise InteractionsError(f"scheme {scheme!r}: {name} must be a positive number, got {value}")
    if scheme == "bm25" and not 0 <= full["B"] <= 1:
        raise InteractionsError(f"scheme 'bm25': B must be in [0, 1], got {full['B']}")
    return full


def interactions_sql(start: datetime | None, end: datetime, payments: str = "payments",
                     dialect: str | Dialect = "duckdb") -> str:
    """One row per (user_id, item_id) with events in [start, end) (no lower bound without
    `start`): `purchases` (successful lines), `refunds` (refund lines) and `last_at` (the last
    successful purchase; null for a pair with refunds only)."""
    from behavior.features import as_of_literal

    lo = f"AND paid_at >= {as_of_literal(start, dialect=dialect)} " if start else ""
    return f"""
        SELECT user_id, item_id,
               count(*) FILTER (WHERE status = 'success') AS purchases,
               count(*) FILTER (WHERE status = 'refund') AS refunds,
               max(paid_at) FILTER (WHERE status = 'success') AS last_at
        FROM {payments}
        WHERE status IN ('success', 'refund') {lo}AND paid_at < {as_of_literal(end, dialect=dialect)}
        GROUP BY user_id, item_id
    """


def indexed_sql(sql: str, users: str, items: str, columns: tuple[str, ...]) -> str:
    """`columns` of `sql` (rows with user_id and item_id) with the ids replaced by their dense
    indices `user_idx`, `item_idx` from the relations `users` / `items` (columns id, idx: an
    `IdMap.to_table()`); rows of unknown ids are dropped. The engine does the lookup, so the
    driver receives integers, not millions of id strings."""
    return f"""
        SELECT u.idx AS user_idx, i.idx AS item_idx, {", ".join(f"q.{c}" for c in columns)}
        FROM ({sql}) q JOIN {users} u ON q.user_id = u.id JOIN {items} i ON q.item_id = i.id
    """


def net_counts(counts, refunds) -> np.ndarray:
    """counts - refunds, clipped at 0 (more refunds than purchases is no interaction)."""
    counts = np.asarray(counts, dtype=np.float64)
    return np.maximum(counts - np.asarray(refunds, dtype=np.float64), 0.0)


def confidence(counts, refunds, days_since_last, scheme: str = "count", **params) -> np.ndarray:
    """Per-pair confidence weights (float64) of an element-wise scheme; see the module docstring."""
    counts = np.asarray(counts, dtype=np.float64)
    n = counts.shape[0] if counts.ndim == 1 else -1
    counts = as_value_array(counts, "counts", n)
    refunds = as_value_array(np.zeros(n) if refunds is None else refunds, "refunds", n)
    full = scheme_params(scheme, params)
    if scheme == "bm25":
        raise InteractionsError(
            "scheme 'bm25' weighs the whole matrix (item document frequencies, user row lengths): "
            "build the net-count matrix and use behavior.recommend.weighting.weigh(matrix, 'bm25')"
        )
    net = net_counts(counts, refunds)
    if scheme == "count":
        return net
    if scheme == "log":
        return np.where(net > 0, 1.0 + full["alpha"] * np.log1p(net), 0.0)
    if days_since_last is None:
        raise InteractionsError("scheme 'recency' needs days_since_last (days since the pair's last purchase)")
    days = as_value_array(days_since_last, "days_since_last", n)
    return net * np.exp2(-days / full["half_life_days"])


def build_matrix(user_idx, item_idx, weight, n_users: int, n_items: int) -> sp.csr_matrix:
    """A float32 users x items CSR matrix; duplicate (user, item) pairs are summed, zeros dropped."""
    if n_users < 0 or n_items < 0:
        raise InteractionsError(f"n_users and n_items must be >= 0, got {n_users} and {n_items}")
    users = as_index_array(user_idx, "user_idx", n_users)
    items = as_index_array(item_idx, "item_idx", n_items)
    if items.shape != users.shape:
        raise InteractionsError(f"user_idx has {users.size} entries but item_idx has {items.size}")
    values = as_value_array(weight, "weight", users.size)
    # COO -> CSR sums duplicates in compiled code (no Python loop, no global sort)
    m = sp.coo_matrix((values.astype(np.float32), (users, items)), shape=(n_users, n_items)).tocsr()
    m.sum_duplicates()
    m.eliminate_zeros()
    return m


class IdMap:
    """External string ids <-> dense indices 0..n-1; index order is sorted id order.

    Holds one sorted, unique string array, so it saves to `.npz` without pickle and a lookup is
    a binary search. Build it with `IdMap.fit(values)` (duplicates allowed) or from saved ids.
    """

    def __init__(self, ids) -> None:
        arr = np.asarray(ids, dtype=np.str_)
        if arr.ndim != 1:
            raise InteractionsError(f"IdMap ids must be 1-D, got shape {arr.shape}")
        if arr.size > 1 and not (arr[1:] > arr[:-1]).all():
            raise InteractionsError("IdMap ids must be sorted and unique; build it with IdMap.fit(values)")
        self.ids = arr

    @classmethod
    def fit(cls, values) -> IdMap:
        if pd.isna(np.asarray(values, dtype=object)).any():
            raise InteractionsError("IdMap.fit: ids must not be null")
        return cls(np.unique(np.asarray(values, dtype=np.str_)))

    def __len__(self) -> int:
        return int(self.ids.size)

    def index(self, values) -> np.ndarray:
        """Indices (int64) of `values`; -1 for an id the map does not know."""
        vals = np.asarray(values, dtype=np.str_)
        if self.ids.size == 0:
            return np.full(vals.shape, -1, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self.ids, vals), self.ids.size - 1)
        return np.where(self.ids[pos] == vals, pos, -1).astype(np.int64)

    def to_table(self):
        """An Arrow table (id, idx) to join on in SQL (`indexed_sql`)."""
        import pyarrow as pa

        return pa.table({"id": self.arrow(), "idx": pa.array(np.arange(self.ids.size, dtype=np.int32))})

    def arrow(self):
        """The ids as one Arrow string array. pyarrow converts numpy's fixed-width strings in
        chunks above about 2M values (a ChunkedArray, which `pa.concat_arrays` and Array-only
        callers refuse), so the chunks are combined."""
        import pyarrow as pa

        ids = pa.array(self.ids, pa.string())
        return ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids

    def index_of(self, value: str) -> int:
        """The index of one id, or -1."""
        # the array's own method: np.searchsorted's dispatch is a third of a lookup (the API
        # looks up one user per GET recommendations; docs/performance.md)
        pos = int(self.ids.searchsorted(value))
        return pos if pos < self.ids.size and self.ids[pos] == value else -1

    def ids_of(self, idx) -> np.ndarray:
        return self.ids[np.asarray(idx, dtype=np.int64)]

    def to_arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        return {f"{prefix}ids": self.ids}

    @classmethod
    def from_arrays(cls, arrays, prefix: str = "") -> IdMap:
        return cls(arrays[f"{prefix}ids"])


@dataclass(frozen=True)
class Interactions:
    """Aggregated purchases: one entry per (user, item) pair, as a SQL GROUP BY returns them.

    counts: successful purchase lines; refunds: refund lines; days_since_last: days from the
    pair's last successful purchase to the split date (>= 0). Duplicate pairs are combined
    (counts and refunds summed, the smallest days kept).
    """

    user_idx: np.ndarray
    item_idx: np.ndarray
    counts: np.ndarray
    refunds: np.ndarray
    days_since_last: np.ndarray
    n_users: int
    n_items: int

    def __post_init__(self) -> None:
        users = as_index_array(self.user_idx, "user_idx", self.n_users)
        items = as_index_array(self.item_idx, "item_idx", self.n_items)
        if items.shape != users.shape:
            raise InteractionsError(f"user_idx has {users.size} entries but item_idx has {items.size}")
        object.__setattr__(self, "user_idx", users)
        object.__setattr__(self, "item_idx", items)
        for name in ("counts", "refunds", "days_since_last"):
            object.__setattr__(self, name, as_value_array(getattr(self, name), name, users.size))

    @classmethod
    def from_matrix(cls, matrix) -> Interactions:
        """Net counts from a users x items matrix (no refunds; every pair bought on the split date)."""
        m = sp.coo_matrix(matrix)
        zeros = np.zeros(m.nnz)
        return cls(m.row, m.col, m.data, zeros, zeros, m.shape[0], m.shape[1])

    def matrices(self) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        """(net counts, days since last purchase): two CSR matrices with the same sparsity pattern.

        Only pairs with a positive net count are stored, so the pattern is "what the user purchased".
        Entries already in (user, item) order (e.g. a query with ORDER BY) are combined in one
        linear pass; otherwise they are sorted first.
        """
        key = self.user_idx * max(self.n_items, 1) + self.item_idx
        counts, refunds, days, users, items = (self.counts, self.refunds, self.days_since_last, self.user_idx,
                                               self.item_idx)
        if key.size > 1 and (key[1:] < key[:-1]).any():
            order = np.argsort(key, kind="stable")
            key, counts, refunds, days, users, items = (a[order] for a in (key, counts, refunds, days, users, items))
            del order
        first = np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if key.size else np.zeros(0, np.int64)
        del key
        counts = np.add.reduceat(counts, first) if first.size else np.zeros(0)
        refunds = np.add.reduceat(refunds, first) if first.size else np.zeros(0)
        days = np.minimum.reduceat(days, first) if first.size else np.zeros(0)
        net = net_counts(counts, refunds)
        keep = net > 0
        users, items = users[first][keep], items[first][keep]
        indptr = np.zeros(self.n_users + 1, dtype=np.int64)
        np.cumsum(np.bincount(users, minlength=self.n_users), out=indptr[1:])
        shape = (self.n_users, self.n_items)
        indices = items.astype(np.int32)
        net_m = sp.csr_matrix((net[keep].astype(np.float32), indices, indptr), shape=shape)
        days_m = sp.csr_matrix((days[keep].astype(np.float32), indices.copy(), indptr.copy()), shape=shape)
        return net_m, days_m
