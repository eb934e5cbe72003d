"""POST /v1/recommendations/export: the top-n of every user of an audience, streamed as CSV or
Parquet (an audited export).

The audience is either a list of user ids (`user_ids`) or a segment query filter (`filter`,
the language of POST /v1/segments/query). Opted-out users keep their recommendations and are
exported; erased users never appear (a listed id the erasure log names is left out, and the
bundle no longer holds erased profiles). An id the bundle does not know gets the fallback, as
on the GET route. The audit log gets one line when the stream ends: key id, rows, users,
audience kind, format, n, bundle version (never an id).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Annotated, Literal

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from fastapi import APIRouter, Body, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from api.bundle import Bundle
from api.deps import BundleDep, StateDep, authorize
from api.items import ATTRIBUTES
from behavior.store.keys import ApiKey
from api.models import STRICT, Filter, SegmentQuery, Text
from api.problems import ApiProblem, FieldError
from api.query import check_enum_values, compile_query, enum_values, page_sql
from api.routes._responses import AUTH, problems
from api.routes.recommendations import MAX_N, _model, top_items
from api.state import ServingState
from behavior.csv_safety import neutralize_formulas
from behavior.ids import normalize_id

router = APIRouter(prefix="/v1/recommendations", tags=["recommendations"])

ENDPOINT = "POST /v1/recommendations/export"
EXPORT_SCOPE = "recommendations:export"
MAX_IDS = 10_000          # ids in one body; a larger audience is a filter
BATCH_USERS = 2_000       # users per streamed chunk (a CSV chunk or a Parquet row group)
ExportCaller = Annotated[ApiKey, Security(authorize, scopes=["recommendations:read", EXPORT_SCOPE])]

SCHEMA = pa.schema([("user_id", pa.string()), ("rank", pa.int32()), ("item_id", pa.string()),
                    ("score", pa.float64()), ("name", pa.string()), ("category", pa.string()),
                    ("merchant_id", pa.string()), ("price", pa.float64()), ("source", pa.string())])
MEDIA = {"csv": "text/csv", "parquet": "application/vnd.apache.parquet"}


class RecommendationExport(BaseModel):
    model_config = ConfigDict(**STRICT, json_schema_extra={"examples": [
        {"user_ids": ["u0000001", "u0000042"], "n": 5},
        {"filter": {"all": [{"field": "segment", "op": "eq", "value": "At Risk"}]}, "n": 10, "format": "parquet"}]})

    user_ids: list[Text] | None = Field(None, min_length=1, max_length=MAX_IDS,
                                        description=f"The audience as user ids (at most {MAX_IDS}).")
    filter: Filter | None = Field(None, description="The audience as a segment query filter (see "
                                                     "POST /v1/segments/query); opted-out users included.")
    n: int = Field(10, ge=1, le=MAX_N, description="Items per user.")
    category: Text | None = Field(None, min_length=1, max_length=200, description="Only items of this category.")
    exclude_purchased: bool | None = Field(None, description="Leave out items the user bought (default: the "
                                                             "catalogue's policy).")
    format: Literal["csv", "parquet"] = Field("csv", description="csv (text/csv) or parquet.")

    @model_validator(mode="after")
    def _one_audience(self) -> "RecommendationExport":
        if (self.user_ids is None) == (self.filter is None):
            raise ValueError("give the audience as exactly one of user_ids or filter")
        return self


def _listed(bundle: Bundle, state: ServingState, raw: list[str]) -> list[str]:
    """The listed ids as stored, each once, in the given order, without erased users."""
    ids = list(dict.fromkeys(u for u in map(normalize_id, raw) if u))
    gone = state.erasure_log.erased_among(ids) | (set(ids) & bundle.erased)
    return [u for u in ids if u not in gone]


def _filtered(bundle: Bundle, flt: Filter) -> tuple[list[str], str]:
    """The users of the profiles matching `flt` (opted-out users included), by user_id, and the query hash."""
    query = SegmentQuery(filter=flt, fields=["user_id"])
    c = compile_query(query, bundle.profiles.fields, bundle.version, restrict=None)
    check_enum_values(query, enum_values(bundle.profiles))
    cur = bundle.profiles.connection()
    try:
        sql, params = page_sql(c, None)
        ids = cur.sql(sql, params=params).to_arrow_table().column("user_id").to_pylist()
    finally:
        cur.close()
    return ids, c.query_hash


def _table(bundle: Bundle, live, users: list[str], body: RecommendationExport) -> pa.Table:
    details = bundle.item_details
    cols: dict[str, list] = {name: [] for name in SCHEMA.names}
    for user in users:
        rec = top_items(bundle, live, user, body.n, body.category, body.exclude_purchased)
        for rank, (item, score) in enumerate(rec.items, 1):
            row = details.row(item)
            cols["user_id"].append(user)
            cols["rank"].append(rank)
            cols["item_id"].append(item)
            cols["score"].append(score)
            for a in ATTRIBUTES:
                cols[a].append(row[a])
            cols["source"].append("model" if rec.source == "model" else "fallback")
    return pa.table(cols, schema=SCHEMA)


class _Drain(io.RawIOBase):
    """A write-only sink whose bytes are taken out as they come (Parquet streamed row group by
    row group); `tell` counts every byte written, as the Parquet footer's offsets need."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._written = 0

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        data = bytes(b)
        self._parts.append(data)
        self._written += len(data)
        return len(data)

    def tell(self) -> int:
        return self._written

    def take(self) -> bytes:
        out, self._parts = b"".join(self._parts), []
        return out


