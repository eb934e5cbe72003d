"""`behavior ingest`: validate input files, quarantine bad rows, append the rest to the lake.

Every input row ends in exactly one place: stored in the lake, counted as a duplicate of a
row stored already (same key), or in the quarantine (`lake/_rejected/<table>/`) with its
source file, row number, reason and its values (card numbers masked; a row of an erased
user, reason `erased_user`, keeps no values at all). With `replace` (`behavior ingest
--replace`) a row whose key is stored with other values replaces the stored line (counted as
`replaced`): read = accepted (stored as new) + replaced + duplicates + rejected. Everything one
call ingests is committed in one transaction: all of it, or nothing.

The lake's reporting currency is fixed by the first ingest of payments, never silently
(`pipelines.lake_currency`).

Engines (`engine=` / `behavior ingest --engine`): files are read on the driver by
`pipelines.readers` (format, encoding, delimiter, header and malformed-record detection need
the file's bytes; one definition for both engines). The rows then go, as Arrow, to the
engine, which runs the validation SQL (`behavior.validate`, one text rendered per dialect),
derives line numbers, drops keys the lake holds already and writes the lake. On the DuckDB
engine, a payments file that DuckDB reads exactly as `pipelines.readers` does (most: see
`pipelines.ingest_direct`) is read, checked and written by DuckDB itself, the same SQL on
the same layout, with the same lake and quarantine and only the rejected rows coming back:

- `duckdb` (default): in this process, into the data home's `lake/` (`LocalLake`).
- `spark`: Spark (`pipelines.engines.spark.SparkLake`), into the Spark lake URI (`[engine]
  spark_lake` / `BEHAVIOR_SPARK_LAKE`, any Hadoop path; default the data home's `lake/`),
  with the same staging + journal transaction on the lake's Hadoop file system.

Each file's rows pass through the driver (read there, rejected rows and accounting come
back there), so one file must fit the driver's memory; the lake it is checked against and
written to need not.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from behavior.errors import InputError
from behavior.parsing import NA_VALUES, check_date_format
from behavior.pii import erased_id_hashes_sql, mask_card_numbers
from behavior.schema import TABLES, Table, table
from behavior.store import opt_outs
from behavior.sql_dialect import DUCKDB, DuckDBEngine
from behavior.validate import ROW, ParseOptions, Validated, _q, id_text_sql, resolve_columns, validate
from behavior.store import erasure_log
from behavior.store.datahome import DataHome
from pipelines.engines import duckdb_connection
from pipelines.ingest_report import NO_AMOUNT, column_report, rejection_examples
from pipelines.lake import META, Transaction, locked, read_meta, table_files, transaction
from pipelines.lake_currency import first_currency, first_currency_of
from pipelines.lake_months import write_months
from pipelines.dimension_merge import dimension_merge_sql, with_positions
from pipelines.local_replace import changed_and_new, drop_keys
from pipelines.readers import FORMATS, Source, read_source
from pipelines.ingest_direct import Declined, DirectSource, direct_source, ingest_direct, loaded


@dataclass
class IngestOptions:
    table: str = "payments"
    mapping: dict[str, str] = field(default_factory=dict)
    defaults: dict[str, str] = field(default_factory=dict)
    dayfirst: bool = False
    date_format: str | None = None
    encoding: str | None = None
    header: bool | None = None
    delimiter: str | None = None
    na_values: tuple[str, ...] = NA_VALUES   # texts that mean "no value" in every column
    replace: bool = False   # a row whose key is stored with other values replaces the stored line
    direct: bool = True     # read, check and write inside DuckDB where that is exact (`pipelines.ingest_direct`)


def expand(paths: list[Path], default_table: str) -> list[tuple[Path, Table]]:
    """Files to ingest with their tables. A folder contributes its files named after a table
    (`payments.parquet`, `users.csv`, ...), as `behavior synth` writes them."""
    out: list[tuple[Path, Table]] = []
    for p in paths:
        if p.is_dir():
            found = [(f, TABLES[f.stem]) for f in sorted(p.iterdir())
                     if f.is_file() and f.stem in TABLES and f.suffix.lower() in FORMATS]
            if not found:
                raise InputError(f"{p}: no file named after a table ({', '.join(TABLES)}) with a known "
                                 "extension; pass the files themselves with --table")
            # Dimension tables first so that payments can be checked against them later.
            out += sorted(found, key=lambda ft: ft[1].name == "payments")
        else:
            out.append((p, table(default_table)))
    return out


def ingest(home: DataHome, paths: list[Path], opts: IngestOptions,
           progress: Callable[[str], None] = lambda _: None, engine: str | None = None,
           config: Any = None) -> dict:
    """Ingest `paths`; returns the report (see README: ingest report). `engine` ("duckdb" or
    "spark") overrides `config.engine.name` (a `pipelines.config.Config`; default duckdb)."""
    started = time.perf_counter()
    if opts.date_format:
        check_date_format(opts.date_format)
    files = expand(paths, opts.table)
    with locked(home, "ingest"):
        lake = open_lake(home, engine, config, progress)
        try:
            reports, txn_id, currency = _ingest_files(home, lake, files, opts, progress)
        finally:
            lake.close()
    totals = {k: sum(r[k] for r in reports) for k in ("read", "accepted", "replaced", "duplicates", "rejected")}
    by_reason: dict[str, int] = {}
    for r in reports:
        for k, v in r["rejected_by_reason"].items():
            by_reason[k] = by_reason.get(k, 0) + v
    return {"ingest_id": txn_id, "currency": currency, "engine": lake.describe(), "files": reports,
            **totals, "rejected_by_reason": dict(sorted(by_reason.items())),
            "seconds": round(time.perf_counter() - started, 3)}


def open_lake(home: DataHome, engine: str | None = None, config: Any = None,
              progress: Callable[[str], None] = lambda _: None) -> Any:
    """The lake ingest writes: a LocalLake (DuckDB, the default) or a SparkLake (`engine`
    "spark", or `config.engine.name`). The caller holds the data home's lock and closes it."""
    name = engine or (config.engine.name if config is not None else "duckdb")
    if name == "spark":
        from pipelines.config import Config
        from pipelines.engines.spark import SparkLake

        progress("starting Spark")
        return SparkLake.open(home, (config or Config()).engine)
    if name == "duckdb":
        from pipelines.config import EngineConfig

        return LocalLake(home, config.engine if config is not None else EngineConfig())
    from pipelines.engines import ENGINES

    raise InputError(f"engine {name!r}: use one of {', '.join(ENGINES)}")


