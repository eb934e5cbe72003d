"""Validation of source rows into a canonical table: every row is accepted, a duplicate, or
rejected with one reason.

`validate` runs one SQL statement (DuckDB, on an in-memory Arrow table) that maps and parses
the columns, derives missing keys, flags duplicates and names the first problem of each row;
card numbers are then confirmed with the Luhn check in numpy. Reason codes, in the order in
which they are checked (a row gets the first that applies):

card_number        any stored text field holds a card number (masked in the detail)
missing_<column>   a required column is empty
bad_<column>       a value cannot be parsed (date, number, whole number, yes/no, listed value)
date_out_of_range  a time before 1970 or more than a day in the future
user_id_email / user_id_phone   the customer id looks like personal contact data
unknown_currency   not an ISO 4217 code
currency_mismatch  not the lake's reporting currency (one reporting currency per lake)
conflicting_key    the same key twice in one input with different values
erased_user        the user asked to be forgotten (see `behavior forget`)

Exact repeats of a row (same key, same values) are duplicates: stored once, counted apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from behavior import parsing as P
from behavior.currencies import ISO_4217
from behavior.errors import SchemaError
from behavior.pii import CARD_CANDIDATE_PATTERN, EMAIL_PATTERN, PHONE_PATTERN, has_card_number, mask_card_numbers
from behavior.schema import Column, Table

ROW = "_source_row"
STATUS_SYNONYMS = {
    "success": "success", "succeeded": "success", "successful": "success", "completed": "success",
    "complete": "success", "paid": "success", "ok": "success", "settled": "success",
    "failed": "failed", "failure": "failed", "declined": "failed", "error": "failed", "rejected": "failed",
    "refund": "refund", "refunded": "refund", "returned": "refund", "chargeback": "refund",
}
GROUP_SYNONYMS = {"treatment": "treatment", "treated": "treatment", "test": "treatment", "t": "treatment",
                  "control": "control", "holdout": "control", "c": "control"}


@dataclass(frozen=True)
class ParseOptions:
    currency: str = "EUR"  # the lake's reporting currency
    dayfirst: bool = False
    date_format: str | None = None
    now: datetime = field(default_factory=lambda: datetime.now(timezone.utc))


@dataclass
class Validated:
    accepted: pa.Table   # canonical columns, typed
    rejected: pa.Table   # ROW, reason, detail
    duplicates: int      # exact repeats inside the input


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


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _list(values) -> str:
    return "(" + ", ".join(P.sql_str(v) for v in sorted(values)) + ")"


def _map_case(t: str, synonyms: dict[str, str]) -> str:
    whens = " ".join(f"WHEN {P.sql_str(k)} THEN {P.sql_str(v)}" for k, v in synonyms.items())
    return f"CASE lower({t}) {whens} END"


def _column_sql(col: Column, src: str | None, types: dict[str, pa.DataType], default: str | None,
                opts: ParseOptions) -> tuple[str, str]:
    """(text SQL, parsed SQL) of one canonical column."""
    typ = types.get(src) if src else None
    expr = _q(src) if src else "NULL"
    t = P.text(expr, typ)
    if default is not None:
        t = f"COALESCE({t}, {P.sql_str(default)})"
        typ = typ if src else pa.string()
        if not src:
            expr = P.sql_str(default)
    # A typed source with a default: parse from text so the default (a string) parses too.
    if default is not None and src and not (pa.types.is_string(typ) or pa.types.is_large_string(typ)):
        expr, typ = t, pa.string()
    if col.type == "string":
        if col.is_id:
            # Numeric ids that went through a spreadsheet come back as 17850.0.
            t = f"regexp_replace({t}, '^([0-9]+)\\.0+$', '\\1')"
        if col.name == "currency":
            return t, f"upper({t})"
        if col.name == "status":
            return t, _map_case(t, STATUS_SYNONYMS)
        if col.name == "group":
            return t, _map_case(t, GROUP_SYNONYMS)
        if col.name == "channel":
            return t, (f"CASE WHEN lower({t}) IN {_list(col.choices)} THEN lower({t}) "
                       f"WHEN {t} IS NULL THEN NULL ELSE 'other' END")
        return t, t
    if col.type == "int":
        return t, P.number(expr, typ)
    if col.type == "decimal":
        return t, P.decimal(expr, typ)
    if col.type == "timestamp":
        return t, P.timestamp(expr, typ, dayfirst=opts.dayfirst, date_format=opts.date_format)
    if col.type == "bool":
        return t, P.boolean(expr, typ)
    raise AssertionError(col.type)


def validation_sql(spec: Table, relation: str, columns: dict[str, str | None],
                   types: dict[str, pa.DataType], defaults: dict[str, str], opts: ParseOptions) -> str:
    """The SQL that validates `relation` into `spec` (see the module docstring)."""
    sel_text, sel_parsed = [], []
    for col in spec.columns:
        default = defaults.get(col.name, col.default)
        if col.name == "currency" and default is None:
            default = opts.currency
        t, p = _column_sql(col, columns.get(col.name), types, default, opts)
        sel_text.append(f"{t} AS {_q('t_' + col.name)}")
        sel_parsed.append(f"{p} AS {_q('p_' + col.name)}")
    is_pay = spec.name == "payments"
    if is_pay:
        up = columns.get("unit_price")
        sel_text.append(f"{P.text(_q(up), types[up]) if up else 'CAST(NULL AS VARCHAR)'} AS t_unit_price")
        sel_parsed.append(f"{P.decimal(_q(up), types[up]) if up else 'CAST(NULL AS DECIMAL(18,2))'} AS p_unit_price")
    # Card numbers are looked for in every field but times (13-digit epochs would look like
    # cards); a rejected time is masked in its detail all the same.
    string_cols = [c.name for c in spec.columns if c.type != "timestamp"]
    card_probe = " || '|' || ".join(f"COALESCE(t_{c}, '')" for c in string_cols)

    checks: list[tuple[str, str, str]] = []  # (condition, code, detail SQL)
    for col in spec.columns:
        n = col.name
        if col.required:
            checks.append((f"t_{n} IS NULL", f"missing_{n}", P.sql_str(f"{n} is empty; it is required")))
    for col in spec.columns:
        n = col.name
        if col.type in ("int", "decimal", "timestamp", "bool") or col.choices or n == "status":
            what = {"int": "a whole number", "decimal": "a number", "timestamp": "a date or time",
                    "bool": "yes/no (true/false, 1/0)"}.get(col.type, "one of " + ", ".join(col.choices or ()))
            cond = f"t_{n} IS NOT NULL AND p_{n} IS NULL"
            if col.type == "int":
                cond = f"t_{n} IS NOT NULL AND (p_{n} IS NULL OR p_{n} <> floor(p_{n}) OR abs(p_{n}) > 2147483647)"
            detail = f"'{n} ' || '''' || t_{n} || '''' || ' is not {what}'"
            if col.type == "timestamp" and not opts.date_format:
                other = P.timestamp(f"t_{n}", pa.string(), dayfirst=not opts.dayfirst)
                hint = "--monthfirst (the default)" if opts.dayfirst else "--dayfirst"
                detail = (f"{detail} || CASE WHEN {other} IS NOT NULL THEN '; it reads as "
                          f"{'month' if opts.dayfirst else 'day'}-first: pass {hint}' "
                          f"ELSE '; pass --date-format with its strftime pattern' END")
            checks.append((cond, f"bad_{n}", detail))
    if is_pay:
        checks.append(("t_unit_price IS NOT NULL AND p_unit_price IS NULL", "bad_unit_price",
                       "'unit_price ' || '''' || t_unit_price || '''' || ' is not a number'"))
    lo, hi = "TIMESTAMPTZ '1970-01-01 00:00:00+00'", f"TIMESTAMPTZ '{(opts.now + timedelta(days=1)).isoformat()}'"
    for col in spec.columns:
        if col.type == "timestamp":
            n = col.name
            checks.append((f"p_{n} < {lo} OR p_{n} > {hi}", "date_out_of_range",
                           f"'{n} ' || CAST(p_{n} AS VARCHAR) || ' is before 1970 or in the future'"))
    if "user_id" in spec.names:
        checks.append((f"regexp_full_match(t_user_id, {P.sql_str(EMAIL_PATTERN[1:-1])})", "user_id_email",
                       "'user_id looks like an e-mail address; send an opaque customer id instead'"))
        checks.append((f"regexp_full_match(t_user_id, {P.sql_str(PHONE_PATTERN)})", "user_id_phone",
                       "'user_id looks like a phone number; send an opaque customer id instead'"))
    if "currency" in spec.names:
        checks.append((f"p_currency NOT IN {_list(ISO_4217)}", "unknown_currency",
                       "'currency ' || '''' || t_currency || '''' || ' is not an ISO 4217 code'"))
        checks.append((f"p_currency <> {P.sql_str(opts.currency)}", "currency_mismatch",
                       f"'currency ' || p_currency || ' is not the lake''s reporting currency {opts.currency}; "
                       f"convert the amounts before ingest'"))
    reason = "CASE " + " ".join(f"WHEN {c} THEN '{code}'" for c, code, _ in checks) + " END"
    detail = "CASE " + " ".join(f"WHEN {c} THEN {d}" for c, _, d in checks) + " END"

    key = spec.key
    out_cols: list[str] = []
    for col in spec.columns:
        n = col.name
        v = f"p_{n}"
        if col.type == "int":
            v = f"TRY_CAST({v} AS INTEGER)"
        if is_pay and n == "amount":
            v = "COALESCE(p_amount, TRY_CAST(p_unit_price * p_quantity AS DECIMAL(18,2)))"
        out_cols.append(f"{v} AS {_q(n)}")
    body = ", ".join(out_cols)
    text_all = ", ".join([f"t_{c.name}" for c in spec.columns] + (["t_unit_price"] if is_pay else []))
    derived = ""
    if is_pay:
        # Missing payment_id: a stable hash of the row's values; missing line_no: the position
        # inside the payment among distinct rows. Refunds carry negative amount and quantity.
        derived = f"""
