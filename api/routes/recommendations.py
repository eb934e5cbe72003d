"""GET /v1/users/{user_id}/recommendations (or /v1/users/recommendations?user_id= for any id)
and GET /v1/items/{item_id}/similar."""

from __future__ import annotations

import functools
import math
import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic_core import to_json

from api.bundle import Bundle
from api.deps import BundleDep, RecommendationsCaller
from api.items import ItemDetails
from api.models import Recommendations, ScoredItem, SimilarItems
from api.problems import ApiProblem, FieldError
from api.routes._responses import AUTH, problems
from api.routes._user_id import UserIdPath, UserIdQuery, user_id_of
from behavior.recommend.serving import ServingModel, UnknownIdError

router = APIRouter(prefix="/v1", tags=["recommendations"])

MAX_N = 100
MAX_CATEGORY_LENGTH = 200
N = Annotated[int, Query(ge=1, le=MAX_N, description="How many items.")]
ItemId = Annotated[str, Path(min_length=1, max_length=200, description="The item's id (`/` may stay, %2F-encoded "
                            "or not).", examples=["i00042"])]
Category = Annotated[str | None, Query(min_length=1, max_length=MAX_CATEGORY_LENGTH,
                                       description="Only items of this category.")]
ExcludePurchased = Annotated[bool | None, Query(
    description="Leave out items the user bought (default: the catalogue's policy).")]
RESPONSES = problems(*AUTH, 422, 503)


def _model(bundle: Bundle) -> ServingModel:
    """The bundle's recommender; a 503 problem saying why when the bundle has none."""
    if bundle.recommender is None or bundle.item_details is None:
        why = bundle.skipped("recommend")
        detail = (f"bundle {bundle.version} has no recommender: the recommend stage was skipped: {why}" if why
                  else f"no recommender in the active bundle {bundle.version}; run the recommend stage")
        raise ApiProblem(503, "no-recommender", "No recommender", detail)
    return bundle.recommender


def _items(pairs: list[tuple[str, float]], details: ItemDetails) -> list[ScoredItem]:
    return [ScoredItem(item_id=i, score=s, **details.row(i)) for i, s in pairs if math.isfinite(s)]


def recommendations_json(user_id: str, bundle_version: str, recommendation_id: str, source: str,
                         pairs: list[tuple[str, float]], details: ItemDetails) -> bytes:
    """The `Recommendations` document as JSON, built from values that already have its types (str
    ids, float scores, source "model" or "fallback"): the bytes pydantic would write for the
    model, without validating and copying it field by field (the API's hottest route). Each
    item carries its attributes from `details` (prepared at load)."""
    # model_version: bundle_version's deprecated alias, served for one release
    head = {"user_id": user_id, "bundle_version": bundle_version, "model_version": bundle_version,
            "recommendation_id": recommendation_id, "source": source}
    return to_json(head)[:-1] + b',"items":' + details.items_json([(i, s) for i, s in pairs if math.isfinite(s)]) + b"}"


@router.get("/users/{user_id:id}/recommendations", summary="Top items for a user (unknown users get the fallback)",
            response_model=Recommendations, responses=RESPONSES)
async def recommend(user_id: UserIdPath, caller: RecommendationsCaller, bundle: BundleDep, request: Request, n: N = 10,
                    category: Category = None, exclude_purchased: ExcludePurchased = None) -> Response:
    return recommendations_response(bundle, request.app.state.live, user_id_of(user_id), n, category,
                                    exclude_purchased)


@router.get("/users/recommendations", summary="Top items for a user (any id, as a query parameter)",
            response_model=Recommendations, responses=RESPONSES)
async def recommend_by_query(user_id: UserIdQuery, caller: RecommendationsCaller, bundle: BundleDep, request: Request,
                             n: N = 10,
                             category: Category = None, exclude_purchased: ExcludePurchased = None) -> Response:
    return recommendations_response(bundle, request.app.state.live, user_id_of(user_id), n, category,
                                    exclude_purchased)


def top_items(bundle: Bundle, live, user_id: str, n: int, category: str | None,
              exclude_purchased: bool | None):
    """The user's top-n (a `Recommendation`: items and source), with the purchases notified since
    the bundle folded in and the user's segment for the fallback. Raises a 422 problem for an
    unknown category."""
    model = _model(bundle)
    i = bundle.profiles.index.get(user_id)
    segment = bundle.profiles.segment(i) if i is not None else None
    bought = live.purchased_items(user_id)   # notified since the bundle: folded in
    recommend = functools.partial(model.recommend_folded, user_id, bought) if bought else \
        functools.partial(model.recommend, user_id)
    try:
        try:
            return recommend(n, category=category, exclude_purchased=exclude_purchased, segment=segment)
        except UnknownIdError:
            if segment is None:
                raise
            # a segment the recommender was not trained with: it uses its own knowledge of the user
            return recommend(n, category=category, exclude_purchased=exclude_purchased)
    except UnknownIdError as exc:  # the category is the only id left that the client chose
        raise ApiProblem(422, "validation", "Invalid request", f"unknown category {category!r}",
                         errors=[FieldError(field="category", message=str(exc)[:1000])]) from None


def recommendations_response(bundle: Bundle, live, user_id: str, n: int, category: str | None,
                             exclude_purchased: bool | None) -> Response:
    """The 200 answer of both GET routes (and of `RecommendationsLane`) for a normalised user id
    and checked parameters; raises a 422 problem for an unknown category, 503 without a recommender."""
    rec = top_items(bundle, live, user_id, n, category, exclude_purchased)
    body = recommendations_json(user_id, bundle.version, str(uuid.uuid4()),
                                "model" if rec.source == "model" else "fallback", rec.items, bundle.item_details)
    return Response(body, media_type="application/json")


@router.get("/items/{item_id:id}/similar", summary="Items most similar to an item",
            responses=problems(*AUTH, 404, 422, 503))
async def similar(item_id: ItemId, caller: RecommendationsCaller, bundle: BundleDep, n: N = 10) -> SimilarItems:
    model = _model(bundle)
    try:
        pairs = model.similar(item_id, n)
    except UnknownIdError:
        raise ApiProblem(404, "unknown-item", "Unknown item",
                         f"item {item_id!r} is not in the catalogue of bundle {bundle.version}") from None
    return SimilarItems(item_id=item_id, bundle_version=bundle.version, model_version=bundle.version, recommendation_id=str(uuid.uuid4()),
                        items=_items(pairs, bundle.item_details))
