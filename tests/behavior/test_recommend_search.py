"""The budgeted search and the choice: known worlds where the right answer is planted.

- a catalogue where popularity is optimal (every purchase an independent draw from one
  popularity distribution): the popularity baseline is kept;
- planted tastes (users in groups, each group buying from its own items): a model is chosen;
- successive halving: rungs double the users, a spent budget goes straight to the last rung, and
  a catalogue too large for EASE's dense inverse skips it with the reason in the report.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp

from behavior.recommend.ease import EASE
from behavior.recommend.models import ALS, BuyAgain, ItemKNN, Popularity
from behavior.recommend.search import MIN_RUNG_USERS, interleaved, rung_sizes, skipped_for_size
from behavior.recommend.select import select_model


def draws(rng, probabilities: np.ndarray, users: int, per_user: int) -> sp.csr_matrix:
    """users x items purchase counts, each user's purchases drawn from their row of `probabilities`."""
    rows = np.repeat(np.arange(users), per_user)
    if probabilities.ndim == 1:
        cols = rng.choice(probabilities.size, size=rows.size, p=probabilities)
        n_items = probabilities.size
    else:
        n_items = probabilities.shape[1]
        cum = probabilities.cumsum(axis=1)
        cols = np.minimum((cum[rows] < rng.random(rows.size)[:, None]).sum(axis=1), n_items - 1)
    m = sp.csr_matrix((np.ones(rows.size, np.float32), (rows, cols)), shape=(users, n_items))
    m.sum_duplicates()
    return m


def planted(rng, users: int, groups: int, n_items: int, background: float, boost: float) -> np.ndarray:
    """Each user's purchase probabilities: users in `groups` groups, each group favouring its own
    block of items (`boost` on top of a uniform `background` mass)."""
    taste = np.full((groups, n_items), background / n_items)
    block = n_items // groups
    for g in range(groups):
        taste[g, g * block:(g + 1) * block] += boost
    taste /= taste.sum(axis=1, keepdims=True)
    return taste[rng.integers(0, groups, users)]


def candidates():
    """A small search space of every family but BPR (slow, and nothing here needs it)."""
    return [
        ("popularity", Popularity, {}),
        ("buy_again", BuyAgain, {}),
        ("item_knn", ItemKNN, [{"K": 20}]),
        ("ease", EASE, [{"regularization": 0.25, "K": 50}]),
        ("als", ALS, [{"factors": 16, "iterations": 6, "alpha": 2.0}]),
    ]


def test_a_catalogue_where_popularity_is_optimal_keeps_popularity():
    rng = np.random.default_rng(0)
    popularity = 1.0 / np.arange(1, 61) ** 1.1
    popularity /= popularity.sum()
    train = draws(rng, popularity, 3000, 6)
    valid = draws(rng, popularity, 3000, 2)
    sel = select_model(train, valid, candidates(), k=10, budget_seconds=1e9)
    report = json.loads(json.dumps(sel.report()))
    assert sel.selected == "popularity", {c["name"]: c["value"] for c in report["selection"]["candidates"]}
    chosen = next(c for c in report["selection"]["candidates"] if c["chosen"])
    assert chosen["baseline"] and chosen["name"] == "popularity"
    # every learned model was scored, and none beat popularity beyond the noise
    assert {"item_knn", "ease", "als"} <= {c["name"] for c in report["selection"]["candidates"]}


def test_planted_tastes_choose_a_model():
    rng = np.random.default_rng(1)
    taste = planted(rng, 3000, groups=6, n_items=60, background=0.2, boost=0.08)
    train, valid = draws(rng, taste, 3000, 5), draws(rng, taste, 3000, 2)
    sel = select_model(train, valid, candidates(), k=10, budget_seconds=1e9)
    assert sel.choice.model_chosen and sel.selected not in ("popularity", "buy_again"), sel.choice.report()
    pop = sel.choice.get("popularity")
    assert sel.choice.get(sel.selected).value > 1.5 * pop.value


def test_rungs_double_the_users_up_to_all_of_them():
    assert rung_sizes(60_000) == [7_500, 15_000, 30_000, 60_000]
    assert rung_sizes(12_000) == [6_000, 12_000]
    assert rung_sizes(MIN_RUNG_USERS) == [MIN_RUNG_USERS]   # small data: the plain grid
    assert rung_sizes(10 * MIN_RUNG_USERS, max_rungs=2) == [5 * MIN_RUNG_USERS, 10 * MIN_RUNG_USERS]


def test_interleaving_tries_every_family_before_any_second_configuration():
    todo = [("a", None, {"i": 1}), ("a", None, {"i": 2}), ("b", None, {"i": 1}), ("c", None, {"i": 1}),
            ("c", None, {"i": 2})]
    assert [(n, c["i"]) for n, _, c in interleaved(todo)] == [("a", 1), ("b", 1), ("c", 1), ("a", 2), ("c", 2)]


@pytest.fixture(scope="module")
def many_users():
    rng = np.random.default_rng(2)
    taste = planted(rng, 4 * MIN_RUNG_USERS, groups=4, n_items=40, background=0.1, boost=0.09)
    return draws(rng, taste, len(taste), 4), draws(rng, taste, len(taste), 1)


