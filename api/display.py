"""Numbers as people read them in the API's JSON: the bundle keeps full precision; answers round
each kind of number once, here.

* money (CLV, spend, profit, cost): 2 decimals
* scores (loyalty score, a target list's score) and days (recency, tenure, gaps): 2 decimals
* probabilities, shares, rates and uplifts, and any other fractional field: 4 decimals
* model metrics (ROC AUC, precision@k, ...): 4 decimals; seconds: 3; model parameters: 4 significant digits
* counts stay integers (never 60000.0)

CSV exports are not rounded: they are data for further work, not for reading.
"""

from __future__ import annotations

import math
from typing import Any

MONEY = 2
SCORE = 2
DAYS = 2
PROBABILITY = 4
METRIC = 4
SECONDS = 3
PARAM_DIGITS = 4

_MONEY_FIELDS = frozenset({
    "clv", "expected_spend", "total_spend", "net_spend", "refund_amount", "avg_payment_value", "monetary_value",
    "spend_30d", "spend_90d", "spend_prev_90d", "expected_profit", "incremental_profit", "cost", "mean_clv"})
_SCORE_FIELDS = frozenset({"loyalty_score", "mean_loyalty_score", "score", "incremental_conversions",
                           "expected_purchases"})
_DAY_FIELDS = frozenset({"recency_days", "tenure_days", "mean_gap_days", "std_gap_days", "max_gap_days",
                         "T"})


def decimals(name: str) -> int:
    """The decimals a float field of this name is shown with (see the module docstring)."""
    if name in _MONEY_FIELDS:
        return MONEY
    if name in _SCORE_FIELDS:
        return SCORE
    if name in _DAY_FIELDS or name.endswith("_days"):
        return DAYS
    if name.endswith("_seconds") or name == "seconds":
        return SECONDS
    return PROBABILITY


def shown(name: str, value: Any) -> Any:
    """`value` of the field `name` as shown: floats rounded by their kind, anything else unchanged."""
    if isinstance(value, float) and math.isfinite(value):
        return round(value, decimals(name))
    return value


def shown_row(row: dict[str, Any]) -> dict[str, Any]:
    """A profile (or query) row with each float rounded by its kind."""
    return {k: shown(k, v) for k, v in row.items()}


def metrics(d: Any) -> dict[str, int | float] | None:
    """The numbers of a report section: counts as integers, seconds to 3 decimals, other floats
    (metrics) to 4; None if there are none."""
    if not isinstance(d, dict):
        return None
    out: dict[str, int | float] = {}
    for k, v in d.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if isinstance(v, float) and not math.isfinite(v):
            continue
        out[k] = v if isinstance(v, int) else round(v, SECONDS if k.endswith("seconds") else METRIC)
    return out or None


def parameters(d: Any) -> dict[str, float] | None:
    """Model parameters to 4 significant digits (BG/NBD's alpha is 41.9, its r may be 0.0001234)."""
    if not isinstance(d, dict):
        return None
    out = {k: float(f"{v:.{PARAM_DIGITS}g}") for k, v in d.items()
           if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
    return out or None
