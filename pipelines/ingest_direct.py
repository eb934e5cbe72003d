"""Ingest of a payments file inside DuckDB: read, validated and written without the rows
crossing into Arrow (`pipelines.ingest` chooses it; the lake and the quarantine are the same
as through `pipelines.readers` and Arrow, which remains the path for everything else).

A clean file (every row passes, no key repeats or is stored: `_write_clean`) is validated as
it is written into the month partitions, in one pass. Any other file, and a clean one whose
pass was undone:

DuckDB reads the file itself (`read_csv` with the layout `pipelines.readers.sniff_csv`
decided, every column text and no type detection; `read_parquet`), the validation SQL
(`behavior.validate`) puts the checked rows in a temporary table as it reads them (one pass,
in parallel), the repeated-key check runs on it, and the accepted rows new to the lake are
copied from it into the month partitions. Only the rejected rows (and rows that may hold a
card number, for the Luhn check) come back to Python for the quarantine, with their source
values: a CSV's kept in the checked table for those rows only, a Parquet file's read from
the row groups that hold them.

A file is taken only when DuckDB reads it as the Arrow path would, record for record:

- CSV in UTF-8: a record's number is its position among the file's records, which is its
  position in the checked table (DuckDB writes a table in the order of its rows while the
  plan keeps that order, which `_check` confirms; both readers skip blank lines and read a
  quoted value across lines as one record). Where a record must be found by its number
  before validation (erased users) or after it (the values of a conflicting key), the file
  is read once more into a table of its records (`records`). A record DuckDB cannot split
  into the header's fields (the Arrow path quarantines those as `malformed_row`), an invalid
  UTF-8 byte, a stray quote or mixed line endings make DuckDB fail while reading, before
  anything is written, and the file goes the Arrow way (`Declined`);
- Parquet whose columns have types both readers give DuckDB alike; the row number is
  DuckDB's `file_row_number` + 1 (a file of fewer row groups than DuckDB has threads is read
  into a table of its records first, so that every thread validates and writes: `loaded`);
- payments (the one append table), on the DuckDB engine, without `--replace`.

Rows of erased users (erasure log) are recognised as on the Arrow path, by the hash of the id
in the form validation stores, before validation (they take no part in line numbers or
repeated keys); that costs one more read of the file, only while the log holds someone.
"""

from __future__ import annotations

import shutil
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from behavior.date_order import decide_from_texts, only_valid_sql, order_texts
from behavior.pii import erased_id_hashes_sql, mask_card_numbers
from behavior.schema import ROW, Table
from behavior.sql_dialect import DUCKDB
from behavior.validate import (CONFLICT_DETAIL, ParseOptions, _any_repeat, _q, card_numbers, id_text_sql,
                               line_numbers_sql, repeated_keys, validation_sql)
from pipelines.lake_months import copy_months, place_months, scratch_of, write_months
from pipelines.readers import FORMATS, Source, sniff_csv

# Parquet column types that DuckDB's read_parquet and an Arrow table registered with DuckDB
# give alike (the validation SQL is chosen by the Arrow type)
_PARQUET_TYPES = (pa.types.is_string, pa.types.is_large_string, pa.types.is_integer, pa.types.is_floating,
                  pa.types.is_boolean, pa.types.is_date32, pa.types.is_timestamp)


class Declined(Exception):
    """DuckDB cannot read this file exactly as the Arrow path does; nothing of it was written."""


@dataclass
class DirectSource:
    path: Path
    format: str
    relation: str                      # SQL: the source columns and ROW, in reading order
    types: dict[str, pa.DataType]      # the source columns' types as the Arrow reader gives them
    notes: list[str] = field(default_factory=list)
    source: str = ""                   # SQL: every record of the file, when `relation` leaves some out
    load: str = ""                     # SQL of the file's records, materialised as LOADED to find them by number
    numbered: bool = True              # False: ROW is NULL in `relation`, and a record's number is its
                                       # position in the checked table (rowid + 1)
    row_groups: int = 0                # a Parquet file's row groups, and the bytes of its column data
    data_bytes: int = 0                # (encoded, uncompressed): whether it is read into a table first (`loaded`)

    @property
    def every_record(self) -> str:
        return self.source or self.relation


LOADED = "_loaded"   # the temporary table of a DirectSource's records (`records`)


