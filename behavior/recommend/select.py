"""Model selection on a temporal validation split: never worse than its baselines.

`select_model(train, valid, candidates)` searches the candidate configurations on `train`,
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
   (`behavior.recommend.search.default_candidates`). The learned configurations go through
   `behavior.recommend.search.successive_halving` within `budget_seconds` reference seconds
   (estimated costs, `behavior.recommend.cost`: the clock decides nothing); the baselines
   (popularity, buy-again) and the last rung's survivors are scored on every validation user,
   each with and without excluding the user's own items; a candidate reports its best
   configuration (by nDCG@k). A family the catalogue is too large for (EASE) is skipped and the
   report's `search.notes` says why.
3. The two best candidates are blended (`Blend`, weight searched on validation).
4. The choice is `behavior.model_choice.choose` on per-user nDCG@k over shared bootstrap
   resamples of the validation users: the better baseline is kept unless a model beats it by
   more than the noise (simpler first: item kNN and EASE, then ALS and BPR, then the blend).
5. With `item_category`, the exclusion of purchased items is also decided per category for the
   selected model (people buy milk again, rarely the same phone): categories whose validation
   purchases are rarely re-purchases are excluded, at the threshold that validates best.

The caller refits `selection.new_model()` on all data before the as-of date. `choose(bench,
fitted)` is steps 2-5 for models fitted elsewhere (e.g. ALS trained on Spark): the caller
builds the `Bench` of validation users and yields the fitted configurations.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from behavior import model_choice
from behavior.recommend.base import CHUNK_CELLS, Recommender, from_params, over_chunks
from behavior.recommend.baselines import Popularity
from behavior.recommend.blend import Blend, mix, union, weighted, with_data
from behavior.recommend.checks import InteractionsError, check_matrix, check_trainable
from behavior.recommend.evaluate import evaluate
from behavior.recommend.interactions import Interactions
from behavior.recommend.topk import normalise_csr, normalise_rows, top_k, top_k_csr
from behavior.recommend.search import (Candidate, default_candidates, interleaved,
                                      skipped_for_size, successive_halving)

BASELINES = ("popularity", "buy_again")
# lower is simpler: model_choice keeps the simplest candidate within the noise of the best
SIMPLICITY = {"item_knn": 1, "ease": 1, "als": 2, "spark_als": 2, "bpr": 2, "blend": 3}
BLEND_WEIGHTS = (0.2, 0.4, 0.6, 0.8)
REBUY_THRESHOLDS = (0.02, 0.05, 0.1, 0.2, 0.4)
DEFAULT_BUDGET_SECONDS = 4.0
BUDGET_UNIT = "reference seconds (estimated, 2 cores)"
N_BOOT = 200
SPARSE_CHUNK_USERS = 512   # users per chunk of sparse candidate scores (a few MB)


@dataclass(frozen=True)
class Selection:
    """What the selection decided, and every candidate's validation metrics.

    models: {name: {"precision@k", "recall@k", "ndcg@k", "map@k", "coverage", "params",
    "exclude_purchased", "configs", "fit_seconds"}} (the report's `recommend.models`).
    exclude_purchased: the catalogue default; exclude_categories: when not None, purchased items are
    excluded only in these category codes (overrides exclude_purchased). trials: every configuration
    scored on every validation user, with its nDCG@k, the exclusion that validated better and its
    fit time. users: the validation users scored; fit_users: the training users the candidates
    were fitted on. choice: the `behavior.model_choice` decision (the report's `selection`);
    search: the budget, the rungs with the configurations tried at each, the time used, notes.
    """

    selected: str
    params: dict
    exclude_purchased: bool
    exclude_categories: tuple[int, ...] | None
    k: int
    users: int
    models: dict[str, dict] = field(default_factory=dict)
    trials: list[dict] = field(default_factory=list)
    fit_users: int = 0
    choice: model_choice.Choice | None = None
    search: dict = field(default_factory=dict)

    def new_model(self) -> Recommender:
        """A new, unfitted model of the selected configuration (refit it on all data)."""
        return from_params(self.params)

    def exclude_mask(self, item_category=None) -> bool | np.ndarray:
        """`exclude_purchased` for `Recommender.recommend`: a bool, or per item when decided per category."""
        if self.exclude_categories is None:
            return self.exclude_purchased
        if item_category is None:
            raise InteractionsError("the selection excludes purchased items per category: pass item_category")
        return np.isin(np.asarray(item_category), np.asarray(self.exclude_categories, dtype=np.int64))

    def report(self) -> dict:
        """JSON-able summary for the run report's `recommend` key."""
        return {
            "selected": self.selected, "k": self.k, "users": self.users, "fit_users": self.fit_users,
            "params": self.params,
            "exclude_purchased": self.exclude_purchased,
            "exclude_seen": self.exclude_purchased,  # deprecated name of exclude_purchased, kept one release
            "exclude_categories": None if self.exclude_categories is None else list(self.exclude_categories),
            "models": self.models,
            "selection": None if self.choice is None else self.choice.report(),
            "search": self.search,
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

    def restricted(self, rows: np.ndarray) -> Bench:
        """The bench of the fitting rows `rows` (sorted positions in `fit_net`) and the validation
        users among them (a rung of the successive halving)."""
        sub = copy.copy(self)
        inside = np.isin(self.users, rows)
        sub.fit_net = self.fit_net[rows]
        sub.fit_days = None if self.fit_days is None else self.fit_days[rows]
        sub.fit_count = int(rows.size)
        sub.users = np.searchsorted(rows, self.users[inside])
        sub.rows = self.rows[inside]
        sub.days = None if self.days is None else self.days[inside]
        sub.relevant = self.relevant[inside]
        return sub

    def score(self, model: Recommender, exclude) -> tuple[dict, np.ndarray]:
        """(metrics, per-user nDCG@k) of `model` with one exclusion policy."""
        return self._evaluate(self._model_lists(model, [exclude])[0])

    def best_policy(self, model, policies) -> tuple[dict, np.ndarray, bool | np.ndarray]:
        """(metrics, per-user nDCG@k, policy) of the exclusion policy that validates best; the
        scores are computed once for all policies."""
        return self._best(self._model_lists(model, policies), policies)

    def best_blend(self, a: Recommender, b: Recommender, weights, policies) -> tuple[Blend, dict, np.ndarray, bool]:
        """The best `Blend` of two fitted models over `weights` and `policies` (the components
        are scored once per chunk of users, then mixed for each weight)."""
        blends = [Blend.of_fitted(a, b, w) for w in weights]

        def mixed(users, rows, days):
            sa, sb = self._scorer(a)(users, rows, days), self._scorer(b)(users, rows, days)
            candidate = np.isfinite(sa) | np.isfinite(sb)
            na, nb = normalise_rows(sa), normalise_rows(sb)
            return [mix(na, nb, candidate, float(blend.weight)) for blend in blends]

        def mixed_sparse(users, rows, days):
            pattern, na, nb = union(normalise_csr(a.candidate_scores(users, rows, days)),
                                    normalise_csr(b.candidate_scores(users, rows, days)))
            return [with_data(pattern, weighted(na, nb, float(blend.weight))) for blend in blends]

        if a.sparse_candidates and b.sparse_candidates:
            lists = self._sparse_lists(mixed_sparse, policies, n_out=len(blends))
        else:
            lists = self._lists(mixed, policies, n_out=len(blends))
        best = None
        for i, blend in enumerate(blends):
            m, per, exclude = self._best(lists[i * len(policies):(i + 1) * len(policies)], policies)
            if best is None or m[f"ndcg@{self.k}"] > best[1][f"ndcg@{self.k}"]:
                best = (blend, m, per, exclude)
        return best

    def _model_lists(self, model: Recommender, policies) -> list[np.ndarray]:
        """`_lists` of one model: from its shared scores (popularity) or its sparse candidate
        scores where it has them (the same lists, at a cost that does not grow with the
        catalogue), else from its dense scores."""
        model._check_fitted()
        shared = model.shared_scores()
        if shared is not None:
            return [self._shared_list(shared, exclude) for exclude in policies]
        if model.sparse_candidates:
            return self._sparse_lists(lambda users, rows, days: [model.candidate_scores(users, rows, days)], policies)
        return self._lists(self._scorer(model), policies)

    def _shared_list(self, scores: np.ndarray, exclude) -> np.ndarray:
        """Top-k of every validation user when every user gets `scores`: the items in decreasing
        order of score (equal scores by item index, as `top_k_csr`), each user's excluded items
        skipped."""
        k, n = self.k, self.users.size
        order = np.argsort(-np.asarray(scores, dtype=np.float32), kind="stable")
        out = np.full((n, k), -1, dtype=np.int64)
        r, c = _excluded_pairs(self.rows, exclude)
        if r.size == 0:
            out[:, :min(k, order.size)] = order[:k]
            return out
        # a user's list lies in the first k + (their excluded items) of the order
        head = min(order.size, k + int(np.bincount(r, minlength=n).max()))
        rank = np.empty(order.size, dtype=np.int64)
        rank[order] = np.arange(order.size)
        pos = rank[c]
        inside = pos < head
        skipped = np.zeros((n, head), dtype=bool)
        skipped[r[inside], pos[inside]] = True
        first = np.argsort(skipped, axis=1, kind="stable")[:, :k]   # the positions not skipped, in order
        items = np.where(np.take_along_axis(skipped, first, axis=1), -1, order[first])
        out[:, :items.shape[1]] = items
        return out

    def _sparse_lists(self, scorer, policies, n_out: int = 1) -> list[np.ndarray]:
        """`_lists` for a scorer that returns, per chunk of users, a list of `n_out` CSR matrices of
        candidate scores (`Recommender.candidate_scores`); ranked by `top_k_csr`."""
        n = self.users.size
        outs = [np.full((n, self.k), -1, dtype=np.int64) for _ in range(n_out * len(policies))]

        def chunk(start: int, stop: int) -> None:
            rows = self.rows[start:stop]
            scores = scorer(self.users[start:stop], rows, None if self.days is None else self.days[start:stop])
            for j, exclude in enumerate(policies):
                r, c = _excluded_pairs(rows, exclude)
                own = sp.csr_matrix((np.ones(r.size, np.float64), (r, c)), shape=rows.shape)
                kept = {}   # per pattern (the blend's weights share one): what the policy keeps of it
                for i, s in enumerate(scores):
                    if own.nnz:
                        if id(s.indices) not in kept:
                            kept[id(s.indices)] = _kept(s, own)
                        keep, indptr = kept[id(s.indices)]
                        s = sp.csr_matrix((s.data[keep], s.indices[keep], indptr), shape=s.shape)
                    outs[i * len(policies) + j][start:stop] = top_k_csr(s, self.k)[0]

        over_chunks(chunk, n, SPARSE_CHUNK_USERS)
        return outs

    @staticmethod
    def _scorer(model: Recommender):
        model._check_fitted()
        return lambda users, rows, days: model._score_rows(users, rows, days, None)

    def _lists(self, scorer, policies, n_out: int | None = None) -> list[np.ndarray]:
        """Top-k items of every validation user for each score matrix the scorer returns (one, or
        a list of `n_out`) and each exclusion policy, as `Recommender.recommend` ranks them."""
        n = self.users.size
        outs = [np.full((n, self.k), -1, dtype=np.int64) for _ in range((n_out or 1) * len(policies))]
        step = max(1, CHUNK_CELLS // max(self.n_items, 1))

        def chunk(start: int, stop: int) -> None:
            rows = self.rows[start:stop]
            scores = scorer(self.users[start:stop], rows, None if self.days is None else self.days[start:stop])
            r = np.repeat(np.arange(stop - start), np.diff(rows.indptr))
            c = rows.indices.astype(np.int64)
            for i, s in enumerate(scores if n_out else [scores]):
                for j, exclude in enumerate(policies):
                    if np.ndim(exclude) == 0 and not exclude:
                        masked = s
                    else:
                        keep = slice(None) if np.ndim(exclude) == 0 else np.asarray(exclude)[c]
                        # the scores are the scorer's own (as in `Recommender.recommend`): the last
                        # policy masks them in place, the others a copy
                        masked = s if j == len(policies) - 1 else s.copy()
                        masked[r[keep], c[keep]] = -np.inf
                    outs[i * len(policies) + j][start:stop] = top_k(masked, self.k)[0]

        over_chunks(chunk, n, step)
        return outs

    def _evaluate(self, items: np.ndarray) -> tuple[dict, np.ndarray]:
        m = evaluate(items, self.relevant, self.k, self.n_items, per_user=True)
        per_user = m.pop("per_user")["ndcg"]
        m.pop("user_rows")
        return m, per_user

    def _best(self, lists, policies) -> tuple[dict, np.ndarray, bool | np.ndarray]:
        best = None
        for items, exclude in zip(lists, policies):
            m, per = self._evaluate(items)
            if best is None or m[f"ndcg@{self.k}"] > best[0][f"ndcg@{self.k}"]:
                best = (m, per, exclude)
        return best


def _excluded_pairs(rows: sp.csr_matrix, exclude) -> tuple[np.ndarray, np.ndarray]:
    """(row, item) of the purchased items an exclusion policy removes: none (False), all (True)
    or those of the items marked in a per-item mask. Row-major, as the CSR stores them."""
    if np.ndim(exclude) == 0 and not exclude:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    r = np.repeat(np.arange(rows.shape[0], dtype=np.int64), np.diff(rows.indptr))
    c = rows.indices.astype(np.int64)
    if np.ndim(exclude) == 0:
        return r, c
    keep = np.asarray(exclude)[c]
    return r[keep], c[keep]


def _kept(scores: sp.csr_matrix, own: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """(entries kept, their indptr) of `scores` without the entries stored in `own` (a pattern
    of the same shape)."""
    # scipy's product of the two patterns, each entry of `scores` holding its position (+1)
    positions = sp.csr_matrix((np.arange(1, scores.nnz + 1, dtype=np.float64), scores.indices, scores.indptr),
                              shape=scores.shape)
    keep = np.ones(scores.nnz, dtype=bool)
    keep[positions.multiply(own).tocsr().data.astype(np.int64) - 1] = False
    rows = np.repeat(np.arange(scores.shape[0]), np.diff(scores.indptr))
    indptr = np.zeros(scores.shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows[keep], minlength=scores.shape[0]), out=indptr[1:])
    return keep, indptr


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
    budget_seconds: float = DEFAULT_BUDGET_SECONDS,
    progress: Callable[[str], None] = lambda _: None,
) -> Selection:
    """Search, score and choose (see the module docstring). `train`: an `Interactions`, its
    `matrices()` (net, days) (either is needed for the "recency" scheme) or a users x items
    net-count matrix; `valid`: the validation purchases. `budget_seconds` bounds the estimated
    cost, in reference seconds (`behavior.recommend.cost`), of the successive halving's rungs
    (the baselines, the blend and the per-category exclusion come on top), so the same data and
    arguments make the same choice on any machine; `progress` gets a message before each
    candidate configuration is fitted."""
    started = time.perf_counter()
    net, days = _matrices(train)
    valid = check_matrix(valid, "valid")
    if valid.shape != net.shape:
        raise InteractionsError(
            f"valid is {valid.shape[0]} x {valid.shape[1]} but train is {net.shape[0]} x {net.shape[1]}"
        )
    if valid.nnz == 0:
        raise InteractionsError("valid holds no purchase: the validation period is empty")
    if not budget_seconds > 0:
        raise InteractionsError(f"the search budget must be > 0 seconds, got {budget_seconds}")
    bench = Bench(net, days, valid, k, max_users, seed, max_fit_users)
    candidates = default_candidates(seed) if candidates is None else candidates

    notes, baselines, learned = [], [], []
    for name, factory, params in candidates:
        why = skipped_for_size(name, factory, net.shape[1])
        if why:
            notes.append(why)
            continue
        for config in _configs(params):
            if days is None and _has_recency(config):
                continue
            (baselines if name in BASELINES else learned).append((name, factory, config))
    scored: dict[str, _Scored] = {}
    trials: list[dict] = []
    for name, factory, config in baselines:
        t0 = time.perf_counter()
        model = factory(**config).fit(bench.fit_net, bench.fit_days)
        fit_seconds = time.perf_counter() - t0
        _keep_best(scored, trials, bench.k, name, model, *bench.best_policy(model, (False, True)), fit_seconds)
    survivors, rungs = successive_halving(bench, interleaved(learned), budget_seconds, seed=seed,
                                          progress=progress)
    for t in survivors:
        _keep_best(scored, trials, bench.k, t.name, t.model, t.metrics, t.per_user, t.exclude, t.fit_seconds)
    _add_popularity(scored, bench, lambda: Popularity().fit(bench.fit_net, bench.fit_days))
    cost = sum(r.get("cost", 0.0) for r in rungs)
    search = {"budget_seconds": budget_seconds, "unit": BUDGET_UNIT, "cost": round(cost, 4), "configs": len(learned),
              "rungs": rungs, "notes": notes}
    return _decide(bench, scored, trials, item_category=item_category, blend=True, seed=seed, search=search,
                   started=started)


def choose(
    bench: Bench,
    fitted: Iterable[tuple[str, Recommender, float]],
    *,
    item_category=None,
    popularity: Callable[[], Recommender] | None = None,
    blend: bool = True,
    seed: int = 0,
) -> Selection:
    """Steps 2-5 of the module docstring on models fitted elsewhere: `fitted` yields (candidate
    name, fitted model, fit seconds), several configurations per name allowed; `popularity`
    makes the baseline when no candidate is one; `blend=False` skips the blend (when the
    caller cannot refit one, e.g. models trained on Spark)."""
    started = time.perf_counter()
    scored: dict[str, _Scored] = {}
    trials: list[dict] = []
    for name, model, seconds in fitted:
        _keep_best(scored, trials, bench.k, name, model, *bench.best_policy(model, (False, True)), seconds)
    _add_popularity(scored, bench, popularity)
    return _decide(bench, scored, trials, item_category=item_category, blend=blend, seed=seed, search={},
                   started=started)


def _keep_best(scored: dict[str, _Scored], trials: list[dict], k: int, name: str, model: Recommender, metrics: dict,
               per_user: np.ndarray, exclude, fit_seconds: float) -> None:
    """Record one configuration scored on every validation user; keep the best of its family."""
    key = f"ndcg@{k}"
    trials.append({"model": name, "params": model.get_params(), key: metrics[key], "exclude_purchased": bool(exclude),
                   "fit_seconds": round(fit_seconds, 3)})
    best = scored.get(name)
    configs = 1 + (best.configs if best else 0)
    if best is None or metrics[key] > best.metrics[key]:
        best = scored[name] = _Scored(name, model, metrics, per_user, exclude, fit_seconds=fit_seconds)
    best.configs = configs


def _add_popularity(scored: dict[str, _Scored], bench: Bench, popularity: Callable[[], Recommender] | None) -> None:
    if any(name in scored for name in BASELINES):
        return
    if popularity is None:
        raise InteractionsError("no baseline among the candidates and no popularity model to compare with")
    model = popularity()
    m, per, exclude = bench.best_policy(model, (False, True))
    scored["popularity"] = _Scored("popularity", model, m, per, exclude)


def _decide(bench: Bench, scored: dict[str, _Scored], trials: list[dict], *, item_category, blend: bool, seed: int,
            search: dict, started: float) -> Selection:
    """The blend, `model_choice.choose` over the families' best, the per-category exclusion."""
    key = f"ndcg@{bench.k}"
    ranked = sorted(scored.values(), key=lambda s: -s.metrics[key])
    if blend and len(ranked) >= 2:
        model, m, per, exclude = bench.best_blend(ranked[0].model, ranked[1].model, BLEND_WEIGHTS, (False, True))
        scored["blend"] = _Scored("blend", model, m, per, exclude, configs=len(BLEND_WEIGHTS))

    idx = model_choice.resamples(int(bench.users.size), N_BOOT, seed)
    choice = model_choice.choose(key, [
        model_choice.score_per_unit(s.name, s.per_user, idx, baseline=s.name in BASELINES,
                                    simplicity=SIMPLICITY.get(s.name, 2))
        for s in scored.values()
    ])
    best = scored[choice.chosen]

    exclude_categories = None
    if item_category is not None and best.name != "buy_again":
        exclude_categories = _per_category_policy(best, bench, np.asarray(item_category), key)

    models = {}
    for s in scored.values():
        models[s.name] = {**s.metrics, "params": s.model.get_params(), "exclude_purchased": bool(s.exclude),
                          "configs": s.configs, "fit_seconds": round(s.fit_seconds, 3)}
    if exclude_categories is not None:
        models[best.name]["exclude_purchased"] = "per_category"
    if search:
        search = {**search, "seconds": round(time.perf_counter() - started, 2)}
    return Selection(
        selected=best.name,
        params=best.model.get_params(),
        exclude_purchased=bool(best.exclude),
        exclude_categories=exclude_categories,
        k=bench.k,
        users=int(bench.users.size),
        fit_users=bench.fit_count,
        models=models,
        trials=trials,
        choice=choice,
        search=search,
    )


def _per_category_policy(best: _Scored, bench: Bench, item_category: np.ndarray, key: str) -> tuple[int, ...] | None:
    """Exclude purchased items only in categories that are rarely re-bought, if that validates better."""
    if item_category.shape != (bench.n_items,):
        raise InteractionsError(
            f"item_category must have one code per item ({bench.n_items}), got {item_category.shape}"
        )
    rel = bench.relevant.tocoo()
    purchased = np.asarray(bench.rows[rel.row, rel.col]).ravel() > 0
    cats = item_category[rel.col]
    codes = np.unique(item_category)
    bought = np.bincount(np.searchsorted(codes, cats), minlength=codes.size)
    rebought = np.bincount(np.searchsorted(codes, cats), weights=purchased, minlength=codes.size)
    share = np.where(bought > 0, rebought / np.maximum(bought, 1), 0.0)
    options = []
    for threshold in REBUY_THRESHOLDS:
        excluded = codes[share < threshold]
        if excluded.size not in (0, codes.size) and not any(np.array_equal(excluded, o) for o in options):
            options.append(excluded)
    if not options:
        return None
    masks = [np.isin(item_category, excluded) for excluded in options]
    m, per, mask = bench.best_policy(best.model, masks)
    if not m[key] > best.metrics[key]:
        return None
    best.metrics, best.per_user = m, per
    return tuple(int(c) for c in options[next(i for i, x in enumerate(masks) if x is mask)])
