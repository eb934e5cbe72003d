"""Customer-base ("buy till you die") models as scikit-learn-style estimators.

- `BetaGeoFitter`: BG/NBD (Fader, Hardie and Lee 2005). While alive a customer buys as a
  Poisson process with rate lambda ~ Gamma(r, rate alpha); after every repeat purchase they
  drop out for good with probability p ~ Beta(a, b). A customer without repeat purchases is
  alive.
- `ModifiedBetaGeoFitter`: MBG/NBD (Batislam et al. 2007): dropout is also possible right
  after the first purchase, so P(alive) < 1 for one-time buyers.
- `GammaGammaFitter`: the spend per transaction (Fader, Hardie and Lee 2005, "RFM and CLV"):
  values z ~ Gamma(p, rate nu), nu ~ Gamma(q, rate v) per customer, independent of the
  purchase process; and the customer lifetime value of a fitted transaction model.

Inputs are the BTYD summary of `behavior.features`: `frequency` (repeat purchase days),
`recency` (first to last purchase day) and `T` (first purchase day to as_of), as arrays,
lists or pandas Series. **Time unit**: a fit is in the unit of its inputs, days in this
project, so `alpha` is in days and every prediction horizon (`t`, `horizon_days`,
`step_days`) is in days.

Fitting is maximum likelihood over the log-parameters with L-BFGS-B and an analytic
gradient, on the compressed likelihood (identical (frequency, recency, T) rows are merged and
their weights summed). `penalizer` adds `penalizer * sum(params ** 2)` (natural parameters)
to the mean negative log-likelihood per customer, as lifetimes does; it shrinks the
parameters towards 0 and helps with small or degenerate data. The penalty depends on the
time unit: alpha is in days here (tens), so even penalizer=1e-4 visibly moves a fit. Data
that do not identify the parameters (a flat likelihood at the optimum, e.g. no dropout seen
yet in a short history) raise ConvergenceError rather than return arbitrary values.

The fitted estimator keeps its parameters, never its training data; `to_dict` / `from_dict`
store it as JSON.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy.optimize import minimize
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits

from behavior.btyd_inputs import (
    as_array,
    check_bg_inputs,
    check_frequency,
    check_lengths,
    check_monetary,
    check_times,
    check_weights,
)
from behavior.btyd_likelihood import (
    BGData,
    GGData,
    bg_bracket,
    bg_bracket_scale,
    bg_loglik,
    bg_prob_alive,
    bg_start,
    gg_loglik,
    gg_start,
    group_rows,
)
from behavior.errors import BehaviorError

_LOG_BOUND = math.log(1e8)  # parameters are searched in [1e-8, 1e8]
_DAYS_PER_YEAR = 365.0
_CURVE_ROWS = 65_536   # customers per chunk of `conditional_expected_purchases_curve`
_PENALIZER_NOTE = "it adds penalizer * sum(params**2), so large parameters (alpha in days, v) shrink hardest"


class ConvergenceError(BehaviorError, RuntimeError):
    """A model fit did not converge, or converged to a degenerate (boundary) solution."""


def _count(total: float) -> int | float:
    return int(round(total)) if abs(total - round(total)) < 1e-9 else float(total)


# ------------------------------------------------------------------------------ fitting


def _minimize(
    model: str,
    names: tuple[str, ...],
    mean_nll: Callable[[np.ndarray], tuple[float, np.ndarray]],
    start: np.ndarray,
    penalizer: float,
    tol: float,
    max_iter: int,
    why: str,
):
    """Minimise mean NLL + penalizer * sum(params**2) over log-parameters; raise ConvergenceError."""

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        params = np.exp(theta)
        with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
            f, g = mean_nll(params)
        f += penalizer * float(params @ params)
        g = g + 2.0 * penalizer * params
        return f, g * params

    theta0 = np.clip(np.log(start), -_LOG_BOUND + 1, _LOG_BOUND - 1)
    res = minimize(
        objective,
        theta0,
        jac=True,
        method="L-BFGS-B",
        bounds=[(-_LOG_BOUND, _LOG_BOUND)] * len(names),
        options={"maxiter": int(max_iter), "ftol": tol, "gtol": tol},
    )
    hint = f"try more data, a larger max_iter or a small penalizer; {_PENALIZER_NOTE}"
    if not (np.all(np.isfinite(res.x)) and np.isfinite(res.fun) and np.all(np.isfinite(res.jac))):
        raise ConvergenceError(
            f"{model} fit failed: the optimiser returned non-finite values ({res.message}); {hint}"
        )
    # line searches can stall exactly at the optimum; accept a vanishing gradient
    if not res.success and not np.max(np.abs(res.jac)) < 1e-6:
        raise ConvergenceError(f"{model} fit did not converge after {res.nit} iterations ({res.message}); {hint}")
    at_bound = [f"{n}={math.exp(v):.3g}" for n, v in zip(names, res.x) if abs(v) >= _LOG_BOUND - 1e-3]
    if at_bound:
        raise ConvergenceError(
            f"{model} fit did not converge: {', '.join(at_bound)} ran to the edge of [1e-08, 1e+08]; the data "
            f"do not identify the model ({why}); {hint}"
        )
    return np.exp(res.x), res


def _hessian(grad_total: Callable[[np.ndarray], np.ndarray], params: np.ndarray) -> np.ndarray:
    """Hessian of the total NLL in the natural parameters: central differences of the
    analytic gradient with relative steps, symmetrised."""
    k = len(params)
    hess = np.empty((k, k))
    with np.errstate(all="ignore"):
        for j in range(k):
            h = 1e-5 * params[j]
            up, down = params.copy(), params.copy()
            up[j] += h
            down[j] -= h
            hess[:, j] = (grad_total(up) - grad_total(down)) / (2.0 * h)
    return (hess + hess.T) / 2.0


def _standard_errors(names, hess: np.ndarray) -> dict:
    """Square roots of the diagonal of the inverse Hessian; NaN if it is not positive definite."""
    try:
        np.linalg.cholesky(hess)
        se = np.sqrt(np.diag(np.linalg.inv(hess)))
    except np.linalg.LinAlgError:
        se = np.full(len(names), np.nan)
    return {n: float(s) for n, s in zip(names, se)}


def _check_identified(model: str, names, hess: np.ndarray, params: np.ndarray, penalty: float, why: str) -> None:
    """Raise ConvergenceError when the (penalised) objective is flat or not a minimum in some
    direction of log-parameter space, e.g. a and b of BG/NBD without any repeat purchase."""
    scaled = (hess + penalty * np.eye(len(params))) * np.outer(params, params)
    if not np.all(np.isfinite(scaled)):
        raise ConvergenceError(f"{model} fit failed: non-finite curvature at the optimum; try a penalizer")
    eig, vec = np.linalg.eigh(scaled)
    small = eig <= 1e-10 * max(eig[-1], 0.0)
    if not small.any():
        return
    share = (vec[:, small] ** 2).sum(axis=1)  # how much of each parameter lies in the flat directions
    flat = [n for n, w in zip(names, share) if w > 0.3] or list(names)
    raise ConvergenceError(
        f"{model} fit did not converge to a proper maximum: the likelihood is flat in "
        f"{', '.join(flat)} (the data do not identify them: {why}); try more data or a small penalizer; "
        f"{_PENALIZER_NOTE}"
    )


class _Fitted(BaseEstimator):
    """Shared fit bookkeeping and the JSON form of a fitted estimator."""

    _param_names: tuple[str, ...] = ()
    _unidentified = ""  # likely reasons when the data do not identify the parameters

    def __init__(self, penalizer: float = 0.0, tol: float = 1e-8, max_iter: int = 500):
        self.penalizer = penalizer
        self.tol = tol
        self.max_iter = max_iter

    def _check_hyperparameters(self) -> None:
        if not (np.isfinite(self.penalizer) and self.penalizer >= 0):
            raise ValueError(f"penalizer must be >= 0, got {self.penalizer!r}")
        if not (np.isfinite(self.tol) and self.tol > 0):
            raise ValueError(f"tol must be > 0, got {self.tol!r}")
        if int(self.max_iter) < 1:
            raise ValueError(f"max_iter must be >= 1, got {self.max_iter!r}")

    def _fit_and_store(self, mean_nll, grad_total, start, total_weight, total_ll) -> None:
        model = type(self).__name__
        # Each likelihood evaluation is a few dot products over the grouped rows; on threads,
        # OpenBLAS spends longer waking and joining them than adding (3.5x the fit's time on
        # two busy cores), and one thread gives the same optimum.
        with threadpool_limits(1, user_api="blas"):
            params, res = _minimize(
                model, self._param_names, mean_nll, start, self.penalizer, self.tol, self.max_iter,
                self._unidentified
            )
            ll = total_ll(params)
            if not np.isfinite(ll):
                raise ConvergenceError(f"{model} fit failed: non-finite log-likelihood at the optimum; try a penalizer")
            hess = _hessian(grad_total, params)
        penalty = 2.0 * self.penalizer * total_weight
        _check_identified(model, self._param_names, hess, params, penalty, self._unidentified)
        self.params_ = {n: float(v) for n, v in zip(self._param_names, params)}
        self.log_likelihood_ = float(ll)
        self.standard_errors_ = _standard_errors(self._param_names, hess)
        self.n_customers_ = _count(total_weight)
        self.converged_ = True
        self.n_iter_ = int(res.nit)

    def _params_array(self, params=None) -> np.ndarray:
        if params is None:
            check_is_fitted(self)
            params = self.params_
        if isinstance(params, dict):
            params = [params[n] for n in self._param_names]
        arr = np.asarray(params, dtype=np.float64)
        if arr.shape != (len(self._param_names),) or not np.all(np.isfinite(arr)) or (arr <= 0).any():
            raise ValueError(f"params must be positive finite values of {', '.join(self._param_names)}")
        return arr

    def to_dict(self) -> dict:
        """The fitted model as a JSON-serialisable dict (undefined standard errors are None)."""
        check_is_fitted(self)
        return {
            "model": type(self).__name__,
            "params": dict(self.params_),
            "log_likelihood": self.log_likelihood_,
            "n_customers": self.n_customers_,
            "standard_errors": {k: (None if math.isnan(v) else v) for k, v in self.standard_errors_.items()},
            "converged": self.converged_,
            "n_iter": self.n_iter_,
            "hyperparameters": self.get_params(),
        }

    @classmethod
    def from_dict(cls, data: dict):
        """A fitted estimator from `to_dict()` output (as read back from JSON)."""
        if data.get("model") != cls.__name__:
            raise ValueError(f"cannot load a {data.get('model')!r} fit into {cls.__name__}")
        missing = [k for k in ("params", "log_likelihood", "n_customers") if k not in data]
        if missing:
            raise ValueError(f"a stored {cls.__name__} fit needs {', '.join(missing)}")
        est = cls(**data.get("hyperparameters", {}))
        params = data.get("params", {})
        if set(params) != set(cls._param_names):
            raise ValueError(f"{cls.__name__} params must be {', '.join(cls._param_names)}, got {', '.join(params)}")
        est._params_array(params)
        est.params_ = {n: float(params[n]) for n in cls._param_names}
        est.log_likelihood_ = float(data["log_likelihood"])
        est.n_customers_ = data["n_customers"]
        se = data.get("standard_errors") or {}
        est.standard_errors_ = {n: (math.nan if se.get(n) is None else float(se[n])) for n in cls._param_names}
        est.converged_ = bool(data.get("converged", True))
        est.n_iter_ = int(data.get("n_iter", 0))
        return est


# ----------------------------------------------------------------------------- BG/NBD


class BetaGeoFitter(_Fitted):
    """BG/NBD model (Fader, Hardie and Lee 2005) in the time unit of its inputs (days here).

    Parameters: `penalizer` (>= 0; adds penalizer * sum(params**2) to the mean negative
    log-likelihood), `tol` (L-BFGS-B ftol and gtol), `max_iter` (L-BFGS-B iterations).

    Fitted attributes: `params_` {"r", "alpha", "a", "b"} (alpha in the input time unit),
    `log_likelihood_` (total, unpenalised, weighted), `standard_errors_` (from the inverse
    Hessian of the negative log-likelihood in the natural parameters; NaN if it is not
    positive definite), `n_customers_` (total weight: the number of customers when unweighted),
    `converged_` (always True: a fit that does not converge raises ConvergenceError), `n_iter_`.
    """

    _param_names = ("r", "alpha", "a", "b")
    _unidentified = "too short a history, too few repeat purchases or no sign of dropout yet?"
    _k = 0  # 1: dropout is also possible right after the first purchase (MBG/NBD)

    def fit(self, frequency, recency, T, weights=None) -> BetaGeoFitter:
        """Fit by maximum likelihood; `weights` (optional) counts customers per row.

        Raises ValueError on bad input and ConvergenceError when the fit does not converge.
        """
        self._check_hyperparameters()
        x, tx, T_ = check_bg_inputs(frequency, recency, T, fitting=True)
        w = check_weights(weights, len(x))
        inverse, _, (ux, utx, uT) = group_rows(x, tx, T_)
        gw = np.bincount(inverse, weights=w, minlength=len(ux))
        data = BGData.build(ux, utx, uT, gw)
        total = float(gw.sum())
        k = self._k

        def mean_nll(params):
            ll, g = bg_loglik(params, data, k, gradient=True)
            return -float(gw @ ll) / total, -g / total

        self._fit_and_store(
            mean_nll,
            lambda params: -bg_loglik(params, data, k, gradient=True)[1],
            bg_start(ux, uT, gw),
            total,
            lambda params: float(gw @ bg_loglik(params, data, k)),
        )
        return self

    def log_likelihood(self, frequency, recency, T, params=None) -> np.ndarray:
        """Per-customer log-likelihood at `params` (dict or (r, alpha, a, b); default: the fit)."""
        p = self._params_array(params)
        x, tx, T_ = check_bg_inputs(frequency, recency, T, fitting=False)
        return bg_loglik(p, BGData.build(x, tx, T_, np.ones(len(x))), self._k)

    def conditional_probability_alive(self, frequency, recency, T) -> np.ndarray:
        """P(alive at T | frequency, recency, T) per customer (inputs in days)."""
        p = self._params_array()
        x, tx, T_ = check_bg_inputs(frequency, recency, T, fitting=False)
        return bg_prob_alive(p, x, tx, T_, self._k)

    def conditional_expected_number_of_purchases_up_to_time(self, t, frequency, recency, T) -> np.ndarray:
        """Expected repeat purchases in (T, T + t] given the history; `t` in days (a scalar,
        or one value per customer)."""
        p = self._params_array()
        x, tx, T_ = check_bg_inputs(frequency, recency, T, fitting=False)
        t_ = check_times("t", t)
        if t_.ndim == 0:
            return self._discounted_purchases(p, np.array([float(t_)]), np.ones(1), x, tx, T_)
        if t_.shape != x.shape:
            raise ValueError(f"t must be a scalar or have one value per customer, got shape {t_.shape}")
        return bg_bracket_scale(p, x, self._k) * bg_bracket(p, x, T_, t_, self._k) * bg_prob_alive(
            p, x, tx, T_, self._k
        )

    def _by_times(self, times, frequency, recency, T) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(per customer: the factor of the time-dependent part, the code of its (x, T) pair;
        per pair and time: that part) of the expected purchases at each of `times`."""
        p = self._params_array()
        x, tx, T_ = check_bg_inputs(frequency, recency, T, fitting=False)
        t_ = np.atleast_1d(check_times("times", times))
        k = self._k
        inverse, _, (ux, uT) = group_rows(x, T_)
        bracket = bg_bracket(p, ux[:, None], uT[:, None], t_[None, :], k)
        return bg_bracket_scale(p, x, k) * bg_prob_alive(p, x, tx, T_, k), inverse, bracket

    def conditional_expected_purchases_at(self, times, frequency, recency, T) -> np.ndarray:
        """`conditional_expected_number_of_purchases_up_to_time` at each of `times` (days), with
        the same values, in one pass: shape (customers, len(times)). The hypergeometric part is
        evaluated once per distinct (x, T) pair and time, the rest once per customer."""
        scale, inverse, bracket = self._by_times(times, frequency, recency, T)
        return scale[:, None] * bracket[inverse]

    def conditional_expected_purchases_curve(self, times, frequency, recency, T) -> tuple[np.ndarray, np.ndarray]:
        """(each customer's expected purchases by the last of `times`, the customers' total by
        each of `times`): the last column and the column sums of
        `conditional_expected_purchases_at`, bit for bit (the sums add the customers in the same
        order), without its (customers, times) matrix, which for millions of customers is most
        of the cost."""
        scale, inverse, bracket = self._by_times(times, frequency, recency, T)
        totals = np.zeros(bracket.shape[1])
        for start in range(0, len(scale), _CURVE_ROWS):
            rows = scale[start:start + _CURVE_ROWS, None] * bracket[inverse[start:start + _CURVE_ROWS]]
            # a sum down the rows adds them one after another: carried on from `totals`, the
            # chunks give the whole matrix's column sums exactly
            totals = np.add.reduce(np.concatenate([totals[None, :], rows]), axis=0)
        return scale * bracket[inverse, -1], totals

    def expected_number_of_purchases_up_to_time(self, t) -> np.ndarray:
        """Expected repeat purchases in (0, t] of a new customer (first purchase at 0); `t` in days."""
        p = self._params_array()
        t_ = check_times("t", t)
        zero = np.zeros(t_.shape)
        k = self._k
        return bg_bracket_scale(p, zero, k) * bg_bracket(p, zero, zero, t_, k) * bg_prob_alive(p, zero, zero, zero, k)

    def _discounted_purchases(self, p, times, discounts, x, tx, T) -> np.ndarray:
        """sum_s discounts[s] * (E[X(times[s])] - E[X(times[s-1])]) per customer (times[-1] = 0).

        The hypergeometric part depends on (x, T) only, so it is evaluated once per distinct pair.
        """
        k = self._k
        inverse, _, (ux, uT) = group_rows(x, T)
        bracket = bg_bracket(p, ux[:, None], uT[:, None], times[None, :], k)
        step = np.diff(bracket, axis=1, prepend=0.0)
        per_pair = step @ discounts
        return bg_bracket_scale(p, x, k) * bg_prob_alive(p, x, tx, T, k) * per_pair[inverse]


