"""Log-likelihoods, analytic gradients and closed-form predictions of the BTYD models.

Pure array math behind `behavior.btyd`: no validation, no fitting. Time is in whatever
unit the inputs use (days in this project); `alpha` and every `t` share that unit.

BG/NBD (Fader, Hardie and Lee 2005) and MBG/NBD (Batislam, Denizel and Filiztekin 2007)
differ only in whether a customer may drop out right after the first purchase; both are
written here with `k` = 0 (BG/NBD) or 1 (MBG/NBD). For a customer with x repeat purchases,
the last at t_x, observed for T:

    L = B(a, b+x+k)/B(a, b) * G(r+x)/G(r) * alpha^r / (alpha+T)^(r+x)
      + [x > 0 or k = 1] * B(a+1, b+x+k-1)/B(a, b) * G(r+x)/G(r) * alpha^r / (alpha+t_x)^(r+x)

computed as gammaln(r+x) - gammaln(r) + betaln(a, b+x+k) - betaln(a, b) + logaddexp(l3, l4)
with l3 = -r log1p(T/alpha) - x log(alpha+T) and
l4 = log a - log(b+x+k-1) - r log1p(t_x/alpha) - x log(alpha+t_x), which stays finite for
large T, x and alpha. Gamma-Gamma (Fader, Hardie and Lee 2005, "RFM and CLV") is the density
of the mean m of x transaction values z ~ Gamma(p, nu), nu ~ Gamma(q, rate v):

    log f(m | x) = gammaln(px+q) - gammaln(px) - gammaln(q) - log m
                   - px log1p(v/(xm)) - q log1p(xm/v).

Data arrive "grouped": each distinct value of x, T and t_x is transformed once per
evaluation and gathered back with integer codes, so one evaluation on 10^6 customers costs
a few vector operations on the distinct rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import betaln, digamma, expit, gammaln, hyp2f1


def group_rows(*columns: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Distinct rows of the given equal-length float columns.

    Returns (inverse, counts, uniques): `uniques[j][inverse]` reproduces column j. Integer-
    valued columns of moderate range (days, counts) are packed into one int64 key; anything
    else goes through a lexicographic sort.
    """
    n = len(columns[0])
    if n == 0:
        return np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.int64), [c[:0] for c in columns]
    packed = _int_key(columns)
    if packed is not None:
        # a hash of the keys, then a sort of the distinct ones: np.unique's sort of every key
        # gives the same codes and is 3 to 15 times slower on millions of customers
        key, lows, spans = packed
        inverse, uniques = pd.factorize(key, sort=True)
        counts = np.bincount(inverse, minlength=len(uniques))
        values = []
        for lo, span in zip(lows[::-1], spans[::-1]):   # the key's digits, last column first
            values.append(lo + (uniques % span).astype(np.float64))
            uniques = uniques // span
        return inverse.astype(np.intp, copy=False), counts, values[::-1]
    order = np.lexsort(columns[::-1])
    sorted_cols = [c[order] for c in columns]
    new = np.ones(n, dtype=bool)
    same = np.ones(n - 1, dtype=bool)
    for c in sorted_cols:
        same &= c[1:] == c[:-1]
    new[1:] = ~same
    group = np.cumsum(new) - 1
    inverse = np.empty(n, dtype=np.intp)
    inverse[order] = group
    counts = np.bincount(group)
    return inverse, counts, [c[new] for c in sorted_cols]


def _int_key(columns) -> tuple[np.ndarray, list[float], list[int]] | None:
    """(one int64 key per row, each column's lowest value, each column's span) when every
    column is integer-valued with a moderate range, else None. The key is the row's digits
    `value - lowest` in the mixed radix of the spans, so a key gives its row back."""
    spans, lows = [], []
    for c in columns:
        lo, hi = float(c.min()), float(c.max())
        if not (np.all(c == np.floor(c)) and hi - lo < 2**40):
            return None
        spans.append(int(hi - lo) + 1)
        lows.append(lo)
    if np.prod([float(s) for s in spans]) >= 2**62:
        return None
    key = np.zeros(len(columns[0]), dtype=np.int64)
    for c, lo, span in zip(columns, lows, spans):
        key = key * span + (c - lo).astype(np.int64)
    return key, lows, spans


