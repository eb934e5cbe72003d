"""Ingest through the pipeline API on real-world mess: every row stored, duplicate or quarantined."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from behavior.errors import InputError, SchemaError
from pipelines.ingest import IngestOptions, ingest
from pipelines.lake import TXN, recover, table_files

RETAIL = {"payment_id": "InvoiceNo", "item_id": "StockCode", "paid_at": "InvoiceDate", "user_id": "CustomerID",
          "unit_price": "UnitPrice", "category": "Description"}
SHOP = {"payment_id": "Bestellnr", "line_no": "Position", "user_id": "Kunde", "item_id": "Artikel",
        "category": "Kategorie", "quantity": "Menge", "amount": "Betrag", "paid_at": "Datum", "channel": "Kanal"}


def lake_rows(home, table="payments"):
    files = table_files(home.lake, table)
    return pq.read_table(files).to_pylist() if files else []


def quarantine(home):
    files = sorted(home.rejected.rglob("*.parquet")) if home.rejected.exists() else []
    return pq.read_table(files).to_pylist() if files else []


def every_file_text(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in root.rglob("*") if p.is_file())


def test_online_retail_export(home, messy):
    rep = ingest(home, [messy / "online_retail.csv"], IngestOptions(mapping=RETAIL, defaults={"currency": "GBP"}))
    assert (rep["read"], rep["accepted"], rep["duplicates"], rep["rejected"]) == (12, 9, 1, 2)
    assert rep["rejected_by_reason"] == {"missing_user_id": 2}
    rows = {(r["payment_id"], r["line_no"]): r for r in lake_rows(home)}
    cancel = rows[("C536379", 1)]
    assert (cancel["status"], cancel["quantity"], str(cancel["amount"])) == ("refund", -1, "-27.50")
    assert rows[("536365", 1)]["user_id"] == "17850"                 # 17850.0 from a spreadsheet
    assert str(rows[("536365", 1)]["amount"]) == "15.30"             # 6 x 2.55
    assert str(rows[("536545", 1)]["amount"]) == "0.00"              # zero price kept
    assert {r["currency"] for r in rows.values()} == {"GBP"}
    q = quarantine(home)
    assert sorted(r["source_row"] for r in q) == [9, 10]
    assert all(r["source_file"].endswith("online_retail.csv") for r in q)


def test_reingest_and_overlap_never_duplicate(home, messy, tmp_path):
    opts = IngestOptions(mapping=RETAIL, defaults={"currency": "GBP"})
    ingest(home, [messy / "online_retail.csv"], opts)
    again = ingest(home, [messy / "online_retail.csv"], opts)
    assert (again["accepted"], again["duplicates"]) == (0, 10)
    # An overlapping export: the last three lines again plus one new line.
    lines = (messy / "online_retail.csv").read_text().splitlines()
    overlap = tmp_path / "overlap.csv"
    overlap.write_text("\n".join([lines[0], *lines[-3:], "536999,X1,NEW,1,12/2/2010 10:00,1.00,12345,UK"]) + "\n")
    rep = ingest(home, [overlap], opts)
    assert (rep["accepted"], rep["duplicates"], rep["rejected"]) == (1, 2, 1)
    keys = [(r["payment_id"], r["line_no"]) for r in lake_rows(home)]
    assert len(keys) == len(set(keys)) == 10


def test_european_cp1252_export_with_day_first_dates(home, messy):
    rep = ingest(home, [messy / "shop_export_cp1252.csv"], IngestOptions(mapping=SHOP, dayfirst=True,
                                                                            defaults={"currency": "EUR"}))
    assert rep["rejected_by_reason"] == {"bad_amount": 1, "user_id_email": 1}
    assert any("Windows-1252" in n for n in rep["files"][0]["notes"])
    rows = {r["item_id"]: r for r in lake_rows(home)}
    assert str(rows["Kopfhörer"]["amount"]) == "1299.00"            # 1.299,00 €
    assert rows["Kopfhörer"]["paid_at"].month == 1 and rows["Kopfhörer"]["paid_at"].day == 13
    assert rows["Müsli"]["paid_at"].month == 3                       # 02/03/2025 day-first


def test_bom_tabs_and_a_malformed_record(home, messy):
    mapping = {"payment_id": "order_id", "user_id": "user", "item_id": "sku", "unit_price": "price",
               "quantity": "qty", "paid_at": "created"}
    rep = ingest(home, [messy / "bom_tabs.tsv"], IngestOptions(mapping=mapping, defaults={"currency": "EUR"}))
    assert rep["rejected_by_reason"] == {"bad_status": 1, "malformed_row": 1}
    assert {r["source_row"]: r["reason"] for r in quarantine(home)} == {3: "malformed_row", 5: "bad_status"}
    statuses = {r["payment_id"]: r["status"] for r in lake_rows(home)}
    assert statuses == {"o-1": "success", "o-2": "failed", "o-4": "refund"}


def test_json_lines_with_a_card_number_never_reach_disk(home, messy):
    rep = ingest(home, [messy / "app_payments.jsonl"], IngestOptions(defaults={"currency": "EUR"}))
    assert rep["rejected_by_reason"] == {"card_number": 1, "currency_mismatch": 1, "unknown_currency": 1}
    blob = every_file_text(home.root)
    assert b"4111111111111111" not in blob and b"4111 1111 1111 1111" not in blob
    card = [r for r in quarantine(home) if r["reason"] == "card_number"][0]
    assert "************1111" in card["raw"] and "************1111" in card["detail"]


def test_headerless_file_with_positional_mapping(home, messy):
    with pytest.raises(SchemaError, match="col1, col2, col3, col4"):
        ingest(home, [messy / "headerless.csv"], IngestOptions())
    rep = ingest(home, [messy / "headerless.csv"],
                 IngestOptions(mapping={"user_id": "col1", "item_id": "col2", "amount": "col3", "paid_at": "col4"},
                               defaults={"currency": "EUR"}))
    assert (rep["accepted"], rep["rejected"]) == (2, 1)


@pytest.mark.parametrize("name, content, message", [
    ("missing.csv", None, "no such file"),
    ("data.xlsx", b"x", "cannot tell the format"),
    ("empty.csv", b"", "empty"),
    ("nocols.csv", b"a,b\n1,2\n", "no column for required"),
])
def test_unusable_input_writes_nothing(home, tmp_path, messy, name, content, message):
    ingest(home, [messy / "headerless.csv"], IngestOptions(mapping={"user_id": "col1", "item_id": "col2", "paid_at": "col4"},
                                                           defaults={"currency": "EUR"}))
    before = sorted(p.relative_to(home.root) for p in home.root.rglob("*") if p.is_file() and p.name != ".lock")
    bad = tmp_path / name
    if content is not None:
        bad.write_bytes(content)
    # A good file first in the same call: the whole call writes nothing.
    with pytest.raises(InputError, match=message):
        ingest(home, [messy / "app_payments.jsonl", bad], IngestOptions())
    after = sorted(p.relative_to(home.root) for p in home.root.rglob("*") if p.is_file() and p.name != ".lock")
    assert after == before


def test_recovery_rolls_back_staging_and_completes_journals(home, messy):
    ingest(home, [messy / "app_payments.jsonl"], IngestOptions(defaults={"currency": "EUR"}))
    n = len(lake_rows(home))
    # A staging folder without a journal (killed before commit) is dropped.
    staged = home.lake / TXN / "dead" / "payments" / "month=2025-01"
    staged.mkdir(parents=True)
    shutil.copy(table_files(home.lake, "payments")[0], staged / "part-dead.parquet")
    # A journal whose moves were not all carried out (killed during commit) is completed.
    half = home.lake / TXN / "half" / "payments" / "month=2031-01"
    half.mkdir(parents=True)
    shutil.copy(table_files(home.lake, "payments")[0], half / "part-half.parquet")
    (home.lake / TXN / "half.commit").write_text(json.dumps({
        "id": "half", "move": [[f"{TXN}/half/payments/month=2031-01/part-half.parquet",
                                "payments/month=2031-01/part-half.parquet"]], "delete": []}))
    done = recover(home.lake)
    assert done == ["completed transaction half", "rolled back transaction dead"]
    assert len(lake_rows(home)) == 2 * n
    assert not any((home.lake / TXN).iterdir())


def test_kill_during_ingest_leaves_the_lake_consistent(tmp_path):
    """Start a real ingest, kill -9 it at several moments; the lake holds all rows or none,
    and the next ingest completes."""
    import numpy as np
    import pyarrow as pa

    n = 300_000
    rng = np.random.default_rng(0)
    src = tmp_path / "big.parquet"
    pq.write_table(pa.table({
        "payment_id": [f"p{i}" for i in range(n)], "user_id": [f"u{i % 5000}" for i in range(n)],
        "item_id": [f"i{i % 700}" for i in range(n)],
        "paid_at": pa.array(1_700_000_000_000_000 + rng.integers(0, 10**13, n), pa.timestamp("us", tz="UTC")),
        "amount": rng.uniform(1, 50, n).round(2)}), src)
    data = tmp_path / "data"
    cmd = [sys.executable, "-c", "from pipelines.cli import main; main()", "--data-dir", str(data), "-q", "ingest", str(src),
           "--default", "currency=EUR"]
    for delay in (0.3, 0.8, 1.5):
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        recover(data / "lake")  # what every command does first, under the lock
        files = table_files(data / "lake", "payments")
        stored = pq.read_table(files).num_rows if files else 0
        assert stored in (0, n), f"partial lake after kill at {delay}s: {stored} rows"
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert pq.read_table(table_files(data / "lake", "payments")).num_rows == n


@pytest.mark.parametrize("ingest_cap, run_cap, expected", [("700MB", "3GB", "667.5 MiB"), ("", "700MB", "667.5 MiB")])
def test_ingest_uses_the_engine_settings_memory_cap_and_spill_folder(home, ingest_cap, run_cap, expected):
    """Ingest's DuckDB has the [engine] ingest cap (the run's where that is empty), threads and
    spill folder (DuckDB's default would take 80% of the machine's memory while deduplicating
    against a big lake)."""
    from pipelines.config import EngineConfig
    from pipelines.ingest import LocalLake

    lake = LocalLake(home, EngineConfig(duckdb_threads=1, duckdb_memory_limit=run_cap,
                                        duckdb_ingest_memory_limit=ingest_cap))
    try:
        setting = lambda name: lake.con.sql(f"SELECT current_setting('{name}')").fetchall()[0][0]
        assert setting("threads") == 1
        assert setting("memory_limit") == expected   # 700 MB
        assert setting("temp_directory") == str(home.root / "tmp")
    finally:
        lake.close()


def test_duplicates_at_the_edges_of_a_files_key_range_are_found(home, tmp_path):
    """The stored keys are read only within the new file's range of payment_id: duplicates at
    its lowest and highest id (and inside) are still found, and new ids inside the range and
    beyond the stored ones are stored."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from pipelines.synth_files import write_synth

    write_synth(tmp_path / "s", users=150, months=3, seed=2)
    ingest(home, [tmp_path / "s"], IngestOptions())
    source = pq.read_table(tmp_path / "s" / "payments.parquet")
    stored = sorted((r["payment_id"], r["line_no"]) for r in lake_rows(home))
    lo, mid, hi = stored[0], stored[len(stored) // 2], stored[-1]

    def row(key):
        mask = pc.and_(pc.equal(source["payment_id"], key[0]), pc.equal(source["line_no"], key[1]))
        return source.filter(mask).slice(0, 1)

    renamed = row(mid).set_column(source.schema.get_field_index("payment_id"), "payment_id",
                                  pa.array([mid[0] + "a"], source.schema.field("payment_id").type))      # a new id inside the range
    beyond = row(hi).set_column(source.schema.get_field_index("payment_id"), "payment_id",
                                pa.array([hi[0] + "z"], source.schema.field("payment_id").type))         # a new id above every stored one
    again = tmp_path / "again" / "payments.parquet"
    again.parent.mkdir()
    pq.write_table(pa.concat_tables([row(hi), renamed, row(mid), beyond, row(lo)]), again)
    rep = ingest(home, [again], IngestOptions())
    assert (rep["read"], rep["accepted"], rep["duplicates"], rep["rejected"]) == (5, 2, 3, 0)
    keys = [(r["payment_id"], r["line_no"]) for r in lake_rows(home)]
    assert len(keys) == len(set(keys)) == len(stored) + 2


def test_lines_go_to_the_partition_of_their_utc_month(home, tmp_path):
    src = tmp_path / "edges.csv"
    src.write_text("payment_id,user_id,item_id,paid_at\n"
                   "p1,u1,i1,2024-01-31T23:59:59.999999Z\n"
                   "p2,u1,i1,2024-02-01T01:30:00+02:00\n"      # 2024-01-31 23:30 UTC
                   "p3,u1,i1,2024-02-01T00:00:00Z\n"
                   "p4,u1,i1,2023-12-31T22:00:00-03:00\n")    # 2024-01-01 01:00 UTC
    ingest(home, [src], IngestOptions(defaults={"currency": "EUR"}))
    months = {f.parent.name: sorted(r["payment_id"] for r in pq.read_table(f).to_pylist())
              for f in table_files(home.lake, "payments")}
    assert months == {"month=2024-01": ["p1", "p2", "p4"], "month=2024-02": ["p3"]}


def test_dimension_ids_with_a_control_character_are_quarantined(home, tmp_path):
    """users and items (read through Arrow) quarantine an id holding a control character, as
    payments do: "u1\\x00" is not stored beside "u1", nor "m\\x1b1" as an item's merchant."""
    users, items = tmp_path / "users.jsonl", tmp_path / "items.jsonl"
    users.write_text('{"user_id": "u1\\u0000"}\n{"user_id": "u1"}\n{"user_id": "u\\u0002x"}\n')
    items.write_text('{"item_id": "i1", "merchant_id": "m\\u001b1"}\n{"item_id": "i2", "merchant_id": "m1"}\n')
    rep_users = ingest(home, [users], IngestOptions(table="users"))
    rep_items = ingest(home, [items], IngestOptions(table="items"))
    assert rep_users["rejected_by_reason"] == {"bad_user_id": 2} and rep_users["accepted"] == 1
    assert rep_items["rejected_by_reason"] == {"bad_merchant_id": 1} and rep_items["accepted"] == 1
    assert [r["user_id"] for r in lake_rows(home, "users")] == ["u1"]
    assert [r["item_id"] for r in lake_rows(home, "items")] == ["i2"]
    assert sorted(r["source_row"] for r in quarantine(home)) == [1, 1, 3]
