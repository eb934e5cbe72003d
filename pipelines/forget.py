"""Right to erasure: `behavior forget` removes users from everything under the data home.

What is rewritten (users are matched by the keyed hash of the erasure log, so a user erased
through the API, whose id was never written down, is found as well):
- the lake: every file of `payments`, `users` and `assignments` holding one of their rows is
  rewritten without them, in one lake transaction (a kill leaves all files old or all new);
- the quarantine: rejected rows whose source values name the user;
- every bundle, the active one and those kept for rollback: each Parquet file with a
  `user_id` column, and the recommender's id map, seen items, segments and factor rows.
  A bundle is rebuilt in `.forget-<version>`, verified, and swapped in by two renames; the
  next command finishes or undoes a swap that was cut short (`recover_bundles`).
Aggregates (item popularity, similarities, segment sizes, report figures) are kept: they
hold no id. Raw input files outside the data home are the caller's to delete.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import scipy.sparse as sp

from behavior.pii import erasure_hash, erasure_hash_sql
from behavior.sql_dialect import DUCKDB
from pipelines import atomic, erasure_log
from pipelines.datahome import DataHome
from pipelines.lake import locked, table_files, transaction
from pipelines.publish import MANIFEST, sha256, verify

USER_TABLES = ("payments", "users", "assignments")
_SPLIT = re.compile(r"[,;\t|]")


def forget(home: DataHome, user_ids: list[str]) -> dict:
    """Record the users in the erasure log, then purge every logged user from the data home."""
    ids = sorted({u.strip() for u in user_ids if u and u.strip()})
    with locked(home, "forget"):
        erasure_log.record(home, ids, source="cli")
        report = purge(home, set(ids))
        _mark_purged(home)
    report["users"] = len(ids)
    return report


MARKER = ".erasure_purged"


def _mark_purged(home: DataHome) -> None:
    log = erasure_log.log_path(home)
    if log.exists():
        atomic.write_bytes(home.root / MARKER, str(log.stat().st_size).encode())


def purge_if_needed(home: DataHome) -> dict | None:
    """`purge` if the erasure log grew since the last purge (the API appends to it); the caller
    holds the lock. `behavior run` calls this first, so no erased user reaches a bundle."""
    log = erasure_log.log_path(home)
    marker = home.root / MARKER
    if not log.exists() or (marker.exists() and marker.read_text().strip() == str(log.stat().st_size)):
        recover_bundles(home)      # (purge does this itself)
        return None
    report = purge(home)
    _mark_purged(home)
    return report


def purge(home: DataHome, known_ids: set[str] = frozenset()) -> dict:
    """Remove every user of the erasure log from the lake, the quarantine and the bundles.
    The caller holds the data home's lock. Idempotent."""
    report: dict = {"lake_rows": {}, "quarantine_rows": 0, "bundles": {}}
    recover_bundles(home)
    key = erasure_log.secret(home)
    erased = erasure_log.hashes(home)
    if key is None or not erased:
        return report
    from pipelines.inbox_ingest import purge_inbox

    report["inbox_rows"] = purge_inbox(home, key, erased)
    found: set[str] = set(known_ids)
    if home.lake.exists():
        with transaction(home.lake) as txn:
            con = duckdb.connect()
            con.register("_erased", pa.table({"h": pa.array(sorted(erased), pa.string())}))
            for table in USER_TABLES:
                report["lake_rows"][table] = _purge_table(con, home.lake, txn, table, key, found)
            con.close()
            report["quarantine_rows"] = _purge_quarantine(home, txn, key, erased)
    for folder in sorted(p for p in home.bundles.glob("*") if p.is_dir() and not p.name.startswith(".")) \
            if home.bundles.exists() else []:
        removed = _purge_bundle(folder, key, erased)
        if removed:
            report["bundles"][folder.name] = removed
    return report


def _purge_table(con, lake: Path, txn, table: str, key: bytes, found: set[str]) -> int:
    files = table_files(lake, table)
    if not files:
        return 0
    listing = ", ".join(DUCKDB.literal(str(f)) for f in files)
    hits = con.execute(
        f"SELECT filename, user_id FROM read_parquet([{listing}], filename = true, hive_partitioning = false) "
        f"WHERE {erasure_hash_sql(key, 'user_id')} IN (SELECT h FROM _erased) GROUP BY ALL").fetchall()
    if not hits:
        return 0
    ids = {u for _, u in hits}
    found |= ids
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


def _raw_values(raw: str | None) -> set[str]:
    """The values a quarantined row's `raw` JSON holds, and for a malformed line its fields."""
    if raw is None:
        return set()
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    values = value.values() if isinstance(value, dict) else [value]
    out = set()
    for v in values:
        if v is None:
            continue
        s = str(v)
        out.add(s.strip())
        out.update(part.strip().strip("\"'") for part in _SPLIT.split(s))
    return out


