"""`behavior forget` beyond the lake and the published bundles: ids with any whitespace at their
ends, logs, half-written bundles, spill files, the demo's input copies."""

import json
import os

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from behavior.ids import ID_WHITESPACE, normalize_id, trim_sql
from behavior.pii import erasure_hash, erasure_hash_sql
from behavior.sql_dialect import DUCKDB
from behavior.store.datahome import DataHome
from pipelines.forget import forget
from pipelines.forget_files import scrub_logs
from pipelines.ingest import IngestOptions, ingest
from pipelines.lake import scan_sql

# the whitespace of issue 23 (tab, newline, carriage return, vertical tab, form feed, U+0085), and a space
PADDED = ["\tu1", "u2\n", "\ru3", "u4\x0b", "\x0cu5", "u6\x85", " u7 "]


@pytest.fixture
def home(tmp_path) -> DataHome:
    home = DataHome(tmp_path / "data")
    ids = PADDED + ["u8", "u10"]
    pq.write_table(pa.table({"payment_id": [f"p{i}" for i in range(len(ids))], "user_id": ids,
                             "item_id": ["i1", "i2"] * 4 + ["i1"], "amount": [1.0] * len(ids),
                             "paid_at": [f"2025-01-0{i + 1}T10:00:00Z" for i in range(len(ids))],
                             "currency": ["EUR"] * len(ids)}), tmp_path / "padded.parquet")
    ingest(home, [tmp_path / "padded.parquet"], IngestOptions())
    return home


def stored(home: DataHome) -> list[str]:
    return sorted(normalize_id(u) for (u,) in duckdb.sql(f"SELECT user_id FROM {scan_sql(home.lake, 'payments')}").fetchall())


def test_ids_with_any_whitespace_at_their_ends_are_erased(home):
    """Asked for with other padding than stored (or none), every one is found and counted."""
    rep = forget(home, ["u1", "u2", "u3\t", "\x85u4", "u5", "u6", "\nu7\r", "never-seen"])
    assert stored(home) == ["u10", "u8"]
    assert rep["lake_rows"]["payments"] == 7 and rep["rows_matched"] == 7
    assert (rep["users"], rep["matched"], rep["unmatched_ids"]) == (8, 7, ["never-seen"])


def test_logs_lose_every_form_of_the_id_and_nothing_else(home):
    audit = home.root / "audit" / "api.log"
    audit.parent.mkdir(parents=True)
    lines = ['{"endpoint":"GET /v1/users/u1/profile","user":"u1"}\n',     # JSON
             'INFO: 127.0.0.1 - "GET /v1/users/a%2Fb%20c/profile HTTP/1.1" 200\n',   # URL-encoded
             "INFO: audit {'user_id': 'a/b c'}\n",                          # repr, as is
             '{"user":"u10","other":"xu1"}\n']                               # neighbours stay
    audit.write_text("".join(lines))
    (home.root / "run.log").write_text("u1 ran\n")
    (home.root / "notes.txt").write_text("u1 is not a log\n")
    changed = scrub_logs(home, ["u1", "a/b c"])
    assert changed == {"audit/api.log": 3, "run.log": 1}
    assert audit.read_text().splitlines() == ['{"endpoint":"GET /v1/users/[erased]/profile","user":"[erased]"}',
                                              'INFO: 127.0.0.1 - "GET /v1/users/[erased]/profile HTTP/1.1" 200',
                                              "INFO: audit {'user_id': '[erased]'}",
                                              '{"user":"u10","other":"xu1"}']
    assert (home.root / "notes.txt").read_text() == "u1 is not a log\n"
    assert oct(audit.stat().st_mode & 0o777) == "0o600"


def test_logs_lose_the_id_after_an_escaped_control_character(home):
    """A log may write a quarantined id with a control character escaped before it (ingest's JSON
    report shows it as U+FFFD): the id after it is scrubbed; an escaped letter makes another id."""
    log = home.root / "logs" / "ingest.log"
    log.parent.mkdir()
    named = ['{"bad_user_id": "row 3: user_id \'\\ufffdu1\' holds a control character"}\n',   # JSON, ensure_ascii
             '{"user_id": "\\tu1"}\n', '{"user_id": "\\u0000u1"}\n', "{'user_id': '\\x00u1'}\n",
             '{"user_id": "\\u007fu1"}\n', "GET /v1/users/%00u1/profile\n", "GET /v1/users/%20u1/profile\n"]
    others = ['{"user_id": "\\tu10"}\n', '{"user_id": "\\u0041u1"}\n', "GET /v1/users/%41u1/profile\n",
              '{"user_id": "xu1"}\n']
    log.write_text("".join(named + others))
    assert scrub_logs(home, ["u1"]) == {"logs/ingest.log": len(named)}
    text = log.read_text().splitlines(keepends=True)
    assert all("[erased]" in line and "u1" not in line for line in text[:len(named)]), text
    assert text[len(named):] == others


