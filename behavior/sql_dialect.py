"""The few SQL constructs that differ between the engines, one table per engine.

Every log-level definition (features, merchant loyalty, cohort tables, churn labels,
interactions, promotion windows) is ONE SQL text, rendered for an engine by filling in the
templates of its `Dialect`; nothing else differs, so the engines cannot drift. DuckDB is the
default; "spark" is Spark SQL (Spark 4, session time zone UTC, run by
`pipelines.engines.spark`).

A template is a `str.format` pattern; the placeholders are documented per field. Everything
outside these templates is standard SQL both engines accept (aggregates with FILTER, CASE,
window functions, USING joins, GROUP BY ALL, `::` casts, LIKE, INTERVAL n DAY).

`SqlEngine` is what a log-level function needs from an engine: its dialect, a relation's
column types, and a query's result as Arrow. `DuckDBEngine` adapts a DuckDB connection; the
Spark engine lives in `pipelines.engines.spark` (so only it imports pyspark).
"""

from __future__ import annotations

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
    utc_month: str           # {0}: a timestamp -> the first day of its UTC month (DATE)
    month_diff: str          # {0}, {1}: first-of-month DATEs -> whole months from {0} to {1}
    series: str              # {0} n >= 1, {1} alias: a FROM item with rows {1}({1}) = 0 .. n-1;
                             # n may refer to the FROM items before it (a lateral join)
    ident: str               # {0}: a quoted identifier (for column names that are keywords)
    param: str               # {0}: a named query parameter (bound by `SqlEngine.arrow(params=)`)
    avg_decimal: str         # {0}: a DECIMAL expression -> its mean as DOUBLE, unrounded
    tz_types: tuple[str, ...]   # lower-case type names of a timestamp WITH time zone

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
    utc_month="date_trunc('month', {0} AT TIME ZONE 'UTC')::DATE",
    month_diff="date_diff('month', {0}, {1})",
    series="range(0, CAST({0} AS BIGINT)) {1}({1})",
    ident='"{0}"',
    param="${0}",
    avg_decimal="AVG({0})",
    tz_types=("timestamp with time zone", "timestamptz"),
)

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
    utc_month="CAST(date_trunc('MONTH', {0}) AS DATE)",
    month_diff="timestampdiff(MONTH, {0}, {1})",
    series="LATERAL explode(sequence(0, CAST({0} AS BIGINT) - 1)) AS {1}({1})",
    ident="`{0}`",
    param=":{0}",
    # Spark's AVG of a DECIMAL is a DECIMAL rounded to 6 places; the exact sum over the count
    # is DuckDB's value
    avg_decimal="CAST(SUM({0}) AS DOUBLE) / COUNT({0})",
    tz_types=("timestamp", "timestamp_ltz"),
)

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
        if params:
            return self.con.execute(sql, params).fetch_arrow_table()
        return self.con.sql(sql).to_arrow_table()

    def frame(self, sql: str) -> pd.DataFrame:
        return self.con.sql(sql).df()

    def register(self, name: str, table: pa.Table) -> None:
        self.con.register(name, table)

    def unregister(self, name: str) -> None:
        self.con.unregister(name)


def as_engine(con_or_engine: Any) -> SqlEngine:
    """A DuckDB connection wrapped as a `DuckDBEngine`; an engine is returned as is."""
    if isinstance(con_or_engine, duckdb.DuckDBPyConnection):
        return DuckDBEngine(con_or_engine)
    return con_or_engine


__all__ = ["DIALECTS", "DUCKDB", "SPARK", "Dialect", "DuckDBEngine", "SqlEngine", "as_engine", "get_dialect"]
