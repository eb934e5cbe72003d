"""Merchant churn risk: the probability that a merchant's payment volume falls by more than
half over the next 90 days, trained and evaluated on point-in-time cutoffs as customer churn is
(`behavior.churn`), and kept only where it beats simple baselines by more than its uncertainty.

Vocabulary (time unit: day, UTC):

- At a cutoff c, the *active merchants* are those with at least `MIN_VOLUME` successful
  payments in [c - H, c) (H = `horizon_days`, 90); only they are labelled and scored (the risk
  of a dormant or tiny merchant is not defined: null).
- **Label**: an active merchant *churns* (1) when its successful payments in [c, c + H) are
  fewer than half of those in [c - H, c).
- **Features at c**: its merchant profile at c (`behavior.merchant_profiles.merchant_profiles`
  with as_of = c: nothing at or after c is read), in `FEATURES`; counts enter as log1p,
  trends clipped to [-1, 5], missing values as 0 with a missing flag.
- **Cutoffs**: `behavior.churn.choose_cutoffs` (test cutoff as_of - H, training cutoffs every
  30 days back from test - H): no training label window overlaps the test one.

Model: `MerchantRiskModel`, a standardised logistic regression with a strong L2 penalty
(C = 0.05): merchants are few (hundreds of rows per cutoff, a handful of falls), and a linear
model held close to zero is what such data supports.

Baselines (`baseline_scores`, higher = riskier): `volume_trend` (minus the 90-day payments
trend) and `recency` (days since the last payment). Each is turned into a probability by an
isotonic fit on the training cutoffs, as in `behavior.churn`.

Selection (`select`): on the test cutoff, the paired bootstrap (over merchants, `n_boot`
resamples, seeded) of the ROC-AUC difference between the model and the best baseline. The
model is chosen only when the lower end of the 95% interval is above 0; otherwise the best
baseline is kept and its calibrated probability is the published risk.

Reasons (`risk_reasons`): for a risk >= `HIGH_RISK`, the signs in its profile that point to a
fall, in words ("payments down 45% vs the previous 90 days", "no payment for 40 days", ...),
strongest first, at most three; a high risk with none of them says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted

from behavior.features import as_of_literal
from behavior.ranking import roc_auc
from behavior.sql_dialect import SqlEngine, as_engine

HORIZON_DAYS = 90
MIN_VOLUME = 10          # successful payments in the H days before a cutoff to be labelled / scored
FALL_SHARE = 0.5         # churned: the next H days' payments < FALL_SHARE x the last H days'
MIN_MERCHANTS = 30       # active merchants at the test cutoff to train and evaluate at all
MIN_CLASS = 5            # examples of each class needed in training and in the test cutoff
HIGH_RISK = 0.5
N_BOOT = 500

_COUNTS = ("payments_30d", "payments_90d", "payments_365d", "customers_30d", "customers_90d", "customers_365d",
           "payments_prev_90d")
_TRENDS = ("payments_trend_30d", "payments_trend_90d", "payments_trend_365d", "customers_trend_90d",
           "revenue_trend_90d")
_RATES = ("repeat_customer_rate", "retention_90d", "failure_rate", "refund_rate", "share_of_wallet")
FEATURES = (*_COUNTS, *_TRENDS, *_RATES, "days_since_last_payment", "tenure_days")
BASELINES = ("volume_trend", "recency")


def future_payments_sql(payments: str, start_literal: str, end_literal: str) -> str:
    """(merchant_id, future_payments): successful payments of each merchant in [start, end)."""
    return f"""
SELECT merchant_id, COUNT(*) AS future_payments
FROM (SELECT DISTINCT COALESCE(merchant_id, 'unknown') AS merchant_id, user_id, payment_id
      FROM {payments}
      WHERE status = 'success' AND paid_at >= {start_literal} AND paid_at < {end_literal}) AS p
