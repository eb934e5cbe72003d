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

Such a row most likely belongs to the user whose id it holds once the control characters are
taken out (they are an export's defect): `without_controls` gives that id, and `behavior forget`
erases a quarantined row whose id gives the erased id. `control_notice` is the one wording, for
the CLI and the API, of what an erasure of an id holding control characters can find.
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


_DROP_CONTROLS = dict.fromkeys(map(ord, ID_CONTROLS))


def without_controls(value: str) -> str:
    """The id `value` most likely stands for: every control character (`ID_CONTROLS`) taken out,
    then normalised (`normalize_id`). "u1\\x00", "\\x00 u1" and "u1\\r\\x00" give "u1"; an
    id without control characters gives its stored form."""
    return normalize_id(value.translate(_DROP_CONTROLS))


def without_controls_sql(expr: str, dialect) -> str:
    """SQL of `without_controls` over the text `expr`; `dialect` is a `behavior.sql_dialect.Dialect`."""
    return trim_sql(dialect.replace_all(expr, CONTROL_PATTERN, ""), dialect.literal)


def control_notice(user_id: str) -> str | None:
    """What an erasure of `user_id` (in stored form) holding control characters should tell the
    caller, None for an id without any: ingest never stored it, so only the quarantine can hold
    it, and the user it most likely names is erased by their own id."""
    found = control_characters(user_id)
    if not found:
        return None
    notice = (f"{user_id!r} holds {', '.join(found)}: ingest never stores an id with a control character "
              "(it quarantines the row as bad_user_id), so only the quarantine can hold it")
    likely = without_controls(user_id)
    if likely:
        notice += (f"; if the user is {likely!r}, erase {likely!r}: that also erases the quarantined rows whose "
                   f"id is {likely!r} with control characters")
    return notice
