"""behavior.retention: the tables of a hand-made log, and the same tables from its parts."""

from datetime import datetime, timezone

import duckdb
import pyarrow as pa
import pytest

from behavior.retention import retention_tables
from behavior.sql_dialect import DuckDBEngine

UTC = timezone.utc


def _log(rows, tz="UTC"):
    """`tz` None: paid_at without a time zone, holding the UTC wall time (a lake may store it so)."""
    return pa.table({"user_id": [r[0] for r in rows], "status": [r[2] for r in rows],
                     "paid_at": pa.array([r[1].replace(tzinfo=None) for r in rows], pa.timestamp("us", tz=tz))})


# a: Jan, Feb, Apr; b: Jan, Mar (and a failed payment in Feb); c: Feb, Mar; d: Mar (segmentless)
LOG = [("a", datetime(2025, 1, 5, tzinfo=UTC), "success"), ("a", datetime(2025, 2, 1, tzinfo=UTC), "success"),
       ("a", datetime(2025, 2, 20, tzinfo=UTC), "success"), ("a", datetime(2025, 4, 30, 23, 59, tzinfo=UTC), "success"),
       ("b", datetime(2025, 1, 31, 23, 59, tzinfo=UTC), "success"), ("b", datetime(2025, 2, 10, tzinfo=UTC), "failed"),
       ("b", datetime(2025, 3, 1, tzinfo=UTC), "success"),
       ("c", datetime(2025, 2, 1, 2, tzinfo=UTC), "success"), ("c", datetime(2025, 3, 14, tzinfo=UTC), "success"),
       ("d", datetime(2025, 3, 1, 1, tzinfo=UTC), "success")]   # c's and d's first: the month before in New York
SEGMENTS = pa.table({"user_id": ["a", "b", "c"], "segment": ["loyal", "at risk", "loyal"]})


@pytest.fixture()
def engine():
    con = duckdb.connect()
    con.execute("SET TimeZone = 'America/New_York'")   # months are UTC months whatever the session's zone
    e = DuckDBEngine(con)
    e.register("payments", _log(LOG))
    e.register("first_half", _log([r for r in LOG if r[0] < "c"]))
    e.register("second_half", _log([r for r in LOG if r[0] >= "c"]))
    e.register("naive", _log(LOG, tz=None))
    e.register("segments", SEGMENTS)
    return e


def test_cohorts_and_curves_of_a_hand_made_log(engine):
    cohorts, curves = retention_tables(engine, ["payments"], "segments")
    jan, feb, mar = (datetime(2025, m, 1).date() for m in (1, 2, 3))
    got = [(r["cohort_month"], r["months_since"], r["cohort_size"], r["active_users"]) for r in cohorts.to_pylist()]
    assert got == [(jan, 0, 2, 2), (jan, 1, 2, 1), (jan, 2, 2, 1), (jan, 3, 2, 1),   # a, b | a | b | a
                   (feb, 0, 1, 1), (feb, 1, 1, 1), (feb, 2, 1, 0),                    # c
                   (mar, 0, 1, 1), (mar, 1, 1, 0)]                                    # d
    assert [r["retention"] for r in cohorts.to_pylist()][:2] == [1.0, 0.5]
    got = [(r["segment"], r["months_since"], r["users"], r["active_users"]) for r in curves.to_pylist()]
    # observed months: Jan cohort 3 (up to April), Feb 2, Mar 1
    assert got == [("at risk", 0, 1, 1), ("at risk", 1, 1, 0), ("at risk", 2, 1, 1), ("at risk", 3, 1, 0),
                   ("loyal", 0, 2, 2), ("loyal", 1, 2, 2), ("loyal", 2, 2, 0), ("loyal", 3, 1, 1),
                   ("unknown", 0, 1, 1), ("unknown", 1, 1, 0)]
    assert curves.schema.field("users").type == pa.int64() and cohorts.schema.field("months_since").type == pa.int32()


def test_the_parts_of_a_log_by_user_give_the_tables_of_the_whole(engine):
    whole = retention_tables(engine, ["payments"], "segments")
    parts = retention_tables(engine, ["first_half", "second_half"], "segments")
    assert whole[0].equals(parts[0]) and whole[1].equals(parts[1])


def test_a_paid_at_without_time_zone_is_read_as_utc_whatever_the_sessions_zone(engine):
    aware, naive = (retention_tables(engine, [log], "segments") for log in ("payments", "naive"))
    assert aware[0].equals(naive[0]) and aware[1].equals(naive[1])
