"""The accuracy table of `behavior bench accuracy`: what each model stage of a run report chose,
against which baselines, with intervals.

A row is one candidate of one comparison: `{stage, metric, candidate, baseline, value, low,
high, served, source}` (low/high: a 95% interval, or None when the report gives none), or a
skipped stage: `{stage, skipped}`.

Where a report section holds a `selection` in the shape of `behavior.model_choice.Choice.report()`
(at any depth: `churn.selection`, `merchants.churn.selection`, `promotions.uplift.selection`, ...),
its candidates are the rows (`source` "selection": paired bootstrap intervals on the stage's
validation split). Sections without one are read the way the stages reported before they chose
with `model_choice` (`source` "report"):

- `churn` and `merchants.churn`: ROC-AUC of the model and of each of `baselines` at the test
  cutoff; the interval is Hanley and McNeil's (1982) normal approximation from the test rows and
  churn rate. The churn model is served; merchant churn serves its `selection.chosen`.
- `recommend`: nDCG@k of each searched model on the validation period (`models`), no interval;
  `popularity` and `buy_again` are the baselines; `selected` is served.
- `promotions.uplift`: test Qini of each uplift model and of the `baseline` response models, no
  interval; `selected` is served.
"""

from __future__ import annotations

import math

from scipy.stats import norm

from behavior.model_choice import report_selections

LEVEL = 0.95
RECOMMEND_BASELINES = frozenset({"popularity", "buy_again"})
# model stages whose comparison the table shows (a report section with a `selection` anywhere
# inside is shown whatever its name)
MODEL_SECTIONS = ("churn", "recommend", "promotions.uplift", "merchants.churn")


def hanley_mcneil(auc: float, n_pos: int, n_neg: int, level: float = LEVEL) -> tuple[float, float]:
    """A normal-approximation interval of a ROC-AUC from its class sizes (Hanley and McNeil 1982),
    clipped to [0, 1]."""
    if n_pos <= 0 or n_neg <= 0:
        raise ValueError("an AUC needs examples of both classes")
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc * auc) + (n_neg - 1) * (q2 - auc * auc)) / (n_pos * n_neg)
    half = norm.ppf(0.5 + level / 2) * math.sqrt(max(var, 0.0))
    return max(0.0, auc - half), min(1.0, auc + half)


def _section(report: dict, path: str) -> dict | None:
    node: object = report
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node if isinstance(node, dict) else None


def selection_rows(stage: str, sel: dict) -> list[dict]:
    """The rows of one `selection` section (Choice.report() shape)."""
    return [{"stage": stage, "metric": sel["metric"], "candidate": c["name"], "baseline": bool(c.get("baseline")),
             "value": c["value"], "low": c.get("low"), "high": c.get("high"),
             "served": bool(c.get("chosen")), "source": "selection"} for c in sel["candidates"]]


def _auc_rows(stage: str, section: dict, served: str) -> list[dict]:
    rows = []
    for name, metrics, baseline in [("model", section["test"], False),
                                    *((n, m, True) for n, m in section.get("baselines", {}).items())]:
        auc, n, rate = metrics.get("roc_auc"), metrics.get("n"), metrics.get("churn_rate")
        low = high = None
        if auc is not None and n and rate is not None:
            pos = round(n * rate)
            if 0 < pos < n:
                low, high = hanley_mcneil(auc, pos, n - pos)
        rows.append({"stage": stage, "metric": "roc_auc", "candidate": name, "baseline": baseline,
                     "value": auc, "low": low, "high": high, "served": name == served, "source": "report"})
    return rows


def _legacy_rows(path: str, section: dict) -> list[dict]:
    """Rows of a model section written before its stage chose with `model_choice`."""
    if path == "churn" and "test" in section:
        return _auc_rows(path, section, "model")
    if path == "merchants.churn" and "test" in section:
        return _auc_rows(path, section, section.get("selection", {}).get("chosen", "model"))
    if path == "recommend" and "models" in section:
        k = section.get("k", 10)
        metric = f"ndcg@{k}"
        return [{"stage": path, "metric": metric, "candidate": name, "baseline": name in RECOMMEND_BASELINES,
                 "value": m.get(metric), "low": None, "high": None, "served": name == section.get("selected"),
                 "source": "report"} for name, m in section["models"].items()]
    if path == "promotions.uplift" and "models" in section:
        cands = [(n, m.get("test", {}), False) for n, m in section["models"].items()]
        cands += [(n, m.get("test", {}), True) for n, m in section.get("baseline", {}).items()]
        return [{"stage": path, "metric": "qini (test)", "candidate": n, "baseline": b, "value": t.get("qini"),
                 "low": None, "high": None, "served": n == section.get("selected"), "source": "report"}
                for n, t, b in cands]
    return []


def _skipped(report: dict, path: str, section: dict | None) -> str | None:
    stage = path.split(".")[0]
    why = report.get("stages", {}).get(stage, {}).get("skipped")
    if why is None and section is not None:
        why = section.get("skipped")
    return why


def report_rows(report: dict) -> list[dict]:
    """The accuracy rows of one run report: per model section, its `selection` candidates, or the
    comparison the section holds without one, or why the stage was skipped."""
    rows: list[dict] = []
    seen: set[str] = set()
    for path in MODEL_SECTIONS:
        section = _section(report, path)
        why = _skipped(report, path, section)
        if why is not None:
            rows.append({"stage": path, "skipped": why})
            seen.add(path)
            continue
        if section is None:
            continue
        found = list(report_selections(section, path))
        for where, sel in found:
            rows += selection_rows(where, sel)
            seen.add(where)
        if not found:
            legacy = _legacy_rows(path, section)
            rows += legacy or [{"stage": path, "skipped": "the report holds no comparison for this stage"}]
        seen.add(path)
    for key, value in report.items():   # any other stage that chooses with model_choice
        if isinstance(value, dict) and key not in {p.split(".")[0] for p in seen}:
            for where, sel in report_selections(value, key):
                rows += selection_rows(where, sel)
    return rows
