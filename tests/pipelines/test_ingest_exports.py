"""Ingest of files shaped like real exports (issue 19, items 1-8): nothing stored wrong, every
row accounted for, a clear refusal where the file cannot be read one right way."""

import tempfile
from datetime import datetime, timezone
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from behavior.date_order import MixedDateOrderError
from behavior.errors import InputError
from behavior.parsing import NA_VALUES
from behavior.store import erasure_log
from behavior.store.datahome import DataHome
from pipelines.ingest import IngestOptions, ingest
from pipelines.lake import table_files
from tests.pipelines.test_ingest import lake_rows, quarantine

EXPORTS = Path(__file__).parent.parent / "fixtures" / "exports"
RETAIL = {"payment_id": "InvoiceNo", "item_id": "StockCode", "paid_at": "InvoiceDate", "user_id": "CustomerID",
          "unit_price": "UnitPrice", "category": "Description"}
SHOP = {"payment_id": "order_id", "user_id": "customer", "item_id": "product", "amount": "total", "paid_at": "date"}
EXCEL = {"payment_id": "order", "user_id": "customer", "item_id": "sku", "paid_at": "date", "merchant_id": "merchant"}
EUR = {"currency": "EUR"}



def files_of(home) -> list[str]:
    return sorted(str(p.relative_to(home.root)) for p in home.root.rglob("*") if p.is_file() and p.name != ".lock")


def accounted(rep: dict) -> bool:
    return all(f["read"] == f["accepted"] + f["replaced"] + f["duplicates"] + f["rejected"] for f in rep["files"])


# ------------------------------------------------------------------ 1. missing-value markers

def test_r_export_with_na_customers_stores_no_customer_called_na(home):
    rep = ingest(home, [EXPORTS / "r_retail_na.csv"], IngestOptions(mapping=RETAIL, defaults={"currency": "GBP"}))
    assert rep["rejected_by_reason"] == {"missing_paid_at": 1, "missing_user_id": 3}
    rows = {r["payment_id"]: r for r in lake_rows(home)}
    assert sorted(rows) == ["536365", "536367", "536415", "C536379"]
    assert {r["user_id"] for r in rows.values()} == {"17850", "13047", "14527"}
    assert str(rows["536415"]["amount"]) == "0.00" and rows["536415"]["status"] == "success"   # a zero amount kept
    assert (rows["C536379"]["status"], str(rows["C536379"]["amount"])) == ("refund", "-27.50")
    assert accounted(rep)


def test_excel_export_markers_and_whitespace_in_ids(home):
    rep = ingest(home, [EXPORTS / "excel_export.tsv"], IngestOptions(mapping=EXCEL, defaults=EUR))
    assert rep["rejected_by_reason"] == {"missing_item_id": 1, "missing_user_id": 1}
    rows = {r["payment_id"]: r for r in lake_rows(home)}
    assert {k: r["user_id"] for k, r in rows.items()} == {"1001": "C-1", "1004": "C-3", "1005": "C-1"}
    assert rows["1004"]["amount"] is None and rows["1004"]["merchant_id"] == "unknown"   # '-' is no value
    assert rows["1005"]["amount"] is None
    assert rep["files"][0]["without_amount"] == 2


def test_na_values_option_replaces_the_list(home):
    opts = IngestOptions(mapping=EXCEL, defaults=EUR, na_values=("-",))
    rep = ingest(home, [EXPORTS / "excel_export.tsv"], opts)
    assert rep["rejected"] == 0
    assert "#N/A" in {r["user_id"] for r in lake_rows(home)}


# ------------------------------------------------------------------ 2. day-first / month-first

def test_a_day_first_export_is_read_day_first_whole(home):
    rep = ingest(home, [EXPORTS / "uk_shop_dayfirst.csv"], IngestOptions(mapping=SHOP, defaults=EUR))
    assert rep["rejected"] == 0 and rep["accepted"] == 4
    days = {r["payment_id"]: (r["paid_at"].month, r["paid_at"].day) for r in lake_rows(home)}
    assert days == {"A1": (2, 5), "A2": (1, 13), "A3": (1, 31), "A4": (3, 2)}
    assert any(n.startswith("paid_at read day-first: 2 of its dates") for n in rep["files"][0]["notes"])


