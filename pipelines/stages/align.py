"""Per-user tables lined up by position on another table's user ids (no join, no sort)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc


def aligned(ids: pa.ChunkedArray, table: pa.Table) -> pa.Table:
    """`table`'s columns other than user_id, one row per id of `ids` (nulls for an id it lacks)."""
    rest = table.drop_columns(["user_id"])
    if table.column("user_id").cast(ids.type).equals(ids):   # (pandas gives large_string ids)
        return rest
    return rest.take(pc.index_in(ids, value_set=table.column("user_id")))
