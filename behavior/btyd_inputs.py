"""Input checks of the BTYD estimators (`behavior.btyd`), lifetimes' `_check_inputs` style.

Each check converts arrays, lists or pandas Series to one-dimensional float64 arrays and
raises ValueError with a message that names the problem and the number of offending rows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def as_array(name: str, values) -> np.ndarray:
    """A one-dimensional float64 copy of `values` (NaN for missing)."""
    try:
        if isinstance(values, (pd.Series, pd.Index)):
            arr = values.to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            arr = np.array(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric ({exc})") from None
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got an array of shape {arr.shape}")
    return arr


def check_finite(name: str, arr: np.ndarray, where: np.ndarray | None = None, context: str = "") -> None:
    bad = ~np.isfinite(arr) if where is None else ~np.isfinite(arr) & where
    if bad.any():
        raise ValueError(
            f"{name} has {int(bad.sum())} missing or infinite value(s){context}; drop or fill them first"
        )


def check_frequency(frequency) -> np.ndarray:
    x = as_array("frequency", frequency)
    check_finite("frequency", x)
    if (x < 0).any():
        raise ValueError(f"frequency has {int((x < 0).sum())} negative value(s); it must be >= 0")
    if (x != np.floor(x)).any():
        raise ValueError(
            f"frequency must count repeat purchases (whole numbers); {int((x != np.floor(x)).sum())} "
            "value(s) are not integers"
        )
    return x


def check_lengths(names: tuple[str, ...], arrays: tuple[np.ndarray, ...]) -> None:
    lengths = [len(a) for a in arrays]
    if len(set(lengths)) > 1:
        raise ValueError(
            f"{', '.join(names[:-1])} and {names[-1]} must have the same length, got "
            f"{', '.join(map(str, lengths[:-1]))} and {lengths[-1]}"
        )


def check_bg_inputs(frequency, recency, T, *, fitting: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validated (frequency, recency, T); `fitting` also rejects empty input."""
    x, tx, T_ = as_array("frequency", frequency), as_array("recency", recency), as_array("T", T)
    check_lengths(("frequency", "recency", "T"), (x, tx, T_))
    if fitting and len(x) == 0:
        raise ValueError("no customers to fit: frequency, recency and T are empty")
    x = check_frequency(x)
    for name, arr in (("recency", tx), ("T", T_)):
        check_finite(name, arr)
        if (arr < 0).any():
            raise ValueError(f"{name} has {int((arr < 0).sum())} negative value(s); it must be >= 0")
    if (tx > T_).any():
        raise ValueError(
            f"recency is greater than T for {int((tx > T_).sum())} customer(s); recency must lie in [0, T]"
        )
    lone = (x == 0) & (tx > 0)
    if lone.any():
        raise ValueError(
            f"recency must be 0 where frequency is 0; {int(lone.sum())} customer(s) have recency > 0 "
            "without repeat purchases"
        )
    return x, tx, T_


def check_monetary(x: np.ndarray, monetary_value) -> np.ndarray:
    """Validated monetary values; only customers with frequency > 0 need one (others may be NaN)."""
    m = as_array("monetary_value", monetary_value)
    check_lengths(("frequency", "monetary_value"), (x, m))
    repeat = x > 0
    check_finite("monetary_value", m, repeat, " among customers with frequency > 0")
    bad = repeat & (m <= 0)
    if bad.any():
        raise ValueError(
            f"monetary_value must be positive for customers with frequency > 0; {int(bad.sum())} are "
            "zero or negative"
        )
    return m


def check_weights(weights, n: int) -> np.ndarray:
    if weights is None:
        return np.ones(n)
    w = as_array("weights", weights)
    if len(w) != n:
        raise ValueError(f"weights must have one value per customer, got {len(w)} for {n}")
    check_finite("weights", w)
    if (w < 0).any():
        raise ValueError(f"weights has {int((w < 0).sum())} negative value(s); it must be >= 0")
    if w.sum() <= 0:
        raise ValueError("weights sum to 0; at least one customer must have a positive weight")
    return w


def check_times(name: str, t) -> np.ndarray:
    arr = np.asarray(t, dtype=np.float64)
    if not np.all(np.isfinite(arr)) or (arr < 0).any():
        raise ValueError(f"{name} must be finite and >= 0 (days), got {t!r}")
    return arr


__all__ = [
    "as_array",
    "check_bg_inputs",
    "check_finite",
    "check_frequency",
    "check_lengths",
    "check_monetary",
    "check_times",
    "check_weights",
]
