"""Signed notifications for the tests: a body, its headers, a posting helper."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone

from behavior.store.senders import sign_hmac, sign_rsa, signature_header

PATH = "/v1/notifications/payments"


def payment(pid: str, user: str = "u0000001", items: tuple[str, ...] = ("i00001",), *, amount: str = "12.50",
            paid_at: datetime | None = None, **fields) -> dict:
    paid = (paid_at or datetime.now(timezone.utc) - timedelta(seconds=5)).isoformat()
    return {"payment_id": pid, "user_id": user, "merchant_id": "m001", "paid_at": paid, "status": "success",
            "currency": "EUR", "channel": "app", "promotion_id": None,
            "lines": [{"line_no": n, "item_id": item, "category": None, "quantity": 1, "amount": amount}
                      for n, item in enumerate(items, start=1)], **fields}


def signed(sender: str, body: bytes, *, secret: str | None = None, private_pem: bytes | None = None,
           t: int | None = None) -> dict[str, str]:
    t = int(time.time()) if t is None else t
    sig = sign_hmac(bytes.fromhex(secret), t, body) if secret else sign_rsa(private_pem, t, body)
    return {"Behavior-Sender": sender, "Behavior-Signature": signature_header(t, sig),
            "Content-Type": "application/json"}


def encode(doc) -> bytes:
    return json.dumps(doc).encode()
