"""GET /v1/segments and POST /v1/segments/query (a count, JSON pages or a streamed CSV export)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Annotated, Protocol

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
from fastapi import APIRouter, Body, Header
from fastapi.responses import StreamingResponse
from fastapi.concurrency import run_in_threadpool

from api.bundle import Bundle
from api.rows import json_rows, to_json_table
from api.deps import BundleDep, SegmentsCaller, StateDep
from api.display import shown_row
from behavior.store.keys import ApiKey
from api.models import Condition, Filter, Group, QueryResult, SegmentQuery, Segments, SegmentSummary
from api.problems import ApiProblem
from api.query import (Compiled, check_enum_values, compile_query, count_sql, encode_cursor, enum_values, json_limit,
                       page_sql)
from api.routes._responses import AUTH, problems
from api.state import ServingState
from behavior.csv_safety import neutralize_formulas

router = APIRouter(prefix="/v1/segments", tags=["segments"])

CSV_BATCH_ROWS = 50_000


class Queryable(Protocol):
    """A table a query runs on: `connection()` gives a cursor with it as the query's view."""

    def connection(self) -> duckdb.DuckDBPyConnection: ...


QUERY_ENDPOINT = "POST /v1/segments/query"
EXPORT_SCOPE = "segments:export"   # user ids and per-user fields, as JSON pages or CSV


@router.get("", summary="Segments with their sizes and mean loyalty score, CLV and P(alive)",
            responses=problems(*AUTH, 503))
async def list_segments(caller: SegmentsCaller, bundle: BundleDep) -> Segments:
    stats = bundle.profiles.segments
    return Segments(bundle_version=bundle.version, users=len(bundle.profiles),
                    segments=[SegmentSummary(**shown_row(s.__dict__)) for s in stats])


def wants_csv(accept: str | None) -> bool:
    """True if the Accept header prefers text/csv to application/json."""
    if not accept:
        return False
    best: dict[str, float] = {}
    for part in accept.split(","):
        bits = [b.strip() for b in part.split(";")]
        media, q = bits[0].lower(), 1.0
        for b in bits[1:]:
            if b.startswith("q="):
                try:
                    q = float(b[2:])
                except ValueError:
                    q = 0.0
        best[media] = max(q, best.get(media, 0.0))
    csv_q = best.get("text/csv", 0.0)
    return csv_q > 0 and csv_q > best.get("application/json", 0.0)


def run_json(bundle: Bundle, c: Compiled, limit: int, source: Queryable | None = None) -> QueryResult:
    """A JSON page of `c` over `source` (default: the bundle's profiles)."""
    cur = (source or bundle.profiles).connection()
    try:
        sql, params = count_sql(c)
        total = cur.execute(sql, params).fetchall()[0][0]
        sql, params = page_sql(c, limit + 1)
        page = cur.sql(sql, params=params).to_arrow_table()
    finally:
        cur.close()
    more = page.num_rows > limit
    page = page.slice(0, limit)
    next_cursor = None
    if more:
        last = page.slice(page.num_rows - 1, 1).select([f"__k{i}" for i in range(len(c.order))]).to_pylist()[0]
        next_cursor = encode_cursor(bundle.version, c.query_hash, list(last.values()))
    rows = [shown_row(r) for r in json_rows(page.select(c.fields))]
    return QueryResult(bundle_version=bundle.version, total=total, count=len(rows), fields=c.fields, rows=rows,
                       next_cursor=next_cursor)


def csv_chunks(bundle: Bundle, c: Compiled, limit: int | None, state: ServingState, key: ApiKey,
               source: Queryable | None = None, endpoint: str = QUERY_ENDPOINT) -> Iterator[bytes]:
    """The export of `c` over `source` (default: the bundle's profiles) as CSV byte chunks; the
    audit log gets the rows sent, under `endpoint`, when the stream ends."""
    sent, done = 0, False
    cur = (source or bundle.profiles).connection()
    try:
        sql, params = page_sql(c, limit)
        reader = cur.sql(sql, params=params).to_arrow_reader(CSV_BATCH_ROWS)
        header = io.BytesIO()
        empty = to_json_table(pa.Table.from_batches([], schema=reader.schema).select(c.fields))
        pacsv.write_csv(empty, header)
        yield header.getvalue()
        options = pacsv.WriteOptions(include_header=False)
        for batch in reader:
            table = neutralize_formulas(to_json_table(pa.Table.from_batches([batch]).select(c.fields)))
            buf = io.BytesIO()
            pacsv.write_csv(table, buf, options)
            sent += table.num_rows
            yield buf.getvalue()
        done = True
    finally:
        cur.close()
        state.audit.write(key_id=key.key_id, endpoint=endpoint, rows=sent, bundle_version=bundle.version,
                          format="csv", completed=done, fields=c.fields, query_hash=c.query_hash)


