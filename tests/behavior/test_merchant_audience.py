"""A merchant's own audiences: known answers on a hand-made log."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import duckdb
import pyarrow as pa
from hypothesis import given, settings, strategies as st

from behavior.merchant_audience import merchant_customers, merge_parts
from behavior.schema import PAYMENTS

AS_OF = datetime(2025, 4, 1, tzinfo=timezone.utc)


def line(payment, user, days_before, amount="10.00", status="success", merchant="m1"):
    return {"payment_id": payment, "line_no": 0, "user_id": user, "merchant_id": merchant, "item_id": "i1",
            "category": "food", "quantity": 1, "amount": Decimal(amount), "currency": "EUR",
            "paid_at": AS_OF - timedelta(days=days_before), "channel": "app", "status": status, "promotion_id": None}


def test_audiences_of_one_merchant():
    rows = [
        line("a1", "loyal", 10), line("a2", "loyal", 40), line("a3", "loyal", 80),
        line("a4", "loyal", 5, "-4.00", "refund"),
        line("b1", "risky", 100), line("b2", "risky", 150),
        line("c1", "once", 100),
        line("d1", "gone", 200), line("d2", "gone", 250),
        line("e1", "recent", 3), line("e2", "recent", 3.1),           # one purchase day, recent: none
        line("f1", "forgotten", 400),                                 # a year or more: none
        line("g1", "failed", 100, status="failed"),                   # no success: no customer
        line("h1", "later", 0), line("h2", "later", 95), line("h3", "later", 120), line("h4", "later", -3),
    ]
    con = duckdb.connect()
    con.register("payments", pa.Table.from_pylist(rows, schema=PAYMENTS.arrow_schema))
    t = merchant_customers(con, "payments", AS_OF).to_pandas().set_index("user_id")
    assert t["audience"].to_dict() == {"gone": "lapsed", "later": "at_risk", "loyal": "loyal", "once": "lapsed",
                                       "risky": "at_risk"}
    assert t.loc["loyal", "purchase_days"] == 3 and t.loc["loyal", "payments"] == 3
    assert t.loc["loyal", "revenue"] == 26.0
    # the lines at and after as_of are never read: else "later" would be a recent customer
    assert t.loc["later", "purchase_days"] == 2
    assert list(t.index) == sorted(t.index)


ID = st.text(st.sampled_from(["a", "B", "b", "0", "é", "ß", "中", "\U0001f600", " ", "_"]), max_size=4)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(ID, ID), unique=True, max_size=60), st.lists(ID, max_size=4), st.randoms(use_true_random=False))
def test_the_parts_ordered_rows_merge_into_the_order_of_one_sort(pairs, bounds, rnd):
    """Parts of user_id ranges (split at `bounds`), each ordered by merchant_id, user_id and put
    one after another, merge into the table one sort of all the rows gives: strings in byte
    order, one row per (merchant, customer)."""
    bounds = sorted(set(bounds))
    rnd.shuffle(pairs)
    rows = pa.table({"merchant_id": pa.array([m for m, _ in pairs], pa.string()),
                     "user_id": pa.array([u for _, u in pairs], pa.string()),
                     "payments": pa.array(range(len(pairs)), pa.int64())})
    part = [sum(u.encode() >= b.encode() for b in bounds) for _, u in pairs]
    con = duckdb.connect()
    con.register("rows", rows.append_column("part", pa.array(part, pa.int64())))
    parts = con.sql("SELECT merchant_id, user_id, payments FROM rows ORDER BY part, merchant_id, user_id").to_arrow_table()
    merged = merge_parts(parts)
    assert merged.schema == rows.schema
    assert merged.equals(rows.sort_by([("merchant_id", "ascending"), ("user_id", "ascending")]))
