"""The lake's one reporting currency: never fixed silently.

It is stored in the lake's `_lake.json`. The first ingest of payments fixes it from
`--default currency=XXX`, else from the file's currency column when that names one ISO 4217
code; without either the ingest stops (exit 2) naming `--default currency=XXX`.
`behavior lake currency [XXX]` shows it, and sets or changes it while the lake holds no
payments (after that, every stored amount is in it).
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from behavior import parsing as P
from behavior.currencies import ISO_4217
from behavior.errors import InputError
from behavior.validate import _q

_HOW = "--default currency=XXX (the ISO 4217 code of its amounts, e.g. EUR, GBP, USD)"


def checked(code: str, where: str) -> str:
    """`code` upper-cased if it is an ISO 4217 code; else an InputError naming `where`."""
    upper = code.strip().upper()
    if upper not in ISO_4217:
        raise InputError(f"{where}{code} is not an ISO 4217 currency code (e.g. EUR, GBP, USD)")
    return upper


def first_currency(engine: Any, table: Any, column: str | None, default: str | None,
                   na_values: tuple[str, ...], path: Path) -> tuple[str, str]:
    """(the currency, how it was chosen) for a lake without one, from the first payments file
    `table` (Arrow, registered here on `engine`) whose currency column is `column` (or None)."""
    typ = table.schema.field(column).type if column is not None else None
    engine.register("_currencies", table)
    try:
        return first_currency_of(engine, "_currencies", typ, column, default, na_values, path)
    finally:
        engine.unregister("_currencies")


def first_currency_of(engine: Any, relation: str, typ: Any, column: str | None, default: str | None,
                      na_values: tuple[str, ...], path: Path) -> tuple[str, str]:
    """`first_currency` of the SQL `relation` on `engine`, whose `column` has the Arrow type `typ`."""
    if default:
        return checked(default, "--default currency="), "from --default currency="
    if column is None:
        raise InputError(f"{path}: the lake has no reporting currency yet and the file has no currency column: "
                         f"name it with {_HOW}, or set it first with `behavior lake currency XXX`")
    d = engine.dialect
    text = P.text(_q(column, d), typ, d, na_values)
    found = engine.arrow(f"SELECT DISTINCT upper({text}) AS c FROM {relation}").column(0).to_pylist()
    codes = sorted(c for c in found if c in ISO_4217)
    if len(codes) != 1:
        what = f"holds {', '.join(codes)}" if codes else "holds no ISO 4217 code"
        raise InputError(f"{path}: the lake has no reporting currency yet and the file's currency column {what}: "
                         f"choose the lake's one reporting currency with {_HOW}; rows in another currency are then "
                         "rejected (currency_mismatch)")
    return codes[0], f"from the file's currency column {column!r}"


def lake_currency(lake: Any, new: str | None) -> dict:
    """Show (`new` None) or set the reporting currency of `lake` (a `pipelines.ingest` lake:
    LocalLake or SparkLake, held under the data home's lock). Returns {"currency", "payments"}."""
    meta = lake.read_meta()
    holds = lake.holds("payments")
    if new is None:
        return {"currency": meta.get("currency"), "payments": holds}
    code = checked(new, "currency ")
    if code != meta.get("currency"):
        if holds:
            raise InputError(f"the lake holds payments in {meta.get('currency')}, so its reporting currency cannot "
                             f"change to {code}: convert and ingest them into a new data home (--data-dir)")
        with lake.transaction() as txn:
            created = datetime.now(timezone.utc).isoformat(timespec="seconds")
            lake.write_meta(txn, {"created_at": created, **meta, "currency": code})
    return {"currency": code, "payments": holds}
