"""The data home: where the lake, the quarantine and the published bundles live."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ENV_VAR = "BEHAVIOR_DATA_DIR"


@dataclass(frozen=True)
class DataHome:
    root: Path

    @classmethod
    def resolve(cls, data_dir: str | Path | None) -> "DataHome":
        """`--data-dir`, else $BEHAVIOR_DATA_DIR, else ./data."""
        chosen = data_dir or os.environ.get(ENV_VAR) or "data"
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
