"""`RecommendationsLane`: GET recommendations served ahead of FastAPI for the common request.

FastAPI's routing, dependency solving and response checks cost about half of a GET
recommendations (docs/performance.md), the API's busiest read. The lane serves a request
that FastAPI's routes `recommend` and `recommend_by_query` would answer with 200 (a valid
API key with the recommendations scope under its rate, well-formed `n`, `category` and
`exclude_purchased`, a category the recommender knows), with the same checks in the same
state (`ServingState`'s keys, limiters and privacy stamps), made by the same functions as
FastAPI's dependencies (`api.deps.admit`, `api.deps.ready_bundle`), and the same answer built
by the same function. Anything else goes on to FastAPI untouched, having taken nothing (no token of
a limiter), so every error answer is FastAPI's: no or an invalid key, a missing scope, a
key or client address over its rate, keys or erasures changed since last read (FastAPI
reads them again), no bundle or no recommender, any parameter FastAPI would refuse, convert
or ignore (unknown or repeated ones, `n=010`, `exclude_purchased=yes`), an unknown category,
and any path other than exactly the two routes' (a root path, a trailing slash or line
break). The routes stay FastAPI's operations in the OpenAPI document.
"""

from __future__ import annotations

import weakref
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from api.deps import admit, credentials, ready_bundle
from api.problems import ApiProblem, api_problem_response
from api.routes._user_id import MAX_ID_LENGTH
from api.routes.recommendations import MAX_CATEGORY_LENGTH, MAX_N, recommendations_response
from behavior.ids import normalize_id
from behavior.recommend.serving import ServingModel
from behavior.store.keys import ApiKey

_SCOPES = ("recommendations:read",)
PREFIX, SUFFIX = "/v1/users/", "/recommendations"
QUERY_FORM = "/v1/users/recommendations"     # the id in ?user_id=
_PARAMS = frozenset({"n", "category", "exclude_purchased"})
_QUERY_FORM_PARAMS = _PARAMS | {"user_id"}
_BOOLS = {"true": True, "false": False}


def _query(raw: bytes) -> dict[str, str] | None:
    """The query parameters as Starlette reads them (latin-1, blank values kept); None if one repeats."""
    out: dict[str, str] = {}
    if raw:
        for name, value in parse_qsl(raw.decode("latin-1"), keep_blank_values=True):
            if name in out:
                return None
            out[name] = value
    return out


def _n(raw: str | None) -> int | None:
    """`n` as plain decimal digits within 1..MAX_N (10 when absent); None for any other text."""
    if raw is None:
        return 10
    if not (raw.isascii() and raw.isdigit()) or raw[0] == "0" or len(raw) > len(str(MAX_N)):
        return None
    n = int(raw)
    return n if n <= MAX_N else None


class RecommendationsLane:
    """ASGI middleware that answers the common GET recommendations itself (see the module
    docstring) and hands every other request to the app unchanged."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # each recommender's category names, for the check made before a token is taken
        self._categories: weakref.WeakKeyDictionary[ServingModel, frozenset[str]] = weakref.WeakKeyDictionary()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            response = self._answer(scope)
            if response is not None:
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _known(self, model: ServingModel, category: str) -> bool:
        names = self._categories.get(model)
        if names is None:
            names = self._categories[model] = frozenset(str(c) for c in model.category_names)
        return category in names

    def _answer(self, scope: Scope) -> Response | None:
        """The answer FastAPI's route would give, or None if this request is FastAPI's to answer."""
        path = scope["path"]
        if scope.get("root_path"):
            return None
        params = _query(scope["query_string"])
        if params is None:
            return None
        if path == QUERY_FORM:
            if not params.keys() <= _QUERY_FORM_PARAMS or "user_id" not in params:
                return None
            raw_id = params["user_id"]
        elif path.startswith(PREFIX) and path.endswith(SUFFIX) and len(path) > len(PREFIX) + len(SUFFIX):
            if not params.keys() <= _PARAMS:
                return None
            raw_id = path[len(PREFIX):-len(SUFFIX)]
        else:
            return None
        if len(raw_id) > MAX_ID_LENGTH:
            return None
        user_id = normalize_id(raw_id)
        n = _n(params.get("n"))
        category = params.get("category")
        exclude = params.get("exclude_purchased")
        if not user_id or n is None or (category is not None and not 1 <= len(category) <= MAX_CATEGORY_LENGTH) \
                or (exclude is not None and exclude not in _BOOLS):
            return None
        app = scope["app"]
        state = app.state.serving
        # what get_bundle and the route would do first (take erasures out) or refuse is left to
        # them; checked before `admit`, which takes the key's token when it admits the request
        bundle = ready_bundle(state)
        if bundle is None or bundle.recommender is None or bundle.item_details is None:
            return None
        if category is not None and not self._known(bundle.recommender, category):
            return None
        if not isinstance(admit(state, *credentials(scope), _SCOPES), ApiKey):   # refused, it took nothing
            return None
        try:
            return recommendations_response(bundle, app.state.live, user_id, n, category,
                                            None if exclude is None else _BOOLS[exclude])
        except ApiProblem as exc:   # the token is taken: answer as FastAPI's handler would
            return api_problem_response(exc, Request(scope).url.path)
