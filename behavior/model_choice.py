"""Choosing what a bundle serves: a model only when it beats the simple baselines by more than
its uncertainty.

Every model stage (churn, uplift, the recommender, merchant churn) scores its candidates on a
validation split (by time wherever there is time) and calls `choose`. The rule generalises the
recommender's two-standard-error rule:

- each candidate's metric is measured on the same `n_boot` bootstrap resamples of the
  validation units (users, customers), so differences between candidates are paired;
- the best candidate is the one with the highest metric on the full validation set;
- candidates are tried from the simplest (baselines first, then by `simplicity`) and the first
  one whose paired difference to the best has a (1 - `level`) interval that reaches 0 is
  chosen: a more complex model replaces a simpler one only when it is better by more than the
  noise of the validation set. With nothing to learn, noise alone never selects a model.

`Choice.report()` is the report's `selection` section, the same shape for every stage:
`{metric, rule, chosen, n, n_boot, candidates: [{name, value, low, high, baseline, chosen,
gain_vs_chosen: [low, high]}]}` (intervals are percentile bootstrap intervals).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

RULE = ("the simplest candidate (baselines first) whose paired bootstrap interval of the "
        "difference to the best candidate reaches 0")


@dataclass(frozen=True)
class Scored:
    """One candidate's metric on the full validation set and on each bootstrap resample."""

    name: str
    value: float
    replicates: np.ndarray            # shape (n_boot,), the same resamples for every candidate
    baseline: bool = False
    simplicity: int = 0               # lower is simpler; ties keep the order given

    def interval(self, level: float) -> tuple[float, float]:
        a = (1.0 - level) / 2
        return float(np.quantile(self.replicates, a)), float(np.quantile(self.replicates, 1 - a))


def resamples(n: int, n_boot: int = 200, seed: int = 0) -> np.ndarray:
    """`n_boot` bootstrap resamples of `n` units as an (n_boot, n) index array (fixed seed)."""
    if n <= 0:
        raise ValueError("no validation units to resample")
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def score_per_unit(name: str, per_unit: np.ndarray, idx: np.ndarray, **kw) -> Scored:
    """A candidate whose metric is the mean of a per-unit value (nDCG@k per user, a loss)."""
    v = np.asarray(per_unit, dtype=float)
    return Scored(name, float(v.mean()), v[idx].mean(axis=1), **kw)


def score_metric(name: str, metric: Callable[[np.ndarray], float], idx: np.ndarray, **kw) -> Scored:
    """A candidate whose metric is not a mean (ROC-AUC, Qini): `metric(rows)` is evaluated on
    all rows (rows=None) and on each resample's rows."""
    return Scored(name, float(metric(None)), np.array([metric(r) for r in idx]), **kw)


@dataclass(frozen=True)
class Choice:
    metric: str
    chosen: str
    candidates: tuple[Scored, ...]
    level: float = 0.95
    notes: tuple[str, ...] = field(default=())

    def get(self, name: str) -> Scored:
        return next(c for c in self.candidates if c.name == name)

    @property
    def model_chosen(self) -> bool:
        """Whether the chosen candidate is a model rather than a baseline."""
        return not self.get(self.chosen).baseline

    def report(self) -> dict:
        chosen = self.get(self.chosen)
        a = (1.0 - self.level) / 2
        rows = []
        for c in self.candidates:
            lo, hi = c.interval(self.level)
            diff = c.replicates - chosen.replicates
            rows.append({"name": c.name, "value": round(c.value, 4), "low": round(lo, 4), "high": round(hi, 4),
                         "baseline": c.baseline, "chosen": c.name == self.chosen,
                         "gain_vs_chosen": [round(float(np.quantile(diff, a)), 4),
                                            round(float(np.quantile(diff, 1 - a)), 4)]})
        out = {"metric": self.metric, "rule": RULE, "level": self.level, "chosen": self.chosen,
               "n_boot": int(len(chosen.replicates)), "candidates": rows}
        if self.notes:
            out["notes"] = list(self.notes)
        return out


def choose(metric: str, candidates: Sequence[Scored], level: float = 0.95,
           notes: Sequence[str] = ()) -> Choice:
    """The simplest candidate not worse than the best by more than the validation noise."""
    if not candidates:
        raise ValueError("no candidates to choose from")
    n_boot = {len(c.replicates) for c in candidates}
    if len(n_boot) != 1:
        raise ValueError("every candidate must be scored on the same bootstrap resamples")
    best = max(candidates, key=lambda c: c.value)
    a = (1.0 - level) / 2
    order = sorted(range(len(candidates)),
                   key=lambda i: (not candidates[i].baseline, candidates[i].simplicity, i))
    for i in order:
        c = candidates[i]
        if c is best or np.quantile(best.replicates - c.replicates, a) <= 0.0:
            return Choice(metric, c.name, tuple(candidates), level, tuple(notes))
    raise AssertionError("unreachable: the best candidate is always eligible")