, derived AS (
  SELECT * REPLACE (
      COALESCE(payment_id, 'h' || substr(md5(concat_ws('|', {text_all})), 1, 16)) AS payment_id),
    row_number() OVER (PARTITION BY COALESCE(payment_id, 'h' || substr(md5(concat_ws('|', {text_all})), 1, 16)),
                       {text_all} ORDER BY {ROW}) AS _copy
  FROM typed
), numbered AS (
  SELECT * REPLACE (
      COALESCE(line_no, CAST(sum(CASE WHEN _copy = 1 THEN 1 ELSE 0 END) OVER (
          PARTITION BY payment_id ORDER BY {ROW} ROWS UNBOUNDED PRECEDING) AS INTEGER)) AS line_no,
      CASE WHEN status = 'success' AND (quantity < 0 OR amount < 0) THEN 'refund' ELSE status END AS status,
      CASE WHEN status = 'refund' OR quantity < 0 OR amount < 0 THEN -abs(quantity) ELSE quantity END AS quantity,
      CASE WHEN status = 'refund' OR quantity < 0 OR amount < 0 THEN -abs(amount) ELSE amount END AS amount)
  FROM derived
)"""
        last = "numbered"
    else:
        derived = f"""
, derived AS (
  SELECT *, row_number() OVER (PARTITION BY {text_all} ORDER BY {ROW}) AS _copy FROM typed
)"""
        last = "derived"
    keys = ", ".join(_q(k) for k in key)
    # Several rows with one key: exact copies are duplicates; different values are a conflict
    # for an append table (first wins), an update for an upsert table (last wins).
    if spec.mode == "append":
        conflict = (f"CASE WHEN _reason IS NULL AND _copy = 1 AND row_number() OVER (PARTITION BY {keys}, "
                    f"(_reason IS NULL AND _copy = 1) ORDER BY {ROW}) > 1 THEN 'conflicting_key' END")
    else:
        conflict = "CAST(NULL AS VARCHAR)"
    keep_last = spec.mode != "append"
    return f"""
