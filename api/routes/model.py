"""GET /v1/model: what is being served."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.bundle import Bundle
from api.deps import BundleDep, Caller
from api.display import metrics, parameters
from api.query import queryable
from api.models import LoyaltyInfo, ModelInfo, RecommendInfo
from api.routes._responses import AUTH, problems

router = APIRouter(prefix="/v1", tags=["model"])


def _iso(t: Any) -> str:
    return t.isoformat().replace("+00:00", "Z")


def model_info(bundle: Bundle) -> ModelInfo:
    report = bundle.report
    loyalty = None
    if isinstance(report.get("loyalty"), dict):
        lo = report["loyalty"]
        bg = lo.get("bgnbd") if isinstance(lo.get("bgnbd"), dict) else {}
        gg = lo.get("gamma_gamma") if isinstance(lo.get("gamma_gamma"), dict) else {}
        hold = lo.get("holdout") if isinstance(lo.get("holdout"), dict) else {}
        ll = bg.get("log_likelihood")
        err = hold.get("error_pct")
        loyalty = LoyaltyInfo(model=lo.get("model") if isinstance(lo.get("model"), str) else None,
                              bgnbd=parameters(bg.get("params")), gamma_gamma=parameters(gg.get("params")),
                              log_likelihood=round(ll, 2) if isinstance(ll, (int, float)) else None,
                              holdout_error_pct=round(err, 2) if isinstance(err, (int, float)) else None)
    churn = None
    if isinstance(report.get("churn"), dict):
        churn = metrics(report["churn"].get("test"))
    recommend = None
    if isinstance(report.get("recommend"), dict):
        rec = report["recommend"]
        selected = rec.get("selected") if isinstance(rec.get("selected"), str) else None
        models = rec.get("models") if isinstance(rec.get("models"), dict) else {}
        recommend = RecommendInfo(selected=selected, k=rec.get("k") if isinstance(rec.get("k"), int) else None,
                                  metrics=metrics(models.get(selected)) if selected else None)
    segments = None
    counts = report.get("segments", {}).get("counts") if isinstance(report.get("segments"), dict) else None
    if isinstance(counts, dict):
        segments = {str(k): int(v) for k, v in counts.items() if isinstance(v, int)}
    return ModelInfo(
        bundle_version=bundle.version, as_of=_iso(bundle.as_of), created_at=_iso(bundle.created_at),
        loaded_at=_iso(bundle.loaded_at),
        code_version=bundle.manifest.get("code_version") if isinstance(bundle.manifest.get("code_version"), str) else None,
        profiles=len(bundle.profiles), recommender=bundle.recommender is not None,
        profile_fields=queryable(bundle.profiles.fields),
        loyalty=loyalty, churn=churn, recommend=recommend, segments=segments)


@router.get("/model", summary="The bundle being served and its headline numbers", responses=problems(*AUTH, 503))
async def get_model(caller: Caller, bundle: BundleDep) -> ModelInfo:
    return model_info(bundle)
