"""Both engines side by side on the same lake: the feature table (the same SQL text) on DuckDB
and on Spark, in one process, alternating, `repeat` times each.

    python -m pipelines.bench.engines --lines 1000000 --repeat 2 [--work DIR] [--master local[2]]
    python -m pipelines.bench.engines --step ingest --lines 1000000 --repeat 2

`--step ingest` times `ingest` of the same Parquet file (`pipelines.bench.payments.make_payments`)
into a new data home per run, per engine (alternating; the Spark session started once,
one untimed warm-up ingest per engine), and checks both stored the same number of rows.

The lake is `pipelines.bench.payments.make_payments` (users = lines / 10) ingested into a data home
under --work (made once, reused). DuckDB runs with 2 threads; Spark with the given master
(default local[2]) and 4 shuffle partitions, its session started once before the runs (the
start-up is reported apart), then one untimed warm-up run per engine (a JVM's first query
also loads and compiles classes; reported as `warmup_seconds`). Each run computes the table
and brings it to the driver as Arrow, which is what the stage does. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path


def run(lines: int, repeat: int, work: Path, master: str) -> dict:
    from pipelines.bench.suites import _bench_lake
    from pipelines.config import Config, EngineConfig
    from behavior.store.datahome import DataHome
    from pipelines.runner import open_context
    from pipelines.stages import features

    home = DataHome(_bench_lake(work, lines, lambda m: print(m, flush=True)))
    cfg = Config(engine=EngineConfig(duckdb_threads=2, spark_master=master, spark_cache=False))
    t = time.perf_counter()
    spark = open_context(home, cfg, None, "spark")
    start = time.perf_counter() - t
    duck = open_context(home, cfg, None)
    runs: dict[str, list[float]] = {"duckdb": [], "spark": []}
    users, warmup = {}, {}
    for name, ctx in (("duckdb", duck), ("spark", spark)):
        t = time.perf_counter()
        features.run(ctx)
        ctx.user_parts.close()   # (each timed run writes its own parts, as a run does)
        warmup[name] = round(time.perf_counter() - t, 2)
        print(name, "warm-up", warmup[name], flush=True)
    for _ in range(repeat):
        for name, ctx in (("duckdb", duck), ("spark", spark)):
            t = time.perf_counter()
            users[name] = features.run(ctx).output.num_rows
            ctx.user_parts.close()
            runs[name].append(round(time.perf_counter() - t, 2))
            print(name, runs[name][-1], flush=True)
    spark.engine.close()
    return {"lines": lines, "users": users, "spark_master": master, "spark_start_seconds": round(start, 2),
            "warmup_seconds": warmup,
            "runs_seconds": runs, "median_seconds": {k: statistics.median(v) for k, v in runs.items()}}


def run_ingest(lines: int, repeat: int, work: Path, master: str) -> dict:
    import shutil

    import pyarrow.parquet as pq

    from pipelines.bench.payments import make_payments
    from behavior.store.datahome import DataHome
    from pipelines.engines.spark import SparkEngine, SparkSettings
    from pipelines.ingest import IngestOptions, ingest

    source = work / f"raw-{lines}.parquet"
    if not source.exists():
        pq.write_table(make_payments(lines, seed=1), source)
    t = time.perf_counter()
    engine = SparkEngine.start(SparkSettings(master=master))
    start = time.perf_counter() - t
    runs: dict[str, list[float]] = {"duckdb": [], "spark": []}
    stored, warmup = {}, {}
    try:
        for i in range(repeat + 1):
            for name in ("duckdb", "spark"):
                home = DataHome(work / f"ingest-{name}")
                shutil.rmtree(home.root, ignore_errors=True)
                t = time.perf_counter()
                rep = ingest(home, [source], IngestOptions(defaults={"currency": "EUR"}), engine=name)
                seconds = round(time.perf_counter() - t, 2)
                stored[name] = rep["accepted"]
                if i == 0:
                    warmup[name] = seconds
                else:
                    runs[name].append(seconds)
                print(name, "warm-up" if i == 0 else "", seconds, flush=True)
    finally:
        engine.close()
    if stored["duckdb"] != stored["spark"]:
        raise RuntimeError(f"the engines stored different row counts: {stored}")
    return {"step": "ingest parquet", "lines": lines, "stored": stored["duckdb"], "spark_master": master,
            "spark_start_seconds": round(start, 2), "warmup_seconds": warmup, "runs_seconds": runs,
            "median_seconds": {k: statistics.median(v) for k, v in runs.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("--step", choices=("features", "ingest"), default="features")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-engines-"))
    work.mkdir(parents=True, exist_ok=True)
    step = run_ingest if args.step == "ingest" else run
    print(json.dumps(step(args.lines, args.repeat, work, args.master), indent=2))


if __name__ == "__main__":
    main()
