"""Stage `profiles`: one row per user for the bundle (profiles.parquet).

The per-user features (the BTYD `recency` named `purchase_span_days`: `PROFILE_NAMES`), the columns of the per-user stages that ran (loyalty, segments,
churn), and from the users table the marketing opt-out (read from the whole table: it is
the user's current wish, whatever as_of) and signup time. Users without a users-table row
are taken as not opted out, as the users table is optional. A per-user stage that was
skipped adds no columns, except `segment`, which the API needs: it is then null.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from behavior.features import PROFILE_NAMES
from behavior.store.bundle import PROFILES
from pipelines.stage import UNCUT_USERS, StageResult
from pipelines.stages.align import aligned, ascending


def run(ctx) -> StageResult[pa.Table]:
    """The features with the per-user stages' columns and the users table's appended, in the
    feature table's (user_id) order. The tables are lined up by position (a hash lookup of
    user_id, or nothing when a table has the same users in the same order), not by a join
    sorted afterwards: sorting ~60 columns of 5.9M users spilled past DuckDB's memory cap."""
    base = ctx.outputs["features"]
    ids = base.column("user_id")
    columns = {PROFILE_NAMES.get(name, name): base.column(name) for name in base.column_names}
    for stage in ctx.per_user:
        out = ctx.outputs.get(stage)
        if out is not None:
            _append(columns, aligned(ids, out), stage)
    if "segment" not in columns:   # the segments stage was skipped: the API still finds the column
        columns["segment"] = pa.nulls(len(ids), pa.string())
    if "users" in ctx.tables:
        # The opt-out is the user's current wish, not a past event: it is read from the whole
        # users table (`users_uncut`), not the view cut at as_of (a user whose signup_at is
        # after as_of would otherwise lose the flag and become targetable). Both come through
        # the run's engine, so a Spark lake outside this machine works too.
        engine = ctx.engine
        signup = aligned(ids, engine.arrow("SELECT user_id, signup_at FROM users"))
        opt_out = aligned(ids, _opt_outs(engine))
        _append(columns, signup, "users")
        columns["marketing_opt_out"] = pc.fill_null(opt_out.column("opt_out"), False)
    else:
        columns["marketing_opt_out"] = pa.array(np.zeros(len(ids), dtype=bool))
        columns["signup_at"] = pa.nulls(len(ids), pa.timestamp("us", tz="UTC"))
    profiles = pa.table(columns)
    return StageResult(profiles, {PROFILES: profiles})


def _opt_outs(engine) -> pa.Table:
    """user_id, opt_out: whether any of the user's rows of the whole users table opts out.

    A users table with one row per user in user_id order (the lake's, checked in one pass) is
    taken as read: it lines up with the features without a lookup. Otherwise its rows are
    grouped by user, in the aggregate's hash order, which `aligned` looks up by a hash of
    user_id: at 5.8M users that lookup was most of the stage, and per user it grew with the users."""
    rows = engine.arrow(f"SELECT user_id, marketing_opt_out AS opt_out FROM {UNCUT_USERS}")
    if ascending(rows.column("user_id")):
        return rows
    return engine.arrow(f"SELECT user_id, bool_or(marketing_opt_out) AS opt_out FROM {UNCUT_USERS} GROUP BY user_id")


def _append(columns: dict, table: pa.Table, source: str) -> None:
    for name in table.column_names:
        if name in columns:
            raise AssertionError(f"profiles: column {name!r} of {source} is already there")
        columns[name] = table.column(name)
