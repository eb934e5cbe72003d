"""Periods: every prefix of a temporal split from one scan, read batch by batch into narrow rows."""

from __future__ import annotations

from datetime import datetime, timezone

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from behavior.recommend.checks import InteractionsError
from behavior.recommend.interactions import IdMap, indexed_sql
from behavior.recommend.periods import Periods, prefix_columns, prefixes_sql


def at(month, day, hour=0):
    return datetime(2025, month, day, hour, tzinfo=timezone.utc)


CUTS, END = (at(3, 1), at(4, 1)), at(5, 1)
BOUNDS = (*CUTS, END)


def _log_table(con) -> pa.Table:
    """The period rows of a small log (users u0, u1; items a, b) as the stage's engine gives them."""
    con.execute("SET TimeZone = 'UTC'")
    con.execute("CREATE TABLE payments (user_id VARCHAR, item_id VARCHAR, status VARCHAR, paid_at TIMESTAMPTZ)")
    con.executemany("INSERT INTO payments VALUES (?, ?, ?, ?)", [
        ("u0", "a", "success", at(1, 10)), ("u0", "a", "success", at(2, 19)),   # twice in train
        ("u0", "a", "refund", at(3, 5)),                                         # refunded in valid
        ("u0", "b", "success", at(3, 20)),                                       # bought in valid
        ("u1", "b", "success", at(1, 1)), ("u1", "b", "refund", at(1, 2)),       # netted out in train
        ("u1", "b", "success", at(4, 11)),                                       # bought in test
        ("u1", "a", "refund", at(2, 1)),                                         # refunds only: no row
        ("u1", "a", "failed", at(2, 1)), ("u0", "b", "success", at(5, 1)),       # not a purchase; after end
    ])
    users, items = IdMap(["u0", "u1"]), IdMap(["a", "b"])
    con.register("users_map", users.to_table())
    con.register("items_map", items.to_table())
    sql = indexed_sql(prefixes_sql(END, CUTS), "users_map", "items_map", prefix_columns(3))
    return con.sql(sql + " ORDER BY user_idx, item_idx").to_arrow_table()


def test_periods_of_one_scan_by_hand():
    """Every prefix's net counts and days since the last purchase, and each period's purchases,
    from one aggregation of a small log (bounds: valid 2025-03-01, test 2025-04-01, end 2025-05-01)."""
    periods = Periods.from_arrow(_log_table(duckdb.connect()), 2, 2, BOUNDS)
    net, days = periods.matrices(1)
    assert net.toarray().tolist() == [[2, 0], [0, 0]] and days.toarray()[0, 0] == 10   # Feb 19 -> Mar 1
    net, days = periods.matrices(2)
    assert net.toarray().tolist() == [[1, 1], [0, 0]] and days.toarray()[0].tolist() == [41, 12]
    net, days = periods.matrices(3)
    assert net.toarray().tolist() == [[1, 1], [0, 1]] and days.toarray()[1, 1] == 20
    assert periods.bought(1).toarray().tolist() == [[0, 1], [0, 0]]
    assert periods.bought(2).toarray().tolist() == [[0, 0], [0, 1]]


def _rows(users, items, nets, lasts, bought) -> pa.Table:
    cols = {"user_idx": pa.array(users, pa.int32()), "item_idx": pa.array(items, pa.int32())}
    for k, (net, last) in enumerate(zip(nets, lasts), start=1):
        cols[f"net_{k}"] = pa.array(net, pa.int32())
        cols[f"last_{k}"] = pa.array(last, pa.timestamp("us", tz="UTC"))
        if k <= len(bought):
            cols[f"bought_{k}"] = pa.array(bought[k - 1], pa.bool_())
    return pa.table(cols)


