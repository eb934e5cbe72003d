"""Read a bundle's Parquet file into one Arrow chunk per column, touching as little memory as
the table itself needs.

`pyarrow.parquet.read_table` goes through the Dataset scanner: a column comes back in batches
(14 chunks for the 1.76M profiles of a 30M-line run), which the API then concatenates, so the
table's memory is touched twice. `ParquetFile.read` gives one chunk per row group; a file of
several row groups is read a column at a time and each column concatenated on its own, so the
memory touched beyond the table is one column's. On this machine a page touched for the first
time costs 1 to 4 s per GB (docs/performance.md, "Memory first touches").
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def read_one_chunk(path: Path) -> pa.Table:
    """The Parquet file at `path`, each column one chunk, with the file's schema (metadata
    included). Raises what pyarrow raises for a file it cannot read (ArrowException, OSError)."""
    with pq.ParquetFile(path) as pf:
        if pf.num_row_groups <= 1:
            return pf.read()
        schema = pf.schema_arrow
        return pa.table([_one_chunk(pf.read(columns=[name]).column(0)) for name in schema.names], schema=schema)


def _one_chunk(column: pa.ChunkedArray) -> pa.Array:
    # combine_chunks copies even a single chunk
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
