"""`behavior run`: named stages in dependency order, then publish a bundle (made CURRENT
only when every stage was run, i.e. not a `--stages` run).

Each stage returns a `StageResult` (pipelines/stage.py); the runner keeps its output for the
stages after it and collects its artifacts (checked against the catalogue's producing stage)
and report section, then publishes them through the store.

A stage that cannot work on the data it gets (one product, a history shorter than its
evaluation periods, ...) raises `StageSkipped` with the reason: the run goes on without its
output, the report's `stages.<stage>` and the stage's own section say `"skipped": "<why>"`,
and the bundle holds what the other stages built (the API answers the missing part with a
503 that carries the reason). A stage whose required input stage was skipped is skipped too.
Any other error still fails the run.

Point in time: stages see the lake only through the views of their `StageContext`
(`payments`, `users`, `items`, `promotions`, `assignments`), which hold only rows before
`as_of`. A stage cannot read an event at or after as_of because it is not in its views.

Engines: the log-level SQL of a stage goes through `ctx.engine` (a `SqlEngine`), DuckDB over
`ctx.con` by default; with `engine="spark"` (`behavior run --engine spark`, or `[engine]
name`) it is a `pipelines.engines.spark.SparkEngine` whose views over the lake are cut at
as_of the same way. `ctx.con` stays a DuckDB connection for per-user work on the driver.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import duckdb
import pyarrow as pa

from behavior.errors import AsOfError, BehaviorError
from behavior.store.bundle import Artifact
from behavior.store.datahome import DataHome
from pipelines.config import Config
from pipelines.engines import duckdb_connection
from pipelines.forget import purge_if_needed
from pipelines.inbox_ingest import ingest_inbox
from pipelines.lake import locked, scan_sql, table_files
from pipelines.publish import publish
from pipelines.report_html import MonthlyFigures
from pipelines.stage import TIME_COLUMNS, UNCUT_USERS, Stage, StageContext, StageResult, StageSkipped
from pipelines import stages as registry   # read as registry.STAGES at each run: tests swap stages in
from pipelines.stages.recommend_spark import require_spark


def plan(stages: dict[str, Stage], selected: list[str] | None) -> list[str]:
    """The stages to run in dependency order: `selected` plus their prerequisites."""
    wanted = list(stages) if not selected else selected
    unknown = [s for s in wanted if s not in stages]
    if unknown:
        raise BehaviorError(f"unknown stage {', '.join(unknown)}; the stages are: {', '.join(stages)}")
    order: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in order:
            return
        if name in visiting:
            raise AssertionError(f"stage cycle through {name}")
        visiting.add(name)
        for dep in stages[name].needs:
            visit(dep)
        visiting.discard(name)
        order.append(name)

    for s in wanted:
        visit(s)
    return order


def default_as_of(con: duckdb.DuckDBPyConnection, home: DataHome) -> datetime:
    """The day after the last payment (00:00 UTC)."""
    last = con.execute(f"SELECT max(paid_at) FROM {scan_sql(home.lake, 'payments')}").fetchall()[0][0]
    day = last.astimezone(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    return day + timedelta(days=1)




def _duckdb_views(con: duckdb.DuckDBPyConnection, home: DataHome, as_of: datetime) -> set[str]:
    present = set()
    for name, col in TIME_COLUMNS.items():
        if not table_files(home.lake, name):
            continue
        where = f" WHERE {col} < TIMESTAMPTZ '{as_of.isoformat()}'" if col else ""
        if col and name != "payments":
            where += f" OR {col} IS NULL"
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM {scan_sql(home.lake, name)}{where}")
        present.add(name)
    if "users" in present:   # the opt-out is the current wish, whatever as_of (stage profiles)
        con.execute(f"CREATE VIEW {UNCUT_USERS} AS SELECT * FROM {scan_sql(home.lake, 'users')}")
    return present


def _open_spark(home: DataHome, config: Config, as_of: datetime | None) -> StageContext:
    from pipelines.engines.spark import SparkEngine, SparkSettings

    settings = SparkSettings.resolve(config.engine, default_lake=str(home.lake))
    engine = SparkEngine.start(settings)
    try:
        first, last = engine.payment_range(settings.lake)
        day = last.astimezone(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
        as_of = as_of or day + timedelta(days=1)
        if as_of <= first:
            raise AsOfError(f"--as-of {as_of.date()} is on or before the first payment ({first.date()}); "
                            "nothing before it to learn from: choose a later date")
        present = engine.lake_views(settings.lake, as_of, TIME_COLUMNS)
        con = duckdb_connection(config.engine, home)
        if table_files(home.lake, "payments"):   # the same lake on this machine: DuckDB views too
            _duckdb_views(con, home, as_of)
        return StageContext(home=home, config=config, as_of=as_of, con=con, tables=present, engine=engine,
                            per_user=_per_user())
    except BaseException:
        engine.close()
        raise


def open_context(home: DataHome, config: Config, as_of: datetime | None,
                 engine: str | None = None) -> StageContext:
    if (engine or config.engine.name) == "spark":
        return _open_spark(home, config, as_of)
    if not table_files(home.lake, "payments"):
        raise BehaviorError(f"the lake at {home.lake} has no payments; run `behavior ingest` first")
    con = duckdb_connection(config.engine, home)
    as_of = as_of or default_as_of(con, home)
    first = con.execute(f"SELECT min(paid_at) FROM {scan_sql(home.lake, 'payments')}").fetchall()[0][0]
    if as_of <= first:
        raise AsOfError(f"--as-of {as_of.date()} is on or before the first payment ({first.date()}); "
                        "nothing before it to learn from: choose a later date")
    present = _duckdb_views(con, home, as_of)
    return StageContext(home=home, config=config, as_of=as_of, con=con, tables=present, per_user=_per_user())


def _per_user() -> tuple[str, ...]:
    return tuple(name for name, stage in registry.STAGES.items() if stage.per_user)


def _rows(output: Any) -> int | None:
    if isinstance(output, pa.Table):
        return output.num_rows
    if hasattr(output, "__len__"):
        return len(output)
    return None


def _engine_section(ctx: StageContext, order: list[str]) -> dict:
    """Which stages read the lake on which engine (report key `engine`)."""
    name = ctx.engine.name
    section: dict[str, Any] = {"name": name,
                               f"{name}_stages": [s for s in order if registry.STAGES[s].log_level],
                               "driver_stages": [s for s in order if not registry.STAGES[s].log_level]}
    if name == "spark":
        section["duckdb_stages"] = []    # nothing reads the lake with DuckDB any more
        section.update(ctx.engine.settings.describe())
    return section


class _Run:
    """What the stages of one run made: the report sections and the bundle's artifacts."""

    def __init__(self) -> None:
        self.report: dict[str, Any] = {}
        self.artifacts: dict[Artifact, Any] = {}


