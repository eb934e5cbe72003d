"""The recommender's test period: the chosen model and popularity scored on the purchases of
the days just before as_of, which the selection never saw (the report's `recommend.test`)."""

from __future__ import annotations

import numpy as np

from behavior.recommend.evaluate import evaluate
from behavior.recommend.select import Selection


def users_to_score(net, relevant, max_users: int | None = None, seed: int = 0) -> tuple[np.ndarray, bool]:
    """(users to score, sampled?): the users who purchased items in `net` and bought in `relevant`,
    at most `max_users` of them (a seeded sample)."""
    users = np.flatnonzero((np.diff(relevant.indptr) > 0) & (np.diff(net.indptr) > 0))
    if max_users is not None and users.size > max_users:
        return np.sort(np.random.default_rng(seed).choice(users, size=max_users, replace=False)), True
    return users, False


def score_users(model, net, days, relevant, k: int, exclude, users: np.ndarray) -> dict:
    """The metrics of `model` over `users` (`users_to_score`), who purchased items in `net`."""
    if users.size == 0:
        return {}
    recs, _ = model.recommend(users, net[users], k, exclude_purchased=exclude, days=days[users])
    m = evaluate(recs, relevant[users], k, net.shape[1])
    m["users"] = int(users.size)
    return {key: (round(v, 5) if isinstance(v, float) else v) for key, v in m.items()}


def test_report(selection: Selection, test_start, days: int, chosen: dict, popularity: dict | None) -> dict:
    """The report's `recommend.test`: the chosen model and popularity scored on the test period."""
    test = {"from": test_start.isoformat(), "days": days, selection.selected: chosen}
    if selection.selected != "popularity":
        test["popularity"] = popularity
    key = f"ndcg@{selection.k}"
    if test.get("popularity", {}).get(key) and test[selection.selected].get(key) is not None:
        test["ndcg_gain_over_popularity"] = round(test[selection.selected][key] / test["popularity"][key] - 1, 4)
    return test
