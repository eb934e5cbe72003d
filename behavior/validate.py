"""Validation of source rows into a canonical table: every row is accepted, a duplicate, or
rejected with one reason.

`validate` runs one SQL statement (on an Arrow table registered with the engine: DuckDB, or
Spark for `behavior ingest --engine spark`) that maps and parses the columns and names the
first problem of each row; the statement is one text rendered for the engine's dialect
(`behavior.sql_dialect`). Card numbers are then confirmed with the Luhn check in numpy on
the driver (only rows the SQL flagged as holding a 13-19 digit run); line numbers are
derived and repeated keys resolved only where needed (window functions are the costly part,
so the common case of unique keys skips them), again by SQL on the engine.
Reason codes, in the order in which they are checked (a row gets the first that applies):

card_number        any stored text field holds a card number (masked in the detail)
missing_<column>   a required column is empty or holds a missing-value marker (NA, #N/A, null, ...)
bad_<column>       a value cannot be parsed (date, number, whole number, yes/no, listed value), or
                   an id holds a control character (`behavior.ids`)
date_out_of_range  a time before 1970, or more than a day in the future (except the times of a
                   schedule, which may lie ahead: see FUTURE_TIMES)
user_id_email / user_id_phone   the customer id looks like personal contact data
unknown_currency   not an ISO 4217 code
currency_mismatch  not the lake's reporting currency (one reporting currency per lake)
conflicting_key    the same key twice in one input with different values
erased_user        the user asked to be forgotten (see `behavior forget`)

Exact repeats of a row (same key, same values) are duplicates: stored once, counted apart.
"""

from __future__ import annotations

import mmap
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone

from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from behavior import parsing as P
from behavior.currencies import ISO_4217
from behavior.date_order import decide_date_order, order_texts
from behavior.errors import SchemaError
from behavior.ids import CONTROL_PATTERN, control_sql, trim_sql
from behavior.pii import CARD_CANDIDATE_PATTERN, EMAIL_PATTERN, PHONE_PATTERN, has_card_number, mask_card_numbers
from behavior.schema import ROW, Column, Table
from behavior.sql_dialect import DUCKDB, Dialect, DuckDBEngine, as_engine

STATUS_SYNONYMS = {
    "success": "success", "succeeded": "success", "successful": "success", "completed": "success",
    "complete": "success", "paid": "success", "ok": "success", "settled": "success",
    "failed": "failed", "failure": "failed", "declined": "failed", "error": "failed", "rejected": "failed",
    "refund": "refund", "refunded": "refund", "returned": "refund", "chargeback": "refund",
}
# Times that name a schedule rather than an event: a promotion running for weeks, or one
# scheduled to start next month, is ingested while it runs or before it starts. They keep
# the 1970 lower bound only.
FUTURE_TIMES: dict[str, frozenset[str]] = {"promotions": frozenset({"starts_at", "ends_at"})}
GROUP_SYNONYMS = {"treatment": "treatment", "treated": "treatment", "test": "treatment", "t": "treatment",
                  "control": "control", "holdout": "control", "c": "control"}


@dataclass(frozen=True)
class ParseOptions:
    currency: str = "EUR"  # the lake's reporting currency
    dayfirst: bool = False   # every date column day-first (--dayfirst); else decided per column
    date_format: str | None = None
    na_values: tuple[str, ...] = P.NA_VALUES   # texts that mean "no value" (--na-values)
    dayfirst_columns: frozenset[str] = frozenset()   # columns decided day-first (behavior.date_order)
    now: datetime = field(default_factory=lambda: datetime.now(timezone.utc))


@dataclass
class Validated:
    accepted: pa.Table   # canonical columns, typed
    rejected: pa.Table   # ROW, reason, detail
    duplicates: int      # exact repeats inside the input
    notes: list[str] = field(default_factory=list)   # how the input was read (e.g. a column read day-first)


