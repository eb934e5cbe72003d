"""The fast path of notification checking agrees with ingest's validation line for line."""

import json
from datetime import datetime, timedelta, timezone

import duckdb
import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as st

from behavior.notification_fast import check_clean_lines
from behavior.notifications import NotificationError, check_lines, parse_body
from behavior.validate import STATUS_SYNONYMS

NOW = datetime(2026, 6, 1, 12, tzinfo=timezone.utc)
CON = duckdb.connect(config={"threads": 1})


def often(clean, *tricky):
    """Mostly clean values (so that the fast path is taken often), one in ten a tricky one."""
    return st.integers(0, 9).flatmap(lambda k: st.one_of(*tricky) if k == 0 else clean)


ID = often(st.sampled_from(["u1", "u0000001", "m001", "i00042", "17850"]),
           st.sampled_from([" u2 ", "u3\t", "\u00a0u4", "NA", "null", "#N/A", "-", "", "17850.0", "17850.00",
                            "1234567", "+33 6 12 34 56 78", "0612345678", "a@b.co", "x@y", "4111111111111111",
                            "4111 1111 1111 1111", "i-4111111111111112", "12345678901234", "ünï", "İd", "m\x01", "u1\x00",
                            "i\x7f2", None]),
           st.text(max_size=8), st.integers(-10, 10 ** 14))
TIME = often(st.datetimes(min_value=datetime(1969, 12, 30), max_value=datetime(2026, 6, 3),
                          timezones=st.sampled_from([timezone.utc, timezone(timedelta(hours=5, minutes=30)),
                                                     timezone(timedelta(hours=-8))])).map(
    lambda d: d.isoformat()),
    st.sampled_from(["2025-01-02", "2025-01-02T03:04:05Z", "2025-01-02 03:04:05.123+02:00", "2025-02-30",
                     "1960-01-01", "2030-01-01", "2026-06-02T11:00:00Z", "2026-06-02T13:00:00Z", "01/02/2025",
                     "13/01/2025 10:00", "2 Jan 2025", "1735787045", "1735787045000", "NA", "", " 2025-01-02 ",
                     "2025-01-02T24:00:00", "2025-01-02T03:04:05.1234567", "20250102", None]),
    st.datetimes(min_value=datetime(1969, 12, 30), max_value=datetime(2026, 6, 3)).map(str))
AMOUNT = often(st.decimals(min_value=-10 ** 6, max_value=10 ** 6, places=2, allow_nan=False).map(str),
               st.sampled_from(["9.90", "-3.5", "0", "-0.00", "1,234.50", "12.345", "€ 7,90", "(3.00)", "abc", "NA",
                                "1e3", "999999999999.99", "0.29", " 5 ", None]),
               st.floats(-1e6, 1e6, allow_nan=False), st.integers(-10 ** 13, 10 ** 13))
QUANTITY = often(st.integers(-5, 5), st.sampled_from(["1", "x", "1.5", "2.0", " 3", "NA", "-0", "007", None]),
                 st.integers(-10 ** 11, 10 ** 11), st.floats(-10, 10, allow_nan=False))
CURRENCY = often(st.just("EUR"), st.sampled_from(["eur", " EUR ", "USD", "XXX", "ABC", "NA", "", "€", None]))
STATUS = often(st.sampled_from(["success", "failed", "refund"]),
               st.sampled_from([*STATUS_SYNONYMS, "PAID", " ok ", "weird", "NA", "", None]), st.text(max_size=5))
CHANNEL = often(st.sampled_from(["app", "web", "pos"]), st.sampled_from(["App", "kiosk", " qr ", "NA", None, ""]))
CATEGORY = often(st.sampled_from(["kettles", None]), st.text(max_size=6), st.sampled_from(["NA", " tea ", "5555 5555 5555 4444"]))
LINE = st.fixed_dictionaries({"line_no": st.integers(0, 3), "item_id": ID, "category": CATEGORY,
                              "quantity": QUANTITY, "amount": AMOUNT})
