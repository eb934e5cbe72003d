"""Parsing and validation: known answers, and properties over random input."""

from datetime import datetime, timezone

import duckdb
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from behavior.errors import SchemaError
from behavior.schema import PAYMENTS, USERS
from behavior.validate import ROW, ParseOptions, resolve_columns, validate

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def run(rows: dict[str, list], mapping=None, defaults=None, spec=PAYMENTS, **opts):
    n = len(next(iter(rows.values())))
    src = pa.table({**{k: pa.array(v, pa.string()) for k, v in rows.items()}, ROW: list(range(1, n + 1))})
    cols = resolve_columns(spec, list(rows), mapping or {}, defaults or {}, "test.csv")
    return validate(duckdb.connect(), src, spec, cols, defaults or {}, ParseOptions(now=NOW, **opts))


def one(value_key: str, value: str, **opts):
    base = {"user_id": ["u1"], "item_id": ["i1"], "paid_at": ["2025-01-02 03:04:05"]}
    base[value_key] = [value]
    return run(base, **opts)


@pytest.mark.parametrize("text, dayfirst, expected", [
    ("2025-01-02 03:04:05", False, datetime(2025, 1, 2, 3, 4, 5)),
    ("2025-01-02T03:04:05Z", False, datetime(2025, 1, 2, 3, 4, 5)),
    ("2025-01-02T05:04:05+02:00", False, datetime(2025, 1, 2, 3, 4, 5)),
    ("01/02/2025 03:04", False, datetime(2025, 1, 2, 3, 4)),   # month-first by default
    ("01/02/2025 03:04", True, datetime(2025, 2, 1, 3, 4)),    # day-first when asked
    ("02.01.2025 03:04:05", False, datetime(2025, 1, 2, 3, 4, 5)),
    ("2 Jan 2025", False, datetime(2025, 1, 2)),
    ("1735787045", False, datetime(2025, 1, 2, 3, 4, 5)),       # epoch seconds
    ("1735787045000", False, datetime(2025, 1, 2, 3, 4, 5)),    # epoch milliseconds
])
def test_dates(text, dayfirst, expected):
    v = one("paid_at", text, dayfirst=dayfirst)
    assert v.rejected.num_rows == 0
    assert v.accepted.column("paid_at")[0].as_py() == expected.replace(tzinfo=timezone.utc)


def test_day_first_date_without_the_option_names_the_fix():
    v = one("paid_at", "13/01/2025 10:00")
    assert v.rejected.column("reason").to_pylist() == ["bad_paid_at"]
    assert "pass --dayfirst" in v.rejected.column("detail")[0].as_py()


def test_future_and_ancient_dates_are_rejected():
    assert one("paid_at", "2030-01-01").rejected.column("reason").to_pylist() == ["date_out_of_range"]
    assert one("paid_at", "1960-01-01").rejected.column("reason").to_pylist() == ["date_out_of_range"]


@pytest.mark.parametrize("text, expected", [
    ("12.5", "12.50"), ("1,234.50", "1234.50"), ("1234,5", "1234.50"), ("1.234,50", "1234.50"),
    ("€ 7,90", "7.90"), ("(3.00)", "-3.00"), ("$1,000", "1000.00"), ("0", "0.00"),
])
def test_amounts(text, expected):
    v = one("amount", text)
    assert v.rejected.num_rows == 0
    assert str(v.accepted.column("amount")[0].as_py()) == expected.lstrip("-") or \
        str(v.accepted.column("amount")[0].as_py()) == expected


def test_negative_amount_is_a_refund_with_negative_quantity():
    v = one("amount", "-5.00")
    row = v.accepted.to_pylist()[0]
    assert (row["status"], row["quantity"], str(row["amount"])) == ("refund", -1, "-5.00")


def test_unit_price_times_quantity():
    v = run({"user_id": ["u1"], "item_id": ["i1"], "paid_at": ["2025-01-01"], "unit_price": ["2.55"], "quantity": ["6"]})
    assert str(v.accepted.column("amount")[0].as_py()) == "15.30"