# A Parquet file with fewer row groups than DuckDB has threads is read into a table first, if its
# column data take at most this many bytes as the file encodes them, before compression (a
# payments file: 29 MB for 1M lines; about four times as much in the table)
PRELOAD_BYTES = 256 << 20


@contextmanager
def loaded(con: Any, src: DirectSource) -> Iterator[DirectSource]:
    """`src` as the ingest reads it (`_preloaded`). For the duration, DuckDB keeps the order of
    insertion (the records of a CSV are numbered by their position in a table made from the
    reader); the table of the file's records, if one was made, is dropped at the end."""
    con.execute("SET preserve_insertion_order = true")
    try:
        yield _preloaded(con, src)
    finally:
        con.execute(f"DROP TABLE IF EXISTS {LOADED}")


def _preloaded(con: Any, src: DirectSource) -> DirectSource:
    """`src`, read from a table of its records (LOADED) where it is a Parquet file of fewer row
    groups than DuckDB has threads (and at most PRELOAD_BYTES of column data). DuckDB reads a
    row group on one thread, which then also validates and writes its rows: a file of one row
    group (any file of up to 1M rows that pyarrow or pandas wrote) went through on one core.
    From a table, whose rows DuckDB splits among its threads, the validation and the write use
    them all: a 1M-line file's one-pass write takes 1.03-1.12 s instead of 1.41-1.46 (0.25-0.3 s
    of it to read the file into the table)."""
    threads = int(con.execute("SELECT current_setting('threads')").fetchall()[0][0])
    if src.format != "parquet" or src.row_groups >= threads or src.data_bytes > PRELOAD_BYTES:
        return src
    try:
        con.execute(f"CREATE TEMP TABLE {LOADED} AS SELECT * FROM {src.relation}")
    except duckdb.Error as exc:
        raise Declined(str(exc).splitlines()[0]) from None
    return replace(src, relation=f"(SELECT * FROM {LOADED})")


def records(con: Any, src: DirectSource) -> str:
    """SQL: every record of the CSV `src` with its number (ROW), from the temporary table LOADED,
    read from the file the first time (in parallel and in the file's order, so a record's
    number is its rowid + 1: `row_number() OVER ()` over the reader runs on one thread)."""
    if not con.execute(f"SELECT 1 FROM duckdb_tables() WHERE temporary AND table_name = '{LOADED}'").fetchall():
        con.execute(f"CREATE TEMP TABLE {LOADED} AS {src.load}")
    return f"(SELECT *, rowid + 1 AS {ROW} FROM {LOADED})"


# makes the quarantine table from (the source rows it needs, the rejected rows, erased users' row numbers)
Quarantine = Callable[[Source, pa.Table, list[int]], pa.Table]


def direct_source(path: Path, spec: Table, known: set[str], opts: Any) -> DirectSource | None:
    """The file as DuckDB reads it, or None when only the Arrow path reads it exactly (see the
    module docstring); `opts` are the ingest's options (`pipelines.ingest.IngestOptions`)."""
    if spec.mode != "append" or opts.replace or not path.is_file():
        return None
    fmt = FORMATS.get(path.suffix.lower())
    if fmt == "parquet":
        return _parquet(path)
    if fmt != "csv" or (opts.encoding and opts.encoding.lower().replace("_", "-") not in ("utf-8", "utf8")):
        return None
    layout = sniff_csv(path, known, header=opts.header, delimiter=opts.delimiter, encoding=opts.encoding)
    names = layout.names
    if (layout.encoding != "utf-8" or len(layout.delimiter) != 1 or layout.delimiter in '"\r\n'
            or len(names) < 2 or len({n.lower() for n in names}) < len(names) or ROW in names):
        return None
    lit = DUCKDB.literal
    cols = "{" + ", ".join(f"{lit(n)}: 'VARCHAR'" for n in names) + "}"
    read = (f"read_csv({lit(str(path))}, auto_detect = false, header = {str(layout.header).lower()}, "
            f"delim = {lit(layout.delimiter)}, quote = '\"', escape = '\"', columns = {cols}, "
            "strict_mode = true, null_padding = false, ignore_errors = false, encoding = 'utf-8')")
    notes = list(layout.notes) + ([f"delimiter {layout.delimiter!r}"] if layout.delimiter != "," else [])
    # Checked as DuckDB reads it, in parallel: the checked table keeps the file's order, so a
    # record's number is its position there (`numbered` False); the records themselves are
    # read into a table (`records`) only where they must be found by number before that.
    return DirectSource(path, "csv", f"(SELECT *, CAST(NULL AS BIGINT) AS {ROW} FROM {read})",
                        {n: pa.string() for n in names}, notes, load=f"SELECT * FROM {read}", numbered=False)


