"""The few SQL constructs that differ between the engines, one table per engine.

Every log-level definition (features, merchant loyalty, cohort tables, churn labels,
interactions, promotion windows, ingest's validation) is ONE SQL text, rendered for an engine
by filling in the templates of its `Dialect`, so the engines cannot drift. DuckDB is the
default; "spark" is Spark SQL (Spark 4, session time zone UTC, run by
`pipelines.engines.spark`). The Spark templates give DuckDB's answers where Spark's own
would differ: the text of a float (`float_text`: Java writes 12345678.0 as 1.2345678E7), a
whole-text regular expression match (anchored with `\\z`: Java's `$` also matches before a
final newline), strptime patterns (`java_pattern`: two-digit fields where numbers touch, as
in `%Y%m%d`), and the row hash (`row_hash_arg`: xxhash64 skips NULLs, so a marker per value).

What still differs (README, Engines): a two-digit year `%y` reads 2000-2099 on Spark (DuckDB
1969-2068); hash values themselves (`row_hash` is compared only within one engine); the text
of a timestamp (`CAST(ts AS text)`: DuckDB adds `+00` to an instant), so a payment id derived
from a typed (Parquet) timestamp differs; and the text of a float that is not a whole number
below 1e16 may have one digit more on Spark where Java 17's `Double.toString` is not the
shortest (DuckDB's is, e.g. 1.2345678901234568e+18 against 1.23456789012345677e+18).

A template is a `str.format` pattern; the placeholders are documented per field. Everything
outside these templates is standard SQL both engines accept (aggregates with FILTER, CASE,
window functions, USING joins, GROUP BY ALL, `::` casts, LIKE, INTERVAL n DAY).

`SqlEngine` is what a log-level function needs from an engine: its dialect, a relation's
column types, and a query's result as Arrow. `DuckDBEngine` adapts a DuckDB connection; the
Spark engine lives in `pipelines.engines.spark` (so only it imports pyspark).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import duckdb
import pandas as pd
import pyarrow as pa


@dataclass(frozen=True)
class Dialect:
    name: str
    epoch_us: str            # {0}: a timestamp -> its epoch microseconds (BIGINT)
    struct: str              # {0}: comma-joined `struct_field`s -> a struct value
    struct_field: str        # {0} name, {1} value
    timestamp_tz: str        # {0}: 'YYYY-MM-DD HH:MM:SS.ffffff' UTC wall time -> an instant literal
    timestamp_naive: str     # {0}: the same, a timestamp without time zone
    string_type: str         # the type name of text in a CAST
    float_text: str          # {0}: a DOUBLE / FLOAT -> its text as DuckDB writes it (shortest digits, plain
                             # from 1e-4 to 1e16, else 1.5e+16 / 1.5e-05; 'nan', 'inf')
    utc_month: str           # {0}: a timestamp -> the first day of its UTC month (DATE)
    month_diff: str          # {0}, {1}: first-of-month DATEs -> whole months from {0} to {1}
    series: str              # {0} n >= 1, {1} alias: a FROM item with rows {1}({1}) = 0 .. n-1;
                             # n may refer to the FROM items before it (a lateral join)
    ident: str               # {0}: a quoted identifier (for column names that are keywords)
    param: str               # {0}: a named query parameter (bound by `SqlEngine.arrow(params=)`)
    tz_types: tuple[str, ...]   # lower-case type names of a timestamp WITH time zone
    # row validation of ingest (behavior.validate, behavior.parsing, behavior.pii)
    instant_type: str        # the type name of an instant (timestamp with time zone) in a CAST
    instant_text: str        # {0}: an instant -> its text, 'YYYY-MM-DD HH:MM:SS[.ffffff]+00'
    printable_ends: str      # {0}: text -> whether its first and its last character are printable ASCII ('!' .. '~')
    byte_length: str         # {0}: text -> its length in UTF-8 bytes (no count of characters)
    may_hold_control: str    # {0}: comma-joined texts -> true where one holds a control character (behavior.ids),
                             # and perhaps where none does: a fast first test before the exact one
    starts_with_year: str    # {0}: text -> whether it starts with four digits, the first not 0, and a dash
    try_instant: str         # {0}: ISO 8601 text (T or space, Z or an offset; naive = UTC) -> instant or NULL
    epoch_seconds: str       # {0}: seconds since 1970 (a number) -> an instant
    regexp_full: str         # {0} text, {1} a pattern literal (see `full_match`) -> whole text matches
    regexp_find: str         # {0} text, {1} a pattern literal -> some part of the text matches
    regexp_replace_all: str  # {0} text, {1} pattern literal, {2} replacement literal -> every match replaced
    group_ref: str           # {0}: group number, as written in a replacement (backslash 1, $1)
    sha256: str              # {0}: text -> lower-case hex SHA-256
    row_hash: str            # {0}: comma-joined `row_hash_arg`s -> a 64-bit hash (equal values, equal hash)
    row_hash_arg: str        # {0}: one expression as hashed by `row_hash` (where its NULL is counted)
    backslash_escapes: bool  # string literals treat backslash as an escape (Spark), else '' is the only one

    def literal(self, value: str) -> str:
        """A string literal holding exactly `value` (regular expressions included)."""
        if self.backslash_escapes:
            return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
        return "'" + value.replace("'", "''") + "'"

    def full_match(self, expr: str, pattern: str) -> str:
        """Whether all of `expr` matches the regular expression `pattern` (a Python string)."""
        if self.name == "spark":   # RLIKE finds; anchor the pattern to match the whole text
            pattern = f"^(?:{pattern})\\z"   # not $: Java's $ also matches before a final newline
        return self.regexp_full.format(expr, self.literal(pattern))

    def hash_of(self, exprs: list[str]) -> str:
        """A 64-bit hash of the values of `exprs`: equal values (NULLs in the same places), equal hash."""
        return self.row_hash.format(", ".join(self.row_hash_arg.format(e) for e in exprs))

    def find(self, expr: str, pattern: str) -> str:
        return self.regexp_find.format(expr, self.literal(pattern))

    def replace_all(self, expr: str, pattern: str, replacement: str) -> str:
        return self.regexp_replace_all.format(expr, self.literal(pattern), self.literal(replacement))

    def try_strptime(self, expr: str, formats: list[str]) -> str:
        """`expr` parsed by the first strftime pattern of `formats` that reads all of it, or NULL."""
        if self.name == "spark":
            return "COALESCE(" + ", ".join(f"try_to_timestamp({expr}, {self.literal(java_pattern(f))})"
                                           for f in formats) + ")"
        if len(formats) == 1:
            return f"try_strptime({expr}, {self.literal(formats[0])})"
        return f"try_strptime({expr}, [" + ", ".join(self.literal(f) for f in formats) + "])"

    def struct_of(self, **fields: str) -> str:
        """A struct value with named fields (compared field by field, in order, by MIN / MAX)."""
        return self.struct.format(", ".join(self.struct_field.format(k, v) for k, v in fields.items()))

    def is_tz_aware(self, type_name: str) -> bool:
        return type_name.lower() in self.tz_types


DUCKDB = Dialect(
    name="duckdb",
    epoch_us="epoch_us({0})",
    struct="{{{0}}}",
    struct_field="'{0}': {1}",
    timestamp_tz="TIMESTAMPTZ '{0}+00:00'",
    timestamp_naive="TIMESTAMP '{0}'",
    string_type="VARCHAR",
    float_text="CAST({0} AS VARCHAR)",
    # from the epoch, not AT TIME ZONE: the same month, without a time zone lookup per line
    utc_month="date_trunc('month', make_timestamp(epoch_us({0})))::DATE",
    month_diff="date_diff('month', {0}, {1})",
    series="range(0, CAST({0} AS BIGINT)) {1}({1})",
    ident='"{0}"',
    param="${0}",
    tz_types=("timestamp with time zone", "timestamptz"),
    instant_type="TIMESTAMPTZ",
    instant_text="CAST({0} AS VARCHAR)",
    # the first character by comparing bytes ('!' <= text < DEL: its first byte is 0x21-0x7E, never a
    # UTF-8 lead byte), nearly free; the last as a code point (not right(): it counts characters)
    printable_ends="{0} >= '!' AND {0} < chr(127) AND ord(({0})[-1]) BETWEEN 33 AND 126",
    byte_length="strlen({0})",
    # JSON escapes U+0000-U+001F (and '"', '\\') with a backslash, and leaves DEL as it is. The ids
    # joined into one text, escaped in one call (DuckDB computes it once for both tests): a third of
    # a regular expression on each, and 80 ns a row against 132 for the JSON of a row of the 5 ids
    # with DEL replaced by a backslash
    may_hold_control=("(contains(CAST(to_json(concat({0})) AS VARCHAR), '\\') "
                      "OR contains(CAST(to_json(concat({0})) AS VARCHAR), chr(127)))"),
    # a pattern of characters: 29 ns a text, against 51 for its fifth character and the cast of its first four
    starts_with_year="{0} GLOB '[1-9][0-9][0-9][0-9]-*'",
    try_instant="TRY_CAST({0} AS TIMESTAMPTZ)",
    epoch_seconds="to_timestamp({0})",
    regexp_full="regexp_full_match({0}, {1})",
    regexp_find="regexp_matches({0}, {1})",
    regexp_replace_all="regexp_replace({0}, {1}, {2}, 'g')",
    group_ref="\\{0}",
    sha256="sha256({0})",
    row_hash="hash({0})",
    row_hash_arg="{0}",
    backslash_escapes=False,
)

def _spark_float_text() -> str:
    """Spark's cast of a DOUBLE to text is Java's (`1.2345678E7` from 1e7, `1.0E-4` below 1e-3);
    rewrite it as DuckDB's: whole numbers below 1e16 exactly (`12345678.0`), others from
    Java's digits and exponent (plain from 1e-4 to 1e16, else `1.5e+16`)."""
    x, s = "{0}", "CAST({0} AS STRING)"
    mantissa, n = f"substring_index({s}, 'E', 1)", f"CAST(substring_index({s}, 'E', -1) AS INT)"
    digits = f"regexp_replace(replace({mantissa}, '-', ''), '\\\\.0$|\\\\.', '')"   # 1.05 -> 105, 1.0 -> 1
    sign = f"CASE WHEN {x} < 0 THEN '-' ELSE '' END"
    scientific = (f"left({digits}, 1) || CASE WHEN length({digits}) > 1 THEN '.' || substr({digits}, 2) ELSE '' END"
                  f" || 'e' || CASE WHEN {n} < 0 THEN '-' ELSE '+' END || CASE WHEN abs({n}) < 10 THEN '0' ELSE '' END"
                  f" || abs({n})")
    return (f"CASE WHEN {x} = floor({x}) AND abs({x}) < 1e16 AND {x} <> 0 THEN CAST(CAST({x} AS BIGINT) AS STRING) || '.0' "
            f"WHEN NOT contains({s}, 'E') THEN lower(replace({s}, 'Infinity', 'inf')) "   # -0.0, NaN, Infinity, 0.001 .. 1e7
            f"ELSE {sign} || CASE WHEN {n} BETWEEN 0 AND 15 THEN left({digits}, {n} + 1) || '.' || substr({digits}, {n} + 2) "
            f"WHEN {n} = -4 THEN '0.000' || {digits} ELSE {scientific} END END")


