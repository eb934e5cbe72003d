"""Parsing and validation: known answers, and properties over random input."""

from datetime import datetime, timezone
from decimal import Decimal

import duckdb
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from behavior import parsing as P
from behavior.errors import SchemaError
from behavior.schema import PAYMENTS, USERS
from behavior.validate import ROW, ParseOptions, _any_repeat, resolve_columns, validate

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def run(rows: dict[str, list], mapping=None, defaults=None, spec=PAYMENTS, where=None, **opts):
    n = len(next(iter(rows.values())))
    src = pa.table({**{k: pa.array(v, pa.string()) for k, v in rows.items()}, ROW: list(range(1, n + 1))})
    cols = resolve_columns(spec, list(rows), mapping or {}, defaults or {}, "test.csv")
    return validate(duckdb.connect(), src, spec, cols, defaults or {}, ParseOptions(now=NOW, **opts),
                    **({"where": where} if where else {}))


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


def test_a_column_with_day_first_dates_is_read_day_first_whole():
    """Issue 19 item 2: 13/01/2025 made the file day-first, so 05/02/2025 is 5 February (it
    was stored as 2 May while 13/01/2025 was rejected)."""
    v = run({"user_id": ["u1", "u2", "u3"], "item_id": ["i1"] * 3,
             "paid_at": ["13/01/2025 10:00", "05/02/2025", "2025-03-04"]})
    assert v.rejected.num_rows == 0
    days = {r["user_id"]: (r["paid_at"].month, r["paid_at"].day) for r in v.accepted.to_pylist()}
    assert days == {"u1": (1, 13), "u2": (2, 5), "u3": (3, 4)}
    assert v.notes == ["paid_at read day-first: 1 of its dates are only valid day-first (e.g. row 1: "
                       "'13/01/2025 10:00') and none only month-first"]


def test_ambiguous_dates_alone_stay_month_first():
    v = one("paid_at", "05/02/2025")
    assert v.accepted.column("paid_at")[0].as_py().month == 5 and v.notes == []


def test_a_column_mixing_both_orders_is_refused_with_an_example_of_each():
    from behavior.date_order import MixedDateOrderError

    rows = {"user_id": ["u1", "u2", "u3", "u4"], "item_id": ["i1"] * 4,
            "paid_at": ["05/02/2025", "13/01/2025", "NA", "01/30/2025"]}
    with pytest.raises(MixedDateOrderError, match=r"shop\.csv: paid_at .*\(row 2: '13/01/2025'\).*"
                                                  r"\(row 4: '01/30/2025'\).*--dayfirst or --date-format"):
        run(rows, where="shop.csv")
    forced = run(rows, dayfirst=True)   # --dayfirst still forces the order: the others are rejected
    assert forced.rejected.column("reason").to_pylist() == ["missing_paid_at", "bad_paid_at"]
    assert "reads as month-first: leave out --dayfirst" in forced.rejected.column("detail")[1].as_py()


@pytest.mark.parametrize("column, marker, reason", [
    ("user_id", "NA", "missing_user_id"), ("user_id", "#N/A", "missing_user_id"), ("user_id", " \t\r\n", "missing_user_id"),
    ("item_id", "null", "missing_item_id"), ("item_id", "N/A", "missing_item_id"), ("paid_at", "-", "missing_paid_at"),
    ("paid_at", "NaN", "missing_paid_at"), ("user_id", "None", "missing_user_id"), ("item_id", "nan", "missing_item_id"),
    ("user_id", "NULL", "missing_user_id"),
])
def test_missing_value_markers_are_missing(column, marker, reason):
    """Issue 19 item 1: R's NA, Excel's #N/A and the others were stored as ids."""
    v = one(column, marker)
    assert v.rejected.column("reason").to_pylist() == [reason] and v.accepted.num_rows == 0


def test_markers_in_optional_columns_take_the_default_or_stay_empty():
    v = run({"user_id": ["u1"], "item_id": ["i1"], "paid_at": ["2025-01-02"], "amount": ["NA"],
             "merchant_id": ["#N/A"], "currency": ["N/A"], "channel": ["null"], "category": ["-"]})
    row = v.accepted.to_pylist()[0]
    assert (row["amount"], row["merchant_id"], row["currency"], row["channel"], row["category"]) == \
        (None, "unknown", "EUR", "other", None)