def test_a_file_mixing_both_orders_is_refused_and_nothing_is_written(home):
    ingest(home, [EXPORTS / "no_amounts.csv"], IngestOptions(defaults=EUR))
    before = files_of(home)
    with pytest.raises(MixedDateOrderError, match=r"mixed_date_orders\.csv: paid_at .*row 2: '13/01/2025'.*"
                                                  r"row 3: '01/30/2025'"):
        ingest(home, [EXPORTS / "uk_shop_dayfirst.csv", EXPORTS / "mixed_date_orders.csv"],
               IngestOptions(mapping=SHOP))
    assert files_of(home) == before


# ------------------------------------------------------------------ 3. --replace

def _write(path: Path, rows: list[str]) -> Path:
    path.write_text("order_id,customer,product,total,date\n" + "\n".join(rows) + "\n")
    return path


def test_replace_stores_the_files_version_of_known_keys(home, tmp_path):
    first = _write(tmp_path / "a.csv", ["A1,c1,p1,10.00,2025-01-05", "A2,c2,p2,3.00,2025-01-06"])
    ingest(home, [first], IngestOptions(mapping=SHOP, defaults=EUR))
    fixed = _write(tmp_path / "b.csv", ["A1,c1,p1,12.00,2025-02-05", "A2,c2,p2,3.00,2025-01-06", "A3,c3,p3,1.00,2025-01-07"])
    plain = ingest(home, [fixed], IngestOptions(mapping=SHOP))
    assert (plain["accepted"], plain["replaced"], plain["duplicates"]) == (1, 0, 2)
    assert {r["payment_id"]: str(r["amount"]) for r in lake_rows(home)}["A1"] == "10.00"   # first version kept
    rep = ingest(home, [fixed], IngestOptions(mapping=SHOP, replace=True))
    assert (rep["accepted"], rep["replaced"], rep["duplicates"], rep["rejected"]) == (0, 1, 2, 0)
    rows = lake_rows(home)
    assert sorted(r["payment_id"] for r in rows) == ["A1", "A2", "A3"]                    # one line per key
    a1 = next(r for r in rows if r["payment_id"] == "A1")
    assert (str(a1["amount"]), a1["paid_at"].month) == ("12.00", 2)                      # moved to February
    january = sorted((home.lake / "payments" / "month=2025-01").glob("*.parquet"))
    assert sorted(pq.read_table(january).column("payment_id").to_pylist()) == ["A2", "A3"]   # A1 left January


def test_replace_twice_in_one_call_keeps_the_last_file_and_erased_users_stay_erased(home, tmp_path):
    ingest(home, [_write(tmp_path / "a.csv", ["A1,c1,p1,10.00,2025-01-05", "A2,c2,p2,3.00,2025-01-06"])],
           IngestOptions(mapping=SHOP, defaults=EUR))
    erasure_log.record(home, ["c9"])
    b = _write(tmp_path / "b.csv", ["A1,c1,p1,11.00,2025-01-05", "A2,c9,p2,3.00,2025-01-06"])
    c = _write(tmp_path / "c.csv", ["A1,c1,p1,13.00,2025-01-05"])
    rep = ingest(home, [b, c], IngestOptions(mapping=SHOP, replace=True))
    assert [(f["replaced"], f["rejected"]) for f in rep["files"]] == [(1, 1), (1, 0)]
    assert rep["files"][0]["rejected_by_reason"] == {"erased_user": 1}
    rows = {r["payment_id"]: r for r in lake_rows(home)}
    assert (str(rows["A1"]["amount"]), rows["A2"]["user_id"]) == ("13.00", "c2")
    assert len(lake_rows(home)) == 2 and accounted(rep)