def _parquet(path: Path) -> DirectSource | None:
    try:
        with pq.ParquetFile(path) as file:
            schema, meta = file.schema_arrow, file.metadata
    except (pa.ArrowInvalid, OSError):
        return None   # the Arrow path names what is wrong with the file
    names = schema.names
    if (not all(any(ok(f.type) for ok in _PARQUET_TYPES) for f in schema) or ROW in names
            or "file_row_number" in names or len({n.lower() for n in names}) < len(names)):
        return None
    if any(pa.types.is_timestamp(f.type) and f.type.tz not in (None, "UTC", "+00:00") for f in schema):
        return None
    rel = (f"(SELECT * EXCLUDE (file_row_number), file_row_number + 1 AS {ROW} "
           f"FROM read_parquet({DUCKDB.literal(str(path))}, file_row_number = true))")
    data = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    return DirectSource(path, "parquet", rel, {f.name: f.type for f in schema}, row_groups=meta.num_row_groups,
                        data_bytes=data)


@dataclass
class Stored:
    """What `ingest_direct` did with one file."""
    read: int
    stored: int            # new to the lake, written
    in_lake: int           # accepted, but their key is stored already
    duplicates: int        # exact repeats inside the file
    without_amount: int    # accepted rows without an amount
    quarantine: pa.Table   # rejected rows (source values as JSON, card numbers masked)
    notes: list[str]


def ingest_direct(lake: Any, txn: Any, index: int, src: DirectSource, columns: dict[str, str | None],
                  spec: Table, defaults: dict[str, str], popts: ParseOptions, stored_files: list[Path],
                  erased: tuple[bytes, set[str]] | None, quarantine_of: Quarantine) -> Stored:
    """Validate `src` and write its accepted rows new to the lake (whose files of `spec` are
    `stored_files`) into the month partitions of `txn`; rows of users in the erasure log
    (`erased`: its key and hashes) are only quarantined. Declined (nothing written) when
    DuckDB cannot read the file. `quarantine_of(Source, rejected, erased rows)` makes the
    quarantine table."""
    con, engine = lake.con, lake.engine
    con.execute("SET TimeZone = 'UTC'")
    if erased is None or not columns.get("user_id"):
        clean = _write_clean(lake, txn, index, src, columns, spec, defaults, popts, stored_files, quarantine_of)
        if clean is not None:
            return clean
    try:
        if erased is not None and columns.get("user_id") and not src.numbered:
            # erased users' rows are found by their numbers before validation
            src = replace(src, relation=records(con, src), numbered=True)
        src, erased_rows = _without_erased(con, src, columns.get("user_id"), erased, popts.na_values)
    except duckdb.Error as exc:
        raise Declined(str(exc).splitlines()[0]) from None
    forced = popts.dayfirst or popts.date_format
    texts = [] if forced else order_texts(src.types, spec, columns, popts.na_values, DUCKDB)
    notes: list[str] = []
    try:
        try:
            # The texts the order of day and month is decided from ride along with the checked
            # rows (one read of the file); they are read month-first, and read again in the rare
            # case that a column turns out day-first.
            _check(con, src, columns, spec, defaults, popts, order=bool(texts))
            if texts:
                order = decide_from_texts(engine, "_checked", [n for n, _ in texts], _value_of(con, src), columns,
                                          str(src.path), prefix="_order")
                notes = order.notes
                if order.dayfirst:
                    _check(con, src, columns, spec, defaults, replace(popts, dayfirst_columns=order.dayfirst))
        except duckdb.Error as exc:
            raise Declined(str(exc).splitlines()[0]) from None
        return _store(lake, txn, index, src, columns, spec, stored_files, quarantine_of, notes, erased_rows,
                      popts.currency)
    finally:
        for name in ("_checked", "_lined", "_erased_rows"):
            con.execute(f"DROP TABLE IF EXISTS {name}")


_UNCLEAN = "behavior: not a clean file"


