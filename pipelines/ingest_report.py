"""What the ingest report says about one file beyond its counts: which canonical columns it
had, and an example of each reason its rows were rejected for."""

from __future__ import annotations

import pyarrow as pa

from behavior.schema import Table

# canonical columns that are computed when the file lacks them (payments)
_DERIVED = {"payment_id": "derived: a hash of the row's values",
            "line_no": "derived: the line's position in its payment",
            "amount": "derived: unit_price x quantity"}
NO_AMOUNT = ("no amount (nor unit_price) column: its rows are stored without amounts, so spend-based outputs "
             "(monetary value, Gamma-Gamma, CLV, revenue lifts) will be skipped; name the column with "
             "--map amount=<column> or --map unit_price=<column> if it has one")


def column_report(spec: Table, columns: dict[str, str | None], defaults: dict[str, str], currency: str | None) -> dict:
    """The canonical columns of `spec`: found (under their own name), mapped (canonical ->
    source column), defaulted (canonical -> the value or how it is derived) and missing."""
    found, mapped, defaulted, missing = [], {}, {}, []
    for col in spec.columns:
        src = columns.get(col.name)
        if src is not None:
            if src.lower() == col.name.lower():
                found.append(col.name)
            else:
                mapped[col.name] = src
        elif col.name in defaults:
            defaulted[col.name] = defaults[col.name]
        elif col.name == "currency" and currency:
            defaulted[col.name] = currency
        elif col.default is not None:
            defaulted[col.name] = col.default
        elif spec.name == "payments" and col.name in _DERIVED and (col.name != "amount" or columns.get("unit_price")):
            defaulted[col.name] = _DERIVED[col.name]
        else:
            missing.append(col.name)
    if columns.get("unit_price") is not None and columns.get("amount") is None:
        mapped["unit_price"] = columns["unit_price"]
    return {"found": found, "mapped": mapped, "defaulted": defaulted, "missing": missing}


def rejection_examples(quarantine: pa.Table) -> dict[str, str]:
    """Reason -> its first rejected row and detail, e.g. "row 3: paid_at '13/01/2025' is not ..."."""
    out: dict[str, str] = {}
    ordered = quarantine.select(["source_row", "reason", "detail"]).sort_by("source_row").to_pylist()
    for r in ordered:
        out.setdefault(r["reason"], f"row {r['source_row']}: {r['detail']}")
    return dict(sorted(out.items()))
