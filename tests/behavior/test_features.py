"""The per-user feature table: known answers on hand-made payment tables, a plain-Python
reference on random tables, and the point-in-time property (nothing at or after as_of is read).
"""

from __future__ import annotations

import math
import statistics
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from behavior import features as F
from behavior.errors import SchemaError
from behavior.features import (FEATURE_COLUMNS, FEATURE_SCHEMA, UserParts, as_of_literal, btyd_summary, feature_sql,
                               rfm_sql, user_features)
from behavior.schema import CHANNELS, PAYMENTS
from behavior.sql_dialect import DuckDBEngine

UTC = timezone.utc
AS_OF = datetime(2025, 4, 1, tzinfo=UTC)


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


_counter = iter(range(10**9))


def line(user: str, paid_at: datetime, amount: str | None = "10.00", **kw) -> dict:
    """One canonical payment line; each call is its own payment unless payment_id is given."""
    row = {
        "payment_id": f"auto{next(_counter)}",
        "line_no": 0,
        "user_id": user,
        "merchant_id": "m1",
        "item_id": "i1",
        "category": "food",
        "quantity": 1,
        "amount": None if amount is None else Decimal(amount),
        "currency": "EUR",
        "paid_at": paid_at,
        "channel": "app",
        "status": "success",
        "promotion_id": None,
    }
    row.update(kw)
    return row


def to_arrow(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=PAYMENTS.arrow_schema)


_SHARED = duckdb.connect()
_SHARED.execute("SET threads = 1")


def features(rows: list[dict] | pa.Table | pd.DataFrame, as_of: datetime = AS_OF, con=None) -> pa.Table:
    con = con or _SHARED
    data = to_arrow(rows) if isinstance(rows, list) else rows
    con.register("payments", data)
    return user_features(con, "payments", as_of)


def by_user(table: pa.Table) -> dict[str, dict]:
    return {r["user_id"]: r for r in table.to_pylist()}


def one(rows: list[dict], as_of: datetime = AS_OF) -> dict:
    out = features(rows, as_of).to_pylist()
    assert len(out) == 1, out
    return out[0]


def close(a, b) -> bool:
    if a is None or b is None:
        return a is b
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return a == b


def assert_rows_equal(got: list[dict], want: list[dict]) -> None:
    assert [r["user_id"] for r in got] == [r["user_id"] for r in want]
    for g, w in zip(got, want):
        bad = {c: (g[c], w[c]) for c in FEATURE_COLUMNS if not close(g[c], w[c])}
        assert not bad, f"user {g['user_id']}: (got, want) {bad}"


# --------------------------------------------------------------------------- known answers


def alice_history() -> list[dict]:
    """Five purchases on four days, a refund, a failed payment, and events at/after as_of."""
    return [
        # p0: 2024-12-15 10:00, pos, books 8.00
        line("alice", at(2024, 12, 15, 10), "8.00", payment_id="p0", item_id="i5", category="books",
             channel="pos"),
        # p1: 2025-01-01 09:00, two lines (food 10.00 at m1, toys 5.00 at m2 with promotion PR1)
        line("alice", at(2025, 1, 1, 9), "10.00", payment_id="p1", line_no=0, item_id="i1", category="food"),
        line("alice", at(2025, 1, 1, 9), "5.00", payment_id="p1", line_no=1, item_id="i2", category="toys",
             merchant_id="m2", promotion_id="PR1"),
        # p2: same day 18:00, web, food 20.00 -> the same purchase day as p1
        line("alice", at(2025, 1, 1, 18), "20.00", payment_id="p2", item_id="i1", category="food",
             channel="web"),
        # p3: 2025-01-11 12:00, qr, food 30.00
        line("alice", at(2025, 1, 11, 12), "30.00", payment_id="p3", item_id="i3", category="food",
             channel="qr"),
        # p4: 2025-03-02 12:00, app, toys 40.00 at m3 with promotion PR2
        line("alice", at(2025, 3, 2, 12), "40.00", payment_id="p4", item_id="i4", category="toys",
             merchant_id="m3", promotion_id="PR2"),
        # a refund of 15.00 and a failed payment: neither is a purchase
        line("alice", at(2025, 3, 10), "-15.00", payment_id="r1", item_id="i4", category="toys",
             status="refund"),
        line("alice", at(2025, 3, 20), "50.00", payment_id="f1", item_id="i9", category="garden",
             status="failed"),
        # at and after as_of: never read
        line("alice", AS_OF, "999.00", payment_id="late1", item_id="i7", category="garden", channel="wap"),
        line("alice", AS_OF + timedelta(days=3), "999.00", payment_id="late2", status="refund"),
        line("carol", AS_OF, "1.00", payment_id="late3"),
        # bob has only a failed payment and a refund before as_of: excluded
        line("bob", at(2025, 2, 1), "12.00", payment_id="f2", status="failed"),
        line("bob", at(2025, 2, 2), "-3.00", payment_id="r2", status="refund"),
    ]


