"""Stage parameters: defaults here, overridden by a TOML file (`behavior run --config FILE`).

```toml
[engine]
duckdb_threads = 2             # 0 = all cores
duckdb_memory_limit = "3GB"    # DuckDB spills to <data home>/tmp beyond it
```
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from behavior.errors import InputError


@dataclass(frozen=True)
class EngineConfig:
    duckdb_threads: int = 0
    duckdb_memory_limit: str = "3GB"


@dataclass(frozen=True)
class Config:
    engine: EngineConfig = field(default_factory=EngineConfig)


def load_config(path: Path | None) -> Config:
    """The defaults, with the sections of `path` laid over them. Unknown keys are errors."""
    cfg = Config()
    if path is None:
        return cfg
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: no such config file") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: not valid TOML: {exc}") from None
    for section, values in data.items():
        if section not in {f.name for f in fields(Config)}:
            raise InputError(f"{path}: unknown section [{section}]; known: {', '.join(f.name for f in fields(Config))}")
        current = getattr(cfg, section)
        known = {f.name for f in fields(current)}
        bad = sorted(set(values) - known)
        if bad:
            raise InputError(f"{path}: [{section}] has unknown keys {', '.join(bad)}; known: {', '.join(sorted(known))}")
        cfg = replace(cfg, **{section: replace(current, **values)})
    return cfg