def _run_stage(stage: Stage, ctx: StageContext, run: _Run) -> dict:
    """Run one stage; keep its output in `ctx.outputs` and its artifacts and report section in
    `run`; its `stages` entry of the report. A skipped stage leaves no output and no artifact,
    and its report section says why."""
    t0 = time.perf_counter()
    try:
        dep = stage.missing_input(ctx.outputs)
        if dep is not None:
            raise StageSkipped(f"it needs the output of the {dep} stage, which was skipped "
                               f"({run.report[dep]['skipped']})")
        result = stage.run(ctx)
    except StageSkipped as exc:
        why = str(exc)
        section = exc.report
        section["skipped"] = why
        section.setdefault("notes", []).append(f"{stage.name} skipped: {why}")
        run.report[stage.name] = section
        return {"seconds": round(time.perf_counter() - t0, 3), "rows": None, "skipped": why}
    if not isinstance(result, StageResult):
        raise TypeError(f"stage {stage.name} returned a {type(result).__name__}, not a StageResult")
    wrong = [a.file for a in result.artifacts if a.stage != stage.name]
    if wrong:
        raise AssertionError(f"stage {stage.name} made {', '.join(wrong)}, which the catalogue gives to another stage")
    ctx.outputs[stage.name] = result.output
    run.artifacts.update(result.artifacts)
    if result.report is not None:
        run.report[stage.name] = result.report
    return {"seconds": round(time.perf_counter() - t0, 3), "rows": _rows(result.output)}