def test_na_values_changes_the_list():
    v = one("user_id", "NA", na_values=("-",))
    assert v.accepted.column("user_id").to_pylist() == ["NA"]
    assert one("user_id", "-", na_values=("-",)).rejected.column("reason").to_pylist() == ["missing_user_id"]


@pytest.mark.parametrize("raw", ["\tu1\n", "u1\r\n", "\u00a0u1\u2028", " u1\x0b"])
def test_ids_are_trimmed_of_every_whitespace(raw):
    from behavior.ids import normalize_id

    v = one("user_id", raw)
    assert v.accepted.column("user_id").to_pylist() == [normalize_id(raw)] == ["u1"]


def test_nan_in_a_float_column_is_missing():
    src = pa.table({"user_id": ["u1", "u2"], "item_id": ["i1", "i1"], "paid_at": ["2025-01-02"] * 2,
                    "amount": pa.array([float("nan"), 2.5], pa.float64()), ROW: [1, 2]})
    cols = resolve_columns(PAYMENTS, ["user_id", "item_id", "paid_at", "amount"], {}, {}, "t.parquet")
    v = validate(duckdb.connect(), src, PAYMENTS, cols, {}, ParseOptions(now=NOW))
    assert v.rejected.num_rows == 0
    amounts = {r["user_id"]: r["amount"] for r in v.accepted.to_pylist()}
    assert amounts["u1"] is None and str(amounts["u2"]) == "2.50"


@pytest.mark.parametrize("text, expected", [
    ("881250949", datetime(1997, 12, 4, 15, 55, 49)),          # 9-digit seconds (MovieLens ratings)
    ("881250949000", datetime(1997, 12, 4, 15, 55, 49)),       # 12-digit milliseconds
    ("999999999", datetime(2001, 9, 9, 1, 46, 39)),
])
def test_epochs_before_september_2001(text, expected):
    """Issue 19 item 4: 9-digit seconds and 12-digit milliseconds were rejected."""
    v = one("paid_at", text)
    assert v.rejected.num_rows == 0
    assert v.accepted.column("paid_at")[0].as_py() == expected.replace(tzinfo=timezone.utc)


def test_longer_digit_runs_are_not_epochs():
    assert one("paid_at", "99999999999999").rejected.column("reason").to_pylist() == ["bad_paid_at"]


@pytest.mark.parametrize("fmt, message", [("%s", "%s is not a code"), ("%Q/%m", "%Q is not a code"),
                                          ("date", "it has no date code"), ("%d/%m/%", "% is not a code")])
def test_a_bad_date_format_names_the_option(fmt, message):
    from behavior.errors import InputError
    from behavior.parsing import check_date_format

    with pytest.raises(InputError, match=f"--date-format '{fmt}': {message}"):
        check_date_format(fmt)
    assert check_date_format("%d/%m/%Y %H:%M") == "%d/%m/%Y %H:%M"


def test_future_and_ancient_dates_are_rejected():
    assert one("paid_at", "2030-01-01").rejected.column("reason").to_pylist() == ["date_out_of_range"]
    assert one("paid_at", "1960-01-01").rejected.column("reason").to_pylist() == ["date_out_of_range"]


def test_a_promotion_running_or_scheduled_ahead_is_accepted():
    """A promotion's start and end may lie ahead (it runs for weeks, or starts next month);
    they keep the 1970 bound, and event times stay bounded to a day ahead."""
    from behavior.schema import ASSIGNMENTS, PROMOTIONS

    v = run({"promotion_id": ["p-running", "p-scheduled", "p-ancient"],
             "starts_at": ["2025-12-20", "2026-02-01", "1960-01-01"],
             "ends_at": ["2026-01-20", "2026-03-01", "2026-01-20"]}, spec=PROMOTIONS)
    assert sorted(v.accepted.column("promotion_id").to_pylist()) == ["p-running", "p-scheduled"]
    assert v.accepted.filter(pa.compute.equal(v.accepted.column("promotion_id"), "p-scheduled")) \
        .column("ends_at")[0].as_py() == datetime(2026, 3, 1, tzinfo=timezone.utc)
    assert v.rejected.column("reason").to_pylist() == ["date_out_of_range"]
    assert v.rejected.column("detail")[0].as_py().endswith("is before 1970")
    late = run({"promotion_id": ["p"], "user_id": ["u1"], "group": ["control"], "assigned_at": ["2030-01-01"]},
               spec=ASSIGNMENTS)
    assert late.rejected.column("reason").to_pylist() == ["date_out_of_range"]


