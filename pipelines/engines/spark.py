"""The Spark engine: the log-level SQL of `behavior` on Apache Spark (PySpark), same text as on
DuckDB (`behavior.sql_dialect.SPARK` fills in the few engine-specific templates).

With `pipelines.engines.spark_als` (the recommender's MLlib ALS) the only module that imports
pyspark. What it gives the runner:

- `SparkSettings.resolve(engine_config)`: where Spark runs and where the lake is, from the
  `[engine]` section of the config file with environment variables over it (never code):

  | setting            | config key (`[engine]`)     | environment                         | default            |
  |--------------------|-----------------------------|-------------------------------------|--------------------|
  | master             | `spark_master`              | `BEHAVIOR_SPARK_MASTER`             | `local[2]`; under spark-submit, its `--master` |
  | Spark Connect URL  | `spark_remote`              | `BEHAVIOR_SPARK_REMOTE`             | none (a JVM in this process) |
  | lake URI           | `spark_lake`                | `BEHAVIOR_SPARK_LAKE`               | the data home's `lake/` |
  | shuffle partitions | `spark_shuffle_partitions`  | `BEHAVIOR_SPARK_SHUFFLE_PARTITIONS` | 4 (small: local runs) |
  | driver memory      | `spark_driver_memory`       | `BEHAVIOR_SPARK_DRIVER_MEMORY`      | `2g` (local master only) |
  | cache the log      | `spark_cache`               |                                     | true (memory, then disk) |
  | any other conf     | `spark_conf = {"k" = "v"}`  |                                     |                    |

  The lake URI may be any Hadoop-compatible path: a local folder, `hdfs://...`,
  `s3a://bucket/lake` (credentials by the usual Hadoop / AWS environment, never in the file).
- `SparkEngine.start(settings)`: a SparkSession (an active one is reused and left running:
  tests share one, spark-submit makes one), session time zone UTC, ANSI mode off (a division
  by zero is NULL, as on DuckDB).
- `engine.lake_views(lake, as_of)`: temporary views `payments`, `users`, `items`,
  `promotions`, `assignments` over the lake's Parquet (payments hive-partitioned by month),
  cut at as_of exactly like the DuckDB views of `pipelines.runner`.
- `engine.arrow(sql)` / `engine.frame(sql)`: a query's result as an Arrow table / pandas
  DataFrame on the driver; `register(name, arrow_table)` makes a driver-side table a view.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Mapping

import pandas as pd
import pyarrow as pa

from behavior.errors import BehaviorError
from behavior.features import as_of_literal
from behavior.sql_dialect import SPARK

ENV = {
    "master": "BEHAVIOR_SPARK_MASTER",
    "remote": "BEHAVIOR_SPARK_REMOTE",
    "lake": "BEHAVIOR_SPARK_LAKE",
    "shuffle_partitions": "BEHAVIOR_SPARK_SHUFFLE_PARTITIONS",
    "driver_memory": "BEHAVIOR_SPARK_DRIVER_MEMORY",
}
DEFAULT_MASTER = "local[2]"


class SparkUnavailableError(BehaviorError):
    """pyspark or a Java runtime is missing."""


@dataclass(frozen=True)
class SparkSettings:
    master: str = ""               # "" = spark-submit's master, else local[2]
    remote: str = ""               # Spark Connect, e.g. sc://spark-connect.example:15002
    lake: str = ""                 # lake URI; "" = the data home's lake
    shuffle_partitions: int = 4
    driver_memory: str = "2g"
    cache: bool = True             # persist the as_of-cut payments for the run's repeated scans
    conf: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def resolve(cls, engine_config: Any, default_lake: str, env: Mapping[str, str] | None = None) -> SparkSettings:
        """The `[engine]` section's spark_* keys, each overridden by its environment variable."""
        env = os.environ if env is None else env

        def pick(name: str, default: Any) -> Any:
            value = env.get(ENV[name]) or getattr(engine_config, f"spark_{name}", None) or default
            return value

        try:
            partitions = int(pick("shuffle_partitions", cls.shuffle_partitions))
        except ValueError:
            raise BehaviorError(f"{ENV['shuffle_partitions']}={env.get(ENV['shuffle_partitions'])!r}: "
                                "give a whole number of partitions") from None
        return cls(master=pick("master", ""), remote=pick("remote", ""), lake=pick("lake", "") or default_lake,
                   shuffle_partitions=partitions, driver_memory=pick("driver_memory", cls.driver_memory),
                   cache=bool(getattr(engine_config, "spark_cache", True)),
                   conf=dict(getattr(engine_config, "spark_conf", None) or {}))

    def describe(self) -> dict:
        where = {"remote": self.remote} if self.remote else {"master": self.master or DEFAULT_MASTER}
        return {**where, "lake": self.lake, "shuffle_partitions": self.shuffle_partitions}