def resolve_columns(spec: Table, source_names: list[str], mapping: dict[str, str],
                    defaults: dict[str, str], source: str) -> dict[str, str | None]:
    """Canonical column -> source column (or None). Raises SchemaError naming the fix."""
    unknown = sorted(set(mapping) - set(spec.names) - {"unit_price"})
    if unknown:
        raise SchemaError(f"{source}: --map names {', '.join(unknown)}, which the {spec.name} table does not "
                          f"have; its columns are {', '.join(spec.names)}")
    lower = {n.lower(): n for n in source_names}
    out: dict[str, str | None] = {}
    for name in (*spec.names, *(("unit_price",) if spec.name == "payments" else ())):
        src = mapping.get(name)
        if src is not None and src not in source_names:
            src = lower.get(src.lower())
            if src is None:
                raise SchemaError(f"{source}: --map {name}={mapping[name]} names a column the file does not have; "
                                  f"its columns are {', '.join(source_names)}")
        out[name] = src if src is not None else lower.get(name)
    missing = [c.name for c in spec.columns if c.required and out[c.name] is None and c.name not in defaults]
    if missing:
        cols = ", ".join(n for n in source_names if n != ROW)
        hint = " ".join(f"--map {m}=<column>" for m in missing)
        raise SchemaError(f"{source}: no column for required {', '.join(missing)}; the file's columns are "
                          f"{cols}; name them with {hint}")
    return out


_SPREADSHEET_ID = r"^([0-9]+)\.0+$"


def _spreadsheet_id(t: str, d: Dialect) -> str:
    """Numeric ids that went through a spreadsheet come back as 17850.0: drop the '.0'. (Such
    an id starts with a digit, a comparison of bytes that spares most ids the search.)"""
    return f"CASE WHEN {P.first_in(t, d, '0-9')} AND contains({t}, '.0') THEN {d.replace_all(t, _SPREADSHEET_ID, d.group_ref.format(1))} ELSE {t} END"


def id_text_sql(column: str, typ: pa.DataType | None, d: Dialect = DUCKDB,
                na_values: tuple[str, ...] = P.NA_VALUES) -> str:
    """SQL of the canonical text validation stores for an id from source column `column` (no
    default): what the erasure check must hash to recognise an erased user's rows."""
    return _spreadsheet_id(P.text(_q(column, d), typ, d, na_values), d)


def _q(name: str, d: Dialect = DUCKDB) -> str:
    quote = d.ident[0]
    return quote + name.replace(quote, quote * 2) + quote


def _list(values, d: Dialect) -> str:
    return "(" + ", ".join(d.literal(v) for v in sorted(values)) + ")"


def _map_case(t: str, synonyms: dict[str, str], d: Dialect) -> str:
    return _as_stored(t, [k for k, v in synonyms.items() if k == v], _lookup(t, synonyms, d), d)


def _as_stored(t: str, stored: list[str] | tuple[str, ...], otherwise: str, d: Dialect) -> str:
    """`t` where it is one of the values `stored` (most values are written as they are stored:
    they skip lower() and the list of synonyms), else `otherwise`. A CASE, not IN: DuckDB turns
    an IN list into a join, which does not keep the rows' order."""
    whens = " ".join(f"WHEN {d.literal(v)} THEN {t}" for v in stored)
    return f"CASE {t} {whens} ELSE {otherwise} END"


def _lookup(t: str, synonyms: dict[str, str], d: Dialect) -> str:
    whens = " ".join(f"WHEN {d.literal(k)} THEN {d.literal(v)}" for k, v in synonyms.items())
    return f"CASE lower({t}) {whens} END"


