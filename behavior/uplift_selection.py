"""Choosing what ranks the users of one promotion arm (a promotion's treatment against its control).

Candidates, from the simplest (`SIMPLICITY`):

1. `random`: no targeting, users in a seeded random order (the floor; serves the arm's overall lift
   for everyone);
2. `cell_mean`: `CellMeanUplift` over the users' coarse cells (segment x affinity band);
3. `response`: `ResponseModel`, P(convert | x, treated), the control ignored;
4. `t_learner`, 5. `class_transformation` (`behavior.uplift`), 6. `dr_learner` (`DRLearner`).

The first three are baselines. Every candidate is fitted on the arm's training rows and scored on
its validation rows by the normalised Qini (area between the Qini curve and the random line,
0 = random, 1 = perfect; ties in a score are broken in one seeded random order shared by all
candidates); `behavior.model_choice` scores them on the same bootstrap resamples of the
validation users and keeps the simplest whose paired interval of the difference to the best
reaches 0. The test rows give each candidate's held-out Qini and uplift@30%, never used to choose.

Split (`split_arm`): by assignment time when the arm's assignments span at least
`MIN_SPAN_DAYS` days (the earliest 60% train, the next 20% validate, the last 20% test), else a
seeded random 60/20/20 split stratified by group and outcome.

What is served (`ArmModel`, the chosen candidate refitted on all the arm's rows): an uplift per
user. `cell_mean` and the learners estimate it directly; `response` ranks but does not estimate
an uplift, so its users get the (shrunk) uplift of their response-score quintile; `random`
serves the overall lift. P(redeem | treated) comes from a classifier of redemption on the treated
rows, or, when the arm recorded no redemption, from the response model (an upper bound).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from behavior.errors import InputError
from behavior.model_choice import Choice, Scored, choose, resamples
from behavior.uplift import (ClassTransformation, TLearner, default_classifier, qini_coefficient, qini_curve,
                             qini_resampled, uplift_at_k, uplift_by_decile)
from behavior.uplift_learners import CellMeanUplift, DRLearner, ResponseModel

SIMPLICITY = ("random", "cell_mean", "response", "t_learner", "class_transformation", "dr_learner")
BASELINES = frozenset({"random", "cell_mean", "response"})
LEARNERS = {"response": ResponseModel, "t_learner": TLearner, "class_transformation": ClassTransformation,
            "dr_learner": DRLearner}
MIN_SPAN_DAYS = 28
N_BOOT = 200
TOP_SHARE = 0.3
RESPONSE_BINS = 5


@dataclass(frozen=True)
class ArmData:
    """One arm's rows: numeric features `X`, coarse `cells`, outcome `y`, treatment `t`, `redeemed`."""

    X: pd.DataFrame
    cells: np.ndarray
    y: np.ndarray
    t: np.ndarray
    redeemed: np.ndarray

    def take(self, mask: np.ndarray) -> "ArmData":
        return ArmData(self.X[mask].reset_index(drop=True), self.cells[mask], self.y[mask], self.t[mask],
                       self.redeemed[mask])


def split_arm(assigned_at, treated, converted, seed: int = 0,
              min_span_days: int = MIN_SPAN_DAYS) -> tuple[np.ndarray, dict]:
    """('train' / 'valid' / 'test' per row, {"kind": "time" | "random", "detail"}): see the module doc."""
    t = np.asarray(treated).astype(int)
    y = np.asarray(converted).astype(int)
    at = pd.to_datetime(pd.Series(assigned_at), utc=True).reset_index(drop=True)
    n = len(t)
    span = (at.max() - at.min()) if n and at.notna().all() else pd.Timedelta(0)
    if span >= pd.Timedelta(days=min_span_days):
        order = np.argsort(at.to_numpy(), kind="stable")
        parts = np.empty(n, dtype=object)
        parts[order] = np.where(np.arange(n) < 0.6 * n, "train", np.where(np.arange(n) < 0.8 * n, "valid", "test"))
        if all(len(np.unique(y[(parts == p) & (t == g)])) == 2 for p in ("train", "valid", "test") for g in (0, 1)):
            return parts, {"kind": "time", "detail": f"by assignment time: the assignments span {span.days} days; "
                                                     "earliest 60% train, next 20% validation, last 20% test"}
    rng = np.random.default_rng(seed)
    parts = np.empty(n, dtype=object)
    for g in (0, 1):
        for o in (0, 1):
            idx = rng.permutation(np.flatnonzero((t == g) & (y == o)))
            k = len(idx)
            parts[idx] = np.where(np.arange(k) < round(0.6 * k), "train",
                                  np.where(np.arange(k) < round(0.8 * k), "valid", "test"))
    why = (f"the assignments span {span.days} days (< {min_span_days})" if span < pd.Timedelta(days=min_span_days)
           else "a time split leaves a part without both outcomes in a group")
    return parts, {"kind": "random", "detail": f"seeded random 60/20/20, stratified by group and outcome: {why}"}


