"""Forward checks on real data, independent of the run report: the future after as_of is held
out of the run, then the served scores and the BG/NBD baselines are judged on it.

- **Churn**: the customers at as_of (a successful payment before it) are labelled churned when
  they make no purchase in [as_of, as_of + horizon). The bundle's `churn_probability` is
  compared by ROC-AUC with the one-number baselines: BG/NBD expected purchases over the horizon
  and P(alive) (a BG/NBD fitted here on the summary at as_of), days since the last purchase and
  the number of repeat purchases. Intervals: percentile bootstrap over customers, the same
  resamples for every candidate (`behavior.model_choice`).
- **BG/NBD holdout fit**: expected repeat purchases (days with a purchase) in the horizon,
  summed over the customers, against the actual ones: the ratio expected / actual with its
  bootstrap interval.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from behavior.btyd import BetaGeoFitter, ConvergenceError
from behavior.model_choice import resamples, score_metric
from behavior.ranking import roc_auc

N_BOOT = 200


def _auc(y: np.ndarray, score: np.ndarray, rows: np.ndarray | None) -> float:
    if rows is not None:
        y, score = y[rows], score[rows]
    return roc_auc(y, score)


def forward_rows(summary: pd.DataFrame, served: pd.Series | None, horizon_days: int,
                 n_boot: int = N_BOOT, seed: int = 0) -> tuple[list[dict], dict]:
    """Accuracy rows (the shape of `behavior.accuracy`) of the forward checks, and the BG/NBD
    holdout totals `{expected, actual, customers, churned, horizon_days}` (expected None, and the
    BG/NBD rows skipped with the reason, when BG/NBD cannot be fitted on the summary).

    `summary`: one row per customer at as_of with `frequency`, `recency`, `T` (days, as
    `behavior.features.btyd_summary`) and `holdout` (days with a successful purchase in the
    horizon). `served`: the bundle's churn_probability on the same index (None or all null
    when the churn stage published none)."""
    f, r, t = (summary[c].to_numpy(float) for c in ("frequency", "recency", "T"))
    holdout = summary["holdout"].to_numpy(float)
    y = (holdout == 0).astype(int)
    idx = resamples(len(y), n_boot, seed)
    churn_stage, loyalty_stage = f"churn (forward {horizon_days} d)", f"loyalty (forward {horizon_days} d)"
    totals = {"expected": None, "actual": int(holdout.sum()), "customers": int(len(y)), "churned": int(y.sum()),
              "horizon_days": horizon_days}
    cands: list[tuple[str, np.ndarray, bool]] = []
    if served is not None and served.notna().any():
        cands.append(("churn_probability", served.fillna(served.mean()).to_numpy(float), False))
    rows: list[dict] = []
    try:
        bg = BetaGeoFitter().fit(f, r, t)
    except ConvergenceError as exc:
        rows += [{"stage": churn_stage, "skipped": f"BG/NBD baselines: {exc}"},
                 {"stage": loyalty_stage, "skipped": f"BG/NBD: {exc}"}]
    else:
        expected = bg.conditional_expected_number_of_purchases_up_to_time(horizon_days, f, r, t)
        cands += [("bgnbd_expected_purchases", -expected, True),
                  ("bgnbd_p_alive", -bg.conditional_probability_alive(f, r, t), True)]
        ratio = np.array([expected[i].sum() / max(holdout[i].sum(), 1.0) for i in idx])
        totals["expected"] = round(float(expected.sum()), 1)
        rows.append({"stage": loyalty_stage, "metric": "expected / actual purchases", "candidate": "bgnbd",
                     "baseline": False, "value": round(float(expected.sum() / max(holdout.sum(), 1.0)), 4),
                     "low": round(float(np.quantile(ratio, 0.025)), 4),
                     "high": round(float(np.quantile(ratio, 0.975)), 4), "served": True, "source": "forward"})
    cands += [("recency", t - r, True), ("frequency", -f, True)]
    for name, score, baseline in cands:
        s = score_metric(name, lambda rows, s=score: _auc(y, s, rows), idx, baseline=baseline)
        lo, hi = s.interval(0.95)
        rows.append({"stage": churn_stage, "metric": "roc_auc", "candidate": name, "baseline": baseline,
                     "value": round(s.value, 4), "low": round(lo, 4), "high": round(hi, 4),
                     "served": name == "churn_probability", "source": "forward"})
    return rows, totals
