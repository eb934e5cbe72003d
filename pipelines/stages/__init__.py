"""The batch stages of `behavior run`, in a registry the runner orders by their `needs`.

Each stage module holds plain functions of a StageContext; the domain logic is in `behavior`.
"""

from pipelines.runner import Stage
from pipelines.stages import features, profiles

STAGES: dict[str, Stage] = {
    s.name: s
    for s in (
        Stage("features", (), features.run, "per-user feature table (DuckDB over the lake)"),
        Stage("profiles", ("features",), profiles.run, "one row per user for the bundle"),
    )
}