def _codes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the sorted distinct values, each value's position among them) of finite values: what
    np.unique returns, from a hash instead of a sort of every value."""
    inverse, uniq = pd.factorize(values, sort=True)
    return uniq, inverse.astype(np.intp, copy=False)


# ----------------------------------------------------------------------------- BG / MBG


@dataclass(frozen=True)
class BGData:
    """Grouped (x, t_x, T) rows with weights, plus codes of their distinct x, t_x and T, and of
    their distinct (x, T) and (x, t_x) pairs (each pair's x and the code of its T or t_x)."""

    x: np.ndarray
    weight: np.ndarray
    ux: np.ndarray
    xi: np.ndarray
    ut: np.ndarray
    ti: np.ndarray
    uT: np.ndarray
    Ti: np.ndarray
    weight_x: np.ndarray  # total weight per distinct x
    xT: tuple[np.ndarray, np.ndarray, np.ndarray]   # (row -> pair, pair's x, pair's T code)
    xt: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]   # (row -> pair, pair's x, its t_x code, its x code)

    @classmethod
    def build(cls, x, tx, T, weight) -> BGData:
        ux, xi = _codes(x)
        ut, ti = _codes(tx)
        uT, Ti = _codes(T)
        pair_T, _, (xT_x, xT_T) = group_rows(x, T)
        pair_t, _, (xt_x, xt_t) = group_rows(x, tx)
        return cls(x, weight, ux, xi, ut, ti, uT, Ti, np.bincount(xi, weights=weight, minlength=len(ux)),
                   (pair_T, xT_x, np.searchsorted(uT, xT_T)),
                   (pair_t, xt_x, np.searchsorted(ut, xt_t), np.searchsorted(ux, xt_x)))


def bg_loglik(params, data: BGData, k: int, gradient: bool = False):
    """Per-row log-likelihood of grouped data (and, with `gradient`, the weighted sum of the
    per-row gradients w.r.t. (r, alpha, a, b), shape (4,)).

    The terms that depend on (x, T) or on (x, t_x) alone are computed once per distinct pair
    (customers share far fewer pairs than rows) with the same operations as per row, then
    gathered: the values are those of a row-by-row evaluation, bit for bit."""
    r, alpha, a, b = (float(v) for v in params)
    d = data
    ux = d.ux
    has4_x = (ux > 0) if k == 0 else np.ones(len(ux), dtype=bool)
    bx = np.where(has4_x, b + ux + k - 1.0, 1.0)  # b + x + k - 1 > 0 wherever the term exists
    gx = gammaln(r + ux) - gammaln(r) + betaln(a, b + ux + k) - betaln(a, b)
    A_T, B_T = np.log1p(d.uT / alpha), np.log(alpha + d.uT)
    A_t, B_t = np.log1p(d.ut / alpha), np.log(alpha + d.ut)
    pair_T, xT_x, xT_T = d.xT
    pair_t, xt_x, xt_t, xt_xi = d.xt
    l3 = (-r * A_T[xT_T] - xT_x * B_T[xT_T])[pair_T]
    l4_pair = -r * A_t[xt_t] - xt_x * B_t[xt_t] + (np.log(a) - np.log(bx))[xt_xi]
    l4 = np.where(has4_x[xt_xi], l4_pair, -np.inf)[pair_t]
    lse = np.logaddexp(l3, l4)
    ll = gx[d.xi] + lse
    if not gradient:
        return ll
    w = d.weight
    w4 = expit(l4 - l3)   # 0 where the second term does not exist (l4 = -inf)
    w3 = 1.0 - w4
    ww3, ww4 = w * w3, w * w4
    dT1, dT2 = d.uT / (alpha * (alpha + d.uT)), 1.0 / (alpha + d.uT)
    dt1, dt2 = d.ut / (alpha * (alpha + d.ut)), 1.0 / (alpha + d.ut)
    wx = d.weight_x
    psi_ab = digamma(a + b)
    psi_abx = digamma(a + b + ux + k)
    w4_x = np.bincount(d.xi, weights=ww4, minlength=len(ux))
    g_r = wx @ (digamma(r + ux) - digamma(r)) - ww3 @ A_T[d.Ti] - ww4 @ A_t[d.ti]
    g_alpha = (ww3 @ (r * dT1[xT_T] - xT_x * dT2[xT_T])[pair_T]
               + ww4 @ (r * dt1[xt_t] - xt_x * dt2[xt_t])[pair_t])
    g_a = wx @ (psi_ab - psi_abx) + w4_x.sum() / a
    g_b = wx @ (digamma(b + ux + k) - psi_abx - digamma(b) + psi_ab) - w4_x @ (1.0 / bx)
    return ll, np.array([g_r, g_alpha, g_a, g_b])


