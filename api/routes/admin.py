"""Admin: reload CURRENT now, roll back to the previous bundle, erase a user from serving."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from behavior.ids import control_notice
from behavior.store.bundle import BundleError
from api.deps import AdminCaller, StateDep
from behavior.store.keys import ApiKey
from api.models import ErasureResult, ReloadResult
from api.problems import ApiProblem
from api.routes._responses import AUTH, problems
from api.routes._user_id import UserIdPath, UserIdQuery, user_id_of
from api.state import ServingState
from behavior.store.bundle import NoBundleError

router = APIRouter(prefix="/v1/admin", tags=["admin"])


def _refused(exc: BundleError, what: str, active: str | None) -> ApiProblem:
    if isinstance(exc, NoBundleError):
        return ApiProblem(409, "no-bundle", "No bundle", str(exc).split(": ", 1)[-1])
    return ApiProblem(409, "bundle-refused", "Bundle refused",
                      f"{what} refused: {exc}; still serving {active or 'nothing'}")


@router.post("/reload", summary="Load the bundle CURRENT names now (verified before the swap), and the keys file",
             responses=problems(*AUTH, 409))
async def reload_bundle(caller: AdminCaller, state: StateDep) -> ReloadResult:
    await run_in_threadpool(state.refresh_keys)
    try:
        swap = await run_in_threadpool(state.reload)
    except BundleError as exc:
        raise _refused(exc, "reload", state.bundle.version if state.bundle else None) from None
    if swap.changed:
        state.audit.write(key_id=caller.key_id, endpoint="POST /v1/admin/reload", rows=len(state.bundle.profiles),
                          bundle_version=swap.version, previous_version=swap.previous)
    return ReloadResult(changed=swap.changed, bundle_version=swap.version, previous_version=swap.previous)


@router.post("/rollback", summary="Serve the previous bundle (by creation order) and point CURRENT at it",
             responses=problems(*AUTH, 409))
async def rollback_bundle(caller: AdminCaller, state: StateDep) -> ReloadResult:
    try:
        swap = await run_in_threadpool(state.rollback)
    except BundleError as exc:
        raise _refused(exc, "rollback", state.bundle.version if state.bundle else None) from None
    state.audit.write(key_id=caller.key_id, endpoint="POST /v1/admin/rollback", rows=len(state.bundle.profiles),
                      bundle_version=swap.version, previous_version=swap.previous)
    return ReloadResult(changed=True, bundle_version=swap.version, previous_version=swap.previous)


_ERASE_DESCRIPTION = (
    "The user disappears from profiles, segment queries, exports, target lists and recommendations at once. "
    "The erasure is recorded (a keyed hash, never the id) in the data home's erasure log: every process keeps "
    "the user out of the bundles it loads, the next `behavior run` purges them from the lake, later ingests "
    "reject their rows. An id holding a control character (U+0000-U+001F or U+007F) is recorded all the same, "
    "and `notice` (in the 404 problem too) says that only the quarantine can hold it and which id to erase instead.")
_ERASE_RESPONSES = problems(*AUTH, 404, 422, 503)


@router.delete("/users/{user_id:id}", summary="Erase a user from the serving side now (profiles and recommender)",
               description=_ERASE_DESCRIPTION, responses=_ERASE_RESPONSES)
async def erase_user(user_id: UserIdPath, caller: AdminCaller, state: StateDep) -> ErasureResult:
    return await _erase(state, caller, user_id_of(user_id), "DELETE /v1/admin/users/{user_id}")


@router.delete("/users", summary="Erase a user from the serving side now (any id, as a query parameter)",
               description=_ERASE_DESCRIPTION, responses=_ERASE_RESPONSES)
async def erase_user_by_query(user_id: UserIdQuery, caller: AdminCaller, state: StateDep) -> ErasureResult:
    return await _erase(state, caller, user_id_of(user_id), "DELETE /v1/admin/users")


async def _erase(state: ServingState, caller: ApiKey, user_id: str, endpoint: str) -> ErasureResult:
    if state.bundle is None:
        raise ApiProblem(503, "no-bundle", "No bundle loaded", "no bundle is being served yet")
    found = await run_in_threadpool(state.erase, user_id)
    version = state.bundle.version
    state.audit.write(key_id=caller.key_id, endpoint=endpoint, rows=int(found),
                      bundle_version=version, user_key_hash=state.erasure_log.key_hash(user_id))
    notice = control_notice(user_id)
    if not found:
        detail = f"user {user_id!r} is not in bundle {version}; they will be kept out of bundles this process loads later"
        raise ApiProblem(404, "unknown-user", "Unknown user", detail + (f". {notice}" if notice else ""),
                         extensions={"notice": notice} if notice else None)
    return ErasureResult(user_id=user_id, bundle_version=version, notice=notice)
