"""SQL expressions that turn source values into canonical typed values.

Each builder takes the SQL of a source value and its Arrow type and returns the SQL of the
parsed value, NULL where it cannot be parsed. Text is trimmed of every whitespace character
(`behavior.ids.trim_sql`, the one normalisation of ids); an empty text or a missing-value
marker (`NA_VALUES`: what spreadsheets, R, pandas and databases write for "no value") is missing.
The SQL is one text for both engines: each builder takes a `dialect` (default DuckDB) and
what differs (regular expressions, strptime, casts to an instant, string literals) comes from
its templates in `behavior.sql_dialect`.

Dates: ISO 8601 (with `T`, `Z` or an offset; a naive time is taken as UTC), slash dates
month-first unless `dayfirst` (`12/01/2024` is 1 December with dayfirst, 12 January
without), dotted dates (`31.12.2024`, always day-first), `01 Dec 2024`, `Dec 01 2024`,
`20241201`, and Unix epochs in seconds (9-10 digits: 1973 to 2286) or milliseconds (12-13
digits).
Numbers: `1234.5`, `1,234.50` (comma thousands), `1234,50` and `1.234,50` (decimal comma
with one or two decimals), currency signs and spaces ignored, `(12.50)` is -12.50.
"""

from __future__ import annotations

import re

import pyarrow as pa

from behavior.errors import InputError
from behavior.ids import normalize_id, trim_sql
from behavior.sql_dialect import DATE_CODES, DUCKDB, Dialect

# Missing-value markers: R and pandas (NA, NaN, None), Excel (#N/A), databases (NULL), people (-).
NA_VALUES: tuple[str, ...] = ("NA", "N/A", "#N/A", "null", "NULL", "None", "nan", "NaN", "-")
_SLASH_TIMES = ("%H:%M:%S", "%H:%M", "%I:%M:%S %p", "%I:%M %p")
# regular expressions (whole-text matches) of the number and epoch readers
_EPOCH_S = r"[0-9]{9,10}(\.[0-9]+)?"
_EPOCH_MS = r"[0-9]{12,13}"
# A number as people write it: a currency or unit before or after it ("€ 7,90", "12.50 USD"),
# thousands grouped by commas, dots, spaces or apostrophes, a decimal comma, a negative in
# parentheses. Only the text around the number is dropped, never a character between its digits:
# "0x1A" or "1A2" is no number (rejected), where dropping every other character read them as 1 and 12.
_PREFIX = r"^([-+(]?)[^0-9.+\-(]+"    # a currency before the number, after its sign ("-$5", "(€3)")
_SUFFIX = r"[^0-9.)+\-]+(\)?)$"       # a currency or unit after it, before a closing parenthesis
_SPACED_THOUSANDS = "[-+(]?[0-9]{1,3}([ '\u00a0\u202f][0-9]{3})+([.,][0-9]+)?\\)?"
_GROUP_SPACES = "[ '\u00a0\u202f]"
_PARENTHESISED = r"\(.*\)"
_COMMA_THOUSANDS = r"[-+]?[0-9]{1,3}(,[0-9]{3})+(\.[0-9]+)?"
_DOT_THOUSANDS = r"[-+]?[0-9]{1,3}(\.[0-9]{3})+,[0-9]{1,2}"
_DECIMAL_COMMA = r"[-+]?[0-9]+,[0-9]{1,2}"


