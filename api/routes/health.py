"""Liveness and readiness, without a key."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import BundleDep
from api.models import Health, Ready
from api.routes._responses import problems

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is alive")
async def healthz() -> Health:
    return Health()


@router.get("/readyz", summary="A bundle is loaded and served", responses=problems(503))
async def readyz(bundle: BundleDep) -> Ready:
    return Ready()