def _ingest_files(home: DataHome, lake: Any, files: list[tuple[Path, Table]], opts: IngestOptions,
                  progress: Callable[[str], None]) -> tuple[list[dict], str, str | None]:
    """Every file into one transaction of `lake`; (per-file reports, transaction id, currency)."""
    meta = lake.read_meta()
    currency = meta.get("currency")
    popts = ParseOptions(dayfirst=opts.dayfirst, date_format=opts.date_format, na_values=tuple(opts.na_values))
    reports = []
    key, logged = erasure_log.secret(home), erasure_log.hashes(home)
    erased = (key, logged) if key is not None and logged else None
    with lake.transaction() as txn:
        new_meta = dict(meta) or {"created_at": _now()}
        merged: dict[str, list[pa.Table]] = {}
        for i, (path, spec) in enumerate(files):
            progress(f"reading {path.name} ({spec.name})")
            rep = None
            direct = None
            if opts.direct and lake.name == "duckdb":
                direct = direct_source(path, spec, _known(spec, opts), opts)
            if direct is not None:
                try:
                    rep, currency = _ingest_direct(lake, txn, i, direct, spec, opts, popts, currency, new_meta, erased)
                    progress(f"{path.name}: read, checked and written by DuckDB")
                except Declined as exc:
                    progress(f"{path.name}: read through Arrow ({exc})")
            if rep is None:
                rep, currency = _ingest_arrow(lake, txn, i, path, spec, opts, popts, currency, new_meta, erased, merged)
            reports.append(rep)
            progress(f"{path.name}: {rep['accepted']:,} stored, {rep['replaced']:,} replaced, "
                     f"{rep['duplicates']:,} duplicates, {rep['rejected']:,} rejected")
        for name, parts in merged.items():
            lake.upsert(txn, TABLES[name], pa.concat_tables(parts))
        if new_meta != meta:
            lake.write_meta(txn, new_meta)
    if "users" in merged:  # committed: the API flags new opt-outs now, not after the next run
        opt_outs.update(home.root, erasure_log.secret(home, create=True), pa.concat_tables(merged["users"]))
    return reports, txn.id, currency