# users 0, 2 and 4 of 6 (1, 3 and 5 have no row); user 2's rows are split across batches below
ROWS = _rows(
    users=[0, 0, 2, 2, 2, 4],
    items=[1, 3, 0, 2, 3, 1],
    nets=[[1, None, 2, -1, 0, 3], [1, 1, 2, None, 1, 3], [2, 1, 2, 1, 1, 3]],
    lasts=[[at(2, 1), None, at(2, 27, 12), at(1, 5), at(1, 6), at(2, 28)],
           [at(2, 1), at(3, 2), at(2, 27, 12), None, at(3, 30), at(2, 28)],
           [at(4, 2), at(3, 2), at(2, 27, 12), at(4, 30), at(3, 30), at(2, 28)]],
    bought=[[False, True, False, False, True, False], [True, False, False, True, False, False]],
)


def test_rows_read_in_batches_equal_the_rows_read_whole():
    """Batches that split a user's rows, and users with no row, give the matrices and purchases
    of the whole table; known answers: row offsets, net counts, days from each prefix's bound."""
    whole = Periods.from_arrow(ROWS, 6, 4, BOUNDS)
    batch = ROWS.combine_chunks().to_batches()[0]
    split = Periods.from_batches([batch.slice(0, 3), batch.slice(3, 0), batch.slice(3)], 6, 4, BOUNDS)
    assert whole.indptr.tolist() == split.indptr.tolist() == [0, 2, 2, 5, 5, 6, 6]
    for k in (1, 2, 3):
        for a, b in zip(whole.matrices(k), split.matrices(k)):
            assert (a != b).nnz == 0 and np.array_equal(a.indptr, b.indptr)
    net, days = whole.matrices(1)
    assert net.toarray().tolist() == [[0, 1, 0, 0], [0] * 4, [2, 0, 0, 0], [0] * 4, [0, 3, 0, 0], [0] * 4]
    assert days.dtype == np.float32 and days[0, 1] == 28 and days[2, 0] == 1.5 and days[4, 1] == 1
    net, days = whole.matrices(2)
    assert net.indptr.tolist() == [0, 2, 2, 4, 4, 5, 5] and net.indices.tolist() == [1, 3, 0, 3, 1]
    assert days[0, 3] == 30 and days[2, 3] == 2
    net, days = whole.matrices(3)
    assert net.nnz == 6 and days[0, 1] == 29 and days[2, 2] == 1
    assert whole.bought(1).toarray()[[0, 2], [3, 3]].tolist() == [1, 1] and whole.bought(1).nnz == 2
    assert whole.bought(2).nnz == 2 and whole.bought(2)[2, 2] == 1


def test_days_are_those_of_the_last_purchase_counted_back_from_the_bound():
    """float32 of ((bound - last) in microseconds / microseconds per day), clipped at 0: bit for
    bit what the driver computed from the epoch microseconds of each pair."""
    whole = Periods.from_arrow(ROWS, 6, 4, BOUNDS)
    for k, bound in enumerate(BOUNDS, start=1):
        last = ROWS.column(f"last_{k}").cast(pa.int64()).fill_null(0).to_numpy()
        expected = ((bound.timestamp() * 1e6 - last) / 86_400e6).clip(min=0).astype(np.float32)
        keep = ROWS.column(f"net_{k}").fill_null(0).to_numpy() > 0
        assert np.array_equal(whole.matrices(k)[1].data, expected[keep])


def test_a_released_prefix_cannot_be_read_and_unordered_rows_are_refused():
    periods = Periods.from_arrow(ROWS, 6, 4, BOUNDS)
    periods.release(1)
    assert periods.net[0] is None and periods.days[0] is None and periods.bought_in[0] is None
    with pytest.raises(InteractionsError, match="prefix 1 was released"):
        periods.matrices(1)
    with pytest.raises(InteractionsError, match="period 1 was released"):
        periods.bought(1)
    assert periods.matrices(2)[0].nnz == 5
    periods.release(3)
    assert periods.bought(2).nnz == 2   # period 3 does not exist: only prefix 3 goes
    with pytest.raises(InteractionsError, match="prefix 4 does not exist"):
        periods.matrices(4)
    batch = ROWS.combine_chunks().to_batches()[0]
    later_first = [batch.slice(3), batch.slice(0, 3)]
    with pytest.raises(InteractionsError, match="user order"):
        Periods.from_batches(later_first, 6, 4, BOUNDS)
