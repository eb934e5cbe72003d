"""The inbox: payment notifications acknowledged but not yet in the lake (`<data home>/inbox/`).

One SQLite database, `inbox/inbox.sqlite3`, in WAL mode with synchronous=FULL: a commit
returns only once the write-ahead log is on disk (fsync), so an acknowledged line survives
`kill -9` and a power cut; SQLite serialises the writers of every worker process.

Tables:
- `keys (payment_id, line_no)`: every line key ever acknowledged. Kept when lines leave
  (they hold no personal data), so a sender retrying for days gets `duplicate`, never a
  second copy. Keys already in the lake by another way (a file) are not in it: ingest's
  anti join against the lake drops those when the inbox is moved (`behavior ingest --inbox`).
- `lines`: the acknowledged, validated lines (canonical columns; amount as decimal text,
  times as microseconds since the epoch, UTC), `seq` in commit order (AUTOINCREMENT: never
  reused, so a reader's watermark `seq > n` sees each line once), `moved_at` once in the lake.
- `rejected`: lines refused by validation with ingest's reason codes and their values as
  JSON (card numbers masked; none at all for an erased user), moved to the lake's quarantine.

A line stays after it is moved until a published bundle holds it (`prune`): until then the
API serves it as live.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pyarrow as pa

from behavior.errors import BehaviorError
from behavior.ids import without_controls
from behavior.pii import erasure_hash
from behavior.schema import PAYMENTS
from behavior.store.datahome import DataHome

DEFAULT_CURRENCY = "EUR"
# A line moved into the lake up to this long after a bundle's created_at (a timestamp to the
# second) counts as held by that bundle.
CREATED_SLACK_US = 1_000_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (
    payment_id TEXT NOT NULL, line_no INTEGER NOT NULL, received_at INTEGER NOT NULL,
    PRIMARY KEY (payment_id, line_no)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS lines (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    payment_id TEXT NOT NULL, line_no INTEGER NOT NULL, user_id TEXT NOT NULL, merchant_id TEXT,
    item_id TEXT NOT NULL, category TEXT, quantity INTEGER, amount TEXT, currency TEXT,
    paid_at INTEGER NOT NULL, channel TEXT, status TEXT, promotion_id TEXT,
    sender TEXT NOT NULL, received_at INTEGER NOT NULL, moved_at INTEGER, ingest_id TEXT);
CREATE TABLE IF NOT EXISTS rejected (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    payment_id TEXT, line_no INTEGER, user_id TEXT, reason TEXT NOT NULL, detail TEXT, raw TEXT,
    sender TEXT NOT NULL, received_at INTEGER NOT NULL, moved_at INTEGER);
CREATE INDEX IF NOT EXISTS lines_pending ON lines (seq) WHERE moved_at IS NULL;
"""
COLUMNS = PAYMENTS.names    # the order of the canonical columns in `lines`
LIVE_COLUMNS = ("seq", "payment_id", "line_no", "user_id", "item_id", "category", "quantity", "amount", "paid_at", "status",
                "promotion_id", "moved_at")


def inbox_path(data_dir: Path) -> Path:
    return DataHome(data_dir).inbox


def reporting_currency(data_dir: Path) -> str:
    """The lake's reporting currency (`lake/_lake.json`), or the default of a new lake."""
    try:
        return str(json.loads(DataHome(data_dir).lake_meta.read_text()).get("currency") or DEFAULT_CURRENCY)
    except FileNotFoundError:
        return DEFAULT_CURRENCY


@dataclass(frozen=True)
class Appended:
    accepted: int
    duplicates: int
    duplicate_rows: list[int]       # positions in the table given of the lines already known


def _micros(column: pa.ChunkedArray) -> list[int]:
    return column.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()).to_pylist()


