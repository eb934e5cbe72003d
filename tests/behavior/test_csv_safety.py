"""Spreadsheet formulas in CSV text are defused with a leading quote (OWASP); numbers stay numbers."""

import csv
import io

import pyarrow as pa
import pyarrow.csv as pacsv
from hypothesis import given, settings
from hypothesis import strategies as st

from behavior.csv_safety import FORMULA_START, neutralize_formulas

texts = st.lists(st.one_of(st.none(), st.text(max_size=12), st.sampled_from(
    ["=cmd|' /C calc'!A0", "+1", "-2", "@SUM(A1)", "\tx", "\rx", "=", "'=x", " =x", "a=b"])), max_size=30)


def read_back(table: pa.Table) -> list[dict[str, str]]:
    buf = io.BytesIO()
    pacsv.write_csv(table, buf)
    return list(csv.DictReader(io.StringIO(buf.getvalue().decode(), newline="")))


@settings(max_examples=200, deadline=None, derandomize=True)
@given(values=texts, dictionary=st.booleans())
def test_text_that_starts_like_a_formula_gets_a_quote_and_nothing_else_changes(values, dictionary):
    col = pa.array(values, pa.string())
    table = pa.table({"text": col.dictionary_encode() if dictionary else col})
    out = neutralize_formulas(table)
    assert out.schema == table.schema
    got = out.column("text").cast(pa.string()).to_pylist() if dictionary else out.column("text").to_pylist()
    assert got == [None if v is None else ("'" + v if v[:1] and v[0] in FORMULA_START else v) for v in values]
    for row, v in zip(read_back(out), values):
        assert not row["text"][:1] or row["text"][0] not in FORMULA_START, (v, row)


def test_numbers_are_left_as_numbers():
    table = pa.table({"amount": pa.array([-12.5, 3.0]), "quantity": pa.array([-1, 2], pa.int32()),
                      "note": pa.array(["-12.5", "+3"])})
    rows = read_back(neutralize_formulas(table))
    assert [(r["amount"], r["quantity"], r["note"]) for r in rows] == [("-12.5", "-1", "'-12.5"), ("3", "2", "'+3")]


def test_chunked_columns_keep_their_chunks_apart():
    col = pa.chunked_array([pa.array(["=a", "b"]), pa.array(["@c"])])
    out = neutralize_formulas(pa.table({"t": col}))
    assert out.column("t").to_pylist() == ["'=a", "b", "'@c"]