def _ingest_arrow(lake: Any, txn: Any, i: int, path: Path, spec: Table, opts: IngestOptions, popts: ParseOptions,
                  currency: str | None, new_meta: dict, erased: tuple[bytes, set[str]] | None,
                  merged: dict[str, list[pa.Table]]) -> tuple[dict, str | None]:
    """One file read by `pipelines.readers` and checked as Arrow: (its report, the lake's currency)."""
    src, columns = _read(path, spec, opts)
    notes = []
    if spec.name == "payments" and currency is None:
        currency, how = first_currency(lake.engine, src.table, columns.get("currency"),
                                       opts.defaults.get("currency"), popts.na_values, path)
        new_meta["currency"] = currency
        notes.append(f"the lake's reporting currency is now {currency} ({how})")
    file_opts = replace(popts, currency=currency or popts.currency)
    checked = _check_file(lake, txn, src, columns, spec, opts, file_opts, erased)
    # The source rows go before the lake write, which holds the accepted rows and DuckDB's
    # partition buffers (a big file's peak memory), and those before the next file is read.
    del src
    rep = _store_file(lake, txn, i, checked, columns, spec, opts, file_opts, merged)
    rep["notes"] = notes + rep["notes"]
    return rep, currency


def _ingest_direct(lake: Any, txn: Any, i: int, src: DirectSource, spec: Table, opts: IngestOptions,
                   popts: ParseOptions, currency: str | None, new_meta: dict,
                   erased: tuple[bytes, set[str]] | None) -> tuple[dict, str | None]:
    """One file read, checked and written by DuckDB (`pipelines.ingest_direct`): (its report,
    the lake's currency). Declined before anything is written when DuckDB cannot read it."""
    with loaded(lake.con, src) as src:
        return _ingest_loaded(lake, txn, i, src, spec, opts, popts, currency, new_meta, erased)


def _ingest_loaded(lake: Any, txn: Any, i: int, src: DirectSource, spec: Table, opts: IngestOptions,
                   popts: ParseOptions, currency: str | None, new_meta: dict,
                   erased: tuple[bytes, set[str]] | None) -> tuple[dict, str | None]:
    names = list(src.types)
    columns = resolve_columns(spec, names, opts.mapping, opts.defaults, str(src.path))
    notes = []
    if spec.name == "payments" and currency is None:
        column = columns.get("currency")
        try:
            found, how = first_currency_of(lake.engine, src.relation, src.types.get(column) if column else None,
                                           column, opts.defaults.get("currency"), popts.na_values, src.path)
        except duckdb.Error as exc:
            raise Declined(str(exc).splitlines()[0]) from None
        notes.append(f"the lake's reporting currency is now {found} ({how})")
    else:
        found = currency
    file_opts = replace(popts, currency=found or popts.currency)

    def quarantine_of(source: Source, rejected: pa.Table, erased_rows: list[int]) -> pa.Table:
        made = _quarantine(source, rejected, spec, txn.id)
        return pa.concat_tables([made, _erased_quarantine(source, erased_rows, spec, txn.id)]) if erased_rows else made

    done = ingest_direct(lake, txn, i, src, columns, spec, opts.defaults, file_opts,
                         _stored_files(lake.home, txn, spec), erased, quarantine_of)
    if found != currency:
        new_meta["currency"] = found
    if done.quarantine.num_rows:
        lake.write_quarantine(txn, spec, done.quarantine, i)
    notes += done.notes
    rep = _report(src.path, src.format, done.read, done.stored, 0, done.duplicates + done.in_lake, done.quarantine,
                  columns, spec, opts, file_opts, notes)
    rep["without_amount"] = done.without_amount
    _check_accounting(rep)
    return rep, found


