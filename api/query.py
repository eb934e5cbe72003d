"""Segment queries: a typed filter over whitelisted profile fields, compiled to DuckDB SQL.

Identifiers come only from the bundle's own column names (checked against a strict pattern)
and every client value is a bound parameter, so no text of the request reaches the SQL.
Opted-out users (`marketing_opt_out` true or unknown) are excluded from every result and count.

Pagination is by keyset: the cursor carries the bundle version, a hash of the filter and
sort, and the sort-key values of the last row; user_id is always the final sort key, so the
order is total and each row appears on exactly one page.
"""

from __future__ import annotations

import base64
import difflib
import hashlib
import json
import math
import re
import weakref
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import pyarrow.compute as pc

from api.bundle import Kind, Profiles
from api.models import DEFAULT_LIMIT, MAX_JSON_LIMIT, Condition, Filter, Group, SegmentQuery, surrogate_error
from api.problems import ApiProblem, FieldError
from behavior.schema import CHANNELS
from behavior.segments import LOYALTY_TIERS, SEGMENTS

DEFAULT_FIELDS = ("user_id", "segment", "loyalty_tier", "loyalty_score", "clv", "p_alive", "expected_purchases")
OPT_OUT_SQL = '"marketing_opt_out" IS FALSE'
MAX_IN_VALUES = 1000
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
_ORDERED = {"integer", "number", "string", "timestamp"}
_SQL_OPS = {"eq": "=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}
INT64 = (-2**63, 2**63 - 1)   # the whole numbers DuckDB binds as a BIGINT


# Profile fields with a closed set of values. A value outside the set is a typo (`"champions"` for
# "Champions") that would match no row in silence, so eq, ne and in answer it with a 422 listing the
# valid values: the bundle's own, plus the names each vocabulary always has (a segment may be empty in
# one bundle and not in the next).
ENUM_VOCABULARIES: dict[str, tuple[str, ...]] = {
    "segment": SEGMENTS, "loyalty_tier": tuple(name for name, _ in LOYALTY_TIERS), "top_channel": CHANNELS,
    "top_category": ()}
_ENUM_OPS = ("eq", "ne", "in")
_enum_cache: "weakref.WeakKeyDictionary[Profiles, dict[str, frozenset[str]]]" = weakref.WeakKeyDictionary()


def enum_values(profiles: Profiles) -> dict[str, frozenset[str]]:
    """The valid values of each enumerated string field of the profiles (computed once per bundle)."""
    values = _enum_cache.get(profiles)
    if values is None:
        values = {}
        for name, known in ENUM_VOCABULARIES.items():
            if profiles.fields.get(name) == "string":
                present = pc.unique(profiles.table.column(name).drop_null()).to_pylist()
                values[name] = frozenset(known).union(present)
        _enum_cache[profiles] = values
    return values


def _unknown_value(field: str, value: str, valid: Collection[str]) -> str:
    """The message for a value outside an enumerated field's set, with the closest valid value."""
    folded = {v.casefold().strip(): v for v in valid}
    match = folded.get(value.casefold().strip())
    if match is None:
        close = difflib.get_close_matches(value.casefold(), list(folded), n=1, cutoff=0.6)
        match = folded[close[0]] if close else None
    hint = f"; did you mean {match!r}?" if match is not None else "."
    names = sorted(valid)
    shown = ", ".join(repr(v) for v in names[:50]) + (f" and {len(names) - 50} more" if len(names) > 50 else "")
    return f"unknown {field} {value!r}{hint} The {field} values are: {shown}"


def _check_enum(c: Condition, at: str, valid: Collection[str] | None, errs: _Errors) -> None:
    """An error for each value of an eq, ne or in condition outside an enumerated field's set."""
    if valid is None or c.op not in _ENUM_OPS:
        return
    values = c.value if c.op == "in" and isinstance(c.value, list) else [c.value]
    for i, v in enumerate(values):
        if isinstance(v, str) and v not in valid:
            errs.add(f"{at}[{i}]" if c.op == "in" else at, _unknown_value(c.field, v, valid))


def _enum_errors(g: Filter | Group, where: str, enums: Mapping[str, Collection[str]], errs: _Errors) -> None:
    for name, items in (("all", g.all_), ("any", g.any_)):
        for i, item in enumerate(items or []):
            at = f"{where}.{name}[{i}]"
            if isinstance(item, Group):
                _enum_errors(item, at, enums, errs)
            else:
                _check_enum(item, f"{at}.value", enums.get(item.field), errs)


def check_enum_values(q: SegmentQuery, enums: Mapping[str, Collection[str]]) -> None:
    """Raises a 422 problem listing every eq, ne or in value of `q`'s filter that its enumerated
    field cannot take (`enums`: field -> valid values, e.g. `enum_values(profiles)`)."""
    errs = _Errors()
    _enum_errors(q.filter, "filter", enums, errs)
    errs.raise_if_any()


def queryable(fields: dict[str, Kind]) -> dict[str, Kind]:
    """The whitelist: scalar columns with plain identifier names."""
    return {name: kind for name, kind in fields.items() if _IDENT.match(name)}


@dataclass
class Compiled:
    where: str                      # WHERE clause without the keyset part (opt-out included)
    params: list[Any]
    order: list[tuple[str, bool]]   # (field, descending), the key (user_id) last
    fields: list[str]
    query_hash: str
    after: list[Any] | None         # keyset values from the cursor
    table: str = "profiles"         # the view the query reads


def _q(name: str) -> str:
    return f'"{name}"'


class _Errors:
    def __init__(self) -> None:
        self.items: list[FieldError] = []

    def add(self, where: str, message: str) -> None:
        self.items.append(FieldError(field=where, message=message))

    def raise_if_any(self) -> None:
        if self.items:
            fields = ", ".join(dict.fromkeys(e.field for e in self.items))
            raise ApiProblem(422, "validation", "Invalid request", f"the query is not valid: see errors ({fields})",
                             errors=self.items)


def _coerce(kind: Kind, v: Any, where: str, errs: _Errors) -> Any:
    """`v` as a value comparable to a column of `kind`; adds an error and returns None if it is not."""
    if kind in ("integer", "number"):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (isinstance(v, float) and not math.isfinite(v)):
            errs.add(where, f"expected a number, got {json.dumps(v)[:50]}")
            return None
        if isinstance(v, int) and not INT64[0] <= v <= INT64[1]:
            errs.add(where, "a whole number must lie between -2^63 and 2^63-1; write a larger one with an exponent "
                            "(e.g. 1e20)")
            return None
        return v
    if kind == "string":
        if not isinstance(v, str) or len(v) > 1000:
            errs.add(where, f"expected a string (at most 1000 characters), got {json.dumps(v)[:50]}")
            return None
        if (why := surrogate_error(v)) is not None:
            errs.add(where, why)
            return None
        return v
    if kind == "boolean":
        if not isinstance(v, bool):
            errs.add(where, f"expected true or false, got {json.dumps(v)[:50]}")
            return None
        return v
    # timestamp
    if isinstance(v, str):
        try:
            t = datetime.fromisoformat(v)
        except ValueError:
            t = None
        if t is not None:
            return t if t.tzinfo else t.replace(tzinfo=timezone.utc)
    errs.add(where, f"expected an ISO 8601 date-time like 2025-01-31T00:00:00Z, got {json.dumps(v)[:50]}")
    return None


def _condition(c: Condition, where: str, fields: dict[str, Kind], errs: _Errors, params: list[Any]) -> str:
    kind = fields.get(c.field)
    if kind is None:
        errs.add(f"{where}.field", f"unknown field {c.field!r}; the fields are: {', '.join(sorted(fields))}")
        return "TRUE"
    col, v, at = _q(c.field), c.value, f"{where}.value"
    if c.op == "is_null":
        if v is None or v is True:
            return f"{col} IS NULL"
        if v is False:
            return f"{col} IS NOT NULL"
        errs.add(at, "is_null takes true (the field is null), false (it is not) or no value")
        return "TRUE"
    if c.op in ("lt", "le", "gt", "ge", "between") and kind not in _ORDERED:
        errs.add(f"{where}.op", f"{c.op} does not apply to {c.field!r} ({kind}); use eq, ne, in or is_null")
        return "TRUE"
    if c.op == "in":
        if not isinstance(v, list) or not 1 <= len(v) <= MAX_IN_VALUES:
            errs.add(at, f"in takes a list of 1 to {MAX_IN_VALUES} values")
            return "TRUE"
        values = [_coerce(kind, x, f"{at}[{i}]", errs) for i, x in enumerate(v)]
        params.extend(values)
        return f"{col} IN ({', '.join('?' * len(values))})"
    if c.op == "between":
        if not isinstance(v, list) or len(v) != 2:
            errs.add(at, "between takes a list [low, high] (both included)")
            return "TRUE"
        params.extend(_coerce(kind, x, f"{at}[{i}]", errs) for i, x in enumerate(v))
        return f"{col} BETWEEN ? AND ?"
    if v is None:
        errs.add(at, f"{c.op} needs a value; to match nulls use op is_null")
        return "TRUE"
    params.append(_coerce(kind, v, at, errs))
    if c.op == "ne":
        return f"{col} IS DISTINCT FROM ?"
    return f"{col} {_SQL_OPS[c.op]} ?"


def _group(g: Filter | Group, where: str, fields: dict[str, Kind], errs: _Errors, params: list[Any]) -> str:
    parts = []
    for name, items, joiner in (("all", g.all_, " AND "), ("any", g.any_, " OR ")):
        if items is None:
            continue
        if not items:
            parts.append("TRUE" if name == "all" else "FALSE")
            continue
        sub = []
        for i, item in enumerate(items):
            at = f"{where}{'.' if where else ''}{name}[{i}]"
            if isinstance(item, Group):
                sub.append(_group(item, at, fields, errs, params))
            else:
                sub.append(_condition(item, at, fields, errs, params))
        parts.append("(" + joiner.join(sub) + ")")
    return " AND ".join(parts) if parts else "TRUE"


def query_hash(q: SegmentQuery) -> str:
    canon = json.dumps({"filter": q.filter.model_dump(by_alias=True, exclude_none=True),
                        "sort": [s.model_dump() for s in q.sort]}, sort_keys=True, default=str)
    return hashlib.sha256(canon.encode()).hexdigest()[:16]


def encode_cursor(version: str, qhash: str, keys: list[Any]) -> str:
    vals = [v.isoformat() if isinstance(v, datetime) else v for v in keys]
    raw = json.dumps({"v": version, "q": qhash, "k": vals}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str, version: str, qhash: str, order: list[tuple[str, bool]],
                   fields: dict[str, Kind]) -> list[Any]:
    bad = ApiProblem(400, "invalid-cursor", "Invalid cursor",
                     "the cursor is not one this API issued; pass `next_cursor` of the previous page unchanged",
                     errors=[FieldError(field="cursor", message="not a cursor this API issued")])
    try:
        doc = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, TypeError):
        raise bad from None
    if not isinstance(doc, dict) or not isinstance(doc.get("k"), list) or not isinstance(doc.get("v"), str):
        raise bad
    if doc["v"] != version:
        raise ApiProblem(409, "stale-cursor", "Stale cursor",
                         f"the cursor belongs to bundle {doc['v'][:64]!r}; the active bundle is {version}: "
                         "start the query again without a cursor")
    if doc.get("q") != qhash:
        raise ApiProblem(400, "cursor-mismatch", "Cursor of another query",
                         "the cursor was issued for a different filter or sort; send the same filter and sort "
                         "with it, or start again without a cursor")
    if len(doc["k"]) != len(order):
        raise bad
    errs = _Errors()
    out = [None if v is None else _coerce(fields[name], v, "cursor", errs) for (name, _), v in zip(order, doc["k"])]
    if errs.items:
        raise bad
    return out


