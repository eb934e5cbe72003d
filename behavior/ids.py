"""One normalisation of ids (user_id, merchant_id, item_id, payment_id, ...), used wherever an
id is read: ingest (as SQL), `behavior forget`, the erasure log and the API.

An id is its text with leading and trailing whitespace removed, where whitespace is what
Python's `str.strip()` removes: spaces, tabs, newlines, carriage returns, vertical tabs, form
feeds, U+0085, U+00A0, U+2028 and the other Unicode spaces. `ID_WHITESPACE` lists exactly those
characters, so that the SQL of ingest (`trim_sql`) and the Python of forget and the API can
never disagree on what a stored id is.

An id holding a control character (U+0000-U+001F or U+007F) once trimmed is not an id: ingest
quarantines its row (`bad_<column>`). numpy's fixed-width strings drop trailing NULs, so the
recommender's id map would merge "u1\\x00" with "u1"; terminals and CSV exports show such ids
as the id without them. `ID_CONTROLS` lists them; `control_characters` (Python) and
`control_sql` (SQL) are the one test.
"""

from __future__ import annotations

import sys

ID_WHITESPACE = "".join(ch for ch in map(chr, range(sys.maxunicode + 1)) if ch.isspace())
ID_CONTROLS = "".join(map(chr, range(0x20))) + "\x7f"
CONTROL_PATTERN = "[\\x00-\\x1f\\x7f]"   # a regular expression (RE2 and Java) matching one of ID_CONTROLS


def normalize_id(value: str) -> str:
    """The stored form of an id: trimmed of every whitespace character at either end."""
    return value.strip(ID_WHITESPACE)


def trim_sql(expr: str, literal) -> str:
    """SQL that trims `expr` the way `normalize_id` does; `literal` renders a string literal in
    the engine's dialect (e.g. `Dialect.literal`). DuckDB and Spark both accept
    TRIM(BOTH chars FROM x)."""
    return f"TRIM(BOTH {literal(ID_WHITESPACE)} FROM {expr})"


def control_characters(value: str) -> list[str]:
    """The control characters (`ID_CONTROLS`) an id holds, as code points ('U+0000'), in order
    of first appearance: an id that holds any is refused by ingest."""
    return [f"U+{ord(ch):04X}" for ch in dict.fromkeys(value) if ch in ID_CONTROLS]


def control_sql(expr: str, dialect) -> str:
    """SQL: whether the text `expr` holds a control character (`ID_CONTROLS`); `dialect` is a
    `behavior.sql_dialect.Dialect`."""
    return dialect.find(expr, CONTROL_PATTERN)