def test_forget_clears_half_written_bundles_the_demo_input_and_dead_spill(home):
    partial = home.bundles / ".tmp-20990101T000000Z-abcdef"
    partial.mkdir(parents=True)
    pq.write_table(pa.table({"user_id": ["u8", "u9"]}), partial / "profiles.parquet")
    home.demo_input.mkdir()
    pq.write_table(pa.table({"user_id": ["u8", "u9", "u8"], "x": [1, 2, 3]}), home.demo_input / "payments.parquet")
    spill = home.root / "tmp"
    spill.mkdir()
    dead = spill / "parts-999999999-abc"     # no such pid: a run that was killed
    dead.mkdir()
    (dead / "part-0.parquet").write_bytes(b"u8")
    live = spill / f"duckdb_temp_{os.getpid()}_0_storage-0.tmp"
    live.write_bytes(b"")
    rep = forget(home, ["u8"])
    assert rep["partial_bundles"] == [partial.name] and not partial.exists()
    assert rep["demo_rows"] == {"synth/payments.parquet": 2}
    assert pq.read_table(home.demo_input / "payments.parquet").to_pydict() == {"user_id": ["u9"], "x": [2]}
    assert not dead.exists() and rep["spill_kept"] == [live.name]
    assert rep["rows_matched"] == 1 and rep["matched"] == 1 and stored(home) == sorted([normalize_id(u) for u in PADDED] + ["u10"])


@settings(max_examples=60, deadline=None)
@given(core=st.text(min_size=1, max_size=12), left=st.text(ID_WHITESPACE, max_size=3),
       right=st.text(ID_WHITESPACE, max_size=3))
def test_the_lake_and_the_erasure_log_hash_an_id_alike(core, left, right):
    """forget finds lake rows by hashing their trimmed id in SQL; the log hashes in Python: for
    any id and any whitespace around it, both give the hash of the stored form."""
    key = b"k" * 32
    stored_form = normalize_id(core)
    sql = f"SELECT {erasure_hash_sql(key, trim_sql('u', DUCKDB.literal))} FROM (SELECT ?::VARCHAR AS u)"
    with duckdb.connect() as con:      # its own connection: a half-fetched result on the default one breaks later users
        in_lake = con.execute(sql, [left + core + right]).fetchall()[0][0]
    assert in_lake == erasure_hash(key, stored_form) == erasure_hash(key, normalize_id(left + core + right))


@pytest.mark.slow       # three CLI processes
def test_an_id_with_a_control_character_is_said_and_erased_from_the_quarantine(tmp_path):
    """Ingest quarantines "u1\\x00" (bad_user_id) and stores "u1"; `forget` of "u1\\x00" says that
    ingest never stores such an id, and erases the quarantined row (exit 0); "u1" stays."""
    from tests.e2e.test_cli import behavior

    data, src = tmp_path / "data", tmp_path / "in.parquet"
    pq.write_table(pa.table({"payment_id": ["p1", "p2"], "user_id": ["u1\x00", "u1"], "item_id": ["i1", "i1"],
                             "amount": ["1.00", "2.00"], "paid_at": ["2024-01-05", "2024-01-06"]}), src)
    rep = json.loads(behavior(data, "ingest", str(src), "--default", "currency=EUR", "--json").stdout)
    assert rep["accepted"] == 1 and rep["rejected_by_reason"] == {"bad_user_id": 1}
    ids = tmp_path / "ids.txt"
    ids.write_text("u1\x00\n")
    out = behavior(data, "forget", "--file", str(ids), "--json")
    assert "'u1\\x00' holds U+0000: ingest never stores an id with a control character" in out.stderr
    assert json.loads(out.stdout)["rows_matched"] == 1
    assert not list((data / "lake" / "_rejected").rglob("*.parquet")) or not any(
        pq.read_table(f).num_rows for f in (data / "lake" / "_rejected").rglob("*.parquet"))
    stored = duckdb.sql(f"SELECT list(user_id) FROM read_parquet('{data}/lake/payments/*/*.parquet')").fetchall()[0][0]
    assert stored == ["u1"]
