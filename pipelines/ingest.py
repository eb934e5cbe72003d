"""`behavior ingest`: validate input files, quarantine bad rows, append the rest to the lake.

Every input row ends in exactly one place: stored in the lake, counted as a duplicate of a
row stored already (same key), or in the quarantine (`lake/_rejected/<table>/`) with its
source file, row number, reason and its values (card numbers masked; a row of an erased
user, reason `erased_user`, keeps no values at all). Everything one call
ingests is committed in one transaction: all of it, or nothing.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from behavior.errors import InputError
from behavior.pii import erasure_hash_sql, mask_card_numbers
from behavior.schema import TABLES, Table, table
from behavior.validate import ROW, ParseOptions, id_text_sql, resolve_columns, validate
from pipelines import erasure_log
from pipelines.datahome import DataHome
from pipelines.lake import META, Transaction, locked, read_meta, table_files, transaction
from pipelines.readers import FORMATS, Source, read_source

DEFAULT_CURRENCY = "EUR"


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
    currency: str = DEFAULT_CURRENCY  # reporting currency of a new lake


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
           progress: Callable[[str], None] = lambda _: None) -> dict:
    """Ingest `paths`; returns the report (see README: ingest report)."""
    started = time.perf_counter()
    files = expand(paths, opts.table)
    with locked(home, "ingest"):
        home.lake.mkdir(parents=True, exist_ok=True)
        meta = read_meta(home.lake)
        currency = (meta.get("currency") or opts.defaults.get("currency") or opts.currency).upper()
        popts = ParseOptions(currency=currency, dayfirst=opts.dayfirst, date_format=opts.date_format)
        con = duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")
        reports = []
        key, logged = erasure_log.secret(home), erasure_log.hashes(home)
        erased = (key, logged) if key is not None and logged else None
        with transaction(home.lake) as txn:
            if not meta:
                (txn.path(META)).write_text(json.dumps({"currency": currency, "created_at": _now()}) + "\n")
            merged: dict[str, list[pa.Table]] = {}
            for i, (path, spec) in enumerate(files):
                progress(f"reading {path.name} ({spec.name})")
                rep = _ingest_file(con, home, txn, i, path, spec, opts, popts, merged, erased)
                reports.append(rep)
                progress(f"{path.name}: {rep['accepted']:,} stored, {rep['duplicates']:,} duplicates, "
                         f"{rep['rejected']:,} rejected")
            for name, parts in merged.items():
                _write_dimension(con, home, txn, TABLES[name], parts)
        con.close()
    totals = {k: sum(r[k] for r in reports) for k in ("read", "accepted", "duplicates", "rejected")}
    by_reason: dict[str, int] = {}
    for r in reports:
        for k, v in r["rejected_by_reason"].items():
            by_reason[k] = by_reason.get(k, 0) + v
    return {"ingest_id": txn.id, "currency": currency, "files": reports,
            **totals, "rejected_by_reason": dict(sorted(by_reason.items())),
            "seconds": round(time.perf_counter() - started, 3)}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _ingest_file(con, home: DataHome, txn: Transaction, index: int, path: Path, spec: Table,
                 opts: IngestOptions, popts: ParseOptions, merged: dict[str, list[pa.Table]],
                 erased: tuple[bytes, set[str]] | None = None) -> dict:
    known = {n.lower() for n in spec.names} | {v.lower() for v in opts.mapping.values()} | {"unit_price"}
    src = read_source(path, known, header=opts.header, delimiter=opts.delimiter, encoding=opts.encoding)
    names = [n for n in src.table.column_names if n != ROW]
    columns = resolve_columns(spec, names, opts.mapping, opts.defaults, str(path))
    read = src.table.num_rows + len(src.malformed)
    src, erased_rows = _drop_erased(con, src, columns.get("user_id"), erased)
    result = validate(con, src.table, spec, columns, opts.defaults, popts)
    accepted = result.accepted
    in_lake = 0
    if spec.mode == "append":
        before = accepted.num_rows
        accepted = _new_rows(con, home, txn, spec, accepted)
        in_lake = before - accepted.num_rows
        if accepted.num_rows:
            _write_partitioned(con, txn, spec, accepted, index)
    else:
        merged.setdefault(spec.name, []).append(accepted)
    quarantine = _quarantine(src, result.rejected, spec, txn.id)
    if erased_rows:
        quarantine = pa.concat_tables([quarantine, _erased_quarantine(src, erased_rows, spec, txn.id)])
    if quarantine.num_rows:
        pq.write_table(quarantine, txn.path(f"_rejected/{spec.name}/part-{txn.id}-{index}.parquet"))
    by_reason: dict[str, int] = {}
    for reason in quarantine.column("reason").to_pylist():
        by_reason[reason] = by_reason.get(reason, 0) + 1
    rep = {"path": str(path), "table": spec.name, "format": src.format, "read": read,
           "accepted": accepted.num_rows, "duplicates": result.duplicates + in_lake,
           "rejected": quarantine.num_rows, "rejected_by_reason": dict(sorted(by_reason.items())),
           "notes": src.notes}
    if rep["accepted"] + rep["duplicates"] + rep["rejected"] != read:
        raise AssertionError(f"row accounting broke for {path}: {rep}")
    return rep


def _drop_erased(con, src: Source, column: str | None,
                 erased: tuple[bytes, set[str]] | None) -> tuple[Source, list[int]]:
    """The source without rows of erased users (erasure log), and their row numbers. The id is
    hashed in the canonical form validation would store (trimmed, spreadsheet '.0' dropped)."""
    if erased is None or column is None or src.table.num_rows == 0:
        return src, []
    key, logged = erased
    con.register("_src", src.table)
    try:
        canonical = id_text_sql(column, src.table.schema.field(column).type)
        hashes = con.sql(f"SELECT {erasure_hash_sql(key, canonical)} FROM _src").to_arrow_table().column(0)
    finally:
        con.unregister("_src")
    hit = pc.fill_null(pc.is_in(hashes, value_set=pa.array(sorted(logged), pa.string())), False).to_pylist()
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
        pos = pc.subtract(rejected.column(ROW), 1)  # ROW is 1-based and dense unless malformed rows
        if len(src.malformed):
            index = {r: i for i, r in enumerate(src.table.column(ROW).to_pylist())}
            pos = pa.array([index[r] for r in rows])
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


def _new_rows(con, home: DataHome, txn: Transaction, spec: Table, accepted: pa.Table) -> pa.Table:
    """Drop rows whose key is stored already (in the lake or earlier in this transaction)."""
    if accepted.num_rows == 0:
        return accepted
    # Every partition is checked: a corrected paid_at may move a known key to another month.
    files = table_files(home.lake, spec.name) + table_files(txn.staging, spec.name)
    if not files:
        return accepted
    listing = ", ".join("'" + str(f).replace("'", "''") + "'" for f in files)
    keys = ", ".join(spec.key)
    con.register("_accepted", accepted)
    try:
        return con.sql(
            f"SELECT a.* FROM _accepted a ANTI JOIN (SELECT {keys} FROM read_parquet([{listing}], "
            f"hive_partitioning = false)) s USING ({keys})"
        ).to_arrow_table().cast(spec.arrow_schema)
    finally:
        con.unregister("_accepted")


def _write_partitioned(con, txn: Transaction, spec: Table, accepted: pa.Table, index: int) -> None:
    con.register("_accepted", accepted)
    try:
        target = txn.path(f"{spec.name}/.keep").parent
        con.execute(
            f"COPY (SELECT *, strftime(paid_at, '%Y-%m') AS month FROM _accepted) TO '{target}' "
            f"(FORMAT parquet, PARTITION_BY (month), FILENAME_PATTERN 'part-{txn.id}-{index}-{{i}}', "
            f"OVERWRITE_OR_IGNORE, COMPRESSION zstd)"
        )
    finally:
        con.unregister("_accepted")


def _write_dimension(con, home: DataHome, txn: Transaction, spec: Table, parts: list[pa.Table]) -> None:
    """Upsert: the stored table plus the new rows, a new row replacing a stored one with its key."""
    new = pa.concat_tables(parts)
    old_files = table_files(home.lake, spec.name)
    keys = ", ".join(f'"{k}"' for k in spec.key)
    con.register("_new", new)
    try:
        old = ""
        if old_files:
            listing = ", ".join("'" + str(f).replace("'", "''") + "'" for f in old_files)
            old = f"SELECT *, 0 AS _src, 0 AS _pos FROM read_parquet([{listing}]) UNION ALL BY NAME "
        merged = con.sql(
            f"SELECT * EXCLUDE (_src, _pos) FROM ({old}SELECT *, 1 AS _src, row_number() OVER () AS _pos FROM _new) "
            f"QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY _src DESC, _pos DESC) = 1 ORDER BY {keys}"
        ).to_arrow_table().cast(spec.arrow_schema)
    finally:
        con.unregister("_new")
    pq.write_table(merged, txn.path(f"{spec.name}/part-{txn.id}.parquet"), compression="zstd")
    for f in old_files:
        txn.delete(f)
