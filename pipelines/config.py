"""Stage parameters: defaults here, overridden by a TOML file (`behavior run --config FILE`).

```toml
[engine]
name = "duckdb"                # or "spark" (also `behavior run/ingest --engine spark`)
duckdb_threads = 2             # 0 = all cores
duckdb_memory_limit = "3GB"    # DuckDB spills to <data home>/tmp beyond it
spark_master = ""              # "" = local[2], or spark-submit's --master; env BEHAVIOR_SPARK_MASTER
spark_remote = ""              # a Spark Connect URL sc://host:15002; env BEHAVIOR_SPARK_REMOTE
spark_lake = ""                # Hadoop-compatible lake URI (s3a://, hdfs://); "" = the data home's lake
spark_shuffle_partitions = 4   # env BEHAVIOR_SPARK_SHUFFLE_PARTITIONS; raise it on a cluster
spark_driver_memory = "2g"     # local master only
spark_cache = true             # persist the as_of-cut payments: a run scans them ~20 times
spark_conf = {}                # any other Spark settings, e.g. {"spark.executor.memory" = "8g"}

[loyalty]
model = "bgnbd"                # or "mbgnbd" (one-time buyers can have dropped out)
penalizer = 0.0
horizon_days = 90              # expected purchases over this many days
clv_horizon_days = 365
discount_rate_annual = 0.10
holdout_days = 90              # fit before as_of - holdout_days, check the next holdout_days
```
[churn]
horizon_days = 90              # churned = no purchase in this many days after the cutoff

[recommend]
test_days = 30                 # the held-out period just before as_of (reported, never used to choose)
valid_days = 30                # the validation period before it (the model is chosen here)
k = 10
max_eval_users = 10000         # validation users sampled for the search
max_fit_users = 100000         # training users the search fits candidates on (the chosen one is refit on all)
trainer = "local"              # or "spark_als": MLlib ALS on the Spark engine; env BEHAVIOR_RECOMMEND_TRAINER
```

Every horizon is in days, whatever the unit the models are fitted in (also days).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from behavior.errors import InputError

TRAINERS = ("local", "spark_als")
TRAINER_ENV = "BEHAVIOR_RECOMMEND_TRAINER"


@dataclass(frozen=True)
class EngineConfig:
    name: str = "duckdb"
    duckdb_threads: int = 0
    duckdb_memory_limit: str = "3GB"
    # the Spark engine (pipelines/engines/spark.py; environment variables override these)
    spark_master: str = ""
    spark_remote: str = ""
    spark_lake: str = ""
    spark_shuffle_partitions: int = 4
    spark_driver_memory: str = "2g"
    spark_cache: bool = True
    spark_conf: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.name not in ("duckdb", "spark"):
            raise InputError(f"[engine] name = {self.name!r}: use \"duckdb\" or \"spark\"")
        if self.spark_shuffle_partitions <= 0:
            raise InputError("[engine] spark_shuffle_partitions must be positive")


@dataclass(frozen=True)
class LoyaltyConfig:
    model: str = "bgnbd"
    penalizer: float = 0.0
    horizon_days: int = 90
    clv_horizon_days: int = 365
    discount_rate_annual: float = 0.10
    holdout_days: int = 90

    def __post_init__(self) -> None:
        if self.model not in ("bgnbd", "mbgnbd"):
            raise InputError(f"[loyalty] model = {self.model!r}: use \"bgnbd\" or \"mbgnbd\"")
        for name in ("horizon_days", "clv_horizon_days", "holdout_days"):
            if getattr(self, name) <= 0:
                raise InputError(f"[loyalty] {name} must be a positive number of days")


@dataclass(frozen=True)
class ChurnConfig:
    horizon_days: int = 90

    def __post_init__(self) -> None:
        if self.horizon_days <= 0:
            raise InputError("[churn] horizon_days must be a positive number of days")


@dataclass(frozen=True)
class RecommendConfig:
    test_days: int = 30
    valid_days: int = 30
    k: int = 10
    max_eval_users: int = 10_000
    max_fit_users: int = 100_000
    seed: int = 0
    trainer: str = "local"      # "spark_als": pipelines.stages.recommend_spark (needs the Spark engine)

    def __post_init__(self) -> None:
        for name in ("test_days", "valid_days", "k", "max_eval_users", "max_fit_users"):
            if getattr(self, name) <= 0:
                raise InputError(f"[recommend] {name} must be positive")
        _check_trainer(self.trainer, "[recommend] trainer")

    def resolved_trainer(self, env: Mapping[str, str] | None = None) -> str:
        """The trainer: $BEHAVIOR_RECOMMEND_TRAINER if set, else the file's `trainer`."""
        value = (os.environ if env is None else env).get(TRAINER_ENV) or self.trainer
        return _check_trainer(value, TRAINER_ENV)


def _check_trainer(value: str, where: str) -> str:
    if value not in TRAINERS:
        raise InputError(f"{where} = {value!r}: use one of {', '.join(repr(t) for t in TRAINERS)}")
    return value


@dataclass(frozen=True)
class Config:
    engine: EngineConfig = field(default_factory=EngineConfig)
    loyalty: LoyaltyConfig = field(default_factory=LoyaltyConfig)
    churn: ChurnConfig = field(default_factory=ChurnConfig)
    recommend: RecommendConfig = field(default_factory=RecommendConfig)


def load_config(path: Path | None) -> Config:
    """The defaults, with the sections of `path` laid over them. Unknown keys are errors."""
    cfg = Config()
    if path is None:
        return cfg
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: no such config file") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: not valid TOML: {exc}") from None
    for section, values in data.items():
        if section not in {f.name for f in fields(Config)}:
            raise InputError(f"{path}: unknown section [{section}]; known: {', '.join(f.name for f in fields(Config))}")
        current = getattr(cfg, section)
        known = {f.name for f in fields(current)}
        bad = sorted(set(values) - known)
        if bad:
            raise InputError(f"{path}: [{section}] has unknown keys {', '.join(bad)}; known: {', '.join(sorted(known))}")
        for key, value in values.items():
            want = type(getattr(current, key))
            if not (isinstance(value, want) or (want is float and isinstance(value, int))) or isinstance(value, bool) != (want is bool):
                raise InputError(f"{path}: [{section}] {key} = {value!r} should be a {want.__name__}")
        cfg = replace(cfg, **{section: replace(current, **values)})
    return cfg
