"""Stage `merchants`: merchant profiles (merchants.parquet): merchant loyalty, windows and
trends, share of wallet, the customers' tier mix and the merchant segment, with the mean CLV of
each merchant's customers from the loyalty stage and their tiers from the segments stage.
Definitions in `behavior/merchants.py` and `behavior/merchant_profiles.py`.

Report: `merchants` = {merchants, counts: {<merchant segment>: n} (every segment, zero where
empty, in `MERCHANT_SEGMENTS` order)}.
"""

from __future__ import annotations

import pyarrow as pa

from behavior.merchant_profiles import MERCHANT_SEGMENTS, merchant_profiles


def run(ctx) -> pa.Table:
    values = ctx.outputs["loyalty"].select(["user_id", "clv"])
    tiers = ctx.outputs["segments"].select(["user_id", "loyalty_tier"])
    ctx.engine.register("_user_values", values)
    ctx.engine.register("_user_tiers", tiers)
    try:
        profiles = merchant_profiles(ctx.engine, "payments", ctx.as_of, "_user_values", "_user_tiers", ctx.user_parts)
    finally:
        ctx.engine.unregister("_user_values")
        ctx.engine.unregister("_user_tiers")
    counts = profiles["merchant_segment"].value_counts().reindex(list(MERCHANT_SEGMENTS), fill_value=0)
    ctx.report["merchants"] = {"merchants": int(len(profiles)), "counts": {k: int(v) for k, v in counts.items()}}
    table = pa.Table.from_pandas(profiles, preserve_index=False)
    ctx.bundle["merchants.parquet"] = table
    return table
