"""The erasure log: who was erased (a keyed hash of the id, never the id) and when.

`<data home>/erasure.key` holds a random 32-byte secret (mode 0600), made on first use;
`<data home>/erasure_log.jsonl` one line per erased user: {"hash", "erased_at", "source"}
(source: "cli" for `behavior forget`, "api" for the admin endpoint, which appends the same
lines). Ingest rejects rows of a logged user (reason `erased_user`), `behavior run` purges
logged users still in the lake before it reads it, and the API drops them at load. The log
is kept for as long as the data home: it is what stops an erased user from coming back.
"""

from __future__ import annotations

import json
import os
import secrets
from datetime import datetime, timezone
from pathlib import Path

from behavior.pii import erasure_hash
from pipelines.datahome import DataHome

SECRET = "erasure.key"
LOG = "erasure_log.jsonl"


def secret(home: DataHome, create: bool = False) -> bytes | None:
    """The data home's erasure secret (made with `create` if missing; None otherwise)."""
    path = home.root / SECRET
    if path.exists():
        return bytes.fromhex(path.read_text().strip())
    if not create:
        return None
    home.root.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{SECRET}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, secrets.token_bytes(32).hex().encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return bytes.fromhex(path.read_text().strip())


def hashes(home: DataHome) -> set[str]:
    """The keyed hashes of every erased user."""
    path = home.root / LOG
    if not path.exists():
        return set()
    out = set()
    for line in path.read_text().splitlines():
        if line.strip():
            out.add(json.loads(line)["hash"])
    return out


def record(home: DataHome, user_ids: list[str], source: str = "cli") -> list[str]:
    """Append the users to the log (once each); returns their hashes. Durable before it returns."""
    key = secret(home, create=True)
    known = hashes(home)
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    out, lines = [], []
    for uid in user_ids:
        h = erasure_hash(key, uid)
        out.append(h)
        if h not in known:
            known.add(h)
            lines.append(json.dumps({"hash": h, "erased_at": now, "source": source}) + "\n")
    if lines:
        fd = os.open(home.root / LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, "".join(lines).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
    return out


def log_path(home: DataHome) -> Path:
    return home.root / LOG
