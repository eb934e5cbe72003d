"""Right to erasure: `behavior forget` removes users from every place under the data home.

The places (tests/e2e/test_forget.py checks each, then searches every file for the id):
- the lake: every file of a table with a `user_id` column (payments, users, assignments) that
  holds one of their rows is rewritten without them, in one lake transaction (a kill leaves all
  files old or all new);
- the quarantine (`lake/_rejected`): rejected rows whose source values or detail name the user,
  an id holding control characters naming the user it gives without them (`row_values`);
- every bundle, the active one and those kept for rollback: every per-user artifact of the
  bundle catalogue (`behavior.store.bundle.without_users`: the Parquet tables keyed by
  `user_id`, and the recommender's id map, purchased items, segments and factor rows). A bundle is
  rebuilt in `.forget-<version>`, verified, and swapped in by two renames; the next command
  finishes or undoes a swap that was cut short (`recover_rewrites`);
- what a killed command left: half-written bundles, spill and user-part files, the demo's input
  copies and the logs under the data home (`pipelines.forget_files`).
Users are matched by the keyed hash of the erasure log, so a user erased through the API, whose
id was never written down, is found as well; ids are compared in their stored form
(`behavior.ids.normalize_id`), and stored ids are trimmed the same way before they are hashed,
so rows stored before ingest trimmed every whitespace are found too. Aggregates (item
popularity, similarities, segment sizes, report figures) are kept: they hold no id. Raw input
files outside the data home are the caller's to delete.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from behavior.ids import control_characters, normalize_id, trim_sql, without_controls
from behavior.pii import erasure_hash, erasure_hash_sql
from behavior.sql_dialect import DUCKDB
from behavior.store import atomic, erasure_log
from behavior.store.bundle import recover_rewrites, without_users
from behavior.store.datahome import DataHome
from pipelines import forget_files
from pipelines.inbox_ingest import purge_inbox
from pipelines.lake import locked, table_files, transaction

_SPLIT = re.compile(r"[,;\t|]")
_QUOTED = re.compile(r"'([^']*)'")


def forget(home: DataHome, user_ids: list[str]) -> dict:
    """Record the users in the erasure log, then purge every logged user from the data home.

    The report counts what was removed where (`rows_matched`: rows of the lake and its
    quarantine), and how many of the given ids were found anywhere (`matched`; `unmatched_ids`
    lists the others): an id that matched nothing is recorded all the same (an erasure may come
    before the data), so later ingests reject its rows."""
    ids = sorted({normalize_id(u) for u in user_ids} - {""})
    matched: set[str] = set()
    with locked(home, "forget"):
        logged_before = erasure_log.hashes(home)
        hashes = erasure_log.record(home, ids, source="cli")
        report = purge(home, ids, matched)
        _mark_purged(home)
    report["users"] = len(ids)
    report["already_logged"] = sum(h in logged_before for h in hashes)
    report["matched"] = sum(h in matched for h in hashes)
    report["unmatched_ids"] = [u for u, h in zip(ids, hashes) if h not in matched]
    report["rows_matched"] = sum(report["lake_rows"].values()) + report["quarantine_rows"]
    return report


MARKER = ".erasure_purged"


def _mark_purged(home: DataHome) -> None:
    log = home.erasure_log
    if log.exists():
        atomic.write_bytes(home.root / MARKER, str(log.stat().st_size).encode())


def purge_if_needed(home: DataHome) -> dict | None:
    """`purge` if the erasure log grew since the last purge (the API appends to it); the caller
    holds the lock. `behavior run` calls this first, so no erased user reaches a bundle."""
    log = home.erasure_log
    marker = home.root / MARKER
    if not log.exists() or (marker.exists() and marker.read_text().strip() == str(log.stat().st_size)):
        recover_rewrites(home)      # (purge does this itself)
        return None
    report = purge(home)
    _mark_purged(home)
    return report


def purge(home: DataHome, given_ids: list[str] = (), matched: set[str] | None = None) -> dict:
    """Remove every user of the erasure log from every place under the data home (see the
    module's docstring). `given_ids` are ids in plain text (from `behavior forget`): logs can
    only be cleaned of those. The keyed hashes of the users found somewhere are added to
    `matched`. The caller holds the data home's lock. Idempotent."""
    report: dict = {"lake_rows": {}, "quarantine_rows": 0, "bundles": {}, "partial_bundles": [],
                    "demo_rows": {}, "log_lines": {}, "spill_kept": []}
    matched = set() if matched is None else matched
    recover_rewrites(home)
    report["partial_bundles"] = forget_files.remove_partial_bundles(home)
    report["spill_kept"] = forget_files.live_spill(home)
    report["log_lines"] = forget_files.scrub_logs(home, given_ids)
    key = erasure_log.secret(home)
    erased = erasure_log.hashes(home)
    if key is None or not erased:
        return report
    report["inbox_rows"] = purge_inbox(home, key, erased)
    if home.lake.exists():
        with transaction(home.lake) as txn:
            con = duckdb.connect()
            con.register("_erased", pa.table({"h": pa.array(sorted(erased), pa.string())}))
            for table in _user_tables(home.lake):
                report["lake_rows"][table] = _purge_table(con, home.lake, txn, table, key, matched)
            con.close()
            report["quarantine_rows"] = _purge_quarantine(home, txn, key, erased, matched)
    for folder in sorted(p for p in home.bundles.glob("*") if p.is_dir() and not p.name.startswith(".")) \
            if home.bundles.exists() else []:
        removed = without_users(folder, lambda ids: _erased_mask(ids, key, erased, matched), _now())
        if removed:
            report["bundles"][folder.name] = removed
    report["demo_rows"] = forget_files.purge_demo_input(home, lambda ids: _erased_mask(ids, key, erased, matched))
    return report


def _user_tables(lake: Path) -> list[str]:
    """The lake's tables with a `user_id` column (payments, users, assignments, and any later one)."""
    out = []
    for d in sorted(p for p in lake.iterdir() if p.is_dir() and not p.name.startswith("_")):
        files = table_files(lake, d.name)
        if files and "user_id" in pq.read_schema(files[0]).names:
            out.append(d.name)
    return out


def _purge_table(con, lake: Path, txn, table: str, key: bytes, matched: set[str]) -> int:
    files = table_files(lake, table)
    if not files:
        return 0
    listing = ", ".join(DUCKDB.literal(str(f)) for f in files)
    stored = trim_sql("user_id", DUCKDB.literal)   # ids stored untrimmed by an older ingest
    hits = con.execute(
        f"SELECT filename, user_id FROM read_parquet([{listing}], filename = true, hive_partitioning = false) "
        f"WHERE {erasure_hash_sql(key, stored)} IN (SELECT h FROM _erased) GROUP BY ALL").fetchall()
    if not hits:
        return 0
    ids = {u for _, u in hits}
    matched |= {erasure_hash(key, normalize_id(u)) for u in ids}
    removed = 0
    for i, name in enumerate(sorted({f for f, _ in hits})):
        f = Path(name)
        t = pq.ParquetFile(f).read()
        drop = pc.is_in(t.column("user_id"), value_set=pa.array(sorted(ids), pa.string()))
        kept = t.filter(pc.invert(drop))
        removed += t.num_rows - kept.num_rows
        if kept.num_rows:
            rel = f.relative_to(lake).parent / f"part-{txn.id}-forget-{i}.parquet"
            pq.write_table(kept, txn.path(str(rel)), compression="zstd")
        txn.delete(f)
    return removed


def _value_ids(text: str) -> set[str]:
    """The ids a quarantined value may hold, in stored form: the value, and each of its fields
    (split at , ; tab |) without quotes."""
    return {normalize_id(text), *(normalize_id(normalize_id(part).strip("\"'")) for part in _SPLIT.split(text))}


def row_values(raw: str | None, detail: str | None) -> set[str]:
    """The ids a quarantined row may name: those of the values of its `raw` JSON (for a malformed
    line, its fields) and of the values its `detail` quotes. A value holding control characters
    also names the ids it gives without them (`behavior.ids.without_controls`), whole and field
    by field: "u1\\x00", "\\x00u1" and "u\\x001" name "u1" (as "\\tu1" and "u1\\r" do in stored form),
    "u10\\x00" and "xu1\\x00" do not. A row is erased when it names an erased id."""
    values: list[str] = []
    if raw is not None:
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        values += [str(v) for v in (value.values() if isinstance(value, dict) else [value]) if v is not None]
    out: set[str] = set()
    for s in values:
        ids = _value_ids(s)
        if control_characters(s):
            ids |= _value_ids(without_controls(s)) | {without_controls(i) for i in ids}
        out |= ids
    for q in _QUOTED.findall(detail or ""):
        out.add(normalize_id(q))
        if control_characters(q):
            out.add(without_controls(q))
    return out


def _purge_quarantine(home: DataHome, txn, key: bytes, erased: set[str], matched: set[str]) -> int:
    removed = 0
    files = sorted(home.rejected.rglob("*.parquet")) if home.rejected.exists() else []
    for i, f in enumerate(files):
        t = pq.ParquetFile(f).read()
        details = t.column("detail").to_pylist() if "detail" in t.column_names else [None] * t.num_rows
        drop = []
        for raw, detail in zip(t.column("raw").to_pylist(), details):
            hits = {h for h in (erasure_hash(key, v) for v in row_values(raw, detail)) if h in erased}
            matched |= hits
            drop.append(bool(hits))
        if not any(drop):
            continue
        kept = t.filter(pa.array([not d for d in drop]))
        removed += t.num_rows - kept.num_rows
        if kept.num_rows:
            rel = f.relative_to(home.lake).parent / f"part-{txn.id}-forget-q{i}.parquet"
            pq.write_table(kept, txn.path(str(rel)))
        txn.delete(f)
    return removed


def _erased_mask(ids: list, key: bytes, erased: set[str], matched: set[str]) -> np.ndarray:
    """Which of `ids` are erased users (in stored form); their hashes are added to `matched`."""
    cache: dict[str, bool] = {}
    out = np.zeros(len(ids), dtype=bool)
    for i, u in enumerate(ids):
        if u is None:
            continue
        hit = cache.get(u)
        if hit is None:
            h = erasure_hash(key, normalize_id(u))
            hit = cache[u] = h in erased
            if hit:
                matched.add(h)
        out[i] = hit
    return out


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
