"""The Spark engine: the log-level SQL of `behavior` on Apache Spark (PySpark), same text as on
DuckDB (`behavior.sql_dialect.SPARK` fills in the few engine-specific templates).

With `pipelines.engines.spark_als` (the recommender's MLlib ALS) the only module that imports
pyspark. What it gives the runner:

- `SparkSettings.resolve(engine_config)`: where Spark runs and where the lake is, from the
  `[engine]` section of the configuration (`behavior.store.config`: the file, with environment
  variables over it): master (`spark_master`, or a Spark Connect URL in `spark_remote`), lake URI (`spark_lake`),
  shuffle partitions, driver memory, caching of the cut log and any other Spark conf
  (`spark_conf`), each with its default and environment variable in docs/configuration.md.
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

And what it gives `behavior ingest --engine spark` (`pipelines.ingest`):

- `SparkLake.open(home, engine_config)`: the lake at the Spark lake URI (any Hadoop path),
  written by Spark. The driver reads each raw file (`pipelines.readers`) and hands its rows
  to Spark as Arrow; on Spark run the validation SQL (`behavior.validate`, the DuckDB text
  rendered for Spark), the line numbers, the check of every key against the whole lake and
  the partitioned Parquet writes, inside a staging + journal transaction done with the
  lake's Hadoop FileSystem (rename and delete). The driver keeps the accounting, the Luhn
  confirmation of flagged rows and the quarantine file (rejected rows are few).
"""

from __future__ import annotations

import io
import json
import os
import uuid
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterator, Mapping

import pandas as pd
import pyarrow as pa

from behavior.errors import BehaviorError
from behavior.features import as_of_literal
from behavior.sql_dialect import SPARK
from behavior.store.config import EngineConfig
from pipelines.dimension_merge import dimension_merge_sql, with_positions
from pipelines.lake import META, TXN, parse_journal

DEFAULT_MASTER = "local[2]"


class SparkUnavailableError(BehaviorError):
    """pyspark or a Java runtime is missing."""


_DEFAULTS = EngineConfig()   # the defaults are the configuration's (docs/configuration.md)


@dataclass(frozen=True)
class SparkSettings:
    master: str = _DEFAULTS.spark_master        # "" = spark-submit's master, else local[2]
    remote: str = _DEFAULTS.spark_remote        # Spark Connect, e.g. sc://spark-connect.example:15002
    lake: str = _DEFAULTS.spark_lake            # lake URI; "" = the data home's lake
    shuffle_partitions: int = _DEFAULTS.spark_shuffle_partitions
    driver_memory: str = _DEFAULTS.spark_driver_memory
    cache: bool = _DEFAULTS.spark_cache         # persist the as_of-cut payments for the run's repeated scans
    conf: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def resolve(cls, engine_config: EngineConfig, default_lake: str) -> SparkSettings:
        """The `[engine]` section's spark_* keys (the environment is already laid over them by
        `load_config`); an empty lake is the data home's."""
        e = engine_config
        return cls(master=e.spark_master, remote=e.spark_remote, lake=e.spark_lake or default_lake,
                   shuffle_partitions=e.spark_shuffle_partitions, driver_memory=e.spark_driver_memory,
                   cache=e.spark_cache, conf=dict(e.spark_conf))

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

    def record_batches(self, sql: str) -> list[pa.RecordBatch]:
        """(Spark collects a result to the driver whole: the batches of `arrow`.)"""
        return self.arrow(sql).to_batches()

    def register(self, name: str, table: pa.Table) -> None:
        """A driver-side Arrow table as a temporary view (small tables: segments, windows)."""
        self.spark.createDataFrame(table).createOrReplaceTempView(name)
        self._views.add(name)

    def unregister(self, name: str) -> None:
        self.spark.catalog.dropTempView(name)
        self._views.discard(name)

    def create_view(self, name: str, sql: str) -> None:
        self.spark.sql(sql).createOrReplaceTempView(name)
        self._views.add(name)

    def drop_view(self, name: str) -> None:
        self.unregister(name)

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
        if "users" in present:   # the opt-out is the current wish, whatever as_of (stage profiles)
            self._read(lake, "users").createOrReplaceTempView("users_uncut")
            self._views.add("users_uncut")
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
        # ingest: times as DuckDB writes them (instants in microseconds), and a date that does
        # not fit a pattern is NULL (not an error about the pre-Spark-3 parser)
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        "spark.sql.legacy.timeParserPolicy": "CORRECTED",
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


