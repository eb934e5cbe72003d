"""Stage `profiles`: one row per user for the bundle (profiles.parquet).

The per-user features, the columns of the per-user stages that ran (loyalty, segments,
churn), and from the users table the marketing opt-out (read from the whole table: it is
the user's current wish, whatever as_of) and signup time. Users without a users-table row
are taken as not opted out, as the users table is optional.
"""

from __future__ import annotations

import pyarrow as pa

from pipelines.runner import UNCUT_USERS

PER_USER_STAGES = ("loyalty", "segments", "churn")


def run(ctx) -> pa.Table:
    con = ctx.con
    con.register("_profiles_base", ctx.outputs["features"])
    joins, names = [], []
    try:
        for stage in PER_USER_STAGES:
            out = ctx.outputs.get(stage)
            if out is None:
                continue
            con.register(f"_p_{stage}", out)
            names.append(f"_p_{stage}")
            joins.append(f"LEFT JOIN _p_{stage} USING (user_id)")
        if "users" in ctx.tables:
            # The opt-out is the user's current wish, not a past event: it is read from the whole
            # users table (`users_uncut`), not the view cut at as_of (a user whose signup_at is
            # after as_of would otherwise lose the flag and become targetable). Both come through
            # the run's engine, so a Spark lake outside this machine works too.
            engine = ctx.engine
            con.register("_p_signup", engine.arrow("SELECT user_id, signup_at FROM users"))
            con.register("_p_opt_out", engine.arrow(
                f"SELECT user_id, bool_or(marketing_opt_out) AS _opt_out FROM {UNCUT_USERS} GROUP BY user_id"))
            names += ["_p_signup", "_p_opt_out"]
            users = "LEFT JOIN _p_signup u USING (user_id) LEFT JOIN _p_opt_out o USING (user_id)"
            extra = "COALESCE(_opt_out, FALSE) AS marketing_opt_out"
        else:
            users, extra = "", "FALSE AS marketing_opt_out, CAST(NULL AS TIMESTAMPTZ) AS signup_at"
        sql = f"SELECT * {'EXCLUDE (_opt_out)' if users else ''}, {extra} FROM _profiles_base {' '.join(joins)} {users} ORDER BY user_id"
        profiles = con.sql(sql).to_arrow_table()
    finally:
        for n in ["_profiles_base", *names]:
            con.unregister(n)
    ctx.bundle["profiles.parquet"] = profiles
    return profiles
