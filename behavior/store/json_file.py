"""Reading the data home's small JSON files (keys, senders): missing is a default, broken is an
error that names the file and the line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_json(path: Path, error: type[Exception], missing: Any, hint: str = "") -> Any:
    """The document in `path`; `missing` if the file does not exist; `error` naming the file
    and the line (and `hint`, e.g. "; fix or remove it") if it is not valid JSON."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return missing
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{path.name}: not valid JSON ({exc.msg} at line {exc.lineno}){hint}") from None
