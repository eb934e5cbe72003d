"""GET /v1/users/{user_id}/profile, and GET /v1/users/profile?user_id= for any id."""

from __future__ import annotations

from fastapi import APIRouter, Request

from behavior.features import PROFILE_NAMES
from api.bundle import Bundle
from api.deps import BundleDep, ProfilesCaller
from api.display import shown_row
from api.models import Profile
from api.problems import ApiProblem
from api.routes._responses import AUTH, problems
from api.routes._user_id import UserIdPath, UserIdQuery, user_id_of

router = APIRouter(prefix="/v1", tags=["profiles"])
RESPONSES = problems(*AUTH, 404, 422, 503)


@router.get("/users/{user_id:id}/profile", summary="One user's profile", responses=RESPONSES)
async def get_profile(user_id: UserIdPath, caller: ProfilesCaller, bundle: BundleDep, request: Request) -> Profile:
    return _profile(bundle, request, user_id_of(user_id))


@router.get("/users/profile", summary="One user's profile (any id, as a query parameter)", responses=RESPONSES)
async def get_profile_by_query(user_id: UserIdQuery, caller: ProfilesCaller, bundle: BundleDep,
                               request: Request) -> Profile:
    return _profile(bundle, request, user_id_of(user_id))


def _profile(bundle: Bundle, request: Request, user_id: str) -> Profile:
    # the payments notified since the bundle (api.live); a user new since then has a live-only profile
    row = request.app.state.live.profile(user_id, bundle.profiles.row(user_id), bundle.as_of)
    if row is None:
        raise ApiProblem(404, "unknown-user", "Unknown user",
                         f"no profile for user {user_id!r} in bundle {bundle.version}")
    shown = shown_row(row)
    for old, new in PROFILE_NAMES.items():   # the old names of renamed fields, deprecated, for one release
        if new in shown:
            shown[old] = shown[new]
    return Profile.model_validate(shown)