def bg_log_alive_odds(params, x, tx, T, k: int) -> np.ndarray:
    """log(P(dead) / P(alive)) given (x, t_x, T); -inf where death is impossible (BG/NBD, x = 0)."""
    r, alpha, a, b = params
    has4 = (x > 0) if k == 0 else np.ones(np.shape(x), dtype=bool)
    bx = np.where(has4, b + x + k - 1.0, 1.0)
    odds = np.log(a) - np.log(bx) + (r + x) * np.log1p((T - tx) / (alpha + tx))
    return np.where(has4, odds, -np.inf)


def bg_prob_alive(params, x, tx, T, k: int) -> np.ndarray:
    return expit(-bg_log_alive_odds(params, x, tx, T, k))


def bg_bracket(params, x, T, t, k: int) -> np.ndarray:
    """(a-1)/(a+b+x+k-1) * E[X(t) | x, T, alive at T]: the part of the conditional
    expectation that depends on t (Euler-transformed hypergeometric form)."""
    r, alpha, a, b = params
    a = _away_from_one(a)
    c = a + b + x + k - 1.0
    z = t / (alpha + T + t)
    log_keep = -np.log1p(t / (alpha + T))                         # log(1 - z)
    with np.errstate(over="ignore", invalid="ignore"):   # replaced below where it fails
        power_m1 = np.expm1((a - 1.0) * log_keep)  # (1 - z)^(a - 1) - 1
        f = hyp2f1(a + b + k - 1.0 - r, a - 1.0, c, z)
        out = -power_m1 - (1.0 + power_m1) * (f - 1.0)
    # Where (1 - z)^(a - 1) is small (a large: no dropout seen yet), 1 + power_m1 has lost its
    # digits and f is huge or infinite: the product is garbage. There, Euler's transformation
    # (1 - z)^(a - 1) f = (1 - z)^(r + x) 2F1(r + x, b + x + k; c; z) has small terms and no
    # cancellation.
    far = ((a - 1.0) * log_keep < -1.0) | ~np.isfinite(out)
    if np.any(far):
        euler = 1.0 - np.exp((r + x) * log_keep) * hyp2f1(r + x, b + x + k, c, z)
        out = np.where(far, euler, out)
    return out


def bg_bracket_scale(params, x, k: int) -> np.ndarray:
    r, alpha, a, b = params
    a = _away_from_one(a)
    return (a + b + x + k - 1.0) / (a - 1.0)


def _away_from_one(a: float) -> float:
    # the closed form has a removable singularity at a = 1
    return a if abs(a - 1.0) > 1e-7 else 1.0 + 1e-7


# ----------------------------------------------------------------------------- Gamma-Gamma


