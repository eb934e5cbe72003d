"""The receiving side of signed payment notifications in one process: the senders, the
inbox, and the check of each line (`behavior.notifications`) before it is acknowledged."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from api.erasure import ErasureLog
from behavior.notifications import check_lines
from behavior.store.inbox import Inbox, reporting_currency
from behavior.store.senders import SenderBook

ERASED_DETAIL = "the user was erased (erasure log): their notifications are refused and their values not kept"


@dataclass(frozen=True)
class Receipt:
    accepted: int
    duplicates: int
    rejected: list[dict]    # payment_id, line_no, reason, detail


class Receiver:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.senders = SenderBook(data_dir)
        self.erasure = ErasureLog(data_dir)
        self._inbox: Inbox | None = None
        self._inbox_lock = threading.Lock()
        self._local = threading.local()

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

    def receive(self, rows: list[dict], sender: str) -> Receipt:
        """Check `rows` (from `behavior.notifications.parse_body`) and store them in the inbox;
        durable when it returns (blocking: run it off the event loop)."""
        now = datetime.now(timezone.utc)
        checked = check_lines(self._duckdb(), rows, reporting_currency(self.data_dir), now)
        accepted, rejected = checked.accepted, checked.rejected
        if accepted.num_rows:
            users = accepted.column("user_id").to_pylist()
            gone = self.erasure.erased_among(list(set(users)))
            if gone:
                hit = pc.is_in(accepted.column("user_id"), value_set=pa.array(sorted(gone), pa.string()))
                for pid, n in zip(*(accepted.filter(hit).column(c).to_pylist() for c in ("payment_id", "line_no"))):
                    rejected.append({"payment_id": pid, "line_no": n, "user_id": None, "reason": "erased_user",
                                     "detail": ERASED_DETAIL, "raw": None})
                accepted = accepted.filter(pc.invert(hit))
        stored = self.inbox.append(accepted, rejected, sender, int(time.time() * 1_000_000))
        return Receipt(stored.accepted, stored.duplicates + checked.duplicates,
                       [{k: r[k] for k in ("payment_id", "line_no", "reason", "detail")} for r in rejected])