@pytest.mark.parametrize("text, expected", [
    ("12.5", "12.50"), ("1,234.50", "1234.50"), ("1234,5", "1234.50"), ("1.234,50", "1234.50"),
    ("€ 7,90", "7.90"), ("(3.00)", "-3.00"), ("$1,000", "1000.00"), ("0", "0.00"),
    ("-$1,234.50", "-1234.50"), ("(€3.00)", "-3.00"), ("(3.00 €)", "-3.00"), ("12.50 USD", "12.50"),
    ("1 234,50", "1234.50"), ("1\u00a0234 567", "1234567.00"), ("1'234.50", "1234.50"), ("-1e3", "-1000.00"),
    ("12.50 (USD) ", "12.50"), ("1,234.50 (EUR)\t", "1234.50"), ("12.50 USD)\r\n", "12.50"), ("7,90 €\u00a0", "7.90"),
])
def test_amounts(text, expected):
    v = one("amount", text)
    assert v.rejected.num_rows == 0
    assert str(v.accepted.column("amount")[0].as_py()) == expected.lstrip("-") or \
        str(v.accepted.column("amount")[0].as_py()) == expected


@pytest.mark.parametrize("sent", ["7.5", "7.5 ", "7.5\t", "7.5\u00a0", " 7.5", "\u2003 7.5 \n"])
def test_a_number_with_whitespace_at_its_ends_reads_shows_and_hashes_as_its_trimmed_text(sent):
    """A number that starts with a digit is parsed from the text as sent (`parsing.number_text`):
    whatever whitespace ends it changes neither the value, nor the value a rejection shows, nor
    the key derived for a row without a payment id."""
    def row(quantity):
        return run({"user_id": ["u1"], "item_id": ["i1"], "paid_at": ["2025-01-02 03:04:05"],
                    "amount": [sent.replace("7.5", "12.25")], "quantity": [quantity]})
    good = row("3")
    assert good.accepted.column("amount").to_pylist() == [Decimal("12.25")]
    plain = run({"user_id": ["u1"], "item_id": ["i1"], "paid_at": ["2025-01-02 03:04:05"], "amount": ["12.25"],
                 "quantity": ["3"]})
    assert good.accepted.column("payment_id").to_pylist() == plain.accepted.column("payment_id").to_pylist()
    bad = row(sent)   # 7.5 is no whole number
    assert bad.rejected.column("reason").to_pylist() == ["bad_quantity"]
    assert bad.rejected.column("detail").to_pylist() == ["quantity '7.5' is not a whole number"]


@pytest.mark.parametrize("amount, default", [("7.5 ", None), ("12.50 (USD) ", None), ("3", None),
                                             (None, " 3.5 "), (None, "3.5\t"), (None, "3.5")])
def test_the_key_of_a_row_without_a_payment_id_is_the_same_whether_numbers_are_read_as_sent(amount, default):
    """A marker that starts with a digit makes every number text cleaned first, as all were
    before `parsing.number_text`: the derived key and the amount must not depend on it, for
    values as sent and for defaults with whitespace at their ends (the CLI strips those; the
    Python API does not)."""
    rows = {"user_id": ["u1"], "item_id": ["i1"], "paid_at": ["2025-01-02 03:04:05"], "quantity": ["2 "]}
    if amount is not None:
        rows["amount"] = [amount]
    both = [run(rows, defaults={"amount": default} if default else None, na_values=markers)
            for markers in (P.NA_VALUES, (*P.NA_VALUES, "0000"))]
    assert both[0].rejected.num_rows == both[1].rejected.num_rows == 0
    assert both[0].accepted.to_pylist() == both[1].accepted.to_pylist()


@pytest.mark.parametrize("marker", ["0", "999"])
def test_a_marker_that_is_a_number_still_reads_as_missing(marker):
    v = one("amount", marker, na_values=(marker,))
    assert v.rejected.num_rows == 0 and v.accepted.column("amount").to_pylist() == [None]
    assert one("amount", "12", na_values=(marker,)).accepted.column("amount").to_pylist() == [Decimal("12.00")]


@pytest.mark.parametrize("text", ["0x1A", "1A2", "12 50", "5.00-", "1,2,3,4", "12-5", "abc", "1.234.567,8.9",
                                  "1_0", "1_000.50", "€ 1_000"])
