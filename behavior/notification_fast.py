"""The fast path of notification checking: clean payment lines accepted in Python, without
the validation SQL and its fixed cost (~100 ms a call, however small the call).

`check_clean_lines` accepts a notification's lines only when every line is in the common,
unambiguous form a payment platform sends (ISO 8601 time, plain numbers, the lake's currency,
a listed status, ids without personal data, no key twice) and then stores exactly the values
`behavior.validate.validate` would store. For anything else (a line that validation would
reject, correct, or read in one of its many other forms) it answers None, and the caller runs
`behavior.notifications.check_lines`, so the reasons of rejected lines are always ingest's own.
tests/behavior/test_notification_fast.py checks the agreement on random payloads.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pyarrow as pa

from behavior.currencies import ISO_4217
from behavior.ids import normalize_id
from behavior.notifications import Checked
from behavior.parsing import NA_VALUES
from behavior.schema import CHANNELS, PAYMENTS
from behavior.validate import STATUS_SYNONYMS

_MISSING = frozenset(("", *NA_VALUES))
_SPREADSHEET_ID = re.compile(r"([0-9]+)\.0+")       # 17850.0 from a spreadsheet is 17850
_WHOLE = re.compile(r"-?[0-9]{1,9}")
# At most 12 integer digits: the engine reads an amount through a double, exact to 2 decimals there.
_AMOUNT = re.compile(r"-?[0-9]{1,12}(\.[0-9]{1,2})?")
_ISO_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|[+-][0-9]{2}:[0-9]{2})?)?")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_IDS = tuple(c.name for c in PAYMENTS.columns if c.is_id)
_PHONE_START = frozenset("+(0123456789")
_PROBED = tuple(n for n in PAYMENTS.names if n != "paid_at")   # validation probes no time for cards
_DIGIT = re.compile(r"[0-9]")


class _NotCovered(Exception):
    """The line is not in the form the fast path covers: validate it the full way."""


def _text(value: str | None) -> str | None:
    """The stored text of a value (ingest's `behavior.parsing.text`): trimmed, None if missing."""
    if value is None:
        return None
    t = normalize_id(value)
    return None if t in _MISSING else t


def _id(value: str | None) -> str | None:
    t = _text(value)
    if t is not None and ".0" in t and (m := _SPREADSHEET_ID.fullmatch(t)):
        return m.group(1)
    return t


def _may_hold_card(value: str | None) -> bool:
    """13 or more digits (a card number's fewest); most values are shorter than that."""
    return value is not None and len(value) >= 13 and len(_DIGIT.findall(value)) >= 13


def _line(row: dict[str, str | None], currency: str, latest: datetime) -> dict:
    """The stored values of one clean line; `_NotCovered` for any other."""
    # Anything that could hold a card number (13+ digits) is left to the full check, which
    # rejects and masks it. Times are not probed there either.
    if any(_may_hold_card(row[n]) for n in _PROBED):
        raise _NotCovered
    ids = {n: _id(row[n]) for n in _IDS}
    if ids["payment_id"] is None or ids["user_id"] is None or ids["item_id"] is None:
        raise _NotCovered
    user = ids["user_id"]
    # e-mail and phone-like ids (and every id that might be one) go the full way
    if "@" in user or (len(user) >= 7 and user[0] in _PHONE_START):
        raise _NotCovered
    status = _text(row["status"]) or "success"
    channel = _text(row["channel"]) or "other"
    cur = _text(row["currency"]) or currency
    if not (status.isascii() and channel.isascii() and cur.isascii()):
        raise _NotCovered
    status = STATUS_SYNONYMS.get(status.lower())
    if status is None or cur.upper() != currency or currency not in ISO_4217:
        raise _NotCovered
    channel = channel.lower() if channel.lower() in CHANNELS else "other"
    quantity = _text(row["quantity"]) or "1"
    amount = _text(row["amount"])
    line_no = _text(row["line_no"])
    if not _WHOLE.fullmatch(quantity) or line_no is None or not _WHOLE.fullmatch(line_no) \
            or (amount is not None and not _AMOUNT.fullmatch(amount)):
        raise _NotCovered
    paid = _text(row["paid_at"])
    if paid is None or not _ISO_TIME.fullmatch(paid):
        raise _NotCovered
    try:
        at = datetime.fromisoformat(paid)
    except ValueError:
        raise _NotCovered from None
    at = at.replace(tzinfo=timezone.utc) if at.tzinfo is None else at.astimezone(timezone.utc)
    if not _EPOCH <= at <= latest:
        raise _NotCovered
    qty = int(quantity)
    value = None if amount is None else Decimal(amount).quantize(Decimal("0.01"))
    # a negative quantity or amount means a refund; refunds carry both negative
    negative = qty < 0 or (value is not None and value < 0)
    if status == "success" and negative:
        status = "refund"
    if status == "refund" or negative:
        qty = -abs(qty)
        value = None if value is None else -abs(value)
    return {"payment_id": ids["payment_id"], "line_no": int(line_no), "user_id": user,
            "merchant_id": ids["merchant_id"] or "unknown", "item_id": ids["item_id"],
            "category": _text(row["category"]), "quantity": qty, "amount": value, "currency": cur.upper(),
            "paid_at": at, "channel": channel, "status": status, "promotion_id": ids["promotion_id"]}


def check_clean_lines(rows: list[dict[str, str | None]], currency: str, now: datetime) -> Checked | None:
    """What `behavior.notifications.check_lines` answers for `rows` (from `parse_body`) if every
    line is clean (all accepted, no copies, in the input's order); None if any line is not
    in the form covered here, so that the caller checks them all the full way."""
    latest = now + timedelta(days=1)
    try:
        lines = [_line(r, currency, latest) for r in rows]
    except _NotCovered:
        return None
    if len({(x["payment_id"], x["line_no"]) for x in lines}) < len(lines):
        return None   # a key twice: copies and conflicts are resolved by the full check
    accepted = pa.Table.from_pylist(lines, schema=PAYMENTS.arrow_schema)
    return Checked(accepted=accepted, rejected=[], duplicates=0)
