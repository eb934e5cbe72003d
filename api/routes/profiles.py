"""GET /v1/users/{user_id}/profile."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request

from api.deps import BundleDep, ProfilesCaller
from api.models import Profile
from api.problems import ApiProblem
from api.routes._responses import AUTH, problems

router = APIRouter(prefix="/v1", tags=["profiles"])

UserId = Annotated[str, Path(min_length=1, max_length=200, description="The user's opaque id.", examples=["u0000001"])]


@router.get("/users/{user_id}/profile", summary="One user's profile",
            responses=problems(*AUTH, 404, 422, 503))
async def get_profile(user_id: UserId, caller: ProfilesCaller, bundle: BundleDep, request: Request) -> Profile:
    # the payments notified since the bundle (api.live); a user new since then has a live-only profile
    row = request.app.state.live.profile(user_id, bundle.profiles.row(user_id), bundle.as_of)
    if row is None:
        raise ApiProblem(404, "unknown-user", "Unknown user",
                         f"no profile for user {user_id!r} in bundle {bundle.version}")
    return Profile.model_validate(row)