def _under_spark_submit() -> bool:
    # spark-submit starts this Python with the gateway of the JVM it launched
    return "PYSPARK_GATEWAY_PORT" in os.environ


def _java_missing() -> str | None:
    from shutil import which

    home = os.environ.get("JAVA_HOME")
    if home and os.path.exists(os.path.join(home, "bin", "java")):
        return None
    return None if which("java") else ("no Java runtime found (JAVA_HOME unset and no `java` on PATH); "
                                       "Spark needs Java 17 or later: e.g. `apt-get install openjdk-17-jre-headless`")


class SparkEngine:
    """A SparkSession as a `behavior.sql_dialect.SqlEngine`."""

    name = "spark"
    dialect = SPARK

    def __init__(self, spark: Any, owned: bool, settings: SparkSettings | None = None) -> None:
        self.spark = spark
        self.owned = owned          # started here, so stopped by `close`
        self.settings = settings or SparkSettings()
        self._views: set[str] = set()
        self._cached: list[Any] = []

    @classmethod
    def start(cls, settings: SparkSettings) -> SparkEngine:
        try:
            from pyspark.sql import SparkSession
        except ImportError:
            raise SparkUnavailableError("the Spark engine needs pyspark: pip install 'behavior[spark]' "
                                        "(it is in requirements.lock)") from None
        active = SparkSession.getActiveSession()
        if active is not None:
            _configure(active, settings)
            return cls(active, owned=False, settings=settings)
        if not settings.remote:
            missing = _java_missing()
            if missing:
                raise SparkUnavailableError(missing)
        builder = SparkSession.builder.appName("behavior")
        if settings.remote:
            builder = builder.remote(settings.remote)
        else:
            if settings.master or not _under_spark_submit():
                builder = builder.master(settings.master or DEFAULT_MASTER)
            if (settings.master or DEFAULT_MASTER).startswith("local"):
                builder = builder.config("spark.driver.memory", settings.driver_memory)
            builder = (builder.config("spark.ui.enabled", "false")
                       .config("spark.ui.showConsoleProgress", "false")
                       .config("spark.log.level", "ERROR"))
        for key, value in _session_conf(settings).items():
            builder = builder.config(key, value)
        with warnings.catch_warnings():
            # pyspark warns that it does not fully support pandas 3; only Arrow crosses here
            warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")
            spark = builder.getOrCreate()
        return cls(spark, owned=True, settings=settings)

    # ------------------------------------------------------------------ SqlEngine

    def column_types(self, relation: str) -> dict[str, str]:
        return dict(self.spark.table(relation).dtypes)

    def arrow(self, sql: str, params: dict[str, Any] | None = None) -> pa.Table:
        df = self.spark.sql(sql, args=params) if params else self.spark.sql(sql)
        table = df.toArrow()
        # Spark marks non-null results `not null`; DuckDB's tables (and so the bundle) do not
        return table.cast(pa.schema([f.with_nullable(True) for f in table.schema]))

    def frame(self, sql: str) -> pd.DataFrame:
        return self.arrow(sql).to_pandas()

    def register(self, name: str, table: pa.Table) -> None:
        """A driver-side Arrow table as a temporary view (small tables: segments, windows)."""
        self.spark.createDataFrame(table).createOrReplaceTempView(name)
        self._views.add(name)

    def unregister(self, name: str) -> None:
        self.spark.catalog.dropTempView(name)
        self._views.discard(name)

    # ------------------------------------------------------------------ the lake

    def payment_range(self, lake: str) -> tuple[datetime, datetime]:
        """(first, last) paid_at over the whole payments table of the lake."""
        payments = self._read(lake, "payments")
        if payments is None:
            raise BehaviorError(f"the lake at {lake} has no payments; run `behavior ingest` first")
        row = payments.selectExpr("min(paid_at) AS lo", "max(paid_at) AS hi").toArrow().to_pylist()[0]
        if row["lo"] is None:
            raise BehaviorError(f"the lake at {lake} has no payments; run `behavior ingest` first")
        return row["lo"], row["hi"]

    def lake_views(self, lake: str, as_of: datetime, time_columns: Mapping[str, str | None]) -> set[str]:
        """Temporary views of the lake's tables holding only rows before `as_of` (rows without
        a time are kept, except payments); returns the tables present. With `settings.cache`
        the payments view is persisted (memory, then local disk) on first use: a run scans it
        about twenty times (features at every churn cutoff and promotion start, labels,
        interactions of each period)."""
        present = set()
        literal = as_of_literal(as_of, dialect=SPARK)
        for name, col in time_columns.items():
            df = self._read(lake, name)
            if df is None:
                continue
            if col:
                df = df.where(f"{col} < {literal}" + (f" OR {col} IS NULL" if name != "payments" else ""))
            if name == "payments" and self.settings.cache:
                from pyspark import StorageLevel

                df = df.persist(StorageLevel.MEMORY_AND_DISK)
                self._cached.append(df)
            df.createOrReplaceTempView(name)
            self._views.add(name)
            present.add(name)
        return present

    def _read(self, lake: str, table: str):
        from pyspark.errors import AnalysisException

        path = f"{lake.rstrip('/')}/{table}"
        try:
            # mergeSchema: files written at different times may lack an optional column
            # (DuckDB's union_by_name); the payments' month=YYYY-MM folders become a column
            return self.spark.read.option("mergeSchema", "true").parquet(path)
        except AnalysisException as exc:
            if any(k in str(exc) for k in ("PATH_NOT_FOUND", "UNABLE_TO_INFER_SCHEMA", "Path does not exist")):
                return None
            raise

    def close(self) -> None:
        """Drop the views made here; stop the session if it was started here."""
        for name in sorted(self._views):
            try:
                self.spark.catalog.dropTempView(name)
            except Exception:  # noqa: BLE001 - a session already gone has no views to drop
                pass
        self._views.clear()
        for df in self._cached:
            df.unpersist()
        self._cached.clear()
        if self.owned:
            self.spark.stop()


def _session_conf(settings: SparkSettings) -> dict[str, str]:
    return {
        # days, months and timestamp literals are UTC (behavior.sql_dialect.SPARK relies on it)
        "spark.sql.session.timeZone": "UTC",
        # a division by zero is NULL, as on DuckDB, not an error
        "spark.sql.ansi.enabled": "false",
        "spark.sql.shuffle.partitions": str(settings.shuffle_partitions),
        # month=2025-01 stays a string, as the lake writes it
        "spark.sql.sources.partitionColumnTypeInference.enabled": "false",
        **{str(k): str(v) for k, v in settings.conf.items()},
    }


def _configure(spark: Any, settings: SparkSettings) -> None:
    """Runtime SQL settings on a session this module did not start."""
    for key, value in _session_conf(settings).items():
        try:
            spark.conf.set(key, value)
        except Exception:  # noqa: BLE001 - a static conf of a running session cannot change
            if key == "spark.sql.session.timeZone":
                raise


__all__ = ["SparkEngine", "SparkSettings", "SparkUnavailableError"]