def run_pipeline(home: DataHome, config: Config, *, as_of: datetime | None = None,
                 stages: list[str] | None = None, progress: Callable[[str], None] = lambda _: None,
                 engine: str | None = None, on_stage: Callable[[dict], None] | None = None) -> dict:
    """Run the stages and publish a bundle; returns the run report. `engine` ("duckdb" or
    "spark") overrides the config's `[engine] name`. `progress` gets progress messages (the
    stages' own included); `on_stage` gets {"event": "stage_start", "stage", "index", "of"} before
    each stage and {"event": "stage_end", "stage", "seconds", "rows"[, "skipped"]} after it
    (without it, each start is a progress message "[i/n] stage")."""
    order = plan(registry.STAGES, stages)
    if "recommend" in order:   # before any stage runs: a trainer the engine cannot run is a usage error
        require_spark(config.recommend.trainer, engine or config.engine.name)
    run_id = uuid.uuid4().hex[:12]
    inbox = ingest_inbox(home, progress=progress, config=config)   # the notifications first: the bundle holds them
    with locked(home, "run"):
        erased = purge_if_needed(home)
        if (engine or config.engine.name) == "spark":
            progress("starting Spark")
        ctx = open_context(home, config, as_of, engine)
        ctx.progress = progress
        report: dict[str, Any] = {"run_id": run_id, "as_of": ctx.as_of.isoformat(), "bundle_version": None,
                                  "time_unit": "day", "stages": {}}
        made = _Run()
        monthly = None   # the report page's monthly figures, made beside the stages once the user parts are written
        try:   # the user parts stay until the bundle is published: the report page's monthly figures read them
            try:
                for i, name in enumerate(order, start=1):
                    if on_stage is None:
                        progress(f"[{i}/{len(order)}] {name}")
                    else:
                        on_stage({"event": "stage_start", "stage": name, "index": i, "of": len(order)})
                    report["stages"][name] = _run_stage(registry.STAGES[name], ctx, made)
                    if on_stage is not None:
                        on_stage({"event": "stage_end", "stage": name, **report["stages"][name]})
                    if monthly is None and ctx.engine.name == "duckdb" and ctx.user_parts is not None \
                            and ctx.user_parts.written:
                        monthly = MonthlyFigures(ctx.con, ctx.user_parts)
            finally:
                if ctx.engine.name != "duckdb":
                    ctx.engine.close()
            report.update(made.report)
            report["engine"] = _engine_section(ctx, order)
            if inbox["ingest_id"] is not None:
                report["inbox"] = {k: inbox[k] for k in ("ingest_id", "read", "accepted", "duplicates", "rejected")}
            if erased:
                report["erasure"] = {"lake_rows": erased["lake_rows"], "quarantine_rows": erased["quarantine_rows"],
                                     "bundles": len(erased["bundles"])}
            progress("publishing the bundle")
            # Only a run of every stage makes a complete bundle; a partial run (--stages) writes
            # its bundle folder for inspection but leaves CURRENT, and so what is served, alone.
            publish(home, ctx, made.artifacts, report, activate=set(order) == set(registry.STAGES), monthly=monthly)
        finally:
            if monthly is not None:
                monthly.stop()   # (a failed run: its query is interrupted before the parts go)
            if ctx.user_parts is not None:
                ctx.user_parts.close()
        ctx.con.close()
    return report