def _write_clean(lake: Any, txn: Any, index: int, src: DirectSource, columns: dict[str, str | None], spec: Table,
                 defaults: dict[str, str], popts: ParseOptions, stored_files: list[Path],
                 quarantine_of: Quarantine) -> Stored | None:
    """A clean file in one pass: validated as it is read and written straight into the month
    partitions, with no table of checked rows; None (and nothing written) where the file is not
    clean, for the pass through the checked table (`_check`, `_store`), which alone handles
    rejected rows. Clean: every row passes every check, none may hold a card number, no date
    is valid only day-first (the order the texts decide is then month-first, with no note),
    no key repeats inside the file (line_no, where derived, is then 1) and none is stored in
    the lake. The rows' checks abort the write (`error()`) at the first row that fails one; the
    keys are checked on the written files, before they are moved into the lake's folders."""
    con = lake.con
    texts = [] if popts.dayfirst or popts.date_format else order_texts(src.types, spec, columns, popts.na_values,
                                                                         DUCKDB)
    unclean = " OR ".join(["_reason IS NOT NULL", "_card_probe",
                           *(only_valid_sql(f"_order{i}", dayfirst=True) for i in range(len(texts)))])
    derived = columns.get("line_no") is None

    def value(name: str) -> str:
        v = "1" if derived and name == "line_no" else _q(name)
        if name == spec.names[0]:
            v = f"CASE WHEN {unclean} THEN error({DUCKDB.literal(_UNCLEAN)}) ELSE {v} END"
        return v

    casts = _written_casts(spec, popts.currency, value)
    sql = validation_sql(spec, src.relation, columns, src.types, defaults, popts, DUCKDB, order=bool(texts))
    prefix = f"part-{txn.id}-{index}"
    scratch = scratch_of(txn.staging, prefix)
    floats = src.format == "parquet" and any(pa.types.is_floating(t) for t in src.types.values())
    con.execute(f"SET disabled_optimizers = '{'statistics_propagation,' if floats else ''}in_clause'")
    try:
        written = copy_months(con, f"SELECT {', '.join(casts)} FROM ({sql}) v", txn.staging, prefix)
        if written and _clean_keys(con, scratch, spec, stored_files):
            without_amount = _nulls(con, scratch, "amount")
            place_months(txn.staging, spec.name, prefix)
            none = pa.table({ROW: pa.array([], pa.int64()), "reason": pa.array([], pa.string()),
                             "detail": pa.array([], pa.string())})
            values = pa.table({**{n: pa.array([], t) for n, t in src.types.items()}, ROW: pa.array([], pa.int64())})
            return Stored(written, written, 0, 0, without_amount, quarantine_of(Source(src.path, src.format, values),
                                                                                none, []), list(src.notes))
    except duckdb.Error:
        pass   # a row not clean (or a file DuckDB cannot read): the pass through the checked table
    finally:
        con.execute("RESET disabled_optimizers")
    shutil.rmtree(scratch, ignore_errors=True)
    return None


def _nulls(con: Any, scratch: Path, column: str) -> int:
    """The number of NULLs of `column` in the files written into `scratch`: from the files'
    footers (the writer's statistics of each row group), or a scan where one lacks the count."""
    files = DUCKDB.literal(str(scratch / "*" / "*.parquet"))
    counted, groups, nulls = con.execute(
        f"SELECT count(stats_null_count), count(*), sum(stats_null_count) FROM parquet_metadata({files}) "
        "WHERE path_in_schema = $c", {"c": column}).fetchall()[0]
    if counted == groups:
        return int(nulls or 0)
    return con.execute(f"SELECT count(*) FROM read_parquet({files}) WHERE {_q(column)} IS NULL").fetchall()[0][0]


def _clean_keys(con: Any, scratch: Path, spec: Table, stored_files: list[Path]) -> bool:
    """Whether the keys of the rows written into `scratch` are distinct and none is stored in
    the lake's `stored_files` (looked up within the range of the first key column)."""
    files = f"read_parquet({DUCKDB.literal(str(scratch / '*' / '*.parquet'))})"
    keys = ", ".join(_q(k) for k in spec.key)
    hashes = con.sql(f"SELECT hash({keys}) AS h FROM {files}").to_arrow_table().column(0)
    if _any_repeat(hashes):
        return False
    if not stored_files:
        return True
    stored, params = _stored_keys(con, f"SELECT * FROM {files}", spec, stored_files)
    return con.execute(f"SELECT count(*) FROM {files} n SEMI JOIN {stored} s USING ({keys})",
                       params).fetchall()[0][0] == 0