WITH src AS (SELECT {', '.join(sel_text)}, {', '.join(sel_parsed)}, {ROW} FROM {relation}),
checked AS (
  SELECT *, {reason} AS _reason, {detail} AS _detail,
         regexp_matches({card_probe}, {P.sql_str(CARD_CANDIDATE_PATTERN)}) AS _card_probe
  FROM src
), typed AS (
  SELECT {body}, {ROW}, _reason, _detail, _card_probe, {text_all}
  FROM checked
){derived}
SELECT * EXCLUDE (_conflict) REPLACE (COALESCE(_reason, _conflict) AS _reason,
       CASE WHEN _reason IS NULL AND _conflict IS NOT NULL
            THEN 'key ({', '.join(key)}) repeats an earlier row of this input with other values' ELSE _detail END AS _detail),
       {"row_number() OVER (PARTITION BY " + keys + ", _reason IS NULL ORDER BY " + ROW + " DESC) > 1 AND _reason IS NULL" if keep_last else "FALSE"} AS _superseded
FROM (SELECT *, {conflict} AS _conflict FROM {last})
ORDER BY {ROW}
"""


def validate(con: duckdb.DuckDBPyConnection, source: pa.Table, spec: Table, columns: dict[str, str | None],
             defaults: dict[str, str], opts: ParseOptions) -> Validated:
    """Validate the Arrow table `source` (which has a ROW column) against `spec`."""
    types = {f.name: f.type for f in source.schema}
    con.execute("SET TimeZone = 'UTC'")
    con.register("_source", source)
    try:
        out = con.sql(validation_sql(spec, "_source", columns, types, defaults, opts)).to_arrow_table()
    finally:
        con.unregister("_source")
    out = _confirm_cards(out, spec)
    reason = out.column("_reason")
    ok = pc.is_null(reason)
    copy = pc.greater(out.column("_copy"), 1)
    dup = pc.or_(pc.and_(ok, copy), pc.and_(ok, out.column("_superseded")))
    acc = pc.and_(ok, pc.invert(dup))
    accepted = out.filter(acc).select(list(spec.names))
    accepted = accepted.cast(spec.arrow_schema)
    rejected = out.filter(pc.invert(ok)).select([ROW, "_reason", "_detail"]).rename_columns([ROW, "reason", "detail"])
    masked = pa.array([mask_card_numbers(d) for d in rejected.column("detail").to_pylist()], pa.string())
    rejected = rejected.set_column(2, "detail", masked)
    return Validated(accepted=accepted, rejected=rejected, duplicates=int(pc.sum(dup).as_py() or 0))


def _confirm_cards(out: pa.Table, spec: Table) -> pa.Table:
    """Rows whose text fields hold a Luhn-valid card number get reason card_number (masked)."""
    probe = out.column("_card_probe").to_numpy(zero_copy_only=False)
    idx = np.flatnonzero(probe)
    if len(idx) == 0:
        return out
    reasons = out.column("_reason").to_pylist()
    details = out.column("_detail").to_pylist()
    string_cols = [c.name for c in spec.columns if c.type != "timestamp"]
    sub = out.take(pa.array(idx)).select([f"t_{c}" for c in string_cols]).to_pydict()
    for c in string_cols:
        vals = sub[f"t_{c}"]
        hit = has_card_number(vals)
        for j in np.flatnonzero(hit):
            i = idx[j]
            if reasons[i] != "card_number":
                reasons[i] = "card_number"
                details[i] = (f"{c} holds a card number ({mask_card_numbers(vals[j])}); card numbers must not be "
                              f"sent: remove them from the export")
    out = out.set_column(out.schema.get_field_index("_reason"), "_reason", pa.array(reasons, pa.string()))
    return out.set_column(out.schema.get_field_index("_detail"), "_detail", pa.array(details, pa.string()))
