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
`{metric, rule, level, chosen, n_boot, summary, candidates: [{name, value, low, high, baseline,
chosen, gain_vs_chosen: [low, high], gain_vs_best: [low, high]}]}` (intervals are percentile
bootstrap intervals; a gain is the candidate's metric minus the chosen's or the best's, paired
over the resamples). `summary` is the one sentence saying what is served and what it beat by
how much, or which baseline was kept and why (`Choice.summary`); `report_selections` finds
every such section in a run report.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

RULE = ("the simplest candidate (baselines first) whose paired bootstrap interval of the "
        "difference to the best candidate reaches 0")
# how a metric is named in the summary sentence (the report keeps the metric's key)
METRIC_NAMES = {"roc_auc": "ROC-AUC", "qini": "Qini", "neg_mse_holdout_purchases": "negative MSE of holdout purchases"}


def metric_name(metric: str) -> str:
    """The metric as a reader knows it: `roc_auc` -> ROC-AUC, `ndcg@10` -> nDCG@10."""
    if metric.startswith("ndcg@"):
        return "nDCG@" + metric[5:]
    return METRIC_NAMES.get(metric, metric)


def _decimals(*values: float) -> int:
    """Decimals for a difference and its interval: 3 (0.012, 0.004 to 0.020), fewer for large
    metrics, 4 (the report's rounding) below 0.001."""
    top = max((abs(v) for v in values), default=0.0)
    return 1 if top >= 10 else 2 if top >= 1 else 3 if top >= 0.001 or top == 0 else 4


def _number(v: float, decimals: int) -> str:
    """`v` with a typographic minus and no negative zero (−0.006, 0.000)."""
    text = f"{v:.{decimals}f}"
    return text.lstrip("-") if float(text) == 0 else text.replace("-", "\u2212")


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

    @property
    def best(self) -> Scored:
        """The candidate with the highest metric on the full validation set."""
        return max(self.candidates, key=lambda c: c.value)

    def gain(self, name: str, over: str) -> tuple[float, float, float]:
        """(metric of `name` minus that of `over`, and the paired interval of the difference)."""
        c, o = self.get(name), self.get(over)
        a = (1.0 - self.level) / 2
        diff = c.replicates - o.replicates
        return c.value - o.value, float(np.quantile(diff, a)), float(np.quantile(diff, 1 - a))

    def summary(self) -> str:
        """One sentence for a reader of the report: the served candidate and the baseline it beat,
        by how much and with the interval ("served als: beats popularity by 0.052 nDCG@10 (95%
        interval 0.041 to 0.063)"), or the baseline kept and the best model's gain over it
        ("kept the baseline recency: the best model, boosting, gains 0.003 ROC-AUC (95% interval
        −0.002 to 0.008), within its uncertainty")."""
        chosen = self.get(self.chosen)
        served = "the model" if self.chosen == "model" else self.chosen   # merchant churn's one model
        others = [c for c in self.candidates if c.name != self.chosen]
        if not others:
            return f"served {served}: the only candidate"
        models = [c for c in others if not c.baseline]
        baselines = [c for c in others if c.baseline]
        if chosen.baseline and not models:
            return f"served the baseline {self.chosen}: no model was among the candidates"
        if not chosen.baseline and baselines:
            b = max(baselines, key=lambda c: c.value)
            d, lo, hi = self.gain(self.chosen, b.name)
            if lo > 0:
                return f"served {served}: beats {b.name} by {self._interval(d, lo, hi)}"
            return (f"served {served}: the best baseline, {b.name}, "
                    + self._versus(*self.gain(b.name, self.chosen)))
        pool = models if chosen.baseline else others
        ref = max(pool, key=lambda c: c.value)
        if not chosen.baseline:
            who = f"the next candidate, {ref.name},"
        elif len(models) == 1:
            who = "the model" if ref.name == "model" else f"the model, {ref.name},"
        else:
            who = f"the best model, {ref.name},"
        d, lo, hi = self.gain(ref.name, self.chosen)
        head = f"kept the baseline {self.chosen}" if chosen.baseline else f"served {served}"
        text = f"{head}: {who} {self._versus(d, lo, hi)}"
        if chosen.baseline and lo > 0:
            text += f", yet {self.chosen} is within the uncertainty of the best candidate, {self.best.name}"
        return text

    def _interval(self, d: float, lo: float, hi: float) -> str:
        k = _decimals(d, lo, hi)
        return (f"{_number(d, k)} {metric_name(self.metric)} ({self.level:.0%} interval {_number(lo, k)} to "
                f"{_number(hi, k)})")

    def _versus(self, d: float, lo: float, hi: float) -> str:
        verdict = ", within its uncertainty" if lo <= 0 <= hi else (": it does worse" if hi < 0 else ": it does better")
        return f"gains {self._interval(d, lo, hi)}{verdict}"

    def report(self) -> dict:
        rows = []
        for c in self.candidates:
            lo, hi = c.interval(self.level)
            rows.append({"name": c.name, "value": round(c.value, 4), "low": round(lo, 4), "high": round(hi, 4),
                         "baseline": c.baseline, "chosen": c.name == self.chosen,
                         "gain_vs_chosen": [round(v, 4) for v in self.gain(c.name, self.chosen)[1:]],
                         "gain_vs_best": [round(v, 4) for v in self.gain(c.name, self.best.name)[1:]]})
        out = {"metric": self.metric, "rule": RULE, "level": self.level, "chosen": self.chosen,
               "n_boot": int(len(self.get(self.chosen).replicates)), "summary": self.summary(), "candidates": rows}
        if self.notes:
            out["notes"] = list(self.notes)
        return out


def uncompared(metric: str, chosen: str, why: str) -> dict:
    """The `selection` section of a stage that serves `chosen` without a comparison (why: the
    reason), in the `Choice.report()` shape with no candidates."""
    return {"metric": metric, "chosen": chosen, "candidates": [],
            "summary": f"served {chosen} without a comparison: {why}"}


def report_selections(report: dict, path: str = "") -> Iterator[tuple[str, dict]]:
    """(path, selection) for every section of a run report (or of its section at `path`) in the
    `Choice.report()` shape, in report order: a `selection` (`churn.selection` -> "churn") or a
    `selection` holding one per key (`promotions.uplift.selection.p1` -> "promotions.uplift.p1")."""
    def join(key: str) -> str:
        return f"{path}.{key}" if path else key

    sel = report.get("selection")
    if isinstance(sel, dict) and isinstance(sel.get("candidates"), list):
        yield path, sel
    elif isinstance(sel, dict):
        for key, value in sel.items():
            if isinstance(value, dict) and isinstance(value.get("candidates"), list):
                yield join(key), value
    for key, value in report.items():
        if isinstance(value, dict) and key != "selection":
            yield from report_selections(value, join(key))


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
