"""The serving layer's numpy-only fast path answers exactly as its general path does.

`ServingModel.recommend` (and `recommend_for_items`) score one user without scipy and
without the generic `Recommender.recommend`; `_recommend(..., fast=False)` is the general
path (a 1-row CSR matrix through the model's own contract, or the factor models' pruned
scan). For every model kind, many users, every category and every exclusion setting, both
must return the same items with bit-identical scores in the same order.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import scipy.sparse as sp

from behavior.recommend.interactions import IdMap
from behavior.recommend.models import ALS, BPR, EASE, Blend, BuyAgain, ItemKNN, Popularity
from behavior.recommend.serving import ServingModel, serving_arrays
from behavior.recommend.topk import normalise_row, normalise_rows, top_k, top_k_row
from tests.behavior.test_recommend_serving import REFUNDER, SEGMENTS, world  # noqa: F401  (fixture)

MODELS = {
    "als_bm25": lambda: ALS(factors=16, alpha=3.0, iterations=6, weighting="bm25"),
    "bpr": lambda: BPR(factors=16, iterations=20),
    "item_knn_cosine": lambda: ItemKNN(K=30),
    "item_knn_bm25_log": lambda: ItemKNN(similarity="bm25", K=20, weighting="log"),
    "ease": lambda: EASE(regularization=0.25, K=40),
    "blend_buy_again_ease": lambda: Blend(BuyAgain(weighting="log"), EASE(K=40), 0.8),
    "popularity_recency": lambda: Popularity(measure="weight", weighting="recency"),
    "popularity_buyers": lambda: Popularity(),
    "buy_again_recency": lambda: BuyAgain(weighting="recency"),
    "buy_again_count": lambda: BuyAgain(),
    # what the bench bundle serves: item kNN blended with an ALS on bm25 weights
    "blend_knn_als": lambda: Blend(ItemKNN(K=50), ALS(factors=16, alpha=3.0, iterations=6, weighting="bm25"), 0.4),
    "blend_buy_again_popularity": lambda: Blend(BuyAgain(weighting="recency"), Popularity(), 0.7),
    "blend_of_blends": lambda: Blend(Blend(ItemKNN(K=10), BPR(factors=8, iterations=10), 0.5),
                                     BuyAgain(weighting="log"), 0.6),
}


@pytest.fixture(scope="module")
def catalogue(world):  # noqa: F811
    """The shared world with one category withdrawn entirely (nothing to rank in it)."""
    cats = world["category"]
    active = world["active"].copy()
    empty = int(np.argmin(np.bincount(cats.codes, minlength=len(cats.categories))))
    active[cats.codes == empty] = False
    # a per-item exclusion policy like the stage's (purchased staples may be re-bought)
    exclude = (cats.codes % 3) != 0
    return {**world, "active": active, "empty_category": str(cats.categories[empty]), "exclude": exclude}


def served_model(w, model, exclude_purchased, **attributes) -> ServingModel:
    arrays = serving_arrays(
        model.fit(w["net"], w["days"]), user_ids=w["users"], item_ids=w["items"], purchased=w["net"],
        purchased_days=w["days"], item_category=w["category"].codes, category_names=w["category"].categories,
        item_active=w["active"], user_segment=w["segment"], segment_names=SEGMENTS, exclude_purchased=exclude_purchased,
        selected=model.kind, **attributes,
    )
    return ServingModel.from_arrays(arrays)


def assert_same(served: ServingModel, user, n, category, exclude, segment=None):
    fast = served._recommend(user, n, category, exclude, segment, fast=True)
    general = served._recommend(user, n, category, exclude, segment, fast=False)
    assert fast == general, (user, n, category, exclude, segment)
    return fast


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("exclude_purchased", ["per_item", False])
def test_fast_path_is_identical_to_the_general_path(catalogue, name, exclude_purchased):
    w = catalogue
    served = served_model(w, MODELS[name](), w["exclude"] if exclude_purchased == "per_item" else False)
    assert served._fast, "the fast path must be on for the models defined in behavior.recommend"
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    buyers = np.flatnonzero(np.diff(w["net"].indptr) > 0)
    users = w["users"].ids[rng.choice(buyers, size=120, replace=False)].tolist() + [REFUNDER, "never-seen"]
    categories = [None, w["empty_category"], *map(str, w["category"].categories)]
    sources = set()
    for i, user in enumerate(users):
        for _ in range(3):
            category = categories[rng.integers(len(categories))] if i % 4 else None
            exclude = [None, True, False][rng.integers(3)]
            n = int(rng.choice([1, 5, 10, 40]))
            sources.add(assert_same(served, user, n, category, exclude).source)
    assert sources == {"model", "fallback"}
    # a withdrawn category has nothing to rank, on either path
    user = users[0]
    assert assert_same(served, user, 10, w["empty_category"], True).items == []
    # the segment given by the caller (the API passes the profile's) only changes the completion
    assert_same(served, user, 60, None, True, segment="Lost")


@pytest.mark.parametrize("name", [k for k in MODELS if "als" not in k and "bpr" not in k and "blends" not in k])
def test_recommend_for_items_fast_path_is_identical(catalogue, name):
    w = catalogue
    served = served_model(w, MODELS[name](), w["exclude"])
    assert served._fast_anonymous
    rng = np.random.default_rng(7)
    items = w["items"].ids
    for _ in range(60):
        basket = items[rng.integers(len(items), size=int(rng.integers(1, 6)))].tolist()
        basket += basket[:1]  # a repeat counts twice
        category = [None, str(w["category"].categories[rng.integers(len(w["category"].categories))])][
            int(rng.integers(2))]
        exclude = [None, True, False][rng.integers(3)]
        args = (basket, 10, category, exclude, None)
        assert served._recommend_for_items(*args, fast=True) == served._recommend_for_items(*args, fast=False)


def test_factor_models_keep_the_general_path_for_recommend_for_items(catalogue):
    served = served_model(catalogue, MODELS["blend_knn_als"](), True)
    assert served._fast and not served._fast_anonymous  # a folded-in vector is the general path's work


def test_pruned_scan_over_several_blocks_is_identical():
    """A catalogue of a few thousand items: the factor scan goes through several blocks and
    stops early for most users; the one-user scan must stop at the same place."""
    rng = np.random.default_rng(3)
    n_users, n_items, lines = 2000, 5000, 40_000
    u = rng.integers(0, n_users, lines)
    i = rng.permutation(n_items)[np.minimum(rng.zipf(1.3, lines) - 1, n_items - 1)]
    net = sp.csr_matrix((np.ones(lines, np.float32), (u, i)), shape=(n_users, n_items))
    net.sum_duplicates()
    users = IdMap(np.char.add("u", np.char.zfill(np.arange(n_users).astype(str), 5)))
    items = IdMap(np.char.add("i", np.char.zfill(np.arange(n_items).astype(str), 5)))
    category = np.arange(n_items) % 4
    for model in (ALS(factors=8, iterations=3), Blend(ALS(factors=8, iterations=3), ItemKNN(K=20), 0.5)):
        served = ServingModel.from_arrays(serving_arrays(
            model.fit(net), user_ids=users, item_ids=items, purchased=net, item_category=category,
            category_names=["a", "b", "c", "d"], item_active=rng.random(n_items) > 0.05,
            exclude_purchased=category != 1))
        assert served._fast
        for user in users.ids[::37]:
            for category_name in (None, "b"):
                for exclude in (None, True, False):
                    assert_same(served, str(user), 20, category_name, exclude)


def test_no_fast_path_without_what_it_needs(catalogue):
    w = catalogue
    model = BuyAgain(weighting="recency").fit(w["net"], w["days"])
    arrays = serving_arrays(model, user_ids=w["users"], item_ids=w["items"], purchased=w["net"],
                            item_category=w["category"].codes, category_names=w["category"].categories,
                            item_active=w["active"])
    assert not ServingModel.from_arrays(arrays)._fast  # recency without days: the general path (and its error)
    arrays = serving_arrays(ItemKNN(K=5).fit(w["net"]), user_ids=w["users"], item_ids=w["items"], purchased=w["net"],
                            item_category=w["category"].codes, category_names=w["category"].categories,
                            item_active=w["active"])
    shuffled = dict(arrays)
    first = int(np.flatnonzero(np.diff(arrays["purchased.indptr"]) >= 2)[0])
    a = arrays["purchased.indptr"][first]
    shuffled["purchased.indices"] = arrays["purchased.indices"].copy()
    shuffled["purchased.indices"][[a, a + 1]] = shuffled["purchased.indices"][[a + 1, a]]
    assert not ServingModel.from_arrays(shuffled)._fast  # unsorted rows: the general path sorts them


def test_a_long_unknown_id_is_unknown(catalogue):
    served = served_model(catalogue, Popularity(), False)
    assert served._user_index("x" * 500) == -1
    known = str(catalogue["users"].ids[3])
    assert served._user_index(known) == 3 and served._user_index(known + "x") == -1


@pytest.mark.parametrize("width", [1, 7, 200, 256, 257, 1333, 5000])
def test_one_row_top_k_and_normalisation_equal_the_batched_forms(width):
    rng = np.random.default_rng(width)
    for trial in range(200):
        row = rng.standard_normal(width).astype(np.float32)
        if trial % 3 == 0:  # ties
            row = np.round(row, 1)
        if trial % 4 == 1:  # non-candidates
            row[rng.random(width) < 0.7] = -np.inf
        if trial % 10 == 9:
            row[:] = -np.inf if trial % 20 == 19 else 0.5  # no candidate at all / no spread
        for k in (1, 10, 50):
            idx, val = top_k(row[None], k)
            one_idx, one_val = top_k_row(row, k)
            np.testing.assert_array_equal(one_idx, idx[0])
            np.testing.assert_array_equal(one_val, val[0])
        batched, one = normalise_rows(row[None])[0], normalise_row(row)
        assert one.dtype == batched.dtype and one.tobytes() == batched.tobytes()  # -0.0 included


def test_the_apis_prebuilt_json_is_what_pydantic_writes(catalogue):
    """The recommendations route writes its JSON from the serving answer directly (no model
    validation on the hot path): byte for byte what the `Recommendations` model would give.
    (Here rather than in tests/api because it checks serving answers of every kind of score.)"""
    from api.items import ItemDetails
    from api.models import Recommendations, ScoredItem
    from api.routes.recommendations import recommendations_json

    n = len(catalogue["items"])
    odd_names = np.array([["", "Caf\u00e9 \"latte\"", "=cmd", "a\nb"][k % 4] for k in range(n)])
    prices = np.where(np.arange(n) % 3 == 0, np.nan, np.arange(n) / 7)
    served = served_model(catalogue, MODELS["blend_knn_als"](), True, item_name=odd_names, item_price=prices,
                          item_merchant=np.array([f"m{k % 5}" if k % 4 else "" for k in range(n)]))
    details = ItemDetails(served)
    assert details.row(str(catalogue["items"].ids[1])) == {
        "name": "Caf\u00e9 \"latte\"", "category": served.category_names[served.item_category[1]] if
        served.item_category[1] >= 0 else None, "merchant_id": "m1", "price": 1 / 7}
    answers = [served.recommend(str(u), 25) for u in catalogue["users"].ids[:200:3]] + [served.recommend("new", 5)]
    odd = [1e-05, 1.5e-07, -2.5e-10, 1e16, 1e22, 5e-324, 1 / 3, -0.0, 0.0, float("inf"), float("nan"), -float("inf")]
    answers.append(type(answers[0])([(f"i\u00fc\"{k}\\", v) for k, v in enumerate(odd)], "model"))
    for k, rec in enumerate(answers):
        user = "u\u00e9\n\u2028" if k % 2 else "u0001"
        want = Recommendations(user_id=user, bundle_version="v1", model_version="v1", recommendation_id="r",
                               source=rec.source,
                               items=[ScoredItem(item_id=i, score=s, **details.row(i))
                                      for i, s in rec.items if np.isfinite(s)])
        assert recommendations_json(user, "v1", "r", rec.source, rec.items, details) == want.model_dump_json().encode()
