"""The receiving side of signed payment notifications in one process: the senders, the
inbox, and the check of each line (`behavior.notifications`) before it is acknowledged.

Lines in the common clean form are checked in Python (`behavior.notification_fast`, the same
stored values as validation); a batch with any other line is validated the full way
(`behavior.notifications.check_lines`, whose fixed cost, the planning of the validation SQL,
dominates a small request). Requests that arrive while a batch is being checked and stored
wait and go together in the next batch: one check and one commit, one fsync, for all of them
(group commit). A request is
answered only once its batch is durable. Requests whose lines share a key never go in the
same batch, so each line is a duplicate or not exactly as if the requests came one by one.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from behavior.store.erasure_log import ErasureLog
from behavior.ids import normalize_id, without_controls
from behavior.notification_fast import check_clean_lines
from behavior.notifications import check_lines
from behavior.store.inbox import Inbox, reporting_currency
from behavior.store.senders import SenderBook

ERASED_DETAIL = "the user was erased (erasure log): their notifications are refused and their values not kept"
BATCH_LINES = 5000     # at most this many lines per batch (a request of more goes alone)


@dataclass(frozen=True)
class Receipt:
    accepted: int
    duplicates: int
    rejected: list[dict]    # payment_id, line_no, reason, detail


@dataclass
class _Request:
    rows: list[dict]
    sender: str
    future: asyncio.Future
    keys: set[tuple[str, int]]


def _key(row: dict) -> tuple[str, int]:
    return normalize_id(row["payment_id"] or ""), int(row["line_no"])


class Receiver:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.senders = SenderBook(data_dir)
        self.erasure = ErasureLog(data_dir)
        self._inbox: Inbox | None = None
        self._inbox_lock = threading.Lock()
        self._local = threading.local()
        self._queue: list[_Request] = []
        self._draining = False
        self.commits = 0        # batches stored (one check and one fsync each)
        self.full_checks = 0    # batches validated the full way (a line the fast path does not cover)

    @property
    def inbox(self) -> Inbox:
        if self._inbox is None:
            with self._inbox_lock:
                if self._inbox is None:
                    self._inbox = Inbox(self.data_dir)
        return self._inbox

    def _duckdb(self) -> duckdb.DuckDBPyConnection:
        con = getattr(self._local, "duckdb", None)
        if con is None:
            con = duckdb.connect(config={"threads": 1})
            self._local.duckdb = con
        return con

    # ------------------------------------------------------------ batching (on the event loop)

    async def submit(self, rows: list[dict], sender: str) -> Receipt:
        """Check and store `rows` with the requests waiting beside them; the receipt once durable."""
        req = _Request(rows, sender, asyncio.get_running_loop().create_future(), {_key(r) for r in rows})
        self._queue.append(req)
        if not self._draining:
            self._draining = True
            asyncio.create_task(self._drain())
        return await req.future

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch, keys, lines, rest = [], set(), 0, []
                for req in self._queue:
                    if batch and (lines + len(req.rows) > BATCH_LINES or not keys.isdisjoint(req.keys)):
                        rest.append(req)
                        continue
                    batch.append(req)
                    keys |= req.keys
                    lines += len(req.rows)
                self._queue = rest
                try:
                    receipts = await asyncio.to_thread(self.receive_many, [(r.rows, r.sender) for r in batch])
                except Exception as exc:  # every request of the batch gets the error (a 500, logged)
                    for req in batch:
                        if not req.future.done():
                            req.future.set_exception(exc)
                    continue
                for req, receipt in zip(batch, receipts):
                    if not req.future.done():
                        req.future.set_result(receipt)
        finally:
            self._draining = False

    # ------------------------------------------------------------ checking and storing (blocking)

    def receive(self, rows: list[dict], sender: str) -> Receipt:
        """Check `rows` (from `behavior.notifications.parse_body`) and store them in the inbox;
        durable when it returns (blocking: run it off the event loop)."""
        return self.receive_many([(rows, sender)])[0]

    def receive_many(self, requests: list[tuple[list[dict], str]]) -> list[Receipt]:
        """`receive` for several requests with one validation and one commit when each stored
        line can be traced back to its request (always, unless validation found exact copies);
        else one request at a time."""
        if len(requests) > 1:
            done = self._store(requests)
            if done is not None:
                return done
        return [receipt for r in requests for receipt in self._store([r])]

    def _check(self, rows: list[dict]) -> tuple[pa.Table, list[dict], int, list[int]]:
        """(accepted, rejected, exact copies in the input, the input row of each accepted row;
        [] when copies make that ambiguous). Validation keeps the input's order."""
        currency, now = reporting_currency(self.data_dir), datetime.now(timezone.utc)
        checked = check_clean_lines(rows, currency, now)
        if checked is None:
            self.full_checks += 1
            checked = check_lines(self._duckdb(), rows, currency, now)
        accepted, rejected = checked.accepted, self._erased_refused(checked.rejected)
        bad = {r["_row"] for r in rejected}
        positions = [i for i in range(len(rows)) if i not in bad] if checked.duplicates == 0 else []
        if accepted.num_rows:
            gone = self.erasure.erased_among(list(set(accepted.column("user_id").to_pylist())))
            if gone:
                hit = pc.is_in(accepted.column("user_id"), value_set=pa.array(sorted(gone), pa.string()))
                erased = accepted.filter(hit)
                for j, (pid, n) in enumerate(zip(erased.column("payment_id").to_pylist(),
                                                 erased.column("line_no").to_pylist())):
                    row = [p for p, h in zip(positions, hit.to_pylist()) if h][j] if positions else -1
                    rejected.append({"payment_id": pid, "line_no": n, "user_id": None, "reason": "erased_user",
                                     "detail": ERASED_DETAIL, "raw": None, "_row": row})
                keep = pc.invert(hit)
                positions = [p for p, k in zip(positions, keep.to_pylist()) if k]
                accepted = accepted.filter(keep)
        return accepted, rejected, checked.duplicates, positions

    def _erased_refused(self, rejected: list[dict]) -> list[dict]:
        """The rejected lines as the inbox keeps them: with their values, but those whose id names
        an erased user, in stored form or without its control characters (`without_controls`, as
        `behavior forget` reads the quarantine), refused as erased_user with nothing kept, as the
        accepted lines of erased users are."""
        forms = {u: {u, without_controls(u)} - {""} for u in {r["user_id"] for r in rejected if r["user_id"]}}
        gone = self.erasure.erased_among(sorted(set().union(*forms.values()))) if forms else set()
        if not gone:
            return rejected
        return [{**r, "user_id": None, "reason": "erased_user", "detail": ERASED_DETAIL, "raw": None}
                if r["user_id"] and forms[r["user_id"]] & gone else r for r in rejected]

    def _store(self, requests: list[tuple[list[dict], str]]) -> list[Receipt] | None:
        """Check and store the requests together; None (nothing stored) if more than one and
        their accepted lines cannot be traced back to them."""
        rows = [row for r, _ in requests for row in r]
        owner = [k for k, (r, _) in enumerate(requests) for _ in r]
        accepted, rejected, copies, positions = self._check(rows)
        many = len(requests) > 1
        traced = len(positions) == accepted.num_rows and all(
            _key(rows[p]) == (pid, n) for p, pid, n in zip(positions, accepted.column("payment_id").to_pylist(),
                                                          accepted.column("line_no").to_pylist()))
        if many and (copies or not traced):
            return None
        for r in rejected:
            r["sender"] = requests[owner[r["_row"]] if many else 0][1]
        senders = [requests[owner[p]][1] for p in positions] if many else requests[0][1]
        stored = self.inbox.append(accepted, rejected, senders, int(time.time() * 1_000_000))
        self.commits += 1
        if not many:
            return [Receipt(stored.accepted, stored.duplicates + copies, [_public(r) for r in rejected])]
        dups = [0] * len(requests)
        for i in stored.duplicate_rows:
            dups[owner[positions[i]]] += 1
        lines = [0] * len(requests)
        for p in positions:
            lines[owner[p]] += 1
        return [Receipt(lines[k] - dups[k], dups[k], [_public(r) for r in rejected if owner[r["_row"]] == k])
                for k in range(len(requests))]


def _public(r: dict) -> dict:
    return {f: r[f] for f in ("payment_id", "line_no", "reason", "detail")}