def test_successive_halving_halves_the_configurations_on_doubling_users(many_users):
    train, valid = many_users
    knn = [{"K": k, "similarity": s} for k in (5, 10, 20, 40) for s in ("cosine", "bm25")]
    sel = select_model(train, valid, [("popularity", Popularity, {}), ("item_knn", ItemKNN, knn)], k=5,
                       max_users=2000, budget_seconds=1e9)
    rungs = sel.report()["search"]["rungs"]
    assert [r["users"] for r in rungs] == [5_000, 10_000, 20_000]
    assert [len(r["configs"]) for r in rungs] == [8, 4, 2]
    assert rungs[-1]["valid_users"] == 2000            # the last rung scores every validation user
    # each rung keeps the better half of the one before
    for before, after in zip(rungs, rungs[1:]):
        kept = [c["params"] for c in before["configs"][:len(after["configs"])]]
        assert sorted(map(str, kept)) == sorted(str(c["params"]) for c in after["configs"])
    assert sel.models["item_knn"]["configs"] == 2


def test_a_spent_budget_sends_the_first_configuration_straight_to_the_last_rung(many_users):
    train, valid = many_users
    knn = [{"K": 5}, {"K": 10}, {"K": 20}]
    sel = select_model(train, valid, [("popularity", Popularity, {}), ("item_knn", ItemKNN, knn)], k=5,
                       max_users=2000, budget_seconds=1e-6)
    search = sel.report()["search"]
    assert [len(r.get("configs", [])) for r in search["rungs"]] == [1, 0, 1]
    assert search["rungs"][1]["skipped"] == "out of budget"
    assert search["rungs"][-1]["configs"][0]["params"]["K"] == 5
    assert search["budget_seconds"] == 1e-6 and search["seconds"] > 0


def test_ease_is_skipped_for_a_catalogue_too_large_for_its_dense_inverse(monkeypatch):
    monkeypatch.setattr("behavior.recommend.search.MAX_ITEMS", 30)
    assert skipped_for_size("ease", EASE, 30) is None
    rng = np.random.default_rng(3)
    popularity = np.full(31, 1 / 31)
    train, valid = draws(rng, popularity, 300, 4), draws(rng, popularity, 300, 1)
    sel = select_model(train, valid, [("popularity", Popularity, {}), ("ease", EASE, {})], k=5)
    assert "ease" not in sel.models
    (note,) = sel.report()["search"]["notes"]
    assert note.startswith("ease skipped: 31 items > 30") and "dense items x items" in note


def test_an_unaffordable_last_rung_fits_the_cheapest_survivor():
    from behavior.recommend.search import _affordable

    survivors = [("ease", EASE, {}), ("item_knn", ItemKNN, {})]   # best first
    costs = [12.0, 0.4]
    assert _affordable(survivors, costs, 200.0, keep_one=True) == list(zip(survivors, costs))
    assert _affordable(survivors, costs, 10.0, keep_one=True) == [(survivors[1], 0.4)]   # the best costs 12
    assert _affordable(survivors, costs, 0.1, keep_one=True) == [(survivors[1], 0.4)]    # none fits: the cheapest
    assert _affordable(survivors, costs, 0.1, keep_one=False) == []                      # a middle rung is skipped


def _decisions(sel) -> dict:
    """What the search decided, without the measured seconds."""
    rungs = [{"users": r["users"], "skipped": r.get("skipped"),
              "configs": [{k: v for k, v in c.items() if k != "seconds"} for c in r.get("configs", [])]}
             for r in sel.search["rungs"]]
    return {"selected": sel.selected, "params": sel.params, "rungs": rungs, "cost": sel.search["cost"]}


def test_a_slower_machine_makes_the_same_search(many_users, monkeypatch):
    """The budget is spent in estimated cost, not on the clock: with a clock running 50 times
    faster (a machine 50 times slower, or as loaded), the rungs, their configurations and the
    choice are the same, and a budget that binds still cuts the same configurations."""
    import time

    train, valid = many_users
    space = [("popularity", Popularity, {}),
             ("item_knn", ItemKNN, [{"K": k, "similarity": s} for k in (5, 20) for s in ("cosine", "bm25")]),
             ("als", ALS, [{"factors": f, "iterations": 4, "alpha": 2.0} for f in (4, 8, 16, 32)])]

    budget = 0.1

    def search():
        return select_model(train, valid, space, k=5, max_users=2000, budget_seconds=budget)

    first = search()
    rung0 = first.search["rungs"][0]["configs"]
    assert 1 < len(rung0) < 8, "the budget must bind for the test to mean something"
    assert first.search["cost"] <= budget and first.search["unit"].startswith("reference seconds")

    real = time.perf_counter
    start = real()
    monkeypatch.setattr(time, "perf_counter", lambda: start + 50 * (real() - start))
    assert _decisions(search()) == _decisions(first)


def test_a_survivor_too_costly_for_the_next_rung_gives_its_place_to_the_next_best(many_users):
    """Item kNN keeping every neighbour (K far above the 40 items) ranks among the better half on
    rung 0 but costs more to score than rung 1's share: rung 1 still runs two configurations,
    the two best of the others."""
    train, valid = many_users
    knn = [{"K": k} for k in (100_000, 1, 2, 3)]
    sel = select_model(train, valid, [("popularity", Popularity, {}), ("item_knn", ItemKNN, knn)], k=5,
                       max_users=2000, budget_seconds=12)
    rung0, rung1 = sel.search["rungs"][:2]
    ranked = [c["params"]["K"] for c in rung0["configs"]]
    costly = ranked.index(100_000)
    assert costly < 2 and rung0["configs"][costly]["cost"] > (12 - rung0["cost"]) / 2   # too costly for rung 1
    assert sorted(c["params"]["K"] for c in rung1["configs"]) == sorted([k for k in ranked if k != 100_000][:2])
