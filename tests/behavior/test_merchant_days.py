"""The merchant-day table (behavior/merchant_days.py) and the stage's one read of the log
(behavior/merchant_tables.py): known answers on a hand-made log, the point-in-time property
(lines at or after as_of never change the table or anything made from it), and the one read
equal to the modules' own functions, in user parts or not."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import duckdb
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import behavior.features as F
from behavior import merchant_churn as MC
from behavior.features import UserParts, as_of_literal
from behavior.merchant_audience import merchant_customers
from behavior.merchant_days import (MERCHANT_DAY_COLUMNS, merchant_days_sql, merchant_users_sql, over_merchant_days,
                                    wallet_categories_sql, wallet_sql)
from behavior.merchant_profiles import merchant_profiles
from behavior.merchant_tables import merchant_tables
from behavior.schema import PAYMENTS
from behavior.sql_dialect import DuckDBEngine
from tests.recording_engine import RecordingEngine

UTC = timezone.utc
AS_OF = datetime(2025, 4, 1, 6, tzinfo=UTC)   # 06:00: a UTC day splits into two days before as_of


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def line(payment, user, merchant, paid_at, amount="10.00", status="success", category="food", line_no=0):
    return {"payment_id": payment, "line_no": line_no, "user_id": user, "merchant_id": merchant, "item_id": "i1",
            "category": category, "quantity": 1, "amount": None if amount is None else Decimal(amount),
            "currency": "EUR", "paid_at": paid_at, "channel": "app", "status": status, "promotion_id": None}


def connect(rows) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET threads = 1")
    con.register("payments", pa.Table.from_pylist(rows, schema=PAYMENTS.arrow_schema) if isinstance(rows, list)
                 else rows)
    return con


def days_table(con, as_of=AS_OF) -> list[dict]:
    rows = con.sql(merchant_days_sql("payments", as_of_literal(as_of))).to_arrow_table().to_pylist()
    return sorted(rows, key=lambda r: (r["merchant_id"], r["user_id"], r["day"], r["rday"]))


DAY = 86_400_000_000
D0 = at(2025, 3, 30).timestamp() * 1_000_000 // DAY   # the UTC day number of 2025-03-30

HAND = [
    # u1 at m1 on 2025-03-30: a payment of two lines and a second payment, at 03:00 and 09:00, on
    # both sides of 06:00 (as_of's time of day): one UTC day, two days counted from as_of
    line("p1", "u1", "m1", at(2025, 3, 30, 3), "10.00", line_no=0),
    line("p1", "u1", "m1", at(2025, 3, 30, 3), "5.00", line_no=1),
    line("p2", "u1", "m1", at(2025, 3, 30, 9), "20.00"),
    # a refund and a failure the same day
    line("r1", "u1", "m1", at(2025, 3, 30, 10), "-4.00", status="refund"),
    line("f1", "u1", "m1", at(2025, 3, 30, 11), "7.00", status="failed"),
    # a payment whose second line is a day later: it counts on its first line's day, once
    line("p3", "u2", "m1", at(2025, 3, 29, 12), "1.00", line_no=0),
    line("p3", "u2", "m1", at(2025, 3, 30, 12), "2.00", line_no=1),
    # a null merchant is "unknown"; an amount-less line
    line("p4", "u2", None, at(2025, 3, 31, 12), None),
    # at and after as_of: never read
    line("x1", "u1", "m1", AS_OF, "100.00"),
    line("x2", "u3", "m2", AS_OF + timedelta(microseconds=1), "100.00"),
    line("x3", "u2", "m1", AS_OF + timedelta(days=40), "100.00", status="refund"),
]


def test_known_answers_of_the_merchant_day_table():
    got = days_table(connect(HAND))
    assert all(list(r) == list(MERCHANT_DAY_COLUMNS) for r in got)
    key = [(r["merchant_id"], r["user_id"], r["day"] - D0, r["rday"]) for r in got]
    assert key == [("m1", "u1", 0, -3), ("m1", "u1", 0, -2), ("m1", "u2", -1, -3), ("unknown", "u2", 1, -1)]
    early, late, u2, unknown = got
    assert (early["s_pays"], early["s_lines"], early["s_first_at"], early["s_last_at"]) == (
        1, 2, at(2025, 3, 30, 3), at(2025, 3, 30, 3))
    assert (early["f_pays"], early["r_pays"], early["r_lines"], early["sr_amount"]) == (0, 0, 0, Decimal("15.00"))
    # 09:00's payment and the refund and failure after it share the later row
    assert (late["s_pays"], late["s_lines"], late["f_pays"], late["r_pays"], late["r_lines"]) == (1, 1, 1, 1, 1)
    assert late["sr_amount"] == Decimal("16.00") and late["s_first_at"] == late["s_last_at"] == at(2025, 3, 30, 9)
    # a payment is at its first line's time, with all its lines and amounts
    assert (u2["s_pays"], u2["s_lines"], u2["sr_amount"], u2["s_first_at"]) == (1, 2, Decimal("3.00"),
                                                                                at(2025, 3, 29, 12))
    assert unknown["s_pays"] == 1 and unknown["sr_amount"] is None


def test_the_wallet_of_a_part_sums_its_lines_and_its_customers_spend():
    rows = [line("a1", "u1", "m1", at(2025, 3, 1), "30.00"),
            line("a2", "u1", "m2", at(2025, 3, 2), "70.00"),
            line("a3", "u1", "m2", at(2025, 3, 3), "9.00", category="travel"),
            line("a4", "u2", "m2", at(2025, 3, 4), "5.00", category=None),      # no category: no wallet line
            line("a5", "u2", "m1", at(2024, 1, 1), "50.00"),                    # before the year
            line("x", "u1", "m1", AS_OF, "500.00")]                             # at as_of: never read
    con = connect(rows)
    lit = as_of_literal(AS_OF)
    con.register("md", con.sql(merchant_days_sql("payments", lit)).to_arrow_table())
    con.register("mu", con.sql(merchant_users_sql("md")).to_arrow_table())
    con.register("k", con.sql(wallet_categories_sql("payments", lit)).to_arrow_table())
    assert sorted(con.sql("SELECT * FROM k").fetchall()) == [("m1", "food"), ("m2", "food"), ("m2", "travel")]
    got = {r["merchant_id"]: r for r in con.sql(wallet_sql("payments", "mu", lit, "k")).to_arrow_table().to_pylist()}
    assert set(got) == {"m1", "m2"}
    # m1's customer of the year (u1; u2 bought before it) spent 100 on food anywhere; m1 has no
    # travel line in the year, so u1's 9 on travel is not in its categories
    assert (got["m1"]["spend"], got["m1"]["customers_spend"]) == (Decimal("30.00"), Decimal("100.00"))
    # m2's customers of the year, u1 (food and travel) and u2 (a line without a category)
    assert (got["m2"]["spend"], got["m2"]["customers_spend"]) == (Decimal("79.00"), Decimal("109.00"))


def test_the_one_read_gives_each_modules_own_answer_in_parts_or_not(monkeypatch, tmp_path):
    """Known answer: profiles, churn's activity frames and audiences from one merchant-day table
    per part equal the functions of merchant_profiles, merchant_churn and merchant_audience, at an
    as_of in the middle of a day, in one piece and in three user parts (removed afterwards)."""
    from behavior.synth import SynthConfig, generate

    frame = generate(SynthConfig(users=900, months=12, seed=8)).tables["payments"]
    pay = pa.Table.from_pandas(frame, preserve_index=False)   # amounts as in the lake: exact decimals
    pay = pay.set_column(pay.schema.get_field_index("amount"), "amount", pay["amount"].cast(pa.decimal128(18, 2)))
    con = duckdb.connect()
    con.execute(f"SET temp_directory = '{tmp_path}'")
    con.register("payments", pay)
    users = sorted(frame["user_id"].unique())
    con.register("values", pa.table({"user_id": users, "clv": [float(i % 7) or None for i in range(len(users))]}))
    con.register("tiers", pa.table({"user_id": users, "loyalty_tier": [("Gold", "Bronze", "Silver")[i % 3]
                                                                       for i in range(len(users))]}))
    as_of = pd.Timestamp(frame["paid_at"].max()).to_pydatetime() - timedelta(days=3, hours=5, microseconds=3)
    cuts = [as_of - timedelta(days=k) for k in (90, 120, 150)]
    profiles = merchant_profiles(con, "payments", as_of, "values", "tiers")
    frames = MC.profiles_at_cutoffs(con, "payments", as_of, cuts)
    audience = merchant_customers(con, "payments", as_of)
    assert len(profiles) > 20 and audience.num_rows > 100 and "future_payments" in frames[cuts[0]]

    # the first successful payment, read before the tables, is the profiles' earliest
    assert MC.first_payment_at(con, "payments", as_of) == profiles["first_payment_at"].min().to_pydatetime()
    # the activity per day, per span of the cutoffs' window ends, and per span of a superset of them
    wider = MC.span_ends(as_of, [*cuts, as_of - timedelta(days=100)])
    ends = (None, MC.span_ends(as_of, cuts), wider)

    def same(t) -> None:
        pd.testing.assert_frame_equal(t.profiles, profiles, check_exact=False, rtol=1e-12)
        got = MC.cutoff_frames(t.activity, as_of, cuts)
        for c in cuts:
            pd.testing.assert_frame_equal(got[c], frames[c], check_exact=True)
        assert t.audience.equals(audience)

    for e in ends:
        same(merchant_tables(con, "payments", as_of, "values", "tiers", activity_ends=e))
    before = con.sql(f"SELECT count(*) FROM payments WHERE paid_at < {as_of_literal(as_of)}").fetchall()[0][0]
    monkeypatch.setattr(F, "PART_LINES", before // 3 + 1)
    with UserParts(DuckDBEngine(con), "payments", as_of) as parts:
        assert len(parts.relations()) == 3
        for e in ends:
            same(merchant_tables(con, "payments", as_of, "values", "tiers", parts, e))
    assert list(tmp_path.iterdir()) == []


def test_a_payment_counts_once_on_its_first_lines_day_in_the_audience_and_the_labels():
    """The audience's purchase days and last payment and churn's future payments take a payment
    at its first successful line, as the profiles do: a payment with a later second line is one
    purchase day, and it is a future payment only when its first line is in the label window."""
    cut = at(2025, 1, 1)
    rows = [line(f"a{i}", "u1", "m1", cut - timedelta(days=100 - 5 * i)) for i in range(3)]
    rows += [line("a0", "u1", "m1", cut - timedelta(days=99), line_no=1)]   # a0's second line, a day later
    # 12 payments before the cutoff; one straddles it (its first line before): not a future payment
    rows += [line(f"c{i}", f"v{i}", "m2", cut - timedelta(days=10 + i)) for i in range(12)]
    rows += [line("c0", "v0", "m2", cut + timedelta(days=1), line_no=1)]
    rows += [line(f"d{i}", f"v{i}", "m2", cut + timedelta(days=2 + i)) for i in range(6)]
    con = connect(rows)
    aud = merchant_customers(con, "payments", cut).to_pandas().set_index("merchant_id")
    assert aud.loc["m1", "purchase_days"] == 3 and aud.loc["m1", "payments"] == 3
    assert aud.loc["m1", "last_payment_at"] == cut - timedelta(days=90)
    lab = MC.label(MC.profiles_at_cutoffs(con, "payments", cut + timedelta(days=90), [cut])[cut])
    assert lab.set_index("merchant_id").loc["m2", ["payments_90d", "future_payments", "churned"]].tolist() == [12, 6, 0]


# --------------------------------------------------------------------------- point in time

BASE = at(2024, 6, 1)


@st.composite
def random_line(draw) -> dict:
    status = draw(st.sampled_from(["success", "success", "success", "failed", "refund", "pending"]))
    cents = draw(st.one_of(st.none(), st.integers(0, 10_000)))
    amount = None if cents is None else str(Decimal(cents) / 100 * (-1 if status == "refund" else 1))
    paid_at = BASE + timedelta(minutes=draw(st.integers(0, 500 * 1440)), microseconds=draw(st.sampled_from([0, 1])))
    return line(draw(st.sampled_from(["p0", "p1", "p2", "p3"])), draw(st.sampled_from(["u0", "u1", "u2"])),
                draw(st.sampled_from(["m0", "m1", None])), paid_at, amount, status=status,
                category=draw(st.sampled_from(["food", "toys", None])), line_no=draw(st.integers(0, 2)))


def everything(rows, as_of) -> dict:
    """The merchant-day table, and every output of the one read, as plain values."""
    con = connect(rows)
    t = merchant_tables(con, "payments", as_of)
    k = (as_of - BASE) // timedelta(days=1)
    return {"days": days_table(con, as_of), "profiles": t.profiles.to_dict("records"),
            "activity": sorted(t.activity.to_pylist(), key=lambda r: (r["merchant_id"], r["day"])),
            "audience": t.audience.to_pylist(),
            "frames": {c: f.to_dict("records") for c, f in MC.cutoff_frames(
                t.activity, as_of, [as_of - timedelta(days=d) for d in (0, 30, min(k, 200))]).items()}}


def equal(a, b) -> bool:
    return repr(a) == repr(b)   # (NaN and NaT equal themselves in their text)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(random_line(), max_size=40),
       as_of=st.builds(lambda m: BASE + timedelta(minutes=m), st.integers(100 * 1440, 400 * 1440)),
       data=st.data())
def test_lines_at_or_after_as_of_never_change_the_table_or_its_outputs(rows, as_of, data):
    past = [r for r in rows if r["paid_at"] < as_of]
    later = data.draw(st.lists(st.builds(lambda r, d: {**r, "paid_at": as_of + d}, random_line(),
                                         st.one_of(st.just(timedelta(0)), st.timedeltas(timedelta(0), timedelta(days=300)))),
                               max_size=15))
    base = everything(past, as_of)
    assert equal(everything(later + rows, as_of), base)


def test_over_merchant_days_refuses_parts_that_do_not_hold_the_lines(tmp_path):
    con = connect(HAND)
    engine = DuckDBEngine(con)
    with UserParts(engine, "payments", AS_OF) as parts:
        with pytest.raises(ValueError, match="before"):
            over_merchant_days(engine, "payments", AS_OF + timedelta(days=1), {"n": lambda p: "SELECT 1 AS n"}, parts)


def test_at_midnight_the_days_are_counted_without_distinct_and_alike():
    """With as_of at 00:00 UTC a UTC day is one row of the merchant-day table, so the
    merchant-user table's plain count of days equals the distinct count (three payments on two
    days: two purchase days)."""
    midnight = at(2025, 4, 1)
    rows = [line("a", "u1", "m1", at(2025, 3, 1, 9)), line("b", "u1", "m1", at(2025, 3, 1, 18)),
            line("c", "u1", "m1", at(2025, 3, 5, 23)), line("d", "u2", "m1", at(2025, 3, 5, 1), status="failed")]
    con = connect(rows)
    con.register("md", con.sql(merchant_days_sql("payments", as_of_literal(midnight))).to_arrow_table())
    plain, distinct = (con.sql(merchant_users_sql("md", whole)).df().sort_values("user_id", ignore_index=True)
                       for whole in (True, False))
    pd.testing.assert_frame_equal(plain, distinct)
    assert plain["n_days"].tolist() == [2, 0] and plain["s_pays"].tolist() == [3, 0]


def test_the_per_user_relations_are_read_once_however_many_parts(monkeypatch, tmp_path):
    """The users' values and tiers are split into the user parts in one read each, so the work
    stays linear in the history: a filter of the whole relation per part reads every user once
    per part (at 100M lines, 20 parts of 5.9M users, 40% of the stage). The answers are those of
    the log in one piece, and each part's query sees exactly its own users."""
    users = [f"u{i:03d}" for i in range(60)]
    rows = [line(f"p{u}{k}", u, f"m{(i + k) % 4}", AS_OF - timedelta(days=3 + 11 * k + i % 5))
            for i, u in enumerate(users) for k in range(4)]
    con = connect(rows)
    con.execute(f"SET temp_directory = '{tmp_path}'")
    known = users[::2] + ["zz-not-in-the-log"]
    con.register("user_values", pa.table({"user_id": known, "clv": [float(i) for i in range(len(known))]}))
    con.register("user_tiers", pa.table({"user_id": known, "loyalty_tier": ["Gold"] * len(known)}))

    def reads(parts) -> tuple[int, pd.DataFrame]:
        engine = RecordingEngine(con)
        t = merchant_tables(engine, "payments", AS_OF, "user_values", "user_tiers", parts and parts(engine))
        n = sum(1 for q in engine.sql if "user_values" in q or "user_tiers" in q)
        return n, t.profiles

    whole_reads, whole = reads(None)
    monkeypatch.setattr(F, "PART_LINES", len(rows) // 3 + 1)
    split_reads, split = reads(lambda engine: UserParts(engine, "payments", AS_OF))
    assert split_reads == whole_reads   # (and not one more per part)
    pd.testing.assert_frame_equal(split, whole, check_exact=False, rtol=1e-12)

    engine = DuckDBEngine(con)
    with UserParts(engine, "payments", AS_OF) as parts:
        got = over_merchant_days(engine, "payments", AS_OF, {"users": lambda part: (
            f"SELECT user_id, {parts.part_of('user_id')} AS part FROM {part.of_part('user_values')}")}, parts,
            per_user=("user_values",))["users"].to_pylist()
        assert parts.count == 3 and sorted(r["user_id"] for r in got) == sorted(known)
        # rows come part after part, each part's own users
        assert [r["part"] for r in got] == sorted(r["part"] for r in got) and len({r["part"] for r in got}) == 3
        with pytest.raises(ValueError, match="user_tiers is not one of the per-user relations"):
            over_merchant_days(engine, "payments", AS_OF, {"t": lambda part: part.of_part("user_tiers")}, parts,
                               per_user=("user_values",))