def _stream(bundle: Bundle, state: ServingState, live, key: ApiKey, users: list[str], body: RecommendationExport,
            audience: dict) -> Iterator[bytes]:
    sent, done = 0, False
    try:
        if body.format == "csv":
            header = io.BytesIO()
            pacsv.write_csv(SCHEMA.empty_table(), header)
            yield header.getvalue()
            options = pacsv.WriteOptions(include_header=False)
            for lo in range(0, len(users), BATCH_USERS):
                table = neutralize_formulas(_table(bundle, live, users[lo:lo + BATCH_USERS], body))
                buf = io.BytesIO()
                pacsv.write_csv(table, buf, options)
                sent += table.num_rows
                yield buf.getvalue()
        else:
            sink = _Drain()
            with pq.ParquetWriter(sink, SCHEMA) as writer:
                for lo in range(0, len(users), BATCH_USERS):
                    table = _table(bundle, live, users[lo:lo + BATCH_USERS], body)
                    writer.write_table(table)
                    sent += table.num_rows
                    yield sink.take()
            yield sink.take()   # the footer
        done = True
    finally:
        state.audit.write(key_id=key.key_id, endpoint=ENDPOINT, rows=sent, users=len(users),
                          bundle_version=bundle.version, format=body.format, completed=done, n=body.n, **audience)


@router.post(
    "/export",
    summary="Top-n recommendations for every user of an audience, streamed as CSV or Parquet (audited)",
    description=(
        "The audience is a list of user ids (`user_ids`, at most "
        f"{MAX_IDS}) or a segment query filter (`filter`). One row per user and rank: user_id, rank, item_id, score, "
        "name, category, merchant_id, price, source (model or fallback). Unknown users get the fallback; "
        "opted-out users are included (recommendations are not marketing); erased users never appear. "
        f"Needs recommendations:read and {EXPORT_SCOPE}; every export is written to the audit log "
        "(key id, rows, users, audience kind, format; never an id). CSV text that a spreadsheet would run "
        "as a formula is prefixed with '."),
    response_class=StreamingResponse,   # CSV or Parquet only: no JSON body to document
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}},
                                 MEDIA["parquet"]: {"schema": {"type": "string", "format": "binary"}}},
                     "description": "The export, streamed."},
               **problems(*AUTH, 413, 422, 503)},
)
async def export_recommendations(body: Annotated[RecommendationExport, Body()], caller: ExportCaller,
                                 bundle: BundleDep, state: StateDep, request: Request) -> StreamingResponse:
    model = _model(bundle)
    if body.category is not None and body.category not in set(model.category_names.tolist()):
        raise ApiProblem(422, "validation", "Invalid request", f"unknown category {body.category!r}",
                         errors=[FieldError(field="category", message=f"unknown category {body.category!r}")])
    if body.user_ids is not None:
        users, audience = _listed(bundle, state, body.user_ids), {"audience": "user_ids"}
    else:
        users, qhash = await run_in_threadpool(_filtered, bundle, body.filter)
        audience = {"audience": "filter", "query_hash": qhash}
    name = f"recommendations-{bundle.version}.{body.format}"
    return StreamingResponse(_stream(bundle, state, request.app.state.live, caller, users, body, audience),
                             media_type=MEDIA[body.format],
                             headers={"Content-Disposition": f'attachment; filename="{name}"'})
