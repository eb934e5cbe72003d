"""One normalisation of ids (user_id, merchant_id, item_id, payment_id, ...), used wherever an
id is read: ingest (as SQL), `behavior forget`, the erasure log and the API.

An id is its text with leading and trailing whitespace removed, where whitespace is what
Python's `str.strip()` removes: spaces, tabs, newlines, carriage returns, vertical tabs, form
feeds, U+0085, U+00A0, U+2028 and the other Unicode spaces. `ID_WHITESPACE` lists exactly those
characters, so that the SQL of ingest (`trim_sql`) and the Python of forget and the API can
never disagree on what a stored id is.
"""

from __future__ import annotations

import sys

ID_WHITESPACE = "".join(ch for ch in map(chr, range(sys.maxunicode + 1)) if ch.isspace())


def normalize_id(value: str) -> str:
    """The stored form of an id: trimmed of every whitespace character at either end."""
    return value.strip(ID_WHITESPACE)


def trim_sql(expr: str, literal) -> str:
    """SQL that trims `expr` the way `normalize_id` does; `literal` renders a string literal in
    the engine's dialect (e.g. `Dialect.literal`). DuckDB and Spark both accept
    TRIM(BOTH chars FROM x)."""
    return f"TRIM(BOTH {literal(ID_WHITESPACE)} FROM {expr})"