class LocalLake:
    """The data home's lake written by DuckDB in this process (the default engine)."""

    name = "duckdb"

    def __init__(self, home: DataHome, settings: Any) -> None:
        self.home = home
        self.con = ingest_connection(settings, home)
        self.engine = DuckDBEngine(self.con)
        home.lake.mkdir(parents=True, exist_ok=True)

    def describe(self) -> dict:
        return {"name": self.name, "lake": str(self.home.lake)}

    def read_meta(self) -> dict:
        return read_meta(self.home.lake)

    def holds(self, name: str) -> bool:
        """Whether the lake holds files of table `name`."""
        return bool(table_files(self.home.lake, name))

    def transaction(self):
        return transaction(self.home.lake)

    def write_meta(self, txn: Transaction, meta: dict) -> None:
        txn.path(META).write_text(json.dumps(meta) + "\n")

    def append(self, txn: Transaction, spec: Table, accepted: pa.Table, index: int,
               replace: bool = False) -> tuple[int, int]:
        """Store the rows whose key is new to the lake and, with `replace`, the rows whose key is
        stored with other values in place of the stored lines; returns (stored, replaced)."""
        files = _stored_files(self.home, txn, spec)
        if replace and files and accepted.num_rows:
            rows, changed = changed_and_new(self.con, files, spec, accepted)
            if changed.num_rows:
                drop_keys(self.con, txn, self.home.lake, files, spec, changed, index)
        else:
            rows, changed = _new_rows(self.con, files, spec, accepted), accepted.slice(0, 0)
        if rows.num_rows:
            _write_partitioned(self.con, txn, spec, rows, index)
        return rows.num_rows - changed.num_rows, changed.num_rows

    def upsert(self, txn: Transaction, spec: Table, new: pa.Table) -> None:
        _write_dimension(self.con, self.home, txn, spec, new)

    def write_quarantine(self, txn: Transaction, spec: Table, table: pa.Table, index: int) -> None:
        pq.write_table(table, txn.path(f"_rejected/{spec.name}/part-{txn.id}-{index}.parquet"))

    def close(self) -> None:
        self.con.close()


def ingest_connection(settings: Any, home: DataHome):
    """The DuckDB connection ingest reads, checks and writes with: the `[engine]` settings (a
    `pipelines.config.EngineConfig`) with the ingest's memory cap, `duckdb_ingest_memory_limit`
    (`duckdb_memory_limit` where that is empty). A 10M-line file's checked rows (1.3 GB) and
    the month partitions' write buffers (1.9 GB) together pass the run's 3 GB."""
    cap = settings.duckdb_ingest_memory_limit or settings.duckdb_memory_limit
    return duckdb_connection(replace(settings, duckdb_memory_limit=cap), home)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _known(spec: Table, opts: IngestOptions) -> set[str]:
    """The lower-case column names that make a CSV's first line a header."""
    return {n.lower() for n in spec.names} | {v.lower() for v in opts.mapping.values()} | {"unit_price"}


def _read(path: Path, spec: Table, opts: IngestOptions) -> tuple[Source, dict[str, str | None]]:
    """The file's rows and its canonical columns (canonical -> source column or None)."""
    src = read_source(path, _known(spec, opts), header=opts.header, delimiter=opts.delimiter, encoding=opts.encoding)
    names = [n for n in src.table.column_names if n != ROW]
    return src, resolve_columns(spec, names, opts.mapping, opts.defaults, str(path))


@dataclass
class _Checked:
    """One file validated, its quarantine made: what the lake write and the report need (the
    source rows are not kept, so they can be let go before the write)."""
    path: Path
    format: str
    read: int
    result: Validated
    quarantine: pa.Table
    notes: list[str]


def _check_file(lake: Any, txn: Any, src: Source, columns: dict[str, str | None], spec: Table,
                opts: IngestOptions, popts: ParseOptions, erased: tuple[bytes, set[str]] | None = None) -> _Checked:
    path = src.path
    read = src.table.num_rows + len(src.malformed)
    src, erased_rows = _drop_erased(lake.engine, src, columns.get("user_id"), erased, popts.na_values)
    result = validate(lake.engine, src.table, spec, columns, opts.defaults, popts, where=str(path))
    quarantine = _quarantine(src, result.rejected, spec, txn.id)
    if erased_rows:
        quarantine = pa.concat_tables([quarantine, _erased_quarantine(src, erased_rows, spec, txn.id)])
    return _Checked(path, src.format, read, result, quarantine, src.notes + result.notes)


