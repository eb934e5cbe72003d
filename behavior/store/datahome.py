"""The data home: where the lake, the quarantine and the published bundles live. `DataHome`
is the one place that knows its layout; the batch side and the API both ask it for paths.

It is private to its owner: folders 0700, files 0600. The CLI and the server run with the umask
`PRIVATE_UMASK`, so what they write is created that way, and every command tightens what an
older version (or another tool) left open (`DataHome.make_private`).
"""

from __future__ import annotations

import fcntl
import os
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from behavior.errors import BehaviorError
from behavior.store.config import DATA_DIR_ENV, HomeConfig, load_section

ENV_VAR = DATA_DIR_ENV
PRIVATE_UMASK = 0o077          # new folders 0700, new files 0600
PRIVATE_DIR, PRIVATE_FILE = 0o700, 0o600


class LockedError(BehaviorError):
    """Another command holds the data home (`holder` says which)."""

    def __init__(self, message: str, holder: str) -> None:
        super().__init__(message)
        self.holder = holder


# The data homes this thread holds the lock of (by root): a holder may take it again
# (`publish` inside `behavior run` sets CURRENT under the run's lock).
_held = threading.local()


@dataclass(frozen=True)
class Tightened:
    """What `DataHome.make_private` changed, and what it could not (files of another owner)."""
    changed: int
    refused: list[str]


@dataclass(frozen=True)
class DataHome:
    root: Path

    @classmethod
    def resolve(cls, data_dir: str | Path | None) -> "DataHome":
        """`--data-dir`, else $BEHAVIOR_DATA_DIR, else ./data (the `[home]` configuration)."""
        chosen = data_dir or load_section(HomeConfig).data_dir
        return cls(Path(chosen).expanduser().absolute())

    @property
    def lake(self) -> Path:
        return self.root / "lake"

    @property
    def rejected(self) -> Path:
        return self.lake / "_rejected"

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts"

    @property
    def bundles(self) -> Path:
        return self.artifacts / "bundles"

    @property
    def current(self) -> Path:
        return self.artifacts / "CURRENT"

    @property
    def lock_file(self) -> Path:
        return self.root / ".lock"

    @property
    def keys_file(self) -> Path:
        """The API keys (`behavior keys`, read by `behavior serve`)."""
        return self.root / "api_keys.json"

    @property
    def audit_log(self) -> Path:
        """The API's audit log (one JSON line per data access)."""
        return self.root / "audit" / "api.log"

    @property
    def spill(self) -> Path:
        """DuckDB's spill files and a big log's user parts (named with their process id)."""
        return self.root / "tmp"

    @property
    def erasure_key(self) -> Path:
        return self.root / "erasure.key"

    @property
    def erasure_log(self) -> Path:
        return self.root / "erasure_log.jsonl"

    @property
    def lake_meta(self) -> Path:
        """The lake's own settings (its reporting currency)."""
        return self.lake / "_lake.json"

    @property
    def opt_outs(self) -> Path:
        """Keyed hashes of the users who opted out of marketing (`behavior.store.opt_outs`)."""
        return self.root / "opt_outs.json"

    @property
    def senders(self) -> Path:
        """The systems allowed to send payment notifications (`behavior senders`)."""
        return self.root / "senders.json"

    @property
    def inbox(self) -> Path:
        """The payment notifications received and not yet moved into the lake (SQLite, WAL)."""
        return self.root / "inbox" / "inbox.sqlite3"

    @property
    def demo_input(self) -> Path:
        """Where `behavior demo` writes its synthetic input files."""
        return self.root / "synth"

    def holds_lock(self) -> bool:
        """Whether this thread holds the data home's lock."""
        return self.root in getattr(_held, "roots", set())

    @contextmanager
    def lock(self, command: str) -> Iterator[None]:
        """Hold the data home's lock for `command` (one command that changes the data home at a
        time), or fail at once with `LockedError` naming the holder. Re-entrant in a thread."""
        if self.holds_lock():
            yield
            return
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        fh = open(os.open(self.lock_file, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600), "a+")
        try:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.seek(0)
                holder = fh.read().strip() or "another process"
                raise LockedError(f"the data home {self.root} is in use by {holder}; wait for it to finish "
                                  "and run the command again", holder) from None
            fh.seek(0)
            fh.truncate()
            fh.write(f"`behavior {command}` (pid {os.getpid()})")
            fh.flush()
            roots = getattr(_held, "roots", None)
            if roots is None:
                roots = _held.roots = set()
            roots.add(self.root)
            try:
                yield
            finally:
                roots.discard(self.root)
        finally:
            fh.close()  # closing releases the lock

    def make_private(self) -> Tightened:
        """Give the data home and every folder under it mode 0700 and every file 0600 where
        group or others had any access; symlinks are left alone."""
        changed, refused = 0, []
        if not self.root.is_dir():
            return Tightened(0, [])
        for folder, dirs, files in os.walk(self.root):
            for path, wanted in [(folder, PRIVATE_DIR)] + [(os.path.join(folder, f), PRIVATE_FILE) for f in files]:
                try:
                    st = os.lstat(path)
                    if not stat.S_ISLNK(st.st_mode) and stat.S_IMODE(st.st_mode) & 0o077:
                        os.chmod(path, wanted)
                        changed += 1
                except FileNotFoundError:      # removed meanwhile (a server's temporary file)
                    continue
                except PermissionError:
                    refused.append(path)
        return Tightened(changed, refused)