def _purge_quarantine(home: DataHome, txn, key: bytes, erased: set[str]) -> int:
    removed = 0
    for i, f in enumerate(sorted(home.rejected.rglob("*.parquet")) if home.rejected.exists() else []):
        t = pq.ParquetFile(f).read()
        drop = [any(erasure_hash(key, v) in erased for v in _raw_values(raw)) for raw in t.column("raw").to_pylist()]
        if not any(drop):
            continue
        kept = t.filter(pa.array([not d for d in drop]))
        removed += t.num_rows - kept.num_rows
        if kept.num_rows:
            rel = f.relative_to(home.lake).parent / f"part-{txn.id}-forget-q{i}.parquet"
            pq.write_table(kept, txn.path(str(rel)))
        txn.delete(f)
    return removed


def _erased_mask(ids: list, key: bytes, erased: set[str]) -> np.ndarray:
    cache: dict[str, bool] = {}
    out = np.zeros(len(ids), dtype=bool)
    for i, u in enumerate(ids):
        if u is None:
            continue
        hit = cache.get(u)
        if hit is None:
            hit = cache[u] = erasure_hash(key, u) in erased
        out[i] = hit
    return out


def _without_users(arrays: dict[str, np.ndarray], drop: np.ndarray) -> dict[str, np.ndarray]:
    """recommender.npz arrays without the users flagged in `drop` (rows of user_ids)."""
    keep = ~drop
    out = dict(arrays)
    out["user_ids"] = arrays["user_ids"][keep]
    out["user_segment"] = arrays["user_segment"][keep]
    seen = sp.csr_matrix((arrays["seen.data"], arrays["seen.indices"], arrays["seen.indptr"]),
                         shape=(len(drop), len(arrays["item_ids"])))
    kept = seen[keep]
    out["seen.indptr"], out["seen.indices"], out["seen.data"] = kept.indptr.astype(np.int64), kept.indices, kept.data
    if "seen.days" in arrays:
        days = sp.csr_matrix((arrays["seen.days"], arrays["seen.indices"], arrays["seen.indptr"]), shape=seen.shape)[keep]
        out["seen.days"] = days.data
    for name, value in arrays.items():
        if name.endswith("user_factors"):
            out[name] = value[keep]
        elif name.endswith(".n_users"):
            out[name] = np.array(int(keep.sum()), dtype=value.dtype)
    return out


def _purge_bundle(folder: Path, key: bytes, erased: set[str]) -> int:
    """Rewrite one bundle without the erased users; returns the user rows removed (0: untouched)."""
    changed: dict[str, object] = {}
    removed = 0
    for f in sorted(folder.glob("*.parquet")):
        schema = pq.read_schema(f)
        if "user_id" not in schema.names:
            continue
        t = pq.read_table(f)
        drop = _erased_mask(t.column("user_id").to_pylist(), key, erased)
        if drop.any():
            changed[f.name] = t.filter(pa.array(~drop))
            removed += int(drop.sum())
    rec = folder / "recommender.npz"
    if rec.exists():
        with np.load(rec, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        drop = _erased_mask(arrays["user_ids"].tolist(), key, erased)
        if drop.any():
            changed[rec.name] = _without_users(arrays, drop)
            removed += int(drop.sum())
    if not changed:
        return 0
    version = folder.name
    tmp = folder.with_name(f".forget-{version}")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(folder, tmp)
    manifest = json.loads((tmp / MANIFEST).read_text())
    for name, content in changed.items():
        if isinstance(content, pa.Table):
            pq.write_table(content, tmp / name, compression="zstd")
            manifest.setdefault("row_counts", {})[name] = content.num_rows
        else:
            np.savez(tmp / name, **content)
        manifest["checksums"][name] = sha256(tmp / name)
    manifest["erased_at"] = _now()
    atomic.write_json(tmp / MANIFEST, manifest)
    verify(tmp)
    for f in tmp.iterdir():           # durable before the old folder goes (power loss, not just kill -9)
        fd = os.open(f, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    atomic.fsync_dir(tmp)
    old = folder.with_name(f".erased-{version}")
    folder.rename(old)          # a kill here: recover_bundles puts the rewritten folder in place
    tmp.rename(folder)
    atomic.fsync_dir(folder.parent)
    shutil.rmtree(old)
    return removed


def recover_bundles(home: DataHome) -> list[str]:
    """Finish or undo a bundle rewrite cut short: `.erased-X` is the old folder of X."""
    done = []
    if not home.bundles.exists():
        return done
    for old in sorted(home.bundles.glob(".erased-*")):
        version = old.name.removeprefix(".erased-")
        final, new = home.bundles / version, home.bundles / f".forget-{version}"
        if not final.exists():
            if new.exists():
                new.rename(final)        # the rewritten folder was complete (verified before the swap)
            else:
                old.rename(final)
                continue
        shutil.rmtree(old, ignore_errors=True)
        done.append(version)
    for new in sorted(home.bundles.glob(".forget-*")):
        shutil.rmtree(new, ignore_errors=True)   # a rewrite that never reached its swap: purge redoes it
    return done


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
