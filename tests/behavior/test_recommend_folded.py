"""`ServingModel.recommend_folded`: a user's bundle row plus purchases made since, folded in."""

from __future__ import annotations

import numpy as np
import pytest

from tests.behavior.test_serving_fast_path import MODELS, catalogue, served_model  # noqa: F401  (fixtures)
from tests.behavior.test_recommend_serving import SEGMENTS, world  # noqa: F401  (fixture)

# weightings that do not read the days: the folded row equals a basket of the same counts
NO_DAYS = ["als_bm25", "bpr", "item_knn_cosine", "item_knn_bm25_log", "blend_knn_als", "popularity_buyers"]


@pytest.mark.parametrize("name", NO_DAYS)
def test_folded_equals_the_basket_of_purchased_and_new_items(catalogue, name):  # noqa: F811
    served = served_model(catalogue, MODELS[name](), catalogue["exclude"])
    rng = np.random.default_rng(3)
    items = catalogue["items"].ids
    checked = 0
    for uidx in rng.choice(len(served.users), size=25, replace=False):
        a, b = served._indptr[uidx], served._indptr[uidx + 1]
        counts = served._data[a:b]
        if b == a or not np.all(counts == np.round(counts)):
            continue
        purchased = [i for i, c in zip(items[served._indices[a:b]].tolist(), counts.astype(int)) for _ in range(c)]
        new = items[rng.integers(len(items), size=2)].tolist()
        user = str(served.users.ids[uidx])
        for exclude in (None, True):
            folded = served.recommend_folded(user, new, 10, exclude_purchased=exclude)
            seg = int(served.user_segment[uidx])
            basket = served.recommend_for_items(purchased + new, 10, exclude_purchased=exclude,
                                                segment=SEGMENTS[seg] if seg >= 0 else None)
            assert folded == basket
            if exclude:
                assert not set(new) & {i for i, _ in folded.items}
        checked += 1
    assert checked >= 5


def test_a_factor_model_folds_a_new_user_in(catalogue):  # noqa: F811
    served = served_model(catalogue, MODELS["als_bm25"](), True)
    items = catalogue["items"].ids[:3].tolist()
    got = served.recommend_folded("someone-new", items, 5)
    assert got.source == "model" and got == served.recommend_for_items(items, 5)
    assert not set(items) & {i for i, _ in got.items}
