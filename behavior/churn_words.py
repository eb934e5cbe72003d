"""Churn reasons in words, for millions of customers at once.

`reason_words(feature, cols, horizon_days)` words one reason feature for every row of `cols`
(arrays by column) as an Arrow string array: the templates are joined in Arrow, and each number
is written by `fixed`, which equals Python's `format(value, ".Nf")` value for value but formats
each distinct rounded number once. No Python work is done per customer, except for the rare
values `fixed` cannot round safely (near a half, negative, not finite, huge) and for a feature
without a template.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

# x * 10**decimals is rounded in floating point; below this size its error is under 1e-7, so
# the integer it rounds to is the correctly rounded one unless it lies within _HALF of a half.
_SAFE_BELOW = 1e9
_HALF = 1e-6


def fixed(x: np.ndarray, decimals: int) -> pa.StringArray:
    """`format(v, f".{decimals}f")` for each v of `x`, as an Arrow string array."""
    x = np.asarray(x, float)
    with np.errstate(invalid="ignore", over="ignore"):
        scaled = x * 10.0 ** decimals
        k = np.rint(scaled)
        safe = (np.isfinite(scaled) & ~np.signbit(x) & (scaled < _SAFE_BELOW)
                & (np.abs(np.abs(scaled - k) - 0.5) > _HALF))
    codes, uniques = pd.factorize(k[safe].astype(np.int64), sort=False)
    unit = 10 ** decimals
    words = [str(u) if decimals == 0 else f"{u // unit}.{u % unit:0{decimals}d}" for u in uniques.tolist()]
    rest = np.flatnonzero(~safe)
    words += [format(v, f".{decimals}f") for v in x[rest].tolist()]
    index = np.empty(len(x), np.int64)
    index[safe] = codes
    index[rest] = len(uniques) + np.arange(len(rest))
    return pc.take(pa.array(words, pa.string()), pa.array(index))


def _join(*parts) -> pa.Array:
    return pc.binary_join_element_wise(*parts, "")


def _choose(condition: np.ndarray, yes: pa.Array, no: pa.Array) -> pa.Array:
    return pc.if_else(pa.array(condition, pa.bool_()), yes, no)


def reason_words(feature: str, cols: dict[str, np.ndarray], horizon_days: int) -> pa.StringArray:
    """The reason `feature` in words for each row of `cols` (float arrays by column, the same
    rows; a missing column reads as unknown), as an Arrow string array."""
    v = np.asarray(cols[feature], float)
    n = len(v)

    def col(name: str) -> np.ndarray:
        return np.asarray(cols[name], float) if name in cols else np.full(n, np.nan)

    with np.errstate(invalid="ignore", divide="ignore"):
        if feature == "recency_days":
            gap, freq, days = col("mean_gap_days"), col("frequency"), fixed(v, 0)
            usual = _join("no purchase for ", days, " days, usually buys every ", fixed(gap, 0), " days")
            usual = _choose(np.isfinite(gap) & (gap > 0), usual, _join("no purchase for ", days, " days"))
            return _choose(freq == 0, _join("one-time buyer, not back for ", days, " days"), usual)
        if feature == "spend_trend":
            prev, now = col("spend_prev_90d"), col("spend_90d")
            known = np.isfinite(prev) & (prev > 0) & np.isfinite(now)
            down = _join("payments down ", fixed(100 * (prev - now) / prev, 0), "% vs previous 90 days")
            return _choose(known, down, pa.repeat("spending falling vs previous 90 days", n))
        if feature == "n_payments_90d":
            return _choose(v == 0, pa.repeat("no payment in the last 90 days", n),
                           _join("only ", fixed(v, 0), " payments in the last 90 days"))
        if feature == "p_alive":
            return _join("likely lapsed: P(still active) ", fixed(v, 2))
        if feature == "expected_purchases":
            return _join("only ", fixed(v, 2), f" purchases expected in the next {horizon_days} days")
        if feature == "mean_gap_days":
            return _join("buys only every ", fixed(v, 0), " days on average")
        if feature == "frequency":   # a NaN is true, as in `if x`
            return _choose(v != 0, _join("only ", fixed(v, 0), " repeat purchase days"),
                           pa.repeat("no repeat purchase yet", n))
        if feature == "failure_rate":
            return _join(fixed(100 * v, 0), "% of payments failed")
        if feature == "refund_rate":
            return _join(fixed(100 * v, 0), "% of lines refunded")
    return pa.array([f"{feature} {x:.3g}" for x in v.tolist()], pa.string())


__all__ = ["fixed", "reason_words"]