def _column_sql(col: Column, src: str | None, types: dict[str, pa.DataType], default: str | None,
                opts: ParseOptions, d: Dialect, as_sent: bool = False) -> tuple[str | None, str, str]:
    """(base SQL, value SQL, parsed SQL) of one canonical column.

    The value SQL becomes the column `t_<name>`: trimmed text for text sources, the source
    value itself for typed sources (a Parquet timestamp is not turned into text and back).
    The parsed SQL reads `t_<name>`. An id's trimmed text is its base (the column `BASE +
    name` of the step before; None for other columns), which its value SQL mentions five times
    (the test for a spreadsheet's '17850.0'): written out, it made the SQL a quarter longer,
    and DuckDB's planning, which most of a small file's ingest is, that much slower. `as_sent`:
    a number column whose text is kept as sent where it starts with a digit (`_as_sent`)."""
    typ = types.get(src) if src else None
    tc = f"t_{col.name}"
    is_text = typ is None or pa.types.is_string(typ) or pa.types.is_large_string(typ) or col.type == "string"
    base = None
    if is_text:
        if not src:
            t = f"CAST(NULL AS {d.string_type})"
        elif as_sent:
            t = P.number_text(_q(src, d), typ, d, opts.na_values)
        else:
            t = P.text(_q(src, d), typ, d, opts.na_values, col.choices or ())
        if default is not None:
            t = f"COALESCE({t}, {d.literal(default)})"
        if col.is_id:
            base, t = t, _spreadsheet_id(_q(BASE + col.name, d), d)
        expr, etyp = "NULL", pa.string()
    else:
        t, expr, etyp = _q(src, d), tc, typ
        if pa.types.is_floating(typ):   # NaN is how a float column says "no value"
            t = f"CASE WHEN isnan({t}) THEN NULL ELSE {t} END"
    if col.type == "string":
        if col.name == "currency":
            return base, t, f"upper({tc})"
        if col.name == "status":
            return base, t, _map_case(tc, STATUS_SYNONYMS, d)
        if col.name == "group":
            return base, t, _map_case(tc, GROUP_SYNONYMS, d)
        if col.name == "channel":
            # a CASE on the value, not IN: DuckDB turns an IN list into a join
            listed = _lookup(tc, {c: c for c in col.choices}, d)
            other = f"CASE WHEN {tc} IS NULL THEN NULL ELSE COALESCE({listed}, 'other') END"
            return base, t, _as_stored(tc, col.choices, other, d)
        return base, t, tc

    dayfirst = opts.dayfirst or col.name in opts.dayfirst_columns

    def parse(e: str, ty: pa.DataType, text: str | None) -> str:
        if col.type == "int":
            return P.number(e, ty, t=text, d=d, as_sent=as_sent)
        if col.type == "decimal":
            return P.decimal(e, ty, t=text, d=d, as_sent=as_sent)
        if col.type == "timestamp":
            return P.timestamp(e, ty, dayfirst=dayfirst, date_format=opts.date_format, t=text, d=d)
        return P.boolean(e, ty, t=text, d=d)

    p = parse(expr, etyp, tc if is_text else None)
    if default is not None and not is_text:
        p = f"COALESCE({p}, {parse('NULL', pa.string(), d.literal(default))})"
    return base, t, p


BASE = "_source_text_"   # an id's trimmed text, before a spreadsheet's '.0' is dropped (`_column_sql`)


def _shown(n: str, d: Dialect, texts: dict[str, str] | None = None) -> str:
    """SQL text: the column name and its value in quotes."""
    return f"{d.literal(n + ' ' + chr(39))} || {_t_text(n, d, texts or {})} || {d.literal(chr(39))}"


def _t_text(n: str, d: Dialect, texts: dict[str, str]) -> str:
    """SQL text of the value of `t_<n>`, the same on both engines (`_texts`)."""
    return texts.get(n, f"CAST(t_{n} AS {d.string_type})")


def _as_sent(col: Column, src: str | None, types: dict[str, pa.DataType], default: str | None,
             opts: ParseOptions) -> bool:
    """Whether the number column `col` keeps its text as sent where it starts with a digit
    (`parsing.number_text`, `parsing.as_sent_numbers`)."""
    return col.type in NUMBERS and src is not None and P.as_sent_numbers(types.get(src), opts.na_values, default)


def _texts(cols: list[Column], columns: dict[str, str | None], types: dict[str, pa.DataType],
           d: Dialect, as_sent: set[str]) -> dict[str, str]:
    """The SQL text of `t_<name>` where it is not the column itself: a source float's as DuckDB
    writes it (Spark's own cast of a float is Java's 1.2345678E7; typed sources keep their
    type, except for text columns: see `_column_sql`), and a number sent as text, which t_
    holds as sent where it starts with a digit (`parsing.number_text`), trimmed."""
    out = {}
    for c in cols:
        typ = types.get(columns[c.name]) if columns.get(c.name) else None
        if typ is None or c.type == "string":
            continue
        if pa.types.is_floating(typ):
            out[c.name] = d.float_text.format(f"t_{c.name}")
        elif c.name in as_sent:
            out[c.name] = trim_sql(f"t_{c.name}", d.literal)
    return out


NUMBERS = ("int", "decimal")   # the column types whose text is read as a number


def _instant(moment: datetime, d: Dialect) -> str:
    utc = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return d.timestamp_tz.format(utc.isoformat(sep=" ", timespec="microseconds"))


