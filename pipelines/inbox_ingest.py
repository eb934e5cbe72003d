"""`behavior ingest --inbox`: move the notifications of the inbox into the lake.

The acknowledged lines go through the same path as a file (`pipelines.ingest.ingest`: the
validation again, the erasure check, the anti join against the lake's keys, one journaled
transaction), written for it as a Parquet file inside the inbox folder and removed after.
Then the lines are marked moved. A kill between the two leaves them unmarked: the next move
finds their keys in the lake and counts them as duplicates, so each acknowledged line is in
the lake exactly once. Lines the endpoint rejected go to the lake's quarantine
(`lake/_rejected/payments/`, source_file `inbox:<sender>`, source_row the inbox's seq).
Lines a published bundle holds are then pruned from the inbox (until then the API serves them
as live).
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import pyarrow as pa
import pyarrow.parquet as pq

from behavior.store.bundle import BundleError, read_current, read_manifest
from behavior.store.datahome import DataHome
from behavior.store.inbox import Inbox, inbox_path
from pipelines.lake import locked, transaction


def _micros(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


def ingest_inbox(home: DataHome, progress: Callable[[str], None] = lambda _: None, config: Any = None) -> dict:
    """Move the inbox into the lake; returns a report: lines read, stored, duplicates (in the
    lake already), rejected (at ingest, e.g. a user erased since), quarantined (rejected by the
    endpoint), pruned (held by the active bundle) and the ingest id."""
    from pipelines.ingest import IngestOptions, ingest

    started = time.perf_counter()
    rep: dict[str, Any] = {"ingest_id": None, "read": 0, "accepted": 0, "duplicates": 0, "rejected": 0,
                           "rejected_by_reason": {}, "quarantined": 0, "pruned": 0}
    if not inbox_path(home.root).exists():
        rep["seconds"] = 0.0
        return rep
    inbox = Inbox(home.root)
    try:
        lines, last = inbox.pending()
        if lines.num_rows:
            progress(f"moving {lines.num_rows:,} inbox lines into the lake")
            batch = inbox.path.parent / f"payments-inbox-{last}.parquet"
            try:
                _write_private(batch, lines)
                done = ingest(home, [batch], IngestOptions(table="payments"), progress=progress, config=config)
            finally:
                batch.unlink(missing_ok=True)
            inbox.mark_moved(last, done["ingest_id"], _micros(datetime.now(timezone.utc)))
            rep.update({k: done[k] for k in ("ingest_id", "read", "accepted", "duplicates", "rejected",
                                             "rejected_by_reason")})
        rejected, last_rejected = inbox.pending_rejected()
        if rejected:
            with locked(home, "ingest --inbox"), transaction(home.lake) as txn:
                pq.write_table(_quarantine(rejected, txn.id),
                               txn.path(f"_rejected/payments/part-{txn.id}-inbox.parquet"))
            inbox.mark_rejected_moved(last_rejected, _micros(datetime.now(timezone.utc)))
            rep["quarantined"] = len(rejected)
        rep["pruned"] = _prune(home, inbox)
    finally:
        inbox.close()
    rep["seconds"] = round(time.perf_counter() - started, 3)
    return rep


def _write_private(path: Path, table: pa.Table) -> None:
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
    pq.write_table(table, path)


def _quarantine(rows: list[dict], ingest_id: str) -> pa.Table:
    """The endpoint's rejected lines in the quarantine's columns."""
    n = len(rows)
    return pa.table({
        "table": pa.array(["payments"] * n, pa.string()),
        "source_file": pa.array([f"inbox:{r['sender']}" for r in rows], pa.string()),
        "source_row": pa.array([r["seq"] for r in rows], pa.int64()),
        "reason": pa.array([r["reason"] for r in rows], pa.string()),
        "detail": pa.array([r["detail"] for r in rows], pa.string()),
        "raw": pa.array([r["raw"] for r in rows], pa.string()),
        "ingest_id": pa.array([ingest_id] * n, pa.string()),
        "ingested_at": pa.array([datetime.fromtimestamp(r["received_at"] / 1e6, timezone.utc) for r in rows],
                                pa.timestamp("us", tz="UTC")),
    })


def _prune(home: DataHome, inbox: Inbox) -> int:
    """Drop the lines the active bundle holds (none if no bundle is published)."""
    version = read_current(home)
    try:
        manifest = read_manifest(home.bundles / version) if version else {}
        created = datetime.fromisoformat(manifest["created_at"])
        as_of = datetime.fromisoformat(manifest["as_of"])
    except (BundleError, KeyError, ValueError):
        return 0
    utc = [d if d.tzinfo else d.replace(tzinfo=timezone.utc) for d in (created, as_of)]
    return inbox.prune(_micros(utc[0]), _micros(utc[1]))


def purge_inbox(home: DataHome, key: bytes, erased: set[str]) -> int:
    """Delete the inbox lines of erased users (for `behavior forget`); how many went."""
    if not inbox_path(home.root).exists():
        return 0
    inbox = Inbox(home.root)
    try:
        return inbox.purge_erased(key, erased)
    finally:
        inbox.close()
