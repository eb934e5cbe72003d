"""The recommender's hyperparameter search: successive halving on user samples within a time budget.

`default_candidates` is the search space: the baselines (popularity, buy-again), item kNN, EASE
(catalogues up to `behavior.recommend.ease.MAX_ITEMS` items), plain iALS (32-128 factors; count,
log and bm25 weighting; a range of alpha and regularization) and BPR (implicit's; learning rate,
regularization, iterations, factors).

`successive_halving(bench, todo, budget_seconds)` runs the learned configurations in rungs on
nested samples of the fitting users (the validation users inside each sample are scored):

    rung 0: every configuration on N / 2^(R-1) users; the better half (at least two) goes on
    rung 1: on N / 2^(R-2) users ... the last rung: the survivors on all N users

with R rungs such that the first sample holds at least `MIN_RUNG_USERS` users (R = 1, the plain
grid, on small data). The budget is spread over the rungs: rung 0 fits configurations in the
order given (the most promising first) until its share (half) is spent; before each later rung, the
survivors whose cost (their last cost, scaled by the users) would overrun the rung's share are
dropped, the worst first. When none fits, the rung is skipped and the survivors go to the last
rung, which always fits at least one configuration on all N users (the cheapest when none
fits): only the last rung's survivors, scored on every validation user, reach the final choice
(`behavior.recommend.select`). The baselines are scored before the rungs, so the
budget's remainder is what the rungs share.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from behavior.recommend.base import Recommender
from behavior.recommend.baselines import BuyAgain, Popularity
from behavior.recommend.ease import EASE, MAX_ITEMS
from behavior.recommend.factors import ALS, BPR
from behavior.recommend.neighbours import ItemKNN

MIN_RUNG_USERS = 5_000
RUNG0_SHARE = 0.5   # of the rungs' budget, for rung 0; the later rungs share the rest equally
MAX_RUNGS = 4
# kept for the blend and the per-category exclusion after the rungs: this share of the budget,
# or this multiple of the time the baselines took to score, whichever is more (both steps
# score the validation users about as often as the baselines do)
FINAL_SHARE = 0.2
FINAL_PER_BASELINE_SECOND = 0.8

Candidate = tuple[str, Callable[..., Recommender], object]


def default_candidates(seed: int = 0) -> list[Candidate]:
    """The search space, most promising configurations of each family first (see module docstring)."""
    als = [
        {"factors": 64, "regularization": 0.05, "alpha": 3.0, "weighting": "bm25"},
        {"factors": 64, "regularization": 0.1, "alpha": 2.0, "weighting": "count"},
        {"factors": 128, "regularization": 0.1, "alpha": 3.0, "weighting": "bm25"},
        {"factors": 32, "regularization": 0.05, "alpha": 1.0, "weighting": "count"},
        {"factors": 64, "regularization": 0.1, "alpha": 5.0, "weighting": "log"},
        {"factors": 128, "regularization": 1.0, "alpha": 10.0, "weighting": "count"},
        {"factors": 32, "regularization": 1.0, "alpha": 20.0, "weighting": "log"},
        {"factors": 128, "regularization": 0.5, "alpha": 10.0, "weighting": "log"},
        {"factors": 64, "regularization": 0.05, "alpha": 3.0, "weighting": "recency"},
    ]
    bpr = [
        {"factors": 64, "learning_rate": 0.05, "regularization": 0.01, "iterations": 60},
        {"factors": 128, "learning_rate": 0.05, "regularization": 0.001, "iterations": 60},
        {"factors": 64, "learning_rate": 0.01, "regularization": 0.01, "iterations": 100},
    ]
    for p in als:
        p.update(iterations=10, random_state=seed)
    for p in bpr:
        p["random_state"] = seed
    return [
        ("popularity", Popularity, [{"measure": "buyers"}, {"measure": "weight", "weighting": "recency"}]),
        # (log weighting ranks a user's own items as counts do: not a configuration of its own)
        ("buy_again", BuyAgain, [{"weighting": "count"}, {"weighting": "recency"}]),
        ("item_knn", ItemKNN, [{"similarity": "cosine", "K": 50}, {"similarity": "bm25", "K": 100}]),
        ("ease", EASE, [{"regularization": 0.25, "K": 200}, {"regularization": 0.05, "K": 200},
                        {"regularization": 1.0, "K": 200}]),
        ("als", ALS, als),
        ("bpr", BPR, bpr),
    ]


def interleaved(configs: Sequence[tuple[str, Callable, dict]]) -> list[tuple[str, Callable, dict]]:
    """The configurations in rounds: every family's first, then every family's second, ... (so a
    budget cut at rung 0 still tries each family)."""
    families: dict[str, list] = {}
    for c in configs:
        families.setdefault(c[0], []).append(c)
    out = []
    for i in range(max((len(v) for v in families.values()), default=0)):
        out += [v[i] for v in families.values() if i < len(v)]
    return out


def skipped_for_size(name: str, factory, n_items: int) -> str | None:
    """Why a family is not a candidate for this catalogue, or None."""
    if factory is EASE and n_items > MAX_ITEMS:
        return (f"{name} skipped: {n_items:,} items > {MAX_ITEMS:,} (EASE inverts a dense items x items matrix: "
                f"{n_items ** 2 * 4 / 1e9:.1f} GB of float32 and O(items^3) time)")
    return None


def rung_sizes(n: int, min_users: int = MIN_RUNG_USERS, max_rungs: int = MAX_RUNGS) -> list[int]:
    """Users per rung, doubling up to n: the first holds at least `min_users` (or is n)."""
    rungs = 1
    while rungs < max_rungs and n // 2 ** rungs >= min_users:
        rungs += 1
    return [n // 2 ** (rungs - 1 - r) for r in range(rungs - 1)] + [n]


@dataclass
class Trial:
    """One configuration scored at one rung."""

    name: str
    model: Recommender
    metrics: dict
    per_user: np.ndarray
    exclude: bool
    seconds: float          # fit and score
    fit_seconds: float


def successive_halving(
    bench,
    todo: Sequence[tuple[str, Callable, dict]],
    budget_seconds: float,
    *,
    seed: int = 0,
    started: float | None = None,
    reserve_seconds: float = 0.0,
    progress: Callable[[str], None] = lambda _: None,
) -> tuple[list[Trial], list[dict]]:
    """(the last rung's trials on every validation user, the rungs' report). `todo` is in the
    order rung 0 tries it; `started` (perf_counter) is when the budget started; the rungs leave
    `reserve_seconds` of it (at least `FINAL_SHARE`) for what follows them."""
    started = time.perf_counter() if started is None else started
    key = f"ndcg@{bench.k}"
    n = bench.fit_net.shape[0]
    sizes = rung_sizes(n)
    order = np.random.default_rng(seed).permutation(n)
    search_budget = budget_seconds - max(FINAL_SHARE * budget_seconds, reserve_seconds)
    # (name, factory, config, seconds at the last rung it ran, users at that rung)
    survivors = [(name, factory, config, 0.0, 1) for name, factory, config in todo]
    rungs: list[dict] = []
    trials: list[Trial] = []
    for r, size in enumerate(sizes):
        last = r == len(sizes) - 1
        left = search_budget - (time.perf_counter() - started)
        # rung 0 tries the most configurations, and EASE's inverse costs it as much as the last rung
        allowance = left * RUNG0_SHARE if r == 0 and len(sizes) > 1 else left / (len(sizes) - r)
        if r > 0:
            affordable = _affordable(survivors, size, allowance, keep_one=last)
            if not affordable:   # out of budget: the survivors go straight to the last rung
                rungs.append({"users": int(size), "skipped": "out of budget"})
                continue
            survivors = affordable
        sub = bench if last else bench.restricted(np.sort(order[:size]))
        trials = []
        rung_start = time.perf_counter()
        for i, (name, factory, config, _, _) in enumerate(survivors):
            if r == 0 and trials and time.perf_counter() - rung_start > allowance:
                break
            progress(f"recommender search: rung {r + 1}/{len(sizes)} ({size:,} users), {name} "
                     f"({i + 1}/{len(survivors)})")
            t0 = time.perf_counter()
            model = factory(**config).fit(sub.fit_net, sub.fit_days)
            fit_seconds = time.perf_counter() - t0
            m, per, exclude = sub.best_policy(model, (False, True))
            trials.append(Trial(name, model, m, per, exclude, time.perf_counter() - t0, fit_seconds))
        trials.sort(key=lambda t: -t.metrics[key])
        rungs.append({"users": int(size), "valid_users": int(sub.users.size),
                      "seconds": round(time.perf_counter() - rung_start, 2),
                      "configs": [{"model": t.name, "params": t.model.get_params(), key: round(t.metrics[key], 5),
                                   "exclude_purchased": bool(t.exclude), "seconds": round(t.seconds, 2)}
                                  for t in trials]})
        if not last:
            # two at least: the better one may cost more than the next rung's share allows
            keep = max(2, (len(trials) + 1) // 2)
            survivors = [(t.name, type(t.model), _config(t.model), t.seconds, size) for t in trials[:keep]]
            for t in trials:   # free the rung's models before the next, larger rung
                t.model = None
    return trials, rungs


def _affordable(survivors: list, size: int, allowance: float, keep_one: bool) -> list:
    """The survivors, best first, whose estimated cost at `size` users (their last cost scaled by
    the users) fits in `allowance` seconds; the cheapest alone when `keep_one` and none fits."""
    kept, planned = [], 0.0
    for s in survivors:
        cost = s[3] * size / s[4]
        if planned + cost <= allowance:
            kept.append(s)
            planned += cost
    if kept or not keep_one:
        return kept
    return [min(survivors, key=lambda s: s[3] * size / s[4])]


def _config(model: Recommender) -> dict:
    params = model.get_params()
    params.pop("kind")
    return params