def _checks(spec: Table, opts: ParseOptions, is_pay: bool, d: Dialect,
            texts: dict[str, str] | None = None) -> list[tuple[str, str, str]]:
    """(condition, reason code, detail SQL) in the order they are applied."""
    checks: list[tuple[str, str, str]] = []
    for col in spec.columns:
        if col.required:
            n = col.name
            checks.append((f"t_{n} IS NULL AND p_{n} IS NULL", f"missing_{n}",
                           d.literal(f"{n} is empty or a missing-value marker (such as NA); it is required")))
    for col in spec.columns:
        n = col.name
        if col.is_id:
            # the exact test only where the row's fast test (`_controls`) found something
            shown = d.replace_all(f"t_{n}", CONTROL_PATTERN, "\ufffd")
            checks.append((f"CASE WHEN _controls THEN {control_sql(f't_{n}', d)} END", f"bad_{n}",
                           f"{d.literal(n + ' ' + chr(39))} || {shown} || {d.literal(CONTROL_DETAIL)}"))
        if col.type == "string" and not col.choices:
            continue
        what = {"int": "a whole number", "decimal": "a number", "timestamp": "a date or time",
                "bool": "yes/no (true/false, 1/0)"}.get(col.type, "one of " + ", ".join(col.choices or ()))
        cond = f"t_{n} IS NOT NULL AND p_{n} IS NULL"
        if col.type == "int":
            cond = f"t_{n} IS NOT NULL AND (p_{n} IS NULL OR p_{n} <> floor(p_{n}) OR abs(p_{n}) > 2147483647)"
        detail = f"{_shown(n, d, texts)} || {d.literal(' is not ' + what)}"
        if col.type == "timestamp" and not opts.date_format:
            # Without --dayfirst a column is read in the one order all its dates allow
            # (behavior.date_order), so only a forced order can leave a date the other reads.
            fix = "'; pass --date-format with its strftime pattern'"
            if opts.dayfirst:
                other = P.timestamp("NULL", pa.string(), t=f"CAST(t_{n} AS {d.string_type})", d=d)
                fix = f"CASE WHEN {other} IS NOT NULL THEN '; it reads as month-first: leave out --dayfirst' ELSE {fix} END"
            detail = f"{detail} || {fix}"
        checks.append((cond, f"bad_{n}", detail))
    if is_pay:
        checks.append(("t_unit_price IS NOT NULL AND p_unit_price IS NULL", "bad_unit_price",
                       f"{_shown('unit_price', d, texts)} || ' is not a number'"))
    lo = _instant(datetime(1970, 1, 1, tzinfo=timezone.utc), d)
    hi = _instant(opts.now + timedelta(days=1), d)
    ahead = FUTURE_TIMES.get(spec.name, frozenset())
    for col in spec.columns:
        if col.type == "timestamp":
            n = col.name
            if n in ahead:
                checks.append((f"p_{n} < {lo}", "date_out_of_range",
                               f"'{n} ' || {d.instant_text.format('p_' + n)} || ' is before 1970'"))
            else:
                checks.append((f"p_{n} < {lo} OR p_{n} > {hi}", "date_out_of_range",
                               f"'{n} ' || {d.instant_text.format('p_' + n)} || ' is before 1970 or in the future'"))
    if "user_id" in spec.names:
        # t_user_id is trimmed of every whitespace character (`behavior.ids`), so contact data is
        # recognised with any surrounding whitespace (a trailing newline too)
        checks.append((f"contains(t_user_id, '@') AND {d.full_match('t_user_id', EMAIL_PATTERN[1:-1])}",
                       "user_id_email", "'user_id looks like an e-mail address; send an opaque customer id instead'"))
        # the length and the first character tested as bytes (a phone number is ASCII), before the pattern
        checks.append((f"{d.byte_length.format('t_user_id')} >= 7 AND {P.first_in('t_user_id', d, '0-9', '(', '+')} "
                       f"AND {d.full_match('t_user_id', PHONE_PATTERN)}",
                       "user_id_phone", "'user_id looks like a phone number; send an opaque customer id instead'"))
    if "currency" in spec.names:
        # the lake's currency (a code) needs no look-up
        known = f"p_currency <> {d.literal(opts.currency)} AND " if opts.currency in ISO_4217 else ""
        checks.append((f"{known}p_currency NOT IN {_list(ISO_4217, d)}", "unknown_currency",
                       f"{_shown('currency', d)} || ' is not an ISO 4217 code'"))
        mismatch = f" is not the lake's reporting currency {opts.currency}; convert the amounts before ingest"
        checks.append((f"p_currency <> {d.literal(opts.currency)}", "currency_mismatch",
                       f"'currency ' || p_currency || {d.literal(mismatch)}"))
    return checks


