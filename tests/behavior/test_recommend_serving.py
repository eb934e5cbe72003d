"""The serving layer built from plain arrays: fallbacks, filters, fold-in, explanations, latency."""

from __future__ import annotations

import timeit

import numpy as np
import pandas as pd
import pytest

from behavior.recommend.interactions import IdMap, Interactions
from behavior.recommend.models import ALS, BuyAgain, ItemKNN
from behavior.recommend.serving import ServingModel, UnknownIdError, serving_arrays
from behavior.synth import SynthConfig, generate
from tests.behavior.test_recommend_select import interactions_before

SEGMENTS = ["Champions", "Lost"]
REFUNDER = "u_refund_only"


@pytest.fixture(scope="module")
def world() -> dict:
    data = generate(SynthConfig(users=1500, months=12, seed=2))
    pay, catalogue = data.tables["payments"], data.tables["items"]
    users = IdMap.fit(list(pay["user_id"]) + [REFUNDER])
    items = IdMap.fit(catalogue["item_id"])
    as_of = pay["paid_at"].max() + pd.Timedelta(seconds=1)
    base = interactions_before(pay, users, items, as_of)
    # a customer whose only lines are a purchase and its refund: known, but owns nothing
    refunder = users.index_of(REFUNDER)
    inter = Interactions(np.r_[base.user_idx, refunder], np.r_[base.item_idx, 0], np.r_[base.counts, 1],
                         np.r_[base.refunds, 1], np.r_[base.days_since_last, 3.0], len(users), len(items))
    net, days = inter.matrices()
    meta = catalogue.set_index("item_id").loc[items.ids]
    category = pd.Categorical(meta["category"])
    active = meta["active"].to_numpy().copy()
    most_popular = int(np.argmax(np.bincount(net.indices, minlength=len(items))))
    active[most_popular] = False  # the best seller is withdrawn: it must never be served
    segment = np.arange(len(users)) % 2
    return {"users": users, "items": items, "net": net, "days": days, "category": category, "active": active,
            "segment": segment, "withdrawn": most_popular}


def make_arrays(world, model, exclude_purchased=True) -> dict:
    w = world
    return serving_arrays(
        model.fit(w["net"], w["days"]), user_ids=w["users"], item_ids=w["items"], purchased=w["net"],
        purchased_days=w["days"],
        item_category=w["category"].codes, category_names=w["category"].categories, item_active=w["active"],
        user_segment=w["segment"], segment_names=SEGMENTS, exclude_purchased=exclude_purchased, selected=model.kind,
    )


@pytest.fixture(scope="module")
def served(world, tmp_path_factory) -> ServingModel:
    arrays = make_arrays(world, ALS(factors=16, alpha=3.0, iterations=8, weighting="bm25"))
    path = tmp_path_factory.mktemp("bundle") / "recommender.npz"
    np.savez(path, **arrays)
    with np.load(path, allow_pickle=False) as f:
        return ServingModel.from_arrays(dict(f))


def a_buyer(world, min_items=3) -> str:
    counts = np.diff(world["net"].indptr)
    return str(world["users"].ids[int(np.flatnonzero(counts >= min_items)[0])])


def purchased_ids(world, user_id) -> set[str]:
    row = world["net"][world["users"].index_of(user_id)]
    return set(world["items"].ids[row.indices].tolist())


def test_arrays_are_plain_and_named(world):
    arrays = make_arrays(world, ItemKNN(K=20))
    assert all(isinstance(v, np.ndarray) and v.dtype != object for v in arrays.values())
    for name, kind in {"user_ids": "U", "item_ids": "U",
                       "purchased.indptr": "i", "purchased.indices": "i", "purchased.data": "f",
                       "purchased.days": "f", "item_category": "i", "category_names": "U", "item_active": "b",
                       "user_segment": "i", "segment_names": "U", "exclude_purchased": "b", "popularity": "f",
                       "popularity_segment": "f", "model.kind": "U", "model.similarity.indptr": "i"}.items():
        assert arrays[name].dtype.kind == kind, name
    assert arrays["popularity_segment"].shape == (2, len(world["items"]))


def test_known_user_gets_model_items_never_withdrawn_never_purchased(served, world):
    user = a_buyer(world)
    rec = served.recommend(user, n=10)
    assert rec.source == "model" and len(rec.items) == 10
    ids = [i for i, _ in rec.items]
    scores = [s for _, s in rec.items]
    assert scores == sorted(scores, reverse=True) and len(set(ids)) == 10
    withdrawn = world["items"].ids[world["withdrawn"]]
    assert withdrawn not in ids and not purchased_ids(world, user) & set(ids)
    with_purchased = served.recommend(user, n=50, exclude_purchased=False)
    assert purchased_ids(world, user) & {i for i, _ in with_purchased.items}


