"""Every prefix of a temporal split from one scan of the log: the recommender's training
matrices and the purchases of its validation and test periods.

`prefixes_sql(end, cuts)` aggregates the log per (user, item) pair once, with a net count and a
last purchase per prefix (everything before each cut, and before `end`) and a flag per period
(a purchase between two bounds); `Periods` holds its rows on the driver, in (user, item) order,
so each prefix's matrices are a filter of the rows, without reading the log again or sorting on
the driver.

Memory grows with the pairs (100M lines: about 80M rows), so the rows are kept narrow and are
read batch by batch (`Periods.from_batches`, e.g. DuckDB's record batch reader), never as a whole
Arrow table beside their numpy copy: per row a 4-byte item index, per prefix a 4-byte net count
and the 4-byte days since the pair's last purchase (counted back from the prefix's bound), per
period one byte; the users are row offsets (`indptr`). `release(k)` frees what only prefix k
and period k needed once their matrices are built.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import numpy as np
import pandas as pd
import scipy.sparse as sp

from behavior.recommend.checks import InteractionsError
from behavior.sql_dialect import Dialect

US_PER_DAY = 86_400e6


def prefixes_sql(end: datetime, cuts: tuple[datetime, ...], payments: str = "payments",
                 dialect: str | Dialect = "duckdb") -> str:
    """One row per (user_id, item_id) with a successful purchase before `end`, aggregated over
    every prefix of a temporal split in one scan: prefix k (1 .. len(cuts) + 1) is everything
    before ``(*cuts, end)[k - 1]``, with `net_k` (successful lines minus refund lines; null when
    the prefix has none) and `last_k` (the last successful purchase; null when there is none);
    `bought_k` (k <= len(cuts)): a successful purchase between the bounds of prefixes k and k + 1.
    Narrow columns (one int32 net count per prefix, not two int64 counts): 10M lines give ~8M rows."""
    from behavior.features import as_of_literal

    bounds = [as_of_literal(b, dialect=dialect) for b in (*cuts, end)]
    columns = []
    for k, bound in enumerate(bounds, start=1):
        columns += [f"CAST(sum(CASE WHEN paid_at < {bound} THEN CASE WHEN status = 'success' THEN 1 ELSE -1 END END) "
                    f"AS INTEGER) AS net_{k}",
                    f"max(paid_at) FILTER (WHERE status = 'success' AND paid_at < {bound}) AS last_{k}"]
        if k < len(bounds):
            columns.append(f"count(*) FILTER (WHERE status = 'success' AND paid_at >= {bound} "
                           f"AND paid_at < {bounds[k]}) > 0 AS bought_{k}")
    return f"""
        SELECT user_id, item_id, {", ".join(columns)}
        FROM {payments}
        WHERE status IN ('success', 'refund') AND paid_at < {bounds[-1]}
        GROUP BY user_id, item_id
        HAVING count(*) FILTER (WHERE status = 'success') > 0
    """


def prefix_columns(prefixes: int) -> tuple[str, ...]:
    """The aggregate columns of `prefixes_sql` with `prefixes` prefixes (len(cuts) + 1)."""
    return tuple(f"{c}_{k}" for k in range(1, prefixes + 1) for c in ("net", "last", "bought")
                 if c != "bought" or k < prefixes)


def days_before(bound: datetime, last) -> np.ndarray:
    """float32 days from each last purchase (an Arrow timestamp array, nulls allowed) back from
    `bound`, at least 0; meaningless where the last purchase is null."""
    import pyarrow as pa

    bound_us = pd.Timestamp(bound).value / 1_000
    last_us = last.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False)
    return ((bound_us - last_us) / US_PER_DAY).clip(min=0).astype(np.float32)


class Periods:
    """The rows of `prefixes_sql` through `indexed_sql` (module docstring): for prefix k
    (1-based) `net[k - 1]` (int32) and `days[k - 1]` (float32, counted back from `bounds[k - 1]`),
    for period k `bought_in[k - 1]` (bool), the rows of user u at `indptr[u]:indptr[u + 1]`."""

    def __init__(self, indptr: np.ndarray, item_idx: np.ndarray, net: list, days: list, bought_in: list,
                 n_items: int) -> None:
        self.indptr = indptr
        self.item_idx = item_idx
        self.net = net
        self.days = days
        self.bought_in = bought_in
        self.n_users = indptr.size - 1
        self.n_items = n_items

    @classmethod
    def from_batches(cls, batches: Iterable, n_users: int, n_items: int, bounds: tuple[datetime, ...]) -> Periods:
        """From Arrow record batches with columns user_idx, item_idx and `prefix_columns(len(bounds))`,
        in (user_idx, item_idx) order; `bounds` are the prefixes' bounds (cuts, then the end).
        Each batch is narrowed as it arrives, so only the narrow rows are held in full."""
        n = len(bounds)
        counts = np.zeros(n_users, dtype=np.int64)
        items: list[np.ndarray] = []
        net: list[list[np.ndarray]] = [[] for _ in range(n)]
        days: list[list[np.ndarray]] = [[] for _ in range(n)]
        bought: list[list[np.ndarray]] = [[] for _ in range(n - 1)]
        previous = -1
        for batch in batches:
            if batch.num_rows == 0:
                continue
            users = batch.column("user_idx").to_numpy(zero_copy_only=False)
            if users[0] < previous or (users[1:] < users[:-1]).any():
                raise InteractionsError("the period rows must come in user order (ORDER BY user_idx, item_idx)")
            previous = int(users[-1])
            starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
            counts[users[starts]] += np.diff(np.r_[starts, users.size])
            items.append(np.array(batch.column("item_idx").to_numpy(zero_copy_only=False), dtype=np.int32))
            for k in range(n):
                net[k].append(np.array(batch.column(f"net_{k + 1}").fill_null(0).to_numpy(zero_copy_only=False),
                                       dtype=np.int32))
                days[k].append(days_before(bounds[k], batch.column(f"last_{k + 1}")))
            for k in range(n - 1):
                bought[k].append(np.array(batch.column(f"bought_{k + 1}").to_numpy(zero_copy_only=False),
                                          dtype=bool))
        indptr = np.zeros(n_users + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        return cls(indptr, _joined(items, np.int32), [_joined(c, np.int32) for c in net],
                   [_joined(c, np.float32) for c in days], [_joined(c, bool) for c in bought], n_items)

    @classmethod
    def from_arrow(cls, table, n_users: int, n_items: int, bounds: tuple[datetime, ...]) -> Periods:
        """`from_batches` of a whole Arrow table."""
        return cls.from_batches(table.to_batches(), n_users, n_items, bounds)

    def _pattern(self, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(item indices, row offsets) of the kept rows."""
        # kept rows per user: sums over each non-empty user's rows (an empty user's
        # reduceat segment would be its neighbour's first row)
        counts = np.zeros(self.n_users, dtype=np.int64)
        present = np.flatnonzero(np.diff(self.indptr) > 0)
        if present.size:
            counts[present] = np.add.reduceat(keep, self.indptr[present], dtype=np.int64)
        indptr = np.zeros(self.n_users + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        return self.item_idx[keep], indptr

    def _csr(self, values: np.ndarray, pattern: tuple[np.ndarray, np.ndarray]) -> sp.csr_matrix:
        return sp.csr_matrix((values, *pattern), shape=(self.n_users, self.n_items))

    def _held(self, arrays: list, k: int, what: str) -> np.ndarray:
        if not 1 <= k <= len(arrays):
            raise InteractionsError(f"{what} {k} does not exist: there are {len(arrays)}")
        if arrays[k - 1] is None:
            raise InteractionsError(f"{what} {k} was released")
        return arrays[k - 1]

    def matrices(self, prefix: int) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        """(net counts, days since the last purchase counted back from the prefix's bound) of
        prefix `prefix` (1-based: everything before its bound), as `Interactions.matrices` gives them."""
        net = self._held(self.net, prefix, "prefix")
        keep = net > 0
        indices, indptr = self._pattern(keep)   # once: the days' matrix gets copies (each matrix owns its arrays)
        return (self._csr(net[keep].astype(np.float32), (indices, indptr)),
                self._csr(self._held(self.days, prefix, "prefix")[keep], (indices.copy(), indptr.copy())))

    def bought(self, period: int) -> sp.csr_matrix:
        """Users x items, 1 where the user bought the item in period `period` (1-based: between
        the bounds of prefixes `period` and `period + 1`): the relevant items."""
        keep = self._held(self.bought_in, period, "period")
        return self._csr(np.ones(int(keep.sum()), np.float32), self._pattern(keep))

    def release(self, prefix: int) -> None:
        """Free prefix `prefix`'s net counts and days and period `prefix`'s purchases (once their
        matrices are built): `matrices(prefix)` and `bought(prefix)` raise afterwards."""
        self.net[prefix - 1] = self.days[prefix - 1] = None
        if prefix <= len(self.bought_in):
            self.bought_in[prefix - 1] = None


def _joined(chunks: list[np.ndarray], dtype) -> np.ndarray:
    """The chunks end to end (emptied as they are joined)."""
    out = np.concatenate(chunks) if chunks else np.zeros(0, dtype=dtype)
    chunks.clear()
    return out
