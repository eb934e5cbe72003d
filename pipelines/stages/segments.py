"""Stage `segments`: RFM scores, the named segment, the loyalty score (0-100) and tier.

The rules are in `behavior/segments.py`; the report's `segments.counts` has every segment
(zero where empty) in the library's order.
"""

from __future__ import annotations

import pyarrow as pa

from behavior.segments import SEGMENTS, assign_segments, loyalty_score, loyalty_tier, rfm_scores


def run(ctx) -> pa.Table:
    cols = ["user_id", "recency_days", "n_payments", "net_spend", "tenure_days"]
    p = ctx.outputs["features"].select(cols).to_pandas()
    loyalty = ctx.outputs.get("loyalty")
    if loyalty is not None:
        p = p.merge(loyalty.select(["user_id", "p_alive", "expected_purchases"]).to_pandas(), on="user_id", how="left")
    scores = rfm_scores(p)
    scores["segment"] = assign_segments(scores)
    scores["loyalty_score"] = loyalty_score(p, scores)
    scores["loyalty_tier"] = loyalty_tier(scores["loyalty_score"])
    counts = scores["segment"].value_counts().reindex(list(SEGMENTS), fill_value=0)
    ctx.report["segments"] = {"counts": {k: int(v) for k, v in counts.items()}}
    schema = pa.schema([("user_id", pa.string()), ("r_score", pa.int8()), ("f_score", pa.int8()),
                        ("m_score", pa.int8()), ("rfm", pa.string()), ("segment", pa.string()),
                        ("loyalty_score", pa.float64()), ("loyalty_tier", pa.string())])
    return pa.Table.from_pandas(scores[schema.names], schema=schema, preserve_index=False)