def test_known_answers_every_feature():
    f = by_user(features(alice_history()))
    assert set(f) == {"alice"}  # bob: no purchase; carol: only at as_of
    a = f["alice"]
    # purchase days: Dec 15, Jan 1 (p1 and p2), Jan 11, Mar 2
    assert a["first_purchase_at"] == at(2024, 12, 15, 10)
    assert a["last_purchase_at"] == at(2025, 3, 2, 12)
    # Dec 15 -> Jan 1 = 17 days, Jan 1 -> Apr 1 = 31 + 28 + 31 = 90 days; minus 10 hours
    assert a["tenure_days"] == pytest.approx(17 + 90 - 10 / 24)
    # Mar 2 12:00 -> Apr 1 00:00 = 30 days - 12 hours
    assert a["recency_days"] == pytest.approx(29.5)
    assert a["frequency"] == 4 - 1
    # Dec 15 -> Mar 2 = 17 + (Jan 1 -> Mar 2 = 31 + 28 + 1 = 60) = 77 calendar days
    assert a["recency"] == 77.0
    assert a["T"] == 17 + 90
    assert a["n_payments"] == 5  # p0..p4
    assert a["n_lines"] == 6
    assert a["n_items"] == 5  # i1..i5
    assert a["n_categories"] == 3  # books, food, toys (garden was only failed)
    assert a["n_merchants"] == 3
    assert a["total_spend"] == pytest.approx(8 + 10 + 5 + 20 + 30 + 40)  # 113
    assert a["refund_amount"] == pytest.approx(15.0)
    assert a["net_spend"] == pytest.approx(113 - 15)
    assert a["avg_payment_value"] == pytest.approx(113 / 5)
    # day spends: Dec 15: 8, Jan 1: 10 + 5 + 20 = 35, Jan 11: 30, Mar 2: 40; the first is excluded
    assert a["monetary_value"] == pytest.approx((35 + 30 + 40) / 3)
    # [Mar 2 00:00, Apr 1): p4 only
    assert a["spend_30d"] == pytest.approx(40.0)
    assert a["n_payments_30d"] == 1
    # as_of - 90 days = Jan 1 00:00: p1, p2, p3, p4
    assert a["spend_90d"] == pytest.approx(35 + 30 + 40)
    assert a["n_payments_90d"] == 4
    # [Oct 3, Jan 1): p0
    assert a["spend_prev_90d"] == pytest.approx(8.0)
    assert a["spend_trend"] == pytest.approx((105 - 8) / (8 + 1))
    # gaps between purchase days: 17, 10, 50 (Jan 11 -> Mar 2 = 20 + 28 + 2)
    assert a["mean_gap_days"] == pytest.approx((17 + 10 + 50) / 3)
    assert a["std_gap_days"] == pytest.approx(statistics.stdev([17, 10, 50]))
    assert a["max_gap_days"] == 50.0
    # food has 3 of the 6 lines (i1 10.00, i1 20.00, i3 30.00)
    assert a["top_category"] == "food"
    assert a["top_category_share"] == pytest.approx(3 / 6)
    # payments by channel: pos p0, app p1 p4, web p2, qr p3
    shares = {c: a[f"share_{c}"] for c in CHANNELS}
    want = {"app": 2 / 5, "web": 1 / 5, "wap": 0, "qr": 1 / 5, "pos": 1 / 5, "other": 0}
    assert shares == pytest.approx(want)
    assert a["top_channel"] == "app"
    assert a["n_failed"] == 1
    assert a["failure_rate"] == pytest.approx(1 / (1 + 5))
    assert a["n_refunds"] == 1
    assert a["refund_rate"] == pytest.approx(1 / 6)
    assert a["n_promotions_redeemed"] == 2  # PR1, PR2
    assert a["promo_share"] == pytest.approx(2 / 5)  # p1 and p4 of 5 payments


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(gaps=st.lists(st.integers(1, 400), min_size=2, max_size=25),
       cents=st.lists(st.integers(1, 10**7), min_size=26, max_size=26), seed=st.integers(0, 2**32 - 1))
@example(gaps=[1] * 25, cents=[1] * 26, seed=0)  # the longest history: one amount per purchase day
def test_mean_spend_and_gap_spread_are_exact_in_any_row_order(gaps, cents, seed):
    """monetary_value and std_gap_days are the correctly rounded results of exact sums (one
    rounding per operation, as Spark computes them), whatever order the rows come in: the
    engines' own AVG of a DECIMAL and STDDEV_SAMP differ in the last bits, and the uplift and
    churn models' binning then sees other values on the other engine."""
    days = [at(2023, 1, 1) + timedelta(days=sum(gaps[:k])) for k in range(len(gaps) + 1)]
    spend = [Decimal(c) / 100 for c in cents[:len(days)]]
    rows = [line("u", d, str(a)) for d, a in zip(days, spend)]
    shuffled = pd.Series(range(len(rows))).sample(frac=1, random_state=seed % 2**32).tolist()
    for order in (rows, [rows[i] for i in shuffled]):
        u = one(order, as_of=days[-1] + timedelta(days=1))
        n, s1, s2 = len(gaps), sum(gaps), sum(g * g for g in gaps)
        assert u["monetary_value"] == float(sum(spend[1:])) / n
        assert u["std_gap_days"] == math.sqrt(float(n * s2 - s1 * s1) / float(n * (n - 1)))


