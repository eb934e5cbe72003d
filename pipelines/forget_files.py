"""The places of a data home outside the lake and the published bundles where an erased user can
still be, and how `behavior forget` clears each (`pipelines.forget.purge` calls these under the
data home's lock, so no other command is writing meanwhile):

- half-written bundles (`artifacts/bundles/.tmp-<version>/`, left by a run killed while
  publishing): removed; they are never served and the next publish would remove them anyway;
- spill and user-part files (`tmp/`): the lock already removed those of processes that are gone
  (`pipelines.lake.sweep_spill`); those of a live process (a notebook) are listed, since they
  go when it ends and removing them would break it;
- logs under the data home (`audit/`, `logs/`, `*.log` at its top): every mention of an id given
  in plain text, in any of the forms a log writes it (as is, JSON- or repr-escaped,
  URL-encoded, also after an escaped control character: `mention_pattern`), is replaced by
  `[erased]`; the line itself stays (the action was audited);
- the demo's input copies (`synth/`, written there by `behavior demo`): Parquet files with a
  `user_id` column are rewritten without the erased users.
"""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path
from typing import Callable
from urllib.parse import quote

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from behavior.store import atomic
from behavior.store.datahome import DataHome

ERASED = b"[erased]"
LOG_FOLDERS = ("audit", "logs")


def remove_partial_bundles(home: DataHome) -> list[str]:
    """Remove the bundle folders a killed publish left (`.tmp-<version>`); returns their names."""
    removed = []
    for folder in sorted(home.bundles.glob(".tmp-*")) if home.bundles.exists() else []:
        shutil.rmtree(folder) if folder.is_dir() else folder.unlink()
        removed.append(folder.name)
    return removed


def live_spill(home: DataHome) -> list[str]:
    """What is left in the spill folder once the lock swept it: files of processes still running."""
    spill = home.spill
    return sorted(p.name for p in spill.iterdir()) if spill.is_dir() else []


def _log_files(home: DataHome) -> list[Path]:
    found = [p for name in LOG_FOLDERS if (home.root / name).is_dir() for p in (home.root / name).rglob("*")]
    found += home.root.glob("*.log") if home.root.is_dir() else []
    return sorted(p for p in found if p.is_file() and not p.is_symlink())


# Before an id, an escaped control character, space or U+FFFD (how ingest shows a control
# character) ends a word as a space does: JSON's "\\tu1", "\\u0000u1" and "\\ufffdu1", repr's
# "\\x00u1" and a URL's "%00u1" or "%20u1" name "u1" (the id a quarantined row with a control
# character most likely belongs to, behavior.ids.without_controls, or a padded id).
_ESCAPED_CONTROL_BEFORE = (rb"(?<=\\[tnrfvb0])", rb"(?<=\\x[01][0-9a-fA-F])", rb"(?<=\\x7[fF])",
                           rb"(?<=\\u00[01][0-9a-fA-F])", rb"(?<=\\u007[fF])", rb"(?<=\\u[fF]{3}[dD])",
                           rb"(?<=%[01][0-9a-fA-F])", rb"(?<=%7[fF])", rb"(?<=%20)")


def mention_pattern(user_ids: list[str]) -> re.Pattern[bytes] | None:
    """A pattern of the ids as logs write them, not inside a longer id (`u1` is not in `u10` nor
    in `xu1`, but is in `\\tu1`)."""
    forms = set()
    for uid in user_ids:
        forms |= {uid, json.dumps(uid)[1:-1], json.dumps(uid, ensure_ascii=False)[1:-1], repr(uid)[1:-1],
                  quote(uid, safe=""), quote(uid)}
    forms.discard("")
    if not forms:
        return None
    encoded = sorted((f.encode() for f in forms), key=len, reverse=True)
    alternatives = b"|".join(map(re.escape, encoded))
    start = b"|".join((rb"(?<![\w-])",) + _ESCAPED_CONTROL_BEFORE)
    # the class of the ids' first bytes goes first: most positions fail on it, before the lookbehinds
    first = b"".join(re.escape(bytes([b])) for b in sorted({f[0] for f in encoded}))
    return re.compile(rb"(?=[" + first + rb"])(?:" + start + rb")(?:" + alternatives + rb")(?![\w-])")


def scrub_logs(home: DataHome, user_ids: list[str]) -> dict[str, int]:
    """Replace every mention of the ids in the data home's logs; returns the lines changed per
    file (relative to the data home). A file is replaced atomically: a writer that keeps it open
    (not the API's audit log, which opens it for each line) goes on writing to the old one."""
    pattern = mention_pattern(user_ids)
    changed: dict[str, int] = {}
    if pattern is None:
        return changed
    for f in _log_files(home):
        data = f.read_bytes()
        if pattern.search(data) is None:
            continue
        lines = data.splitlines(keepends=True)
        scrubbed = [pattern.sub(ERASED, line) for line in lines]
        changed[str(f.relative_to(home.root))] = sum(a != b for a, b in zip(lines, scrubbed))
        atomic.write_bytes(f, b"".join(scrubbed))
    return changed


def purge_demo_input(home: DataHome, erased_mask: Callable[[list], np.ndarray]) -> dict[str, int]:
    """Rewrite the demo's input copies without erased users (`erased_mask` flags a list of
    user ids); returns the rows removed per file (relative to the data home)."""
    folder = home.demo_input
    removed: dict[str, int] = {}
    for f in sorted(folder.rglob("*.parquet")) if folder.is_dir() else []:
        if "user_id" not in pq.read_schema(f).names:
            continue
        t = pq.read_table(f)
        drop = erased_mask(t.column("user_id").to_pylist())
        if not drop.any():
            continue
        buf = io.BytesIO()
        pq.write_table(t.filter(pa.array(~drop)), buf, compression="zstd")
        atomic.write_bytes(f, buf.getvalue())
        removed[str(f.relative_to(home.root))] = int(drop.sum())
    return removed
