"""The sending side of payment notifications: `behavior notify FILE --sender NAME --url URL`.

`payments_from_table` groups an export's payment lines into payment documents (the body of
POST /v1/notifications/payments); `send_payments` signs them in requests of up to `batch`
payments and sends them over one kept-alive connection, retrying a request that failed in
transit or got 429 / 5xx with exponential backoff (the endpoint is idempotent, so a retry of
a request that did arrive is answered with duplicates, never stored twice). Standard library
only: a sending system needs nothing beyond Python.
"""

from __future__ import annotations

import http.client
import json
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa

from behavior.errors import BehaviorError
from behavior.notifications import LINE_FIELDS, PAYMENT_FIELDS
from behavior.store.senders import sign_hmac, sign_rsa, signature_header

PATH = "/v1/notifications/payments"
RETRY_STATUSES = {429, 500, 502, 503, 504}


class SendError(BehaviorError):
    """A request was refused for good (not signed right, not payments) or never got through."""


@dataclass
class SendReport:
    requests: int = 0
    payments: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict] = field(default_factory=list)
    retries: int = 0


def _json_value(v: Any) -> Any:
    if isinstance(v, datetime):
        return v.isoformat()
    if isinstance(v, Decimal):
        return str(v)
    return v


def payments_from_table(table: pa.Table) -> list[dict]:
    """Payment documents from payment lines (canonical column names, any case); lines without
    a line_no are numbered in the order they come within their payment."""
    lower = {n.lower(): n for n in table.column_names}
    if "payment_id" not in lower:
        raise SendError("the export has no payment_id column: notifications are keyed by payment_id and line_no")
    cols = {f: table.column(lower[f]).to_pylist() if f in lower else [None] * table.num_rows
            for f in (*PAYMENT_FIELDS, *LINE_FIELDS)}
    out: dict[str, dict] = {}
    for i in range(table.num_rows):
        pid = cols["payment_id"][i]
        if pid is None:
            raise SendError(f"row {i + 1}: payment_id is empty")
        doc = out.get(str(pid))
        if doc is None:
            doc = out[str(pid)] = {f: _json_value(cols[f][i]) for f in PAYMENT_FIELDS} | {"payment_id": str(pid),
                                                                                          "lines": []}
        line = {f: _json_value(cols[f][i]) for f in LINE_FIELDS}
        if line["line_no"] is None or line["line_no"] == "":
            line["line_no"] = len(doc["lines"]) + 1
        else:
            try:   # a CSV's text; the endpoint wants the number
                line["line_no"] = int(str(line["line_no"]).strip())
            except ValueError:
                raise SendError(f"row {i + 1}: line_no {line['line_no']!r} is not a whole number") from None
        doc["lines"].append(line)
    return list(out.values())


def signer(secret_hex: str | None = None, rsa_private_pem: bytes | None = None) -> Callable[[int, bytes], str]:
    """The v1 signature function of an HMAC sender (its secret) or an RSA2 sender (its key)."""
    if rsa_private_pem is not None:
        return lambda t, body: sign_rsa(rsa_private_pem, t, body)
    if secret_hex is None:
        raise SendError("give the sender's HMAC secret or its RSA private key")
    try:
        secret = bytes.fromhex(secret_hex.strip())
    except ValueError:
        raise SendError("the HMAC secret is not hex (what `behavior senders add` printed)") from None
    return lambda t, body: sign_hmac(secret, t, body)


def send_payments(url: str, sender: str, payments: Iterable[dict], sign: Callable[[int, bytes], str], *,
                  batch: int = 100, retries: int = 6, backoff_s: float = 0.5, timeout_s: float = 30.0,
                  progress: Callable[[str], None] = lambda _: None) -> SendReport:
    """Send `payments` to the API at `url` (its base, e.g. http://127.0.0.1:8000) as signed
    notifications of up to `batch` payments each; returns the totals of the answers."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SendError(f"--url {url!r}: give the API's base URL, e.g. http://127.0.0.1:8000")
    conn_type = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = conn_type(parts.hostname, parts.port, timeout=timeout_s)
    path = parts.path.rstrip("/") + PATH
    report = SendReport()
    chunk: list[dict] = []
    try:
        for p in payments:
            chunk.append(p)
            if len(chunk) == batch:
                _send(conn, path, sender, chunk, sign, retries, backoff_s, report)
                progress(f"sent {report.payments:,} payments")
                chunk = []
        if chunk:
            _send(conn, path, sender, chunk, sign, retries, backoff_s, report)
    finally:
        conn.close()
    return report


def _send(conn: http.client.HTTPConnection, path: str, sender: str, chunk: list[dict],
          sign: Callable[[int, bytes], str], retries: int, backoff_s: float, report: SendReport) -> None:
    body = json.dumps(chunk, ensure_ascii=False).encode()
    for attempt in range(retries + 1):
        t = int(time.time())     # signed afresh on every try: a retry hours later is still within 300 s
        headers = {"Content-Type": "application/json", "Behavior-Sender": sender,
                   "Behavior-Signature": signature_header(t, sign(t, body))}
        try:
            conn.request("POST", path, body=body, headers=headers)
            resp = conn.getresponse()
            status, text = resp.status, resp.read()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()         # reconnects on the next request
            status, text = None, str(exc).encode()
        if status == 200:
            answer = json.loads(text)
            report.requests += 1
            report.payments += len(chunk)
            report.accepted += answer["accepted"]
            report.duplicates += answer["duplicates"]
            report.rejected += answer["rejected"]
            return
        if status is not None and status not in RETRY_STATUSES:
            detail = text.decode(errors="replace")[:500]
            raise SendError(f"the API refused the notifications ({status}): {detail}")
        if attempt < retries:
            report.retries += 1
            time.sleep(backoff_s * 2 ** attempt * (0.5 + random.random()))
    raise SendError(f"gave up after {retries + 1} tries; last answer: "
                    f"{status or 'no answer'} {text.decode(errors='replace')[:300]}")
