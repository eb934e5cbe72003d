"""The churn horizon from the data's rhythm (behavior/churn_horizon.py), on small hand-made lakes
whose rhythm is known: yearly, quarterly and monthly buyers."""

from datetime import datetime, timedelta, timezone

import duckdb
import numpy as np
import pandas as pd
import pytest

from behavior import churn as C
from behavior.churn_horizon import GRID_DAYS, MIN_REPEAT_CUSTOMERS, choose_horizon, grid_at_or_above, longest_fitting
from behavior.features import btyd_summary

START = datetime(2020, 1, 1, tzinfo=timezone.utc)


def lake(gap_days: int, spread: int, customers: int = 200, until: datetime = datetime(2025, 1, 1, tzinfo=timezone.utc),
         extra: list[tuple[str, datetime]] = ()) -> pd.DataFrame:
    """Payment lines of customers who buy every gap_days + (i % spread) days from START (customer
    i starts i % 50 days later) until `until`, plus `extra` (user_id, paid_at) lines."""
    rows = []
    for i in range(customers):
        t = START + timedelta(days=i % 50)
        while t < until:
            rows.append((f"u{i:03d}", t))
            t += timedelta(days=gap_days + i % spread)
    rows += list(extra)
    return pd.DataFrame({"payment_id": [f"p{k}" for k in range(len(rows))], "user_id": [u for u, _ in rows],
                         "paid_at": pd.to_datetime([t for _, t in rows], utc=True), "status": "success"})


def horizon_at(payments: pd.DataFrame, as_of: datetime, configured: int | None = None):
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("payments", payments)
    s = btyd_summary(con, "payments", as_of).to_pandas()
    first = payments["paid_at"].min().to_pydatetime()
    return choose_horizon(s["frequency"].to_numpy(), s["recency"].to_numpy(), (as_of - first).days, configured)


AS_OF = datetime(2025, 1, 1, tzinfo=timezone.utc)


@pytest.mark.parametrize(("gap", "spread", "days"), [
    (330, 30, 365),    # yearly: usual gaps 330-359 days
    (95, 10, 120),     # quarterly: 95-104 days
    (28, 3, 30),       # monthly: 28-30 days
    (40, 15, 60),      # every six weeks or so: 40-54 days
])
def test_the_horizon_is_the_grid_value_at_or_above_three_in_four_customers_usual_gap(gap, spread, days):
    h = horizon_at(lake(gap, spread), AS_OF)
    assert (h.days, h.source, h.suggested_days) == (days, "data", days)
    assert gap <= h.rhythm_days <= gap + spread and h.repeat_customers == 200
    assert f"at most {h.rhythm_days:.0f} days" in h.reason and h.warning is None
    rep = h.report()
    assert rep["days"] == days and rep["quantile"] == 0.75 and rep["grid_days"] == list(GRID_DAYS)


def test_a_rhythm_longer_than_the_grid_gets_its_longest_value():
    h = horizon_at(lake(500, 20), AS_OF)
    assert h.days == 365 and h.rhythm_days > 500 and "the grid's longest value is 365 days" in h.reason


def test_purchases_at_or_after_as_of_do_not_move_the_horizon():
    """Yearly buyers who turn monthly from as_of on (one line exactly at as_of): the horizon at
    as_of is still the yearly one."""
    future = [(f"u{i:03d}", AS_OF + timedelta(days=30 * k)) for i in range(200) for k in range(12)]
    assert horizon_at(lake(330, 30, extra=future), AS_OF) == horizon_at(lake(330, 30), AS_OF)
    assert horizon_at(lake(330, 30, extra=future), AS_OF).days == 365
    # the same lake read a year later sees the monthly rhythm
    assert horizon_at(lake(330, 30, extra=future), AS_OF + timedelta(days=366)).rhythm_days < 330


def test_a_configured_horizon_shorter_than_the_rhythm_is_kept_with_a_warning():
    yearly = lake(330, 30)
    h = horizon_at(yearly, AS_OF, configured=90)
    assert (h.days, h.source, h.suggested_days) == (90, "config", 365)
    assert "horizon_days = 90 is shorter than the usual gap" in h.warning
    assert "the data suggests 365 days" in h.warning and f"at most {h.rhythm_days:.0f} days" in h.warning
    assert h.report()["warning"] == h.warning
    # long enough, or longer than what the data suggests: no warning
    assert horizon_at(yearly, AS_OF, configured=365).warning is None
    assert horizon_at(yearly, AS_OF, configured=400).warning is None
    assert horizon_at(lake(28, 3), AS_OF, configured=90).warning is None
    assert "warning" not in horizon_at(yearly, AS_OF, configured=365).report()


def test_a_history_too_short_for_the_rhythm_bounds_the_horizon_and_says_why():
    """Yearly buyers seen for 1.5 years: 365-day labels need 90 + 2 x 365 = 820 days; the
    longest grid horizon whose labels fit 548 days is 180 (90 + 360 <= 548)."""
    as_of = START + timedelta(days=548)
    h = horizon_at(lake(330, 30, until=as_of), as_of)
    assert (h.days, h.suggested_days, h.history_days) == (180, 365, 548)
    assert "365-day labels need 820 days of history" in h.reason and "there are 548" in h.reason
    assert "the horizon is 180 days" in h.reason
    cuts = C.choose_cutoffs(as_of, START, h.days, shorten=True)
    assert cuts.problem is None and cuts.label_days == 180 and cuts.train
    # configured at 90 there: the data suggests the bounded value, not 365
    assert "the data suggests 180 days" in horizon_at(lake(330, 30, until=as_of), as_of, configured=90).warning


def test_a_very_short_history_keeps_the_default_and_shortens_the_labels_instead():
    """260 days of customers who buy every 200-229 days: 270 suggested, no grid horizon above 90
    fits, so the horizon is 90 and the cutoffs shorten the label windows, as they do for a
    configured one."""
    as_of = START + timedelta(days=260)
    h = horizon_at(lake(200, 30, until=as_of), as_of)
    assert h.suggested_days == 270 and h.repeat_customers >= MIN_REPEAT_CUSTOMERS
    assert h.days == C.HORIZON_DAYS and "with shorter label windows" in h.reason
    cuts = C.choose_cutoffs(as_of, START, h.days, shorten=True)
    assert cuts.problem is None and cuts.label_days < h.days


def test_too_few_repeat_customers_keep_the_default_and_say_so():
    h = horizon_at(lake(330, 30, customers=MIN_REPEAT_CUSTOMERS - 1), AS_OF)
    assert (h.days, h.source, h.rhythm_days) == (C.HORIZON_DAYS, "data", None)
    assert f"only {MIN_REPEAT_CUSTOMERS - 1} repeat customers" in h.reason
    assert choose_horizon(np.array([]), np.array([]), 1000, configured=60).days == 60


def test_grid_helpers():
    assert [grid_at_or_above(d) for d in (1, 30, 30.5, 88.4, 90, 91, 365, 900)] == [30, 30, 60, 90, 90, 120, 365, 365]
    assert longest_fitting(1461) == 365 and longest_fitting(548) == 180 and longest_fitting(149) is None
    assert longest_fitting(150) == 30
