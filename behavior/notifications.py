"""Payment result notifications: the body of POST /v1/notifications/payments, flattened into
payment lines and validated exactly as ingest validates a file (`behavior.validate`).

A body is one payment or a JSON list of up to MAX_PAYMENTS, each

    {payment_id, user_id, merchant_id, paid_at, status, currency, channel, promotion_id,
     lines: [{line_no, item_id, category, quantity, amount}, ...]}

`payment_id` (a non-empty string) and each `line_no` (a whole number) are required here, unlike
in a file: they are the key that makes a notification sent again a duplicate. A body that is
not of this shape raises `NotificationError` naming the field; row-level problems (a bad date,
a card number in a field, an e-mail as user id, ...) reject that line only, with ingest's
reason codes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow as pa

from behavior.errors import BehaviorError
from behavior.ids import normalize_id
from behavior.pii import mask_card_numbers
from behavior.schema import PAYMENTS
from behavior.validate import ROW, ParseOptions, resolve_columns, validate

MAX_PAYMENTS = 1000
PAYMENT_FIELDS = ("payment_id", "user_id", "merchant_id", "paid_at", "status", "currency", "channel", "promotion_id")
LINE_FIELDS = ("line_no", "item_id", "category", "quantity", "amount")


class NotificationError(BehaviorError, ValueError):
    """The body is not one payment or a list of payments of the documented shape."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass
class Checked:
    accepted: pa.Table          # canonical payment lines, typed as the lake stores them
    rejected: list[dict]        # payment_id, line_no, user_id, reason, detail, raw, _row (index in the input) (values as JSON, card numbers masked)
    duplicates: int             # exact repeats inside the body


def _text(value: Any, field: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise NotificationError(field, "must be a string or a number")


def parse_body(body: bytes) -> list[dict[str, str | None]]:
    """The payment lines of a notification body, one dict of canonical column -> text each."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise NotificationError("body", f"not valid JSON ({exc})") from None
    payments = doc if isinstance(doc, list) else [doc]
    if not payments:
        raise NotificationError("body", "an empty list: send at least one payment")
    if len(payments) > MAX_PAYMENTS:
        raise NotificationError("body", f"{len(payments)} payments; send at most {MAX_PAYMENTS} per request")
    rows: list[dict[str, str | None]] = []
    for i, p in enumerate(payments):
        at = f"[{i}]" if isinstance(doc, list) else ""
        if not isinstance(p, dict):
            raise NotificationError(at or "body", "a payment must be a JSON object")
        pid = p.get("payment_id")
        if not isinstance(pid, str) or not pid.strip():
            raise NotificationError(f"{at}.payment_id".lstrip("."), "required: the payment's non-empty id (a string)")
        lines = p.get("lines")
        if not isinstance(lines, list) or not lines:
            raise NotificationError(f"{at}.lines".lstrip("."), "required: a non-empty list of the payment's lines")
        head = {f: _text(p.get(f), f"{at}.{f}".lstrip(".")) for f in PAYMENT_FIELDS}
        for j, line in enumerate(lines):
            lat = f"{at}.lines[{j}]".lstrip(".")
            if not isinstance(line, dict):
                raise NotificationError(lat, "a line must be a JSON object")
            n = line.get("line_no")
            if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= 2_147_483_647:
                raise NotificationError(f"{lat}.line_no", "required: the line's number, a whole number >= 0")
            rows.append({**head, **{f: _text(line.get(f), f"{lat}.{f}") for f in LINE_FIELDS}})
    return rows


def check_lines(engine: Any, rows: list[dict[str, str | None]], currency: str, now: datetime) -> Checked:
    """Validate the lines on `engine` (a DuckDB connection or `SqlEngine`) as ingest would."""
    names = list(PAYMENTS.names)
    table = pa.table({**{n: pa.array([r[n] for r in rows], pa.string()) for n in names},
                      ROW: pa.array(range(1, len(rows) + 1), pa.int64())})
    columns = resolve_columns(PAYMENTS, names, {}, {}, "notification")
    result = validate(engine, table, PAYMENTS, columns, {}, ParseOptions(currency=currency, now=now))
    rejected = []
    for r, reason, detail in zip(*(result.rejected.column(c).to_pylist() for c in (ROW, "reason", "detail"))):
        row = rows[r - 1]
        rejected.append({"payment_id": mask_card_numbers(row["payment_id"] or ""), "line_no": int(row["line_no"]),
                         "user_id": mask_card_numbers(normalize_id(row["user_id"] or "")) or None, "reason": reason, "detail": detail,
                         "raw": mask_card_numbers(json.dumps(row, ensure_ascii=False)), "_row": r - 1})
    return Checked(result.accepted, rejected, result.duplicates)
