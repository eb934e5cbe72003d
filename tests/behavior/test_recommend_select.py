"""Known answers planted by the generator: selection beats popularity when there are tastes to
learn, and falls back to popularity (or buy-again) when there are none.

The split is temporal, as the recommend stage does it: test = successful purchases in the
last 60 days; the selection validates on the 60 days before, trained on everything earlier;
the selected configuration is then refitted on everything before the test period.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from behavior.recommend.checks import InteractionsError
from behavior.recommend.evaluate import evaluate
from behavior.recommend.interactions import IdMap, Interactions, build_matrix
from behavior.recommend.models import ALS, BuyAgain, Popularity
from behavior.recommend.search import default_candidates
from behavior.recommend.select import Selection, select_model
from behavior.synth import SynthConfig, generate
from behavior.synth_catalog import CATEGORIES, STAPLE

WINDOW = pd.Timedelta(days=60)


def interactions_before(pay: pd.DataFrame, users: IdMap, items: IdMap, as_of: pd.Timestamp) -> Interactions:
    """Per (user, item): successful lines, refund lines, days since the last success (what the SQL does)."""
    p = pay[(pay["paid_at"] < as_of) & pay["status"].isin(["success", "refund"])]
    success = p["status"] == "success"
    agg = (
        p.assign(u=users.index(p["user_id"]), i=items.index(p["item_id"]), s=success.astype(int),
                 r=(~success).astype(int), last=p["paid_at"].where(success))
        .groupby(["u", "i"], as_index=False)
        .agg(s=("s", "sum"), r=("r", "sum"), last=("last", "max"))
    )
    days = ((as_of - agg["last"]).dt.total_seconds() / 86_400).fillna(0.0).to_numpy()
    return Interactions(agg["u"].to_numpy(), agg["i"].to_numpy(), agg["s"].to_numpy(), agg["r"].to_numpy(),
                        days, len(users), len(items))


def purchases_between(pay, users: IdMap, items: IdMap, start, end) -> sp.csr_matrix:
    p = pay[(pay["paid_at"] >= start) & (pay["paid_at"] < end) & (pay["status"] == "success")]
    return build_matrix(users.index(p["user_id"]), items.index(p["item_id"]), np.ones(len(p)), len(users), len(items))


def planted(taste_strength: float, seed: int) -> dict:
    data = generate(SynthConfig(users=6000, months=18, seed=seed, taste_strength=taste_strength))
    pay, catalogue = data.tables["payments"], data.tables["items"]
    users, items = IdMap.fit(pay["user_id"]), IdMap.fit(catalogue["item_id"])
    end = pay["paid_at"].max().normalize() + pd.Timedelta(days=1)
    test_start, valid_start = end - WINDOW, end - 2 * WINDOW
    category = pd.Categorical(catalogue.set_index("item_id").loc[items.ids, "category"])
    selection = select_model(
        interactions_before(pay, users, items, valid_start),
        purchases_between(pay, users, items, valid_start, test_start),
        default_candidates(seed=0),
        k=10,
        item_category=category.codes,
        budget_seconds=1e9,   # every configuration, whatever the machine's load
    )
    net, days = interactions_before(pay, users, items, test_start).matrices()
    test = purchases_between(pay, users, items, test_start, end)
    warm = np.flatnonzero((np.diff(test.indptr) > 0) & (np.diff(net.indptr) > 0))
    return {"selection": selection, "net": net, "days": days, "test": test, "warm": warm, "n_items": len(items),
            "category": category.codes, "category_names": list(category.categories)}


def test_ndcg(model, d, exclude) -> float:
    items, _ = model.recommend(d["warm"], d["net"][d["warm"]], 10, exclude_purchased=exclude, days=d["days"][d["warm"]])
    return evaluate(items, d["test"][d["warm"]], 10, d["n_items"])["ndcg@10"]


test_ndcg.__test__ = False  # a helper, not a test


@pytest.fixture(scope="module")
def tasted() -> dict:
    return planted(taste_strength=0.8, seed=5)


@pytest.fixture(scope="module")
def untasted() -> dict:
    return planted(taste_strength=0.0, seed=5)


def test_selected_model_beats_popularity_by_30_percent_on_the_held_out_period(tasted):
    sel: Selection = tasted["selection"]
    model = sel.new_model().fit(tasted["net"], tasted["days"])
    ours = test_ndcg(model, tasted, sel.exclude_mask(tasted["category"]))
    popularity = Popularity().fit(tasted["net"])
    best_popular = max(test_ndcg(popularity, tasted, exclude) for exclude in (False, True))
    assert sel.selected not in ("popularity",)
    assert ours >= 1.3 * best_popular, (sel.selected, ours, best_popular)


def test_without_tastes_selection_keeps_a_baseline(untasted):
    sel = untasted["selection"]
    assert sel.selected in ("popularity", "buy_again"), {n: m["ndcg@10"] for n, m in sel.models.items()}


def test_purchased_items_are_excluded_exactly_in_the_durable_categories(tasted):
    """Staples are re-bought, durables are not: the per-category decision recovers the plan."""
    sel: Selection = tasted["selection"]
    excluded = {tasted["category_names"][c] for c in sel.exclude_categories}
    durables = {name for name, staple in zip(CATEGORIES, STAPLE) if not staple}
    # rare durables (furniture: 1% of purchases) may see no validation purchase to decide on
    assert excluded <= durables and len(excluded) >= len(durables) - 2, excluded


@pytest.mark.parametrize("which", ["tasted", "untasted"])
def test_selected_never_validates_worse_than_popularity(which, request):
    sel: Selection = request.getfixturevalue(which)["selection"]
    assert sel.models[sel.selected]["ndcg@10"] >= sel.models["popularity"]["ndcg@10"]


def test_report_has_every_candidate_with_metrics_and_params(tasted):
    sel: Selection = tasted["selection"]
    report = json.loads(json.dumps(sel.report()))  # JSON-able
    assert report["k"] == 10 and report["selected"] == sel.selected
    assert set(report["models"]) == {"popularity", "buy_again", "item_knn", "ease", "als", "bpr", "blend"}
    # the deprecated key holds the same value for one release
    assert report["exclude_seen"] == report["exclude_purchased"] == sel.exclude_purchased
    for entry in report["models"].values():
        assert {"precision@10", "recall@10", "ndcg@10", "map@10", "coverage", "params"} <= set(entry)
        assert 0 <= entry["ndcg@10"] <= 1 and 0 < entry["coverage"] <= 1
    assert report["models"]["als"]["configs"] == 9  # the hyperparameter search ran
    selection = report["selection"]
    assert selection["chosen"] == sel.selected and selection["metric"] == "ndcg@10"
    assert {c["name"] for c in selection["candidates"]} == set(report["models"])
    assert report["search"]["budget_seconds"] == 1e9 and report["search"]["configs"] == 17
    assert sel.new_model().get_params() == sel.params


def test_candidates_are_configurable_and_recency_needs_days():
    rng = np.random.default_rng(0)
    train = sp.csr_matrix((rng.random((60, 12)) < 0.3).astype(np.float32))
    valid = sp.csr_matrix((rng.random((60, 12)) < 0.2).astype(np.float32))
    candidates = [("popularity", Popularity, {}), ("buy_again", BuyAgain, [{"weighting": "recency"}]),
                  ("als", ALS, [{"factors": 4, "iterations": 3}])]
    sel = select_model(train, valid, candidates, k=5)
    # a plain matrix has no purchase dates: the recency configuration is skipped, not failed
    assert "buy_again" not in sel.models and set(sel.models) == {"popularity", "als", "blend"}


def dense(array) -> sp.csr_matrix:
    return sp.csr_matrix(np.asarray(array, dtype=np.float32))


@pytest.mark.parametrize(
    "train, valid, message",
    [
        (dense(np.ones((4, 1))), dense(np.ones((4, 1))), "catalogue of 1 item"),
        (dense(np.zeros((4, 3))), dense(np.ones((4, 3))), "no positive interaction"),
        (dense(np.zeros((0, 0))), dense(np.zeros((0, 0))), "is empty"),
        (dense(np.eye(4)), dense(np.zeros((4, 4))), "validation period is empty"),
        (dense(np.eye(4)), dense(np.ones((3, 4))), "valid is 3 x 4"),
    ],
    ids=["one item", "only refunds", "empty train", "empty validation", "shape mismatch"],
)
def test_unusable_input_is_a_precise_error(train, valid, message):
    with pytest.raises(InteractionsError, match=message):
        select_model(train, valid, [("popularity", Popularity, {})])


def test_candidates_fit_on_a_user_sample_that_holds_every_validation_user():
    """With more training users than max_fit_users, candidates are fitted on a seeded sample
    that contains the validation users; the chosen configuration refitted on everyone still
    learns the planted tastes (the search is cheap at any size, the answer the same)."""
    data = generate(SynthConfig(users=6000, months=18, seed=7, taste_strength=0.8))
    pay, catalogue = data.tables["payments"], data.tables["items"]
    users, items = IdMap.fit(pay["user_id"]), IdMap.fit(catalogue["item_id"])
    end = pay["paid_at"].max().normalize() + pd.Timedelta(days=1)
    test_start, valid_start = end - WINDOW, end - 2 * WINDOW
    fitted_rows: list[int] = []

    class Recorded(ALS):
        def _fit(self, confidence):
            fitted_rows.append(confidence.shape[0])
            super()._fit(confidence)

    train = interactions_before(pay, users, items, valid_start)
    candidates = [("popularity", Popularity, {}), ("buy_again", BuyAgain, {}),
                  ("als", Recorded, [{"factors": 32, "iterations": 8, "alpha": 3.0, "weighting": "bm25"}])]
    sel = select_model(train, purchases_between(pay, users, items, valid_start, test_start), candidates,
                       k=10, max_users=400, max_fit_users=1500, seed=3)
    assert sel.users == 400 and sel.fit_users == 1500 and fitted_rows == [1500]
    assert sel.report()["fit_users"] == 1500
    everyone = int((np.diff(train.matrices()[0].indptr) > 0).sum())
    unsampled = select_model(train, purchases_between(pay, users, items, valid_start, test_start),
                             candidates[:2], k=10, max_users=400, seed=3)
    assert unsampled.fit_users == everyone > 1500
    assert sel.selected in ("als", "blend"), {n: m["ndcg@10"] for n, m in sel.models.items()}
    # the sampled validation users were scored with their own factors: ALS beats popularity there
    assert sel.models["als"]["ndcg@10"] > 1.3 * sel.models["popularity"]["ndcg@10"]