def _store_file(lake: Any, txn: Any, index: int, checked: _Checked, columns: dict[str, str | None], spec: Table,
                opts: IngestOptions, popts: ParseOptions, merged: dict[str, list[pa.Table]]) -> dict:
    """Write a checked file's accepted rows and quarantine into `txn`; its report."""
    path, result, quarantine, read = checked.path, checked.result, checked.quarantine, checked.read
    stored, replaced, in_lake = result.accepted.num_rows, 0, 0
    if spec.mode == "append":
        if stored:
            stored, replaced = lake.append(txn, spec, result.accepted, index, replace=opts.replace)
        in_lake = result.accepted.num_rows - stored - replaced
    else:
        merged.setdefault(spec.name, []).append(result.accepted)
    if quarantine.num_rows:
        lake.write_quarantine(txn, spec, quarantine, index)
    rep = _report(path, checked.format, read, stored, replaced, result.duplicates + in_lake, quarantine,
                  columns, spec, opts, popts, checked.notes)
    if spec.name == "payments":
        rep["without_amount"] = result.accepted.column("amount").null_count
    _check_accounting(rep)
    return rep


def _report(path: Path, fmt: str, read: int, stored: int, replaced: int, duplicates: int, quarantine: pa.Table,
            columns: dict[str, str | None], spec: Table, opts: IngestOptions, popts: ParseOptions,
            notes: list[str]) -> dict:
    """A file's report (`without_amount` is the caller's)."""
    by_reason: dict[str, int] = {}
    for reason in quarantine.column("reason").to_pylist():
        by_reason[reason] = by_reason.get(reason, 0) + 1
    cols = column_report(spec, columns, opts.defaults, popts.currency if spec.name == "payments" else None)
    notes = notes + ([NO_AMOUNT] if "amount" in cols["missing"] else [])
    return {"path": str(path), "table": spec.name, "format": fmt, "read": read,
            "accepted": stored, "replaced": replaced, "duplicates": duplicates,
            "rejected": quarantine.num_rows, "rejected_by_reason": dict(sorted(by_reason.items())),
            "rejected_examples": rejection_examples(quarantine), "columns": cols, "notes": notes}


def _check_accounting(rep: dict) -> None:
    if rep["accepted"] + rep["replaced"] + rep["duplicates"] + rep["rejected"] != rep["read"]:
        raise AssertionError(f"row accounting broke for {rep['path']}: {rep}")


def _drop_erased(engine: Any, src: Source, column: str | None, erased: tuple[bytes, set[str]] | None,
                 na_values: tuple[str, ...] = NA_VALUES) -> tuple[Source, list[int]]:
    """The source without rows of erased users (erasure log), and their row numbers. The id is
    hashed in the canonical form validation would store (trimmed, spreadsheet '.0' dropped), and
    holding a control character also without them (`behavior.pii.erased_id_hashes_sql`)."""
    if erased is None or column is None or src.table.num_rows == 0:
        return src, []
    key, logged = erased
    d = engine.dialect
    engine.register("_src", src.table)
    try:
        own, bare = erased_id_hashes_sql(key, id_text_sql(column, src.table.schema.field(column).type, d, na_values), d)
        hashes = engine.arrow(f"SELECT {own} AS h, {bare} AS bare FROM _src ORDER BY {ROW}")
    finally:
        engine.unregister("_src")
    logged_hashes = pa.array(sorted(logged), pa.string())
    hit = pc.fill_null(pc.or_(*(pc.is_in(h, value_set=logged_hashes) for h in hashes.columns)), False).to_pylist()
    if not any(hit):
        return src, []
    rows = [r for r, h in zip(src.table.column(ROW).to_pylist(), hit) if h]
    return replace(src, table=src.table.filter(pa.array([not h for h in hit]))), rows


def _erased_quarantine(src: Source, rows: list[int], spec: Table, ingest_id: str) -> pa.Table:
    """Rejections of erased users' rows: where and why, and none of their values."""
    n = len(rows)
    return pa.table({
        "table": pa.array([spec.name] * n, pa.string()),
        "source_file": pa.array([str(src.path)] * n, pa.string()),
        "source_row": pa.array(rows, pa.int64()),
        "reason": pa.array(["erased_user"] * n, pa.string()),
        "detail": pa.array(["the user was erased (erasure log): their rows are not stored, and their values "
                            "are not kept here either"] * n, pa.string()),
        "raw": pa.nulls(n, pa.string()),
        "ingest_id": pa.array([ingest_id] * n, pa.string()),
        "ingested_at": pa.array([datetime.now(timezone.utc)] * n, pa.timestamp("us", tz="UTC")),
    })


