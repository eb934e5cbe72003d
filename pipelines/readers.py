"""Read an input file (CSV, Parquet, JSON Lines) into an Arrow table with source row numbers.

Every record gets `_source_row`: its 1-based position among the file's data records (the
header is not counted; a quoted value spanning lines is one record). Records that cannot be
split into the file's columns are returned separately as `malformed`, with their row number,
so that ingest can quarantine them instead of losing them.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from behavior.errors import InputError

ROW = "_source_row"
FORMATS = {
    ".csv": "csv", ".tsv": "csv", ".txt": "csv",
    ".parquet": "parquet", ".pq": "parquet",
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
}
_SNIFF_BYTES = 64 * 1024
BLOCK_BYTES = 16 << 20   # the CSV reader's blocks (parsed in parallel)


@dataclass
class Source:
    path: Path
    format: str
    table: pa.Table  # source columns (+ ROW); CSV/JSON columns are strings
    malformed: list[tuple[int, str]] = field(default_factory=list)  # (row, raw text)
    notes: list[str] = field(default_factory=list)


def detect_format(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(
            f"{path}: cannot tell the format from the name {path.name!r}; "
            "use a .csv/.tsv/.txt, .parquet or .jsonl/.ndjson file"
        )
    return fmt


def read_source(path: Path, known_names: set[str], *, header: bool | None = None,
                delimiter: str | None = None, encoding: str | None = None) -> Source:
    """Read `path`. `known_names` (lower-case column names the caller can use) decides whether
    a CSV's first line is a header when `header` is None."""
    if not path.exists():
        raise InputError(f"{path}: no such file; check the path")
    if path.is_dir():
        raise InputError(f"{path}: is a folder; pass the files in it, or the folder to ingest as a synth output")
    fmt = detect_format(path)
    try:
        if fmt == "parquet":
            return _with_rows(Source(path, fmt, pq.read_table(path)))
        if fmt == "jsonl":
            return _read_jsonl(path)
        return _read_csv(path, known_names, header=header, delimiter=delimiter, encoding=encoding)
    except (pa.ArrowInvalid, OSError, UnicodeDecodeError) as exc:
        if isinstance(exc, InputError):
            raise
        if isinstance(exc, UnicodeDecodeError) and not encoding:
            # past the first bytes, bytes that neither UTF-8 nor Windows-1252 text holds (0x81, 0x8f, ...)
            raise _not_text(path, f"byte {exc.object[exc.start:exc.start + 1]!r} is not text") from None
        raise InputError(f"{path}: cannot be read as {fmt}: {_short(exc)}") from None


def _short(exc: Exception) -> str:
    return str(exc).splitlines()[0][:300]


def _with_rows(src: Source) -> Source:
    src.table = src.table.append_column(ROW, pa.array(np.arange(1, src.table.num_rows + 1, dtype=np.int64)))
    return src


# the first bytes of binary files people take for tables
_MAGIC = {b"PK\x03\x04": "a zip archive, e.g. an Excel .xlsx workbook", b"\xd0\xcf\x11\xe0": "an old Excel .xls workbook",
          b"PAR1": "a Parquet file: name it .parquet", b"%PDF": "a PDF document", b"\x1f\x8b": "gzip-compressed: unpack it",
          b"SQLite format 3": "an SQLite database"}
_TEXT_CONTROLS = {9, 10, 12, 13, 27}


