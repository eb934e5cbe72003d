"""POST /v1/notifications/payments: signed payment result notifications.

Authenticated by the sender's signature, not an API key (see `behavior.store.senders`). The
answer follows the payment platforms' convention: `{"code": "10000", "msg": "Success", ...}`
with HTTP 200 once every line is in the inbox on disk; errors are problem+json documents with
a `code` as well:

  40001  401  Behavior-Sender or Behavior-Signature missing
  40002  401  unknown or revoked sender, wrong signature, timestamp more than 300 s off
  40004  400  the body is not JSON / 422 the JSON is not payments of the documented shape
  40013  413  the body is larger than the limit (BEHAVIOR_API_MAX_NOTIFICATION_BYTES)
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field
from pydantic_core import to_json
from starlette.types import ASGIApp, Receive, Scope, Send

from api.problems import FieldError, ProblemResponse, problem_response
from behavior.notifications import MAX_PAYMENTS, NotificationError, parse_body
from behavior.store.senders import SignatureError, verify

router = APIRouter(prefix="/v1", tags=["notifications"])
PATH = "/v1/notifications/payments"
SENDER_HEADER = "Behavior-Sender"
SIGNATURE_HEADER = "Behavior-Signature"
SUCCESS = "10000"
_CHALLENGE = {"WWW-Authenticate": f'Signature header="{SIGNATURE_HEADER}"'}


class RejectedLine(BaseModel):
    payment_id: str
    line_no: int
    reason: str = Field(description="Ingest's reason code, e.g. card_number, bad_paid_at, erased_user.")
    detail: str


class NotificationReceipt(BaseModel):
    code: str = Field(SUCCESS, description="10000: every line is stored (accepted), known (duplicate) or rejected.")
    msg: str = "Success"
    accepted: int = Field(description="New lines stored in the inbox.")
    duplicates: int = Field(description="Lines received before (same payment_id and line_no), not stored again.")
    rejected: list[RejectedLine] = Field(description="Lines refused, with the reason; kept in the quarantine.")


_VALUE = {"anyOf": [{"type": "string"}, {"type": "number"}, {"type": "null"}]}
_PAYMENT = {
    "type": "object", "required": ["payment_id", "lines"],
    "properties": {"payment_id": {"type": "string", "minLength": 1},
                   **{f: _VALUE for f in ("user_id", "merchant_id", "paid_at", "status", "currency", "channel",
                                          "promotion_id")},
                   "lines": {"type": "array", "minItems": 1, "items": {
                       "type": "object", "required": ["line_no"],
                       "properties": {"line_no": {"type": "integer", "minimum": 0, "maximum": 2_147_483_647},
                                      **{f: _VALUE for f in ("item_id", "category", "quantity", "amount")}}}}}}
BODY_SCHEMA = {"description": f"One payment or a list of up to {MAX_PAYMENTS}; the columns are the lake's "
                              "(user_id and item_id required, checked as ingest checks them).",
               "anyOf": [_PAYMENT, {"type": "array", "minItems": 1, "maxItems": MAX_PAYMENTS, "items": _PAYMENT}]}


def _problem(request: Request, status: int, code: str, detail: str, *, headers: dict | None = None,
             errors: list[FieldError] | None = None, slug: str = "notification") -> ProblemResponse:
    return problem_response(status, detail=detail, slug=slug, instance=request.url.path, headers=headers,
                            errors=errors, code=code)


async def _read(request: Request, limit: int) -> bytes | None:
    """The body, or None if it is larger than `limit` bytes."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        return None
    chunks, seen = [], 0
    async for chunk in request.stream():
        seen += len(chunk)
        if seen > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


@router.post(PATH.removeprefix("/v1"), summary="Signed payment result notifications (one payment or a list)",
             response_model=NotificationReceipt,
             responses={400: {"description": "Not JSON"}, 401: {"description": "Not signed by an active sender"},
                        413: {"description": "Body too large"}, 422: {"description": "Not payments"}},
             openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": BODY_SCHEMA}}}})
async def receive_payments(request: Request) -> Response:
    receiver = request.app.state.receiver
    settings = request.app.state.serving.settings
    name, header = request.headers.get(SENDER_HEADER), request.headers.get(SIGNATURE_HEADER)
    if not name or not header:
        return _problem(request, 401, "40001", f"send the {SENDER_HEADER} and {SIGNATURE_HEADER} headers "
                        "(t=<unix seconds>,v1=<signature of '<t>.<raw body>'>)", headers=_CHALLENGE, slug="unsigned")
    body = await _read(request, settings.max_notification_bytes)
    if body is None:
        return _problem(request, 413, "40013", f"the body is larger than {settings.max_notification_bytes} bytes; "
                        f"send at most {MAX_PAYMENTS} payments per request, or fewer", slug="too-large")
    sender = receiver.senders.get(name)
    if sender is None or not sender.active:
        return _problem(request, 401, "40002", f"sender {name!r} is {'revoked' if sender else 'not registered'}; "
                        "register it with `behavior senders add`", headers=_CHALLENGE, slug="bad-signature")
    try:
        verify(sender, header, body, time.time())
    except SignatureError as exc:
        return _problem(request, 401, "40002", str(exc), headers=_CHALLENGE, slug="bad-signature")
    try:
        rows = parse_body(body)
    except NotificationError as exc:
        if exc.field == "body" and exc.message.startswith("not valid JSON"):
            return _problem(request, 400, "40004", f"the body is not valid JSON: {exc.message}", slug="malformed")
        return _problem(request, 422, "40004", f"the body is not payments of the documented shape: {exc}",
                        errors=[FieldError(field=exc.field, message=exc.message)], slug="validation")
    receipt = await receiver.submit(rows, sender.name)
    return Response(to_json({"code": SUCCESS, "msg": "Success", "accepted": receipt.accepted,
                             "duplicates": receipt.duplicates, "rejected": receipt.rejected}),
                    media_type="application/json")


class NotificationLane:
    """ASGI middleware that hands POST /v1/notifications/payments straight to
    `receive_payments`, ahead of FastAPI's routing, dependency solving and response checks.

    That machinery costs about as much CPU as checking and storing a one-payment notification
    (docs/performance.md), and notifications are the API's busiest write. The route above
    declares the operation (OpenAPI) with this same handler; the middlewares outside this one
    (the catch-all 500 and the body limit, which leaves this path to the handler) still apply.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == PATH:
            response = await receive_payments(Request(scope, receive))
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