_SPARK_FLOAT_TEXT = _spark_float_text()

# Spark SQL. The session time zone must be UTC (the engine sets it): Spark's TIMESTAMP is an
# instant shown in the session zone, and date_trunc works in that zone.
SPARK = Dialect(
    name="spark",
    epoch_us="unix_micros({0})",
    struct="named_struct({0})",
    struct_field="'{0}', {1}",
    timestamp_tz="TIMESTAMP '{0}+00:00'",
    timestamp_naive="TIMESTAMP_NTZ '{0}'",
    string_type="STRING",
    float_text=_SPARK_FLOAT_TEXT,
    utc_month="CAST(date_trunc('MONTH', {0}) AS DATE)",
    month_diff="timestampdiff(MONTH, {0}, {1})",
    series="LATERAL explode(sequence(0, CAST({0} AS BIGINT) - 1)) AS {1}({1})",
    ident="`{0}`",
    param=":{0}",
    tz_types=("timestamp", "timestamp_ltz"),
    instant_type="TIMESTAMP",
    instant_text="CAST({0} AS STRING) || '+00'",
    printable_ends="left({0}, 1) BETWEEN '!' AND '~' AND right({0}, 1) BETWEEN '!' AND '~'",
    byte_length="octet_length({0})",
    may_hold_control="(concat_ws('', {0}) RLIKE '[\\\\x00-\\\\x1f\\\\x7f]')",
    starts_with_year="({0} RLIKE '^[1-9][0-9]{{3}}-')",
    # Spark's cast also reads '2024' and '2024-05' as dates; DuckDB's needs year, month and day
    try_instant="CASE WHEN {0} RLIKE '^[0-9]{{4}}-[0-9]{{1,2}}-[0-9]{{1,2}}' THEN TRY_CAST({0} AS TIMESTAMP) END",
    epoch_seconds="timestamp_seconds({0})",
    regexp_full="({0} RLIKE {1})",
    regexp_find="({0} RLIKE {1})",
    regexp_replace_all="regexp_replace({0}, {1}, {2})",
    group_ref="${0}",
    sha256="sha2({0}, 256)",
    # xxhash64 skips NULLs: (NULL, 'X') and ('X', NULL) would hash alike; a marker per value
    row_hash="xxhash64({0})",
    row_hash_arg="{0}, {0} IS NULL",
    backslash_escapes=True,
)

