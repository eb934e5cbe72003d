"""RFC 9457 problem details: the one shape of every 4xx / 5xx answer of the API.

Handlers turn `ApiProblem`, Starlette's HTTP errors (unknown route 404, 405, 413), request
validation errors (422 with field-level `errors`) and unexpected exceptions (a generic 500,
logged here with its traceback) into `application/problem+json`. No detail ever carries a
stack trace or a file system path.
"""

from __future__ import annotations

import logging
import traceback
import uuid
from http import HTTPStatus
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("api")

PROBLEM_MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:behavior:problem:"


class FieldError(BaseModel):
    field: str = Field(description="Where the error is: a body path like `filter.all[0].value`, or a parameter name.")
    message: str


class Problem(BaseModel):
    """An RFC 9457 problem document."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={"examples": [{
            "type": "urn:behavior:problem:unknown-user", "title": "Unknown user", "status": 404,
            "detail": "no profile for user 'u404' in bundle 20260101T000000Z-abc123",
            "instance": "/v1/users/u404/profile"}]},
    )

    type: str = Field("about:blank", description="A URI that identifies the kind of problem.")
    title: str
    status: int
    detail: str | None = None
    instance: str | None = Field(None, description="The request path this problem occurred on.")
    errors: list[FieldError] | None = Field(None, description="Field-level details of a validation problem.")


class ProblemResponse(JSONResponse):
    media_type = PROBLEM_MEDIA_TYPE


class ApiProblem(Exception):
    """Raised by handlers and dependencies; becomes one problem+json response."""

    def __init__(self, status: int, slug: str, title: str, detail: str | None = None, *,
                 headers: dict[str, str] | None = None, errors: list[FieldError] | None = None,
                 extensions: dict[str, Any] | None = None) -> None:
        super().__init__(detail or title)
        self.status = status
        self.slug = slug
        self.title = title
        self.detail = detail
        self.headers = headers
        self.errors = errors
        self.extensions = extensions or {}   # RFC 9457 extension members of this kind of problem


def problem_response(status: int, *, title: str | None = None, detail: str | None = None, slug: str | None = None,
                     instance: str | None = None, headers: dict[str, str] | None = None,
                     errors: list[FieldError] | None = None, **extra: Any) -> ProblemResponse:
    body: dict[str, Any] = {
        "type": TYPE_PREFIX + slug if slug else "about:blank",
        "title": title or _phrase(status),
        "status": status,
        "detail": detail,
        "instance": instance,
    }
    if errors is not None:
        body["errors"] = [e.model_dump() for e in errors]
    body.update(extra)
    return ProblemResponse(body, status_code=status, headers=headers)


def api_problem_response(exc: ApiProblem, instance: str) -> ProblemResponse:
    """The answer to `exc` raised on the request to `instance` (the request URL's path)."""
    return problem_response(exc.status, title=exc.title, detail=exc.detail, slug=exc.slug, instance=instance,
                            headers=exc.headers, errors=exc.errors, **exc.extensions)


_PHRASES = {413: "Content Too Large", 422: "Unprocessable Content"}  # RFC 9110 names


def _phrase(status: int) -> str:
    if status in _PHRASES:
        return _PHRASES[status]
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _location(loc: tuple[Any, ...]) -> str:
    """('body', 'filter', 'all', 0, 'field') -> 'filter.all[0].field'; ('query', 'n') -> 'n'."""
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        parts = parts[1:]
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += ("." if out else "") + str(p)
    return out or "body"


def validation_errors(exc: RequestValidationError) -> list[FieldError]:
    errors = []
    for e in exc.errors():
        # Pydantic adds the union member tried (e.g. 'function-after[...]') to the location: drop it.
        loc = tuple(p for p in e.get("loc", ()) if not (isinstance(p, str) and p in _UNION_TAGS))
        msg = str(e.get("msg", "invalid value"))
        if loc == ("body",) and e.get("type") in ("model_attributes_type", "dict_type", "missing"):
            msg = "send a JSON object with Content-Type: application/json"
        if e.get("type") == "json_invalid":
            msg = f"the body is not valid JSON ({e.get('ctx', {}).get('error', 'decode error')})"
            loc = ("body",)
        errors.append(FieldError(field=_location(loc), message=msg))
    return errors


_UNION_TAGS = {"condition", "group"}  # the tags of api.models.FilterItem

_ROUTE_DETAILS = {
    400: "the request body could not be read: send UTF-8 JSON with Content-Type: application/json",
    404: "there is no such route; the routes are listed at /docs",
    405: "this route does not accept that method",
    413: "the request body is too large",
}


def install(app: FastAPI) -> None:
    """Register the problem+json handlers and the last-resort 500 middleware on `app`."""

    @app.exception_handler(ApiProblem)
    async def _api_problem(request: Request, exc: ApiProblem) -> ProblemResponse:
        return api_problem_response(exc, request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> ProblemResponse:
        detail = _ROUTE_DETAILS.get(exc.status_code)
        if isinstance(exc.detail, str) and exc.detail and exc.detail != _phrase(exc.status_code) \
                and exc.status_code not in _ROUTE_DETAILS:
            detail = exc.detail
        return problem_response(exc.status_code, detail=detail, instance=request.url.path,
                                headers=dict(exc.headers) if exc.headers else None)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> ProblemResponse:
        errors = validation_errors(exc)
        fields = ", ".join(dict.fromkeys(e.field for e in errors))
        return problem_response(422, title="Invalid request", slug="validation",
                                detail=f"the request is not valid: see errors ({fields})",
                                instance=request.url.path, errors=errors)

    app.add_middleware(CatchAll)


class CatchAll:
    """Turns an exception no handler took into a generic 500 problem and logs it with an id."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            incident = uuid.uuid4().hex[:12]
            # The log names the route's template, the error's type and where it was raised, never
            # the request path or the error's message: either can hold a user id (erased users
            # leave no trace, and the access log hashes ids for the same reason).
            route = getattr(scope.get("route"), "path", "an unmatched path")
            log.error("unhandled error %s on %s %s: %s\n%s", incident, scope.get("method"), route,
                      type(exc).__name__, "".join(traceback.format_tb(exc.__traceback__)).rstrip())
            if started:
                raise
            response = problem_response(500, detail=f"an internal error occurred; quote incident {incident} "
                                        "to the operators", instance=scope.get("path"), incident=incident)
            await response(scope, receive, send)


class BodyLimit:
    """413 for request bodies larger than `max_bytes` (by Content-Length, or counted as they stream),
    except on the paths of `exempt`, whose routes apply their own limit."""

    def __init__(self, app: ASGIApp, max_bytes: Callable[[], int], exempt: tuple[str, ...] = ()) -> None:
        self.app = app
        self._max_bytes = max_bytes  # read per request: the settings are known only once the app started
        self.exempt = exempt

    @property
    def max_bytes(self) -> int:
        return self._max_bytes()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in self.exempt:
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    too_big = int(value) > limit
                except ValueError:
                    too_big = False
                if too_big:
                    await self._reject(scope, receive, send, limit)
                    return
        seen = 0

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    # FastAPI re-raises HTTP errors met while reading the body: this becomes a 413 problem.
                    raise StarletteHTTPException(413)
            return message

        await self.app(scope, counting_receive, send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        response = problem_response(413, detail=f"the request body is larger than {limit} bytes",
                                    instance=scope.get("path"))
        await response(scope, receive, send)
