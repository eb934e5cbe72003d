"""GET /v1/merchants/{merchant_id}, POST /v1/merchants/query (the segment query's filter, sort,
cursor and CSV export over merchant profiles) and GET /v1/merchants/{merchant_id}/customers
(the merchant's own audience, audited as an export).

The two per-merchant routes also have a query form for any id, `/` included, as the users'
routes do: GET /v1/merchants/profile?merchant_id= and GET /v1/merchants/customers?merchant_id=.
They are matched before the path forms, so a merchant whose id is `profile` or `customers` is
read with the query form."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Body, Header, Path, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from behavior.ids import normalize_id
from api.bundle import Bundle
from api.deps import BundleDep, MerchantsCaller, MerchantsExportCaller, StateDep
from api.merchants_data import DEFAULT_FIELDS, MerchantData
from api.models import MerchantAudience, MerchantProfile, QueryResult, SegmentQuery
from api.problems import ApiProblem
from api.query import compile_query, json_limit
from api.routes._responses import AUTH, problems
from api.routes._user_id import MAX_ID_LENGTH, id_of
from api.routes.segments import csv_chunks, run_json, wants_csv

router = APIRouter(prefix="/v1/merchants", tags=["merchants"])

QUERY_ENDPOINT = "POST /v1/merchants/query"
AUDIENCE_ENDPOINT = "GET /v1/merchants/{merchant_id}/customers"
MAX_AUDIENCE = 10_000

MerchantId = Annotated[str, Path(min_length=1, max_length=MAX_ID_LENGTH, examples=["m00017"],
                                  description="The merchant's id (surrounding whitespace is ignored). An id with "
                                              "`/` needs the query form (`?merchant_id=`).")]
MerchantIdQuery = Annotated[str, Query(min_length=1, max_length=MAX_ID_LENGTH, examples=["m00017"],
                                       description="The merchant's id, any id, URL-encoded (surrounding "
                                                   "whitespace is ignored).")]
Audience = Annotated[Literal["loyal", "at_risk", "lapsed"], Query(description="Which audience.")]
AudienceSize = Annotated[int, Query(ge=1, le=MAX_AUDIENCE, description="At most this many customers.")]


def _merchants(bundle: Bundle) -> MerchantData:
    if bundle.merchants is None:
        section = bundle.report.get("merchants")
        why = section.get("skipped") if isinstance(section, dict) else None
        detail = (f"bundle {bundle.version} has no merchant profiles: the merchants stage was skipped: {why}" if why
                  else f"bundle {bundle.version} has no merchant profiles; publish one with the merchants stage "
                       "(`behavior run`)")
        raise ApiProblem(503, "no-merchants", "No merchant profiles", detail, headers={"Retry-After": "60"})
    return bundle.merchants


def _known(data: MerchantData, merchant_id: str, bundle: Bundle) -> None:
    if merchant_id not in data.index:
        raise ApiProblem(404, "unknown-merchant", "Unknown merchant",
                         f"no merchant {merchant_id!r} in bundle {bundle.version}")


_PROFILE = {"summary": "One merchant's profile, with reasons for a high churn risk",
            "responses": problems(*AUTH, 404, 422, 503)}


@router.get("/profile", **{**_PROFILE, "summary": _PROFILE["summary"] + " (any id, as a query parameter)"})
async def get_merchant_by_query(merchant_id: MerchantIdQuery, caller: MerchantsCaller,
                                bundle: BundleDep) -> MerchantProfile:
    return _profile(bundle, id_of(merchant_id, "merchant_id"))


_AUDIENCE = {"summary": "The merchant's own audience: its loyal, at-risk or lapsed customers (an audited export)",
             "description": "For co-funded promotions. Opted-out and erased users never appear. Every call is "
                            "written to the audit log. Needs merchants:read and merchants:export.",
             "responses": problems(*AUTH, 404, 422, 503)}


@router.get("/customers", **{**_AUDIENCE, "summary": _AUDIENCE["summary"] + " (any id, as a query parameter)"})
async def merchant_customers_by_query(merchant_id: MerchantIdQuery, caller: MerchantsExportCaller,
                                      bundle: BundleDep, state: StateDep, segment: Audience = "loyal",
                                      n: AudienceSize = 100) -> MerchantAudience:
    return await _audience(bundle, state, caller, id_of(merchant_id, "merchant_id"), segment, n,
                           "GET /v1/merchants/customers")


@router.get("/{merchant_id}", **_PROFILE)
async def get_merchant(merchant_id: MerchantId, caller: MerchantsCaller, bundle: BundleDep) -> MerchantProfile:
    return _profile(bundle, normalize_id(merchant_id))


def _profile(bundle: Bundle, merchant_id: str) -> MerchantProfile:
    data = _merchants(bundle)
    _known(data, merchant_id, bundle)
    row = data.row(merchant_id)
    reasons = row.get("churn_reasons")
    return MerchantProfile.model_validate({**row, "reasons": reasons.split("; ") if reasons else []})


_QUERY_EXAMPLES = {
    "at_risk": {"summary": "Merchants at risk, the most revenue at stake first",
                "value": {"filter": {"all": [{"field": "merchant_segment", "op": "in",
                                              "value": ["at_risk", "declining"]}]},
                          "sort": [{"field": "revenue_90d", "desc": True}], "limit": 20}},
}


@router.post(
    "/query",
    summary="Merchants matching a filter: JSON pages, or a CSV export with Accept: text/csv",
    description=(
        "The segment query's typed filter over merchant profile fields, sort (merchant_id is always the last "
        "tiebreak), cursor pagination and total count. With `Accept: text/csv` (scope merchants:export) all "
        "matching merchants are streamed as CSV (or `limit` rows), and the export is written to the audit log."
    ),
    response_model=QueryResult,
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}},
                     "description": "A page of merchants (JSON) or the whole export (CSV)."},
               **problems(400, *AUTH, 409, 413, 422, 503)},
)
async def query_merchants(
    query: Annotated[SegmentQuery, Body(openapi_examples=_QUERY_EXAMPLES)],
    caller: MerchantsCaller, bundle: BundleDep, state: StateDep,
    accept: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> QueryResult | StreamingResponse:
    csv = wants_csv(accept)
    if csv and "merchants:export" not in caller.scopes:
        raise ApiProblem(403, "forbidden", "Forbidden",
                         f"key {caller.key_id!r} lacks the scope merchants:export that CSV exports need")
    data = _merchants(bundle)
    c = compile_query(query, data.fields, bundle.version, table="merchants", key="merchant_id",
                      default_fields=DEFAULT_FIELDS, restrict=None)
    if not csv:
        return await run_in_threadpool(run_json, bundle, c, json_limit(query), data)
    name = f"merchant-export-{bundle.version}.csv"
    return StreamingResponse(csv_chunks(bundle, c, query.limit, state, caller, data, QUERY_ENDPOINT),
                             media_type="text/csv", headers={"Content-Disposition": f'attachment; filename="{name}"'})


@router.get("/{merchant_id}/customers", **_AUDIENCE)
async def merchant_customers(merchant_id: MerchantId, caller: MerchantsExportCaller, bundle: BundleDep,
                             state: StateDep, segment: Audience = "loyal", n: AudienceSize = 100) -> MerchantAudience:
    return await _audience(bundle, state, caller, normalize_id(merchant_id), segment, n, AUDIENCE_ENDPOINT)


async def _audience(bundle: Bundle, state, caller, merchant_id: str, segment: str, n: int,
                    endpoint: str) -> MerchantAudience:
    data = _merchants(bundle)
    _known(data, merchant_id, bundle)
    rows = await run_in_threadpool(data.audience, merchant_id, segment, n, bundle.profiles.table, bundle.erased)
    state.audit.write(key_id=caller.key_id, endpoint=endpoint, rows=len(rows),
                      bundle_version=bundle.version, format="json", completed=True, merchant_id=merchant_id,
                      segment=segment)
    return MerchantAudience(bundle_version=bundle.version, merchant_id=merchant_id, segment=segment,
                            count=len(rows), customers=rows)