def test_output_schema_and_order():
    out = features([line("b", at(2025, 1, 2)), line("a", at(2025, 1, 3)), line("c", at(2025, 1, 4))])
    assert tuple(out.column_names) == FEATURE_COLUMNS
    assert out.schema == FEATURE_SCHEMA
    assert out.column("user_id").to_pylist() == ["a", "b", "c"]


def test_empty_before_as_of_gives_an_empty_typed_table():
    out = features([line("a", AS_OF), line("b", at(2025, 1, 1), status="failed")])
    assert out.num_rows == 0
    assert out.schema == FEATURE_SCHEMA


def test_frequency_counts_distinct_utc_days():
    rows = [
        line("u", at(2025, 3, 1, 8)),
        line("u", at(2025, 3, 1, 20)),  # same day: not a repeat purchase day
        line("u", at(2025, 3, 1, 23, 59)),  # same day
        line("u", at(2025, 3, 2, 0, 1)),  # two minutes later, but the next UTC day
    ]
    f = one(rows)
    assert f["n_payments"] == 4
    assert f["frequency"] == 1  # days Mar 1 and Mar 2
    assert f["recency"] == 1.0
    assert f["T"] == 31.0  # Mar 1 -> Apr 1


def test_days_do_not_depend_on_the_session_time_zone():
    rows = [line("u", at(2025, 3, 1, 23)), line("u", at(2025, 3, 2, 1)), line("u", at(2025, 3, 20, 3))]
    con = duckdb.connect()
    con.execute("SET TimeZone = 'America/Los_Angeles'")  # 23:00 UTC is 15:00 there, 01:00 UTC is 17:00
    in_la = features(rows, con=con).to_pylist()
    assert_rows_equal(in_la, features(rows).to_pylist())
    assert in_la[0]["frequency"] == 2  # three UTC days: Mar 1, Mar 2, Mar 20
    assert in_la[0]["first_purchase_at"] == at(2025, 3, 1, 23)


def test_failed_and_refund_lines_are_not_purchases():
    rows = [
        line("u", at(2025, 2, 1), "20.00"),
        line("u", at(2025, 2, 5), "30.00", status="failed"),
        line("u", at(2025, 2, 6), "30.00", status="failed", payment_id="same"),
        line("u", at(2025, 2, 6), "30.00", status="failed", payment_id="same", line_no=1),
        line("u", at(2025, 2, 7), "-20.00", status="refund"),
        line("only_failed", at(2025, 2, 1), status="failed"),
        line("only_refund", at(2025, 2, 1), "-5.00", status="refund"),
    ]
    f = by_user(features(rows))
    assert set(f) == {"u"}  # users without a successful payment are excluded
    u = f["u"]
    assert (u["frequency"], u["n_payments"], u["n_lines"]) == (0, 1, 1)
    assert u["last_purchase_at"] == at(2025, 2, 1)
    assert u["total_spend"] == 20.0
    assert u["n_failed"] == 2  # two distinct failed payment ids (one with two lines)
    assert u["failure_rate"] == pytest.approx(2 / (2 + 1))
    assert u["n_refunds"] == 1
    assert u["refund_rate"] == 1.0  # 1 refund line / 1 successful line


def test_refunds_reduce_net_spend_only():
    rows = [
        line("u", at(2025, 1, 10), "100.00"),
        line("u", at(2025, 2, 10), "50.00"),
        line("u", at(2025, 2, 12), "-30.00", status="refund"),
        line("u", at(2025, 2, 13), "-5.50", status="refund"),
    ]
    u = one(rows)
    assert u["total_spend"] == 150.0
    assert u["refund_amount"] == pytest.approx(30 + 5.5)
    assert u["net_spend"] == pytest.approx(150 - 35.5)
    assert u["spend_90d"] == 150.0  # windows count successful spend, refunds are separate
    assert u["monetary_value"] == 50.0  # repeat day Feb 10 only; refunds are not subtracted
    # a user without refunds has refund_amount 0, not null
    assert one([line("v", at(2025, 1, 10), "7.00")])["refund_amount"] == 0.0


def test_monetary_value_excludes_the_first_purchase_day():
    rows = [
        line("u", at(2025, 1, 1), "1000.00"),  # first day: excluded
        line("u", at(2025, 1, 5, 9), "10.00"),
        line("u", at(2025, 1, 5, 17), "20.00"),  # same day: day spend 30
        line("u", at(2025, 2, 1), "60.00"),
    ]
    u = one(rows)
    assert u["frequency"] == 2
    assert u["monetary_value"] == pytest.approx((30 + 60) / 2)
    assert u["avg_payment_value"] == pytest.approx(1090 / 4)