def _stored_keys(con: Any, rows: str, spec: Table, stored_files: list[Path]) -> tuple[str, dict | None]:
    """A subquery of the keys stored in `stored_files` within the range of the first key column
    among the SQL `rows` (the same bounds as the Arrow path, `pipelines.ingest._new_rows`), and
    its parameters."""
    listing = ", ".join(DUCKDB.literal(str(f)) for f in stored_files)
    keys, first = ", ".join(_q(k) for k in spec.key), _q(spec.key[0])
    lo, hi = con.execute(f"SELECT min({first}), max({first}) FROM ({rows}) r").fetchall()[0]
    within = f" WHERE {first} BETWEEN $lo AND $hi" if lo is not None else ""
    return (f"(SELECT {keys} FROM read_parquet([{listing}], hive_partitioning = false){within})",
            {"lo": lo, "hi": hi} if within else None)


def _without_erased(con: Any, src: DirectSource, column: str | None, erased: tuple[bytes, set[str]] | None,
                    na_values: tuple[str, ...]) -> tuple[DirectSource, list[int]]:
    """`src` without the rows of erased users, and their row numbers (as
    `pipelines.ingest._drop_erased`: the id hashed in the canonical form validation stores)."""
    if erased is None or column is None:
        return src, []
    key, logged = erased
    own, bare = erased_id_hashes_sql(key, id_text_sql(column, src.types[column], DUCKDB, na_values), DUCKDB)
    con.register("_erased", pa.table({"h": pa.array(sorted(logged), pa.string())}))
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE _erased_rows AS SELECT {ROW} FROM {src.relation} s "
                    f"WHERE {own} IN (SELECT h FROM _erased) OR {bare} IN (SELECT h FROM _erased)")
    finally:
        con.unregister("_erased")
    rows = sorted(con.sql(f"SELECT {ROW} FROM _erased_rows").to_arrow_table().column(ROW).to_pylist())
    if not rows:
        return src, []
    kept = f"(SELECT * FROM {src.relation} s ANTI JOIN _erased_rows USING ({ROW}))"
    return replace(src, relation=kept, source=src.relation), rows


def _check(con: Any, src: DirectSource, columns: dict[str, str | None], spec: Table, defaults: dict[str, str],
           popts: ParseOptions, order: bool = False) -> None:
    """The temporary table _checked: the validation SQL's output over the file (a CSV's with
    `_raw`, the source values of the rows that fail a check or may hold a card number; with
    `order`, the texts the order of day and month is decided from), its ROW the record's number."""
    # A CSV's source values ride along with every row but are kept only where the quarantine or
    # the Luhn check needs them; DuckDB reads an empty value as NULL, the Arrow reader as ''
    raw = {f"_raw{i}": _q(n) for i, n in enumerate(src.types)} if src.format == "csv" else {}

    def checked(relation: str) -> str:
        sql = validation_sql(spec, relation, columns, src.types, defaults, popts, DUCKDB, raw, order)
        if not raw:
            return f"CREATE OR REPLACE TEMP TABLE _checked AS {sql}"
        kept = ", ".join(f"COALESCE({k}, '')" for k in raw)
        return (f"CREATE OR REPLACE TEMP TABLE _checked AS SELECT * EXCLUDE ({', '.join(raw)}), "
                f"CASE WHEN _reason IS NOT NULL OR _card_probe THEN [{kept}] END AS _raw FROM ({sql}) v")

    # DuckDB folds isnan() of a Parquet float column to false from row-group statistics that
    # leave NaN out (a NaN amount would be rejected instead of read as missing); and it turns an
    # IN list into a join, after which a table is not written in the order of its rows
    floats = src.format == "parquet" and any(pa.types.is_floating(t) for t in src.types.values())
    con.execute(f"SET disabled_optimizers = '{'statistics_propagation,' if floats else ''}in_clause'")
    try:
        if src.numbered:
            con.execute(checked(src.relation))
            return
        statement = checked(src.relation)
        plan = "".join(r[1] for r in con.execute(f"EXPLAIN {statement}").fetchall())
        if "Batch Create Table As" not in plan:   # DuckDB would not keep the file's order
            con.execute(checked(records(con, src)))
            return
        con.execute(statement)
        con.execute(f"UPDATE _checked SET {ROW} = rowid + 1")
    finally:
        con.execute("RESET disabled_optimizers")


