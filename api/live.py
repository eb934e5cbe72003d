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
from collections import ChainMap
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

from behavior.store.erasure_log import ErasureLog
from behavior.store.inbox import CREATED_SLACK_US, Inbox, inbox_path

log = logging.getLogger("api.live")
POLL_S = 0.1
MERGE_AT = 4096     # users in `recent` below which it is never merged into `base`


class LiveLine(NamedTuple):
    """One live payment line, as `lines` gives it. The state keeps each line as a plain tuple of
    these fields and each user's lines as a tuple of them: tuples of plain values leave the
    garbage collector's view, so a full collection does not walk a day of notifications
    (a million objects cost it about a second of CPU, holding the GIL)."""

    seq: int
    payment_id: str
    line_no: int
    item_id: str
    category: str | None
    quantity: int | None
    amount: float | None
    paid_at_us: int
    status: str
    promotion_id: str | None
    moved_at_us: int | None


_ITEM, _QUANTITY, _STATUS = (LiveLine._fields.index(f) for f in ("item_id", "quantity", "status"))
Lines = tuple[tuple, ...]   # a user's lines: plain tuples in LiveLine's field order


class _LinesView(Mapping[str, list[LiveLine]]):
    """user -> LiveLine list over (recent, base), read-only."""

    def __init__(self, recent: dict[str, Lines], base: dict[str, Lines]) -> None:
        self._map = ChainMap(recent, base)

    def __getitem__(self, user_id: str) -> list[LiveLine]:
        return [LiveLine._make(t) for t in self._map[user_id]]

    def __iter__(self) -> Iterator[str]:
        return iter(self._map)

    def __len__(self) -> int:
        return len(self._map)


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
        # (base, recent): a user's lines are in recent if it has them, else in base
        self._view: tuple[dict[str, Lines], dict[str, Lines]] = ({}, {})
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
                # the file may be a moment old, made by a worker that has not yet written the
                # schema: opening it as its maker does (WAL, CREATE TABLE IF NOT EXISTS) never
                # reads a table that is not there yet
                self._inbox = Inbox(self.data_dir)
            key = None if bundle is None else (bundle.version, _micros(bundle.created_at), _micros(bundle.as_of))
            base, recent = self._view
            if key != self._bundle_key:
                base, recent, self._watermark = {}, {}, 0
            rows = self._inbox.lines_after(self._watermark)
            users = {r[3] for r in rows}
            if rows or key != self._bundle_key:
                # Readers keep the dicts they took, so a look makes new ones: a new `recent` with
                # new lists for the users that get lines, merged into a new `base` only once it
                # holds a quarter as many users (copying every user's entry on each look made a
                # look cost the whole live state, tens of ms with a day of new users)
                added: dict[str, list[tuple]] = {u: [] for u in users}
                for seq, payment_id, line_no, user, item, category, qty, amount, paid, status, promo, moved in rows:
                    if key is not None and moved is not None and moved < key[1] + CREATED_SLACK_US and paid < key[2]:
                        continue   # the bundle holds it
                    added[user].append((seq, payment_id, line_no, item, category, qty,
                                        None if amount is None else float(amount), paid, status or "success", promo,
                                        moved))
                recent = dict(recent)
                for u, new in added.items():
                    lines = (recent[u] if u in recent else base.get(u, ())) + tuple(new)
                    if lines or u in base:
                        recent[u] = lines
                    else:
                        recent.pop(u, None)   # every line of the user is held by the bundle
                if len(recent) > max(MERGE_AT, len(base) // 4):
                    base, recent = {**base, **recent}, {}
                if rows:
                    self._watermark = rows[-1][0]
            self._bundle_key = key
            self._view = self._drop_erased(base, recent, users)   # the swap: one reference assignment

    def _drop_erased(self, base: dict[str, Lines], recent: dict[str, Lines],
                     new_users: set[str]) -> tuple[dict[str, Lines], dict[str, Lines]]:
        """(base, recent) without erased users: all users are checked when the log changed, else the new ones."""
        _, logged = self.erasure.hashes()
        check = list({*base, *recent}) if logged != self._erased_stamp else [u for u in new_users if u in recent]
        self._erased_stamp = logged
        gone = self.erasure.erased_among(check) if check else set()
        if not gone:
            return base, recent
        return ({u: v for u, v in base.items() if u not in gone}, {u: v for u, v in recent.items() if u not in gone})

    # ------------------------------------------------------------ what the routes ask

    def _lines(self, user_id: str) -> Lines:
        base, recent = self._view
        found = recent.get(user_id)
        return base.get(user_id, ()) if found is None else found

    def lines(self, user_id: str) -> list[LiveLine]:
        return [LiveLine._make(t) for t in self._lines(user_id)]

    def all_lines(self) -> Mapping[str, list[LiveLine]]:
        """Every user's live lines (a read-only view: neither of its dicts changes after a look)."""
        base, recent = self._view
        return _LinesView(recent, base)

    def purchased_items(self, user_id: str) -> list[str]:
        """Item ids of the user's live successful purchases (one per unit bought)."""
        out = []
        for line in self._lines(user_id):   # per GET recommendations: the tuples as they are
            if line[_STATUS] == "success":
                out += [line[_ITEM]] * max(1, line[_QUANTITY] or 1)
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


class PromotionMonitor:
    """A running promotion's arms so far: the lake's in-window payments (re-read when the lake
    changes) plus the live lines not yet in it, each line counted once by its key."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._cache: dict[str, tuple[tuple, Any]] = {}
        self._lock = threading.Lock()

    def experiment(self, promotion_id: str):
        from behavior.store.experiments import read_experiment, stamp

        now_stamp = stamp(self.data_dir)
        with self._lock:
            hit = self._cache.get(promotion_id)
            if hit is None or hit[0] != now_stamp:
                hit = (now_stamp, read_experiment(self.data_dir, promotion_id))
                self._cache[promotion_id] = hit
            return hit[1]

    def summary(self, promotion_id: str, live: LiveState, now: datetime | None = None) -> dict[str, Any] | None:
        """Users, conversions and revenue by arm with anytime-valid intervals; None if unknown.
        Blocking (DuckDB on a changed lake): run it off the event loop."""
        import numpy as np

        from behavior.experiment_stats import confidence_sequence

        exp = self.experiment(promotion_id)
        if exp is None:
            return None
        now = now or datetime.now(timezone.utc)
        start, end = _micros(exp.starts_at), _micros(exp.ends_at)
        paid = dict(exp.paid)
        live_lines = 0
        everyone = live.all_lines()
        for user in everyone:
            if user not in exp.arms:
                continue
            for ln in everyone[user]:
                if ln.status == "success" and start <= ln.paid_at_us < end and (ln.payment_id, ln.line_no) not in paid:
                    paid[(ln.payment_id, ln.line_no)] = (user, ln.amount or 0.0)
                    live_lines += 1
        arms = {u: g for u, g in exp.arms.items() if u not in self._erased(list(exp.arms))}
        revenue: dict[str, float] = {}
        for user, amount in paid.values():
            if user in arms:
                revenue[user] = revenue.get(user, 0.0) + amount
        out: dict[str, Any] = {}
        outcomes = {}
        for arm in ("treatment", "control"):
            users = [u for u, g in arms.items() if g == arm]
            spend = np.array([revenue.get(u, 0.0) for u in users])
            converted = np.array([u in revenue for u in users], float)
            outcomes[arm] = (converted, spend)
            out[arm] = {"users": len(users), "conversions": int(converted.sum()),
                        "conversion_rate": round(float(converted.mean()), 6) if users else None,
                        "revenue": round(float(spend.sum()), 2),
                        "revenue_per_user": round(float(spend.mean()), 4) if users else None}
        return {"promotion_id": promotion_id, "name": exp.name,
                "starts_at": _iso(start), "ends_at": _iso(end), "at": _iso(_micros(now)),
                "running": start <= _micros(now) < end, "arms": out, "live_lines": live_lines,
                "conversion": confidence_sequence(outcomes["treatment"][0], outcomes["control"][0]),
                "revenue_per_user": confidence_sequence(outcomes["treatment"][1], outcomes["control"][1])}

    def _erased(self, users: list[str]) -> set[str]:
        from behavior.store.erasure_log import ErasureLog

        return ErasureLog(self.data_dir).erased_among(users)
