"""The serving side of the erasure log (`<data home>/erasure_log.jsonl`, keyed hashes only).

The format is `pipelines.erasure_log`'s (the API does not import pipelines): the secret in
`<data home>/erasure.key` (hex, mode 0600), one JSON line per erased user with "hash",
"erased_at" and "source". The admin endpoint appends to it, so a user erased through the API
stays out of every bundle this or any later process loads, and `behavior run` purges them
from the lake.
"""

from __future__ import annotations

import json
import os
import secrets
from datetime import datetime, timezone
from pathlib import Path

from behavior.pii import erasure_hash

SECRET = "erasure.key"
LOG = "erasure_log.jsonl"


def _secret(data_dir: Path, create: bool) -> bytes | None:
    path = data_dir / SECRET
    if not path.exists():
        if not create:
            return None
        tmp = path.with_name(f".{SECRET}.api.tmp")
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
        path = self.data_dir / LOG
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

    def key_hash(self, user_id: str) -> str:
        return erasure_hash(_secret(self.data_dir, create=True), user_id)

    def record(self, user_id: str) -> str:
        """Append the user (keyed hash) to the log; durable before it returns."""
        h = self.key_hash(user_id)
        _, known = self.hashes()
        if h not in known:
            line = json.dumps({"hash": h, "erased_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                               "source": "api"}) + "\n"
            self.data_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.data_dir / LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line.encode())
                os.fsync(fd)
            finally:
                os.close(fd)
        return h

    def erased_among(self, user_ids: list[str]) -> set[str]:
        """The ids of `user_ids` that the log names."""
        key, logged = self.hashes()
        if key is None or not logged:
            return set()
        return {u for u in user_ids if erasure_hash(key, u) in logged}