CONTROL_DETAIL = ("' holds a control character (U+0000-U+001F or U+007F, shown as \ufffd), which an id "
                  "cannot hold; fix the export so that its ids are plain text")


def _card_probe(spec: Table, types: dict[str, pa.DataType], columns: dict[str, str | None], is_pay: bool,
                d: Dialect) -> str:
    """SQL flagging rows that may hold a card number: cheap tests before the expression (in a
    CASE: DuckDB evaluates both sides of an AND in a projection, the expression on every row).
    Times are not probed (13-digit epochs would look like cards); a rejected time is masked
    in its detail all the same."""
    parts = []
    for c in [*spec.columns, *((Column("unit_price", "decimal"),) if is_pay else ())]:
        src = columns.get(c.name)
        typ = types.get(src) if src else None
        if c.type in ("timestamp", "bool") or typ is None:
            continue
        if pa.types.is_string(typ) or pa.types.is_large_string(typ) or c.type == "string":
            # bytes, not characters (counted): never fewer, so no candidate is missed
            parts.append(f"CASE WHEN {d.byte_length.format('t_' + c.name)} >= 13 THEN {d.find('t_' + c.name, CARD_CANDIDATE_PATTERN)} END")
        else:
            text = P.as_text(f"t_{c.name}", typ, d)   # a float as DuckDB writes it on both engines
            parts.append(f"CASE WHEN abs(p_{c.name}) >= 1e12 THEN {d.find(text, CARD_CANDIDATE_PATTERN)} END")
    return "COALESCE(" + (" OR ".join(parts) or "FALSE") + ", FALSE)"