def text(expr: str, typ: pa.DataType | None, d: Dialect = DUCKDB, na_values: tuple[str, ...] = NA_VALUES,
         plain: tuple[str, ...] = ()) -> str:
    """Trimmed text of a source value, NULL when missing, empty or one of `na_values`. `plain`:
    values a column mostly holds, written as they are stored (a listed column's: 'success'),
    which skip the tests of their ends and the markers."""
    if typ is None:
        return f"CAST(NULL AS {d.string_type})"
    markers = ", ".join(d.literal(v) for v in ("", *na_values))
    longest = max(len(v.encode()) for v in ("", *na_values))

    # the first characters of the markers (but ''), each a range of texts to compare bytes with
    firsts = sorted({v[0] for v in na_values if v})
    ascii_firsts = all(c < "\x7f" for c in firsts)

    def unless_marker(e: str, first: bool = False) -> str:
        # a test of the length first: most values are longer than every marker, and `IN`
        # compares the value with each of them (a tenth of the validation's text cleaning); and,
        # where `e` is a source value that is not empty (`first`), of its first character (not
        # of a trim, which it would repeat); bytes, which need no count of characters
        pre = f" AND {first_in(e, d, *firsts)}" if first and firsts and ascii_firsts else ""
        return f"CASE WHEN {d.byte_length.format(e)} <= {longest}{pre} AND {e} IN ({markers}) THEN NULL ELSE {e} END"

    if not (pa.types.is_string(typ) or pa.types.is_large_string(typ)):
        return unless_marker(as_text(expr, typ, d))   # the text of a number or time has no spaces

    # Trimming every Unicode space is costly, and `IN` repeats its operand for each marker: a
    # text that starts and ends with a printable ASCII character (most) has nothing to trim.
    cleaned = (f"CASE WHEN {d.printable_ends.format(expr)} "
               f"THEN {unless_marker(expr, first=True)} ELSE {unless_marker(trim_sql(expr, d.literal))} END")
    as_written = [v for v in plain if v not in na_values and v.strip() == v and v.isprintable() and v]
    if not as_written:
        return cleaned
    whens = " ".join(f"WHEN {d.literal(v)} THEN {expr}" for v in as_written)
    return f"CASE {expr} {whens} ELSE {cleaned} END"


def number_text(expr: str, typ: pa.DataType | None, d: Dialect = DUCKDB, na_values: tuple[str, ...] = NA_VALUES) -> str:
    """The text a number is parsed from: the source value as sent where it starts with a digit,
    else its `text`. A value starting with a digit has no whitespace before it and is no
    marker, and the cast skips the whitespace `text` trims from its end: the cleaning, whose
    test of the last character is most of its cost, is left to the values that need it (three
    number columns of a 1M-line CSV: 0.09 of its 1.2 CPU seconds of validation). Such a text
    may end in whitespace, so it is trimmed where the cast fails, before it is normalised
    (`number(.., as_sent=True)`: '12.50 (USD) '), and where it is shown or hashed
    (`behavior.validate`). For the columns `as_sent_numbers` allows: the caller decides."""
    return f"CASE WHEN {first_in(expr, d, '0-9')} THEN {expr} ELSE {text(expr, typ, d, na_values)} END"


def as_sent_numbers(typ: pa.DataType | None, na_values: tuple[str, ...], default: str | None = None) -> bool:
    """Whether `number_text` keeps a text source's numbers as sent: not where a marker starts
    with a digit (`--na-values 0`), which must still read as missing, nor where the column's
    default has whitespace at its ends (the trimming of what is hashed would change it)."""
    is_text = typ is not None and (pa.types.is_string(typ) or pa.types.is_large_string(typ))
    return (is_text and not any(v and "0" <= v[0] <= "9" for v in na_values)
            and (default is None or normalize_id(default) == default))


def first_in(expr: str, d: Dialect, *ranges: str) -> str:
    """SQL: whether the text `expr` starts with a character in one of `ranges` (each 'a-z' or
    one character; ASCII), by comparing bytes: no function call, unlike `left` or `starts_with`."""
    tests = []
    for r in ranges:
        lo, hi = (r[0], r[-1]) if len(r) == 3 and r[1] == "-" else (r, r)
        tests.append(f"({expr} >= {d.literal(lo)} AND {expr} < {d.literal(chr(ord(hi) + 1))})")
    return "(" + " OR ".join(tests) + ")"


