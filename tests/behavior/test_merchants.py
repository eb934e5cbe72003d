"""Merchant loyalty: known answers on a hand-made payments table, a plain-Python reference on
random tables, and the point-in-time property (nothing at or after as_of is read)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from behavior.errors import InputError, SchemaError
import behavior.features as F
from behavior.features import UserParts, as_of_literal
from behavior.merchants import MERCHANT_COLUMNS, MERCHANT_SCHEMA, merchant_loyalty, merchant_sql
from behavior.schema import PAYMENTS
from behavior.sql_dialect import DuckDBEngine

UTC = timezone.utc
AS_OF = datetime(2025, 4, 1, tzinfo=UTC)  # cohort window: [2024-10-03, 2025-01-01)


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def line(payment: str, user: str, merchant: str | None, paid_at: datetime, amount: str | None = "10.00",
         status: str = "success", line_no: int = 0) -> dict:
    return {
        "payment_id": payment,
        "line_no": line_no,
        "user_id": user,
        "merchant_id": merchant,
        "item_id": "i1",
        "category": "food",
        "quantity": 1,
        "amount": None if amount is None else Decimal(amount),
        "currency": "EUR",
        "paid_at": paid_at,
        "channel": "app",
        "status": status,
        "promotion_id": None,
    }


def to_arrow(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=PAYMENTS.arrow_schema)


_SHARED = duckdb.connect()
_SHARED.execute("SET threads = 1")


def merchants(rows, as_of: datetime = AS_OF, values: dict[str, float | None] | None = None, con=None) -> dict:
    con = con or _SHARED
    con.register("payments", to_arrow(rows) if isinstance(rows, list) else rows)
    name = None
    if values is not None:
        con.register("user_values", pa.table({"user_id": list(values), "clv": list(values.values())}))
        name = "user_values"
    table = merchant_loyalty(con, "payments", as_of, user_values=name)
    assert table.schema == MERCHANT_SCHEMA
    return {r["merchant_id"]: r for r in table.to_pylist()}


HAND = [
    # m1 / u1: first purchase 2024-10-10 (in the cohort), back on 2024-11-01 -> retained
    line("p1", "u1", "m1", at(2024, 10, 10, 10), "10.00", line_no=0),
    line("p1", "u1", "m1", at(2024, 10, 10, 10), "5.00", line_no=1),
    line("p2", "u1", "m1", at(2024, 11, 1), "20.00"),
    line("p3", "u1", "m1", at(2024, 11, 5), "-5.00", status="refund"),
    line("p9", "u1", "m1", at(2024, 11, 6), "7.00", status="failed"),
    # m1 / u2: first 2024-12-01 (cohort); same-day second payment is no return; next day
    # 2025-03-15 is after 2024-12-01 + 90d = 2025-03-01 -> not retained, but a repeat customer
    line("p4", "u2", "m1", at(2024, 12, 1, 12), "30.00"),
    line("p5", "u2", "m1", at(2024, 12, 1, 18), "10.00"),
    line("p6", "u2", "m1", at(2025, 3, 15), "12.00"),
    # m1 / u3: first purchase after the cohort window; one failed payment
    line("p7", "u3", "m1", at(2025, 2, 1), "8.00"),
    line("p8", "u3", "m1", at(2025, 2, 2), "8.00", status="failed"),
    # at / after as_of: never read
    line("x1", "u1", "m1", AS_OF, "1000.00"),
    line("x2", "u9", "m1", AS_OF + timedelta(days=3), "1000.00", status="failed"),
    line("x3", "u9", "m9", AS_OF + timedelta(microseconds=1), "1.00"),
    # m2: only failed payments (q1 has two lines, still one payment)
    line("q1", "u1", "m2", at(2025, 1, 5), "3.00", status="failed", line_no=0),
    line("q1", "u1", "m2", at(2025, 1, 5), "4.00", status="failed", line_no=1),
    line("q2", "u4", "m2", at(2025, 1, 6), "5.00", status="failed"),
    # m3: u4 bought twice before the cohort window
    line("r1", "u4", "m3", at(2024, 9, 1), "40.00"),
    line("r2", "u4", "m3", at(2024, 9, 20), "60.00"),
    # a null merchant counts as "unknown"
    line("s1", "u5", None, at(2025, 3, 1), "2.50"),
]
VALUES = {"u1": 100.0, "u2": 50.0, "u4": 10.0, "u5": None}


def test_known_answers():
    got = merchants(HAND, values=VALUES)
    assert list(got) == ["m1", "m2", "m3", "unknown"]
    m1 = got["m1"]
    assert m1["customers"] == 3  # u1, u2, u3
    assert m1["payments"] == 6  # p1, p2, p4, p5, p6, p7
    assert m1["revenue"] == pytest.approx(10 + 5 + 20 - 5 + 30 + 10 + 12 + 8)  # 90
    assert m1["repeat_customer_rate"] == pytest.approx(2 / 3)  # u1 and u2 on 2 days
    assert m1["retention_90d"] == pytest.approx(1 / 2)  # cohort u1, u2; u1 retained
    assert m1["mean_customer_clv"] == pytest.approx((100 + 50) / 2)  # u3 has no value
    assert m1["failure_rate"] == pytest.approx(2 / (2 + 6))  # p8, p9
    assert m1["refund_rate"] == pytest.approx(1 / 7)  # 1 refund line / 7 successful lines
    assert m1["first_payment_at"] == at(2024, 10, 10, 10)
    assert m1["last_payment_at"] == at(2025, 3, 15)

    assert got["m2"] == {
        "merchant_id": "m2",
        "customers": 0,
        "payments": 0,
        "revenue": 0.0,
        "repeat_customer_rate": None,
        "retention_90d": None,
        "mean_customer_clv": None,
        "failure_rate": 1.0,  # 2 failed / (2 + 0)
        "refund_rate": None,
        "first_payment_at": None,
        "last_payment_at": None,
    }
    m3 = got["m3"]
    assert (m3["customers"], m3["payments"], m3["revenue"]) == (1, 2, 100.0)
    assert m3["repeat_customer_rate"] == 1.0 and m3["retention_90d"] is None  # empty cohort
    assert m3["mean_customer_clv"] == 10.0 and m3["failure_rate"] == 0.0 and m3["refund_rate"] == 0.0
    unknown = got["unknown"]
    assert unknown["customers"] == 1 and unknown["revenue"] == 2.5
    assert unknown["mean_customer_clv"] is None  # u5's value is null


def test_without_user_values_mean_customer_clv_is_null():
    got = merchants(HAND)
    assert all(r["mean_customer_clv"] is None for r in got.values())
    assert "user_values" not in merchant_sql("payments", as_of_literal(AS_OF))


def test_retention_window_boundaries():
    t0 = at(2024, 11, 1, 9)
    rows = [
        # back exactly at t0 + 90d: outside [t0, t0 + 90d)
        line("a1", "a", "m", t0), line("a2", "a", "m", t0 + timedelta(days=90)),
        # back 1 microsecond earlier: retained
        line("b1", "b", "m", t0), line("b2", "b", "m", t0 + timedelta(days=90, microseconds=-1)),
        # first purchase exactly at as_of - 180d: in the cohort; never back
        line("c1", "c", "m", AS_OF - timedelta(days=180)),
        # first purchase exactly at as_of - 90d: not in the cohort
        line("d1", "d", "m", AS_OF - timedelta(days=90)), line("d2", "d", "m", AS_OF - timedelta(days=89)),
        # a refund or a failed payment is not a return
        line("e1", "e", "m", t0), line("e2", "e", "m", t0 + timedelta(days=2), "-1.00", status="refund"),
        line("e3", "e", "m", t0 + timedelta(days=3), status="failed"),
    ]
    assert merchants(rows)["m"]["retention_90d"] == pytest.approx(1 / 4)  # a, b, c, e; only b


def test_null_amounts_give_null_revenue_only():
    rows = [line("p1", "u", "m", at(2025, 1, 1), None), line("p2", "u", "m", at(2025, 1, 2), None)]
    m = merchants(rows)["m"]
    assert m["revenue"] is None
    assert (m["customers"], m["payments"], m["repeat_customer_rate"]) == (1, 2, 1.0)


def test_refund_only_merchant():
    m = merchants([line("p1", "u", "m", at(2025, 1, 1), "-4.00", status="refund")])["m"]
    assert (m["customers"], m["payments"], m["revenue"]) == (0, 0, -4.0)
    assert m["failure_rate"] is None and m["refund_rate"] is None


def test_empty_before_as_of():
    table = merchant_loyalty(_register(HAND), "payments", at(2020, 1, 1))
    assert table.num_rows == 0 and table.schema == MERCHANT_SCHEMA


def _register(rows) -> duckdb.DuckDBPyConnection:
    _SHARED.register("payments", to_arrow(rows))
    return _SHARED


def test_pandas_frame_with_naive_utc_timestamps():
    frame = to_arrow(HAND).to_pandas()
    frame["paid_at"] = frame["paid_at"].dt.tz_convert("UTC").dt.tz_localize(None)
    con = duckdb.connect()
    con.register("payments", frame)
    con.register("user_values", pd.DataFrame({"user_id": list(VALUES), "clv": list(VALUES.values())}))
    got = merchant_loyalty(con, "payments", AS_OF, user_values="user_values").to_pylist()
    assert got == list(merchants(HAND, values=VALUES).values())


def test_days_do_not_depend_on_the_session_time_zone():
    con = duckdb.connect()
    con.execute("SET TimeZone = 'Asia/Tokyo'")
    # 2024-12-01 20:00 and 23:00 UTC are one UTC day (two days in Tokyo)
    rows = [line("p1", "u", "m", at(2024, 12, 1, 20)), line("p2", "u", "m", at(2024, 12, 1, 23))]
    assert merchants(rows, con=con)["m"]["repeat_customer_rate"] == 0.0


def test_bad_inputs_raise():
    with pytest.raises(SchemaError, match="merchant_id"):
        merchants(to_arrow(HAND).drop_columns(["merchant_id"]))
    with pytest.raises(ValueError, match="naive"):
        merchant_loyalty(_register(HAND), "payments", datetime(2025, 1, 1))
    _register(HAND)
    _SHARED.register("dup_values", pa.table({"user_id": ["u1", "u1"], "clv": [1.0, 2.0]}))
    with pytest.raises(InputError, match="u1"):
        merchant_loyalty(_SHARED, "payments", AS_OF, user_values="dup_values")
    _SHARED.register("no_clv", pa.table({"user_id": ["u1"]}))
    with pytest.raises(SchemaError, match="clv"):
        merchant_loyalty(_SHARED, "payments", AS_OF, user_values="no_clv")


def test_sql_reads_the_log_once_and_filters_in_the_scan():
    sql = merchant_sql("payments", as_of_literal(AS_OF), "user_values")
    assert sql.count("FROM payments") == 1
    assert "WHERE paid_at < TIMESTAMPTZ '2025-04-01 00:00:00.000000+00:00'" in sql


def test_point_in_time_filter_is_pushed_into_the_parquet_scan(tmp_path, assert_pushed_down):
    path = tmp_path / "p.parquet"
    rows = [line(f"p{d}", "u", "m", at(2025, 1, d)) for d in range(1, 29)]
    pq.write_table(to_arrow(rows), path, row_group_size=7)
    con = duckdb.connect()
    con.execute(f"CREATE VIEW payments AS SELECT * FROM read_parquet('{path}')")
    assert_pushed_down(con, merchant_sql("payments", as_of_literal(at(2025, 1, 8))))
    assert merchant_loyalty(con, "payments", at(2025, 1, 8)).to_pylist()[0]["payments"] == 7


# --------------------------------------------------------------------------- random tables

BASE = at(2024, 6, 1)


@st.composite
def random_line(draw) -> dict:
    status = draw(st.sampled_from(["success", "success", "success", "failed", "refund"]))
    cents = draw(st.one_of(st.none(), st.integers(0, 10_000)))
    amount = None if cents is None else str(Decimal(cents) / 100 * (-1 if status == "refund" else 1))
    minutes = draw(st.integers(0, 240 * 1440))
    paid_at = BASE + timedelta(minutes=minutes, microseconds=draw(st.sampled_from([0, 1])))
    return line(
        draw(st.sampled_from(["p0", "p1", "p2", "p3", "p4", "p5"])),
        draw(st.sampled_from(["u0", "u1", "u2", "u3", "u4"])),
        draw(st.sampled_from(["m0", "m1", None])),
        paid_at,
        amount,
        status=status,
        line_no=draw(st.integers(0, 3)),
    )


def reference(rows: list[dict], as_of: datetime, values: dict[str, float | None] | None) -> list[dict]:
    """The merchant table computed the plain way, from the definitions in the module."""
    past = [{**r, "merchant_id": r["merchant_id"] or "unknown"} for r in rows if r["paid_at"] < as_of]
    out = []
    for m in sorted({r["merchant_id"] for r in past}):
        mine = [r for r in past if r["merchant_id"] == m]
        ok = [r for r in mine if r["status"] == "success"]
        pays: dict[tuple, datetime] = {}
        for r in ok:
            key = (r["user_id"], r["payment_id"])
            pays[key] = min(pays.get(key, r["paid_at"]), r["paid_at"])
        failed = {(r["user_id"], r["payment_id"]) for r in mine if r["status"] == "failed"}
        refunds = [r for r in mine if r["status"] == "refund"]
        money = [r for r in ok + refunds]
        amounts = [r["amount"] for r in money if r["amount"] is not None]
        customers = sorted({u for u, _ in pays})
        repeaters = 0
        cohort = retained = 0
        for u in customers:
            times = sorted(t for (uu, _), t in pays.items() if uu == u)
            days = {t.date() for t in times}
            repeaters += len(days) >= 2
            t0 = times[0]
            if as_of - timedelta(days=180) <= t0 < as_of - timedelta(days=90):
                cohort += 1
                retained += any(t.date() > t0.date() and t < t0 + timedelta(days=90) for t in times)
        vals = [values[u] for u in customers if values is not None and values.get(u) is not None]
        n = len(pays)
        out.append(
            {
                "merchant_id": m,
                "customers": len(customers),
                "payments": n,
                "revenue": 0.0 if not money else (float(sum(amounts)) if amounts else None),
                "repeat_customer_rate": repeaters / len(customers) if customers else None,
                "retention_90d": retained / cohort if cohort else None,
                "mean_customer_clv": sum(vals) / len(vals) if vals else None,
                "failure_rate": len(failed) / (len(failed) + n) if failed or n else None,
                "refund_rate": len(refunds) / len(ok) if ok else None,
                "first_payment_at": min(pays.values()) if pays else None,
                "last_payment_at": max(pays.values()) if pays else None,
            }
        )
    return out


def assert_rows_equal(got: list[dict], expected: list[dict]) -> None:
    assert [r["merchant_id"] for r in got] == [r["merchant_id"] for r in expected]
    for g, e in zip(got, expected):
        assert list(g) == list(MERCHANT_COLUMNS)
        for k in MERCHANT_COLUMNS:
            if isinstance(e[k], float):
                assert g[k] == pytest.approx(e[k], abs=1e-9), (g["merchant_id"], k)
            else:
                assert g[k] == e[k], (g["merchant_id"], k)


as_of_strategy = st.builds(
    lambda m, us: BASE + timedelta(minutes=m, microseconds=us),
    st.integers(90 * 1440, 260 * 1440),
    st.sampled_from([0, 1]),
)
values_strategy = st.one_of(
    st.none(), st.fixed_dictionaries({"u0": st.just(3.0), "u1": st.sampled_from([None, 8.0])})
)

PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def table_of(rows: list[dict], as_of: datetime, values) -> list[dict]:
    return list(merchants(rows, as_of, values).values())


@PROPERTY
@given(rows=st.lists(random_line(), max_size=40), as_of=as_of_strategy, values=values_strategy)
def test_matches_the_plain_reference(rows, as_of, values):
    got = table_of(rows, as_of, values)
    assert_rows_equal(got, reference(rows, as_of, values))
    for r in got:
        for k in ("repeat_customer_rate", "retention_90d", "failure_rate"):
            assert r[k] is None or 0 <= r[k] <= 1
    with pytest.MonkeyPatch.context() as mp:   # a big log: user parts' partials combined
        mp.setattr(F, "PART_LINES", 4)
        assert_rows_equal(table_of(rows, as_of, values), got)


@PROPERTY
@given(rows=st.lists(random_line(), max_size=40), as_of=as_of_strategy, values=values_strategy, data=st.data())
def test_rows_at_or_after_as_of_never_change_the_table(rows, as_of, values, data):
    past = [r for r in rows if r["paid_at"] < as_of]
    at_or_after = st.builds(
        lambda r, d: {**r, "paid_at": as_of + d},
        random_line(),
        st.one_of(st.just(timedelta(0)), st.timedeltas(timedelta(0), timedelta(days=400))),
    )
    changed = data.draw(st.lists(at_or_after, max_size=15))
    base = table_of(past, as_of, values)
    for variant in (rows, changed + past):
        assert table_of(variant, as_of, values) == base


def test_user_parts_of_a_synthetic_log_give_the_whole_logs_table(monkeypatch, tmp_path):
    """Hundreds of users in three parts: the partial figures of each part, with the values of
    its own users, combine into the one-piece table; the parts are removed afterwards."""
    from behavior.synth import SynthConfig, generate

    pay = generate(SynthConfig(users=600, months=6, seed=5)).tables["payments"]
    con = duckdb.connect()
    con.execute(f"SET temp_directory = '{tmp_path}'")
    con.register("payments", pay)
    users = sorted(pay["user_id"].unique())
    con.register("values", pa.table({"user_id": users, "clv": [float(i % 11) or None for i in range(len(users))]}))
    as_of = datetime(2024, 5, 1, tzinfo=timezone.utc)
    whole = merchant_loyalty(con, "payments", as_of, "values")
    before = con.sql(f"SELECT count(*) FROM payments WHERE paid_at < {as_of_literal(as_of)}").fetchall()[0][0]
    monkeypatch.setattr(F, "PART_LINES", before // 3 + 1)
    with UserParts(DuckDBEngine(con), "payments", as_of) as parts:
        assert len(parts.relations()) == 3
        got = merchant_loyalty(con, "payments", as_of, "values", parts=parts)
        with pytest.raises(ValueError, match="before"):   # the parts do not hold later lines
            merchant_loyalty(con, "payments", as_of + timedelta(days=1), "values", parts=parts)
        con.register("other", pay)
        with pytest.raises(ValueError, match="not of other"):   # nor another relation's lines
            merchant_loyalty(con, "other", as_of, "values", parts=parts)
    assert list(tmp_path.iterdir()) == []
    assert whole.num_rows > 20 and whole["customers"].to_pylist() != [0] * whole.num_rows
    assert_rows_equal(got.to_pylist(), whole.to_pylist())
    own = merchant_loyalty(con, "payments", as_of, "values")   # its own parts when not given (sums to rounding)
    assert_rows_equal(own.to_pylist(), got.to_pylist())
