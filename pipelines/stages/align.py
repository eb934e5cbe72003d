"""Per-user tables lined up by position on another table's user ids (no join, no sort)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc


def aligned(ids: pa.ChunkedArray, table: pa.Table) -> pa.Table:
    """`table`'s columns other than user_id, one row per id of `ids` (nulls for an id it lacks)."""
    rest = table.drop_columns(["user_id"])
    if table.column("user_id").cast(ids.type).equals(ids):   # (pandas gives large_string ids)
        return rest
    if pc.count_distinct(table.column("user_id"), mode="all").as_py() != table.num_rows:
        raise AssertionError("a per-user table has a user_id twice; one row per user")
    return rest.take(pc.index_in(ids, value_set=table.column("user_id")))
