"""Lining up per-user tables on the features' user ids, and the profiles' opt-out read in order."""

from datetime import datetime, timezone

import pyarrow as pa
import pytest

from pipelines.config import Config
from pipelines.stage import UNCUT_USERS, StageContext
from pipelines.stages import profiles
from pipelines.stages.align import aligned, ascending
from tests.recording_engine import RecordingEngine


@pytest.mark.parametrize("ids, expected", [
    ([], True), (["a"], True), (["a", "b", "c"], True), (["a", "c", "b"], False), (["a", "a", "b"], False),
    (["a", None, "c"], False), ([None], False), (["b", "ab"], False), (["ab", "b"], True),
])
def test_ascending_means_strictly_increasing_without_nulls(ids, expected):
    assert ascending(pa.chunked_array([pa.array(ids, pa.string())])) is expected
    assert ascending(pa.array(ids, pa.string())) is expected


def test_aligned_takes_a_sorted_subset_by_user_id():
    ids = pa.chunked_array([["a", "b", "c", "d"]])
    got = aligned(ids, pa.table({"user_id": ["b", "d"], "x": [2, 4]}))
    assert got.column("x").to_pylist() == [None, 2, None, 4]


def _profiles(users: pa.Table) -> tuple[pa.Table, list[str]]:
    import duckdb

    con = duckdb.connect()
    con.register("_users", users)
    con.execute("CREATE VIEW users AS SELECT * FROM _users WHERE signup_at < TIMESTAMPTZ '2025-01-01'")
    con.execute(f"CREATE VIEW {UNCUT_USERS} AS SELECT * FROM _users")
    features = pa.table({"user_id": ["a", "b", "c"], "n_payments": [1, 2, 3]})
    engine = RecordingEngine(con)
    ctx = StageContext(home=None, config=Config(), as_of=datetime(2025, 1, 1, tzinfo=timezone.utc), con=con,
                       tables={"users"}, outputs={"features": features}, engine=engine)
    return profiles.run(ctx).output, engine.sql


def _users(ids, opt_out, signed_up=None) -> pa.Table:
    signed_up = signed_up or [datetime(2024, 1, 1, tzinfo=timezone.utc)] * len(ids)
    signup = pa.array(signed_up, pa.timestamp("us", tz="UTC"))
    return pa.table({"user_id": ids, "signup_at": signup, "marketing_opt_out": pa.array(opt_out, pa.bool_())})


def test_profiles_read_an_ordered_users_table_without_grouping_it():
    """One row per user in user_id order (the lake's): the opt-out is taken as read, no GROUP BY
    (whose hash order the profiles then had to look up user by user)."""
    got, sql = _profiles(_users(["a", "b", "c"], [False, True, None]))
    assert got.column("marketing_opt_out").to_pylist() == [False, True, False]
    assert not any("GROUP BY" in s for s in sql)


BEFORE, AFTER = datetime(2024, 1, 1, tzinfo=timezone.utc), datetime(2025, 6, 1, tzinfo=timezone.utc)


@pytest.mark.parametrize("ids, opt_out, signed_up, expected", [
    # a user twice (again after as_of): any of the rows opts out
    (["a", "b", "b", "c"], [False, False, True, None], [BEFORE, BEFORE, AFTER, BEFORE], [False, True, False]),
    (["c", "a", "b"], [True, False, False], None, [False, False, True]),     # out of order
    (["b", "d"], [True, True], None, [False, True, False]),                  # users without a row: not opted out
])
def test_profiles_opt_out_of_any_users_table(ids, opt_out, signed_up, expected):
    got, _ = _profiles(_users(ids, opt_out, signed_up))
    assert got.column("marketing_opt_out").to_pylist() == expected