def test_single_day_and_two_day_users_have_null_statistics():
    single = one([line("u", at(2025, 3, 1, 8)), line("u", at(2025, 3, 1, 9))])
    assert single["frequency"] == 0 and single["recency"] == 0.0
    assert single["monetary_value"] is None
    assert (single["mean_gap_days"], single["std_gap_days"], single["max_gap_days"]) == (None, None, None)
    two = one([line("u", at(2025, 3, 1)), line("u", at(2025, 3, 8))])
    assert (two["mean_gap_days"], two["std_gap_days"], two["max_gap_days"]) == (7.0, None, 7.0)


def test_channel_shares_sum_to_one_and_unknown_channels_are_other():
    rows = [
        line("u", at(2025, 3, 1), channel="app"),
        line("u", at(2025, 3, 2), channel="wap"),
        line("u", at(2025, 3, 3), channel="wap"),
        line("u", at(2025, 3, 4), channel=None),  # -> other
        line("u", at(2025, 3, 5), channel="kiosk"),  # not a canonical channel -> other
        # one payment of two lines counts once (its channel: the smaller name, app)
        line("u", at(2025, 3, 6), channel="web", payment_id="two", line_no=0),
        line("u", at(2025, 3, 6), channel="app", payment_id="two", line_no=1),
    ]
    u = one(rows)
    shares = {c: u[f"share_{c}"] for c in CHANNELS}
    assert sum(shares.values()) == pytest.approx(1.0)
    assert shares == pytest.approx({"app": 2 / 6, "web": 0, "wap": 2 / 6, "qr": 0, "pos": 0, "other": 2 / 6})
    assert u["top_channel"] == "app"  # app, other and wap tie at 2: the first by name


def test_top_category_ties():
    # food and toys have 2 lines each; toys has the higher spend
    rows = [
        line("u", at(2025, 3, 1), "5.00", category="food"),
        line("u", at(2025, 3, 2), "5.00", category="food"),  # food: 2 lines, 10.00
        line("u", at(2025, 3, 3), "5.00", category="toys"),
        line("u", at(2025, 3, 4), "9.00", category="toys"),  # toys: 2 lines, 14.00
        line("u", at(2025, 3, 5), category=None),
    ]
    u = one(rows)
    assert (u["top_category"], u["n_categories"]) == ("toys", 2)
    assert u["top_category_share"] == pytest.approx(2 / 5)  # the null-category line counts in n_lines
    # equal lines and equal spend: the first name
    u = one([line("u", at(2025, 3, 1), category="zoo"), line("u", at(2025, 3, 2), category="art")])
    assert u["top_category"] == "art"
    # no category at all
    u = one([line("u", at(2025, 3, 1), category=None)])
    assert (u["top_category"], u["top_category_share"], u["n_categories"]) == (None, None, 0)


def test_the_as_of_boundary_is_exclusive():
    rows = [
        line("u", at(2025, 3, 1), "1.00"),
        line("u", AS_OF - timedelta(microseconds=1), "2.00"),  # read
        line("u", AS_OF, "4.00"),  # exactly at as_of: not read
        line("u", AS_OF, "-1.00", status="refund"),  # not read
        line("u", AS_OF, status="failed"),  # not read
    ]
    u = one(rows)
    assert u["n_payments"] == 2
    assert u["total_spend"] == 3.0
    assert u["last_purchase_at"] == AS_OF - timedelta(microseconds=1)
    assert (u["n_refunds"], u["n_failed"]) == (0, 0)
    assert u["recency_days"] == pytest.approx(1e-6 / 86400)


def test_window_boundaries():
    rows = [
        line("u", AS_OF - timedelta(days=30), "1.00"),  # in the 30-day window (inclusive start)
        line("u", AS_OF - timedelta(days=30, microseconds=1), "2.00"),  # just before it
        line("u", AS_OF - timedelta(days=90), "4.00"),  # starts the 90-day window
        line("u", AS_OF - timedelta(days=90, microseconds=1), "8.00"),  # last of the previous 90 days
        line("u", AS_OF - timedelta(days=180), "16.00"),  # first of the previous 90 days
        line("u", AS_OF - timedelta(days=180, microseconds=1), "32.00"),  # outside every window
    ]
    u = one(rows)
    assert (u["spend_30d"], u["n_payments_30d"]) == (1.0, 1)
    assert (u["spend_90d"], u["n_payments_90d"]) == (1 + 2 + 4.0, 3)
    assert u["spend_prev_90d"] == 8 + 16.0
    assert u["spend_trend"] == pytest.approx((7 - 24) / (24 + 1))


def test_intraday_as_of():
    as_of = at(2025, 3, 10, 12)
    u = one([line("u", at(2025, 3, 10, 8))], as_of)  # a first purchase on as_of's own day
    assert (u["frequency"], u["recency"], u["T"]) == (0, 0.0, 0.0)
    assert u["tenure_days"] == pytest.approx(4 / 24)