GROUP BY merchant_id
"""


def label_merchants(con: SqlEngine, payments: str, profiles_at_cutoff: pd.DataFrame, cutoff: datetime,
                    horizon_days: int = HORIZON_DAYS) -> pd.DataFrame:
    """The active merchants of `profiles_at_cutoff` (profiles as of `cutoff`) with
    `future_payments` and `churned` (0/1). Reads [cutoff, cutoff + H) of `payments`, which
    must hold that window (the caller's cutoffs end at or before its as_of)."""
    engine = as_engine(con)
    d = engine.dialect
    tz = d.is_tz_aware(engine.column_types(payments)["paid_at"])
    lo = as_of_literal(cutoff, tz_aware=tz, dialect=d)
    hi = as_of_literal(cutoff + timedelta(days=horizon_days), tz_aware=tz, dialect=d)
    future = engine.arrow(future_payments_sql(payments, lo, hi)).to_pandas()
    active = profiles_at_cutoff[profiles_at_cutoff["payments_90d"] >= MIN_VOLUME].copy()
    active = active.merge(future, on="merchant_id", how="left")
    active["future_payments"] = active["future_payments"].fillna(0).astype("int64")
    active["churned"] = (active["future_payments"] < FALL_SHARE * active["payments_90d"]).astype(int)
    return active


def add_tenure(profiles: pd.DataFrame, as_of: datetime) -> pd.DataFrame:
    """`profiles` with `tenure_days` (days since the first payment)."""
    out = profiles.copy()
    first = pd.to_datetime(out["first_payment_at"], utc=True)
    out["tenure_days"] = (pd.Timestamp(as_of) - first).dt.total_seconds() / 86_400
    return out


def design_matrix(frame: pd.DataFrame) -> np.ndarray:
    """The model's inputs from profile columns: log1p counts and days, clipped trends, rates,
    each missing value 0 plus a missing flag per column that can be missing."""
    cols = []
    for c in FEATURES:
        v = frame[c].to_numpy(float) if c in frame else np.full(len(frame), np.nan)
        if c in _TRENDS:
            v = np.clip(v, -1.0, 5.0)
        elif c in _COUNTS or c in ("days_since_last_payment", "tenure_days"):
            v = np.log1p(np.maximum(v, 0.0))
        miss = np.isnan(v)
        cols.append(np.where(miss, 0.0, v))
        if c in _TRENDS or c in _RATES:
            cols.append(miss.astype(float))
    return np.column_stack(cols)


class MerchantRiskModel(ClassifierMixin, BaseEstimator):
    """Standardised L2 logistic regression on `design_matrix` of profile frames."""

    def __init__(self, C: float = 0.05) -> None:
        self.C = C

    def fit(self, frame: pd.DataFrame, y) -> "MerchantRiskModel":
        y = np.asarray(y, int)
        if len(np.unique(y)) < 2:
            raise ValueError("merchant risk needs both churned and kept merchants to learn from")
        self.pipeline_ = make_pipeline(StandardScaler(), LogisticRegression(C=self.C, max_iter=2000))
        self.pipeline_.fit(design_matrix(frame), y)
        self.classes_ = np.array([0, 1])
        return self

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        check_is_fitted(self, "pipeline_")
        return self.pipeline_.predict_proba(design_matrix(frame))


def baseline_scores(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Higher = riskier. A missing trend (nothing before) scores as no change."""
    return {"volume_trend": -np.nan_to_num(frame["payments_trend_90d"].to_numpy(float), nan=0.0),
            "recency": frame["days_since_last_payment"].to_numpy(float)}


def fit_baseline_calibrators(train: pd.DataFrame) -> dict[str, IsotonicRegression]:
    y = train["churned"].to_numpy(int)
    return {name: IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(s, y)
            for name, s in baseline_scores(train).items()}


def _auc(y: np.ndarray, s: np.ndarray) -> float:
    return roc_auc(y, s)   # scikit-learn's value; its input checks cost seconds over the bootstrap


@dataclass(frozen=True)
class Selection:
    chosen: str                 # "model" or a baseline's name
    best_baseline: str
    auc: dict[str, float]       # model and each baseline, on the test cutoff
    difference: float           # model AUC - best baseline AUC
    ci95: tuple[float, float]   # paired bootstrap interval of the difference


def select(y, model_score, baselines: dict[str, np.ndarray], n_boot: int = N_BOOT, seed: int = 0) -> Selection:
    """The model when the 95% paired-bootstrap interval of its ROC-AUC advantage over the best
    baseline lies above 0; else that baseline (see the module docstring)."""
    y = np.asarray(y, int)
    model_score = np.asarray(model_score, float)
    auc = {"model": _auc(y, model_score), **{k: _auc(y, s) for k, s in baselines.items()}}
    best = max(baselines, key=lambda k: auc[k])
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(n_boot):
        i = rng.integers(0, len(y), len(y))
        if 0 < y[i].sum() < len(i):
            diffs.append(_auc(y[i], model_score[i]) - _auc(y[i], baselines[best][i]))
    lo, hi = (np.quantile(diffs, [0.025, 0.975]) if diffs else (np.nan, np.nan))
    chosen = "model" if np.isfinite(lo) and lo > 0 else best
    return Selection(chosen, best, auc, auc["model"] - auc[best], (float(lo), float(hi)))


def risk_reasons(frame: pd.DataFrame, risk: np.ndarray, high: float = HIGH_RISK, top: int = 3) -> list[str | None]:
    """Reasons in words for each row whose risk is >= `high` (None for the others and for a
    null risk): the signs of a fall in its profile, strongest first, at most `top`."""
    out: list[str | None] = []
    for row, p in zip(frame.to_dict("records"), np.asarray(risk, float)):
        if not np.isfinite(p) or p < high:
            out.append(None)
            continue
        signs: list[tuple[float, str]] = []

        def trend(col: str, what: str) -> None:
            v = row.get(col)
            if v is not None and np.isfinite(v) and v <= -0.2:
                signs.append((-v, f"{what} down {abs(v) * 100:.0f}% vs the previous 90 days"))

        trend("payments_trend_90d", "payments")
        trend("customers_trend_90d", "customers")
        trend("revenue_trend_90d", "net revenue")
        days = row.get("days_since_last_payment")
        if days is not None and np.isfinite(days) and days >= 14:
            signs.append((min(1.0, days / 60), f"no payment for {days:.0f} days"))
        t30 = row.get("payments_trend_30d")
        if t30 is not None and np.isfinite(t30) and t30 <= -0.3:
            signs.append((-t30 * 0.9, f"payments down {abs(t30) * 100:.0f}% in the last 30 days vs the 30 before"))
        fail = row.get("failure_rate")
        if fail is not None and np.isfinite(fail) and fail >= 0.05:
            signs.append((fail * 2, f"{fail * 100:.0f}% of payment attempts fail"))
        refund = row.get("refund_rate")
        if refund is not None and np.isfinite(refund) and refund >= 0.05:
            signs.append((refund * 2, f"{refund * 100:.0f}% of sold lines are refunded"))
        ret = row.get("retention_90d")
        if ret is not None and np.isfinite(ret) and ret < 0.1:
            signs.append((0.1 - ret, f"only {ret * 100:.0f}% of new customers came back within 90 days"))
        signs.sort(key=lambda s: -s[0])
        words = [w for _, w in signs[:top]]
        out.append("; ".join(words) if words else f"risk {p:.0%} from its history as a whole; no single sign stands out")
    return out


__all__ = ["BASELINES", "FALL_SHARE", "FEATURES", "HIGH_RISK", "HORIZON_DAYS", "MIN_CLASS", "MIN_MERCHANTS",
           "MIN_VOLUME", "MerchantRiskModel", "Selection", "add_tenure", "baseline_scores", "design_matrix",
           "fit_baseline_calibrators", "future_payments_sql", "label_merchants", "risk_reasons", "select"]