def refuse_binary(path: Path, head: bytes) -> None:
    """An InputError if the file's first bytes are not text (a NUL byte, control characters,
    or the signature of a workbook, archive or document)."""
    kind = next((what for magic, what in _MAGIC.items() if head.startswith(magic)), None)
    controls = sum(1 for b in head if b < 32 and b not in _TEXT_CONTROLS)
    if kind is None and (b"\x00" in head or controls > max(1, len(head) // 100)):
        kind = "binary content"
    if kind is not None:
        raise _not_text(path, kind)


def _not_text(path: Path, why: str) -> InputError:
    return InputError(f"{path}: is not a text table ({why}); ingest reads CSV or TSV text (UTF-8 or Windows-1252; "
                      "--encoding for another, e.g. utf-16), Parquet (.parquet) and JSON Lines (.jsonl): export the "
                      "data as one of those")


def _read_jsonl(path: Path) -> Source:
    with path.open("rb") as fh:
        refuse_binary(path, fh.read(_SNIFF_BYTES))
    table = pajson.read_json(path)
    # Nested values are not canonical; keep every column as text so validation sees one type.
    cols = {}
    for name, col in zip(table.column_names, table.columns):
        t = col.type
        if pa.types.is_struct(t) or pa.types.is_list(t) or pa.types.is_map(t):
            raise InputError(f"{path}: column {name!r} holds nested values; flatten it before ingest")
        cols[name] = col
    return _with_rows(Source(path, "jsonl", pa.table(cols)))


def _detect_encoding(head: bytes, encoding: str | None) -> tuple[str, list[str]]:
    if encoding:
        return encoding, []
    if head.startswith(b"\xef\xbb\xbf"):
        return "utf-8", ["byte-order mark removed"]
    try:
        head.decode("utf-8")
        return "utf-8", []
    except UnicodeDecodeError as exc:
        if exc.start > len(head) - 4:  # a multi-byte character cut at the sniff boundary
            return "utf-8", []
        return "cp1252", ["not UTF-8: read as Windows-1252 (pass --encoding to choose another)"]


def _sniff(text: str, delimiter: str | None, path: Path) -> str:
    """The explicit delimiter, tab for .tsv, else what csv.Sniffer finds among , ; tab |,
    else the candidate that occurs most often in the first line."""
    if delimiter:
        return delimiter
    if path.suffix.lower() == ".tsv":
        return "\t"
    try:
        return csv.Sniffer().sniff(text, delimiters=",;\t|").delimiter
    except csv.Error:
        first = text.splitlines()[0] if text else ""
        counts = {d: first.count(d) for d in ",;\t|"}
        best = max(counts, key=counts.get)
        return best if counts[best] else ","


@dataclass(frozen=True)
class CsvLayout:
    """How a CSV file is laid out, as sniffed from its first bytes."""
    names: list[str]        # the columns (the header's, made unique; col1.. without one)
    header: bool            # whether the first record is the header
    delimiter: str
    encoding: str
    notes: list[str]        # how the file is read (encoding, header, delimiter), for the report


def sniff_csv(path: Path, known: set[str], *, header: bool | None, delimiter: str | None,
              encoding: str | None) -> CsvLayout:
    """The layout of the CSV file `path` (see `read_source` for `known`). InputError for an
    empty file, a binary one, or a first record that is not CSV."""
    with path.open("rb") as fh:
        head = fh.read(_SNIFF_BYTES)
    if not head.strip():
        raise InputError(f"{path}: the file is empty")
    if not encoding:
        refuse_binary(path, head)
    enc, notes = _detect_encoding(head, encoding)
    text = head.decode(enc, errors="replace").lstrip("\ufeff")
    delim = _sniff(text, delimiter, path)
    try:
        first = next(csv.reader(io.StringIO(text, newline=""), delimiter=delim))
    except csv.Error as exc:
        raise InputError(f"{path}: the first record cannot be read as CSV ({exc}); check the file's encoding "
                         "and delimiter (--encoding, --delimiter)") from None
    first = [c.strip() for c in first]
    if header is None:
        header = any(c.lower() in known for c in first)
    if header:
        names = _unique([c or f"col{i + 1}" for i, c in enumerate(first)])
    else:
        names = [f"col{i + 1}" for i in range(len(first))]
        notes.append(f"no header recognised: columns are named col1..col{len(first)} (use --map)")
    return CsvLayout(names, header, delim, enc, notes)


def _read_csv(path: Path, known: set[str], *, header: bool | None, delimiter: str | None,
              encoding: str | None) -> Source:
    layout = sniff_csv(path, known, header=header, delimiter=delimiter, encoding=encoding)
    names, header, delim, enc, notes = layout.names, layout.header, layout.delimiter, layout.encoding, list(layout.notes)
    malformed: list[tuple[int, str]] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        malformed.append((-1, row.text))
        return "skip"

    try:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=1 if header else 0,
                                           encoding=enc, block_size=BLOCK_BYTES),
            # Without line breaks inside quotes, every line is a record: the reader may split the
            # file at any line (in parallel; allowing them splits by a serial scan, 2.5x the cost).
            parse_options=pacsv.ParseOptions(delimiter=delim,
                                             newlines_in_values=quoted_line_breaks(path, enc),
                                             invalid_row_handler=on_invalid),
            convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in names},
                                                 strings_can_be_null=False),
        )
    except pa.ArrowInvalid as exc:
        if "invalid UTF8" in str(exc) and not encoding and enc == "utf-8":
            return _read_csv(path, known, header=header, delimiter=delim, encoding="cp1252")
        raise

    src = Source(path, "csv", table, notes=notes)
    if malformed:
        # Row numbers of the good records are only exact when we know where the bad ones were:
        # read again record by record (slow, but only for files that need it).
        src = _read_csv_slow(path, names, header, delim, enc, notes)
    else:
        src = _with_rows(src)
    if delim != ",":
        src.notes.append(f"delimiter {delim!r}")
    return src