def test_dates_stored_in_the_wrong_order_are_corrected_with_replace(home, tmp_path):
    """The issue's dead end: a file stored month-first (here forced by --date-format) could not
    be corrected, since its lines (keys derived from their values) were duplicates."""
    src = tmp_path / "no_ids.csv"
    src.write_text("customer,product,total,date\nc1,p1,10.00,05/02/2025\nc2,p2,3.00,04/03/2025\n")
    mapping = {k: v for k, v in SHOP.items() if k != "payment_id"}
    ingest(home, [src], IngestOptions(mapping=mapping, defaults=EUR, date_format="%m/%d/%Y"))
    assert sorted(r["paid_at"].month for r in lake_rows(home)) == [4, 5]
    again = ingest(home, [src], IngestOptions(mapping=mapping, dayfirst=True))
    assert (again["accepted"], again["replaced"], again["duplicates"]) == (0, 0, 2)
    fixed = ingest(home, [src], IngestOptions(mapping=mapping, dayfirst=True, replace=True))
    assert (fixed["accepted"], fixed["replaced"], fixed["duplicates"]) == (0, 2, 0)
    assert sorted((r["paid_at"].month, r["paid_at"].day) for r in lake_rows(home)) == [(2, 5), (3, 4)]


# ------------------------------------------------------------------ 4. epochs from the 1990s

def test_a_ratings_log_with_1990s_unix_times(home):
    mapping = {"user_id": "col1", "item_id": "col2", "paid_at": "col4"}
    rep = ingest(home, [EXPORTS / "ratings_1997.tsv"], IngestOptions(mapping=mapping, defaults=EUR))
    assert rep["rejected"] == 0 and rep["accepted"] == 5
    times = sorted(r["paid_at"] for r in lake_rows(home))
    assert times == sorted(datetime.fromtimestamp(s, timezone.utc) for s in
                           (881250949, 891717742, 878887116, 880606923, 886397596))   # one in milliseconds
    assert times[0].year == 1997


# ------------------------------------------------------------------ 5. the lake's currency

def test_a_first_ingest_without_a_currency_stops_naming_the_option(home):
    with pytest.raises(InputError, match=r"no_amounts\.csv: the lake has no reporting currency.*--default currency=XXX"):
        ingest(home, [EXPORTS / "no_amounts.csv"], IngestOptions())
    assert not table_files(home.lake, "payments") and not (home.lake / "_lake.json").exists()
    with pytest.raises(InputError, match="--default currency=EURO is not an ISO 4217"):
        ingest(home, [EXPORTS / "no_amounts.csv"], IngestOptions(defaults={"currency": "EURO"}))


def test_a_currency_column_with_one_code_sets_the_lake_currency(home, tmp_path):
    src = tmp_path / "gbp.csv"
    src.write_text("user_id,item_id,amount,currency,paid_at\nu1,i1,2.00,GBP,2025-01-02\nu2,i1,3.00,NA,2025-01-02\n")
    rep = ingest(home, [src], IngestOptions())
    assert rep["currency"] == "GBP" and rep["rejected"] == 0
    assert "the lake's reporting currency is now GBP (from the file's currency column 'currency')" in rep["files"][0]["notes"]
    both = tmp_path / "both.csv"
    both.write_text("user_id,item_id,amount,currency,paid_at\nu1,i1,2.00,GBP,2025-01-02\nu2,i1,3.00,USD,2025-01-02\n")
    with pytest.raises(InputError, match="currency column holds GBP, USD: choose"):
        ingest(DataHome(tmp_path / "other"), [both], IngestOptions())


def test_the_lake_currency_is_shown_and_changed_only_while_empty(home):
    from pipelines.ingest import LocalLake
    from pipelines.config import EngineConfig
    from pipelines.lake_currency import lake_currency

    def call(code=None):
        lake = LocalLake(home, EngineConfig())
        try:
            return lake_currency(lake, code)
        finally:
            lake.close()

    assert call() == {"currency": None, "payments": False}
    assert call("gbp") == {"currency": "GBP", "payments": False}
    assert call("USD")["currency"] == "USD"
    rep = ingest(home, [EXPORTS / "no_amounts.csv"], IngestOptions())   # the lake's currency serves
    assert rep["currency"] == "USD" and rep["accepted"] == 2
    with pytest.raises(InputError, match="holds payments in USD"):
        call("EUR")
    assert call("USD") == {"currency": "USD", "payments": True}


