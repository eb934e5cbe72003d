"""A worked example on every operation of the OpenAPI schema: each request body and each
successful response carries `examples` on its media type, which Swagger UI and ReDoc show
beside the schema.

Most come from the models' own `examples` (`api.models`, `Body(openapi_examples=...)`); the
operations whose models hold none get theirs from `EXAMPLES` below. `add_examples` fills in
the schema built by `api.main`; the test suite sends every body example to the API and checks
every response example against its schema.
"""

from __future__ import annotations

from typing import Any

_AUDIENCE = {"bundle_version": "20260101T000000Z", "merchant_id": "m00017", "segment": "lapsed", "count": 1,
             "customers": [{"user_id": "u0000042", "purchase_days": 3, "payments": 4, "revenue": 182.4,
                            "last_payment_at": "2025-09-14T10:22:05+00:00", "days_since": 109.6}]}
_RELOAD = {"changed": True, "bundle_version": "20260101T000000Z", "previous_version": "20251201T000000Z"}
_ERASED = {"user_id": "u0000001", "erased": True, "bundle_version": "20260101T000000Z", "notice": None}
_PAYMENT = {"payment_id": "p-2026-000123", "user_id": "u0000001", "merchant_id": "m00017",
            "paid_at": "2026-01-02T09:30:00+00:00", "status": "success", "currency": "EUR", "channel": "app",
            "promotion_id": None,
            "lines": [{"line_no": 1, "item_id": "i00042", "category": "grocery", "quantity": 2, "amount": "12.50"}]}
_RECEIPT = {"code": "10000", "msg": "Success", "accepted": 1, "duplicates": 0, "rejected": []}
_INTERVAL = {"treatment": 0.061, "control": 0.042, "diff": 0.019, "ci": [0.004, 0.034], "se": 0.006, "n": 4210,
             "level": 0.95, "anytime_valid": True}
_LIVE = {"promotion_id": "promo001", "name": "Spring coupon", "starts_at": "2026-03-01T00:00:00+00:00",
         "ends_at": "2026-03-31T23:59:59+00:00", "at": "2026-03-12T08:00:00+00:00", "running": True,
         "arms": {"treatment": {"users": 3789, "conversions": 231, "conversion_rate": 0.061, "revenue": 10395.0,
                                "revenue_per_user": 2.74},
                  "control": {"users": 421, "conversions": 18, "conversion_rate": 0.042, "revenue": 702.0,
                              "revenue_per_user": 1.67}},
         "live_lines": 5180, "conversion": _INTERVAL,
         "revenue_per_user": {**_INTERVAL, "treatment": 2.74, "control": 1.67, "diff": 1.07, "ci": [0.21, 1.93],
                              "se": 0.44}}
_USERS_CSV = "user_id,segment,churn_probability\nu0000001,At Risk,0.71\nu0000007,Champions,0.08\n"
_RECS_CSV = ("user_id,rank,item_id,score,name,category,merchant_id,price,source\n"
             "u0000001,1,i00042,0.91,,grocery,m00017,4.5,model\nu0000001,2,i00007,0.87,,grocery,m00004,2.25,model\n")
_MERCHANTS_CSV = "merchant_id,merchant_segment,revenue_90d\nm00017,at_risk,3120.5\nm00004,declining,2210.0\n"


def _one(summary: str, value: Any) -> dict[str, dict]:
    return {"example": {"summary": summary, "value": value}}


# (method, path) -> {"request" | "<status>" | "<status> <media type>": examples of that media type}
EXAMPLES: dict[tuple[str, str], dict[str, dict]] = {
    ("get", "/healthz"): {"200": _one("The process is up", {"status": "ok"})},
    ("get", "/readyz"): {"200": _one("A bundle is loaded", {"status": "ready"})},
    ("get", "/v1/merchants/{merchant_id}/customers"): {"200": _one("The merchant's lapsed customers", _AUDIENCE)},
    ("get", "/v1/merchants/customers"): {"200": _one("The merchant's lapsed customers", _AUDIENCE)},
    ("post", "/v1/admin/reload"): {"200": _one("A newer bundle was published and is now served", _RELOAD)},
    ("post", "/v1/admin/rollback"): {"200": _one("Back to the bundle published before", {
        **_RELOAD, "bundle_version": "20251201T000000Z", "previous_version": "20260101T000000Z"})},
    ("delete", "/v1/admin/users/{user_id}"): {"200": _one("The user is erased on every worker", _ERASED)},
    ("delete", "/v1/admin/users"): {"200": _one("The user is erased on every worker", _ERASED)},
    ("post", "/v1/notifications/payments"): {
        "request": {"one": {"summary": "One payment with one line", "value": _PAYMENT},
                    "several": {"summary": "A list of payments (up to 1000)",
                                "value": [_PAYMENT, {**_PAYMENT, "payment_id": "p-2026-000124", "user_id": "u0000002"}]}},
        "200": _one("Stored in the inbox", _RECEIPT)},
    ("get", "/v1/promotions/{promotion_id}/live"): {"200": _one("A running promotion, treatment against holdout", _LIVE)},
    ("post", "/v1/segments/query"): {"200 text/csv": _one("Accept: text/csv, for a mailing tool", _USERS_CSV)},
    ("post", "/v1/merchants/query"): {"200 text/csv": _one("Accept: text/csv, with the fields asked for", _MERCHANTS_CSV)},
    ("post", "/v1/recommendations/export"): {
        "request": {"ids": {"summary": "Top 5 for a list of users, as CSV",
                            "value": {"user_ids": ["u0000001", "u0000007"], "n": 5}},
                    "segment": {"summary": "Top 10 for a segment, as Parquet",
                                "value": {"filter": {"all": [{"field": "segment", "op": "eq", "value": "At Risk"}]},
                                          "format": "parquet"}}},
        "200 text/csv": _one("format csv (the default)", _RECS_CSV),
        "200 application/vnd.apache.parquet": _one("format parquet: the same columns in one Parquet file",
                                                   "(binary Parquet: user_id, rank, item_id, score, name, category, "
                                                   "merchant_id, price, source)")},
}


def _model_examples(media: dict, components: dict) -> dict[str, dict] | None:
    """The examples a media type's schema (a $ref to a model) declares, as OpenAPI `examples`."""
    ref = media.get("schema", {}).get("$ref", "")
    listed = components.get(ref.rsplit("/", 1)[-1], {}).get("examples") if ref else None
    if not listed:
        return None
    return {f"example{i + 1}" if i else "example": {"value": v} for i, v in enumerate(listed)}


def add_examples(schema: dict) -> None:
    """Give every request body and every 2xx response of `schema` `examples` on each media type
    (kept where the route declared its own)."""
    components = schema.get("components", {}).get("schemas", {})
    for path, ops in schema.get("paths", {}).items():
        for method, op in ops.items():
            given = EXAMPLES.get((method, path), {})
            targets = [("request", ct, m) for ct, m in op.get("requestBody", {}).get("content", {}).items()]
            targets += [(code, ct, m) for code, resp in op.get("responses", {}).items() if code.startswith("2")
                        for ct, m in resp.get("content", {}).items()]
            for where, ct, media in targets:
                if "examples" in media:
                    continue
                found = given.get(f"{where} {ct}") or given.get(where) or _model_examples(media, components)
                if found is not None:   # tests/api/test_openapi_examples.py insists there is one
                    media["examples"] = found
