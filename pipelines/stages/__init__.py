"""The batch stages of `behavior run`: the one registry the runner orders by their `needs`.

Each stage module holds plain functions of a StageContext that return a StageResult; the
domain logic is in `behavior`. `log_level`: the stage's scans and aggregations of the lake run
on the run's engine, `ctx.engine` (DuckDB or Spark); the others work on per-user tables on the
driver. `per_user`: its output has one row per user, and its columns go into the profiles.
"""

from pipelines.stage import Stage
from pipelines.stages import churn, features, loyalty, merchants, profiles, promotions, recommend_run, segments

STAGES: dict[str, Stage] = {
    s.name: s
    for s in (
        Stage("features", (), features.run, "per-user feature table (DuckDB or Spark over the lake)", log_level=True),
        Stage("loyalty", ("features",), loyalty.run, "BG/NBD and Gamma-Gamma: P(alive), expected purchases, CLV",
              log_level=True, per_user=True),
        Stage("segments", ("features", "loyalty"), segments.run, "RFM scores, named segments, loyalty score and tier",
              optional=frozenset({"loyalty"}), per_user=True),
        Stage("merchants", ("loyalty", "segments"), merchants.run,
              "merchant profiles: loyalty, trends, share of wallet, segment (merchants.parquet)",
              optional=frozenset({"segments"}), log_level=True),
        Stage("churn", ("features", "loyalty", "segments"), churn.run, "churn probability and reasons, retention tables",
              optional=frozenset({"loyalty", "segments"}), log_level=True, per_user=True),
        Stage("recommend", ("segments",), recommend_run.run, "item recommender: selection, test check, recommender.npz",
              optional=frozenset({"segments"}), log_level=True),
        Stage("promotions", ("features",), promotions.run,
              "promotion effectiveness, uplift models, targeting inputs (uplift_scores.parquet)", log_level=True),
        Stage("profiles", ("features", "loyalty", "segments", "churn"), profiles.run, "one row per user for the bundle",
              optional=frozenset({"loyalty", "segments", "churn"})),
    )
}
