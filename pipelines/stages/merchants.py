"""Stage `merchants`: merchant loyalty (merchants.parquet), with the mean CLV of each
merchant's customers from the loyalty stage. Definitions in `behavior/merchants.py`."""

from __future__ import annotations

import pyarrow as pa

from behavior.merchants import merchant_loyalty


def run(ctx) -> pa.Table:
    values = ctx.outputs["loyalty"].select(["user_id", "clv"])
    ctx.engine.register("_user_values", values)
    try:
        table = merchant_loyalty(ctx.engine, "payments", ctx.as_of, "_user_values", ctx.user_parts)
    finally:
        ctx.engine.unregister("_user_values")
    ctx.bundle["merchants.parquet"] = table
    return table