def _insert_keys(con: sqlite3.Connection, keys: list[tuple[str, int]], received_at_us: int) -> list[int]:
    """Record `keys` in `keys` (inside the caller's transaction); the positions of those known
    already. One statement for all when none is known (the common case), else one per key."""
    con.execute("SAVEPOINT new_keys")
    before = con.total_changes
    con.executemany("INSERT OR IGNORE INTO keys VALUES (?, ?, ?)", [(p, n, received_at_us) for p, n in keys])
    if con.total_changes - before == len(keys):
        con.execute("RELEASE new_keys")
        return []
    con.execute("ROLLBACK TO new_keys")
    con.execute("RELEASE new_keys")
    return [i for i, (p, n) in enumerate(keys)
            if con.execute("INSERT OR IGNORE INTO keys VALUES (?, ?, ?)", (p, n, received_at_us)).rowcount != 1]


class Inbox:
    """The data home's inbox. One connection per thread (SQLite's rule); safe across processes."""

    def __init__(self, data_dir: Path, *, create: bool = True) -> None:
        self.path = inbox_path(data_dir)
        self._local = threading.local()
        if create:
            self._create()

    def exists(self) -> bool:
        return self.path.exists()

    def _create(self) -> None:
        folder = self.path.parent
        if not folder.exists():
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not self.path.exists():
            try:   # made here with 0600: SQLite gives its -wal and -shm files the database's mode
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            except FileExistsError:
                pass
        con = self.connection()
        # WAL is a property of the database file, set once; SQLite answers a mode change while
        # another connection (another worker) holds a lock with "database is locked" at once,
        # without waiting, so it is retried here
        deadline = time.monotonic() + 30
        while True:
            try:
                if con.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    con.execute("PRAGMA journal_mode=WAL")
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        con.executescript(_SCHEMA)

    def connection(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            con = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=True)
            con.execute("PRAGMA synchronous=FULL")   # per connection: a commit fsyncs the WAL
            self._local.con = con
        return con

    def close(self) -> None:
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None

    # ------------------------------------------------------------ the endpoint

    def append(self, accepted: pa.Table, rejected: list[dict], sender: str | list[str],
               received_at_us: int) -> Appended:
        """Store the new lines of `accepted` (canonical payment lines; `sender` names their
        sender, or each line's) and the `rejected` lines (payment_id, line_no, user_id, reason,
        detail, raw, and their "sender" if given) in one transaction, durable when it returns.
        A line whose key the inbox has seen is not stored again: a duplicate."""
        senders = [sender] * accepted.num_rows if isinstance(sender, str) else sender
        values = {n: accepted.column(n).to_pylist() for n in COLUMNS if n not in ("amount", "paid_at")}
        values["amount"] = [None if a is None else str(a) for a in accepted.column("amount").to_pylist()]
        values["paid_at"] = _micros(accepted.column("paid_at"))
        keys = list(zip(values["payment_id"], values["line_no"]))
        con = self.connection()
        con.execute("BEGIN IMMEDIATE")
        try:
            dup_rows = _insert_keys(con, keys, received_at_us)
            dups = set(dup_rows)
            new = [row + (received_at_us,) for i, row in enumerate(zip(*(values[n] for n in COLUMNS), senders))
                   if i not in dups]
            if new:
                con.executemany(f"INSERT INTO lines ({', '.join(COLUMNS)}, sender, received_at) "
                                f"VALUES ({', '.join('?' * (len(COLUMNS) + 2))})", new)
            if rejected:
                con.executemany("INSERT INTO rejected (payment_id, line_no, user_id, reason, detail, raw, sender, "
                                "received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                                [(r["payment_id"], r["line_no"], r.get("user_id"), r["reason"], r["detail"],
                                  r.get("raw"), r.get("sender", sender), received_at_us) for r in rejected])
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return Appended(len(new), len(dup_rows), dup_rows)

    # ------------------------------------------------------------ into the lake

    def pending(self) -> tuple[pa.Table, int]:
        """(the lines not yet moved to the lake, as canonical payment lines; the last seq among them)."""
        con = self.connection()
        rows = con.execute(f"SELECT seq, {', '.join(COLUMNS)} FROM lines WHERE moved_at IS NULL ORDER BY seq").fetchall()
        last = rows[-1][0] if rows else 0
        cols = list(zip(*rows)) if rows else [()] * (len(COLUMNS) + 1)
        arrays = {}
        for n, values in zip(COLUMNS, cols[1:]):
            typ = PAYMENTS.column(n).arrow_type
            if n == "amount":
                arrays[n] = pa.array([None if v is None else Decimal(v) for v in values], typ)
            elif n == "paid_at":
                arrays[n] = pa.array(values, pa.int64()).cast(typ)
            else:
                arrays[n] = pa.array(values, typ)
        return pa.table(arrays, schema=PAYMENTS.arrow_schema), last

    def mark_moved(self, last_seq: int, ingest_id: str, moved_at_us: int) -> None:
        self.connection().execute("UPDATE lines SET moved_at = ?, ingest_id = ? WHERE seq <= ? AND moved_at IS NULL",
                                  (moved_at_us, ingest_id, last_seq))

    def pending_rejected(self) -> tuple[list[dict], int]:
        con = self.connection()
        cur = con.execute("SELECT seq, payment_id, line_no, reason, detail, raw, sender, received_at FROM rejected "
                          "WHERE moved_at IS NULL ORDER BY seq")
        names = [d[0] for d in cur.description]
        rows = [dict(zip(names, r)) for r in cur.fetchall()]
        return rows, (rows[-1]["seq"] if rows else 0)

    def mark_rejected_moved(self, last_seq: int, moved_at_us: int) -> None:
        self.connection().execute("UPDATE rejected SET moved_at = ? WHERE seq <= ? AND moved_at IS NULL",
                                  (moved_at_us, last_seq))

    def prune(self, bundle_created_us: int, bundle_as_of_us: int) -> int:
        """Drop lines a bundle holds (moved into the lake before it was made, paid before its
        as_of) and rejected lines in the quarantine; returns how many lines went."""
        con = self.connection()
        cur = con.execute("DELETE FROM lines WHERE moved_at IS NOT NULL AND moved_at < ? AND paid_at < ?",
                          (bundle_created_us + CREATED_SLACK_US, bundle_as_of_us))
        con.execute("DELETE FROM rejected WHERE moved_at IS NOT NULL")
        return cur.rowcount

    # ------------------------------------------------------------ erasure

    def purge_erased(self, secret: bytes, hashes: set[str] | frozenset[str]) -> int:
        """Delete every line (and rejected line) of a user whose keyed hash is in `hashes`, in
        one transaction (a kill leaves every line or none of them); returns how many rows went.
        A rejected line's id holding control characters is the id it gives without them
        (`behavior.ids.without_controls`), as in the lake's quarantine. The keys stay: they
        name no one."""
        if not hashes:
            return 0
        con = self.connection()
        gone = 0
        # zeroes the deleted rows' bytes in the pages instead of only unlinking them
        con.execute("PRAGMA secure_delete=ON")
        con.execute("BEGIN IMMEDIATE")
        try:
            for table, forms in (("lines", lambda u: (u,)), ("rejected", lambda u: (u, without_controls(u)))):
                users = [u for (u,) in con.execute(f"SELECT DISTINCT user_id FROM {table} WHERE user_id IS NOT NULL")]
                erased = [u for u in users if any(erasure_hash(secret, f) in hashes for f in forms(u))]
                for u in erased:
                    gone += con.execute(f"DELETE FROM {table} WHERE user_id = ?", (u,)).rowcount
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        if gone:
            # the write-ahead log still holds the rows as they were inserted: copy it into the
            # database (zeroed pages) and truncate it
            busy, _, _ = con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if busy:
                raise BehaviorError("the inbox's write-ahead log could not be truncated (a reader held "
                                               "it too long); run `behavior forget` again")
        return gone

    # ------------------------------------------------------------ the live view

    def lines_after(self, seq: int) -> list[tuple]:
        """LIVE_COLUMNS of the lines committed after `seq`, in seq order."""
        return self.connection().execute(
            f"SELECT {', '.join(LIVE_COLUMNS)} FROM lines WHERE seq > ? ORDER BY seq", (seq,)).fetchall()

    def moved_since(self, seq_upto: int) -> list[tuple[int, int]]:
        """(seq, moved_at) of the moved lines up to `seq_upto`."""
        return self.connection().execute(
            "SELECT seq, moved_at FROM lines WHERE moved_at IS NOT NULL AND seq <= ?", (seq_upto,)).fetchall()
