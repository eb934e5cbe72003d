"""SQL expressions that turn source values into canonical typed values.

Each builder takes the SQL of a source value and its Arrow type and returns the SQL of the
parsed value, NULL where it cannot be parsed. Text is trimmed; an empty string is missing.
The SQL is DuckDB's dialect, kept to a small set of functions so that it can be ported.

Dates: ISO 8601 (with `T`, `Z` or an offset; a naive time is taken as UTC), slash dates
month-first unless `dayfirst` (`12/01/2024` is 1 December with dayfirst, 12 January
without), dotted dates (`31.12.2024`, always day-first), `01 Dec 2024`, `Dec 01 2024`,
`20241201`, and Unix epochs in seconds (10 digits) or milliseconds (13 digits).
Numbers: `1234.5`, `1,234.50` (comma thousands), `1234,50` and `1.234,50` (decimal comma
with one or two decimals), currency signs and spaces ignored, `(12.50)` is -12.50.
"""

from __future__ import annotations

import pyarrow as pa

_SLASH_TIMES = ("%H:%M:%S", "%H:%M", "%I:%M:%S %p", "%I:%M %p")


def sql_str(value: str) -> str:
    """A SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def text(expr: str, typ: pa.DataType | None) -> str:
    """Trimmed text of a source value, NULL when missing or empty."""
    if typ is None:
        return "CAST(NULL AS VARCHAR)"
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        return f"NULLIF(TRIM({expr}), '')"
    return f"NULLIF(TRIM(CAST({expr} AS VARCHAR)), '')"


def date_formats(dayfirst: bool) -> list[str]:
    d, m = ("%d", "%m") if dayfirst else ("%m", "%d")
    fmts = []
    for sep in ("/", "-"):
        for year in ("%Y", "%y"):
            day = f"{d}{sep}{m}{sep}{year}"
            fmts += [f"{day} {t}" for t in _SLASH_TIMES] + [day]
    for t in ("%H:%M:%S", "%H:%M"):
        fmts += [f"%d.%m.%Y {t}", f"%Y/%m/%d {t}", f"%d %b %Y {t}", f"%b %d %Y {t}", f"%d-%b-%Y {t}"]
    fmts += ["%d.%m.%Y", "%Y/%m/%d", "%d %b %Y", "%b %d %Y", "%d-%b-%Y", "%b %d, %Y", "%Y%m%d"]
    return fmts


def timestamp(expr: str, typ: pa.DataType | None, *, dayfirst: bool = False,
              date_format: str | None = None, t: str | None = None) -> str:
    """Parsed TIMESTAMPTZ (UTC); requires the session time zone to be UTC. `t` names the
    already computed text of the value, if any."""
    if typ is None:
        return "CAST(NULL AS TIMESTAMPTZ)"
    if pa.types.is_timestamp(typ) or pa.types.is_date(typ):
        return f"CAST({expr} AS TIMESTAMPTZ)"
    if pa.types.is_integer(typ) or pa.types.is_floating(typ):
        return (f"CASE WHEN {expr} > 100000000000 THEN to_timestamp({expr} / 1000.0) "
                f"ELSE to_timestamp({expr}) END")
    t = t or text(expr, typ)
    if date_format:
        return f"CAST(try_strptime({t}, {sql_str(date_format)}) AS TIMESTAMPTZ)"
    fmts = "[" + ", ".join(sql_str(f) for f in date_formats(dayfirst)) + "]"
    return (
        f"COALESCE(TRY_CAST({t} AS TIMESTAMPTZ), "
        f"CAST(try_strptime({t}, {fmts}) AS TIMESTAMPTZ), "
        f"CASE WHEN regexp_full_match({t}, '[0-9]{{10}}(\\.[0-9]+)?') THEN to_timestamp(CAST({t} AS DOUBLE)) "
        f"WHEN regexp_full_match({t}, '[0-9]{{13}}') THEN to_timestamp(CAST({t} AS DOUBLE) / 1000.0) END)"
    )


def _number_text(t: str) -> str:
    """Normalise a number written by people into one `CAST(.. AS DOUBLE)` can read."""
    s = f"regexp_replace({t}, '[^0-9,.()+\\-eE]', '', 'g')"
    neg = f"(CASE WHEN regexp_full_match({s}, '\\(.*\\)') THEN '-' ELSE '' END)"
    core = f"regexp_replace({s}, '[()]', '', 'g')"
    return (
        f"({neg} || CASE "
        f"WHEN regexp_full_match({core}, '[-+]?[0-9]{{1,3}}(,[0-9]{{3}})+(\\.[0-9]+)?') THEN replace({core}, ',', '') "
        f"WHEN regexp_full_match({core}, '[-+]?[0-9]{{1,3}}(\\.[0-9]{{3}})+,[0-9]{{1,2}}') "
        f"THEN replace(replace({core}, '.', ''), ',', '.') "
        f"WHEN regexp_full_match({core}, '[-+]?[0-9]+,[0-9]{{1,2}}') THEN replace({core}, ',', '.') "
        f"ELSE {core} END)"
    )


def decimal(expr: str, typ: pa.DataType | None, t: str | None = None) -> str:
    """Parsed DECIMAL(18,2). A plain number is cast directly; others are normalised first."""
    if typ is None:
        return "CAST(NULL AS DECIMAL(18,2))"
    if pa.types.is_integer(typ) or pa.types.is_floating(typ) or pa.types.is_decimal(typ):
        return f"TRY_CAST({expr} AS DECIMAL(18,2))"
    t = t or text(expr, typ)
    return f"TRY_CAST({_number(t)} AS DECIMAL(18,2))"


def number(expr: str, typ: pa.DataType | None, t: str | None = None) -> str:
    """Parsed DOUBLE (used for integers before the whole-number check)."""
    if typ is None:
        return "CAST(NULL AS DOUBLE)"
    if pa.types.is_integer(typ) or pa.types.is_floating(typ) or pa.types.is_decimal(typ):
        return f"CAST({expr} AS DOUBLE)"
    return _number(t or text(expr, typ))


def _number(t: str) -> str:
    return f"COALESCE(TRY_CAST({t} AS DOUBLE), TRY_CAST({_number_text(t)} AS DOUBLE))"


def boolean(expr: str, typ: pa.DataType | None, t: str | None = None) -> str:
    if typ is None:
        return "CAST(NULL AS BOOLEAN)"
    if pa.types.is_boolean(typ):
        return expr
    t = f"lower({t or text(expr, typ)})"
    return (f"CASE WHEN {t} IN ('true', 't', 'yes', 'y', '1', '1.0') THEN TRUE "
            f"WHEN {t} IN ('false', 'f', 'no', 'n', '0', '0.0') THEN FALSE END")