_QUERY_EXAMPLES = {
    "champions": {"summary": "Champions and Loyal users likely alive, by CLV",
                  "value": {"filter": {"all": [{"field": "segment", "op": "in", "value": ["Champions", "Loyal"]},
                                               {"field": "p_alive", "op": "ge", "value": 0.5}]},
                            "sort": [{"field": "clv", "desc": True}], "limit": 50}},
    "nested": {"summary": "At risk, and either big spenders or recent",
               "value": {"filter": {"all": [{"field": "segment", "op": "eq", "value": "At Risk"},
                                            {"any": [{"field": "clv", "op": "gt", "value": 200},
                                                     {"field": "last_purchase_at", "op": "ge",
                                                      "value": "2025-10-01T00:00:00Z"}]}]},
                         "fields": ["user_id", "clv", "last_purchase_at"]}},
}


def _run_count(bundle: Bundle, c: Compiled) -> QueryResult:
    """The count alone: no id, no per-user field (what segments:read may see)."""
    cur = bundle.profiles.connection()
    try:
        sql, params = count_sql(c)
        total = cur.execute(sql, params).fetchall()[0][0]
    finally:
        cur.close()
    return QueryResult(bundle_version=bundle.version, total=total, count=0, fields=[], rows=[], next_cursor=None)


def _conditions(flt: Filter) -> Iterator[Condition]:
    for item in (flt.all_ or []) + (flt.any_ or []):
        if isinstance(item, Group):
            yield from (item.all_ or []) + (item.any_ or [])
        else:
            yield item


@router.post(
    "/query",
    summary="Users matching a filter: JSON pages, or a CSV export with Accept: text/csv",
    description=(
        "A typed filter over profile fields (`all` / `any` of conditions, one level of nesting), a sort "
        "(user_id is always the last tiebreak), cursor pagination and the total count. Opted-out users are "
        "never returned nor counted.\n\n"
        "User ids and per-user fields are an export: they need the scope segments:export, and every page is "
        "written to the audit log (key id, row count, fields, bundle version; never an id). A key with "
        "segments:read alone gets the count: `total`, with `rows` and `fields` empty and no cursor; it may not "
        "filter on user_id (403). With `Accept: text/csv` (segments:export) all matching rows are streamed as "
        "CSV (or `limit` rows), also audited."
    ),
    response_model=QueryResult,
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}},
                     "description": "A page of users (JSON, segments:export), the count alone (JSON, "
                                    "segments:read) or the whole export (CSV, segments:export)."},
               **problems(400, *AUTH, 409, 413, 422, 503)},
)
async def query_segments(
    query: Annotated[SegmentQuery, Body(openapi_examples=_QUERY_EXAMPLES)],
    caller: SegmentsCaller, bundle: BundleDep, state: StateDep,
    accept: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> QueryResult | StreamingResponse:
    csv = wants_csv(accept)
    exporter = EXPORT_SCOPE in caller.scopes
    if csv and not exporter:
        raise ApiProblem(403, "forbidden", "Forbidden",
                         f"key {caller.key_id!r} lacks the scope {EXPORT_SCOPE} that CSV exports need")
    if not exporter and any(cond.field == "user_id" for cond in _conditions(query.filter)):
        raise ApiProblem(403, "forbidden", "Forbidden",
                         f"key {caller.key_id!r} lacks the scope {EXPORT_SCOPE} that filtering on user_id needs "
                         "(counts of one user would tell their fields)")
    c = compile_query(query, bundle.profiles.fields, bundle.version)
    check_enum_values(query, enum_values(bundle.profiles))
    if not csv and not exporter:
        return await run_in_threadpool(_run_count, bundle, c)
    if not csv:
        page = await run_in_threadpool(run_json, bundle, c, json_limit(query))
        state.audit.write(key_id=caller.key_id, endpoint=QUERY_ENDPOINT, rows=page.count, bundle_version=bundle.version,
                          format="json", fields=c.fields, query_hash=c.query_hash, first_page=c.after is None)
        return page
    name = f"segment-export-{bundle.version}.csv"
    return StreamingResponse(csv_chunks(bundle, c, query.limit, state, caller), media_type="text/csv",
                             headers={"Content-Disposition": f'attachment; filename="{name}"'})
