"""The row order inside the run's user-part files is DuckDB's (a parallel partitioned write), so
it may differ from run to run: no stage may depend on it. A run whose parts are written in
reverse order publishes the same bundle as a run on the same lake with the parts as written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from behavior import features as F
from behavior.store.datahome import DataHome
from pipelines.ingest import IngestOptions, ingest
from pipelines.synth_files import write_synth
from tests.bundle_files import assert_arrays_close


def _run(home: DataHome) -> tuple[dict, Path]:
    from pipelines.cli import app

    out = CliRunner().invoke(app, ["--data-dir", str(home.root), "--quiet", "run", "--json"])
    assert out.exit_code == 0, out.output
    rep = json.loads(out.stdout)
    return rep, home.bundles / rep["bundle_version"]


def _reversed_parts(write):
    """`UserParts._write`, then each part's rows rewritten in the reverse order."""
    def reversed_write(self, k):
        relations = write(self, k)
        for path in Path(self._folder.name).rglob("*.parquet"):
            table = pq.read_table(path)
            pq.write_table(table.take(np.arange(table.num_rows)[::-1]), path)
        reversed_write.parts = len(relations)
        return relations
    reversed_write.parts = 0
    return reversed_write


def _untimed(section):
    """A report section without its measured seconds, floats to 9 significant digits."""
    if isinstance(section, dict):
        return {k: _untimed(v) for k, v in section.items() if "second" not in k}
    if isinstance(section, list):
        return [_untimed(v) for v in section]
    return float(f"{section:.9g}") if isinstance(section, float) else section


def _same(a: Path, b: Path) -> list[str]:
    files = sorted(p.name for p in a.iterdir() if p.suffix in (".parquet", ".npz"))
    assert files == sorted(p.name for p in b.iterdir() if p.suffix in (".parquet", ".npz"))
    for name in files:
        if name.endswith(".npz"):
            assert_arrays_close(a / name, b / name, atol=1e-12)   # sums in another order: the last bits
            continue
        ta, tb = pq.read_table(a / name), pq.read_table(b / name)
        assert ta.schema == tb.schema, name
        pd.testing.assert_frame_equal(ta.to_pandas(), tb.to_pandas(), check_exact=False, rtol=1e-9, atol=1e-12,
                                      obj=name)   # the same rows in the same order
    return files


@pytest.mark.slow
def test_a_run_does_not_depend_on_the_row_order_inside_the_user_parts(tmp_path, monkeypatch):
    monkeypatch.delenv("BEHAVIOR_RECOMMEND_TRAINER", raising=False)
    write_synth(tmp_path / "synth", users=800, months=12, seed=11, promo_assign_rate=0.5)
    home = DataHome(tmp_path / "data")
    ingest(home, [tmp_path / "synth"], IngestOptions())
    monkeypatch.setattr(F, "PART_LINES", 2_000)        # the lake's lines in several parts
    as_written, first = _run(home)
    reversed_write = _reversed_parts(F.UserParts._write)
    monkeypatch.setattr(F.UserParts, "_write", reversed_write)
    reversed_rep, second = _run(home)
    assert reversed_write.parts > 2                    # the second run did write reversed parts
    assert reversed_rep["as_of"] == as_written["as_of"]
    for section in ("loyalty", "segments", "merchants", "churn", "recommend", "promotions"):
        assert _untimed(reversed_rep[section]) == _untimed(as_written[section]), section
    files = _same(first, second)
    assert {"profiles.parquet", "uplift_scores.parquet", "recommender.npz", "merchants.parquet"} <= set(files)
