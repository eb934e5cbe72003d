"""The erasure log: who was erased (a keyed hash of the id, never the id) and when.

`<data home>/erasure.key` holds a random 32-byte secret (mode 0600), made on first use;
`<data home>/erasure_log.jsonl` one line per erased user: {"hash", "erased_at", "source"}
(source: "cli" for `behavior forget`, "api" for the admin endpoint). Ingest rejects rows of
a logged user (reason `erased_user`), `behavior run` purges logged users still in the lake
before it reads it, and the API drops them at load. The log is kept for as long as the data
home: it is what stops an erased user from coming back. The file format has one reader and
writer, `api.erasure.ErasureLog` (the API may not import pipelines); these are its
data-home-shaped entry points.
"""

from __future__ import annotations

from pathlib import Path

from api.erasure import LOG, ErasureLog
from pipelines.datahome import DataHome


def secret(home: DataHome, create: bool = False) -> bytes | None:
    """The data home's erasure secret (made with `create` if missing; None otherwise)."""
    return ErasureLog(home.root).secret(create)


def hashes(home: DataHome) -> set[str]:
    """The keyed hashes of every erased user."""
    return set(ErasureLog(home.root).hashes()[1])


def record(home: DataHome, user_ids: list[str], source: str = "cli") -> list[str]:
    """Append the users to the log (once each); returns their hashes. Durable before it returns."""
    return ErasureLog(home.root).record_many(user_ids, source)


def log_path(home: DataHome) -> Path:
    return home.root / LOG
