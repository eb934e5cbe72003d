"""Every model kind is served through the `Recommender` contract alone, with the answers it gave
before the contract existed.

tests/fixtures/serving/serving_known.npz holds the serving arrays of eight fitted models (ALS,
BPR, item kNN on cosine and on bm25 / log weights, popularity on recency weights, buy-again on
recency weights, a blend of kNN and ALS, a blend of a blend) over a seeded 30 x 24 world (one
known user owning nothing, two withdrawn items, a per-item exclusion policy); serving_known.json
holds what `ServingModel` answered from them when `ServingModel` still scored each model kind
itself (`recommend` for 10 users and an unknown one, by category and exclusion setting;
`recommend_for_items`; `similar`). Both paths (the one-row fast path and the general one) must
give exactly those items and scores.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from behavior.recommend.base import Recommender, strip_prefix
from behavior.recommend.interactions import IdMap
from behavior.recommend.serving import ServingModel, serving_arrays

KNOWN = Path(__file__).parents[1] / "fixtures" / "serving" / "serving_known"
ANSWERS = json.loads(KNOWN.with_suffix(".json").read_text())


@pytest.fixture(scope="module")
def arrays() -> dict:
    with np.load(KNOWN.with_suffix(".npz"), allow_pickle=False) as f:
        return dict(f)


def _pairs(rec) -> list:
    return [[item, score] for item, score in rec.items]


@pytest.mark.parametrize("name", sorted(ANSWERS))
@pytest.mark.parametrize("fast", [True, False])
def test_every_model_kind_answers_as_before(arrays, name, fast):
    served = ServingModel.from_arrays(strip_prefix(arrays, f"{name}/"))
    assert served._fast, f"{name}: the models of behavior.recommend all have a one-row path"
    known = ANSWERS[name]
    for user, category, exclude, source, items in known["recommend"]:
        got = served._recommend(user, 5, category, exclude, None, fast=fast)
        assert (got.source, _pairs(got)) == (source, items), (name, user, category, exclude)
    for basket, source, items in known["for_items"]:
        got = served._recommend_for_items(basket, 5, None, None, None, fast=fast and served._fast_anonymous)
        assert (got.source, _pairs(got)) == (source, items), (name, basket)
    for item, items in known["similar"]:
        assert [list(p) for p in served.similar(item, 4)] == items, (name, item)


class Reversed(Recommender):
    """A model written in this test only: an item's score is its index (the last item best).
    It is served on the fast path by implementing `_row_scorer`, without any change to
    behavior/recommend/serving.py."""

    kind = "test_reversed"

    def _fit(self, confidence):
        self.rank_ = np.arange(confidence.shape[1], dtype=np.float32)

    def _scores(self, user_idx, confidence, items):
        s = self.rank_ if items is None else self.rank_[items]
        return np.repeat(s[None, :], len(user_idx), axis=0)

    def _row_scorer(self, items, known_user):
        return lambda user_idx, cols, data, days: (self.rank_ if items is None else self.rank_[items]).copy()

    def _item_scores(self, item_idx):
        return np.repeat(self.rank_[None, :], len(item_idx), axis=0)

    def _fitted_arrays(self):
        return {"rank": self.rank_}

    def _load_arrays(self, arrays):
        self.rank_ = np.asarray(arrays["rank"], dtype=np.float32)


class ReversedTwice(Reversed):
    """Scores differently from its parent without a row scorer of its own."""

    kind = "test_reversed_twice"

    def _scores(self, user_idx, confidence, items):
        return -super()._scores(user_idx, confidence, items)


def _serve(model: Recommender) -> ServingModel:
    net = sp.csr_matrix(np.array([[1, 0, 2, 0, 0], [0, 1, 0, 0, 0], [0, 0, 0, 0, 0]], dtype=np.float32))
    arrays = serving_arrays(model.fit(net), user_ids=IdMap.fit(["a", "b", "c"]),
                            item_ids=IdMap.fit(["i0", "i1", "i2", "i3", "i4"]), purchased=net,
                            item_category=np.zeros(5, np.int32), category_names=["all"],
                            item_active=np.ones(5, bool))
    return ServingModel.from_arrays(arrays)


def test_a_new_model_is_served_fast_by_implementing_the_contract():
    served = _serve(Reversed())
    assert served._fast and served._fast_anonymous
    fast = served.recommend("a", 3)
    assert fast == served._recommend("a", 3, None, None, None, fast=False)
    assert fast.items == [("i4", 4.0), ("i3", 3.0), ("i1", 1.0)]   # i2 and i0 are purchased


def test_a_subclass_that_scores_anew_is_served_the_general_way():
    served = _serve(ReversedTwice())
    assert not served._fast   # the parent's row scorer would disagree with its scores
    assert served.recommend("a", 2).items == [("i1", -1.0), ("i3", -3.0)]
