"""`behavior bench accuracy`: every model a bundle serves against its baselines, with intervals,
on synthetic data and on real data, as one markdown table.

Each data set goes through the real command line in a fresh data home of its own: `behavior
synth` (synthetic only), `behavior ingest` (with the column mapping of the export), `behavior
run --report`. Its rows are read from the run report (`behavior.accuracy.report_rows`: the
stages' `selection` sections, or what they report without one, or why a stage was skipped). On
the real data the run stops at an as_of inside the history, and the future after it is held out
for the forward checks of `behavior.accuracy_forward` (the served churn probability against the
BG/NBD baselines, and BG/NBD's expected against actual purchases).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

import duckdb
import pandas as pd
import pyarrow.parquet as pq

from behavior.accuracy import report_rows
from behavior.accuracy_forward import forward_rows
from behavior.errors import InputError
from behavior.features import btyd_summary
from behavior.store.bundle import PROFILES
from behavior.store.datahome import DataHome
from pipelines.bench.datasets import RealData, cdnow_export, donations_export, export_history
from pipelines.lake import scan_sql

REPO = Path(__file__).resolve().parents[2]
REAL_DATA = REPO / "tests" / "fixtures" / "real"
EXPORTS = REPO / "tests" / "fixtures" / "exports"
DATASETS = ("synthetic", "cdnow", "donations", "exports")
MIN_EXPORT_ROWS = 1_000   # an export fixture with fewer rows is listed, not run: no model can be judged on it


def _behavior(home: Path, *args: str) -> str:
    """Run the `behavior` command line in a fresh process on `home`; its stdout."""
    cmd = [sys.executable, "-c", "from pipelines.cli import main; main()", "--data-dir", str(home), *args]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"`behavior {' '.join(args)}` failed (exit {out.returncode}):\n{out.stderr[-2000:]}")
    return out.stdout


def _run(home: Path, as_of: str | None) -> dict:
    report = home / "run_report.json"
    _behavior(home, "run", "--report", str(report), *(("--as-of", as_of) if as_of else ()))
    return json.loads(report.read_text())


def _summary(home: Path, as_of: str, days: int) -> pd.DataFrame:
    """The BTYD summary at as_of from the lake (all of it, the future included) with each
    customer's days with a successful purchase in [as_of, as_of + days)."""
    start = datetime.fromisoformat(as_of).replace(tzinfo=timezone.utc)
    end = start + timedelta(days=days)
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute(f"CREATE VIEW lake_payments AS SELECT * FROM {scan_sql(home / 'lake', 'payments')}")
        summary = btyd_summary(con, "lake_payments", start).to_pandas()
        future = con.execute(
            "SELECT user_id, count(DISTINCT CAST(paid_at AS DATE)) AS holdout FROM lake_payments "
            "WHERE status = 'success' AND paid_at >= ? AND paid_at < ? GROUP BY user_id",
            [start, end]).df()
    finally:
        con.close()
    out = summary.merge(future, on="user_id", how="left")
    out["holdout"] = out["holdout"].fillna(0)
    return out


def _served_churn(report: dict, home: Path, users: pd.Series) -> pd.Series | None:
    profiles = DataHome(home).bundles / report["bundle_version"] / PROFILES.file
    table = pq.read_table(profiles, columns=["user_id", "churn_probability"]).to_pandas()
    return users.map(table.set_index("user_id")["churn_probability"])


def _real(data: RealData, work: Path, progress: Callable[[str], None]) -> dict:
    home = work / data.name.lower()
    shutil.rmtree(home, ignore_errors=True)
    progress(f"{data.name}: ingest and run as of {data.as_of}")
    _behavior(home, "ingest", str(data.path), *data.ingest_args)
    report = _run(home, data.as_of)
    rows = report_rows(report)
    summary = _summary(home, data.as_of, data.forward_days)
    forward, totals = forward_rows(summary, _served_churn(report, home, summary["user_id"]), data.forward_days)
    return {"dataset": data.name, "describe": data.describe, "rows": rows + forward, "holdout": totals,
            "churn_horizon": report.get("churn", {}).get("horizon"), "notes": list(data.notes)}


def _synthetic(users: int, work: Path, progress: Callable[[str], None]) -> dict:
    home = work / "synthetic"
    shutil.rmtree(home, ignore_errors=True)
    progress(f"synthetic: {users:,} users, synth, ingest and run")
    src = work / "synthetic-files"
    _behavior(home, "synth", "--out", str(src), "--users", str(users), "--months", "24", "--seed", "0")
    _behavior(home, "ingest", str(src))
    report = _run(home, None)
    return {"dataset": "synthetic", "describe": f"synthetic, {users:,} users, 24 months, seed 0",
            "rows": report_rows(report), "churn_horizon": report.get("churn", {}).get("horizon"), "notes": []}


