"""Two-group comparisons for randomized experiments: a difference of means with a 95% interval.

- `mean_difference`: Welch's t interval for mean(treatment) - mean(control) (unequal
  variances, Welch-Satterthwaite degrees of freedom). For a 0/1 outcome this is the normal
  approximation for a difference of proportions (with the n-1 variance).
- `relative_difference`: mean(treatment) / mean(control) - 1 with a delta-method interval
  (undefined, None, when the control mean is 0).
- `bootstrap_difference`: a percentile bootstrap interval (scipy.stats.bootstrap), used when
  a metric is very skewed (revenue: most users spend nothing, a few spend a lot) and the groups
  are small enough for the skew to move the interval (`revenue_difference`).
- `cuped`: CUPED (Deng et al. 2013): Y' = Y - theta (X - mean X) with theta = cov(Y, X) /
  var(X) over both groups pooled; X is measured before assignment, so the adjustment keeps
  the estimate unbiased and narrows the interval by the share of variance X explains.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

LEVEL = 0.95
SKEWED = 2.0             # |sample skewness| above which a revenue interval may be bootstrapped
BOOTSTRAP_MAX_N = 200_000  # per group; above this the t interval is accurate (CLT) and cheaper
BOOTSTRAP_RESAMPLES = 2000


def _r(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), 6)


def mean_difference(treatment: np.ndarray, control: np.ndarray, level: float = LEVEL) -> dict:
    """Welch interval of mean(treatment) - mean(control): {treatment, control, diff, ci, se, p_value}."""
    t, c = np.asarray(treatment, float), np.asarray(control, float)
    n1, n0 = len(t), len(c)
    m1, m0 = t.mean(), c.mean()
    v1 = t.var(ddof=1) if n1 > 1 else 0.0
    v0 = c.var(ddof=1) if n0 > 1 else 0.0
    se = math.sqrt(v1 / n1 + v0 / n0)
    diff = m1 - m0
    if se == 0:
        return {"treatment": _r(m1), "control": _r(m0), "diff": _r(diff), "ci": [_r(diff), _r(diff)],
                "se": 0.0, "p_value": None}
    num = (v1 / n1 + v0 / n0) ** 2
    den = (v1 / n1) ** 2 / max(n1 - 1, 1) + (v0 / n0) ** 2 / max(n0 - 1, 1)
    df = num / den if den > 0 else max(n1 + n0 - 2, 1)
    q = stats.t.ppf(0.5 + level / 2, df)
    p = 2 * stats.t.sf(abs(diff) / se, df)
    return {"treatment": _r(m1), "control": _r(m0), "diff": _r(diff), "ci": [_r(diff - q * se), _r(diff + q * se)],
            "se": _r(se), "p_value": _r(p)}


def relative_difference(treatment: np.ndarray, control: np.ndarray, level: float = LEVEL) -> dict:
    """mean(t)/mean(c) - 1 with a delta-method interval; {"relative": None, ...} when mean(c) = 0."""
    t, c = np.asarray(treatment, float), np.asarray(control, float)
    m1, m0 = t.mean(), c.mean()
    if m0 == 0 or len(t) < 2 or len(c) < 2:
        return {"relative": None, "ci": [None, None]}
    ratio = m1 / m0
    # Var(m1/m0) ~ Var(m1)/m0^2 + m1^2 Var(m0)/m0^4 (independent groups)
    se = math.sqrt(t.var(ddof=1) / len(t) / m0 ** 2 + m1 ** 2 * c.var(ddof=1) / len(c) / m0 ** 4)
    z = stats.norm.ppf(0.5 + level / 2)
    return {"relative": _r(ratio - 1), "ci": [_r(ratio - 1 - z * se), _r(ratio - 1 + z * se)]}


def skewness(x: np.ndarray) -> float:
    x = np.asarray(x, float)
    return float(stats.skew(x)) if len(x) > 2 and x.std() > 0 else 0.0


def bootstrap_difference(treatment: np.ndarray, control: np.ndarray, level: float = LEVEL,
                         resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> list[float | None]:
    """Percentile bootstrap interval of mean(treatment) - mean(control) (groups resampled apart)."""
    def diff(a, b, axis=-1):
        return a.mean(axis=axis) - b.mean(axis=axis)

    res = stats.bootstrap((np.asarray(treatment, float), np.asarray(control, float)), diff, n_resamples=resamples,
                          confidence_level=level, method="percentile", vectorized=True,
                          rng=np.random.default_rng(seed), batch=max(1, 20_000_000 // max(len(treatment) + len(control), 1)))
    return [_r(res.confidence_interval.low), _r(res.confidence_interval.high)]


def difference_shape(treatment: np.ndarray, control: np.ndarray) -> tuple[float, float]:
    """(skewness, excess kurtosis) of the bootstrap distribution of mean(treatment) -
    mean(control), exactly: the mean of n draws from a sample with central moments m2, m3, m4 has
    cumulants m2 / n, m3 / n^2 and (m4 - 3 m2^2) / n^3, and the groups' cumulants add (the third
    with the control's sign flipped). (0, 0) when both groups are constant."""
    var = skew = fourth = 0.0
    for x, sign in ((np.asarray(treatment, float), 1.0), (np.asarray(control, float), -1.0)):
        d = x - x.mean()
        m2, m3, m4 = (float(np.mean(d ** k)) for k in (2, 3, 4))
        n = len(x)
        var += m2 / n
        skew += sign * m3 / n ** 2
        fourth += (m4 - 3 * m2 * m2) / n ** 3
    return (skew / var ** 1.5, fourth / var ** 2) if var > 0 else (0.0, 0.0)