def qini_points(y, t, score, points: int = 51) -> dict:
    """The Qini curve at `points` evenly spaced shares of users: {"share": [...], "incremental": [...]}
    (incremental conversions of the top share, as `qini_curve`)."""
    k, q = qini_curve(y, t, score)
    idx = np.unique(np.round(np.linspace(0, len(k) - 1, points)).astype(int))
    return {"share": [round(float(v), 4) for v in k[idx] / max(len(k) - 1, 1)],
            "incremental": [round(float(v), 3) for v in q[idx]]}


def fit_candidate(name: str, data: ArmData, seed: int = 0):
    """The fitted candidate `name` (see SIMPLICITY) on `data`."""
    if name == "random":
        return CellMeanUplift().fit(np.zeros(len(data.y)), data.y, data.t)   # one cell: the overall lift
    if name == "cell_mean":
        return CellMeanUplift().fit(data.cells, data.y, data.t)
    return LEARNERS[name](seed=seed).fit(data.X, data.y, data.t)


def _fit_candidates(candidates: tuple[str, ...], data: ArmData, seed: int) -> dict:
    """{name: fitted candidate} on `data`, as `fit_candidate` fits each."""
    shared = "response" in candidates and "t_learner" in candidates
    fitted = {name: fit_candidate(name, data, seed) for name in candidates if not (shared and name == "response")}
    if shared:   # the response model is the T-learner's treated half: the same classifier on the same rows
        fitted["response"] = ResponseModel.of_treated(fitted["t_learner"].model_t_, seed)
    return fitted


def candidate_score(name: str, model, data: ArmData, seed: int = 0) -> np.ndarray:
    """The ranking score of each row of `data` (higher = target first)."""
    if name == "random":
        return np.random.default_rng(seed).random(len(data.y))
    if name == "cell_mean":
        return model.predict(data.cells)
    return model.predict(data.X)


def _ranks(score: np.ndarray, tiebreak: np.ndarray) -> np.ndarray:
    """Distinct descending ranks (as scores) with ties broken by `tiebreak`."""
    order = np.lexsort((tiebreak, -np.asarray(score, float)))
    out = np.empty(len(order))
    out[order] = -np.arange(len(order), dtype=float)
    return out


def _qini(y: np.ndarray, t: np.ndarray, s: np.ndarray) -> float:
    if t.all() or not t.any():
        return 0.0
    return qini_coefficient(y, t, s)


def _per_key(model: CellMeanUplift, keys) -> np.ndarray:
    """`model.predict(keys)` of a 1-D array of keys, each distinct key predicted once (a key's
    uplift is one look-up; making the text of each of millions of keys is not)."""
    at, distinct = pd.factorize(np.asarray(keys), use_na_sentinel=False)
    return model.predict(np.asarray(distinct))[at]