def _store(lake: Any, txn: Any, index: int, src: DirectSource, columns: dict[str, str | None], spec: Table,
           stored_files: list[Path], quarantine_of: Quarantine, notes: list[str], erased_rows: list[int],
           currency: str) -> Stored:
    con, engine = lake.con, lake.engine
    checked = "_checked"
    read = con.execute(f"SELECT count(*) FROM {checked}").fetchall()[0][0] + len(erased_rows)
    probe = con.sql(f"SELECT {ROW} FROM {checked} WHERE _card_probe").to_arrow_table().column(ROW).to_pylist()
    if probe:
        hits = card_numbers(_source_rows(con, src, probe), spec, columns)
        if hits:
            _set_reason(con, checked, hits, "card_number")
    names = [f.name for f in con.sql(f"SELECT * FROM {checked} LIMIT 0").to_arrow_table().schema]
    copies: list[int] = []
    if spec.name == "payments" and columns.get("line_no") is None:
        con.execute(f"CREATE OR REPLACE TEMP TABLE _lined AS {line_numbers_sql(checked, names, spec, DUCKDB)}")
        checked, copy = "_lined", "_copy"
    else:
        copy_rows, conflict_rows = repeated_keys(engine, checked, spec)
        copies = copy_rows.to_pylist()
        if len(conflict_rows):
            _set_reason(con, checked, dict.fromkeys(conflict_rows.to_pylist(), CONFLICT_DETAIL.format(", ".join(spec.key))),
                        "conflicting_key")
        copy = "false"
        if copies:
            con.register("_copies", pa.table({ROW: pa.array(copies, pa.int64())}))
            copy = f"{ROW} IN (SELECT {ROW} FROM _copies)"
    rejected = con.sql(f"SELECT {ROW}, _reason AS reason, _detail AS detail FROM {checked} "
                       f"WHERE _reason IS NOT NULL ORDER BY {ROW}").to_arrow_table()
    masked = pa.array([mask_card_numbers(d) for d in rejected.column("detail").to_pylist()], pa.string())
    rejected = rejected.set_column(2, "detail", masked)
    values = _source_rows(con, src, rejected.column(ROW).to_pylist())
    quarantine = quarantine_of(Source(src.path, src.format, values), rejected, erased_rows)
    # The file's records (if they were read into a table) are read no more: their memory goes
    # to the write
    for done in (LOADED, "_erased_rows", *(("_checked",) if checked != "_checked" else ())):
        con.execute(f"DROP TABLE IF EXISTS {done}")
    try:
        duplicates, accepted, without_amount = con.execute(
            f"SELECT count(*) FILTER ({copy}), count(*) FILTER (NOT ({copy})), "
            f"count(*) FILTER (NOT ({copy}) AND amount IS NULL) FROM {checked} WHERE _reason IS NULL").fetchall()[0]
        stored = _write_new(lake, txn, index, spec, f"SELECT * FROM {checked} WHERE _reason IS NULL AND NOT ({copy})",
                            stored_files, currency) if accepted else 0
    finally:
        if copies:
            con.unregister("_copies")
    return Stored(read, stored, accepted - stored, duplicates or 0, without_amount or 0, quarantine,
                  src.notes + notes)


def _set_reason(con: Any, relation: str, details: dict[int, str], reason: str) -> None:
    """Give the rows `details` names (row number -> detail) reason `reason` and their detail."""
    con.register("_hits", pa.table({ROW: pa.array(list(details), pa.int64()),
                                    "detail": pa.array(list(details.values()), pa.string())}))
    try:
        con.execute(f"UPDATE {relation} SET _reason = {DUCKDB.literal(reason)}, _detail = h.detail "
                    f"FROM _hits h WHERE {relation}.{ROW} = h.{ROW}")
    finally:
        con.unregister("_hits")


def _write_new(lake: Any, txn: Any, index: int, spec: Table, accepted: str, stored_files: list[Path],
               currency: str) -> int:
    """Copy the rows of the SQL `accepted` whose key the lake does not hold into the month
    partitions of `txn`; the number written. The same anti join and bounds as the Arrow path
    (`pipelines.ingest._new_rows`): only stored keys within the range of the first key column."""
    con = lake.con
    rows = f"SELECT {', '.join(_written_casts(spec, currency))} FROM ({accepted}) a"
    params = None
    if stored_files:
        stored, params = _stored_keys(con, rows, spec, stored_files)
        rows = f"SELECT n.* FROM ({rows}) n ANTI JOIN {stored} s USING ({', '.join(_q(k) for k in spec.key)})"
    return write_months(con, rows, txn.staging, spec.name, f"part-{txn.id}-{index}", params)