# ---------------------------------------------------------------------- ingest: the lake on Spark

class SparkLake:
    """`behavior ingest --engine spark`: validation SQL, de-duplication against the lake and the
    lake writes on Spark, into the Spark lake URI (any Hadoop path), with the transaction of
    `pipelines.lake` carried out on the lake's Hadoop file system: new files are written under
    `<lake>/_txn/<id>/`, one journal `<lake>/_txn/<id>.commit` lists the moves and deletions,
    then they are done (a journal left by a crash is completed, a staging folder without one
    dropped, by the next ingest; for a local lake also by every command, `pipelines.lake`).

    One lake URI belongs to one data home: there is no lock on the lake itself, only the data
    home's (held by `behavior ingest` around the whole transaction). Opening a SparkLake
    completes or drops every transaction under `<lake>/_txn/`, so two data homes (or hosts)
    writing one `spark_lake` would roll back each other's transactions in flight and lose rows."""

    name = "spark"

    def __init__(self, engine: SparkEngine) -> None:
        self.engine = engine
        self.spark = engine.spark
        if not hasattr(self.spark, "_jvm") or self.spark._jvm is None:
            raise SparkUnavailableError("`behavior ingest --engine spark` needs a Spark session with a JVM in this "
                                        "process (a master or spark-submit), not Spark Connect")
        jvm = self.spark._jvm
        self._Path = jvm.org.apache.hadoop.fs.Path
        path = self._Path(engine.settings.lake)
        self.fs = path.getFileSystem(self.spark._jsc.hadoopConfiguration())
        # a local lake: no .crc file beside each file (the lake holds Parquet and journals only)
        self.fs.setWriteChecksum(False)
        self.root = self.fs.makeQualified(path).toString().rstrip("/")
        self.recover()

    @classmethod
    def open(cls, home: Any, engine_config: Any) -> SparkLake:
        settings = SparkSettings.resolve(engine_config, default_lake=str(home.lake))
        engine = SparkEngine.start(settings)
        try:
            return cls(engine)
        except BaseException:
            engine.close()
            raise

    def describe(self) -> dict:
        return {"name": self.name, **self.engine.settings.describe()}

    # ------------------------------------------------------------------ files

    def uri(self, rel: str) -> str:
        return f"{self.root}/{rel}"

    def _exists(self, rel: str) -> bool:
        return bool(self.fs.exists(self._Path(self.uri(rel))))

    def _files(self, rel: str) -> list[str]:
        """Data files under `rel` (relative paths), without Hadoop's _SUCCESS and .crc files."""
        if not self._exists(rel):
            return []
        out, it = [], self.fs.listFiles(self._Path(self.uri(rel)), True)
        while it.hasNext():
            full = it.next().getPath().toString()
            name = full.rsplit("/", 1)[-1]
            if not (name.startswith(".") or name == "_SUCCESS"):
                out.append(full[len(self.root) + 1:])
        return sorted(out)

    def _write_bytes(self, rel: str, data: bytes) -> None:
        """Write `rel` whole or not at all: to a hidden temporary name, then renamed (a crash
        leaves no cut journal; `_files` and `recover` skip or drop the hidden name)."""
        folder, name = rel.rsplit("/", 1)   # every file written here is in a folder (_txn/...)
        tmp = self._Path(self.uri(f"{folder}/.{name}.{uuid.uuid4().hex[:8]}.tmp"))
        out = self.fs.create(tmp, True)
        try:
            out.write(bytearray(data))
        finally:
            out.close()
        dst = self._Path(self.uri(rel))
        self.fs.delete(dst, False)   # Hadoop's rename does not replace
        if not self.fs.rename(tmp, dst):
            self.fs.delete(tmp, False)
            raise BehaviorError(f"could not rename {tmp.toString()} to {dst.toString()} on the lake's file system")

    def _read_text(self, rel: str) -> str | None:
        """A small file's text, read by the driver with the Hadoop FileSystem (Spark's readers
        skip names starting with `_` or `.`: `_lake.json` read as empty)."""
        if not self._exists(rel):
            return None
        stream = self.fs.open(self._Path(self.uri(rel)))
        try:
            return bytes(self.spark._jvm.org.apache.commons.io.IOUtils.toByteArray(stream)).decode("utf-8")
        finally:
            stream.close()

    def read_meta(self) -> dict:
        text = self._read_text(META)
        return json.loads(text) if text else {}

    def holds(self, name: str) -> bool:
        """Whether the lake holds files of table `name`."""
        return bool(self._files(name))

    # ------------------------------------------------------------------ the transaction

    def recover(self) -> None:
        """Complete committed journals, drop uncommitted staging folders (as `pipelines.lake.recover`)."""
        if not self._exists(TXN):
            return
        entries = [s.getPath() for s in self.fs.listStatus(self._Path(self.uri(TXN)))]
        for p in sorted(entries, key=lambda p: p.getName()):
            if p.getName().endswith(".commit"):
                self._apply(parse_journal(self._read_text(f"{TXN}/{p.getName()}") or "", p.toString()))
                self.fs.delete(self._Path(self.uri(f"{TXN}/{p.getName()[:-len('.commit')]}")), True)
                self.fs.delete(p, False)
        for p in self.fs.listStatus(self._Path(self.uri(TXN))):
            if p.isDirectory() or p.getPath().getName().endswith(".tmp"):   # uncommitted, or a cut temporary
                self.fs.delete(p.getPath(), True)

    def _apply(self, journal: dict) -> None:
        for rel in journal["delete"]:
            self.fs.delete(self._Path(self.uri(rel)), False)
        for src_rel, dst_rel in journal["move"]:
            src, dst = self._Path(self.uri(src_rel)), self._Path(self.uri(dst_rel))
            if self.fs.exists(src):
                self.fs.mkdirs(dst.getParent())
                self.fs.delete(dst, False)
                self.fs.rename(src, dst)
        for rel in journal.get("prune", []):
            d = self._Path(self.uri(rel))
            if self.fs.exists(d) and not self.fs.listStatus(d):
                self.fs.delete(d, False)

    @contextmanager
    def transaction(self) -> Iterator[SparkTransaction]:
        txn = SparkTransaction(self)
        try:
            yield txn
        except BaseException:
            self.fs.delete(self._Path(self.uri(txn.staging)), True)
            raise
        moves = [[f, f[len(txn.staging) + 1:]] for f in self._files(txn.staging)]
        prune = sorted({rel.rsplit("/", 1)[0] for rel in txn.deleted})
        journal = {"id": txn.id, "move": moves, "delete": txn.deleted, "prune": prune}
        self._write_bytes(f"{TXN}/{txn.id}.commit", json.dumps(journal).encode())
        self.recover()

    def write_meta(self, txn: SparkTransaction, meta: dict) -> None:
        self._write_bytes(f"{txn.staging}/{META}", (json.dumps(meta) + "\n").encode())

    # ------------------------------------------------------------------ tables

    def _stored(self, txn: SparkTransaction, spec: Any, columns: list[str]):
        """`columns` of `spec`'s rows in the lake (but files this transaction deletes) and in its
        staging, with `_file`: the file holding each (None: no files yet)."""
        from pyspark.sql import functions as F

        frames = [self.engine._read(root, spec.name) for root in (self.root, self.uri(txn.staging))]
        # the file's URI as the lake's root writes it (file:/..., where input_file_name() gives file:///...)
        frames = [f.select(*columns, F.col("_metadata.file_path").alias("_file")) for f in frames if f is not None]
        if not frames:
            return None
        out = frames[0]
        for f in frames[1:]:
            out = out.unionByName(f)
        if txn.deleted:
            out = out.where(~F.col("_file").isin([self.uri(rel) for rel in txn.deleted]))
        return out

    def append(self, txn: SparkTransaction, spec: Any, accepted: pa.Table, index: int,
               replace: bool = False) -> tuple[int, int]:
        """Store the rows whose key is new to the lake (partitioned by UTC month of paid_at) and,
        with `replace`, the rows whose key is stored with other values in place of the stored
        lines (the files holding those are rewritten without them); returns (stored, replaced)."""
        from pyspark.sql import functions as F

        df = self.spark.createDataFrame(accepted)
        changed = 0
        stored = self._stored(txn, spec, list(spec.names) if replace else list(spec.key))
        if stored is not None and replace:
            df, changed = self._replace(txn, spec, df, stored)
        else:
            if stored is not None:
                # every partition is checked: a corrected paid_at may move a known key to another month
                df = df.join(stored.drop("_file"), on=list(spec.key), how="left_anti").select(*spec.names)
            df = df.persist()
        try:
            n = df.count()
            if n:
                (df.withColumn("month", F.date_format("paid_at", "yyyy-MM")).write.mode("append")
                   .partitionBy("month").option("compression", "zstd").parquet(self.uri(f"{txn.staging}/{spec.name}")))
        finally:
            df.unpersist()
        return n - changed, changed

    def _replace(self, txn: SparkTransaction, spec: Any, df: Any, stored: Any) -> tuple[Any, int]:
        """(the rows to write, persisted: new keys and stored keys with other values; how many of
        the latter); the files holding the latter are rewritten without them into the staging."""
        keys, cols = list(spec.key), list(spec.names)
        stored = stored.selectExpr(*keys, "_file", f"{SPARK.hash_of(cols)} AS _h").persist()
        rows = (df.alias("a").join(stored.alias("s"), on=keys, how="left")
                  .selectExpr(*[f"a.{SPARK.ident.format(c)}" if c not in keys else SPARK.ident.format(c) for c in cols],
                              f"s._h IS NULL OR s._h <> {SPARK.hash_of(['a.' + SPARK.ident.format(c) for c in cols])} "
                              "AS _write", "s._h IS NOT NULL AS _stored")
                  .where("_write"))
        out = rows.select(*cols).persist()
        try:
            out.count()   # computed before a staged file it reads is deleted below
            changed = rows.where("_stored").select(*keys).persist()
            n = changed.count()
            files = [r["_file"] for r in stored.join(changed, on=keys, how="left_semi").select("_file").distinct()
                     .orderBy("_file").collect()] if n else []
            for k, name in enumerate(files):
                rel = name[len(self.root) + 1:]
                staged = rel.startswith(txn.staging + "/")
                folder = rel.rsplit("/", 1)[0]
                if staged:
                    folder = folder[len(txn.staging) + 1:]
                kept = self.spark.read.parquet(name).join(changed, on=keys, how="left_anti").persist()
                if kept.count():
                    kept.coalesce(1).write.mode("append").option("compression", "zstd").parquet(
                        self.uri(f"{txn.staging}/{folder}"))
                kept.unpersist()
                if staged:
                    self.fs.delete(self._Path(name), False)
                else:
                    txn.deleted.append(rel)
            changed.unpersist()
            return out, n
        finally:
            stored.unpersist()
    def upsert(self, txn: SparkTransaction, spec: Any, new: pa.Table) -> None:
        """The stored table plus the new rows, a new row replacing a stored one with its key."""
        old_files = self._files(spec.name)
        old = self.engine._read(self.root, spec.name) if old_files else None
        self.engine.register("_new", with_positions(new))
        if old is not None:
            old.createOrReplaceTempView("_old")
        try:
            merged = self.spark.sql(dimension_merge_sql(spec, "_old" if old is not None else None, "_new", SPARK))
            merged.coalesce(1).write.mode("append").option("compression", "zstd").parquet(
                self.uri(f"{txn.staging}/{spec.name}"))
        finally:
            self.engine.unregister("_new")
            self.spark.catalog.dropTempView("_old")
        txn.deleted += old_files

    def write_quarantine(self, txn: SparkTransaction, spec: Any, table: pa.Table, index: int) -> None:
        """The rejected rows of one file (on the driver already: they are few) as one Parquet file."""
        import pyarrow.parquet as pq

        buf = io.BytesIO()
        pq.write_table(table, buf)
        self._write_bytes(f"{txn.staging}/_rejected/{spec.name}/part-{txn.id}-{index}.parquet", buf.getvalue())

    def close(self) -> None:
        self.engine.close()


class SparkTransaction:
    """A transaction of a `SparkLake`: its id, its staging folder (relative to the lake) and
    the lake files it replaces."""

    def __init__(self, lake: SparkLake) -> None:
        self.id = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]
        self.staging = f"{TXN}/{self.id}"
        self.deleted: list[str] = []
        lake.fs.mkdirs(lake._Path(lake.uri(self.staging)))


__all__ = ["SparkEngine", "SparkLake", "SparkSettings", "SparkUnavailableError"]
