"""Stage `features`: the per-user feature table, computed by DuckDB over the lake."""

from __future__ import annotations

import pyarrow as pa

from behavior.features import user_features


def run(ctx) -> pa.Table:
    table = user_features(ctx.con, "payments", ctx.as_of)
    ctx.con.register("features", table)
    return table
