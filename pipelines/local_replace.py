"""`behavior ingest --replace` on the local lake: a stored line whose key the input holds with
other values is replaced by the input's version.

The stored files holding such keys are rewritten without them (new files in the
transaction's staging, the old ones deleted by its journal), and the input's versions are
written with the new lines, so the replacement commits or rolls back with the rest of the
ingest. A line stored with the same values is a duplicate, as without --replace.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from behavior.schema import Table
from behavior.sql_dialect import DUCKDB
from pipelines.lake import Transaction


def _listing(files: list[Path]) -> str:
    return ", ".join(DUCKDB.literal(str(f)) for f in files)


def changed_and_new(con, files: list[Path], spec: Table, accepted: pa.Table) -> tuple[pa.Table, pa.Table]:
    """(rows to write: new keys and stored keys with other values, the keys of the latter)."""
    keys = ", ".join(spec.key)
    cols = list(spec.names)
    first = spec.key[0]
    bounds = pc.min_max(accepted.column(first)).as_py()
    con.register("_accepted", accepted)
    try:
        # the bound on the first key lets the scan skip row groups outside the input's range
        out = con.sql(
            f"SELECT a.*, s._h IS NOT NULL AND s._h <> {DUCKDB.hash_of(['a.' + c for c in cols])} AS _differs, "
            f"s._h IS NULL AS _new FROM _accepted a LEFT JOIN ("
            f"SELECT {keys}, {DUCKDB.hash_of(cols)} AS _h FROM read_parquet([{_listing(files)}], "
            f"hive_partitioning = false, union_by_name = true) WHERE {first} BETWEEN $lo AND $hi) s USING ({keys})",
            params={"lo": bounds["min"], "hi": bounds["max"]},
        ).to_arrow_table()
    finally:
        con.unregister("_accepted")
    write = pc.or_(out.column("_new"), out.column("_differs"))
    rows = out.filter(write).select(list(spec.names)).cast(spec.arrow_schema)
    return rows, out.filter(out.column("_differs")).select(list(spec.key))


def drop_keys(con, txn: Transaction, lake: Path, files: list[Path], spec: Table, keys: pa.Table,
              index: int) -> None:
    """Rewrite the stored files (lake or this transaction's staging) that hold any of `keys`
    without those lines."""
    using = ", ".join(spec.key)
    con.register("_drop", keys)
    try:
        hit = con.sql(f"SELECT DISTINCT filename FROM read_parquet([{_listing(files)}], filename = true, "
                      f"hive_partitioning = false, union_by_name = true) SEMI JOIN _drop USING ({using}) "
                      "ORDER BY filename").fetchall()
        for k, (name,) in enumerate(hit):
            old = Path(name)
            staged = old.is_relative_to(txn.staging)
            folder = old.parent.relative_to(txn.staging if staged else lake)
            new = txn.path(str(folder / f"part-{txn.id}-{index}-r{k}.parquet"))
            con.execute(f"COPY (SELECT * FROM read_parquet({DUCKDB.literal(name)}, hive_partitioning = false) "
                        f"ANTI JOIN _drop USING ({using})) TO {DUCKDB.literal(str(new))} "
                        "(FORMAT parquet, COMPRESSION zstd)")
            if pq.read_metadata(new).num_rows == 0:
                new.unlink()
            if staged:
                old.unlink()
            else:
                txn.delete(old)
    finally:
        con.unregister("_drop")