def _exports(folder: Path) -> dict:
    sizes = {p.name: export_history(p) for p in sorted(folder.iterdir()) if p.is_file()}
    short = {n: r for n, r in sizes.items() if r < MIN_EXPORT_ROWS}
    rows = []
    if short:
        rows.append({"stage": "all", "skipped": f"{len(short)} files of {min(short.values())} to "
                                                f"{max(short.values())} rows, too little history to judge a model "
                                                f"(at least {MIN_EXPORT_ROWS:,} rows needed; {', '.join(short)})"})
    return {"dataset": "exports", "describe": f"the export shapes of {folder}", "rows": rows, "notes": []}


def run_accuracy(work: Path | None, *, users: int = 20_000, datasets: tuple[str, ...] = DATASETS,
                 real_data: Path = REAL_DATA, exports: Path = EXPORTS,
                 progress: Callable[[str], None] = lambda _: None) -> list[dict]:
    """One result per data set: {dataset, describe, rows, notes[, holdout][, churn_horizon] (the run
    report's `churn.horizon`), seconds}."""
    unknown = [d for d in datasets if d not in DATASETS]
    if unknown:
        raise InputError(f"unknown data set {', '.join(unknown)}; choose among {', '.join(DATASETS)}")
    tmp = None
    if work is None:
        tmp = tempfile.mkdtemp(prefix="behavior-accuracy-")
        work = Path(tmp)
    work.mkdir(parents=True, exist_ok=True)
    results = []
    try:
        for name in datasets:
            t0 = time.perf_counter()
            if name == "synthetic":
                res = _synthetic(users, work, progress)
            elif name == "cdnow":
                res = _real(cdnow_export(real_data / "CDNOW_sample.txt", work / "cdnow_orders.csv"), work, progress)
            elif name == "donations":
                res = _real(donations_export(real_data / "donations.csv", work / "donations_gifts.csv"), work, progress)
            else:
                res = _exports(exports)
            res["seconds"] = round(time.perf_counter() - t0, 1)
            results.append(res)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return results


def _short(why: str, limit: int = 110) -> str:
    """The first clause of a reason, for a table cell (the JSON output keeps it whole)."""
    head = why.split(";")[0].split(" (")[0]
    return head if len(head) <= limit else head[:limit - 1] + "…"


def _num(v: float | None) -> str:
    return "" if v is None else f"{v:.3f}"


def format_accuracy(results: list[dict]) -> str:
    """The markdown table (one row per candidate or skipped stage), then the holdout lines."""
    lines = ["| data set | stage | metric | candidate | value | 95% interval | served | from |",
             "|---|---|---|---|---:|---|---|---|"]
    for res in results:
        for row in res["rows"]:
            if "skipped" in row:
                lines.append(f"| {res['dataset']} | {row['stage']} | | skipped: {_short(row['skipped'])} | | | | |")
                continue
            name = row["candidate"] + (" (baseline)" if row["baseline"] else "")
            interval = f"{row['low']:.3f} to {row['high']:.3f}" if row["low"] is not None else ""
            lines.append(f"| {res['dataset']} | {row['stage']} | {row['metric']} | {name} | {_num(row['value'])} | "
                         f"{interval} | {'yes' if row['served'] else ''} | {row['source']} |")
    lines.append("")
    for res in results:
        lines.append(f"- {res['dataset']}: {res['describe']} ({res['seconds']:.0f} s)")
        h = res.get("holdout")
        if h:
            fit = "BG/NBD could not be fitted"
            if h["expected"] is not None:
                err = 100 * (h["expected"] - h["actual"]) / max(h["actual"], 1)
                fit = f"BG/NBD expected {h['expected']:,.0f} repeat purchases"
            lines.append(f"  holdout of {h['horizon_days']} days after as_of: {fit}, actual {h['actual']:,}"
                         + (f" ({err:+.1f}%)" if h["expected"] is not None else "")
                         + f"; {h['churned']:,} of {h['customers']:,} customers made none")
        horizon = res.get("churn_horizon")
        if horizon:
            lines.append(f"  churn horizon {horizon['days']} days: {horizon['reason']}")
        lines += [f"  note: {n}" for n in res["notes"]]
    return "\n".join(lines)