PAYMENT = st.fixed_dictionaries({
    "payment_id": often(st.sampled_from(["p1", "p2", "p3"]), st.sampled_from([" p1", "p1\n", "NA", "17850.0", "p@x.io"])),
    "user_id": ID, "merchant_id": ID, "paid_at": TIME, "status": STATUS, "currency": CURRENCY, "channel": CHANNEL,
    "promotion_id": often(st.sampled_from([None, "promo-1"]), ID),
    "lines": st.lists(LINE, min_size=1, max_size=3)})


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(PAYMENT, min_size=1, max_size=4))
def test_the_fast_path_stores_what_validation_stores(payments):
    """Whenever the fast path answers, validation accepts every line (no rejection, no copy)
    and stores the same values in the same order; otherwise the full check answers."""
    try:
        rows = parse_body(json.dumps(payments).encode())
    except NotificationError:
        return
    fast = check_clean_lines(rows, "EUR", NOW)
    full = check_lines(CON, rows, "EUR", NOW)
    event("fast path" if fast is not None else "full check")
    if fast is not None:
        assert full.rejected == [] and full.duplicates == 0
        assert fast.accepted.equals(full.accepted), (fast.accepted.to_pylist(), full.accepted.to_pylist())
        assert fast.rejected == [] and fast.duplicates == 0


def _payment(pid: str, **over) -> dict:
    line = {"line_no": 1, "item_id": "i00001", "category": None, "quantity": 1, "amount": "9.90", **over.pop("line", {})}
    return {"payment_id": pid, "user_id": "u0000001", "merchant_id": "m001", "paid_at": "2026-06-01T11:59:00+00:00",
            "status": "success", "currency": "EUR", "channel": "app", "promotion_id": None, "lines": [line], **over}


def test_the_common_notification_takes_the_fast_path_with_ingest_values():
    rows = parse_body(json.dumps([_payment("p1"), _payment("p2", line={"amount": -4.5}, status="paid", currency=" eur "),
                                  _payment("p3", user_id=" 17850.0 ", paid_at="2026-06-01 13:00:00.5+02:00",
                                           channel="Kiosk")]).encode())
    fast = check_clean_lines(rows, "EUR", NOW)
    assert fast is not None and fast.accepted.equals(check_lines(CON, rows, "EUR", NOW).accepted)
    got = fast.accepted.to_pylist()
    assert [(r["status"], r["quantity"], str(r["amount"])) for r in got] == [("success", 1, "9.90"),
                                                                           ("refund", -1, "-4.50"),
                                                                           ("success", 1, "9.90")]
    assert got[2]["user_id"] == "17850" and got[2]["channel"] == "other"
    assert got[2]["paid_at"] == datetime(2026, 6, 1, 11, 0, 0, 500000, tzinfo=timezone.utc)


@pytest.mark.parametrize("payment", [
    _payment("p1", user_id="a@b.co"), _payment("p1", line={"item_id": "4111111111111111"}),
    _payment("p1", paid_at="2030-01-01"), _payment("p1", paid_at="01/02/2026"), _payment("p1", currency="USD"),
    _payment("p1", user_id="NA"), _payment("p1", line={"amount": "1,234.50"}), _payment("p1", status="weird"),
    # ids holding a control character are quarantined by ingest's validation (behavior.ids)
    _payment("p1", merchant_id="m\x01"), _payment("p1", user_id="u1\x00"), _payment("p\x1f1"),
    _payment("p1", line={"item_id": "i\x7f2"}), _payment("p1", promotion_id="promo\x0b1"),
])
def test_anything_else_is_left_to_the_full_check(payment):
    assert check_clean_lines(parse_body(json.dumps(payment).encode()), "EUR", NOW) is None


def test_a_key_twice_is_left_to_the_full_check():
    assert check_clean_lines(parse_body(json.dumps([_payment("p1"), _payment(" p1")]).encode()), "EUR", NOW) is None