def as_text(expr: str, typ: pa.DataType | None, d: Dialect = DUCKDB) -> str:
    """Text of a typed value, the same on both engines (a float as DuckDB writes it: Spark's
    own cast writes 12345678.0 as 1.2345678E7)."""
    if typ is not None and pa.types.is_floating(typ):
        return d.float_text.format(expr)
    return f"CAST({expr} AS {d.string_type})"


def check_date_format(fmt: str) -> str:
    """`fmt` if it is a strftime pattern both engines read; else an InputError naming
    `--date-format` and the codes it may use."""
    codes = re.findall(r"%.?", fmt)
    unknown = sorted({c for c in codes if c not in DATE_CODES})
    if unknown or not set(codes) - {"%%"}:
        what = f"{', '.join(unknown)} is not a code it may use" if unknown else "it has no date code"
        raise InputError(f"--date-format {fmt!r}: {what}; write the dates' strftime pattern with "
                         f"{' '.join(c for c in DATE_CODES if c != '%%')}, e.g. --date-format '%d/%m/%Y %H:%M' "
                         "(Unix epochs need no option: they are read as they are)")
    return fmt


def slash_formats(dayfirst: bool) -> list[str]:
    """The patterns whose order of day and month is a choice (`12/01/2024`, `12-01-24 10:00`)."""
    d, m = ("%d", "%m") if dayfirst else ("%m", "%d")
    fmts = []
    for sep in ("/", "-"):
        for year in ("%Y", "%y"):
            day = f"{d}{sep}{m}{sep}{year}"
            fmts += [f"{day} {t}" for t in _SLASH_TIMES] + [day]
    return fmts


def date_formats(dayfirst: bool) -> list[str]:
    """Every pattern read without --date-format, in the order tried."""
    fmts = slash_formats(dayfirst)
    for t in ("%H:%M:%S", "%H:%M"):
        fmts += [f"%d.%m.%Y {t}", f"%Y/%m/%d {t}", f"%d %b %Y {t}", f"%b %d %Y {t}", f"%d-%b-%Y {t}"]
    fmts += ["%d.%m.%Y", "%Y/%m/%d", "%d %b %Y", "%b %d %Y", "%d-%b-%Y", "%b %d, %Y", "%Y%m%d"]
    return fmts


def timestamp(expr: str, typ: pa.DataType | None, *, dayfirst: bool = False,
              date_format: str | None = None, t: str | None = None, d: Dialect = DUCKDB) -> str:
    """Parsed instant (DuckDB TIMESTAMPTZ, Spark TIMESTAMP; UTC); requires the session time
    zone to be UTC. `t` names the already computed text of the value, if any."""
    instant = d.instant_type
    if typ is None:
        return f"CAST(NULL AS {instant})"
    if pa.types.is_timestamp(typ) or pa.types.is_date(typ):
        return f"CAST({expr} AS {instant})"
    if pa.types.is_integer(typ) or pa.types.is_floating(typ):
        return (f"CASE WHEN {expr} > 100000000000 THEN {d.epoch_seconds.format(f'{expr} / 1000.0')} "
                f"ELSE {d.epoch_seconds.format(expr)} END")
    t = t or text(expr, typ, d)
    if date_format:
        return f"CAST({d.try_strptime(t, [date_format])} AS {instant})"
    seconds = d.epoch_seconds.format(f"CAST({t} AS DOUBLE)")
    millis = d.epoch_seconds.format(f"CAST({t} AS DOUBLE) / 1000.0")
    return (
        f"COALESCE({d.try_instant.format(t)}, "
        f"CAST({d.try_strptime(t, date_formats(dayfirst))} AS {instant}), "
        f"CASE WHEN {d.full_match(t, _EPOCH_S)} THEN {seconds} "
        f"WHEN {d.full_match(t, _EPOCH_MS)} THEN {millis} END)"
    )