_JAVA_FIELDS = {"%Y": "yyyy", "%y": "yy", "%m": "M", "%d": "d", "%H": "H", "%I": "h", "%M": "m", "%S": "s",
                "%p": "a", "%b": "MMM", "%B": "MMMM", "%f": "SSSSSS", "%z": "XXX", "%%": "%"}


# the strftime codes both engines read (what --date-format may use)
DATE_CODES: tuple[str, ...] = tuple(_JAVA_FIELDS)
_NUMERIC_FIELDS = {"%Y", "%y", "%m", "%d", "%H", "%I", "%M", "%S", "%f"}


def java_pattern(strftime: str) -> str:
    """A strftime pattern as a Spark (java.time) datetime pattern; letters outside the fields
    are quoted. One-letter fields read one or two digits, as strptime does, except next to
    another number field (`%Y%m%d`): java.time cannot split adjacent numbers when one has a
    variable width, so there the field is two digits (`yyyyMMdd`; strptime reads 20240105
    the same way)."""
    tokens, i = [], 0
    while i < len(strftime):
        two = strftime[i:i + 2]
        if two in _JAVA_FIELDS:
            tokens.append(two)
            i += 2
            continue
        if two.startswith("%"):
            raise ValueError(f"date format {strftime!r}: {two} has no Spark equivalent; use %Y %y %m %d %H %I %M %S %p %b %B %f %z")
        tokens.append(strftime[i])
        i += 1
    out = []
    for j, tok in enumerate(tokens):
        if tok not in _JAVA_FIELDS:
            out.append(f"'{tok}'" if tok.isalpha() or tok == "'" else tok)
            continue
        field = _JAVA_FIELDS[tok]
        beside = {tokens[k] for k in (j - 1, j + 1) if 0 <= k < len(tokens)}
        if len(field) == 1 and tok in _NUMERIC_FIELDS and beside & _NUMERIC_FIELDS:
            field *= 2
        out.append(field)
    return "".join(out)

