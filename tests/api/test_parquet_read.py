"""api.parquet_read.read_one_chunk: the bundle's tables as one chunk per column, the same
values as pyarrow's read_table, and loading the profiles touches the table's memory once."""

import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from api.parquet_read import read_one_chunk

ROOT = Path(__file__).resolve().parents[2]


def _table(rows: int) -> pa.Table:
    rng = np.random.default_rng(7)
    return pa.table({
        "user_id": pa.array([f"u{i:07d}" for i in range(rows)]),
        "segment": pa.array(rng.choice(["a", "b", None], rows)),
        "score": pa.array(rng.random(rows), mask=rng.random(rows) < 0.1),
        "at": pa.array([datetime(2026, 1, 1, tzinfo=timezone.utc)] * rows, pa.timestamp("us", tz="UTC")),
    }).replace_schema_metadata({"made_by": "test"})


@pytest.mark.parametrize("rows, group", [(1000, 1000), (1000, 300), (1000, 1), (0, 100)])
def test_one_chunk_per_column_and_the_values_of_read_table(tmp_path, rows, group):
    path = tmp_path / "t.parquet"
    pq.write_table(_table(rows), path, row_group_size=group)
    got = read_one_chunk(path)
    assert got.equals(pq.read_table(path), check_metadata=True)
    assert all(c.num_chunks == 1 for c in got.columns) or rows == 0


def test_an_unreadable_file_raises_what_pyarrow_raises(tmp_path):
    path = tmp_path / "t.parquet"
    path.write_bytes(b"not parquet")
    with pytest.raises(pa.ArrowException):
        read_one_chunk(path)


# Loading the profiles of a file of several row groups, in a process of its own: Arrow's memory
# pool's high-water mark is the table's bytes and little more (read_table's batches, combined
# afterwards, took the table's memory twice).
PEAK = """
import sys
from pathlib import Path
import pyarrow as pa
import api.bundle as B
folder = Path(sys.argv[1])
table = B._load_profiles(folder, folder.name).table
print(pa.default_memory_pool().max_memory(), table.nbytes)
"""


def test_loading_profiles_takes_their_memory_once(tmp_path):
    rows = 300_000
    cols = {"user_id": pa.array([f"u{i:07d}" for i in range(rows)]), "segment": pa.array(["a", "b"] * (rows // 2)),
            "marketing_opt_out": pa.array([False] * rows),
            **{f"x{j}": pa.array(np.random.default_rng(j).random(rows)) for j in range(40)}}
    pq.write_table(pa.table(cols), tmp_path / "profiles.parquet", row_group_size=50_000)
    out = subprocess.run([sys.executable, "-c", PEAK, str(tmp_path)], capture_output=True, text=True,
                         timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    peak, nbytes = map(int, out.stdout.split())
    assert peak < 1.4 * nbytes, (peak, nbytes)