def test_null_amounts_skip_monetary_features_only():
    rows = [line("u", at(2025, 3, 1), None), line("u", at(2025, 3, 5), None)]
    u = one(rows + [line("u", at(2025, 3, 6), None, status="refund")])
    monetary = ["total_spend", "refund_amount", "net_spend", "avg_payment_value", "monetary_value"]
    monetary += ["spend_30d", "spend_90d", "spend_prev_90d", "spend_trend"]
    assert {c: u[c] for c in monetary} == dict.fromkeys(monetary)
    assert (u["frequency"], u["n_payments"], u["n_refunds"]) == (1, 2, 1)


def test_promotions():
    rows = [
        line("u", at(2025, 3, 1), promotion_id="A", payment_id="x", line_no=0),
        line("u", at(2025, 3, 1), promotion_id="B", payment_id="x", line_no=1),
        line("u", at(2025, 3, 2), promotion_id="A"),
        line("u", at(2025, 3, 3)),
        line("u", at(2025, 3, 4), promotion_id="C", status="failed"),  # not redeemed
    ]
    u = one(rows)
    assert u["n_promotions_redeemed"] == 2  # A and B
    assert u["promo_share"] == pytest.approx(2 / 3)  # payments x and the one on Mar 2, of 3


def test_relation_without_promotion_column():
    rows = [line("u", at(2025, 3, 1), promotion_id="A"), line("u", at(2025, 3, 9))]
    full = features(rows).to_pylist()[0]
    without = features(to_arrow(rows).drop_columns(["promotion_id"])).to_pylist()[0]
    assert (without["n_promotions_redeemed"], without["promo_share"]) == (None, None)
    for c in FEATURE_COLUMNS:
        if "promo" not in c:
            assert without[c] == full[c], c


def test_pandas_frames_with_naive_utc_timestamps():
    rows = [line("u", at(2025, 3, 1, 23)), line("u", at(2025, 3, 2, 1), "3.50"), line("u", AS_OF, "1.00")]
    df = pd.DataFrame(rows)
    df["amount"] = df["amount"].astype(float)
    naive = df.assign(paid_at=pd.to_datetime(df["paid_at"], utc=True).dt.tz_localize(None))
    con = duckdb.connect()
    con.execute("SET TimeZone = 'Asia/Tokyo'")
    assert_rows_equal(features(naive, con=con).to_pylist(), features(rows).to_pylist())
    assert_rows_equal(features(df).to_pylist(), features(rows).to_pylist())


def test_naive_as_of_is_rejected():
    with pytest.raises(ValueError, match="naive"):
        features([line("u", at(2025, 3, 1))], datetime(2025, 4, 1))
    with pytest.raises(ValueError, match="naive"):
        as_of_literal(datetime(2025, 4, 1))


def test_as_of_in_another_zone_is_the_same_instant():
    rows = [line("u", at(2025, 3, 31, 23, 30)), line("u", at(2025, 3, 1))]
    plus2 = timezone(timedelta(hours=2))
    same_instant = datetime(2025, 4, 1, 2, tzinfo=plus2)
    assert_rows_equal(features(rows, same_instant).to_pylist(), features(rows).to_pylist())


def test_missing_column_is_a_schema_error():
    with pytest.raises(SchemaError, match="item_id"):
        features(to_arrow([line("u", at(2025, 3, 1))]).drop_columns(["item_id"]))


def test_feature_sql_reads_the_log_once_and_filters_in_the_scan():
    sql = feature_sql("payments", as_of_literal(AS_OF))
    assert sql.count("FROM payments") == 1
    assert "WHERE paid_at < TIMESTAMPTZ '2025-04-01 00:00:00.000000+00:00'" in sql
    without = feature_sql("payments", as_of_literal(AS_OF), promotions_redeemed=False)
    assert "promotion_id" not in without.replace("AS promotion_id", "")


def test_point_in_time_filter_is_pushed_into_the_parquet_scan(tmp_path, assert_pushed_down):
    path = tmp_path / "p.parquet"
    # 28 daily payments in 4 row groups of 7 days; as_of Jan 8 needs only the first group
    pq.write_table(to_arrow([line("u", at(2025, 1, d)) for d in range(1, 29)]), path, row_group_size=7)
    con = duckdb.connect()
    con.execute(f"CREATE VIEW payments AS SELECT * FROM read_parquet('{path}')")
    assert_pushed_down(con, feature_sql("payments", as_of_literal(at(2025, 1, 8))))
    assert user_features(con, "payments", at(2025, 1, 8)).to_pylist()[0]["n_payments"] == 7


# --------------------------------------------------------------------------- random tables

BASE = at(2024, 1, 1)
USERS = ["u0", "u1", "u2", "u3"]


