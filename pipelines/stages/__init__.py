"""The batch stages of `behavior run`, in a registry the runner orders by their `needs`.

Each stage module holds plain functions of a StageContext; the domain logic is in `behavior`.
"""

from pipelines.runner import Stage
from pipelines.stages import churn, features, loyalty, merchants, profiles, promotions, recommend, segments

# Stages whose log-level SQL (scans and aggregations of the lake) runs on the run's engine,
# `ctx.engine` (DuckDB or Spark); the others work on per-user tables on the driver.
LOG_LEVEL_STAGES = frozenset({"features", "loyalty", "merchants", "churn", "recommend", "promotions"})

STAGES: dict[str, Stage] = {
    s.name: s
    for s in (
        Stage("features", (), features.run, "per-user feature table (DuckDB or Spark over the lake)"),
        Stage("loyalty", ("features",), loyalty.run, "BG/NBD and Gamma-Gamma: P(alive), expected purchases, CLV"),
        Stage("segments", ("features", "loyalty"), segments.run, "RFM scores, named segments, loyalty score and tier",
              optional=frozenset({"loyalty"})),
        Stage("merchants", ("loyalty", "segments"), merchants.run,
              "merchant profiles: loyalty, trends, share of wallet, segment (merchants.parquet)",
              optional=frozenset({"segments"})),
        Stage("churn", ("features", "loyalty", "segments"), churn.run, "churn probability and reasons, retention tables",
              optional=frozenset({"loyalty", "segments"})),
        Stage("recommend", ("segments",), recommend.run, "item recommender: selection, test check, recommender.npz",
              optional=frozenset({"segments"})),
        Stage("promotions", ("features",), promotions.run,
              "promotion effectiveness, uplift models, targeting inputs (uplift_scores.parquet)"),
        Stage("profiles", ("features", "loyalty", "segments", "churn"), profiles.run, "one row per user for the bundle",
              optional=frozenset({"loyalty", "segments", "churn"})),
    )
}