@dataclass(frozen=True)
class GGData:
    """Repeat customers: x > 0, mean value m > 0, weights; codes of distinct x."""

    x: np.ndarray
    log_m: np.ndarray
    s: np.ndarray  # x * m
    log_s: np.ndarray
    weight: np.ndarray
    ux: np.ndarray
    xi: np.ndarray
    weight_x: np.ndarray

    @classmethod
    def build(cls, x, m, weight) -> GGData:
        ux, xi = _codes(x)
        s = x * m
        return cls(x, np.log(m), s, np.log(s), weight, ux, xi, np.bincount(xi, weights=weight, minlength=len(ux)))


def gg_loglik(params, data: GGData, gradient: bool = False):
    """Per-row log density of the mean value (and the weighted gradient w.r.t. (p, q, v))."""
    p, q, v = (float(u) for u in params)
    d = data
    px = p * d.ux
    g = gammaln(px + q) - gammaln(px) - gammaln(q)
    l1 = np.log1p(v / d.s)  # log((s + v) / s)
    l2 = l1 + d.log_s - np.log(v)  # log1p(s / v)
    x = d.x
    ll = g[d.xi] - d.log_m - p * x * l1 - q * l2
    if not gradient:
        return ll
    w, wx = d.weight, d.weight_x
    psi = digamma(px + q)
    g_p = wx @ (d.ux * (psi - digamma(px))) - (w * x) @ l1
    g_q = wx @ (psi - digamma(q)) - w @ l2
    g_v = w @ ((q * d.s / v - p * x) / (d.s + v))
    return ll, np.array([g_p, g_q, g_v])


# ----------------------------------------------------------------------------- starting values


def bg_start(x: np.ndarray, T: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Moment-based start: (r, alpha) from the repeat rates x/T as if nobody dropped out
    (Gamma-Poisson, Poisson noise removed), a = 1, b = 1."""
    pos = T > 0
    if not pos.any() or w[pos].sum() <= 0:
        return np.array([1.0, 1.0, 1.0, 1.0])
    ww = w[pos] / w[pos].sum()
    rate = x[pos] / T[pos]
    mean = float(ww @ rate)
    if mean <= 0:
        return np.array([1.0, float(ww @ T[pos]) + 1.0, 1.0, 1.0])
    var_lambda = float(ww @ (rate - mean) ** 2) - mean * float(ww @ (1.0 / T[pos]))
    r = mean**2 / var_lambda if var_lambda > 0 else 1.0
    r = float(np.clip(r, 0.1, 10.0))
    return np.array([r, r / mean, 1.0, 1.0])


def gg_start(x: np.ndarray, m: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Moment-based start. With mu = E[m] = p v / (q - 1), Var(m | x) = I + S / x where
    I = mu^2 / (q - 2) and S = mu^2 (q - 1) / (p (q - 2)); I and S come from a weighted
    regression of (m - mu)^2 on 1/x. Falls back to p = 1, q = 3 when that fails."""
    ww = w / w.sum()
    mu = float(ww @ m)
    p, q = 1.0, 3.0
    if len(np.unique(x)) > 1:
        design = np.column_stack([np.ones_like(x), 1.0 / x]) * np.sqrt(ww)[:, None]
        target = (m - mu) ** 2 * np.sqrt(ww)
        (intercept, slope), *_ = np.linalg.lstsq(design, target, rcond=None)
        if intercept > 0 and slope > 0:
            q = float(np.clip(2.0 + mu**2 / intercept, 2.05, 100.0))
            p = float(np.clip(mu**2 * (q - 1.0) / (slope * (q - 2.0)), 0.1, 100.0))
    return np.array([p, q, mu * (q - 1.0) / p])


__all__ = [
    "BGData",
    "GGData",
    "bg_bracket",
    "bg_bracket_scale",
    "bg_log_alive_odds",
    "bg_loglik",
    "bg_prob_alive",
    "bg_start",
    "gg_loglik",
    "gg_start",
    "group_rows",
]