def validation_sql(spec: Table, relation: str, columns: dict[str, str | None],
                   types: dict[str, pa.DataType], defaults: dict[str, str], opts: ParseOptions,
                   dialect: Dialect = DUCKDB, carry: dict[str, str] | None = None, order: bool = False) -> str:
    """The SQL that parses and checks `relation` into `spec` (see the module docstring), in
    `dialect`. Output: the canonical columns, ROW, _reason, _detail and _card_probe, and the
    columns `carry` names (name -> SQL over `relation`); with `order`, `_order0`, `_order1`, ...:
    the `behavior.date_order.order_texts` of its text date columns, in their order (read from a
    column's text here, not computed again, where no default fills it). A derived line_no is left
    NULL here."""
    d = dialect
    is_pay = spec.name == "payments"
    cols = list(spec.columns) + ([Column("unit_price", "decimal")] if is_pay else [])
    sel_b, sel_t, sel_p, undefaulted, as_sent = [], [], [], set(), set()
    for col in cols:
        default = defaults.get(col.name, col.default)
        if col.name == "currency" and default is None:
            default = opts.currency
        if default is None:
            undefaulted.add(col.name)
        if _as_sent(col, columns.get(col.name), types, default, opts):
            as_sent.add(col.name)
        b, t, p = _column_sql(col, columns.get(col.name), types, default, opts, d, col.name in as_sent)
        if b is not None:
            sel_b.append(f", {b} AS {_q(BASE + col.name, d)}")
        sel_t.append(f"{t} AS {_q('t_' + col.name, d)}")
        sel_p.append(f"{p} AS {_q('p_' + col.name, d)}")
    texts = _texts(cols, columns, types, d, as_sent)
    checks = _checks(spec, opts, is_pay, d, texts)
    ids = [f"t_{c.name}" for c in spec.columns if c.is_id]
    controls = d.may_hold_control.format(", ".join(ids)) if ids else "FALSE"
    # The first check a row fails, by its number: the conditions are evaluated once, and the
    # reason and its detail are looked up from the number (the detail only on failing rows).
    failed = "CASE " + " ".join(f"WHEN {c} THEN {i}" for i, (c, _, _) in enumerate(checks)) + " END"
    reason = "CASE _failed " + " ".join(f"WHEN {i} THEN '{code}'" for i, (_, code, _) in enumerate(checks)) + " END"
    detail = "CASE _failed " + " ".join(f"WHEN {i} THEN {d}" for i, (_, _, d) in enumerate(checks)) + " END"
    t_all = ", ".join(texts.get(c.name, f"t_{c.name}") for c in cols)
    out = []
    for col in spec.columns:
        n, v = col.name, f"p_{col.name}"
        if col.type == "int":
            v = f"TRY_CAST({v} AS INTEGER)"
        if is_pay and n == "payment_id":
            # No payment id in the source (no column, or an empty value): a stable hash of the
            # row's values, so the key is never null and re-ingesting the row finds it stored.
            # (a CASE: DuckDB would compute the texts of a COALESCE's hash on every row)
            v = f"CASE WHEN p_payment_id IS NULL THEN 'h' || substr(md5(concat_ws('|', {t_all})), 1, 16) ELSE p_payment_id END"
        if is_pay and n == "amount":
            v = "COALESCE(p_amount, TRY_CAST(p_unit_price * p_quantity AS DECIMAL(18,2)))"
        out.append(f"{v} AS {_q(n, d)}")
    final = [_q(n, d) for n in spec.names]
    # the order texts from the parsed step, where the t_ columns are (its CASE would compute a
    # column's text again: DuckDB does not share an expression inside a CASE)
    texts = order_texts(types, spec, columns, opts.na_values, d, {n: f"t_{n}" for n in undefaulted}) if order else []
    orders = "".join(f", {e} AS _order{i}" for i, (_, e) in enumerate(texts))
    carried = "".join(f", {_q(n, d)}" for n in [*(carry or {}), *(f"_order{i}" for i in range(len(texts)))])
    sel_t += [f"{e} AS {_q(n, d)}" for n, e in (carry or {}).items()]
    if is_pay:
        # Negative amount or quantity means a refund; refunds carry both negative.
        refund = "status = 'refund' OR quantity < 0 OR amount < 0"
        final[spec.names.index("status")] = ("CASE WHEN status = 'success' AND (quantity < 0 OR amount < 0) "
                                             "THEN 'refund' ELSE status END AS status")
        final[spec.names.index("quantity")] = f"CASE WHEN {refund} THEN -abs(quantity) ELSE quantity END AS quantity"
        final[spec.names.index("amount")] = f"CASE WHEN {refund} THEN -abs(amount) ELSE amount END AS amount"
    return f"""
WITH bases AS (SELECT *{''.join(sel_b)} FROM {relation}),
texts AS (SELECT {', '.join(sel_t)}, {ROW} FROM bases),
parsed AS (SELECT *, {', '.join(sel_p)}, {controls} AS _controls{orders} FROM texts),
checked AS (SELECT *, {failed} AS _failed FROM parsed),
typed AS (
  SELECT {', '.join(out)}, {ROW}{carried}, {reason} AS _reason, {detail} AS _detail,
         {_card_probe(spec, types, columns, is_pay, d)} AS _card_probe
  FROM checked
)
SELECT {', '.join(final)}, {ROW}{carried}, _reason, _detail, _card_probe FROM typed
"""


def _row_hash(spec: Table, d: Dialect, skip: str = "") -> str:
    """SQL hash of a row's stored values: rows with equal hashes are exact copies."""
    return d.hash_of([_q(n, d) for n in spec.names if n != skip])


def line_numbers_sql(relation: str, columns: list[str], spec: Table, d: Dialect) -> str:
    """SQL over `relation` (validation's output, with `columns`) deriving line_no (position
    inside the payment among distinct rows, rejected rows included so that a row fixed and
    sent again gets the same number) and marking exact copies (`_copy`)."""
    rest = ", ".join(_q(n, d) for n in columns if n != "line_no")
    return f"""
            SELECT {rest},
                CAST(sum(CASE WHEN _first THEN 1 ELSE 0 END) OVER (PARTITION BY payment_id ORDER BY {ROW}
                     ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS INTEGER) AS line_no,
                NOT _first AS _copy
            FROM (SELECT *, row_number() OVER (PARTITION BY payment_id, {_row_hash(spec, d, "line_no")}
                                               ORDER BY {ROW}) = 1 AS _first FROM {relation}) numbered
        """


def _line_numbers(engine: Any, out: pa.Table, spec: Table) -> pa.Table:
    engine.register("_out", out)
    try:
        return engine.arrow(line_numbers_sql("_out", out.column_names, spec, engine.dialect))
    finally:
        engine.unregister("_out")


def _repeated_keys(engine: Any, out: pa.Table, spec: Table) -> tuple[pa.Array, pa.Array]:
    engine.register("_out", out)
    try:
        return repeated_keys(engine, "_out", spec)
    finally:
        engine.unregister("_out")