@st.composite
def random_line(draw, lo_minutes: int = 0, hi_minutes: int = 400 * 1440) -> dict:
    minutes = draw(st.integers(lo_minutes, hi_minutes))
    micros = draw(st.sampled_from([0, 0, 1, 999_999]))
    status = draw(st.sampled_from(["success", "success", "success", "failed", "refund"]))
    cents = draw(st.one_of(st.none(), st.integers(0, 100_000)))
    amount = None if cents is None else Decimal(cents) / 100 * (-1 if status == "refund" else 1)
    return {
        "payment_id": draw(st.sampled_from(["p0", "p1", "p2", "p3", "p4", "p5", "p6", "p7"])),
        "line_no": draw(st.integers(0, 3)),
        "user_id": draw(st.sampled_from(USERS)),
        "merchant_id": draw(st.sampled_from(["m0", "m1", "m2"])),
        "item_id": draw(st.sampled_from(["i0", "i1", "i2", "i3"])),
        "category": draw(st.sampled_from([None, "a", "b", "c"])),
        "quantity": 1,
        "amount": amount,
        "currency": "EUR",
        "paid_at": BASE + timedelta(minutes=minutes, microseconds=micros),
        "channel": draw(st.sampled_from([*CHANNELS, None, "kiosk"])),
        "status": status,
        "promotion_id": draw(st.sampled_from([None, None, "A", "B"])),
    }


def reference(rows: list[dict], as_of: datetime) -> list[dict]:
    """The features computed the plain way, straight from the definitions in the module."""
    past = [r for r in rows if r["paid_at"] < as_of]
    as_of_day = as_of.astimezone(UTC).date()
    out = []
    for user in sorted({r["user_id"] for r in past if r["status"] == "success"}):
        mine = [r for r in past if r["user_id"] == user]
        ok = [r for r in mine if r["status"] == "success"]
        pays: dict[str, list[dict]] = {}
        for r in ok:
            pays.setdefault(r["payment_id"], []).append(r)

        def total(lines):
            vals = [r["amount"] for r in lines if r["amount"] is not None]
            return sum(vals) if vals else None

        def canon(ch):
            return ch if ch in CHANNELS else "other"

        pay = [
            {
                "t": min(r["paid_at"] for r in ls),
                "amount": total(ls),
                "channel": min(canon(r["channel"]) for r in ls),
                "promo": any(r["promotion_id"] is not None for r in ls),
            }
            for ls in pays.values()
        ]
        n = len(pay)
        day_spend: dict[date, list] = {}
        for p in pay:
            day_spend.setdefault(p["t"].date(), []).append(p["amount"])
        days = sorted(day_spend)
        gaps = [(b - a).days for a, b in zip(days, days[1:])]
        spend = total(pay)

        def window(lo, hi=as_of):
            inside = [p for p in pay if lo <= p["t"] < hi]
            s = total(inside)
            return (None if spend is None else float(s or 0)), len(inside)

        s30, n30 = window(as_of - timedelta(days=30))
        s90, n90 = window(as_of - timedelta(days=90))
        sp90, _ = window(as_of - timedelta(days=180), as_of - timedelta(days=90))
        repeat = [s for d in days[1:] if (s := total([{"amount": a} for a in day_spend[d]])) is not None]
        refunds = [r for r in mine if r["status"] == "refund"]
        refund_amount = sum((abs(r["amount"]) for r in refunds if r["amount"] is not None), Decimal(0))
        cats: dict[str, list[dict]] = {}
        for r in ok:
            if r["category"] is not None:
                cats.setdefault(r["category"], []).append(r)

        def cat_key(c):
            s = total(cats[c])
            return (-len(cats[c]), s is None, -(s or 0), c)

        top_cat = min(cats, key=cat_key) if cats else None
        counts = {c: sum(p["channel"] == c for p in pay) for c in CHANNELS}
        n_failed = len({r["payment_id"] for r in mine if r["status"] == "failed"})
        first, last = min(p["t"] for p in pay), max(p["t"] for p in pay)
        out.append(
            {
                "user_id": user,
                "first_purchase_at": first,
                "last_purchase_at": last,
                "tenure_days": (as_of - first) / timedelta(days=1),
                "recency_days": (as_of - last) / timedelta(days=1),
                "frequency": len(days) - 1,
                "recency": float((days[-1] - days[0]).days),
                "T": float((as_of_day - days[0]).days),
                "n_payments": n,
                "n_lines": len(ok),
                "n_items": len({r["item_id"] for r in ok}),
                "n_categories": len(cats),
                "n_merchants": len({r["merchant_id"] for r in ok}),
                "total_spend": None if spend is None else float(spend),
                "refund_amount": None if spend is None else float(refund_amount),
                "net_spend": None if spend is None else float(spend - refund_amount),
                "avg_payment_value": None if spend is None else float(spend) / n,
                "monetary_value": float(sum(repeat)) / len(repeat) if repeat else None,
                "spend_30d": s30,
                "spend_90d": s90,
                "spend_prev_90d": sp90,
                "spend_trend": None if spend is None else (s90 - sp90) / (sp90 + 1),
                "n_payments_30d": n30,
                "n_payments_90d": n90,
                "mean_gap_days": statistics.mean(gaps) if gaps else None,
                "std_gap_days": statistics.stdev(gaps) if len(gaps) >= 2 else None,
                "max_gap_days": float(max(gaps)) if gaps else None,
                "top_category": top_cat,
                "top_category_share": len(cats[top_cat]) / len(ok) if top_cat else None,
                **{f"share_{c}": counts[c] / n for c in CHANNELS},
                "top_channel": min(CHANNELS, key=lambda c: (-counts[c], c)),
                "n_failed": n_failed,
                "failure_rate": n_failed / (n_failed + n),
                "n_refunds": len(refunds),
                "refund_rate": len(refunds) / len(ok),
                "n_promotions_redeemed": len({r["promotion_id"] for r in ok} - {None}),
                "promo_share": sum(p["promo"] for p in pay) / n,
            }
        )
    return out


