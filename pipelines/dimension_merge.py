"""The upsert of a dimension table (users, items, promotions) as SQL, the same on DuckDB (ingest)
and Spark (`pipelines.engines.spark.SparkLake`)."""

from __future__ import annotations

import pyarrow as pa

from behavior.schema import Table
from behavior.sql_dialect import Dialect
from behavior.validate import _q


def dimension_merge_sql(spec: Table, old: str | None, new: str, d: Dialect) -> str:
    """Upsert as SQL: the stored rows of `old` (None: none yet) and the rows of `new` (with a
    `_pos` column: their order), a new row replacing a stored one with its key, the last new
    row of a key winning; ordered by key."""
    cols = ", ".join(_q(n, d) for n in spec.names)
    keys = ", ".join(_q(k, d) for k in spec.key)
    stored = f"SELECT {cols}, 0 AS _src, 0 AS _pos FROM {old} UNION ALL " if old else ""
    return (f"SELECT {cols} FROM (SELECT {cols}, row_number() OVER (PARTITION BY {keys} ORDER BY _src DESC, "
            f"_pos DESC) AS _rn FROM ({stored}SELECT {cols}, 1 AS _src, _pos FROM {new}) u) r "
            f"WHERE _rn = 1 ORDER BY {keys}")


def with_positions(table: pa.Table) -> pa.Table:
    """`table` with `_pos` = 1..n, the order `dimension_merge_sql` needs."""
    return table.append_column("_pos", pa.array(range(1, table.num_rows + 1), pa.int64()))