def repeated_keys(engine: Any, relation: str, spec: Table) -> tuple[pa.Array, pa.Array]:
    """Rows of `relation` (validation's output) that repeat the key of another valid row:
    (copies, conflicts).

    The kept row of a key is the first (append tables) or the last (upsert tables); a row
    with the kept row's values is a copy; with other values it is a conflict (append) or a
    superseded version (upsert: counted with the copies). Checked with one aggregate over the
    keys' hash; the window runs only where a hash repeats, over the repeated keys."""
    d = engine.dialect
    keys = ", ".join(_q(k, d) for k in spec.key)
    empty = pa.array([], pa.int64())
    # Equal keys have equal hashes: when no hash repeats, no key does. The hashes (8 bytes a
    # row of one input file) are sorted in numpy and neighbours compared: 10M distinct hashes
    # take 0.5 CPU seconds where DuckDB's grouping by them takes 3.4 (its hash table of 10M
    # groups leaves the cache), and grouping by the keys themselves spills at the memory cap
    hashes = engine.arrow(f"SELECT {d.hash_of([_q(k, d) for k in spec.key])} AS h FROM {relation} "
                          "WHERE _reason IS NULL").column(0)
    if not _any_repeat(hashes):
        return empty, empty
    repeated = f"SELECT {keys} FROM {relation} WHERE _reason IS NULL GROUP BY {keys} HAVING count(*) > 1"
    order = "ASC" if spec.mode == "append" else "DESC"
    rows = engine.arrow(f"""
        SELECT {ROW}, _differs FROM (
            SELECT {ROW}, {_row_hash(spec, d)} <> first_value({_row_hash(spec, d)}) OVER w AS _differs,
                   row_number() OVER w AS _n
            FROM {relation} JOIN ({repeated}) r USING ({keys})
            WHERE _reason IS NULL
            WINDOW w AS (PARTITION BY {keys} ORDER BY {ROW} {order})
        ) ranked WHERE _n > 1
    """)
    if spec.mode != "append":
        return rows.column(ROW), empty
    differs = rows.column("_differs")
    return pc.filter(rows.column(ROW), pc.invert(differs)), pc.filter(rows.column(ROW), differs)


def _any_repeat(values: pa.ChunkedArray) -> bool:
    """Whether a value of `values` (whole numbers, no nulls) occurs more than once."""
    # one copy of the chunks, sorted in place (`ChunkedArray.to_numpy` and `np.sort`'s copy cost
    # 4x as much at 10M keys), into memory mapped without huge pages (`_small_pages`)
    if not len(values):
        return False
    with _small_pages(len(values) * values.type.byte_width) as memory:
        ordered = np.frombuffer(memory, dtype=values.type.to_pandas_dtype())
        try:
            np.concatenate([c.to_numpy() for c in values.chunks], out=ordered)
            ordered.sort()
            return bool(np.any(ordered[1:] == ordered[:-1]))
        finally:
            del ordered   # the map closes only once no array looks into it


@contextmanager
def _small_pages(size: int) -> Iterator[mmap.mmap]:
    """`size` bytes of fresh memory in pages of 4 KB. Where the kernel backs large allocations
    with transparent huge pages (`always`), each first touch of a 2 MB page can cost
    milliseconds on a virtual machine (the host backs it page by page): numpy's 80 MB for 10M
    key hashes took 0.45-0.65 s to fill there, against 0.04 s in small pages."""
    memory = mmap.mmap(-1, size)
    try:
        if hasattr(mmap, "MADV_NOHUGEPAGE"):   # Linux
            memory.madvise(mmap.MADV_NOHUGEPAGE)
        yield memory
    finally:
        memory.close()


CONFLICT_DETAIL = "key ({}) repeats an earlier row of this input with other values"


def _set(table: pa.Table, name: str, values) -> pa.Table:
    return table.set_column(table.schema.get_field_index(name), name, values)


