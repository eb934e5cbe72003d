"""Stage `profiles`: one row per user for the bundle (profiles.parquet).

The per-user features, joined with the users table (marketing opt-out, signup) where there
is one; later stages (loyalty, churn, segments) add their columns to the same row.
Users without a users-table row are taken as not opted out, as the users table is optional.
"""

from __future__ import annotations

import pyarrow as pa


def run(ctx) -> pa.Table:
    if "users" in ctx.tables:
        sql = ("SELECT f.*, COALESCE(u.marketing_opt_out, FALSE) AS marketing_opt_out, u.signup_at "
               "FROM features f LEFT JOIN users u USING (user_id) ORDER BY f.user_id")
    else:
        sql = ("SELECT f.*, FALSE AS marketing_opt_out, CAST(NULL AS TIMESTAMPTZ) AS signup_at "
               "FROM features f ORDER BY f.user_id")
    profiles = ctx.con.sql(sql).to_arrow_table()
    ctx.bundle["profiles.parquet"] = profiles
    return profiles