@dataclass(frozen=True)
class ArmModel:
    """What the bundle serves for one arm (the module doc says how each candidate serves an uplift)."""

    name: str
    model: object
    redeem: object
    bins: CellMeanUplift | None = None
    edges: np.ndarray | None = None

    def uplift(self, X: pd.DataFrame, cells: np.ndarray) -> np.ndarray:
        return self.predict(X, cells)[0]

    def p_redeem(self, X: pd.DataFrame) -> np.ndarray:
        return self.redeem.predict_proba(X)[:, 1] if hasattr(self.redeem, "predict_proba") else self.redeem.predict(X)

    def predict(self, X: pd.DataFrame, cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(uplift, P(redeem)) of each row; a redemption model that is the uplift model's own
        classifier of the treated rows (`serve`) is evaluated once for both."""
        treated = _treated_classifier(self)
        if treated is None or treated is not self.redeem:
            return self._uplift(X, cells), self.p_redeem(X)
        p = treated.predict_proba(X)[:, 1]
        if self.name == "t_learner":
            return p - self.model.predict_control(X), p
        return _per_key(self.bins, np.digitize(p, self.edges)), p

    def _uplift(self, X: pd.DataFrame, cells: np.ndarray) -> np.ndarray:
        if self.name == "random":
            return _per_key(self.model, np.zeros(len(X)))
        if self.name == "cell_mean":
            return _per_key(self.model, cells)
        if self.name == "response":
            return _per_key(self.bins, np.digitize(self.model.predict(X), self.edges))
        return self.model.predict(X)


def _treated_classifier(arm: ArmModel):
    """The classifier of the treated rows' conversions inside the arm's uplift model (the
    T-learner's treated half, the response model's classifier), or None."""
    if arm.name == "t_learner":
        return arm.model.model_t_
    if arm.name == "response":
        return arm.model.model_
    return None


def serve(name: str, data: ArmData, seed: int = 0) -> ArmModel:
    """The chosen candidate refitted on all of `data`, with its P(redeem | treated) model."""
    model = fit_candidate(name, data, seed)
    bins = edges = None
    if name == "response":
        s = model.predict(data.X)
        edges = np.unique(np.quantile(s, np.linspace(0, 1, RESPONSE_BINS + 1)[1:-1]))
        bins = CellMeanUplift().fit(np.digitize(s, edges), data.y, data.t)
    treated = data.t == 1
    r = np.asarray(data.redeemed).astype(int)[treated]
    if r.min() != r.max():
        inner = _treated_classifier(ArmModel(name, model, None))
        # redemptions equal to conversions on the treated rows (each treated conversion carried the
        # promotion): the redemption classifier would be the model's own classifier of those rows,
        # the same booster with the same seed on the same rows and labels
        same = inner is not None and np.array_equal(r, np.asarray(data.y).astype(int)[treated])
        redeem = inner if same else default_classifier(seed).fit(data.X[treated], r)
    else:
        redeem = model if name == "response" else ResponseModel(seed=seed).fit(data.X, data.y, data.t)
    return ArmModel(name, model, redeem, bins, edges)


@dataclass(frozen=True)
class ArmResult:
    choice: Choice
    report: dict          # the arm's entry: rows, split, chosen, test figures, deciles, Qini curves
    served: ArmModel


def select_arm(data: ArmData, parts: np.ndarray, seed: int = 0, n_boot: int = N_BOOT,
               candidates: tuple[str, ...] = SIMPLICITY) -> ArmResult:
    """Fit every candidate on the training rows, choose on the validation rows, report the test
    rows, and refit the chosen one on all rows (see the module doc)."""
    tr, va, te = (data.take(parts == p) for p in ("train", "valid", "test"))
    for name, part in (("validation", va), ("test", te)):
        if part.t.all() or not part.t.any():
            raise InputError(f"the {name} rows of the arm lack a treated or a control user")
    fitted = _fit_candidates(candidates, tr, seed)
    tiebreak_v = np.random.default_rng(seed + 1).random(len(va.y))
    idx = resamples(len(va.y), n_boot, seed)
    ranks = np.array([_ranks(candidate_score(name, fitted[name], va, seed), tiebreak_v) for name in candidates])
    scored = [Scored(name, _qini(va.y, va.t, r), replicates, baseline=name in BASELINES,
                     simplicity=SIMPLICITY.index(name))
              for name, r, replicates in zip(candidates, ranks, qini_resampled(va.y, va.t, ranks, idx))]
    choice = choose("qini", scored)
    tiebreak_t = np.random.default_rng(seed + 2).random(len(te.y))
    test_scores = {name: _ranks(candidate_score(name, fitted[name], te, seed), tiebreak_t) for name in candidates}
    chosen = choice.chosen
    report = {
        "rows": {"train": len(tr.y), "valid": len(va.y), "test": len(te.y)},
        "chosen": chosen,
        "test": {name: {"qini": round(_qini(te.y, te.t, s), 6),
                        "uplift_at_30pct": round(uplift_at_k(te.y, te.t, s, TOP_SHARE), 6)}
                 for name, s in test_scores.items()},
        "overall_lift_test": round(float(te.y[te.t == 1].mean() - te.y[te.t == 0].mean()), 6),
        "by_decile_test": uplift_by_decile(te.y, te.t, test_scores[chosen]),
        "qini_curve_test": {"chosen": qini_points(te.y, te.t, test_scores[chosen]),
                            **({"response": qini_points(te.y, te.t, test_scores["response"])}
                               if "response" in test_scores and chosen != "response" else {})},
    }
    return ArmResult(choice, report, serve(chosen, data, seed))


__all__ = ["ArmData", "ArmModel", "ArmResult", "BASELINES", "LEARNERS", "MIN_SPAN_DAYS", "N_BOOT", "SIMPLICITY",
           "candidate_score", "fit_candidate", "qini_points", "select_arm", "serve", "split_arm"]
