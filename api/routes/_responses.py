"""The error responses each route documents (all application/problem+json, see api.main.openapi)."""

from __future__ import annotations

from typing import Any

from api.problems import Problem

_DESCRIPTIONS = {
    400: "Bad request (e.g. an invalid cursor)",
    401: "No valid API key in X-API-Key",
    403: "The key lacks the scope this route needs",
    404: "Not found",
    409: "Conflict with the active bundle",
    413: "Request body too large",
    422: "Invalid request, with field-level `errors`",
    429: "Over the key's rate limit, or too many requests without a valid key from this address; see Retry-After",
    503: "No bundle (or no recommender) is being served",
}


def problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": Problem, "description": _DESCRIPTIONS[code]} for code in codes}


AUTH = (401, 403, 429)
