"""The erasure log: who was erased (a keyed hash of the id, never the id) and when.

`<data home>/erasure.key` holds a random 32-byte secret (hex, mode 0600), made on first use;
`<data home>/erasure_log.jsonl` one JSON line per erased user: {"hash", "erased_at", "source"}
(source: "cli" for `behavior forget`, "api" for the admin endpoint). Ingest rejects rows of a
logged user (reason `erased_user`), `behavior run` purges logged users still in the lake before
it reads it, and the API drops them at load, so a user erased through the API stays out of
every bundle this or any later process loads. The log is kept for as long as the data home: it
is what stops an erased user from coming back. An id is hashed in its stored form
(`behavior.ids.normalize_id`), so ' u1\t' and 'u1' are one user here as in the lake.

`ErasureLog` is the one reader and writer; `secret`, `hashes` and `record` are its entry points
for a `DataHome`.
"""

from __future__ import annotations

import json
import os
import secrets
from datetime import datetime, timezone
from pathlib import Path

from behavior.ids import normalize_id
from behavior.pii import erasure_hash
from behavior.store.datahome import DataHome


def _secret(data_dir: Path, create: bool) -> bytes | None:
    path = DataHome(data_dir).erasure_key
    if not path.exists():
        if not create:
            return None
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, secrets.token_bytes(32).hex().encode() + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)      # never replaces a secret another process made meanwhile
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
    return bytes.fromhex(path.read_text().strip())


class ErasureLog:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._stamp: tuple[int, int] | None = None
        self._hashes: frozenset[str] = frozenset()

    def hashes(self) -> tuple[bytes | None, frozenset[str]]:
        """(secret, logged hashes), re-read only when the log file changed."""
        path = DataHome(self.data_dir).erasure_log
        try:
            st = path.stat()
        except FileNotFoundError:
            return None, frozenset()
        stamp = (st.st_ino, st.st_size)
        if stamp != self._stamp:
            found = set()
            for line in path.read_text().splitlines():
                if line.strip():
                    try:
                        found.add(json.loads(line)["hash"])
                    except (ValueError, KeyError, TypeError):
                        continue  # a torn last line of a writer that was killed
            self._hashes, self._stamp = frozenset(found), stamp
        return _secret(self.data_dir, create=False), self._hashes

    def secret(self, create: bool = False) -> bytes | None:
        """The data home's erasure secret (made with `create` if missing)."""
        if create:
            self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        return _secret(self.data_dir, create)

    def key_hash(self, user_id: str) -> str:
        """The keyed hash of the user's stored id."""
        return erasure_hash(self.secret(create=True), normalize_id(user_id))

    def record(self, user_id: str, source: str = "api") -> str:
        """Append the user (keyed hash) to the log; durable before it returns."""
        return self.record_many([user_id], source)[0]

    def record_many(self, user_ids: list[str], source: str) -> list[str]:
        """Append the users not logged yet, in one durable write; returns every user's hash."""
        key = self.secret(create=True)
        _, known = self.hashes()
        known = set(known)
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        out, lines = [], []
        for uid in user_ids:
            h = erasure_hash(key, normalize_id(uid))
            out.append(h)
            if h not in known:
                known.add(h)
                lines.append(json.dumps({"hash": h, "erased_at": now, "source": source}) + "\n")
        if lines:
            fd = os.open(DataHome(self.data_dir).erasure_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, "".join(lines).encode())
                os.fsync(fd)
            finally:
                os.close(fd)
        return out

    def erased_among(self, user_ids: list[str]) -> set[str]:
        """The ids of `user_ids` that the log names (as given, compared in their stored form)."""
        key, logged = self.hashes()
        if key is None or not logged:
            return set()
        return {u for u in user_ids if erasure_hash(key, normalize_id(u)) in logged}


def secret(home: DataHome, create: bool = False) -> bytes | None:
    """The data home's erasure secret (made with `create` if missing; None otherwise)."""
    return ErasureLog(home.root).secret(create)


def hashes(home: DataHome) -> set[str]:
    """The keyed hashes of every erased user."""
    return set(ErasureLog(home.root).hashes()[1])


def record(home: DataHome, user_ids: list[str], source: str = "cli") -> list[str]:
    """Append the users to the log (once each); returns their hashes. Durable before it returns."""
    return ErasureLog(home.root).record_many(user_ids, source)
