"""The user id of a per-user route, in either of its two forms (and the merchant id's check, `id_of`).

Every per-user route has a path form (`/v1/users/{user_id}/profile`) and a query form
(`/v1/users/profile?user_id=`). The path form takes any id that has no `.` or `..` segment
(clients resolve those before sending); `/` may be sent as it is or as %2F, and `%`, `?`, `#`,
spaces and line breaks percent-encoded. The query form takes any id at all. Both are normalised the way
ingest stored the id (behavior.ids.normalize_id: surrounding whitespace trimmed).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query
from starlette.convertors import PathConvertor, register_url_convertor

from api.problems import ApiProblem, FieldError
from behavior.ids import normalize_id

MAX_ID_LENGTH = 200


class IdConvertor(PathConvertor):
    """`{name:id}` in a route: any text, `/` and line breaks included (`{name:path}` stops at a line break)."""

    regex = "(?s:.*)"


register_url_convertor("id", IdConvertor())
_DOC = "The user's opaque id, as ingested (surrounding whitespace is ignored)."

UserIdPath = Annotated[str, Path(min_length=1, max_length=MAX_ID_LENGTH, examples=["u0000001"],
                                 description=_DOC + " Percent-encode `%`, `?`, `#` and spaces; `/` may stay. "
                                 "Ids with a `.` or `..` segment need the query form (`?user_id=`).")]
UserIdQuery = Annotated[str, Query(min_length=1, max_length=MAX_ID_LENGTH, examples=["u0000001"],
                                   description=_DOC + " Any id, URL-encoded.")]


def id_of(raw: str, field: str = "user_id") -> str:
    """`raw` as stored (normalize_id); a 422 naming `field` if nothing is left."""
    value = normalize_id(raw)
    if not value:
        what = field.removesuffix("_id")
        raise ApiProblem(422, "validation", "Invalid request", f"the request is not valid: see errors ({field})",
                         errors=[FieldError(field=field, message=f"a {what} id cannot be only whitespace")])
    return value


def user_id_of(raw: str) -> str:
    """`raw` as stored (normalize_id); a 422 naming user_id if nothing is left."""
    return id_of(raw, "user_id")
