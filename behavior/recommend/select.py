"""Model selection on a temporal validation split: never worse than popularity.

`select_model(train, valid, candidates)` fits every candidate configuration on `train`,
recommends k items to the validation users and scores them against `valid` (the purchases
of the validation period) with `behavior.recommend.evaluate`:

1. The validation users are the users with a validation purchase *and* a training purchase
   (a cold user gets the popularity fallback whatever the model, so they cannot tell the
   models apart), at most `max_users` of them, sampled with `seed`.
   Candidates are fitted on at most `max_fit_users` training users: the validation users plus
   a seeded sample of the others. Above that size the search costs the same whatever the
   history (item factors from 100k users rank configurations about as well as from 5M); the caller
   refits only the chosen configuration on every user.
2. Each candidate is a (name, factory, params) triple; params is one dict or a list of dicts
   (the hyperparameter search: factors, regularization, alpha, iterations, the weighting
   scheme ...). Every configuration is scored with and without excluding the user's own
   items; a candidate reports its best configuration (by nDCG@k).
3. The two best candidates are blended (`Blend`, weight searched on validation).
4. The baseline is the better of popularity and buy-again. The best model replaces it only
   if its nDCG@k beats the baseline's by more than `min_gain_se` standard errors of the paired
   per-user difference: with nothing to learn, noise alone never selects a worse model.
5. With `item_category`, the exclusion of owned items is also decided per category for the
   selected model (people buy milk again, rarely the same phone): categories whose validation
   purchases are rarely re-purchases are excluded, at the threshold that validates best.

The caller refits `selection.new_model()` on all data before the as-of date. `choose(bench,
fitted)` is steps 2-5 for models fitted elsewhere (e.g. ALS trained on Spark): the caller
builds the `Bench` of validation users and yields the fitted configurations.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from behavior.recommend.base import Recommender, from_params
from behavior.recommend.baselines import BuyAgain, Popularity
from behavior.recommend.blend import Blend
from behavior.recommend.checks import InteractionsError, check_matrix, check_trainable
from behavior.recommend.evaluate import evaluate
from behavior.recommend.factors import ALS, BPR
from behavior.recommend.interactions import Interactions
from behavior.recommend.neighbours import ItemKNN

BASELINES = ("popularity", "buy_again")
BLEND_WEIGHTS = (0.2, 0.4, 0.6, 0.8)
REBUY_THRESHOLDS = (0.02, 0.05, 0.1, 0.2, 0.4)

Candidate = tuple[str, Callable[..., Recommender], Mapping | Sequence[Mapping]]


def default_candidates(seed: int = 0) -> list[Candidate]:
    """The standard search: baselines, item kNN, and a handful of ALS / BPR configurations."""
    als = [
        {"factors": 64, "regularization": 0.05, "alpha": 3.0, "iterations": 8, "weighting": "bm25"},
        {"factors": 128, "regularization": 0.1, "alpha": 3.0, "iterations": 8, "weighting": "bm25"},
        {"factors": 64, "regularization": 0.05, "alpha": 8.0, "iterations": 10, "weighting": "log"},
        {"factors": 64, "regularization": 0.05, "alpha": 3.0, "iterations": 8, "weighting": "recency"},
    ]
    bpr = [
        {"factors": 64, "learning_rate": 0.05, "regularization": 0.01, "iterations": 40, "weighting": "count"},
        {"factors": 32, "learning_rate": 0.1, "regularization": 0.001, "iterations": 30, "weighting": "count"},
    ]
    for p in als + bpr:
        p["random_state"] = seed
    return [
        ("popularity", Popularity, [{"measure": "buyers"}, {"measure": "weight", "weighting": "recency"}]),
        ("buy_again", BuyAgain, [{"weighting": "count"}, {"weighting": "recency"}, {"weighting": "log"}]),
        ("item_knn", ItemKNN, [{"similarity": "cosine", "K": 50}, {"similarity": "bm25", "K": 100}]),
        ("als", ALS, als),
        ("bpr", BPR, bpr),
    ]


@dataclass(frozen=True)
class Selection:
    """What the selection decided, and every candidate's validation metrics.

    models: {name: {"precision@k", "recall@k", "ndcg@k", "map@k", "coverage", "params",
    "exclude_seen", "configs", "fit_seconds"}} (the report's `recommend.models`).
    exclude_seen: the catalogue default; exclude_categories: when not None, owned items are
    excluded only in these category codes (overrides exclude_seen). trials: every configuration
    tried, with its nDCG@k, the exclusion that validated better and its fit time. users: the
    validation users scored; fit_users: the training users the candidates were fitted on.
    """

    selected: str
    params: dict
    exclude_seen: bool
    exclude_categories: tuple[int, ...] | None
    k: int
    users: int
    models: dict[str, dict] = field(default_factory=dict)
    trials: list[dict] = field(default_factory=list)
    fit_users: int = 0

    def new_model(self) -> Recommender:
        """A new, unfitted model of the selected configuration (refit it on all data)."""
        return from_params(self.params)

    def exclude_mask(self, item_category=None) -> bool | np.ndarray:
        """`exclude_seen` for `Recommender.recommend`: a bool, or per item when decided per category."""
        if self.exclude_categories is None:
            return self.exclude_seen
        if item_category is None:
            raise InteractionsError("the selection excludes owned items per category: pass item_category")
        return np.isin(np.asarray(item_category), np.asarray(self.exclude_categories, dtype=np.int64))

    def report(self) -> dict:
        """JSON-able summary for the run report's `recommend` key."""
        return {
            "selected": self.selected, "k": self.k, "users": self.users, "fit_users": self.fit_users,
            "params": self.params,
            "exclude_seen": self.exclude_seen,
            "exclude_categories": None if self.exclude_categories is None else list(self.exclude_categories),
            "models": self.models,
        }


@dataclass
class _Scored:
    name: str
    model: Recommender
    metrics: dict
    per_user: np.ndarray
    exclude: bool | np.ndarray
    configs: int = 1
    fit_seconds: float = 0.0


class Bench:
    """The validation users, their training rows and what they bought in validation."""

    def __init__(self, net, days, valid, k, max_users, seed, max_fit_users=None):
        warm = (np.diff(valid.indptr) > 0) & (np.diff(net.indptr) > 0)
        users = np.flatnonzero(warm)
        if users.size == 0:
            raise InteractionsError(
                "no validation user also bought in training: make the validation period overlap the "
                "training users (a later window of the same history)"
            )
        rng = np.random.default_rng(seed)
        if max_users is not None and users.size > max_users:
            users = np.sort(rng.choice(users, size=max_users, replace=False))
        self.fit_users = _fit_sample(np.diff(net.indptr) > 0, users, max_fit_users, rng)
        self.fit_net = net if self.fit_users is None else net[self.fit_users]
        self.fit_days = days if self.fit_users is None or days is None else days[self.fit_users]
        self.fit_count = int((np.diff(net.indptr) > 0).sum() if self.fit_users is None else self.fit_users.size)
        # the validation users' rows in the fitted matrix (models look their factors up there)
        self.users = users if self.fit_users is None else np.searchsorted(self.fit_users, users)
        self.k = k
        self.rows = net[users]
        self.days = None if days is None else days[users]
        self.relevant = valid[users]
        self.n_items = net.shape[1]

    def score(self, model: Recommender, exclude) -> tuple[dict, np.ndarray]:
        items, _ = model.recommend(self.users, self.rows, self.k, exclude_seen=exclude, days=self.days)
        m = evaluate(items, self.relevant, self.k, self.n_items, per_user=True)
        per_user = m.pop("per_user")["ndcg"]
        m.pop("user_rows")
        return m, per_user

    def best_policy(self, model, policies) -> tuple[dict, np.ndarray, bool | np.ndarray]:
        best = None
        for exclude in policies:
            m, per = self.score(model, exclude)
            if best is None or m[f"ndcg@{self.k}"] > best[0][f"ndcg@{self.k}"]:
                best = (m, per, exclude)
        return best


def _fit_sample(active: np.ndarray, keep: np.ndarray, size: int | None, rng) -> np.ndarray | None:
    """Sorted rows to fit on: `keep` plus a sample of the other users with a training row, at
    most `size` in all; None (every row) when there are no more than that."""
    if size is None or int(active.sum()) <= size:
        return None
    others = np.flatnonzero(active)
    others = others[~np.isin(others, keep)]
    extra = rng.choice(others, size=max(size - keep.size, 0), replace=False)
    return np.sort(np.concatenate([keep, extra]))


def _configs(params) -> list[dict]:
    return [dict(params)] if isinstance(params, Mapping) else [dict(p) for p in params]


def _matrices(train) -> tuple[sp.csr_matrix, sp.csr_matrix | None]:
    if isinstance(train, Interactions):
        net, days = train.matrices()
    elif isinstance(train, tuple):    # (net, days) as `Interactions.matrices` returns them
        net, days = check_matrix(train[0], "train"), check_matrix(train[1], "train days")
    else:
        net, days = check_matrix(train, "train"), None
    return check_trainable(net, "train"), days


def _has_recency(params) -> bool:
    return params.get("weighting") == "recency"


def select_model(
    train,
    valid,
    candidates: Sequence[Candidate] | None = None,
    k: int = 10,
    *,
    item_category=None,
    max_users: int | None = 10_000,
    max_fit_users: int | None = None,
    seed: int = 0,
    min_gain_se: float = 2.0,
    progress: Callable[[str], None] = lambda _: None,
) -> Selection:
    """Fit, score and choose (see the module docstring). `train`: an `Interactions`, its
    `matrices()` (net, days) (either is needed for the "recency" scheme) or a users x items
    net-count matrix; `valid`: the validation purchases. `progress` gets a message before each
    candidate configuration is fitted."""
    net, days = _matrices(train)
    valid = check_matrix(valid, "valid")
    if valid.shape != net.shape:
        raise InteractionsError(
            f"valid is {valid.shape[0]} x {valid.shape[1]} but train is {net.shape[0]} x {net.shape[1]}"
        )
    if valid.nnz == 0:
        raise InteractionsError("valid holds no purchase: the validation period is empty")
    bench = Bench(net, days, valid, k, max_users, seed, max_fit_users)
    fit_net, fit_days = bench.fit_net, bench.fit_days
    candidates = default_candidates(seed) if candidates is None else candidates

    todo = [(name, factory, config) for name, factory, params in candidates
            for config in _configs(params) if days is not None or not _has_recency(config)]

    def fitted():
        for i, (name, factory, config) in enumerate(todo, start=1):
            progress(f"recommender search: fitting {name} ({i}/{len(todo)})")
            start = time.perf_counter()
            model = factory(**config).fit(fit_net, fit_days)
            yield name, model, time.perf_counter() - start

    return choose(bench, fitted(), item_category=item_category, min_gain_se=min_gain_se,
                  popularity=lambda: Popularity().fit(fit_net, fit_days))


def choose(
    bench: Bench,
    fitted: Iterable[tuple[str, Recommender, float]],
    *,
    item_category=None,
    min_gain_se: float = 2.0,
    popularity: Callable[[], Recommender] | None = None,
    blend: bool = True,
) -> Selection:
    """Steps 2-5 of the module docstring on models fitted elsewhere: `fitted` yields (candidate
    name, fitted model, fit seconds), several configurations per name allowed; `popularity`
    makes the baseline when no candidate is one; `blend=False` skips the blend (when the
    caller cannot refit one, e.g. models trained on Spark)."""
    key = f"ndcg@{bench.k}"
    scored: dict[str, _Scored] = {}
    trials: list[dict] = []
    for name, model, seconds in fitted:
        m, per, exclude = bench.best_policy(model, (False, True))
        trials.append({"model": name, "params": model.get_params(), key: m[key], "exclude_seen": exclude,
                       "fit_seconds": round(seconds, 3)})
        best = scored.get(name)
        configs = 1 + (best.configs if best else 0)
        if best is None or m[key] > best.metrics[key]:
            best = scored[name] = _Scored(name, model, m, per, exclude, fit_seconds=seconds)
        best.configs = configs
    if not any(name in scored for name in BASELINES):
        if popularity is None:
            raise InteractionsError("no baseline among the candidates and no popularity model to compare with")
        model = popularity()
        m, per, exclude = bench.best_policy(model, (False, True))
        scored["popularity"] = _Scored("popularity", model, m, per, exclude)

    ranked = sorted(scored.values(), key=lambda s: -s.metrics[key])
    if blend and len(ranked) >= 2:
        a, b = ranked[0], ranked[1]
        best_blend = None
        for w in BLEND_WEIGHTS:
            model = Blend.of_fitted(a.model, b.model, w)
            m, per, exclude = bench.best_policy(model, (False, True))
            if best_blend is None or m[key] > best_blend.metrics[key]:
                best_blend = _Scored("blend", model, m, per, exclude, configs=len(BLEND_WEIGHTS))
        scored["blend"] = best_blend

    baseline = max((scored[n] for n in BASELINES if n in scored), key=lambda s: s.metrics[key])
    best = max(scored.values(), key=lambda s: s.metrics[key])
    if best is not baseline:
        gain = best.per_user - baseline.per_user
        se = gain.std(ddof=1) / np.sqrt(gain.size) if gain.size > 1 else np.inf
        if not gain.mean() > min_gain_se * se:
            best = baseline

    exclude_categories = None
    if item_category is not None and best.name != "buy_again":
        exclude_categories = _per_category_policy(best, bench, np.asarray(item_category), key)

    models = {}
    for s in scored.values():
        models[s.name] = {**s.metrics, "params": s.model.get_params(), "exclude_seen": bool(s.exclude),
                          "configs": s.configs, "fit_seconds": round(s.fit_seconds, 3)}
    if exclude_categories is not None:
        models[best.name]["exclude_seen"] = "per_category"
    return Selection(
        selected=best.name,
        params=best.model.get_params(),
        exclude_seen=bool(best.exclude),
        exclude_categories=exclude_categories,
        k=bench.k,
        users=int(bench.users.size),
        fit_users=bench.fit_count,
        models=models,
        trials=trials,
    )


def _per_category_policy(best: _Scored, bench: Bench, item_category: np.ndarray, key: str) -> tuple[int, ...] | None:
    """Exclude owned items only in categories that are rarely re-bought, if that validates better."""
    if item_category.shape != (bench.n_items,):
        raise InteractionsError(
            f"item_category must have one code per item ({bench.n_items}), got {item_category.shape}"
        )
    rel = bench.relevant.tocoo()
    owned = np.asarray(bench.rows[rel.row, rel.col]).ravel() > 0
    cats = item_category[rel.col]
    codes = np.unique(item_category)
    bought = np.bincount(np.searchsorted(codes, cats), minlength=codes.size)
    rebought = np.bincount(np.searchsorted(codes, cats), weights=owned, minlength=codes.size)
    share = np.where(bought > 0, rebought / np.maximum(bought, 1), 0.0)
    chosen = None
    for threshold in REBUY_THRESHOLDS:
        excluded = codes[share < threshold]
        if excluded.size in (0, codes.size):
            continue
        mask = np.isin(item_category, excluded)
        m, per = bench.score(best.model, mask)
        if m[key] > best.metrics[key]:
            best.metrics, best.per_user, chosen = m, per, tuple(int(c) for c in excluded)
    return chosen