def validate(engine: Any, source: pa.Table, spec: Table, columns: dict[str, str | None],
             defaults: dict[str, str], opts: ParseOptions, where: str = "the input") -> Validated:
    """Validate the Arrow table `source` (which has a ROW column) against `spec` on `engine`
    (a `behavior.sql_dialect.SqlEngine` with register / unregister, or a DuckDB connection).
    Without --dayfirst / --date-format the order of day and month is decided per date column
    (`behavior.date_order`; a column mixing both raises MixedDateOrderError naming `where`)."""
    engine = as_engine(engine)
    types = {f.name: f.type for f in source.schema}
    if isinstance(engine, DuckDBEngine):
        engine.con.execute("SET TimeZone = 'UTC'")
    engine.register("_source", source)
    try:
        notes = []
        if not (opts.dayfirst or opts.date_format):
            order = decide_date_order(engine, "_source", types, _value_of(source), spec, columns, opts.na_values, where)
            opts, notes = replace(opts, dayfirst_columns=order.dayfirst), order.notes
        out = engine.arrow(validation_sql(spec, "_source", columns, types, defaults, opts, engine.dialect))
    finally:
        engine.unregister("_source")
    out = _confirm_cards(out, source, spec, columns)
    if spec.name == "payments" and columns.get("line_no") is None:
        out = _line_numbers(engine, out, spec)
        copies = pc.fill_null(out.column("_copy"), False)
    else:
        copy_rows, conflict_rows = _repeated_keys(engine, out, spec)
        copies = pc.is_in(out.column(ROW), value_set=copy_rows)
        if len(conflict_rows):
            hit = pc.is_in(out.column(ROW), value_set=conflict_rows)
            msg = CONFLICT_DETAIL.format(", ".join(spec.key))
            out = _set(out, "_reason", pc.if_else(hit, "conflicting_key", out.column("_reason")))
            out = _set(out, "_detail", pc.if_else(hit, msg, out.column("_detail")))
    ok = pc.is_null(out.column("_reason"))
    dup = pc.and_(ok, copies)
    keep = pc.and_(ok, pc.invert(copies))
    accepted = out.select(list(spec.names))
    if not pc.all(keep).as_py():
        accepted = accepted.filter(keep)
    accepted = accepted.cast(spec.arrow_schema)
    bad = pc.invert(ok)
    rejected = pa.table({ROW: pc.filter(out.column(ROW), bad), "reason": pc.filter(out.column("_reason"), bad),
                         "detail": pc.filter(out.column("_detail"), bad)}).sort_by(ROW)
    masked = pa.array([mask_card_numbers(d) for d in rejected.column("detail").to_pylist()], pa.string())
    rejected = rejected.set_column(2, "detail", masked)
    return Validated(accepted=accepted, rejected=rejected, duplicates=int(pc.sum(dup).as_py() or 0), notes=notes)


def _value_of(source: pa.Table):
    """The source value of (column, row number) in the Arrow table `source`."""
    def value(column: str, row: int) -> object:
        at = pc.index_in(pa.array([row], pa.int64()), value_set=source.column(ROW))[0].as_py()
        return source.column(column)[at].as_py()
    return value


def _confirm_cards(out: pa.Table, source: pa.Table, spec: Table, columns: dict[str, str | None]) -> pa.Table:
    """Rows whose stored fields hold a Luhn-valid card number get reason card_number (masked)."""
    probe = pc.filter(out.column(ROW), out.column("_card_probe"))
    if len(probe) == 0:
        return out
    found = card_numbers(source.take(pc.index_in(probe, value_set=source.column(ROW))), spec, columns)
    if not found:
        return out
    hit_rows = pa.array(list(found), pa.int64())
    hit = pc.is_in(out.column(ROW), value_set=hit_rows)
    details = pa.array(list(found.values()), pa.string()).take(pc.index_in(out.column(ROW), value_set=hit_rows))
    out = _set(out, "_reason", pc.if_else(hit, "card_number", out.column("_reason")))
    return _set(out, "_detail", pc.if_else(hit, details, out.column("_detail")))


def card_numbers(rows: pa.Table, spec: Table, columns: dict[str, str | None]) -> dict[int, str]:
    """Row number -> detail (card masked) of the source `rows` (with ROW) whose stored fields
    hold a Luhn-valid card number."""
    found: dict[int, str] = {}
    numbers = rows.column(ROW).to_pylist()
    for c in spec.columns:
        src = columns.get(c.name)
        if src is None or c.type == "timestamp":
            continue
        values = [None if v is None else str(v) for v in rows.column(src).to_pylist()]
        for j in np.flatnonzero(has_card_number(values)):
            found.setdefault(numbers[j], f"{c.name} holds a card number ({mask_card_numbers(values[j])}); "
                                         "card numbers must not be sent: remove them from the export")
    return found