def bootstrap_moves_interval(skew: float, kurtosis: float, level: float = LEVEL,
                             resamples: int = BOOTSTRAP_RESAMPLES) -> bool:
    """Whether a percentile bootstrap of `resamples` resamples is worth its cost over Welch's
    interval, given the shape of the difference's bootstrap distribution (`difference_shape`).

    By the Cornish-Fisher expansion (second order) the ideal percentile interval's ends lie at
    diff + se w(z) for z = -z_q and z_q (q = (1 - level) / 2), with w(z) = z + g (z^2 - 1) / 6 +
    k (z^3 - 3 z) / 24 - g^2 (2 z^3 - 5 z) / 36 (g the skewness, k the excess kurtosis): each
    end |w(z) - z| standard errors from Welch's. The ends of `resamples` resamples scatter around
    the ideal ones with a standard deviation of sqrt(q (1 - q) / resamples) / phi(z_q) standard
    errors (0.060 at 95% and 2,000 resamples). True when an end's shift exceeds that scatter;
    otherwise Welch's interval is nearer the ideal percentile interval than a bootstrap of that
    many resamples typically is."""
    q = (1 - level) / 2
    zq = stats.norm.ppf(1 - q)
    scatter = math.sqrt(q * (1 - q) / resamples) / stats.norm.pdf(zq)
    shifts = [skew * (z * z - 1) / 6 + kurtosis * (z ** 3 - 3 * z) / 24 - skew * skew * (2 * z ** 3 - 5 * z) / 36
              for z in (-zq, zq)]
    return max(abs(s) for s in shifts) > scatter


def revenue_difference(treatment: np.ndarray, control: np.ndarray, level: float = LEVEL, seed: int = 0) -> dict:
    """Welch interval, replaced by a bootstrap one when either group is very skewed, small enough
    for the skew to move the interval (`bootstrap_moves_interval`) and at most BOOTSTRAP_MAX_N."""
    out = mean_difference(treatment, control, level)
    skew = max(abs(skewness(treatment)), abs(skewness(control)))
    out["skewness"] = _r(skew)
    out["method"] = "welch"
    if (skew > SKEWED and max(len(treatment), len(control)) <= BOOTSTRAP_MAX_N and len(treatment) > 1
            and len(control) > 1 and bootstrap_moves_interval(*difference_shape(treatment, control), level)):
        out["ci"] = bootstrap_difference(treatment, control, level, seed=seed)
        out["method"] = "bootstrap"
    return out


def cuped(y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, float, float]:
    """(adjusted y, theta, variance reduction) with a pre-period covariate x (pooled over groups)."""
    y, x = np.asarray(y, float), np.asarray(x, float)
    vx = x.var()
    if len(y) < 3 or vx == 0:
        return y, 0.0, 0.0
    theta = float(np.cov(y, x, ddof=0)[0, 1] / vx)
    adj = y - theta * (x - x.mean())
    vy = y.var()
    return adj, theta, (1.0 - adj.var() / vy) if vy > 0 else 0.0


def _cs_factor(n: int, alpha: float, n_star: int) -> float:
    """sqrt(n) x the boundary of the asymptotic confidence sequence (see `confidence_sequence`)."""
    rho2 = (-2 * math.log(alpha) + math.log(-2 * math.log(alpha) + 1)) / n_star
    return math.sqrt(2 * (n * rho2 + 1) / (n * rho2) * math.log(math.sqrt(n * rho2 + 1) / alpha))


def confidence_sequence(treatment: np.ndarray, control: np.ndarray, alpha: float = 1 - LEVEL,
                        n_star: int = 1000) -> dict:
    """An anytime-valid interval for mean(treatment) - mean(control): the asymptotic
    confidence sequence of Waudby-Smith et al. (2023, "Time-uniform central limit theory and
    asymptotic confidence sequences", Theorem 2.2) with the Welch standard error:

        diff +- se * sqrt(2 (n rho^2 + 1) / (n rho^2) * log(sqrt(n rho^2 + 1) / alpha)),
        rho^2 = (-2 log alpha + log(-2 log alpha + 1)) / n_star,   n = both arms' size

    It covers the true difference at every n at once with probability >= 1 - alpha (as n
    grows), so the interval may be looked at after every new payment and a stop decided on
    it without inflating false positives; `n_star` is the size where it is tightest.
    Returns {treatment, control, diff, ci, se, n, level, anytime_valid: True}."""
    t, c = np.asarray(treatment, float), np.asarray(control, float)
    n1, n0 = len(t), len(c)
    out = {"treatment": _r(t.mean()) if n1 else None, "control": _r(c.mean()) if n0 else None,
           "diff": None, "ci": None, "se": None, "n": n1 + n0, "level": 1 - alpha, "anytime_valid": True}
    if n1 < 2 or n0 < 2:
        return out
    se = math.sqrt(t.var(ddof=1) / n1 + c.var(ddof=1) / n0)
    diff = t.mean() - c.mean()
    half = se * _cs_factor(n1 + n0, alpha, max(int(n_star), 1))
    out.update(diff=_r(diff), se=_r(se), ci=[_r(diff - half), _r(diff + half)])
    return out