@pytest.mark.parametrize("user_id, reason", [
    ("", "missing_user_id"), ("ann@example.com", "user_id_email"), ("+44 7911 123456", "user_id_phone"),
    ("07911123456", "user_id_phone"), ("4111 1111 1111 1111", "card_number"),
    ("ann@example.com\n", "user_id_email"), ("\t07911123456\r\n", "user_id_phone"),
])
def test_personal_data_as_user_id_is_rejected(user_id, reason):
    v = one("user_id", user_id)
    assert v.rejected.column("reason").to_pylist() == [reason]
    assert "4111 1111 1111 1111" not in v.rejected.column("detail")[0].as_py()


@pytest.mark.parametrize("user_id", ["17850", "17850.0", "u-0001", "C12345678"])
def test_ordinary_ids_are_kept(user_id):
    v = one("user_id", user_id)
    assert v.rejected.num_rows == 0
    assert v.accepted.column("user_id")[0].as_py() == user_id.removesuffix(".0")


def test_currency_rules():
    assert one("currency", "usd", currency="USD").rejected.num_rows == 0
    assert one("currency", "XYZ").rejected.column("reason").to_pylist() == ["unknown_currency"]
    assert one("currency", "USD").rejected.column("reason").to_pylist() == ["currency_mismatch"]


def test_exact_duplicates_and_derived_keys():
    row = {"user_id": "u1", "item_id": "i1", "paid_at": "2025-01-01", "payment_id": "p1"}
    rows = {k: [row[k], row[k], row[k] if k != "item_id" else "i2"] for k in row}
    v = run(rows)
    assert v.duplicates == 1
    assert v.accepted.column("line_no").to_pylist() == [1, 2]  # position among distinct lines


def test_conflicting_explicit_keys_keep_the_first():
    v = run({"user_id": ["u1", "u2"], "item_id": ["i1", "i1"], "paid_at": ["2025-01-01"] * 2,
             "payment_id": ["p1", "p1"], "line_no": ["1", "1"]})
    assert v.accepted.column("user_id").to_pylist() == ["u1"]
    assert v.rejected.column("reason").to_pylist() == ["conflicting_key"]


def test_upsert_table_keeps_the_last_row_of_a_key():
    v = run({"user_id": ["u1", "u1"], "marketing_opt_out": ["no", "yes"]}, spec=USERS)
    assert v.accepted.to_pylist()[0]["marketing_opt_out"] is True and v.duplicates == 1


def test_missing_required_column_names_the_fix():
    with pytest.raises(SchemaError, match=r"--map paid_at=<column>"):
        resolve_columns(PAYMENTS, ["user_id", "item_id", "when"], {}, {}, "f.csv")
    with pytest.raises(SchemaError, match="does not have"):
        resolve_columns(PAYMENTS, ["user_id", "item_id"], {"paid_at": "nope"}, {}, "f.csv")


cell = st.one_of(st.none(), st.text(max_size=12), st.sampled_from(
    ["", "1", "-2", "1.5", "abc", "2025-01-01", "13/13/2025", "4111111111111111", "a@b.co", "+33 1 23 45 67 89",
     "refund", "failed", "EUR", "USD", "app", "1,234.5"]))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.fixed_dictionaries({c: cell for c in
                ["payment_id", "user_id", "item_id", "paid_at", "amount", "quantity", "status", "currency", "channel"]}),
                min_size=1, max_size=30))
def test_every_row_is_accounted_for(rows):
    cols = {k: [r[k] for r in rows] for k in rows[0]}
    v = run(cols)
    assert v.accepted.num_rows + v.rejected.num_rows + v.duplicates == len(rows)
    assert set(v.rejected.column(ROW).to_pylist()) <= set(range(1, len(rows) + 1))
    stored = v.accepted.to_pylist()
    for r in stored:  # what is stored is clean
        assert r["user_id"] and r["item_id"] and r["paid_at"] is not None
        assert r["status"] in ("success", "failed", "refund") and r["currency"] == "EUR"
        assert "4111111111111111" not in str(r)
    keys = [(r["payment_id"], r["line_no"]) for r in stored]
    assert len(keys) == len(set(keys))
    assert all("4111111111111111" not in (d or "") for d in v.rejected.column("detail").to_pylist())
