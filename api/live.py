"""Live state of one worker: the payment lines acknowledged since the active bundle.

Every worker reads the inbox (`behavior.store.inbox`) on its own: a background task looks
for lines committed after its watermark (`seq`) every POLL_S, so a line acknowledged by any
worker is served by every worker well within a second. A line is live for a bundle unless
the bundle holds it: moved into the lake before the bundle was made and paid before its
as_of. On a bundle swap the worker re-reads the inbox from the start (lines moved since are
then known), which drops what the new bundle holds. Users of the erasure log are dropped
as soon as the log changes.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from api.erasure import ErasureLog
from behavior.store.inbox import CREATED_SLACK_US, Inbox, inbox_path

log = logging.getLogger("api.live")
POLL_S = 0.1


@dataclass(frozen=True)
class LiveLine:
    seq: int
    payment_id: str
    item_id: str
    category: str | None
    quantity: int | None
    amount: float | None
    paid_at_us: int
    status: str
    promotion_id: str | None
    moved_at_us: int | None


def _micros(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1_000_000)


def _iso(us: int) -> str:
    return datetime.fromtimestamp(us / 1e6, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LiveState:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.erasure = ErasureLog(data_dir)
        self._inbox: Inbox | None = None
        self._watermark = 0
        self._by_user: dict[str, list[LiveLine]] = {}
        self._bundle_key: tuple[str, int, int] | None = None   # version, created (us), as_of (us)
        self._erased_stamp: frozenset[str] = frozenset()
        self._lock = threading.Lock()

    # ------------------------------------------------------------ reading the inbox

    def refresh(self, bundle: Any) -> None:
        """Take the lines committed since the last look (all of them after a bundle swap).
        Blocking (SQLite): the poller runs it off the event loop."""
        with self._lock:
            if self._inbox is None:
                if not inbox_path(self.data_dir).exists():
                    return
                self._inbox = Inbox(self.data_dir, create=False)
            key = None if bundle is None else (bundle.version, _micros(bundle.created_at), _micros(bundle.as_of))
            by_user = self._by_user
            if key != self._bundle_key:
                by_user, self._watermark = {}, 0
            rows = self._inbox.lines_after(self._watermark)
            users = {r[2] for r in rows}
            if rows or key != self._bundle_key:
                by_user = {u: list(v) for u, v in by_user.items()}   # readers keep the dict they took
                for seq, payment_id, user, item, category, qty, amount, paid, status, promo, moved in rows:
                    if key is not None and moved is not None and moved < key[1] + CREATED_SLACK_US and paid < key[2]:
                        continue   # the bundle holds it
                    by_user.setdefault(user, []).append(LiveLine(
                        seq, payment_id, item, category, qty, None if amount is None else float(amount), paid,
                        status or "success", promo, moved))
                if rows:
                    self._watermark = rows[-1][0]
            self._bundle_key = key
            self._by_user = self._drop_erased(by_user, users)   # the swap: one reference assignment

    def _drop_erased(self, by_user: dict[str, list[LiveLine]], new_users: set[str]) -> dict[str, list[LiveLine]]:
        """`by_user` without erased users: all users are checked when the log changed, else the new ones."""
        _, logged = self.erasure.hashes()
        check = list(by_user) if logged != self._erased_stamp else [u for u in new_users if u in by_user]
        self._erased_stamp = logged
        gone = self.erasure.erased_among(check) if check else set()
        return {u: v for u, v in by_user.items() if u not in gone} if gone else by_user

    # ------------------------------------------------------------ what the routes ask

    def lines(self, user_id: str) -> list[LiveLine]:
        return self._by_user.get(user_id, [])

    def all_lines(self) -> dict[str, list[LiveLine]]:
        return self._by_user

    def purchased_items(self, user_id: str) -> list[str]:
        """Item ids of the user's live successful purchases (one per unit bought)."""
        out = []
        for line in self.lines(user_id):
            if line.status == "success":
                out += [line.item_id] * max(1, line.quantity or 1)
        return out

    def profile(self, user_id: str, row: dict[str, Any] | None, as_of: datetime,
                now: datetime | None = None) -> dict[str, Any] | None:
        """The bundle's profile row (None: not in the bundle) with the live lines folded in,
        and `live_since` saying what changed; the row as it is if nothing is live."""
        lines = self.lines(user_id)
        if not lines:
            return row
        now = now or datetime.now(timezone.utc)
        out = dict(row) if row is not None else {"user_id": user_id}
        bought = [ln for ln in lines if ln.status == "success"]
        payments = {ln.payment_id for ln in bought}
        spend = sum(ln.amount for ln in bought if ln.amount is not None)
        net = sum(ln.amount for ln in lines if ln.amount is not None and ln.status in ("success", "refund"))
        if bought:
            last_us = max(ln.paid_at_us for ln in bought)
            last = _iso(last_us)
            if out.get("last_purchase_at") is None or out["last_purchase_at"] < last:
                out["last_purchase_at"] = last
                out["recency_days"] = max(0.0, (_micros(now) - last_us) / 86_400e6)
            first = _iso(min(ln.paid_at_us for ln in bought))
            if out.get("first_purchase_at") is None or out["first_purchase_at"] > first:
                out["first_purchase_at"] = first
        for field, delta in (("n_payments", len(payments)), ("total_spend", spend), ("net_spend", net)):
            base = out.get(field)
            if delta or base is not None:
                value = (base or 0) + delta
                out[field] = round(value, 2) if isinstance(value, float) and math.isfinite(value) else value
        out["live_since"] = {"since": as_of.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                             "payments": len(payments), "lines": len(lines), "net_spend": round(net, 2),
                             "last_paid_at": _iso(max(ln.paid_at_us for ln in lines)),
                             "items": sorted({ln.item_id for ln in bought})}
        return out


async def poll_live(live: LiveState, serving: Any, interval_s: float = POLL_S) -> None:
    """Keep `live` up to date with the inbox and the active bundle, every `interval_s`."""
    while True:
        try:
            await asyncio.to_thread(live.refresh, serving.bundle)
        except Exception:  # the poller must survive anything (a locked or damaged inbox): next round
            log.exception("reading the inbox for live state failed")
        await asyncio.sleep(interval_s)
