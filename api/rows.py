"""Arrow rows as the API returns them: timestamps as ISO 8601 UTC strings, no NaN."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

ISO_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # Arrow's %S carries the fraction of the second


def json_rows(table: pa.Table) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts: timestamps as ISO 8601 UTC strings, NaN and infinities as null."""
    return to_json_table(table).to_pylist()


def to_json_table(table: pa.Table) -> pa.Table:
    """`table` with timestamps as ISO 8601 UTC strings and non-finite floats as nulls (for JSON and CSV)."""
    cols = []
    for name, col in zip(table.column_names, table.columns):
        t = col.type
        if pa.types.is_timestamp(t):
            col = pc.strftime(col.cast(pa.timestamp(t.unit, tz="UTC")), format=ISO_FORMAT)
        elif pa.types.is_floating(t):
            col = pc.if_else(pc.is_finite(col), col, pa.scalar(None, t))
        elif pa.types.is_decimal(t):
            col = col.cast(pa.float64())
        cols.append(col)
    return pa.table(cols, names=table.column_names)
