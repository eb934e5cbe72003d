"""Stage `segments`: RFM scores, the named segment, the loyalty score (0-100) and tier.

The rules are in `behavior/segments.py`; the report's `segments.counts` has every segment
(zero where empty) in the library's order; without amounts in the lake its `notes` say that
the scores leave spend out.
"""

from __future__ import annotations

import pyarrow as pa

from behavior.segments import SEGMENTS, assign_segments, loyalty_score, loyalty_tier, rfm_scores
from pipelines.stage import StageResult
from pipelines.stages.align import aligned

NO_AMOUNTS = ("the lake has no amounts: net_spend and monetary_value are null, m_score is null (the RFM code "
              "ends in '-') and the loyalty score leaves spend out")


def run(ctx) -> StageResult[pa.Table]:
    cols = ["user_id", "recency_days", "n_payments", "net_spend", "tenure_days"]
    base = ctx.outputs["features"].select(cols)
    loyalty = ctx.outputs.get("loyalty")
    if loyalty is not None:   # lined up on the features' users (nulls for a user it lacks)
        extra = aligned(base.column("user_id"), loyalty.select(["user_id", "p_alive", "expected_purchases"]))
        for name in extra.column_names:
            base = base.append_column(name, extra.column(name))
    p = base.to_pandas()
    scores = rfm_scores(p)
    scores["segment"] = assign_segments(scores)
    scores["loyalty_score"] = loyalty_score(p, scores)
    scores["loyalty_tier"] = loyalty_tier(scores["loyalty_score"])
    counts = scores["segment"].value_counts().reindex(list(SEGMENTS), fill_value=0)
    section: dict = {"counts": {k: int(v) for k, v in counts.items()}}
    if not ctx.has_amounts():
        section["notes"] = [NO_AMOUNTS]
    schema = pa.schema([("user_id", pa.string()), ("r_score", pa.int8()), ("f_score", pa.int8()),
                        ("m_score", pa.int8()), ("rfm", pa.string()), ("segment", pa.string()),
                        ("loyalty_score", pa.float64()), ("loyalty_tier", pa.string())])
    return StageResult(pa.Table.from_pandas(scores[schema.names], schema=schema, preserve_index=False), report=section)