def compile_query(q: SegmentQuery, fields: dict[str, Kind], version: str, *, table: str = "profiles",
                  key: str = "user_id", default_fields: tuple[str, ...] = DEFAULT_FIELDS,
                  restrict: str | None = OPT_OUT_SQL) -> Compiled:
    """Check `q` against the bundle's fields and build its SQL; raises a 422 problem listing every error.

    By default a query of the profiles (key user_id, opted-out users excluded); another table
    (e.g. the merchants) names its view, its unique key (always returned, the last sort key),
    its default fields and the condition every row must meet (`restrict`, None for none)."""
    fields = queryable(fields)
    errs, params = _Errors(), []
    where = _group(q.filter, "filter", fields, errs, params)
    order: list[tuple[str, bool]] = []
    for i, s in enumerate(q.sort):
        if s.field not in fields:
            errs.add(f"sort[{i}].field", f"unknown field {s.field!r}; the fields are: {', '.join(sorted(fields))}")
        elif s.field not in (f for f, _ in order):
            order.append((s.field, s.desc))
    if key not in (f for f, _ in order):
        order.append((key, False))
    else:  # keys after the unique key cannot change the order
        order = order[: [f for f, _ in order].index(key) + 1]
    chosen = [key]
    for i, name in enumerate(q.fields if q.fields is not None else [f for f in default_fields if f in fields]):
        if name not in fields:
            errs.add(f"fields[{i}]", f"unknown field {name!r}; the fields are: {', '.join(sorted(fields))}")
        elif name not in chosen:
            chosen.append(name)
    errs.raise_if_any()
    qhash = query_hash(q)
    after = _decode_cursor(q.cursor, version, qhash, order, fields) if q.cursor else None
    return Compiled(where=f"({where}) AND {restrict}" if restrict else f"({where})", params=params, order=order,
                    fields=chosen, query_hash=qhash, after=after, table=table)


