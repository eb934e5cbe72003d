"""The churn horizon from the data's rhythm: how long a silence must last before it is churn.

A horizon much shorter than the customers' usual gap between purchases labels their ordinary
silence as churn (a donor who gives once a year is "churned" after 90 days most of the year),
and a model fitted on that label learns the rhythm, not who leaves. So, unless the horizon is
configured, it is read from the repeat customers' rhythm before as_of:

- each repeat customer's **usual gap** is their mean gap between consecutive purchase days,
  `recency / frequency` of the BTYD summary (every customer counts once, however often they buy);
- the **rhythm** is the `GAP_QUANTILE` (0.75) quantile of the usual gaps: three in four repeat
  customers buy at least that often;
- the **suggested** horizon is the smallest value of `GRID_DAYS` (30, 60, 90, 120, 180, 270, 365)
  at or above the rhythm (365 when the rhythm is longer);
- it is **bounded by the history**: labels of L days need `min_history_days` + 2 L days between
  the first payment and as_of (a validation window and a training window,
  `behavior.churn.choose_cutoffs`). Above `HORIZON_DAYS` (90) the horizon is the longest grid
  value that fits; at or below it, a short history shortens the label windows instead
  (`choose_cutoffs(..., shorten=True)`), as for a configured horizon.

With fewer than `MIN_REPEAT_CUSTOMERS` repeat customers there is no rhythm to read and the
horizon is `HORIZON_DAYS`. A configured horizon is kept; when it is shorter than the rhythm and
than the horizon the data suggests, `Horizon.warning` says so and what the data suggests.

Inputs are the BTYD summary at as_of (`frequency`, `recency` in days, one row per customer), so
the choice is point in time exactly as that summary is: events at or after as_of do not move it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from behavior.churn import HORIZON_DAYS, MIN_HISTORY_DAYS

GRID_DAYS = (30, 60, 90, 120, 180, 270, 365)
GAP_QUANTILE = 0.75
MIN_REPEAT_CUSTOMERS = 30


@dataclass(frozen=True)
class Horizon:
    """The churn horizon a run uses and why."""

    days: int
    source: str                      # "config" or "data"
    reason: str
    repeat_customers: int
    history_days: int
    rhythm_days: float | None = None     # the GAP_QUANTILE quantile of the usual gaps
    median_gap_days: float | None = None
    suggested_days: int | None = None    # the grid value of the rhythm, before the history bound
    warning: str | None = None

    def report(self) -> dict:
        """The report's `churn.horizon` section."""
        out = {"days": self.days, "source": self.source, "quantile": GAP_QUANTILE, "grid_days": list(GRID_DAYS),
               "repeat_customers": self.repeat_customers, "history_days": self.history_days,
               "rhythm_days": _round(self.rhythm_days), "median_gap_days": _round(self.median_gap_days),
               "suggested_days": self.suggested_days, "reason": self.reason}
        if self.warning:
            out["warning"] = self.warning
        return out


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 1)


def grid_at_or_above(days: float) -> int:
    """The smallest grid value >= `days` (the largest when none is)."""
    return next((g for g in GRID_DAYS if g >= days - 1e-9), GRID_DAYS[-1])


def longest_fitting(history_days: int, min_history_days: int = MIN_HISTORY_DAYS) -> int | None:
    """The longest grid horizon L whose labels fit the history: min_history_days + 2 L <= history_days."""
    fits = [g for g in GRID_DAYS if min_history_days + 2 * g <= history_days]
    return fits[-1] if fits else None


def usual_gaps(frequency: np.ndarray, recency: np.ndarray) -> np.ndarray:
    """Each repeat customer's mean gap in days between consecutive purchase days (recency / frequency)."""
    f = np.asarray(frequency, float)
    r = np.asarray(recency, float)
    repeat = np.isfinite(f) & np.isfinite(r) & (f > 0)
    return r[repeat] / f[repeat]


def choose_horizon(frequency: np.ndarray, recency: np.ndarray, history_days: int, configured: int | None = None,
                   min_history_days: int = MIN_HISTORY_DAYS) -> Horizon:
    """The churn horizon for customers with this BTYD summary at as_of (`frequency`, `recency`
    in days) and `history_days` between the first payment and as_of: `configured` when given
    (with a warning when it is shorter than the rhythm), else the rule of this module."""
    gaps = usual_gaps(frequency, recency)
    n = len(gaps)
    if n < MIN_REPEAT_CUSTOMERS:
        why = (f"only {n} repeat customers before as_of, too few to read a rhythm from "
               f"(at least {MIN_REPEAT_CUSTOMERS})")
        if configured is not None:
            return Horizon(configured, "config", f"[churn] horizon_days = {configured} (configured); {why}", n,
                           history_days)
        return Horizon(HORIZON_DAYS, "data", f"the default {HORIZON_DAYS} days: {why}", n, history_days)
    rhythm = float(np.quantile(gaps, GAP_QUANTILE))
    median = float(np.median(gaps))
    suggested = grid_at_or_above(rhythm)
    fit = longest_fitting(history_days, min_history_days)
    auto = min(suggested, max(HORIZON_DAYS, fit or 0))
    figures = (f"{GAP_QUANTILE:.0%} of the {n:,} repeat customers have a usual gap between purchases of at most "
               f"{rhythm:.0f} days (median {median:.0f} days)")
    grid = (f"the grid value at or above it is {suggested} days" if rhythm <= suggested
            else f"the grid's longest value is {suggested} days")
    bound = ""
    if auto < suggested:
        need = min_history_days + 2 * suggested
        bound = (f"; {suggested}-day labels need {need} days of history ({min_history_days} days and two "
                 f"horizons) and there are {history_days}, so the horizon is {auto} days"
                 + ("" if fit == auto else ", with shorter label windows"))
    common = dict(repeat_customers=n, history_days=history_days, rhythm_days=rhythm, median_gap_days=median,
                  suggested_days=suggested)
    if configured is None:
        reason = f"chosen from the data: {figures}; {grid}{bound}"
        return Horizon(auto, "data", reason, **common)
    warning = None
    if configured < min(rhythm, auto):   # shorter than the usual gap, and the data has a longer one to offer
        warning = (f"[churn] horizon_days = {configured} is shorter than the usual gap between purchases: "
                   f"{figures}, so their ordinary silence is labelled churn; the data suggests {auto} days "
                   f"(leave horizon_days unset to use it){bound}")
    return Horizon(configured, "config", f"[churn] horizon_days = {configured} (configured); {figures}",
                   warning=warning, **common)


__all__ = ["GAP_QUANTILE", "GRID_DAYS", "MIN_REPEAT_CUSTOMERS", "Horizon", "choose_horizon", "grid_at_or_above",
           "longest_fitting", "usual_gaps"]