DIALECTS: dict[str, Dialect] = {d.name: d for d in (DUCKDB, SPARK)}


def get_dialect(dialect: str | Dialect) -> Dialect:
    """The Dialect named `dialect` ("duckdb" or "spark"); a Dialect is returned as is."""
    if isinstance(dialect, Dialect):
        return dialect
    try:
        return DIALECTS[dialect]
    except KeyError:
        raise ValueError(f"unknown SQL dialect {dialect!r}; use one of {', '.join(DIALECTS)}") from None


class SqlEngine(Protocol):
    """What a log-level function needs from an engine."""

    dialect: Dialect

    def column_types(self, relation: str) -> dict[str, str]:
        """Column name -> type name of a relation (a view or table name)."""

    def arrow(self, sql: str, params: dict[str, Any] | None = None) -> pa.Table:
        """The result of `sql` (named parameters written with `dialect.param`)."""

    def frame(self, sql: str) -> pd.DataFrame:
        """The result of `sql` as a pandas DataFrame."""

    def record_batches(self, sql: str) -> Iterable[pa.RecordBatch]:
        """The result of `sql` as Arrow record batches, streamed where the engine can (a large
        result is then never held whole beside what the caller makes of it)."""

    def create_view(self, name: str, sql: str) -> None:
        """A temporary view `name` over `sql` (replaced if it exists); drop it with `drop_view`."""

    def drop_view(self, name: str) -> None:
        """Drop the temporary view `name` (nothing if there is none)."""


class DuckDBEngine:
    """A DuckDB connection as a `SqlEngine` (plus `register` / `unregister` of Arrow tables)."""

    name = "duckdb"
    dialect = DUCKDB

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con

    def column_types(self, relation: str) -> dict[str, str]:
        rel = self.con.sql(f"SELECT * FROM {relation} LIMIT 0")
        return dict(zip(rel.columns, (str(t) for t in rel.types)))

    def arrow(self, sql: str, params: dict[str, Any] | None = None) -> pa.Table:
        if params:   # (DuckDB 2 has no fetch_arrow_table; a relation takes the parameters)
            return self.con.sql(sql, params=params).to_arrow_table()
        return self.con.sql(sql).to_arrow_table()

    def frame(self, sql: str) -> pd.DataFrame:
        return self.con.sql(sql).df()

    def record_batches(self, sql: str) -> pa.RecordBatchReader:
        return self.con.sql(sql).to_arrow_reader()

    def execute(self, sql: str) -> None:
        """Run a statement with no result (e.g. a COPY)."""
        self.con.execute(sql)

    def register(self, name: str, table: pa.Table) -> None:
        self.con.register(name, table)

    def unregister(self, name: str) -> None:
        self.con.unregister(name)

    def create_view(self, name: str, sql: str) -> None:
        self.con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS {sql}")

    def drop_view(self, name: str) -> None:
        self.con.execute(f"DROP VIEW IF EXISTS {name}")


def as_engine(con_or_engine: Any) -> SqlEngine:
    """A DuckDB connection wrapped as a `DuckDBEngine`; an engine is returned as is."""
    if isinstance(con_or_engine, duckdb.DuckDBPyConnection):
        return DuckDBEngine(con_or_engine)
    return con_or_engine


__all__ = ["DATE_CODES", "DIALECTS", "DUCKDB", "SPARK", "Dialect", "DuckDBEngine", "SqlEngine", "as_engine", "get_dialect",
           "java_pattern"]
