"""The data home: where the lake, the quarantine and the published bundles live.

It is private to its owner: folders 0700, files 0600. The CLI and the server run with the umask
`PRIVATE_UMASK`, so what they write is created that way, and every command tightens what an
older version (or another tool) left open (`DataHome.make_private`).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from behavior.store.config import DATA_DIR_ENV, HomeConfig, load_section

ENV_VAR = DATA_DIR_ENV
PRIVATE_UMASK = 0o077          # new folders 0700, new files 0600
PRIVATE_DIR, PRIVATE_FILE = 0o700, 0o600


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
    def demo_input(self) -> Path:
        """Where `behavior demo` writes its synthetic input files."""
        return self.root / "synth"

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