def _written_casts(spec: Table, currency: str, values: Callable[[str], str] = _q) -> list[str]:
    """The SQL of each lake column as the month partitions are written (`values`: the SQL of a
    column's value), the name kept. A column of listed values (`channel`, `status`) and the
    currency (every stored row has the lake's) go as an ENUM of those values: Parquet holds
    them as the same text (a dictionary-encoded string, which every reader reads as text), but
    DuckDB's writer then writes each value's number in the list instead of looking up each text
    in its dictionary (8% of a clean CSV's one-pass write at 1M lines)."""
    casts = []
    for col, f in zip(spec.columns, spec.arrow_schema):
        listed = (currency,) if col.name == "currency" else col.choices
        typ = f"ENUM({', '.join(DUCKDB.literal(v) for v in listed)})" if listed else _duckdb_type(f.type)
        casts.append(f"CAST({values(f.name)} AS {typ}) AS {_q(f.name)}")
    return casts


def _duckdb_type(typ: pa.DataType) -> str:
    """The DuckDB type an Arrow table of the lake's schema has in DuckDB."""
    if pa.types.is_decimal(typ):
        return f"DECIMAL({typ.precision},{typ.scale})"
    if pa.types.is_timestamp(typ):
        return "TIMESTAMPTZ" if typ.tz else "TIMESTAMP"
    return {pa.string(): "VARCHAR", pa.int32(): "INTEGER", pa.int64(): "BIGINT", pa.float64(): "DOUBLE",
            pa.bool_(): "BOOLEAN"}[typ]


def _source_rows(con: Any, src: DirectSource, rows: list[int]) -> pa.Table:
    """The source rows numbered `rows` as the Arrow reader gives them (CSV: text, an empty
    value as ''), with ROW: a CSV's from the checked table's `_raw` where it holds them, the
    others from the file's records (`records`)."""
    if src.format == "parquet":
        return _parquet_rows(src.path, rows)
    names = [n for n in src.types]
    kept = _rows_of(con, f"SELECT {ROW}, _raw FROM _checked WHERE _raw IS NOT NULL", rows)
    raw = kept.column("_raw").combine_chunks()
    found = pa.table({**{n: pc.list_element(raw, i) for i, n in enumerate(names)}, ROW: kept.column(ROW)})
    missing = sorted(set(rows) - set(found.column(ROW).to_pylist()))
    if missing:
        every = src.every_record if src.numbered else records(con, src)
        cols = ", ".join(f"COALESCE({_q(n)}, '') AS {_q(n)}" for n in names)
        found = pa.concat_tables([found, _rows_of(con, f"SELECT {cols}, {ROW} FROM {every} s", missing)])
    return found.sort_by(ROW)


def _rows_of(con: Any, relation: str, rows: list[int]) -> pa.Table:
    """The rows of the SQL `relation` (with ROW) numbered `rows`."""
    con.register("_wanted", pa.table({ROW: pa.array(sorted(set(rows)), pa.int64())}))
    try:
        return con.sql(f"SELECT * FROM ({relation}) r SEMI JOIN _wanted USING ({ROW})").to_arrow_table()
    finally:
        con.unregister("_wanted")


def _parquet_rows(path: Path, rows: list[int]) -> pa.Table:
    """Rows numbered `rows` of a Parquet file, read by pyarrow as the Arrow path reads it (only
    the row groups that hold them)."""
    f = pq.ParquetFile(path)
    wanted = sorted(set(rows))
    parts, starts, start = [], [], 0
    for g in range(f.num_row_groups):
        n = f.metadata.row_group(g).num_rows
        inside = [r for r in wanted if start < r <= start + n]
        if inside:
            t = f.read_row_group(g)
            parts.append(t.take(pa.array([r - start - 1 for r in inside], pa.int64())))
            starts += inside
        start += n
    table = pa.concat_tables(parts) if parts else f.schema_arrow.empty_table()
    return table.append_column(ROW, pa.array(starts, pa.int64()))


def _value_of(con: Any, src: DirectSource):
    """The source value of (column, row number), read from the file (for the date order's examples)."""
    def value(column: str, row: int) -> object:
        return _source_rows(con, src, [row]).column(column)[0].as_py()
    return value