def test_amounts_with_something_between_their_digits_are_rejected(text):
    v = one("amount", text)
    assert v.accepted.num_rows == 0
    assert v.rejected.column("reason").to_pylist() == ["bad_amount"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(head=st.integers(1, 999), tail=st.integers(0, 999_999),
       inner=st.text(st.characters(blacklist_categories=("Nd", "Cs"), blacklist_characters="eE.,'+-()"),
                     min_size=1, max_size=3).filter(lambda t: t.strip(" \u00a0\u202f") != ""))
def test_no_character_between_digits_is_dropped(head, tail, inner):
    """A quantity with anything but a separator between its digits is rejected, never read as
    its digits run together (the old reader dropped every character that is not a digit)."""
    v = one("quantity", f"{head}{inner}{tail}")
    if v.accepted.num_rows:
        assert v.accepted.column("quantity")[0].as_py() not in (int(f"{head}{tail}"), head, tail), inner


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


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(st.integers(-2**63, 2**63 - 1), max_size=6), max_size=4))
def test_a_repeated_hash_is_found_in_any_chunk(chunks):
    # the keys' hashes come from the engine in chunks; a repeat across chunks counts too
    values = pa.chunked_array([pa.array(c, pa.int64()) for c in chunks], pa.int64())
    flat = [v for c in chunks for v in c]
    assert _any_repeat(values) == (len(set(flat)) < len(flat))


def test_a_null_among_the_hashes_is_an_error_and_the_memory_is_let_go():
    with pytest.raises(pa.ArrowInvalid):   # not BufferError: the map closes once the array is gone
        _any_repeat(pa.chunked_array([[1, None, 2]], pa.int64()))


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


@pytest.mark.parametrize("value, stored", [
    ("u1", "u1"), ("\u00a0u1\u3000", "u1"), ("u1\n", "u1"), ("caf\u00e9", "caf\u00e9"), ("\u00e9t\u00e9", "\u00e9t\u00e9"),
    (" NA ", None), ("~u!", "~u!"),
])
def test_ids_are_kept_as_sent_when_their_ends_are_printable_and_trimmed_of_any_space_otherwise(value, stored):
    # the ends are tested by code point (a non-ASCII last letter is not mistaken for a space)
    res = run({"user_id": ["u0", value], "item_id": ["i1", "i2"], "paid_at": ["2025-01-02 03:04:05"] * 2})
    users = sorted(res.accepted.column("user_id").to_pylist())
    assert users == sorted(["u0", stored] if stored else ["u0"])
    assert [r["reason"] for r in res.rejected.to_pylist()] == ([] if stored else ["missing_user_id"])


def test_a_file_of_iso_dates_and_one_day_first_slash_date_is_read_day_first():
    # ISO dates are no evidence of either order; the one slash date decides
    res = run({"user_id": ["u1", "u2"], "item_id": ["i1", "i2"], "paid_at": ["2025-01-02 03:04:05", "13/01/2025"]})
    assert sorted(p.day for p in res.accepted.column("paid_at").to_pylist()) == [2, 13]
    assert any("day-first" in n for n in res.notes)


def test_parsed_values_and_derived_ids_are_the_known_answers():
    """The validation SQL takes its costly branches (a number's normalisation, the derived id's
    hash, a channel outside the list) only where the plain cast fails; what it stores is what it
    always stored: the derived payment ids are the hashes lakes hold already (so re-ingesting
    finds the rows stored), computed once by the code before that change."""
    v = run({"user_id": ["u1", "u2", "u3", "u4", "u5"], "item_id": ["i1"] * 5, "paid_at": ["2025-01-02 03:04:05"] * 5,
             "amount": ["12.5", "(1.234,50)", "€ 3", "1,234.50", "7"], "quantity": ["2", "1", "1,000", "1", "-1"],
             "channel": ["APP", " Web ", "kiosk", "NA", "pos"]})
    got = {r["user_id"]: (r["payment_id"], str(r["amount"]), r["quantity"], r["channel"], r["status"])
           for r in v.accepted.to_pylist()}
    assert got == {
        "u1": ("h1a0cc0ee4b9ce224", "12.50", 2, "app", "success"),
        "u2": ("h34520ca636b7622f", "-1234.50", -1, "web", "refund"),
        "u3": ("h23ffa316b7c061cb", "3.00", 1000, "other", "success"),
        "u4": ("hb48f1c799c529b8b", "1234.50", 1, "other", "success"),
        "u5": ("h140b2b19de8492fd", "-7.00", -1, "pos", "refund"),
    }
    assert v.rejected.num_rows == 0
