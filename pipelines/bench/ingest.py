"""`behavior bench ingest`: `behavior ingest` beside its floor, for CSV and Parquet inputs.

The floor is DuckDB's own COPY of the same file into the same month-partitioned, zstd
Parquet layout (`COPY (SELECT *, month FROM read_csv / read_parquet) TO ... (PARTITION_BY
month)`), on a connection with ingest's DuckDB settings (`pipelines.ingest.ingest_connection`,
ingest's memory cap included): reading and writing the lines with no checks. Per size and
format, ingest (into a fresh lake) and the floor run alternately `repeat` times, each in a fresh
process; the row gives both medians, both peaks and their ratio, beside the target (issue 25:
ingest <= 1.5x the floor), and the ratio of their CPU seconds (all threads), which a shared
machine's load distorts less.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Callable

import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from behavior.csv_safety import neutralize_formulas
from pipelines.bench.child import measure

TARGET_RATIO = 1.5
FORMATS = ("csv", "parquet")

INGEST = """
from pathlib import Path
from behavior.store.datahome import DataHome
from pipelines.ingest import IngestOptions, ingest
t, cpu = time.perf_counter(), time.process_time()
rep = ingest(DataHome(Path(sys.argv[1])), [Path(sys.argv[2])], IngestOptions(defaults={"currency": "EUR"}))
res = {"seconds": time.perf_counter() - t, "cpu": time.process_time() - cpu, "stored": rep["accepted"]}
"""

_FLOOR = """
from pathlib import Path
from behavior.sql_dialect import DUCKDB
from behavior.store.datahome import DataHome
from pipelines.config import EngineConfig
from pipelines.ingest import ingest_connection
home, src = DataHome(Path(sys.argv[1])), sys.argv[2]
(home.lake / "payments").mkdir(parents=True)
home.spill.mkdir(parents=True, exist_ok=True)
con = ingest_connection(EngineConfig(), home)
reader = "read_parquet" if src.endswith(".parquet") else "read_csv"
t, cpu = time.perf_counter(), time.process_time()
con.execute(f"COPY (SELECT *, strftime(paid_at, '%Y-%m') AS month FROM {reader}({DUCKDB.literal(src)})) "
            f"TO {DUCKDB.literal(str(home.lake / 'payments'))} (FORMAT parquet, PARTITION_BY (month), COMPRESSION zstd)")
seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
stored = con.sql(f"SELECT count(*) FROM read_parquet({DUCKDB.literal(str(home.lake / 'payments' / '*' / '*.parquet'))})").fetchall()[0][0]
res = {"seconds": seconds, "cpu": cpu, "stored": stored}
"""


def write_inputs(work: Path, lines: int) -> dict[str, Path]:
    """The benchmark's payment lines (`pipelines.bench.payments.make_payments`) as CSV and Parquet."""
    from pipelines.bench.payments import make_payments

    table = make_payments(lines)
    paths = {"parquet": work / f"payments-{lines}.parquet", "csv": work / f"payments-{lines}.csv"}
    pq.write_table(table, paths["parquet"])
    pacsv.write_csv(neutralize_formulas(table), paths["csv"])
    return paths


def bench_ingest(sizes: list[int], repeat: int, work: Path,
                 progress: Callable[[str], None] = lambda _: None) -> list[dict]:
    """One row per (size, format): ingest's median seconds and peak, the floor's, their ratio
    and whether it is within TARGET_RATIO. Both must store every line of the file."""
    rows = []
    for lines in sizes:
        progress(f"making {lines:,} payment lines")
        paths = write_inputs(work, lines)
        for fmt in FORMATS:
            home = work / f"home-{fmt}"
            runs = measure({"ingest": (INGEST, str(home), str(paths[fmt])),
                            "DuckDB COPY": (_FLOOR, str(home), str(paths[fmt]))},
                           repeat=repeat, label=f"ingest {fmt} {lines:,} lines", progress=progress, fresh=home)
            for name, done in runs.items():
                if any(r["stored"] != lines for r in done):
                    raise RuntimeError(f"{name} of {paths[fmt]} stored {[r['stored'] for r in done]} of {lines:,} lines")
            rows.append(ingest_row(f"ingest {fmt}", lines, runs["ingest"], runs["DuckDB COPY"]))
        for path in paths.values():
            path.unlink(missing_ok=True)
    return rows


def ingest_row(step: str, lines: int, ingest: list[dict], floor: list[dict]) -> dict:
    """The row of one (size, format) from the runs of ingest and of the floor."""
    secs = statistics.median(r["seconds"] for r in ingest)
    floor_s = statistics.median(r["seconds"] for r in floor)
    ratio = secs / floor_s
    return {"step": step, "lines": lines, "runs": len(ingest), "seconds": round(secs, 3),
            "lines_per_s": int(lines / secs), "peak_mb": max(r["peak_mb"] for r in ingest),
            "floor_seconds": round(floor_s, 3), "floor_peak_mb": max(r["peak_mb"] for r in floor),
            "ratio": round(ratio, 2), "target": f"<= {TARGET_RATIO}x DuckDB's COPY",
            "met": ratio <= TARGET_RATIO, **_cpu(ingest, floor)}


def _cpu(ingest: list[dict], floor: list[dict]) -> dict:
    """The median CPU seconds of both and their ratio, where the runs measured them."""
    if not all("cpu" in r for r in ingest + floor):
        return {}
    cpu, floor_cpu = statistics.median(r["cpu"] for r in ingest), statistics.median(r["cpu"] for r in floor)
    return {"cpu_s": round(cpu, 3), "floor_cpu_s": round(floor_cpu, 3), "cpu_ratio": round(cpu / floor_cpu, 2)}