def _number_text(t: str, d: Dialect) -> str:
    """Normalise a number written by people into one `CAST(.. AS DOUBLE)` can read."""
    keep = d.group_ref.format(1)
    bare = d.replace_all(d.replace_all(t, _PREFIX, keep), _SUFFIX, keep)
    s = (f"(CASE WHEN {d.full_match(bare, _SPACED_THOUSANDS)} THEN {d.replace_all(bare, _GROUP_SPACES, '')} "
         f"ELSE {bare} END)")
    neg = f"(CASE WHEN {d.full_match(s, _PARENTHESISED)} THEN '-' ELSE '' END)"
    core = d.replace_all(s, "[()]", "")
    return (
        f"({neg} || CASE "
        f"WHEN {d.full_match(core, _COMMA_THOUSANDS)} THEN replace({core}, ',', '') "
        f"WHEN {d.full_match(core, _DOT_THOUSANDS)} "
        f"THEN replace(replace({core}, '.', ''), ',', '.') "
        f"WHEN {d.full_match(core, _DECIMAL_COMMA)} THEN replace({core}, ',', '.') "
        f"ELSE {core} END)"
    )


def decimal(expr: str, typ: pa.DataType | None, t: str | None = None, d: Dialect = DUCKDB,
            as_sent: bool = False) -> str:
    """Parsed DECIMAL(18,2). A plain number is cast directly; others are normalised first
    (trimmed before, where `t` may hold the value as sent: `number_text`)."""
    if typ is None:
        return "CAST(NULL AS DECIMAL(18,2))"
    if pa.types.is_integer(typ) or pa.types.is_floating(typ) or pa.types.is_decimal(typ):
        return f"TRY_CAST({expr} AS DECIMAL(18,2))"
    t = t or text(expr, typ, d)
    return f"TRY_CAST({_number(t, d, as_sent)} AS DECIMAL(18,2))"


def number(expr: str, typ: pa.DataType | None, t: str | None = None, d: Dialect = DUCKDB,
           as_sent: bool = False) -> str:
    """Parsed DOUBLE (used for integers before the whole-number check); `as_sent` as for `decimal`."""
    if typ is None:
        return "CAST(NULL AS DOUBLE)"
    if pa.types.is_integer(typ) or pa.types.is_floating(typ) or pa.types.is_decimal(typ):
        return f"CAST({expr} AS DOUBLE)"
    return _number(t or text(expr, typ, d), d, as_sent)


def _number(t: str, d: Dialect, as_sent: bool = False) -> str:
    # CASE, not COALESCE: DuckDB evaluates a COALESCE's repeated subexpressions (the normalised
    # text) on every row, while a CASE branch runs only on the rows that take it (8x the cost).
    # DuckDB's cast reads digits around an underscore as one number ('1_0' is 10; Spark's
    # does not): nothing may stand between a number's digits, so such a text is no number.
    # Searched for only in texts of 3 bytes or more (most quantities and line numbers are
    # shorter): the search in every value of three number columns cost 4.5% of the validation.
    plain = f"TRY_CAST({t} AS DOUBLE)"
    normalised = _number_text(trim_sql(t, d.literal) if as_sent else t, d)
    underscore = f"{d.byte_length.format(t)} >= 3 AND contains({t}, '_')"
    return (f"CASE WHEN {plain} IS NOT NULL AND NOT ({underscore}) THEN {plain} "
            f"WHEN {underscore} THEN NULL ELSE TRY_CAST({normalised} AS DOUBLE) END")


def boolean(expr: str, typ: pa.DataType | None, t: str | None = None, d: Dialect = DUCKDB) -> str:
    if typ is None:
        return "CAST(NULL AS BOOLEAN)"
    if pa.types.is_boolean(typ):
        return expr
    t = f"lower({t or text(expr, typ, d)})"
    return (f"CASE WHEN {t} IN ('true', 't', 'yes', 'y', '1', '1.0') THEN TRUE "
            f"WHEN {t} IN ('false', 'f', 'no', 'n', '0', '0.0') THEN FALSE END")
