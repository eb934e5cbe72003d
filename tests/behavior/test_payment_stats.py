"""behavior.payment_stats on a hand-made payments table with known answers."""

from datetime import datetime, timezone

import duckdb
import pandas as pd
import pytest

from behavior import payment_stats as S


def t(day: int, month: int = 1) -> datetime:
    return datetime(2025, month, day, 12, tzinfo=timezone.utc)


@pytest.fixture()
def con():
    # p1: 2 successful lines (3 items) by u1 in January via app; p2: failed then retried as p3 (web);
    # a refund line of p1 in February; p4 by u2 in February with no category (qr).
    rows = [("p1", 1, "u1", "m1", "i1", "food", 2, 10.0, t(5), "app", "success"),
            ("p1", 2, "u1", "m1", "i2", "food", 1, 5.0, t(5), "app", "success"),
            ("p2", 1, "u2", "m2", "i3", "toys", 1, 20.0, t(6), "web", "failed"),
            ("p3", 1, "u2", "m2", "i3", "toys", 1, 20.0, t(6), "web", "success"),
            ("p1", 3, "u1", "m1", "i2", "food", -1, -5.0, t(2, 2), "app", "refund"),
            ("p4", 1, "u2", "m1", "i4", None, 1, 100.0, t(3, 2), "qr", "success")]
    frame = pd.DataFrame(rows, columns=["payment_id", "line_no", "user_id", "merchant_id", "item_id", "category",
                                        "quantity", "amount", "paid_at", "channel", "status"])
    c = duckdb.connect()
    c.execute("SET TimeZone = 'UTC'")
    c.register("_p", frame)
    c.execute("CREATE VIEW payments AS SELECT * EXCLUDE (amount), amount::DECIMAL(18, 2) AS amount FROM _p")
    yield c
    c.close()


def test_monthly_counts_rates_and_money(con):
    m = con.sql(S.monthly_payments_sql("payments")).df()
    jan, feb = m.iloc[0], m.iloc[1]
    assert str(jan["month"])[:10] == "2025-01-01" and len(m) == 2
    assert (jan["payments"], jan["customers"], jan["lines"]) == (2, 2, 3)
    assert jan["sales"] == pytest.approx(35.0) and jan["refunds"] == 0
    assert jan["failed_payments"] == 1 and jan["failure_rate"] == pytest.approx(1 / 3)
    assert (feb["payments"], feb["refund_lines"]) == (1, 1)
    assert feb["refunds"] == pytest.approx(5.0) and feb["refund_rate"] == pytest.approx(1.0)


def test_channel_mix_shares_sum_to_one_per_month(con):
    c = con.sql(S.channel_mix_sql("payments")).df()
    assert c.groupby("month")["share"].sum().tolist() == pytest.approx([1.0, 1.0])
    jan = c[c["month"] == c["month"].min()].set_index("channel")["payments"].to_dict()
    assert jan == {"app": 1, "web": 1}


def test_weekday_hour(con):
    w = con.sql(S.weekday_hour_sql("payments")).df()
    # 2025-01-05 is a Sunday, 2025-01-06 a Monday, 2025-02-03 a Monday; all at 12:00 UTC
    assert sorted(zip(w["weekday"], w["hour"], w["payments"])) == [(0, 12, 2), (6, 12, 1)]


def test_basket_sizes_and_values(con):
    b = con.sql(S.basket_sizes_sql("payments", cap=2)).df()
    assert b.set_index("items")["payments"].to_dict() == {1: 2, 2: 1}    # p1 has 3 items: capped at 2
    v = con.sql(S.payment_values_sql("payments", bins_per_decade=1)).df()
    assert v["payments"].sum() == 3 and v["lower"].tolist() == pytest.approx([10.0, 100.0])


def test_top_categories_and_merchants_by_net_revenue(con):
    cats = con.sql(S.top_sql("payments", "category")).df()
    assert cats["key"].tolist() == ["(none)", "toys", "food"]
    assert cats["revenue"].tolist() == pytest.approx([100.0, 20.0, 10.0])   # food: 15 - 5 refunded
    merch = con.sql(S.top_sql("payments", "merchant_id", n=1)).df()
    assert merch["key"].tolist() == ["m1"] and merch["customers"].tolist() == [2]
    with pytest.raises(ValueError):
        S.top_sql("payments", "user_id")


@pytest.mark.parametrize("part_lines", [2, 3, 100])
def test_monthly_figures_summed_over_user_parts_are_the_whole_logs(con, monkeypatch, part_lines):
    # the customers' parts are disjoint, so their per-month figures add up to the one-piece query's,
    # value for value and type for type (PART_LINES 100: one part, nothing written)
    from behavior import features as F

    monkeypatch.setattr(F, "PART_LINES", part_lines)
    whole = con.sql(S.monthly_payments_sql("payments")).df()
    as_of = datetime(2025, 3, 1, tzinfo=timezone.utc)
    with F.UserParts(F.as_engine(con), "payments", as_of) as parts:
        tables = F.by_user_part(parts.engine, "payments", [as_of], ["user_id", "payment_id", "status", "amount", "paid_at"],
                                lambda lines, lit: parts.engine.arrow(S.monthly_partial_sql(lines, lit)), parts)
        partials = next(tables)
        tables.close()
        assert (parts.count > 1) == (part_lines < 100)
    combined = con.sql(S.monthly_combine_sql("partials")).df()
    pd.testing.assert_frame_equal(combined, whole)
