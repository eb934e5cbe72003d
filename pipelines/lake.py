"""The lake: canonical tables as Parquet under the data home, changed only by transactions.

A transaction writes its new files into `lake/_txn/<id>/` (mirroring the lake's layout) and
commits by writing one journal `lake/_txn/<id>.commit` that lists the files to move into place
and the files to delete; then it carries the journal out. Every command first recovers: a
journal is carried out again (each step is idempotent), a staging folder without one is
removed. So a kill at any point leaves the lake as before the transaction or as after it.
Writers hold the data home's lock (one command that changes it at a time).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from behavior.errors import BehaviorError
from behavior.sql_dialect import DUCKDB
from behavior.store import atomic
from behavior.store.datahome import DataHome

TXN = "_txn"
META = DataHome(Path()).lake_meta.name   # the lake's settings file (its layout is DataHome's)


class LakeError(BehaviorError):
    """The lake's transaction state cannot be recovered without a person (a damaged journal)."""


@contextmanager
def locked(home: DataHome, command: str) -> Iterator[None]:
    """Hold the data home's lock for `command` (or fail at once naming the holder), with the
    lake recovered and dead processes' spill swept first."""
    with home.lock(command):
        recover(home.lake)
        sweep_spill(home.spill)
        yield


# What a process leaves in <data home>/tmp, named with its pid: DuckDB's spill files and a big
# log's user parts (`behavior.features.UserParts`). Both hold payment lines.
_SPILL = re.compile(r"^(?:duckdb_temp_|parts-)(\d+)[_-]")


def sweep_spill(folder: Path) -> list[str]:
    """Remove what processes that are gone left in the spill folder (a run killed mid-way:
    the parts are removed when the run or query that made them ends, even by an error, but
    not after a kill), so no copy of payment lines outlives its command, nor an erased
    user's lines. Files of a live process (a notebook on the same data home) are kept."""
    removed = []
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        m = _SPILL.match(path.name)
        if m is None or _alive(int(m.group(1))):
            continue
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
        removed.append(path.name)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # another user's live process
        return True
    return True


def recover(lake: Path) -> list[str]:
    """Finish committed transactions, drop uncommitted ones. Returns what was done."""
    done = []
    txn_root = lake / TXN
    if not txn_root.exists():
        return done
    for journal in sorted(txn_root.glob("*.commit")):
        _apply(lake, parse_journal(journal.read_text(), str(journal)))
        shutil.rmtree(txn_root / journal.stem, ignore_errors=True)
        journal.unlink()
        done.append(f"completed transaction {journal.stem}")
    for staging in sorted(p for p in txn_root.iterdir() if p.is_dir()):
        shutil.rmtree(staging, ignore_errors=True)
        done.append(f"rolled back transaction {staging.name}")
    return done


def parse_journal(text: str, where: str) -> dict:
    """A commit journal's content; a damaged one (written in place and cut by a crash, by a
    version before journals were written atomically) is an error naming the file and the way
    out, not a bare JSON error on every later command."""
    try:
        journal = json.loads(text)
        if isinstance(journal, dict) and {"move", "delete"} <= journal.keys():
            return journal
    except ValueError:
        pass
    staging = where[:-len(".commit")] if where.endswith(".commit") else where
    raise LakeError(f"the lake's commit journal {where} is damaged (not a complete journal: a crash while it was "
                    f"being written?), so its transaction cannot be completed. Its files are still in {staging}/; "
                    "to roll that transaction back, delete the journal and that folder, then ingest its files "
                    "again (rows stored already are counted as duplicates)")


def _apply(lake: Path, journal: dict) -> None:
    for rel in journal["delete"]:
        (lake / rel).unlink(missing_ok=True)
    for src_rel, dst_rel in journal["move"]:
        src, dst = lake / src_rel, lake / dst_rel
        if src.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)
    for rel in journal.get("prune", []):
        d = lake / rel
        if d.is_dir() and not any(d.iterdir()):
            d.rmdir()


class Transaction:
    """New files go to `staging / <path in the lake>`; `commit` puts them in place at once."""

    def __init__(self, lake: Path) -> None:
        self.lake = lake
        self.id = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]
        self.staging = lake / TXN / self.id
        self.staging.mkdir(parents=True)
        self._delete: list[str] = []

    def path(self, rel: str) -> Path:
        p = self.staging / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def delete(self, path: Path) -> None:
        self._delete.append(str(path.relative_to(self.lake)))

    @property
    def deleted(self) -> set[str]:
        """The lake files (paths relative to the lake) this transaction deletes when it commits."""
        return set(self._delete)

    def commit(self) -> None:
        moves = []
        for f in sorted(self.staging.rglob("*")):
            if f.is_file():
                rel = f.relative_to(self.staging)
                moves.append([str(f.relative_to(self.lake)), str(rel)])
        prune = sorted({str(Path(d).parent) for d in self._delete})
        journal = {"id": self.id, "move": moves, "delete": self._delete, "prune": prune}
        atomic.write_json(self.lake / TXN / f"{self.id}.commit", journal)
        recover(self.lake)

    def abort(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)


@contextmanager
def transaction(lake: Path) -> Iterator[Transaction]:
    txn = Transaction(lake)
    try:
        yield txn
    except BaseException:
        txn.abort()
        raise
    txn.commit()


def table_files(lake: Path, table: str) -> list[Path]:
    d = lake / table
    return sorted(d.rglob("*.parquet")) if d.exists() else []


def read_meta(lake: Path) -> dict:
    p = lake / META
    return json.loads(p.read_text()) if p.exists() else {}


def scan_sql(lake: Path, table: str) -> str:
    """SQL of a relation over a lake table (hive partitions as columns)."""
    files = table_files(lake, table)
    if not files:
        raise BehaviorError(f"the lake has no {table} yet; run `behavior ingest` first")
    listing = ", ".join(DUCKDB.literal(str(f)) for f in files)
    hive = "true" if table == "payments" else "false"
    return f"read_parquet([{listing}], hive_partitioning = {hive}, union_by_name = true)"
