"""Shared dependencies of the routes, as `Annotated` aliases.

    SettingsDep   the Settings the app started with (create_app(settings), an override of
                  `get_settings` in app.dependency_overrides, or the environment)
    StateDep      the process's ServingState
    BundleDep     the active bundle, taken once per request (503 problem if none is loaded), with
                  every erasure and opt-out recorded so far taken out
    Caller        any valid API key, as the keys file holds them now (one stat per request: a key
                  added or revoked by any process holds on every worker at its next request)
    <Scope>Caller a key with that scope (401 without a valid X-API-Key, 403 without the scope,
                  429 with Retry-After over the key's rate, or over the client address's rate of
                  requests without a valid key)

`authorize` and `get_bundle` make their checks through `admit` and `ready_bundle`, which the
GET recommendations lane (`api.routes.recommendations_lane`) calls too: one sequence of checks
whichever of the two serves a request.

The key is read from the request directly rather than through a nested `APIKeyHeader`
dependency: every nested dependency costs FastAPI a solve per request, and these are on the
hot path. `api.main` documents the X-API-Key scheme and each route's scopes in the OpenAPI
schema instead (`security_requirements`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.routing import APIRoute
from fastapi.security import SecurityScopes
from starlette.types import Scope

from api.bundle import Bundle
from behavior.store.keys import ApiKey
from api.problems import ApiProblem
from api.settings import Settings
from api.state import ServingState

API_KEY_HEADER = "X-API-Key"


async def get_state(request: Request) -> ServingState:
    return request.app.state.serving


StateDep = Annotated[ServingState, Depends(get_state)]


async def _settings(request: Request) -> Settings:
    return request.app.state.serving.settings


SettingsDep = Annotated[Settings, Depends(_settings)]


def ready_bundle(state: ServingState) -> Bundle | None:
    """The bundle a request is served from now, or None when `get_bundle` has more to do
    first (erasures or opt-outs to take out, or no bundle loaded)."""
    if state.privacy_changed():
        return None
    return state.bundle


async def get_bundle(request: Request) -> Bundle:
    state: ServingState = request.app.state.serving
    bundle = ready_bundle(state)   # one read: the request keeps this bundle to its end
    if bundle is None:
        if state.privacy_changed():  # an erasure or opt-out since: it holds before this request is served
            await run_in_threadpool(state.apply_privacy)
        bundle = state.bundle
    if bundle is None:
        raise ApiProblem(503, "no-bundle", "No bundle loaded",
                         "no bundle is being served yet; publish one with `behavior run`", headers={"Retry-After": "5"})
    return bundle


BundleDep = Annotated[Bundle, Depends(get_bundle)]

_CHALLENGE = {"WWW-Authenticate": f'APIKey header="{API_KEY_HEADER}"'}
_HEADER = API_KEY_HEADER.lower().encode("latin-1")


def credentials(scope: Scope) -> tuple[str, str | None]:
    """(the client's address, "unknown" without one; the first X-API-Key header, None without),
    read from the ASGI scope as Starlette's `Request` reads them."""
    client = scope.get("client")
    presented = None
    for name, value in scope["headers"]:
        if name == _HEADER:
            presented = value.decode("latin-1")
            break
    return (client[0] if client else "unknown"), presented


def admit(state: ServingState, client: str, presented: str | None, scopes: Iterable[str], *,
          keys_read: bool = False) -> ApiKey | ApiProblem | None:
    """The authorization of a request with API key `presented` from address `client`, for a
    route that needs `scopes`: the one sequence of checks behind `authorize` and the lanes.

    Returns the key, with a token of its rate taken; or, having taken nothing, the problem that
    refuses the request (the caller charges a 401 to the client address: see `authorize`); or
    None when the keys file changed since the keys were read (unless `keys_read`: the caller
    has just read them): read them (`state.refresh_keys`) and ask again with keys_read=True.
    """
    # Requests without a valid key are limited by client address, checked before the key is, so
    # that guessing keys gets 429s however good the guess.
    wait = state.unauthenticated.wait(client)
    if wait > 0:
        return ApiProblem(429, "rate-limited", "Too many requests",
                          f"too many requests without a valid API key from {client}; retry after the time in "
                          "Retry-After", headers={"Retry-After": state.unauthenticated.retry_after(wait)})
    if not keys_read and state.keys_changed():  # a key added or revoked by any process holds at once
        return None
    if not presented:
        return ApiProblem(401, "unauthenticated", "Unauthenticated",
                          f"send an API key in the {API_KEY_HEADER} header", headers=_CHALLENGE)
    key = state.keys.authenticate(presented)
    if key is None:
        return ApiProblem(401, "unauthenticated", "Unauthenticated",
                          f"the API key in {API_KEY_HEADER} is not valid (unknown or revoked)", headers=_CHALLENGE)
    missing = [s for s in scopes if s not in key.scopes]
    if missing:
        return ApiProblem(403, "forbidden", "Forbidden",
                          f"key {key.key_id!r} lacks the scope {', '.join(missing)} this route needs")
    wait = state.limiter.acquire(key.key_id)   # last: a refused request takes no token
    if wait > 0:
        return ApiProblem(429, "rate-limited", "Too many requests",
                          f"key {key.key_id!r} is over its rate of {state.limiter.rate:g} requests/s; "
                          "retry after the time in Retry-After",
                          headers={"Retry-After": state.limiter.retry_after(wait)})
    return key


async def authorize(security_scopes: SecurityScopes, request: Request) -> ApiKey:
    state: ServingState = request.app.state.serving
    client, presented = credentials(request.scope)
    outcome = admit(state, client, presented, security_scopes.scopes)
    if outcome is None:
        await run_in_threadpool(state.refresh_keys)
        outcome = admit(state, client, presented, security_scopes.scopes, keys_read=True)
    if isinstance(outcome, ApiProblem):
        if outcome.status == 401:   # no valid key: a token of the client address's limiter
            state.unauthenticated.acquire(client)
        raise outcome
    return outcome


Caller = Annotated[ApiKey, Security(authorize)]
ProfilesCaller = Annotated[ApiKey, Security(authorize, scopes=["profiles:read"])]
SegmentsCaller = Annotated[ApiKey, Security(authorize, scopes=["segments:read"])]
RecommendationsCaller = Annotated[ApiKey, Security(authorize, scopes=["recommendations:read"])]
AdminCaller = Annotated[ApiKey, Security(authorize, scopes=["admin"])]
PromotionsCaller = Annotated[ApiKey, Security(authorize, scopes=["promotions:target"])]
MerchantsCaller = Annotated[ApiKey, Security(authorize, scopes=["merchants:read"])]
MerchantsExportCaller = Annotated[ApiKey, Security(authorize, scopes=["merchants:read", "merchants:export"])]


def route_scopes(route: APIRoute) -> list[str] | None:
    """The scopes a route's key must have ([] for any valid key), or None if it needs no key."""
    for dep in route.dependant.dependencies:
        if dep.call is authorize:
            return list(dep.own_oauth_scopes or [])
    return None
