"""`behavior ingest` and `behavior lake currency` through the command line (issue 19, items 3,
5, 7 and 8): exit codes, the printed summary and what is left on disk."""

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

EXPORTS = Path(__file__).parent.parent / "fixtures" / "exports"


def behavior(data: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-c", "from pipelines.cli import main; main()", "--data-dir", str(data), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def test_a_file_of_only_bad_rows_exits_2_with_each_reason_an_example_and_its_quarantine(tmp_path):
    out = behavior(tmp_path, "ingest", str(EXPORTS / "only_bad_rows.csv"), "--default", "currency=EUR")
    assert out.returncode == 2, out.stderr
    assert "read 4, stored 0, replaced 0, duplicates 0, rejected 4" in out.stdout
    assert "       2 bad_paid_at, e.g. row 3: paid_at 'not a date' is not a date or time" in out.stdout
    assert "       1 missing_user_id, e.g. row 2: user_id is empty or a missing-value marker" in out.stdout
    assert "every row of" in out.stderr and "only_bad_rows.csv (4 rows) was rejected" in out.stderr
    assert "Traceback" not in out.stderr
    assert pq.read_table(sorted((tmp_path / "lake" / "_rejected").rglob("*.parquet"))).num_rows == 4


def test_a_bad_date_format_exits_2_naming_the_option(tmp_path):
    out = behavior(tmp_path, "ingest", str(EXPORTS / "no_amounts.csv"), "--default", "currency=EUR",
                   "--date-format", "%s")
    assert out.returncode == 2, out.stderr
    assert "--date-format '%s': %s is not a code it may use" in out.stderr and "internal error" not in out.stderr


def test_a_binary_file_is_not_a_text_table(tmp_path):
    for name, content in (("sheet.csv", b"PK\x03\x04\x14\x00\x06\x00" + bytes(200)),
                          ("dump.csv", b"a,b\n" + bytes(range(128, 256)) * 4)):
        (tmp_path / name).write_bytes(content)
        out = behavior(tmp_path / "data", "ingest", str(tmp_path / name), "--default", "currency=EUR")
        assert out.returncode == 2, out.stderr
        assert f"{name}: is not a text table" in out.stderr and "Parquet (.parquet) and JSON Lines" in out.stderr
        assert "codec" not in out.stderr


def test_the_lake_currency_from_the_command_line(tmp_path):
    first = behavior(tmp_path, "ingest", str(EXPORTS / "no_amounts.csv"))
    assert first.returncode == 2 and "--default currency=XXX" in first.stderr
    assert "has no reporting currency yet" in behavior(tmp_path, "lake", "currency").stdout
    assert behavior(tmp_path, "lake", "currency", "gbp").stdout.strip() == \
        "GBP (it holds no payments yet, so it can change)"
    ok = behavior(tmp_path, "ingest", str(EXPORTS / "no_amounts.csv"), "--json")
    assert ok.returncode == 0 and json.loads(ok.stdout)["currency"] == "GBP"
    refused = behavior(tmp_path, "lake", "currency", "EUR")
    assert refused.returncode == 2 and "holds payments in GBP" in refused.stderr
    assert behavior(tmp_path, "lake", "currency").stdout.strip() == "GBP (it holds payments, so it is fixed)"


def test_replace_and_na_values_from_the_command_line(tmp_path):
    src = tmp_path / "orders.csv"
    src.write_text("payment_id,user_id,item_id,amount,paid_at\nA1,NA,i1,2.00,2025-01-02\n")
    data = tmp_path / "data"
    first = behavior(data, "ingest", str(src), "--default", "currency=EUR", "--na-values", "-,#N/A")
    assert first.returncode == 0 and "stored 1" in first.stdout     # NA is an id here, as asked
    src.write_text("payment_id,user_id,item_id,amount,paid_at\nA1,NA,i1,2.50,2025-01-02\n")
    again = behavior(data, "ingest", str(src), "--replace", "--na-values", "-")
    assert again.returncode == 0 and "stored 0, replaced 1, duplicates 0" in again.stdout, again.stdout
    rows = pq.read_table(sorted((data / "lake" / "payments").rglob("*.parquet"))).to_pylist()
    assert [(r["user_id"], str(r["amount"])) for r in rows] == [("NA", "2.50")]
