"""The FastAPI application: `create_app()` wires the routers, the problem+json handlers, the
body-size limit and the lifespan that loads the active bundle and polls CURRENT."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from fastapi.telemetry import TelemetryConfig

import behavior
from api import docs_pages, problems
from behavior.store.bundle import BundleError
from api.deps import API_KEY_HEADER, route_scopes
from api.problems import PROBLEM_MEDIA_TYPE, BodyLimit, Problem
from api.live import LiveState, PromotionMonitor, poll_live
from api.notify import Receiver
from api.openapi_examples import add_examples
from api.routes import (admin, health, merchants, model, notifications, profiles, promotions, promotions_live,
                        recommendations, recommendations_export, segments)
from api.routes.recommendations_lane import RecommendationsLane
from api.settings import Settings, get_settings
from api.state import ServingState, poll_forever
from behavior.store.bundle import NoBundleError

log = logging.getLogger("api")
SECURITY_SCHEME = "APIKeyHeader"
NO_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}
ROUTERS = (health.router, model.router, recommendations.router, profiles.router, segments.router, promotions.router,
           merchants.router, admin.router, notifications.router, promotions_live.router, recommendations_export.router)

DESCRIPTION = """\
Recommendations, customer profiles and segment queries for marketing, served from the active
published bundle.

* Every route under `/v1` needs an API key in the `X-API-Key` header; the key's scopes decide
  what it may call (401 without a valid key, 403 without the scope, 429 over the key's rate).
  Requests without a valid key are rate limited by client address. Each server process counts
  on its own: with `behavior serve --workers N` a key may make up to N times its rate.
* Users are addressed by id in the path (`/v1/users/{user_id}/profile`; percent-encode `%`, `?`,
  `#` and spaces) or, for any id at all (`.` and `..` included), in the query
  (`/v1/users/profile?user_id=`).
* Errors are RFC 9457 `application/problem+json` documents; validation errors list the fields.
* Numbers are rounded for reading: money, scores and days to 2 decimals, probabilities, shares and
  rates to 4, counts are integers. CSV exports keep the bundle's full precision.
* A newly published bundle is picked up without a restart; `bundle_version`
  in the answers says which one served a request.
"""


def app_settings(app: FastAPI) -> Settings:
    """The settings given to create_app, else an override of get_settings (tests), else the environment."""
    given = getattr(app.state, "settings", None)
    return given if given is not None else app.dependency_overrides.get(get_settings, get_settings)()


def freeze_startup_heap() -> None:
    """Once per process, after the app's first start-up: collect, then move every object alive
    (modules, the app, the first bundle) out of the garbage collector's view (`gc.freeze`).

    A full collection visits every tracked object; with the start-up's ~160,000 of them it
    took 90-160 ms of CPU under the notify bench, holding the GIL and so stopping every request
    for that long, every 5-15 s while the live state grew. Objects made later (the live state,
    a reloaded bundle) are collected as before."""
    if gc.get_freeze_count() == 0:
        gc.collect()
        gc.freeze()


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = app_settings(app)
    state = ServingState(settings)
    app.state.serving = state
    app.state.receiver = Receiver(settings.data_dir)
    app.state.live = LiveState(settings.data_dir)
    app.state.promotions_live = PromotionMonitor(settings.data_dir)
    state.refresh_keys()
    if len(state.keys) == 0:
        log.warning("no API keys in %s or BEHAVIOR_API_KEYS: every /v1 request will get 401; "
                    "create one with `behavior keys add`", settings.keys_path)
    try:
        await asyncio.to_thread(state.reload)
    except NoBundleError as exc:
        log.warning("%s; waiting for one", exc)
    except BundleError as exc:
        log.error("the active bundle cannot be served: %s; waiting for a good one", exc)
    freeze_startup_heap()
    poller = asyncio.create_task(poll_forever(state, settings.reload_interval_s)) \
        if settings.reload_interval_s > 0 else None
    live = asyncio.create_task(poll_live(app.state.live, state))
    try:
        yield
    finally:
        live.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await live
        if poller is not None:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller


def _max_body(app: FastAPI) -> int:
    state = getattr(app.state, "serving", None)
    return state.settings.max_body_bytes if state is not None else Settings().max_body_bytes


def create_app(settings: Settings | None = None) -> FastAPI:
    """The API app. With `settings`, they are used instead of `get_settings()` (which otherwise
    reads the environment when the app starts)."""
    # OpenTelemetry off: the API's observability is its logs (the project ships no OpenTelemetry
    # SDK), and FastAPI otherwise asks each global provider whether it is configured on every
    # request (about 11 µs, as much as the lanes' own checks)
    app = FastAPI(title="Behavior API", version=behavior.__version__, description=DESCRIPTION,
                  lifespan=lifespan, docs_url=None, redoc_url=None,   # docs_pages serves them offline
                  telemetry=NO_TELEMETRY)
    # Not a dependency override: FastAPI re-analyses every dependency of every request when any
    # override is set. Routes read the settings from the serving state.
    app.state.settings = settings
    for r in ROUTERS:
        app.include_router(r)
    docs_pages.install(app)
    problems.install(app)
    app.add_middleware(notifications.NotificationLane)
    app.add_middleware(RecommendationsLane)   # like NotificationLane: inside the body limit and the catch-all
    app.add_middleware(BodyLimit, max_bytes=lambda: _max_body(app), exempt=(notifications.PATH,))
    app.add_middleware(problems.CatchAll)  # outermost of ours: also catches errors of the body limit
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema with every error response as application/problem+json (Problem), and a
    worked example on every request body and successful response (`api.openapi_examples`)."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    ref = {"$ref": "#/components/schemas/Problem"}
    schema.setdefault("components", {})["securitySchemes"] = {SECURITY_SCHEME: {
        "type": "apiKey", "in": "header", "name": API_KEY_HEADER,
        "description": "An API key; its scopes (listed on each operation) decide which routes it may call."}}
    for route in (r for router in ROUTERS for r in router.routes):
        scopes = route_scopes(route) if isinstance(route, APIRoute) else None
        if scopes is None:
            continue
        for method in route.methods:
            op = schema["paths"][route.path_format][method.lower()]
            op["security"] = [{SECURITY_SCHEME: scopes}]
            if scopes:
                op["description"] = (op.get("description", "") + f"\n\nScope: `{'`, `'.join(scopes)}`.").strip()
    components = schema["components"].setdefault("schemas", {})
    components["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(components["Problem"].pop("$defs", {}))
    for path in schema.get("paths", {}).values():
        for op in path.values():
            responses = op.setdefault("responses", {})
            # answered before any route runs: the body limit (every request) and FastAPI's reading of a body
            if "requestBody" in op:
                responses.setdefault("400", {"description": "The body could not be read as UTF-8 JSON"})
            responses.setdefault("413", {"description": "Request body too large"})
            responses.setdefault("500", {"description": "Internal error (details are in the server log)"})
            for code, resp in responses.items():
                if code.isdigit() and int(code) >= 400:
                    resp["content"] = {PROBLEM_MEDIA_TYPE: {"schema": ref}}
                    if code == "422":
                        resp["description"] = "Invalid request, with field-level `errors`"
    add_examples(schema)
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
    app.openapi_schema = schema
    return schema