class ModifiedBetaGeoFitter(BetaGeoFitter):
    """MBG/NBD model (Batislam, Denizel and Filiztekin 2007): as BG/NBD, but a customer may
    drop out right after the first purchase, so one-time buyers have P(alive) < 1. Same
    parameters, attributes and time unit (days here) as `BetaGeoFitter`."""

    _k = 1


# ------------------------------------------------------------------------- Gamma-Gamma


class GammaGammaFitter(_Fitted):
    """Gamma-Gamma spend model (Fader, Hardie and Lee 2005, "RFM and CLV").

    Fitted on customers with frequency > 0 only (their `monetary_value` is the mean spend of
    the repeat purchases); one-time buyers are left out of the fit and get the population
    mean p * v / (q - 1) as their expected spend. Same hyperparameters and fitted attributes as
    `BetaGeoFitter`, with `params_` {"p", "q", "v"} and `n_customers_` the repeat customers'
    total weight.
    """

    _param_names = ("p", "q", "v")
    _unidentified = "too few repeat customers or no spread in their spend?"

    def fit(self, frequency, monetary_value, weights=None) -> GammaGammaFitter:
        """Fit by maximum likelihood on the customers with frequency > 0."""
        self._check_hyperparameters()
        x = as_array("frequency", frequency)
        m = as_array("monetary_value", monetary_value)
        check_lengths(("frequency", "monetary_value"), (x, m))
        if len(x) == 0:
            raise ValueError("no customers to fit: frequency and monetary_value are empty")
        x = check_frequency(x)
        m = check_monetary(x, m)
        w = check_weights(weights, len(x))
        keep = (x > 0) & (w > 0)
        if not keep.any():
            raise ValueError("no repeat customers: Gamma-Gamma is fitted on customers with frequency > 0")
        data = GGData.build(x[keep], m[keep], w[keep])
        total = float(w[keep].sum())

        def mean_nll(params):
            ll, g = gg_loglik(params, data, gradient=True)
            return -float(data.weight @ ll) / total, -g / total

        self._fit_and_store(
            mean_nll,
            lambda params: -gg_loglik(params, data, gradient=True)[1],
            gg_start(x[keep], m[keep], w[keep]),
            total,
            lambda params: float(data.weight @ gg_loglik(params, data)),
        )
        return self

    def log_likelihood(self, frequency, monetary_value, params=None) -> np.ndarray:
        """Per-customer log density of the mean spend at `params` (dict or (p, q, v); default:
        the fit); 0 for customers with frequency 0, who add nothing to the Gamma-Gamma fit."""
        p = self._params_array(params)
        x = check_frequency(frequency)
        m = check_monetary(x, monetary_value)
        out = np.zeros(len(x))
        repeat = x > 0
        if repeat.any():
            out[repeat] = gg_loglik(p, GGData.build(x[repeat], m[repeat], np.ones(int(repeat.sum()))))
        return out

    def population_mean(self) -> float:
        """Expected spend per transaction of a new customer, p * v / (q - 1) (inf if q <= 1)."""
        p, q, v = self._params_array()
        return p * v / (q - 1.0) if q > 1 else math.inf

    def scorable(self, frequency, monetary_value) -> np.ndarray:
        """True for the customers the model can score: one-time buyers (frequency 0) and repeat
        customers whose mean spend is positive and finite. The others (a repeat customer whose
        mean spend is zero, negative or missing: e.g. a free repeat order) are outside the
        model, whose spend per transaction is Gamma distributed, hence positive."""
        x = check_frequency(frequency)
        m = as_array("monetary_value", monetary_value)
        check_lengths(("frequency", "monetary_value"), (x, m))
        with np.errstate(invalid="ignore"):
            return (x == 0) | (np.isfinite(m) & (m > 0))

    def conditional_expected_average_profit(self, frequency, monetary_value, *,
                                            unscorable: str = "raise") -> np.ndarray:
        """Expected spend per future transaction: p (v + x m) / (p x + q - 1); customers with
        frequency 0 (whose monetary_value may be missing) get the population mean.

        `unscorable` says what happens to a repeat customer the model cannot score (see
        `scorable`): "raise" a ValueError (the default), or "population_mean": give them the
        population mean, as a one-time buyer."""
        p, q, v = self._params_array()
        x = check_frequency(frequency)
        if unscorable == "population_mean":
            ok = self.scorable(x, monetary_value)
            x_ok = np.where(ok, x, 0.0)
            m = np.where(ok, as_array("monetary_value", monetary_value), np.nan)
        elif unscorable == "raise":
            x_ok = x
            m = check_monetary(x, monetary_value)
        else:
            raise ValueError(f"unscorable must be 'raise' or 'population_mean', got {unscorable!r}")
        repeat = x_ok > 0
        mm = np.where(repeat, m, 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            out = p * (v + x_ok * mm) / (p * x_ok + q - 1.0)
        return np.where(repeat, out, self.population_mean())

    def customer_lifetime_value(
        self,
        transaction_model: BetaGeoFitter,
        frequency,
        recency,
        T,
        monetary_value,
        *,
        horizon_days: float,
        discount_rate_annual: float = 0.1,
        step_days: float = 30.0,
        unscorable: str = "raise",
    ) -> np.ndarray:
        """Discounted expected spend over the next `horizon_days` days per customer.

        The horizon is cut into steps of `step_days` days (the last one shorter if needed); the
        expected purchases of `transaction_model` (fitted with recency and T in days) in each
        step times the expected spend per purchase are discounted to today at the end of the
        step with the per-step rate (1 + discount_rate_annual) ** (step_days / 365) - 1, i.e.
        by (1 + discount_rate_annual) ** (t / 365) at day t, and summed. `unscorable`: as in
        `conditional_expected_average_profit` (the purchases still come from the customer's own
        frequency, recency and T).
        """
        check_is_fitted(self)
        if not isinstance(transaction_model, BetaGeoFitter):
            raise TypeError("transaction_model must be a fitted BetaGeoFitter or ModifiedBetaGeoFitter")
        tp = transaction_model._params_array()
        if not (np.isfinite(horizon_days) and horizon_days > 0):
            raise ValueError(f"horizon_days must be > 0, got {horizon_days!r}")
        if not (np.isfinite(step_days) and step_days > 0):
            raise ValueError(f"step_days must be > 0, got {step_days!r}")
        if not (np.isfinite(discount_rate_annual) and discount_rate_annual > -1):
            raise ValueError(f"discount_rate_annual must be > -1, got {discount_rate_annual!r}")
        x, tx, T_ = check_bg_inputs(frequency, recency, T, fitting=False)
        spend = self.conditional_expected_average_profit(x, monetary_value, unscorable=unscorable)
        n_steps = max(1, math.ceil(horizon_days / step_days - 1e-9))
        times = np.minimum(np.arange(1, n_steps + 1) * float(step_days), float(horizon_days))
        discounts = (1.0 + discount_rate_annual) ** (-times / _DAYS_PER_YEAR)
        return spend * transaction_model._discounted_purchases(tp, times, discounts, x, tx, T_)


__all__ = ["BetaGeoFitter", "ConvergenceError", "GammaGammaFitter", "ModifiedBetaGeoFitter"]