as_of_strategy = st.builds(
    lambda m, us: BASE + timedelta(minutes=m, microseconds=us),
    st.integers(0, 420 * 1440),
    st.sampled_from([0, 1, 500_000]),
)

PROPERTY = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(rows=st.lists(random_line(), max_size=40), as_of=as_of_strategy)
def test_matches_the_plain_reference_and_invariants_hold(rows, as_of):
    table = features(rows, as_of)
    got = table.to_pylist()
    assert_rows_equal(got, reference(rows, as_of))
    # the BTYD summary alone (the loyalty holdout's query) is the same rows and values
    btyd = table.select(["user_id", "frequency", "recency", "T"])
    assert btyd_summary(_SHARED, "payments", as_of).equals(btyd)
    # so are the R, F and M columns alone (the segments at a promotion start), to the last bit
    rfm = ["user_id", "recency_days", "n_payments", "net_spend"]
    assert _SHARED.sql(rfm_sql("payments", as_of_literal(as_of))).to_arrow_table().to_pylist() == table.select(rfm).to_pylist()
    # run in user parts (a big log), both give the same table, in the same order
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(F, "PART_LINES", 4)
        assert F.part_count(DuckDBEngine(_SHARED), "payments", as_of_literal(as_of)) == max(
            1, -(-sum(r["paid_at"] < as_of for r in rows) // 4))
        assert features(rows, as_of).equals(table)
        assert btyd_summary(_SHARED, "payments", as_of).equals(btyd)
    for u in got:
        assert 0 <= u["recency"] <= u["T"]
        assert u["frequency"] >= 0 and u["recency"] == int(u["recency"]) and u["T"] == int(u["T"])
        assert u["tenure_days"] >= u["recency_days"] > 0
        assert sum(u[f"share_{c}"] for c in CHANNELS) == pytest.approx(1.0)
        assert u["n_payments_30d"] <= u["n_payments_90d"] <= u["n_payments"] <= u["n_lines"]
        assert u["refund_amount"] is None or u["refund_amount"] >= 0
        assert 0 <= u["failure_rate"] < 1
        if u["frequency"] == 0:
            assert u["monetary_value"] is None and u["mean_gap_days"] is None


@PROPERTY
@given(rows=st.lists(random_line(), max_size=40), as_of=as_of_strategy, data=st.data())
def test_rows_at_or_after_as_of_never_change_the_features(rows, as_of, data):
    past = [r for r in rows if r["paid_at"] < as_of]
    at_or_after = st.builds(
        lambda r, d: {**r, "paid_at": as_of + d},
        random_line(),
        st.one_of(st.just(timedelta(0)), st.timedeltas(timedelta(0), timedelta(days=400))),
    )
    # the future deleted (`past`) is the baseline; the original future and a changed
    # (regenerated) one, including rows exactly at as_of, must give the same table
    changed = data.draw(st.lists(at_or_after, max_size=20))
    base = features(past, as_of).to_pylist()
    for variant in (rows, changed + past):
        assert_rows_equal(features(variant, as_of).to_pylist(), base)


def test_parts_of_a_synthetic_log_give_the_whole_logs_table(monkeypatch, tmp_path):
    """Hundreds of users in three parts: each part is written once, and the parts put
    back equal the one-piece table (rows, values and user_id order; sums of float amounts to
    rounding, as the lines reach the aggregates in another order)."""
    from behavior.synth import SynthConfig, generate

    pay = generate(SynthConfig(users=600, months=6, seed=5)).tables["payments"]
    spill = tmp_path / "it's here"   # a quote in the spill folder's path
    con = duckdb.connect()
    con.execute(f"SET temp_directory = '{str(spill).replace(chr(39), chr(39) * 2)}'")
    con.register("payments", pay)
    as_of = datetime(2024, 5, 1, tzinfo=timezone.utc)
    whole, btyd = user_features(con, "payments", as_of), btyd_summary(con, "payments", as_of)
    before = con.sql(f"SELECT count(*) FROM payments WHERE paid_at < {as_of_literal(as_of)}").fetchall()[0][0]
    monkeypatch.setattr(F, "PART_LINES", before // 3 + 1)
    assert F.part_count(DuckDBEngine(con), "payments", as_of_literal(as_of)) == 3
    queried = []
    real = F.by_user_part

    def spy(engine, payments, as_ofs, columns, query, parts=None):
        return real(engine, payments, as_ofs, columns, lambda lines, lit: queried.append(lines) or query(lines, lit),
                    parts)

    monkeypatch.setattr(F, "by_user_part", spy)
    assert_rows_equal(user_features(con, "payments", as_of).to_pylist(), whole.to_pylist())
    assert btyd_summary(con, "payments", as_of).equals(btyd)
    assert len(queried) == 6 and all("part=" in q for q in queried)
    assert whole.num_rows > 300
    assert list(spill.iterdir()) == []   # the temporary parts are gone


def test_features_at_several_as_ofs_share_one_set_of_parts(monkeypatch, tmp_path):
    """`user_features_at` gives each as_of's table (the same as `user_features` there) and, for
    a big log, writes the user parts once, for the latest as_of."""
    from behavior.synth import SynthConfig, generate

    pay = generate(SynthConfig(users=600, months=6, seed=5)).tables["payments"]
    con = duckdb.connect()
    con.execute(f"SET temp_directory = '{tmp_path}'")
    con.register("payments", pay)
    as_ofs = [datetime(2024, m, d, tzinfo=timezone.utc) for m, d in ((5, 1), (3, 15), (6, 20))]
    alone = [user_features(con, "payments", a) for a in as_ofs]
    assert alone[1].num_rows < alone[0].num_rows < alone[2].num_rows
    for table, want in zip(F.user_features_at(con, "payments", as_ofs), alone):   # one piece
        assert_rows_equal(table.to_pylist(), want.to_pylist())
    monkeypatch.setattr(F, "PART_LINES", len(pay) // 4)
    copies = []
    real = DuckDBEngine.execute
    monkeypatch.setattr(DuckDBEngine, "execute", lambda self, sql: copies.append(sql) or real(self, sql))
    got = list(F.user_features_at(con, "payments", as_ofs))
    assert len(copies) == 1 and copies[0].startswith("COPY") and as_of_literal(as_ofs[2]) in copies[0]
    for table, want in zip(got, alone):
        assert_rows_equal(table.to_pylist(), want.to_pylist())
    assert list(tmp_path.iterdir()) == []


def test_a_failed_write_of_the_parts_leaves_no_copy_behind(monkeypatch, tmp_path):
    """If writing the parts fails (a full disk, a killed statement), the folder with whatever
    was written of the payment lines is removed at once, not at garbage collection."""
    from behavior.synth import SynthConfig, generate

    pay = generate(SynthConfig(users=200, months=3, seed=3)).tables["payments"]
    con = duckdb.connect()
    con.execute(f"SET temp_directory = '{tmp_path}'")
    con.register("payments", pay)
    monkeypatch.setattr(F, "PART_LINES", len(pay) // 3)

    def copy_then_fail(self, sql):
        self.con.execute(sql)
        assert any(tmp_path.iterdir())   # the parts were written ...
        raise OSError("No space left on device")

    monkeypatch.setattr(DuckDBEngine, "execute", copy_then_fail)
    parts = F.UserParts(DuckDBEngine(con), "payments", datetime(2030, 1, 1, tzinfo=timezone.utc))
    with pytest.raises(OSError, match="No space"):
        parts.relations()
    assert list(tmp_path.iterdir()) == []   # ... and are gone


def test_user_parts_are_written_only_above_part_lines_lines(tmp_path, monkeypatch):
    """At PART_LINES lines before as_of the log is read in one piece (nothing is written); one
    line more and it is split into parts (the measured threshold: docs/performance.md)."""
    from behavior.synth import SynthConfig, generate

    pay = generate(SynthConfig(users=300, months=6, seed=2)).tables["payments"]
    con = duckdb.connect()
    con.execute(f"SET temp_directory = '{tmp_path}'")
    con.register("payments", pay)
    as_of = datetime(2024, 5, 1, tzinfo=timezone.utc)
    before = con.sql(f"SELECT count(*) FROM payments WHERE paid_at < {as_of_literal(as_of)}").fetchall()[0][0]
    whole = user_features(con, "payments", as_of)
    monkeypatch.setattr(F, "PART_LINES", before)        # exactly at the threshold
    with UserParts(DuckDBEngine(con), "payments", as_of) as parts:
        assert parts.relations() == [(0, "payments")] and parts.count == 1
        assert not list(tmp_path.glob("parts-*"))
    monkeypatch.setattr(F, "PART_LINES", before - 1)    # one line above it
    with UserParts(DuckDBEngine(con), "payments", as_of) as parts:
        assert len(parts.relations()) == 2 and list(tmp_path.glob("parts-*"))
        got = user_features(con, "payments", as_of, parts)   # (its values: test_parts_of_a_synthetic_log_...)
        assert got.column("user_id").equals(whole.column("user_id"))
