"""Per-user tables lined up by position on another table's user ids (no join, no sort)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc


def ascending(ids: pa.ChunkedArray | pa.Array) -> bool:
    """Whether `ids` has no null and each id is greater than the one before (so each is there
    once): one linear pass, where a hash of millions of ids leaves the cache at every lookup."""
    return ids.null_count == 0 and (len(ids) < 2 or pc.all(pc.less(ids.slice(0, len(ids) - 1), ids.slice(1))).as_py())


def aligned(ids: pa.ChunkedArray, table: pa.Table) -> pa.Table:
    """`table`'s columns other than user_id, one row per id of `ids` (nulls for an id it lacks).

    A table with the same ids in the same order (the per-user stages keep the features' user_id
    order) is taken as it is; any other is looked up by a hash of user_id."""
    rest = table.drop_columns(["user_id"])
    if table.column("user_id").cast(ids.type).equals(ids):   # (pandas gives large_string ids)
        return rest
    keys = table.column("user_id")
    if not ascending(keys) and pc.count_distinct(keys, mode="all").as_py() != table.num_rows:
        raise AssertionError("a per-user table has a user_id twice; one row per user")
    return rest.take(pc.index_in(ids, value_set=keys))
