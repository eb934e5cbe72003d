"""`behavior.parsing.text` (the SQL every text source value goes through) against its Python
reference: trimmed of `ID_WHITESPACE`, NULL when empty or a missing-value marker. Its fast
paths (the first byte compared, the last character's code, a marker's first character, a
listed column's values written as stored) must never change a value."""

from __future__ import annotations

import duckdb
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from behavior import parsing as P
from behavior.ids import normalize_id

STATUSES = ("success", "failed", "refund")
MARKERS = (P.NA_VALUES, ("-", "~", "#"), ("ø", "n/a"), ("{0}", "'", "?"), ())
space = st.sampled_from(["", "", " ", "\t", "\n", "\u00a0", "\u3000", "\x85"])
core = st.one_of(
    st.sampled_from([*P.NA_VALUES, *STATUSES, "", "u1", "17850.0", "ø", "é", "!", "~", "#", "N", "n", "-", "0",
                     "\x7f", "\x00", "{0}", "'", "?"]),
    st.text(alphabet="!#-Nn~ aø\x7f\u00a0", max_size=4),
    st.text(max_size=3))
value = st.tuples(space, core, space).map("".join)


def reference(v: str | None, na_values: tuple[str, ...]) -> str | None:
    if v is None:
        return None
    t = normalize_id(v)
    return None if t in ("", *na_values) else t


@settings(max_examples=100, deadline=None)
@given(st.lists(value, min_size=1, max_size=40), st.sampled_from(MARKERS), st.booleans())
def test_text_is_the_trimmed_value_unless_a_marker(values, na_values, listed):
    con = duckdb.connect()
    con.register("source", pa.table({"x": pa.array([*values, None], pa.string()), "i": pa.array(range(len(values) + 1))}))
    sql = P.text("x", pa.string(), na_values=na_values, plain=STATUSES if listed else ())
    got = con.sql(f"SELECT {sql} AS t FROM source ORDER BY i").fetchall()
    assert [r[0] for r in got] == [reference(v, na_values) for v in [*values, None]]


def test_a_listed_value_that_is_a_marker_is_still_missing():
    con = duckdb.connect()
    sql = P.text("x", pa.string(), na_values=("success",), plain=STATUSES)
    got = con.sql(f"SELECT {sql} FROM (VALUES ('success'), ('failed'), (' refund ')) v(x)").fetchall()
    assert [r[0] for r in got] == [None, "failed", "refund"]
