"""CSV files a spreadsheet may open: text that a spreadsheet would run as a formula is defused.

OWASP's advice on CSV injection (https://owasp.org/www-community/attacks/CSV_Injection): a cell
that begins with `=`, `+`, `-`, `@`, a tab or a carriage return is read by Excel, LibreOffice
and Google Sheets as a formula (`=cmd|' /C calc'!A0`, `=HYPERLINK(...)`), so such a text value
gets a leading single quote, which makes the spreadsheet show it as text.

Only text columns are changed: numbers stay numbers (a refund of -12.5 in a numeric column is
written as -12.5, not as text), since a spreadsheet never reads a number as a formula.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

FORMULA_START = "=+-@\t\r"
_FORMULA_PATTERN = "^[=+@\t\r-]"


def neutralize_text(values: pa.Array) -> pa.Array:
    """`values` (a string array) with a `'` before each value that begins with a formula character."""
    risky = pc.match_substring_regex(values, _FORMULA_PATTERN)
    if not pc.any(risky).as_py():
        return values
    quoted = pc.binary_join_element_wise(pa.scalar("'", values.type), values, pa.scalar("", values.type))
    return pc.if_else(risky, quoted, values)


def _neutralize_chunk(chunk: pa.Array) -> pa.Array:
    if pa.types.is_dictionary(chunk.type):
        return pa.DictionaryArray.from_arrays(chunk.indices, _neutralize_chunk(chunk.dictionary))
    if pa.types.is_string(chunk.type) or pa.types.is_large_string(chunk.type):
        return neutralize_text(chunk)
    return chunk


def _is_text(t: pa.DataType) -> bool:
    if pa.types.is_dictionary(t):
        t = t.value_type
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def neutralize_formulas(table: pa.Table) -> pa.Table:
    """`table` with every text value (plain or dictionary-encoded strings) that a spreadsheet would
    run as a formula prefixed with `'`; other columns are returned as they are."""
    cols = []
    for col in table.columns:
        if _is_text(col.type):
            col = pa.chunked_array([_neutralize_chunk(c) for c in col.chunks], type=col.type)
        cols.append(col)
    return pa.table(cols, names=table.column_names)