def _quarantine(src: Source, rejected: pa.Table, spec: Table, ingest_id: str) -> pa.Table:
    """Rejected rows with their source values as JSON (card numbers masked)."""
    rows = rejected.column(ROW).to_pylist()
    raws: list[str] = []
    if rows:
        # by row number: malformed rows and erased users' rows have left the table, so a row's
        # position is not its number minus one
        pos = pc.index_in(rejected.column(ROW), value_set=src.table.column(ROW))
        values = src.table.take(pos).drop_columns([ROW]).to_pylist()
        raws = [mask_card_numbers(json.dumps(v, default=str, ensure_ascii=False)) for v in values]
    reasons = rejected.column("reason").to_pylist()
    details = rejected.column("detail").to_pylist()
    for row, text in src.malformed:
        rows.append(row)
        raws.append(mask_card_numbers(json.dumps(text, ensure_ascii=False)))
        reasons.append("malformed_row")
        details.append("the record does not have the header's number of fields (a stray delimiter or quote?)")
    n = len(rows)
    return pa.table({
        "table": pa.array([spec.name] * n, pa.string()),
        "source_file": pa.array([str(src.path)] * n, pa.string()),
        "source_row": pa.array(rows, pa.int64()),
        "reason": pa.array(reasons, pa.string()),
        "detail": pa.array(details, pa.string()),
        "raw": pa.array(raws, pa.string()),
        "ingest_id": pa.array([ingest_id] * n, pa.string()),
        "ingested_at": pa.array([datetime.now(timezone.utc)] * n, pa.timestamp("us", tz="UTC")),
    })


def _stored_files(home: DataHome, txn: Transaction, spec: Table) -> list[Path]:
    """The files of `spec` as this transaction leaves them: the lake's (but those it deletes)
    and its staging's. Every partition: a corrected paid_at may move a known key to another month."""
    gone = txn.deleted
    return [f for f in table_files(home.lake, spec.name) if str(f.relative_to(home.lake)) not in gone] + \
        table_files(txn.staging, spec.name)


def _new_rows(con, files: list[Path], spec: Table, accepted: pa.Table) -> pa.Table:
    """Drop rows whose key is stored already in `files`."""
    if accepted.num_rows == 0:
        return accepted
    if not files:
        return accepted
    listing = ", ".join(DUCKDB.literal(str(f)) for f in files)
    keys = ", ".join(spec.key)
    # Only stored keys within the file's range of the first key column can match: the bound
    # lets the Parquet scan skip the row groups (by their min / max) outside it, so a file of
    # new payments (ids that grow with time) reads few stored keys, not all of them; ingesting
    # many files stays linear in the lines. Otherwise it is the same anti join.
    first = spec.key[0]
    bounds = pc.min_max(accepted.column(first)).as_py()
    within = f" WHERE {first} BETWEEN $lo AND $hi" if bounds["min"] is not None else ""
    con.register("_accepted", accepted)
    try:
        return con.sql(
            f"SELECT a.* FROM _accepted a ANTI JOIN (SELECT {keys} FROM read_parquet([{listing}], "
            f"hive_partitioning = false){within}) s USING ({keys})",
            params={"lo": bounds["min"], "hi": bounds["max"]} if within else None,
        ).to_arrow_table().cast(spec.arrow_schema)
    finally:
        con.unregister("_accepted")


def _write_partitioned(con, txn: Transaction, spec: Table, accepted: pa.Table, index: int) -> None:
    con.register("_accepted", accepted)
    try:
        write_months(con, "SELECT * FROM _accepted", txn.staging, spec.name, f"part-{txn.id}-{index}")
    finally:
        con.unregister("_accepted")


def _write_dimension(con, home: DataHome, txn: Transaction, spec: Table, new: pa.Table) -> None:
    """Upsert: the stored table plus the new rows, a new row replacing a stored one with its key."""
    old_files = table_files(home.lake, spec.name)
    con.register("_new", with_positions(new))
    try:
        old = None
        if old_files:
            listing = ", ".join(DUCKDB.literal(str(f)) for f in old_files)
            old = f"read_parquet([{listing}], union_by_name = true)"
        merged = con.sql(dimension_merge_sql(spec, old, "_new", DuckDBEngine.dialect)).to_arrow_table()
        merged = merged.cast(spec.arrow_schema)
    finally:
        con.unregister("_new")
    pq.write_table(merged, txn.path(f"{spec.name}/part-{txn.id}.parquet"), compression="zstd")
    for f in old_files:
        txn.delete(f)
