"""The CSV reader: a file whose quoted values hold no line break is read by lines (in parallel
blocks); one that may hold them, record by record. Both give what a record-by-record read gives."""

import pyarrow as pa
import pyarrow.csv as pacsv
from hypothesis import HealthCheck, given, settings, strategies as st

from pipelines.readers import ROW, quoted_line_breaks, read_source

value = st.text(st.sampled_from(list('ab,"\n\r é')), max_size=8)


def _field(v: str) -> str:
    return '"' + v.replace('"', '""') + '"' if any(c in v for c in ',"\r\n') else v


def _records(path, names, block):
    """The reference: pyarrow reading record by record (line breaks allowed inside quotes), in
    blocks of `block` bytes."""
    return pacsv.read_csv(path, read_options=pacsv.ReadOptions(column_names=names, skip_rows=1, block_size=block),
                          parse_options=pacsv.ParseOptions(newlines_in_values=True),
                          convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in names},
                                                               strings_can_be_null=False))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(value, value), min_size=1, max_size=30), crlf=st.booleans())
def test_the_read_is_the_record_by_record_read_whatever_the_quoted_values_hold(tmp_path_factory, monkeypatch, rows,
                                                                              crlf):
    monkeypatch.setattr("pipelines.readers.BLOCK_BYTES", 64)   # many blocks: a record may span two
    path = tmp_path_factory.mktemp("csv") / "payments.csv"
    end = "\r\n" if crlf else "\n"
    lines = ["user_id,item_id"] + [f"{_field('u' + a)},{_field('i' + b)}" for a, b in rows]   # no empty records
    path.write_bytes(end.join(lines).encode() + end.encode())
    src = read_source(path, {"user_id", "item_id"}, delimiter=",")
    assert src.table.drop_columns([ROW]).to_pylist() == _records(path, ["user_id", "item_id"], 64).to_pylist()
    assert src.table.column(ROW).to_pylist() == list(range(1, len(rows) + 1)) and not src.malformed


def test_a_line_break_inside_quotes_is_found_across_the_scans_chunks(tmp_path):
    path = tmp_path / "a.csv"
    path.write_bytes(b'a,b\n1,"x""y"\n2,"z"\r\n3,"a\rb"\n')
    assert all(quoted_line_breaks(path, "utf-8", chunk=n) for n in (1, 2, 3, 5, 1 << 20))
    path.write_bytes(b'a,b\n1,"x""y"\n2,"z"\r\n3,"ab"')   # quotes closed on every line, no final break
    assert not any(quoted_line_breaks(path, "utf-8", chunk=n) for n in (1, 2, 3, 5, 1 << 20))
    path.write_bytes(b'a,b\n1,"x\n')   # a quote never closed
    assert quoted_line_breaks(path, "utf-8") and quoted_line_breaks(path, "utf-8", chunk=2)
    assert quoted_line_breaks(path, "utf-16")   # its bytes of a quote may be part of another character
