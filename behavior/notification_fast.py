"""The fast path of notification checking: clean payment lines accepted in Python, without
the validation SQL and its fixed cost (~100 ms a call, however small the call).

`check_clean_lines` accepts a notification's lines only when every line is in the common,
unambiguous form a payment platform sends (ISO 8601 time, plain numbers, the lake's currency,
a listed status, ids without personal data or control characters, no key twice) and then stores exactly the values
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
from behavior.ids import CONTROL_PATTERN, normalize_id
from behavior.notifications import Checked
from behavior.parsing import NA_VALUES
from behavior.schema import CHANNELS, PAYMENTS
from behavior.validate import STATUS_SYNONYMS

_MISSING = frozenset(("", *NA_VALUES))
_SPREADSHEET_ID = re.compile(r"([0-9]+)\.0+")       # 17850.0 from a spreadsheet is 17850
_CONTROL = re.compile(CONTROL_PATTERN)                # an id holding one is quarantined (behavior.ids)
_WHOLE = re.compile(r"-?[0-9]{1,9}")
# At most 12 integer digits: the engine reads an amount through a double, exact to 2 decimals there.
_AMOUNT = re.compile(r"-?[0-9]{1,12}(\.[0-9]{1,2})?")
_ISO_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|[+-][0-9]{2}:[0-9]{2})?)?")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_IDS = tuple(c.name for c in PAYMENTS.columns if c.is_id)
_PHONE_START = frozenset("+(0123456789")
_PROBED = tuple(n for n in PAYMENTS.names if n != "paid_at")   # validation probes no time for cards
_DIGIT = re.compile(r"[0-9]")
_CENT = Decimal("0.01")
_MICROSECOND = timedelta(microseconds=1)


class _NotCovered(Exception):
    """A line is not in the form the fast path covers: validate them all the full way."""


_MISS = object()


def _each(check, values: list) -> list:
    """`check` of each value, computed once per distinct value: a batch repeats most values
    (a payment's time and status on each of its lines, a few currencies, channels, amounts)."""
    seen: dict = {}
    out = []
    for v in values:
        r = seen.get(v, _MISS)
        if r is _MISS:
            r = seen[v] = check(v)
        out.append(r)
    return out


def _text(value: str | None) -> str | None:
    """The stored text of a value (ingest's `behavior.parsing.text`): trimmed, None if missing."""
    if value is None:
        return None
    t = normalize_id(value)
    return None if t in _MISSING else t


def _id(value: str | None) -> str | None:
    t = _text(value)
    if t is not None and _CONTROL.search(t):
        raise _NotCovered
    if t is not None and ".0" in t and (m := _SPREADSHEET_ID.fullmatch(t)):
        return m.group(1)
    return t


def _required_id(value: str | None) -> str:
    t = _id(value)
    if t is None:
        raise _NotCovered
    return t


def _user_id(value: str | None) -> str:
    user = _required_id(value)
    # e-mail and phone-like ids (and every id that might be one) go the full way
    if "@" in user or (len(user) >= 7 and user[0] in _PHONE_START):
        raise _NotCovered
    return user


def _status(value: str | None) -> str:
    t = _text(value) or "success"
    status = STATUS_SYNONYMS.get(t.lower()) if t.isascii() else None
    if status is None:
        raise _NotCovered
    return status


def _channel(value: str | None) -> str:
    t = _text(value) or "other"
    if not t.isascii():
        raise _NotCovered
    return t.lower() if t.lower() in CHANNELS else "other"


def _whole(value: str | None) -> int:
    if value is None or not _WHOLE.fullmatch(value):
        raise _NotCovered
    return int(value)


def _amount(value: str | None) -> Decimal | None:
    t = _text(value)
    if t is None:
        return None
    if not _AMOUNT.fullmatch(t):
        raise _NotCovered
    return Decimal(t).quantize(_CENT)


def _paid_at(latest: datetime):
    def micros(value: str | None) -> int:
        paid = _text(value)
        if paid is None or not _ISO_TIME.fullmatch(paid):
            raise _NotCovered
        try:
            at = datetime.fromisoformat(paid)
        except ValueError:
            raise _NotCovered from None
        at = at.replace(tzinfo=timezone.utc) if at.tzinfo is None else at.astimezone(timezone.utc)
        if not _EPOCH <= at <= latest:
            raise _NotCovered
        return (at - _EPOCH) // _MICROSECOND
    return micros


def _columns(rows: list[dict[str, str | None]], currency: str, latest: datetime) -> dict[str, list]:
    """The stored values of clean lines, column by column; `_NotCovered` if any line is not clean."""
    raw = {n: [r[n] for r in rows] for n in PAYMENTS.names}
    # Anything that could hold a card number (13+ digits) is left to the full check, which
    # rejects and masks it. Times are not probed there either.
    for n in _PROBED:
        for v in raw[n]:
            if v is not None and len(v) >= 13 and len(_DIGIT.findall(v)) >= 13:
                raise _NotCovered

    def same_currency(value: str | None) -> str:
        cur = _text(value) or currency
        if not cur.isascii() or cur.upper() != currency:
            raise _NotCovered
        return currency

    cols = {"payment_id": _each(_required_id, raw["payment_id"]), "line_no": _each(lambda v: _whole(_text(v)), raw["line_no"]),
            "user_id": _each(_user_id, raw["user_id"]), "merchant_id": _each(lambda v: _id(v) or "unknown", raw["merchant_id"]),
            "item_id": _each(_required_id, raw["item_id"]), "category": _each(_text, raw["category"]),
            "quantity": _each(lambda v: _whole(_text(v) or "1"), raw["quantity"]), "amount": _each(_amount, raw["amount"]),
            "currency": _each(same_currency, raw["currency"]), "paid_at": _each(_paid_at(latest), raw["paid_at"]),
            "channel": _each(_channel, raw["channel"]), "status": _each(_status, raw["status"]),
            "promotion_id": _each(_id, raw["promotion_id"])}
    status, qty, value = cols["status"], cols["quantity"], cols["amount"]
    for i, (st, q, a) in enumerate(zip(status, qty, value)):
        # a negative quantity or amount means a refund; refunds carry both negative
        negative = q < 0 or (a is not None and a < 0)
        if st == "success" and negative:
            status[i] = st = "refund"
        if st == "refund" or negative:
            qty[i] = -abs(q)
            value[i] = None if a is None else -abs(a)
    return cols


def check_clean_lines(rows: list[dict[str, str | None]], currency: str, now: datetime) -> Checked | None:
    """What `behavior.notifications.check_lines` answers for `rows` (from `parse_body`) if every
    line is clean (all accepted, no copies, in the input's order); None if any line is not
    in the form covered here, so that the caller checks them all the full way."""
    if currency not in ISO_4217:
        return None
    try:
        cols = _columns(rows, currency, now + timedelta(days=1))
    except _NotCovered:
        return None
    if len(set(zip(cols["payment_id"], cols["line_no"]))) < len(rows):
        return None   # a key twice: copies and conflicts are resolved by the full check
    schema = PAYMENTS.arrow_schema
    arrays = [pa.array(cols["paid_at"], pa.int64()).cast(f.type) if f.name == "paid_at" else pa.array(cols[f.name], f.type)
              for f in schema]
    return Checked(accepted=pa.Table.from_arrays(arrays, schema=schema), rejected=[], duplicates=0)
