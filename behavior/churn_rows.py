"""Which rows of each churn cutoff the fit and the choice read, known before any feature is built.

The churn stage fits its models on a seeded sample of the training cutoffs' rows (`cap_rows`,
per cutoff and once more over all of them), chooses on a seeded sample of the validation
cutoff's rows (`behavior.churn_choice.validation_rows`), and fits each cutoff's transaction
model on a seeded sample of its customers (`behavior.churn.bgnbd_fit_rows`). Each of these
samples depends only on how many customers a cutoff has, their order (user_id) and, for the
transaction model, which of them have T > 0 there; all three follow from each customer's first
purchase at as_of: a customer is at cutoff c when their first successful payment is before c,
and their T at c is c's UTC day minus that payment's.

So `plan_rows` says which customers of each cutoff the fit and the choice read, and
`planned_datasets` builds the features, the transaction model's outputs and the labels of
those customers only: the frames are the rows the whole cutoffs would give, value for value,
at a fraction of the cost (the feature queries are most of the churn stage's time).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from sklearn.base import clone

from behavior.churn import add_bgnbd, bgnbd_fit_rows, churn_labels
from behavior.churn_choice import validation_rows
from behavior.features import user_features_at
from behavior.sql_dialect import SqlEngine

_US_PER_DAY = 86_400_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_NEEDED, _LINES = "_churn_rows_users", "_churn_rows_lines"


@dataclass(frozen=True)
class CutoffRows:
    """One cutoff's rows, as positions among its customers (the model's customers at as_of
    whose first purchase is before it, in user_id order)."""

    cutoff: datetime
    members: np.ndarray   # positions of the cutoff's customers among the model's customers (ascending)
    capped: np.ndarray    # its rows after the per-cutoff cap (ascending; every customer at the test cutoff)
    kept: np.ndarray      # the rows the fit (training) or the choice (test) reads (ascending)
    fit: np.ndarray       # the rows its transaction model is fitted on (`bgnbd_fit_rows`)

    @property
    def needed(self) -> np.ndarray:
        """The rows whose features are built: those read, and those the transaction model is fitted on."""
        return np.union1d(self.kept, self.fit)


def cap_rows(n: int, rows: int, seed: int) -> np.ndarray:
    """The positions, in their order, of the seeded uniform sample of `rows` of n rows that
    `DataFrame.sample(rows, random_state=seed)` takes; all n in order when n <= rows."""
    if n <= rows:
        return np.arange(n)
    return np.random.RandomState(seed).choice(n, rows, replace=False)


def _day(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(days=1)   # floored, as the feature SQL's UTC day


def plan_rows(first_purchase_at: pa.ChunkedArray | pa.Array, train: list[datetime], test: datetime,
              max_train_rows: int, seed: int, max_units: int) -> list[CutoffRows]:
    """The rows of each training cutoff (in `train`'s order) and of the test cutoff (last) that
    the churn stage reads, for the model's customers with these first purchases (user_id order):
    each training cutoff capped at `max_train_rows` (seed + 1 + its number), then all of them at
    `max_train_rows` (`seed`); the test cutoff's `validation_rows` (`max_units`, seed 0)."""
    first = pa.chunked_array([first_purchase_at]) if isinstance(first_purchase_at, pa.Array) else first_purchase_at
    first_us = pc.cast(first, pa.timestamp("us", tz="UTC")).cast(pa.int64()).to_numpy(zero_copy_only=False)
    first_day = first_us // _US_PER_DAY

    def at(cutoff: datetime) -> tuple[np.ndarray, np.ndarray]:
        members = np.flatnonzero(pc.less(first, pa.scalar(cutoff, first.type)).to_numpy(zero_copy_only=False))
        return members, bgnbd_fit_rows((_day(cutoff) - first_day[members]).astype(float))

    capped = []
    for i, cutoff in enumerate(train):
        members, fit = at(cutoff)
        capped.append((cutoff, members, np.sort(cap_rows(len(members), max_train_rows, seed + 1 + i)), fit))
    # the fit's sample of the capped cutoffs, one after the other (the `in_order` order)
    cutoff_of = np.concatenate([np.full(len(c), i) for i, (_, _, c, _) in enumerate(capped)] or [np.zeros(0, int)])
    row_of = np.concatenate([c for _, _, c, _ in capped] or [np.zeros(0, int)])
    chosen = cap_rows(len(row_of), max_train_rows, seed)
    plan = [CutoffRows(cutoff, members, rows, np.sort(row_of[chosen[cutoff_of[chosen] == i]]), fit)
            for i, (cutoff, members, rows, fit) in enumerate(capped)]
    members, fit = at(test)
    plan.append(CutoffRows(test, members, np.arange(len(members)), validation_rows(len(members), max_units), fit))
    return plan


def planned_datasets(engine: SqlEngine, payments: str, users: pa.ChunkedArray, plan: list[CutoffRows],
                     horizon_days: int, penalizer: float = 0.0, model=None) -> Iterator[tuple[pd.DataFrame, pd.Series]]:
    """For each cutoff of `plan`, in turn: the frame of its `kept` rows that `cutoff_datasets`
    gives for the whole cutoff (features, the transaction model of `model`'s kind fitted on its
    `fit` rows, `churned`, `cutoff`; in user_id order), and the labels of its `capped` rows.
    `users`: the model's customers in user_id order; `payments`: a relation holding their lines."""
    for rows in plan:
        needed = rows.needed
        members = users.take(pa.array(rows.members))
        engine.register(_NEEDED, pa.table({"user_id": members.take(pa.array(needed))}))
        engine.create_view(_LINES, f"SELECT * FROM {payments} WHERE user_id IN (SELECT user_id FROM {_NEEDED})")
        try:
            with closing(user_features_at(engine, _LINES, [rows.cutoff])) as tables:
                table = next(tables)
            labels = churn_labels(engine, payments, rows.cutoff, horizon_days)
        finally:
            engine.drop_view(_LINES)
            engine.unregister(_NEEDED)
        # the plan and the queries must agree on who is at the cutoff and in which order
        if (table.num_rows != len(needed) or len(labels) != len(rows.members)
                or not table.column("user_id").equals(members.take(pa.array(needed)))
                or labels["user_id"].tolist() != members.to_pylist()):
            raise AssertionError(f"the churn row plan at {rows.cutoff} expected {len(needed)} of {len(rows.members)} "
                                 f"customers, the queries gave {table.num_rows} of {len(labels)} or another order")
        kind = None if model is None else clone(model)
        frame = add_bgnbd(table.to_pandas(), horizon_days, penalizer, kind, fit_rows=np.searchsorted(needed, rows.fit))
        frame = frame.iloc[np.searchsorted(needed, rows.kept)].reset_index(drop=True)
        frame["churned"] = labels["churned"].to_numpy()[rows.kept]
        frame["cutoff"] = rows.cutoff
        yield frame, labels["churned"].iloc[rows.capped]


__all__ = ["CutoffRows", "cap_rows", "plan_rows", "planned_datasets"]
