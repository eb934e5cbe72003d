"""Late opt-outs: who is opted out of marketing now, for the API, before the next run.

`<data home>/opt_outs.json` (mode 0600) holds the keyed hash (`behavior.pii.erasure_hash`, with
the data home's erasure secret; never the id) of every user whose latest ingested `users` row
has `marketing_opt_out` true:

    {"format": 1, "updated_at": "2026-12-04T22:00:00+00:00", "hashes": ["<64 hex>", ...]}

`behavior ingest` updates it after each commit of `users` rows (`update`): a user whose new row
is true is added, one whose new row is false is removed, everyone else stays. A change replaces
the file atomically (a new inode: readers see the old or the new file, and one stat tells them
it changed). The API reads it (`read`) when it changed and flags those users as opted out in the
bundle it serves; the bundle's own flag (from the last `behavior run`) still holds for an
opt-in until the next run.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pyarrow as pa

from behavior.errors import BehaviorError
from behavior.pii import erasure_hash_sql
from behavior.store import atomic
from behavior.store.datahome import DataHome

FILE = DataHome(Path()).opt_outs.name   # the name, for messages
FORMAT = 1

class OptOutsError(BehaviorError, ValueError):
    """The opt-outs file cannot be read (not the JSON this module writes)."""


def read(root: Path) -> frozenset[str]:
    """The hashes of the opted-out users (none if there is no file). Raises OptOutsError."""
    try:
        text = DataHome(root).opt_outs.read_text()
    except FileNotFoundError:
        return frozenset()
    try:
        doc = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise OptOutsError(f"{FILE}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("hashes"), list):
        raise OptOutsError(f'{FILE}: expected {{"format": {FORMAT}, "hashes": [...]}}')
    return frozenset(doc["hashes"])


def update(root: Path, secret: bytes, users: pa.Table) -> int:
    """Apply ingested `users` rows (user_id, marketing_opt_out; later rows win) to the file;
    returns how many users it names now. The caller holds the data home's lock."""
    current = sorted(read(root))
    con = duckdb.connect()
    try:
        con.register("_rows", users.select(["user_id", "marketing_opt_out"]).append_column(
            "_pos", pa.array(range(users.num_rows), pa.int64())))
        con.register("_current", pa.table({"h": pa.array(current, pa.string())}))
        rows = con.sql(f"""
            WITH latest AS (SELECT {erasure_hash_sql(secret, 'user_id')} AS h,
                                   arg_max(marketing_opt_out, _pos) AS opted
                            FROM _rows WHERE user_id IS NOT NULL GROUP BY user_id)
            SELECT h FROM _current WHERE h NOT IN (SELECT h FROM latest)
            UNION SELECT h FROM latest WHERE opted
            ORDER BY h""").fetchall()
    finally:
        con.close()
    hashes = [h for (h,) in rows]
    if hashes != current:
        doc = {"format": FORMAT, "updated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "hashes": hashes}
        atomic.write_bytes(DataHome(root).opt_outs, json.dumps(doc).encode())
    return len(hashes)
