"""Merchant profiles: known answers on a hand-made log (windows, trends, share of wallet, tier
mix, point in time), the segment rules, and the planted merchants of the generator."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import duckdb
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from behavior.merchant_days import merchant_users_sql
from behavior.merchant_profiles import MERCHANT_SEGMENTS, merchant_profiles, merchant_segment, window_partial_sql
from behavior.schema import PAYMENTS
from behavior.synth import SynthConfig, generate

UTC = timezone.utc
AS_OF = datetime(2025, 4, 1, tzinfo=UTC)


def line(payment, user, merchant, days_before, amount="10.00", status="success", category="food"):
    return {"payment_id": payment, "line_no": 0, "user_id": user, "merchant_id": merchant, "item_id": "i1",
            "category": category, "quantity": 1, "amount": None if amount is None else Decimal(amount),
            "currency": "EUR", "paid_at": AS_OF - timedelta(days=days_before), "channel": "app", "status": status,
            "promotion_id": None}


def profiles(rows, tiers=None, as_of=AS_OF):
    con = duckdb.connect()
    con.register("payments", pa.Table.from_pylist(rows, schema=PAYMENTS.arrow_schema))
    if tiers is not None:
        con.register("tiers", pd.DataFrame({"user_id": list(tiers), "loyalty_tier": list(tiers.values())}))
    return merchant_profiles(con, "payments", as_of, tiers="tiers" if tiers else None).set_index("merchant_id")


def test_windows_trends_and_point_in_time():
    rows = [
        line("p1", "u1", "m1", 10, "30.00"),            # current 30d, 90d, 365d
        line("p2", "u2", "m1", 40, "20.00"),            # previous 30d; current 90d
        line("p3", "u2", "m1", 100, "50.00"),           # previous 90d
        line("r1", "u2", "m1", 5, "-5.00", "refund"),   # net revenue in the current 30d
        line("f1", "u3", "m1", 3, "9.00", "failed"),    # a failure is no payment
        line("late", "u1", "m1", -1, "99.00"),          # at or after as_of: never read
        line("e1", "u1", "m1", 0, "99.00"),             # exactly as_of: never read
    ]
    rows[-1]["paid_at"] = AS_OF
    p = profiles(rows).loc["m1"]
    assert (p.payments_30d, p.payments_90d, p.payments_365d) == (1, 2, 3)
    assert (p.customers_30d, p.customers_90d, p.customers_365d) == (1, 2, 2)
    assert p.revenue_30d == pytest.approx(25.0) and p.revenue_90d == pytest.approx(45.0)
    assert p.payments_trend_30d == pytest.approx(0.0)          # 1 vs 1
    assert p.payments_trend_90d == pytest.approx(1.0)          # 2 vs 1
    assert p.revenue_trend_90d == pytest.approx(45.0 / 50.0 - 1)
    assert pd.isna(p.payments_trend_365d)                      # nothing in the year before
    assert p.days_since_last_payment == pytest.approx(10.0)


def test_share_of_wallet_counts_its_customers_spend_in_its_categories():
    rows = [
        line("a1", "u1", "m1", 10, "30.00", category="food"),
        line("a2", "u1", "m2", 11, "70.00", category="food"),    # u1's food elsewhere
        line("a3", "u1", "m3", 12, "500.00", category="travel"),  # not m1's category: not counted
        line("a4", "u2", "m1", 20, "50.00", category="food"),
        line("a5", "u3", "m2", 20, "1000.00", category="food"),   # not m1's customer
        line("old", "u2", "m2", 400, "1000.00", category="food"),  # before the window
    ]
    p = profiles(rows)
    assert p.loc["m1", "share_of_wallet"] == pytest.approx(80.0 / 150.0)
    assert p.loc["m2", "share_of_wallet"] == pytest.approx(1070.0 / 1100.0)


def test_tier_mix_is_the_share_of_customers_per_tier():
    rows = [line(f"p{i}", f"u{i}", "m1", 10 + i) for i in range(4)] + [line("f", "u9", "m1", 5, status="failed")]
    p = profiles(rows, tiers={"u0": "Gold", "u1": "Gold", "u2": "Bronze", "u9": "Platinum"}).loc["m1"]
    assert p.tier_share_gold == pytest.approx(0.5) and p.tier_share_bronze == pytest.approx(0.25)
    assert p.tier_share_silver == 0 and p.tier_share_platinum == 0   # u9 only failed: no customer
    assert pd.isna(profiles(rows).loc["m1", "tier_share_gold"])       # without tiers


def _seg(**cols):
    base = {"payments_30d": 10, "payments_90d": 30, "payments_prev_90d": 30,
            "first_payment_at": pd.Timestamp("2024-01-01", tz="UTC")}
    base.update(cols)
    return merchant_segment(pd.DataFrame([base]), AS_OF).iloc[0]


@pytest.mark.parametrize("cols, expected", [
    ({}, "steady"),
    ({"payments_90d": 0, "payments_30d": 0}, "dormant"),
    ({"first_payment_at": pd.Timestamp("2025-03-01", tz="UTC")}, "new"),
    ({"payments_30d": 0, "payments_90d": 6}, "at_risk"),
    ({"payments_30d": 0, "payments_90d": 5, "payments_prev_90d": 5}, "steady"),   # a quiet month of a small one
    ({"payments_90d": 40, "payments_prev_90d": 100}, "at_risk"),
    ({"payments_90d": 70, "payments_prev_90d": 100}, "declining"),
    ({"payments_90d": 7, "payments_prev_90d": 10}, "steady"),                   # -30% but noise
    ({"payments_90d": 140, "payments_prev_90d": 100}, "growing"),
    ({"payments_90d": 110, "payments_prev_90d": 100}, "steady"),
])
def test_segment_rules(cols, expected):
    assert _seg(**cols) == expected


@pytest.fixture(scope="module")
def planted():
    d = generate(SynthConfig(users=6000, seed=3, items=1500))
    con = duckdb.connect()
    con.register("payments", d.tables["payments"])
    as_of = pd.Timestamp(d.truth["observation_end"]).to_pydatetime()
    prof = merchant_profiles(con, "payments", as_of).set_index("merchant_id")
    prof["category"] = d.tables["items"].drop_duplicates("merchant_id").set_index("merchant_id")["category"]
    return d.truth, prof, as_of


def test_planted_merchants_get_their_segment(planted):
    truth, prof, as_of = planted
    kinds = {t["trajectory"] for t in truth["merchants"].values()}
    assert kinds == {"growing", "declining", "stopped"}
    checked = 0
    for mid, t in truth["merchants"].items():
        row = prof.loc[mid]
        if row.payments_prev_90d < 50 and t["trajectory"] != "stopped":
            continue   # too few payments for a significant trend
        stopped_for = (as_of - datetime.fromisoformat(t["change_at"])).days
        want = {"growing": {"growing"}, "declining": {"declining", "at_risk"},
                "stopped": {"dormant"} if stopped_for > 90 else {"at_risk", "declining", "dormant"}}[t["trajectory"]]
        assert row.merchant_segment in want, (mid, t, row.merchant_segment)
        checked += 1
    assert checked >= 6
    assert set(prof["merchant_segment"]) <= set(MERCHANT_SEGMENTS)


def test_unplanted_busy_merchants_are_mostly_steady(planted):
    truth, prof, _ = planted
    # (a planted merchant's rivals in its category gain or lose what it loses or gains)
    touched = {t["category"] for t in truth["merchants"].values()}
    busy = prof[~prof["category"].isin(touched) & (prof["payments_prev_90d"] >= 60)]
    assert len(busy) >= 12
    assert (busy["merchant_segment"] == "steady").mean() >= 0.8
    assert prof["share_of_wallet"].between(0, 1).all()


_EDGE_DAYS = sorted({d for w in (30, 90, 365) for e in (-w, -2 * w) for d in (e - 1, e, e + 1)} | {-1, -1000})


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["m1", "m2"]), st.sampled_from(["u1", "u2", "u3"]),
                          st.sampled_from(_EDGE_DAYS), st.integers(0, 2), st.integers(0, 1),
                          st.one_of(st.none(), st.integers(-500, 5000))), min_size=1, max_size=30))
def test_window_sums_of_the_spans_equal_the_sums_per_window(rows):
    """`window_partial_sql` sums the days per span between window edges, then the spans per
    window: the same payments, revenues (exact decimals, null without amounts) and counts as a
    sum per window of the days themselves, on days at and beside every edge."""
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    days = pd.DataFrame([{"merchant_id": m, "user_id": u, "day": 20_000 + r, "rday": r, "s_pays": s,
                          "s_lines": s, "s_first_at": t0 if s else None, "s_last_at": t0 if s else None, "f_pays": 0,
                          "r_pays": rp, "r_lines": rp, "sr_amount": None if a is None else Decimal(a) / 100}
                         for m, u, r, s, rp, a in rows])
    days = days.groupby(["merchant_id", "user_id", "day", "rday"], as_index=False).first()   # (one row a key)
    con = duckdb.connect()
    con.register("md", pa.Table.from_pandas(days, preserve_index=False).cast(pa.schema(
        [("merchant_id", pa.string()), ("user_id", pa.string()), ("day", pa.int64()), ("rday", pa.int64()),
         ("s_pays", pa.int64()), ("s_lines", pa.int64()), ("s_first_at", pa.timestamp("us", tz="UTC")),
         ("s_last_at", pa.timestamp("us", tz="UTC")), ("f_pays", pa.int64()), ("r_pays", pa.int64()),
         ("r_lines", pa.int64()), ("sr_amount", pa.decimal128(38, 2))])))
    con.register("mu", con.sql(merchant_users_sql("md", whole_days=True)).to_arrow_table())
    got = con.sql(window_partial_sql("md", "mu", None)).to_arrow_table().to_pylist()
    want = []
    for m, g in days.groupby("merchant_id"):
        if (g.s_pays + g.r_pays).sum() == 0:
            continue
        row = {"merchant_id": m}
        for w in (30, 90, 365):
            for suffix, (lo, hi) in ((f"{w}", (-w, 0)), (f"prev_{w}", (-2 * w, -w))):
                inside = g[(g.rday >= lo) & (g.rday < hi)]
                amounts = [a for a in inside.sr_amount if a is not None and not pd.isna(a)]
                row |= {f"payments_{suffix}d": int(inside.s_pays.sum()),
                        f"revenue_{suffix}d": sum(amounts, Decimal(0)) if amounts else None,
                        f"revlines_{suffix}d": int((inside.s_pays + inside.r_pays).sum())}
        want.append(row)
    assert [{k: r[k] for k in w} for r, w in zip(sorted(got, key=lambda r: r["merchant_id"]), want)] == want
    assert len(got) == len(want)