# the bytes of quotes and line breaks (a carriage return read as a line feed), all others dropped
_QUOTES_AND_BREAKS = bytes.maketrans(b"\r", b"\n"), bytes(set(range(256)) - {0x22, 0x0A, 0x0D})


def quoted_line_breaks(path: Path, encoding: str, chunk: int = 16 << 20) -> bool:
    """Whether a line break of the file may lie inside a quoted value: true unless every line
    holds an even number of quote characters (a doubled quote inside a value counts two), or
    when the encoding may hold those bytes inside other characters (UTF-16)."""
    if encoding.lower().replace("_", "-") not in ("utf-8", "cp1252"):
        return True
    rest = b""   # the quotes of the line a chunk ends in
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            marks = rest + block.translate(*_QUOTES_AND_BREAKS)
            end = marks.rfind(b"\n") + 1
            # lines reduced to their quotes: a file has few distinct ones
            if any(line.count(b'"') % 2 for line in set(marks[:end].split(b"\n"))):
                return True
            rest = marks[end:]
    return rest.count(b'"') % 2 == 1


def _read_csv_slow(path: Path, names: list[str], header: bool, delim: str, enc: str,
                   notes: list[str]) -> Source:
    rows: list[list[str]] = []
    numbers: list[int] = []
    malformed: list[tuple[int, str]] = []
    with path.open("r", encoding="utf-8-sig" if enc == "utf-8" else enc, newline="") as fh:
        reader = csv.reader(fh, delimiter=delim)
        if header:
            next(reader, None)
        try:
            for n, rec in enumerate(reader, start=1):
                if len(rec) == len(names):
                    rows.append(rec)
                    numbers.append(n)
                elif rec and any(v.strip() for v in rec):
                    malformed.append((n, delim.join(rec)))
        except csv.Error as exc:
            raise InputError(f"{path}: line {reader.line_num} cannot be read as CSV ({exc}); nothing of the "
                             "file was stored: fix or remove that line and ingest the file again") from None
    cols = list(zip(*rows)) if rows else [[] for _ in names]
    table = pa.table({name: pa.array(col, pa.string()) for name, col in zip(names, cols)})
    table = table.append_column(ROW, pa.array(numbers, pa.int64()))
    return Source(path, "csv", table, malformed=malformed, notes=notes)


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        k = seen.get(n, 0)
        out.append(n if k == 0 else f"{n}_{k + 1}")
        seen[n] = k + 1
    return out
