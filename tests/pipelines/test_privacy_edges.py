"""Privacy edge cases found in review: a late signup must not drop an opt-out, and an erased
numeric id sent back in spreadsheet form ('17850.0', ' 17850 ') is still recognised."""

from datetime import datetime, timezone

import duckdb
import pandas as pd
import pyarrow.parquet as pq

from pipelines.config import Config
from behavior.store.datahome import DataHome
from pipelines.forget import forget
from pipelines.ingest import IngestOptions, ingest
from pipelines.lake import scan_sql
from pipelines.runner import run_pipeline
from pipelines.synth_files import write_synth


def test_an_opt_out_holds_even_when_signup_is_after_as_of(tmp_path):
    write_synth(tmp_path / "synth", users=400, months=12, seed=3)
    home = DataHome(tmp_path / "data")
    ingest(home, [tmp_path / "synth"], IngestOptions())
    (tmp_path / "late.csv").write_text("user_id,signup_at,marketing_opt_out\nu0000001,2025-06-01T00:00:00Z,true\n")
    ingest(home, [tmp_path / "late.csv"], IngestOptions(table="users"))
    rep = run_pipeline(home, Config(), as_of=datetime(2024, 12, 1, tzinfo=timezone.utc),
                       stages=["features", "loyalty", "segments", "churn", "profiles"])
    profiles = pq.read_table(home.bundles / rep["bundle_version"] / "profiles.parquet").to_pandas()
    row = profiles.set_index("user_id").loc["u0000001"]
    assert bool(row["marketing_opt_out"]) is True
    assert row["signup_at"] != row["signup_at"] or row["signup_at"] is None   # the future signup is not read


def test_an_erased_numeric_id_in_spreadsheet_form_is_rejected(tmp_path):
    home = DataHome(tmp_path / "data")
    (tmp_path / "a.csv").write_text("user_id,item_id,amount,paid_at\n17850,i1,2.5,2025-01-01T10:00:00Z\n"
                                    "20000,i1,2.5,2025-01-01T10:00:00Z\n")
    ingest(home, [tmp_path / "a.csv"], IngestOptions(defaults={"currency": "EUR"}))
    forget(home, ["17850"])
    (tmp_path / "b.csv").write_text("user_id,item_id,amount,paid_at\n17850.0,i2,2.5,2025-01-02T10:00:00Z\n"
                                    " 17850 ,i3,2.5,2025-01-03T10:00:00Z\n20000,i4,1.0,2025-01-03T10:00:00Z\n")
    rep = ingest(home, [tmp_path / "b.csv"], IngestOptions())
    assert rep["rejected_by_reason"] == {"erased_user": 2} and rep["accepted"] == 1
    stored = duckdb.sql(f"SELECT DISTINCT user_id FROM {scan_sql(home.lake, 'payments')}").fetchall()
    assert stored == [("20000",)]


def test_a_rejected_row_after_an_erased_one_keeps_its_own_values_in_the_quarantine(tmp_path):
    """Erased users' rows leave the source before validation: the quarantine must still show
    each rejected row's own values (the last row included), found by row number, not position."""
    home = DataHome(tmp_path / "data")
    (tmp_path / "a.csv").write_text("user_id,item_id,amount,paid_at\n17850,i1,2.5,2025-01-01T10:00:00Z\n")
    ingest(home, [tmp_path / "a.csv"], IngestOptions(defaults={"currency": "EUR"}))
    forget(home, ["17850"])
    (tmp_path / "b.csv").write_text("user_id,item_id,amount,paid_at\n17850,i2,2.5,2025-01-02T10:00:00Z\n"
                                    "u2,i3,not-a-number,2025-01-03T10:00:00Z\nu3,i4,1.0,2025-01-03T10:00:00Z\n"
                                    "u4,i5,also-bad,2025-01-04T10:00:00Z\n")
    rep = ingest(home, [tmp_path / "b.csv"], IngestOptions())
    assert rep["accepted"] == 1 and rep["rejected"] == 3
    q = pq.read_table(home.lake / "_rejected" / "payments").to_pandas().set_index("source_row")
    q = q[q["source_file"].str.endswith("b.csv")]
    assert q.loc[1, "reason"] == "erased_user" and pd.isna(q.loc[1, "raw"])
    assert '"u2"' in q.loc[2, "raw"] and "not-a-number" in q.loc[2, "raw"]
    assert '"u4"' in q.loc[4, "raw"] and "also-bad" in q.loc[4, "raw"]


def test_a_killed_commands_spill_and_parts_are_swept_by_the_next_command(tmp_path):
    """Spill files and user parts (copies of payment lines) of a process that is gone are
    removed when the next command takes the data home, forget included; a live process's
    files and anything else in the folder are kept."""
    import os
    import subprocess
    import sys

    from pipelines.lake import locked

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    home = DataHome(tmp_path / "data")
    spill = home.root / "tmp"
    (spill / f"parts-{gone.pid}-abc" / "part=0").mkdir(parents=True)
    (spill / f"parts-{gone.pid}-abc" / "part=0" / "data_0.parquet").write_bytes(b"lines")
    (spill / f"duckdb_temp_{gone.pid}_0_storage_DEFAULT-0.tmp").write_bytes(b"spilled")
    (spill / f"parts-{os.getpid()}-live").mkdir()
    (spill / "notes.txt").write_text("not ours")
    with locked(home, "run"):
        pass
    assert sorted(p.name for p in spill.iterdir()) == ["notes.txt", f"parts-{os.getpid()}-live"]
    (spill / f"duckdb_temp_{gone.pid}_1_storage_DEFAULT-0.tmp").write_bytes(b"spilled")
    forget(home, ["u1"])
    assert sorted(p.name for p in spill.iterdir()) == ["notes.txt", f"parts-{os.getpid()}-live"]
