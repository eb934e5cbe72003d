"""Stage `features`: the per-user feature table, computed over the lake by the run's engine
(DuckDB or Spark: the same SQL), then kept on the driver (a DuckDB view `features`)."""

from __future__ import annotations

import pyarrow as pa

from behavior.features import user_features
from pipelines.stage import StageResult


def run(ctx) -> StageResult[pa.Table]:
    table = user_features(ctx.engine, "payments", ctx.as_of, ctx.user_parts)
    ctx.con.register("features", table)
    return StageResult(table)
