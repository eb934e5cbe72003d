"""POST /v1/promotions/targets and GET /v1/promotions/{promotion_id}/effectiveness."""

from __future__ import annotations

import math
import uuid
from typing import Annotated

from fastapi import APIRouter, Body, Path
from fastapi.concurrency import run_in_threadpool

from api.deps import BundleDep, PromotionsCaller, StateDep
from api.display import shown, shown_row
from api.models import Effectiveness, ExpectedValue, TargetListResponse, TargetRequest, TargetUser
from api.problems import ApiProblem
from api.routes._responses import AUTH, problems
from api.targeting import RuleUnavailable, UnknownTarget, build_list
from behavior.errors import InputError
from behavior.targeting import Economics

router = APIRouter(prefix="/v1/promotions", tags=["promotions"])

TARGETS_ENDPOINT = "POST /v1/promotions/targets"
PromotionId = Annotated[str, Path(min_length=1, max_length=200, examples=["promo001"])]


def _no_promotions(bundle, slug: str, title: str, what: str) -> ApiProblem:
    """A 503 problem for a bundle without the promotions stage's output, with the report's reason."""
    why = bundle.skipped("promotions")
    detail = (f"bundle {bundle.version} has {what}: the promotions stage was skipped: {why}" if why
              else f"bundle {bundle.version} has {what}; run the promotions stage")
    return ApiProblem(503, slug, title, detail)


def _why_missing(bundle, column: str) -> str:
    """The run report's reason for a profile column that is null for everyone."""
    if column == "churn_probability":
        return bundle.skipped("churn") or "the churn stage did not score the customers"
    loyalty = bundle.report.get("loyalty") if isinstance(bundle.report.get("loyalty"), dict) else {}
    for part in ("bgnbd", "gamma_gamma"):
        section = loyalty.get(part) if isinstance(loyalty.get(part), dict) else {}
        why = section.get("skipped") or section.get("error")
        if why:
            return f"{part} {'skipped' if 'skipped' in section else 'failed'}: {why}"
    return bundle.skipped("loyalty") or "the loyalty stage did not score the customers"


MIN_HOLDOUT = 10   # held-back users below which a list's effect cannot be measured


def _holdout_note(share: float, targets: int, holdout: int) -> str | None:
    """A note when a holdout was asked for but the list holds back fewer than MIN_HOLDOUT users."""
    if share <= 0 or targets == 0 or holdout >= MIN_HOLDOUT:
        return None
    needed = math.ceil(MIN_HOLDOUT * (1 - share) / share)
    held = "no user was" if holdout == 0 else f"only {holdout} {'user was' if holdout == 1 else 'users were'}"
    return (f"{held} held back: a holdout share of {share:g} holds back about {share / (1 - share):.2g} users per "
            f"target, too few to measure this list's effect; for at least {MIN_HOLDOUT} held-back users ask for "
            f"about {needed:,} targets, or raise holdout_share")


def _users(frame) -> list[TargetUser]:
    cols = [c for c in ("score", "expected_profit", "uplift", "p_redeem") if c in frame.columns]
    out = []
    for row in frame.itertuples(index=False):
        numbers = {c: shown(c, float(getattr(row, c))) for c in cols}
        out.append(TargetUser(rank=int(row.rank), user_id=row.user_id, **numbers))
    return out


@router.post(
    "/targets",
    summary="A ranked target list for a promotion under a budget, with a random holdout",
    description=(
        "Ranks the served customers by expected incremental profit = value x uplift - coupon cost x P(redeem) "
        "- contact cost, where an uplift model was trained for the target (a past randomized promotion); "
        "otherwise by the transparent rule affinity x churn probability x CLV (`method` says which, and "
        "`notes` why). Opted-out users and users contacted in the last `exclude_contacted_days` days are never "
        "included; users with a non-positive expected profit are dropped. Every list is written to the audit log."),
    responses=problems(*AUTH, 404, 422, 503),
)
async def target_list(caller: PromotionsCaller, bundle: BundleDep, state: StateDep,
                      request: Annotated[TargetRequest, Body()]) -> TargetListResponse:
    if bundle.targeting is None:
        raise _no_promotions(bundle, "no-targeting", "No targeting data", "no promotion targeting files")
    e = request.economics
    try:
        result, exclusions = await run_in_threadpool(
            build_list, bundle.targeting, bundle.profiles.table, bundle.as_of, target=request.target,
            economics=Economics(e.value_per_conversion, e.coupon_cost, e.contact_cost),
            budget_users=request.budget.users, budget_money=request.budget.money,
            holdout_share=request.holdout_share, exclude_contacted_days=request.exclude_contacted_days,
            seed=request.seed)
    except UnknownTarget as exc:
        raise ApiProblem(404, "unknown-target", "Unknown target", str(exc)) from None
    except RuleUnavailable as exc:
        reasons = "; ".join(f"{name}: {_why_missing(bundle, name)}" for name in exc.missing)
        raise ApiProblem(503, "no-targeting", "No targeting data",
                         f"bundle {bundle.version} cannot rank users for target {request.target!r}: {exc} "
                         f"({reasons})") from None
    except InputError as exc:
        raise ApiProblem(422, "invalid-request", "Invalid request", str(exc)) from None
    list_id = str(uuid.uuid4())
    counts = {**exclusions, **result.counts}
    note = _holdout_note(request.holdout_share, counts["targets"], counts["holdout"])
    notes = result.notes + ([note] if note else [])
    state.audit.write(key_id=caller.key_id, endpoint=TARGETS_ENDPOINT, rows=counts["targets"] + counts["holdout"],
                      bundle_version=bundle.version, list_id=list_id, target=request.target, method=result.method,
                      targets=counts["targets"], holdout=counts["holdout"], promotion_id=request.promotion_id)
    return TargetListResponse(list_id=list_id, bundle_version=bundle.version, target=request.target,
                              method=result.method, notes=notes, counts=counts,
                              expected=ExpectedValue(**shown_row(result.expected)), targets=_users(result.targets),
                              holdout=_users(result.holdout))


@router.get("/{promotion_id}/effectiveness", summary="How well a past promotion worked (treatment vs control)",
            responses=problems(*AUTH, 404, 422, 503))
async def effectiveness(promotion_id: PromotionId, caller: PromotionsCaller, bundle: BundleDep) -> Effectiveness:
    if bundle.skipped("promotions"):
        raise _no_promotions(bundle, "no-effectiveness", "No promotion effectiveness", "no promotion effectiveness")
    entries = (bundle.report.get("promotions") or {}).get("effectiveness") or {}
    entry = entries.get(promotion_id)
    if not isinstance(entry, dict):
        known = ", ".join(sorted(entries)[:20]) or "none"
        raise ApiProblem(404, "unknown-promotion", "Unknown promotion",
                         f"bundle {bundle.version} has no promotion {promotion_id!r} (known: {known})")
    return Effectiveness.model_validate({**entry, "promotion_id": promotion_id, "bundle_version": bundle.version})