def _keyset(order: list[tuple[str, bool]], after: list[Any]) -> tuple[str, list[Any]]:
    """Rows strictly after `after` in `order` (nulls last in every key)."""
    ors, params = [], []
    for i, (name, desc) in enumerate(order):
        v = after[i]
        if v is None:
            continue  # nothing sorts after null within this key; later keys handle the ties
        ands, p = [], []
        for (prev, _), pv in zip(order[:i], after[:i]):
            if pv is None:
                ands.append(f"{_q(prev)} IS NULL")
            else:
                ands.append(f"{_q(prev)} = ?")
                p.append(pv)
        ands.append(f"({_q(name)} {'<' if desc else '>'} ? OR {_q(name)} IS NULL)")
        p.append(v)
        ors.append("(" + " AND ".join(ands) + ")")
        params.extend(p)
    return ("(" + " OR ".join(ors) + ")" if ors else "FALSE"), params


def page_sql(c: Compiled, limit: int | None) -> tuple[str, list[Any]]:
    """SQL for the rows of `c` after its cursor: the chosen fields, then the sort keys as __k0.."""
    where, params = c.where, list(c.params)
    if c.after is not None:
        ks, kp = _keyset(c.order, c.after)
        where += f" AND {ks}"
        params += kp
    select = ", ".join([_q(f) for f in c.fields] + [f"{_q(name)} AS __k{i}" for i, (name, _) in enumerate(c.order)])
    order_by = ", ".join(f"{_q(name)} {'DESC' if desc else 'ASC'} NULLS LAST" for name, desc in c.order)
    sql = f"SELECT {select} FROM {c.table} WHERE {where} ORDER BY {order_by}"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    return sql, params


def count_sql(c: Compiled) -> tuple[str, list[Any]]:
    return f"SELECT count(*) FROM {c.table} WHERE {c.where}", list(c.params)


def json_limit(q: SegmentQuery) -> int:
    if q.limit is None:
        return DEFAULT_LIMIT
    if q.limit > MAX_JSON_LIMIT:
        raise ApiProblem(422, "validation", "Invalid request",
                         f"limit is at most {MAX_JSON_LIMIT} for JSON; ask for text/csv to export more",
                         errors=[FieldError(field="limit", message=f"at most {MAX_JSON_LIMIT} for application/json")])
    return q.limit