# ------------------------------------------------------------------ 6. the columns of a file

def test_the_report_lists_found_mapped_defaulted_and_missing_columns(home):
    rep = ingest(home, [EXPORTS / "no_amounts.csv"], IngestOptions(defaults=EUR))
    f = rep["files"][0]
    assert f["columns"] == {
        "found": ["user_id", "item_id", "paid_at"], "mapped": {},
        "defaulted": {"payment_id": "derived: a hash of the row's values",
                      "line_no": "derived: the line's position in its payment", "merchant_id": "unknown",
                      "quantity": "1", "currency": "EUR", "channel": "other", "status": "success"},
        "missing": ["category", "amount", "promotion_id"]}
    assert f["without_amount"] == 2 and any(n.startswith("no amount (nor unit_price) column") for n in f["notes"])
    retail = ingest(home, [EXPORTS / "r_retail_na.csv"], IngestOptions(mapping=RETAIL))["files"][0]["columns"]
    assert retail["mapped"] == {"payment_id": "InvoiceNo", "user_id": "CustomerID", "item_id": "StockCode",
                                "category": "Description", "paid_at": "InvoiceDate", "unit_price": "UnitPrice"}
    assert retail["found"] == ["quantity"] and retail["defaulted"]["amount"] == "derived: unit_price x quantity"


# ------------------------------------------------------------------ 7. a file of only bad rows

def test_a_file_of_only_bad_rows_is_quarantined_with_an_example_per_reason(home):
    rep = ingest(home, [EXPORTS / "only_bad_rows.csv"], IngestOptions(defaults=EUR))
    f = rep["files"][0]
    assert (f["read"], f["rejected"], f["accepted"]) == (4, 4, 0)
    assert f["rejected_by_reason"] == {"bad_amount": 1, "bad_paid_at": 2, "missing_user_id": 1}
    assert f["rejected_examples"]["bad_paid_at"] == ("row 3: paid_at 'not a date' is not a date or time; "
                                                     "pass --date-format with its strftime pattern")
    assert f["rejected_examples"]["missing_user_id"].startswith("row 2: user_id is empty or a missing-value marker")
    assert len(quarantine(home)) == 4


# ------------------------------------------------------------------ the property

marker = st.sampled_from([*NA_VALUES, "", " ", "\t"])
value = st.one_of(marker, st.sampled_from(["u1", "u2", " u3\t", "i1", "i2", "3.50", "0", "-2", "2025-01-02",
                                           "13/01/2025", "05/02/2025", "881250949", "abc"]))
row = st.tuples(st.sampled_from(["p1", "p2", "p3", "NA", ""]), value, value, value, value, st.one_of(marker, st.just("EUR")))


def _csv(rows) -> str:
    return "payment_id,user_id,item_id,amount,paid_at,currency\n" + "".join(",".join(r) + "\n" for r in rows)


@pytest.mark.slow
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(st.lists(row, max_size=12), st.lists(row, max_size=12))
def test_every_row_is_stored_replaced_a_duplicate_or_rejected_and_no_marker_is_stored(first, second):
    with tempfile.TemporaryDirectory() as tmp:
        home = DataHome(Path(tmp) / "data")
        stored = 0
        for i, (rows, replace) in enumerate(((first, False), (second, True))):
            path = Path(tmp) / f"in{i}.csv"
            path.write_text(_csv(rows))
            try:
                rep = ingest(home, [path], IngestOptions(defaults=EUR, replace=replace))
            except InputError:   # a file mixing both date orders: refused whole
                continue
            assert rep["read"] == len(rows) == rep["accepted"] + rep["replaced"] + rep["duplicates"] + rep["rejected"]
            stored += rep["accepted"]
        lines = lake_rows(home)
        assert len(lines) == stored
        assert len({(r["payment_id"], r["line_no"]) for r in lines}) == len(lines)
        markers = {m.strip() for m in NA_VALUES} | {""}
        for r in lines:
            for col in ("payment_id", "user_id", "item_id", "currency", "merchant_id"):
                assert r[col] not in markers and r[col] == r[col].strip(), (col, r)
