"""The recommender's hyperparameter search: successive halving on user samples within a cost budget.

`default_candidates` is the search space: the baselines (popularity, buy-again), item kNN, EASE
(catalogues up to `behavior.recommend.ease.MAX_ITEMS` items), plain iALS (32-128 factors; count,
log and bm25 weighting; a range of alpha and regularization) and BPR (implicit's; learning rate,
regularization, iterations, factors).

`successive_halving(bench, todo, budget)` runs the learned configurations in rungs on nested
samples of the fitting users (the validation users inside each sample are scored):

    rung 0: every configuration on N / 2^(R-1) users; the better half (at least two) goes on
    rung 1: on N / 2^(R-2) users ... the last rung: the survivors on all N users

with R rungs such that the first sample holds at least `MIN_RUNG_USERS` users (R = 1, the plain
grid, on small data). The budget is in reference seconds, and every configuration's cost at a
rung is estimated from the rung's data before it runs (`behavior.recommend.cost`), so the rungs,
the survivors and the choice depend only on the data and the configuration, never on the
machine's speed or load. The budget is spread over the rungs: rung 0 takes the configurations
in the order given (the most promising first) that fit in its share (half); each later rung
takes, best first, the previous rung's configurations that fit in its share, at most half of
them (so a configuration too costly for a rung gives its place to the next best, not to
nobody). When none fits, the rung is skipped and
the survivors go to the last rung, which always fits at least one configuration on all N users
(the cheapest when none fits): only the last rung's survivors, scored on every validation user,
reach the final choice (`behavior.recommend.select`). The budget is the rungs' alone: the
baselines, the blend and the per-category exclusion score the validation users a fixed number
of times whatever the budget.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from behavior.recommend.base import Recommender
from behavior.recommend.baselines import BuyAgain, Popularity
from behavior.recommend.cost import Shape, cost
from behavior.recommend.ease import EASE, MAX_ITEMS
from behavior.recommend.factors import ALS, BPR
from behavior.recommend.neighbours import ItemKNN

MIN_RUNG_USERS = 5_000
RUNG0_SHARE = 0.5   # of the rungs' budget, for rung 0; the later rungs share the rest equally
MAX_RUNGS = 4

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
    cost: float             # estimated fit and score, reference seconds (`behavior.recommend.cost`)
    seconds: float          # measured fit and score (reported, never decides anything)
    fit_seconds: float


def successive_halving(
    bench,
    todo: Sequence[tuple[str, Callable, dict]],
    budget: float,
    *,
    seed: int = 0,
    progress: Callable[[str], None] = lambda _: None,
) -> tuple[list[Trial], list[dict]]:
    """(the last rung's trials on every validation user, the rungs' report). `todo` is in the
    order rung 0 tries it; `budget` (reference seconds) bounds the rungs' estimated cost. Every
    decision is taken on estimated costs (`behavior.recommend.cost`), never on the clock."""
    key = f"ndcg@{bench.k}"
    n = bench.fit_net.shape[0]
    sizes = rung_sizes(n)
    order = np.random.default_rng(seed).permutation(n)
    left = budget
    # (name, factory, config) of the configurations still in the search, best first after rung 0
    survivors = list(todo)
    keep = len(survivors)   # how many of them the rung runs
    rungs: list[dict] = []
    trials: list[Trial] = []
    for r, size in enumerate(sizes):
        last = r == len(sizes) - 1
        # rung 0 tries the most configurations, and EASE's inverse costs it as much as the last rung
        allowance = left * RUNG0_SHARE if r == 0 and len(sizes) > 1 else left / (len(sizes) - r)
        sub = bench if last else bench.restricted(np.sort(order[:size]))
        shape = Shape.of(sub.fit_net, sub.users.size)
        costs = [candidate_cost(factory, config, shape) for _, factory, config in survivors]
        affordable = _affordable(survivors, costs, allowance, keep_one=last or r == 0)[:keep]
        if not affordable:   # out of budget: the survivors go straight to the last rung
            rungs.append({"users": int(size), "skipped": "out of budget"})
            continue
        trials = []
        rung_start = time.perf_counter()
        for i, ((name, factory, config), estimate) in enumerate(affordable):
            progress(f"recommender search: rung {r + 1}/{len(sizes)} ({size:,} users), {name} "
                     f"({i + 1}/{len(affordable)})")
            t0 = time.perf_counter()
            model = factory(**config).fit(sub.fit_net, sub.fit_days)
            fit_seconds = time.perf_counter() - t0
            m, per, exclude = sub.best_policy(model, (False, True))
            trials.append(Trial(name, model, m, per, exclude, estimate, time.perf_counter() - t0, fit_seconds))
            left -= estimate
        # stable: configurations that validate alike keep the order they were tried in
        trials.sort(key=lambda t: -t.metrics[key])
        rungs.append({"users": int(size), "valid_users": int(sub.users.size),
                      "cost": round(sum(t.cost for t in trials), 4),
                      "seconds": round(time.perf_counter() - rung_start, 2),
                      "configs": [{"model": t.name, "params": t.model.get_params(), key: round(t.metrics[key], 5),
                                   "exclude_purchased": bool(t.exclude), "cost": round(t.cost, 4),
                                   "seconds": round(t.seconds, 2)}
                                  for t in trials]})
        if not last:
            # the better half (two at least) of those the next rung can afford: every one of this
            # rung's configurations stays in line, so one too costly for the next rung gives its
            # place to the next best rather than to nobody
            keep = max(2, (len(trials) + 1) // 2)
            survivors = [(t.name, type(t.model), _config(t.model)) for t in trials]
            for t in trials:   # free the rung's models before the next, larger rung
                t.model = None
    return trials, rungs


def _affordable(survivors: list, costs: list[float], allowance: float, keep_one: bool) -> list:
    """(survivor, cost) of the survivors, in order, whose estimated costs fit in `allowance`
    together; the cheapest alone when `keep_one` and none fits."""
    kept, planned = [], 0.0
    for s, c in zip(survivors, costs):
        if planned + c <= allowance:
            kept.append((s, c))
            planned += c
    if kept or not keep_one or not survivors:
        return kept
    cheapest = int(np.argmin(costs))
    return [(survivors[cheapest], costs[cheapest])]


def candidate_cost(factory, config: dict, shape: Shape) -> float:
    """`behavior.recommend.cost.cost` of a candidate (its factory's `kind` names the family)."""
    return cost(getattr(factory, "kind", ""), config, shape)


def _config(model: Recommender) -> dict:
    params = model.get_params()
    params.pop("kind")
    return params
