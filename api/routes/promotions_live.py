"""GET /v1/promotions/{promotion_id}/live: a running promotion's arms so far, anytime-valid."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from api.deps import PromotionsCaller
from api.problems import ApiProblem
from api.routes._responses import AUTH, problems
from api.routes.promotions import PromotionId

router = APIRouter(prefix="/v1/promotions", tags=["promotions"])


class Arm(BaseModel):
    users: int = Field(description="Users assigned to the arm.")
    conversions: int = Field(description="Users of the arm with a successful payment in the promotion's window so far.")
    conversion_rate: float | None
    revenue: float = Field(description="Their successful payments' amounts in the window.")
    revenue_per_user: float | None


class SequentialInterval(BaseModel):
    treatment: float | None
    control: float | None
    diff: float | None = Field(description="treatment - control")
    ci: list[float | None] | None = Field(description="Anytime-valid 95% interval of diff: it may be read at every "
                                                       "look without inflating false positives.")
    se: float | None
    n: int
    level: float
    anytime_valid: bool


class LivePromotion(BaseModel):
    promotion_id: str
    name: str | None
    starts_at: str
    ends_at: str
    at: str = Field(description="When these figures were computed (ISO 8601, UTC).")
    running: bool
    arms: dict[str, Arm]
    live_lines: int = Field(description="Payment lines counted that are notified but not yet in the lake.")
    conversion: SequentialInterval
    revenue_per_user: SequentialInterval


@router.get("/{promotion_id}/live", summary="A running promotion by arm so far, with anytime-valid intervals",
            responses=problems(*AUTH, 404, 422))
async def live_promotion(promotion_id: PromotionId, caller: PromotionsCaller, request: Request) -> LivePromotion:
    monitor = request.app.state.promotions_live
    summary: dict[str, Any] | None = await asyncio.to_thread(monitor.summary, promotion_id, request.app.state.live)
    if summary is None:
        raise ApiProblem(404, "unknown-promotion", "Unknown promotion",
                         f"the lake has no promotion {promotion_id!r} with assigned users (ingest its promotions "
                         "and assignments tables)")
    return LivePromotion.model_validate(summary)
