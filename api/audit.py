"""The audit log: one JSON object per line in `<data_dir>/audit/api.log`.

Every export and every admin action is written here with the time, the key id, the endpoint,
the row count and the bundle version. Lines are appended with a single write on a file opened
in append mode, so concurrent writers (threads or worker processes) never interleave.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

log = logging.getLogger("api.audit")


class AuditLog:
    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, *, key_id: str, endpoint: str, rows: int, bundle_version: str | None, **extra: Any) -> None:
        entry = {"time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), "key_id": key_id,
                 "endpoint": endpoint, "rows": rows, "bundle_version": bundle_version, **extra}
        line = (json.dumps(entry, default=str, separators=(",", ":")) + "\n").encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
        log.info("audit %s", entry)