def test_fast_path_equals_the_generic_recommend(served, world):
    """The serving layer's pruned scan over precomputed indexes gives the model's own answer."""
    model = served.model
    for user in world["users"].ids[:300:7]:
        uidx = world["users"].index_of(user)
        if world["net"][uidx].nnz == 0:
            continue
        for category, mask in ((None, world["active"]), ("groceries", world["active"] & (
                np.asarray(world["category"].categories)[world["category"].codes] == "groceries"))):
            items, _ = model.recommend([uidx], world["net"][[uidx]], 5, exclude_purchased=True, allowed_items=mask)
            want = world["items"].ids[items[0][items[0] >= 0]].tolist()
            got = [i for i, _ in served.recommend(user, n=5, category=category).items][: len(want)]
            assert got == want


def test_category_filter(served, world):
    user = a_buyer(world)
    rec = served.recommend(user, n=5, category="electronics")
    cats = world["category"]
    item_cat = dict(zip(world["items"].ids, np.asarray(cats.categories)[cats.codes]))
    assert rec.items and all(item_cat[i] == "electronics" for i, _ in rec.items)
    with pytest.raises(UnknownIdError, match="unknown category 'spaceships'"):
        served.recommend(user, category="spaceships")


def test_unknown_and_refund_only_users_get_popular_fallback(served, world):
    pop = np.bincount(world["net"].indices, minlength=len(world["items"])).astype(float)
    pop[~world["active"]] = -1
    overall = served.recommend("never-seen", n=3)
    assert overall.source == "fallback"
    assert [i for i, _ in overall.items] == world["items"].ids[np.argsort(-pop, kind="stable")[:3]].tolist()
    # a segment-specific list: the most popular among that segment's buyers
    in_lost = world["segment"] == 1
    seg_pop = np.bincount(world["net"][in_lost].indices, minlength=len(world["items"])).astype(float)
    seg_pop[~world["active"]] = -1
    lost = served.recommend("never-seen", n=3, segment="Lost")
    assert lost.source == "fallback"
    assert lost.items[0][0] == world["items"].ids[int(np.argmax(seg_pop))]
    refunder = served.recommend(REFUNDER, n=4)
    assert refunder.source == "fallback" and len(refunder.items) == 4
    with pytest.raises(UnknownIdError, match="unknown segment"):
        served.recommend("never-seen", segment="Martians")


def test_short_model_lists_are_completed_with_popular_items(world):
    arrays = make_arrays(world, BuyAgain(), exclude_purchased=False)
    served = ServingModel.from_arrays(arrays)
    user = a_buyer(world, min_items=1)
    rec = served.recommend(user, n=20)
    servable = purchased_ids(world, user) - {world["items"].ids[world["withdrawn"]]}
    assert rec.source == "model" and len(rec.items) == 20
    assert {i for i, _ in rec.items[: len(servable)]} == servable  # the user's own items first
    assert len({i for i, _ in rec.items}) == 20  # then popular ones, no repeats


def test_similar_items(served, world):
    item = world["items"].ids[5]
    similar = served.similar(item, n=5)
    ids = [i for i, _ in similar]
    assert len(ids) == 5 and item not in ids and world["items"].ids[world["withdrawn"]] not in ids
    with pytest.raises(UnknownIdError, match="unknown item"):
        served.similar("nope")


def test_fold_in_and_recommend_from_items(served, world):
    user = a_buyer(world)
    uidx = world["users"].index_of(user)
    row = world["net"][[uidx]]
    basket = [i for i, c in zip(world["items"].ids[row.indices], row.data) for _ in range(int(c))]
    vector = served.fold_in(basket)
    np.testing.assert_allclose(vector, served.model.fold_in(row, world["days"][[uidx]] * 0)[0], rtol=1e-5)
    rec = served.recommend_for_items(basket, n=5)
    assert rec.source == "model" and len(rec.items) == 5
    assert not {i for i, _ in rec.items} & set(basket)
    with pytest.raises(UnknownIdError, match="none of the 1 given item ids"):
        served.fold_in(["not-an-item"])


def test_explain_names_the_users_own_items(served, world):
    user = a_buyer(world)
    top = served.recommend(user, n=1).items[0][0]
    because = served.explain(user, top, n=3)
    assert because and {i for i, _ in because} <= purchased_ids(world, user)
    assert served.explain("never-seen", top) == []


def test_single_user_top10_takes_under_a_millisecond(served, world):
    user = a_buyer(world)
    served.recommend(user, n=10)
    best = min(timeit.repeat(lambda: served.recommend(user, n=10), number=200, repeat=5)) / 200
    assert best < 1e-3, f"{best * 1e3:.3f} ms"
